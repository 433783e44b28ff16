"""Colour profiles for tests: Display P3 and Adobe RGB written as ICC v2 matrix/TRC profiles from
their primaries (Pillow can create only sRGB, LAB and XYZ profiles), and images in them."""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np
from PIL import Image, ImageCms

BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
D50 = np.array([0.9642, 1.0, 0.8249])


def _xyz(x: float, y: float) -> np.ndarray:
    return np.array([x / y, 1.0, (1 - x - y) / y])


def to_xyz_d50(primaries: list[tuple[float, float]], white: tuple[float, float] = (0.3127, 0.3290)) -> np.ndarray:
    """The matrix from linear RGB to XYZ for primaries and a white point, adapted to D50 (Bradford)."""
    columns = np.stack([_xyz(*p) for p in primaries], axis=1)
    w = _xyz(*white)
    M = columns * np.linalg.solve(columns, w)
    return np.asarray(np.linalg.inv(BRADFORD) @ np.diag((BRADFORD @ D50) / (BRADFORD @ w)) @ BRADFORD @ M)


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz_tag(value: np.ndarray) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(float(c)) for c in value)


def _description(name: bytes) -> bytes:
    return b"desc\0\0\0\0" + struct.pack(">I", len(name) + 1) + name + b"\0" + b"\0" * 12 + b"\0" * 67


def _profile(colour_space: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    """An ICC v2 display profile of a colour space ("RGB ", "GRAY") with these tags, PCS XYZ."""
    table, body = b"", b""
    start = 128 + 4 + 12 * len(tags)
    for signature, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += signature + struct.pack(">II", start + len(body), len(data))
        body += data
    header = (
        struct.pack(">I", start + len(body))
        + b"\0" * 4
        + struct.pack(">I", 0x02100000)
        + b"mntr"
        + colour_space
        + b"XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 28
        + b"".join(_s15(c) for c in D50)
        + b"\0" * 48
    )
    return header + struct.pack(">I", len(tags)) + table + body


def matrix_profile(matrix: np.ndarray, curve: bytes, name: bytes = b"test") -> bytes:
    """An ICC v2 display profile: RGB to XYZ by per-channel curves and a matrix."""
    return _profile(
        b"RGB ",
        [
            (b"desc", _description(name)),
            (b"wtpt", _xyz_tag(D50)),
            (b"rXYZ", _xyz_tag(matrix[:, 0])),
            (b"gXYZ", _xyz_tag(matrix[:, 1])),
            (b"bXYZ", _xyz_tag(matrix[:, 2])),
            (b"rTRC", curve),
            (b"gTRC", curve),
            (b"bTRC", curve),
        ],
    )


SRGB_CURVE = (
    b"para\0\0\0\0"
    + struct.pack(">HH", 3, 0)
    + b"".join(_s15(v) for v in (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045))
)
GAMMA_22 = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(2.19921875 * 256)) + b"\0\0"
DISPLAY_P3 = matrix_profile(to_xyz_d50([(0.680, 0.320), (0.265, 0.690), (0.150, 0.060)]), SRGB_CURVE, b"P3")
ADOBE_RGB = matrix_profile(to_xyz_d50([(0.64, 0.33), (0.21, 0.71), (0.15, 0.06)]), GAMMA_22, b"Adobe RGB")
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def colour_patches() -> np.ndarray:
    """Saturated and skin-like sRGB colours in 16 px blocks (BGR), and a grey ramp."""
    colours = [(40, 40, 200), (50, 160, 60), (180, 90, 30), (120, 160, 220), (30, 200, 230), (128, 128, 128)]
    image = np.zeros((32, 16 * len(colours), 3), np.uint8)
    for index, colour in enumerate(colours):
        image[:16, 16 * index : 16 * (index + 1)] = colour
    image[16:] = np.linspace(0, 255, image.shape[1]).astype(np.uint8)[None, :, None]
    return image


def by_littlecms(image: Image.Image, source: bytes, target: bytes, out_mode: str = "RGB") -> np.ndarray:
    """A Pillow image taken from one profile's space to another's by LittleCMS (relative
    colorimetric), as an array in `out_mode`."""
    transform = ImageCms.buildTransform(
        ImageCms.ImageCmsProfile(io.BytesIO(source)),
        ImageCms.ImageCmsProfile(io.BytesIO(target)),
        image.mode,
        out_mode,
        ImageCms.Intent.RELATIVE_COLORIMETRIC,
    )
    converted = ImageCms.applyTransform(image, transform)
    assert converted is not None
    return np.asarray(converted)


def in_profile(srgb_bgr: np.ndarray, profile: bytes) -> np.ndarray:
    """sRGB pixels expressed in another profile's space, by LittleCMS."""
    rgb = by_littlecms(Image.fromarray(cv2.cvtColor(srgb_bgr, cv2.COLOR_BGR2RGB)), SRGB, profile)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def tagged(bgr: np.ndarray, profile: bytes, fmt: str) -> bytes:
    buffer = io.BytesIO()
    options: dict[str, object] = (
        {"quality": 100, "subsampling": 0} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    )
    Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).save(buffer, fmt, icc_profile=profile, **options)
    return buffer.getvalue()


def grey_profile(curve: bytes, name: bytes = b"grey") -> bytes:
    """An ICC v2 greyscale display profile: a grey tone curve (kTRC) and the D50 white."""
    return _profile(b"GRAY", [(b"desc", _description(name)), (b"wtpt", _xyz_tag(D50)), (b"kTRC", curve)])


GREY_GAMMA_22 = grey_profile(GAMMA_22, b"Gray Gamma 2.2")
