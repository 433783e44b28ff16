"""Colour profiles: photos described by an ICC profile other than sRGB, converted to sRGB.

Every stage works in sRGB (the linear-light shading, the outputs, which carry no profile). A photo
whose pixels are in another space (Display P3 from phones, Adobe RGB from cameras) would otherwise
be read as sRGB, its colours shifted (P3 reds read as less saturated, Adobe RGB greens as duller).

Most such profiles are matrix/TRC profiles: a tone curve per channel to linear light, then a 3x3
matrix to the profile connection space (XYZ, D50). Those are converted here with two table
look-ups and a matrix, in row bands (a 12 MP photo in ~0.1 s); what is exactly sRGB costs nothing
beyond reading the profile's tag table. Other RGB profiles (lookup tables only) go through
LittleCMS (Pillow's ImageCms), which is several times slower. Colours outside sRGB's gamut are
clipped, as LittleCMS does for the relative colorimetric intent of matrix profiles.

A profile that is malformed, too large (MAX_PROFILE_BYTES) or not an RGB display profile is
ignored: the pixels are taken as sRGB. Conversions are cached by the profile's digest, never by
its bytes, so no cache keeps a photo's profile alive.
"""

from __future__ import annotations

import hashlib
import io
import logging
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageCms

log = logging.getLogger(__name__)

# sRGB's primaries adapted to D50, as the ICC's own sRGB profiles state them (columns R, G, B).
SRGB_TO_XYZ_D50 = np.array(
    [
        [0.4360747, 0.3850649, 0.1430804],
        [0.2225045, 0.7168786, 0.0606169],
        [0.0139322, 0.0971045, 0.7141733],
    ]
)
_COLORANT_TOLERANCE = 0.002  # s15Fixed16 rounding and the variants of sRGB profiles in the wild
_CURVE_TOLERANCE = 0.5 / 255  # in encoded values: half a level
MAX_PROFILE_BYTES = 4 << 20
_BAND_PIXELS = 1 << 20  # pixels converted at a time: bounds the float32 working set


@dataclass(frozen=True)
class MatrixProfile:
    """A matrix/TRC RGB profile: per-channel tone curves (256 linear values each, R, G, B) and the
    matrix from linear RGB to XYZ (D50)."""

    curves: np.ndarray  # (3, 256) float64
    to_xyz: np.ndarray  # (3, 3)
    grey: bool = False  # a greyscale profile (its one curve as all three; neutral colorants)

    def is_srgb(self) -> bool:
        """Whether converting to sRGB would change nothing visible."""
        if np.abs(self.to_xyz - SRGB_TO_XYZ_D50).max() > _COLORANT_TOLERANCE:
            return False
        return bool(np.abs(_encode_srgb(self.curves) - _encode_srgb(_srgb_curve()[None, :])).max() <= _CURVE_TOLERANCE)


class ProfileError(ValueError):
    """The bytes are not an ICC profile this module can read."""


def _srgb_curve() -> np.ndarray:
    c = np.arange(256) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _encode_srgb(linear: np.ndarray) -> np.ndarray:
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055)


# Linear light in 4096 steps to 8-bit sRGB; every 16-bit index past the last step is white.
_TO_SRGB = np.full(1 << 16, 255, np.uint8)
_TO_SRGB[:4096] = np.clip(_encode_srgb(np.arange(4096) / 4095.0) * 255.0 + 0.5, 0, 255)


def _s15(data: bytes, offset: int, count: int) -> list[float]:
    return [v / 65536.0 for v in struct.unpack_from(f">{count}i", data, offset)]


def _curve(data: bytes, offset: int, size: int) -> np.ndarray:
    """A tone curve ('curv' or 'para') sampled at the 256 8-bit levels, in linear light."""
    x = np.arange(256) / 255.0
    kind = data[offset : offset + 4]
    if kind == b"curv":
        (count,) = struct.unpack_from(">I", data, offset + 8)
        if count == 0:
            return x
        if count == 1:
            if size < 14:
                raise ProfileError("a tone curve's gamma is missing")
            return np.asarray(x ** (struct.unpack_from(">H", data, offset + 12)[0] / 256.0))
        if 12 + 2 * count > size:
            raise ProfileError("a tone curve runs past its tag")
        table = np.frombuffer(data, ">u2", count, offset + 12) / 65535.0
        return np.asarray(np.interp(x * (count - 1), np.arange(count), table))
    if kind == b"para":
        (function,) = struct.unpack_from(">H", data, offset + 8)
        needs = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}.get(function)
        if needs is None or 12 + 4 * needs > size:
            raise ProfileError("an unknown parametric curve")
        p = _s15(data, offset + 12, needs) + [0.0] * (7 - needs)
        g, a, b, c, d, e, f = p
        if function == 0:
            return np.asarray(x**g)
        if function in (1, 2):
            # Y = (aX + b)^g (+ c) above X = -b/a, else 0 (or c).
            base = np.maximum(a * x + b, 0.0)
            above = x >= (-b / a if a else 0.0)
            offset_c = c if function == 2 else 0.0
            return np.asarray(np.where(above, base**g + offset_c, offset_c))
        return np.asarray(np.where(x >= d, np.maximum(a * x + b, 0.0) ** g + e, c * x + f))
    raise ProfileError("a tone curve of an unknown type")


def parse(profile: bytes) -> MatrixProfile | None:
    """The matrix/TRC model of an RGB profile, or of a greyscale one (its grey tone curve, as
    Photoshop's "Gray Gamma 2.2" and "Dot Gain" profiles hold: grey stays grey, its tones change);
    None for an RGB profile made of lookup tables only. ProfileError for bytes that are not an RGB
    or grey display profile."""
    if len(profile) < 132 or len(profile) > MAX_PROFILE_BYTES or profile[36:40] != b"acsp":
        raise ProfileError("not an ICC profile")
    if profile[16:20] not in (b"RGB ", b"GRAY"):
        raise ProfileError("not an RGB profile")
    (count,) = struct.unpack_from(">I", profile, 128)
    tags: dict[bytes, tuple[int, int]] = {}
    for index in range(min(count, (len(profile) - 132) // 12)):
        signature, offset, size = struct.unpack_from(">4sII", profile, 132 + 12 * index)
        if offset + size <= len(profile) and size >= 12:
            tags[signature] = (offset, size)
    if profile[16:20] == b"GRAY":
        if profile[20:24] != b"XYZ " or b"kTRC" not in tags:
            raise ProfileError("a grey profile without its tone curve")
        grey = _curve(profile, *tags[b"kTRC"])
        return MatrixProfile(curves=np.stack([grey, grey, grey]), to_xyz=SRGB_TO_XYZ_D50.copy(), grey=True)
    names = (b"rXYZ", b"gXYZ", b"bXYZ", b"rTRC", b"gTRC", b"bTRC")
    if profile[20:24] != b"XYZ " or not all(name in tags for name in names):
        return None
    columns = []
    for name in names[:3]:
        offset, size = tags[name]
        if profile[offset : offset + 4] != b"XYZ " or size < 20:
            raise ProfileError("a colorant is not an XYZ value")
        columns.append(_s15(profile, offset + 8, 3))
    curves = np.stack([_curve(profile, *tags[name]) for name in names[3:]])
    return MatrixProfile(curves=curves, to_xyz=np.array(columns).T)


@dataclass(frozen=True)
class Conversion:
    """How to bring BGR pixels of one profile to sRGB: tables and matrix, or a LittleCMS transform."""

    to_linear: np.ndarray | None  # (1, 256, 3) float32, B, G, R
    matrix: np.ndarray | None  # (3, 3) float32, linear BGR to linear sRGB BGR in 4095ths
    transform: ImageCms.ImageCmsTransform | None  # LittleCMS's, when the two above are None
    grey: bool = False  # a grey profile's: it applies to greyscale images only


# The conversions of the profiles seen last, by SHA-256 of the profile (photos of one camera or
# phone share theirs). Decodes run on several threads: the lock keeps the order consistent.
_CACHED_CONVERSIONS = 32
_conversions: OrderedDict[bytes, Conversion | None] = OrderedDict()
_conversions_lock = threading.Lock()


def conversion_for(profile: bytes) -> Conversion | None:
    """The conversion to sRGB a profile needs; None when the pixels are sRGB already or the profile
    cannot be used (the pixels are then taken as sRGB, as every decoder that ignores profiles does)."""
    if len(profile) > MAX_PROFILE_BYTES:
        log.info("ignoring an embedded colour profile of %d bytes", len(profile))
        return None
    digest = hashlib.sha256(profile).digest()
    with _conversions_lock:
        if digest in _conversions:
            _conversions.move_to_end(digest)
            return _conversions[digest]
    conversion = _conversion(profile)
    with _conversions_lock:
        _conversions[digest] = conversion
        while len(_conversions) > _CACHED_CONVERSIONS:
            _conversions.popitem(last=False)
    return conversion


def _conversion(profile: bytes) -> Conversion | None:
    try:
        model = parse(profile)
    except (ValueError, struct.error) as exc:  # a ProfileError, or a malformed tag read past its end
        log.info("ignoring an embedded colour profile: %s", exc)
        return None
    if model is None:
        try:
            return Conversion(None, None, littlecms_transform(profile))
        except (ImageCms.PyCMSError, OSError, ValueError) as exc:
            log.info("ignoring an embedded colour profile LittleCMS cannot use: %s", exc)
            return None
    if model.is_srgb():
        return None
    reverse = [2, 1, 0]
    to_srgb = np.linalg.inv(SRGB_TO_XYZ_D50) @ model.to_xyz
    table = model.curves[reverse].T.reshape(1, 256, 3).astype(np.float32)
    return Conversion(table, (to_srgb[np.ix_(reverse, reverse)] * 4095.0).astype(np.float32), None, model.grey)


def to_srgb(bgr: np.ndarray, conversion: Conversion) -> np.ndarray:
    """BGR pixels (uint8, 3 channels) of a profile converted to sRGB, in place where possible."""
    if conversion.to_linear is None or conversion.matrix is None:
        assert conversion.transform is not None
        return _lcms_to_srgb(bgr, conversion.transform)
    out = bgr if bgr.flags.writeable and bgr.flags.c_contiguous else np.ascontiguousarray(bgr)
    rows = max(1, _BAND_PIXELS // max(1, out.shape[1]))
    for top in range(0, out.shape[0], rows):
        band = out[top : top + rows]
        # The matrix is scaled to the table's 4095 steps; the rounding to 16 bits clips below 0.
        scaled = cv2.transform(cv2.LUT(band, conversion.to_linear), conversion.matrix)
        band[...] = _TO_SRGB[cv2.multiply(scaled, 1.0, dtype=cv2.CV_16U)]  # type: ignore[call-overload]
    return out


def _lcms_to_srgb(bgr: np.ndarray, transform: ImageCms.ImageCmsTransform) -> np.ndarray:
    rgb = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    converted = ImageCms.applyTransform(rgb, transform)
    assert converted is not None
    return cv2.cvtColor(np.asarray(converted), cv2.COLOR_RGB2BGR)


def littlecms_transform(profile: bytes) -> ImageCms.ImageCmsTransform:
    """LittleCMS's transform from a profile to sRGB (relative colorimetric); it keeps no copy of the
    profile's bytes."""
    source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    return ImageCms.buildTransform(source, srgb, "RGB", "RGB", ImageCms.Intent.RELATIVE_COLORIMETRIC)
