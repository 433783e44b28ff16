"""HEIC photos (phones' default) through pillow-heif: probed without decoding, decoded upright and in
sRGB, and refused by name where the decoder is missing."""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Callable, Iterator

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from gateway.validation import Limits, check_image
from renderkit import imaging
from tests.colour_profiles import DISPLAY_P3, colour_patches, in_profile


def displayed_portrait() -> np.ndarray:
    """A 48 x 80 (width x height) BGR image in flat blocks that every turn changes."""
    image = np.zeros((80, 48, 3), np.uint8)
    image[:40, :24] = (30, 30, 200)
    image[:40, 24:] = (40, 180, 40)
    image[40:, :16] = (200, 60, 30)
    image[40:, 16:] = (190, 190, 190)
    return image


def heic(stored_rgb: np.ndarray, exif: Image.Exif | None = None, icc_profile: bytes = b"") -> bytes:
    """HEIC as a phone writes it; pillow-heif turns EXIF orientation 6 into the container's turn."""
    image = pillow_heif.from_pillow(Image.fromarray(stored_rgb))
    if exif is not None:
        image.info["exif"] = exif.tobytes()
    if icc_profile:
        image.info["icc_profile"] = icc_profile
    buffer = io.BytesIO()
    image.save(buffer, quality=95, chroma=444)
    return buffer.getvalue()


def test_a_portrait_heic_is_probed_and_decoded_upright_with_its_focal_length() -> None:
    displayed = displayed_portrait()
    stored = np.asarray(Image.fromarray(displayed[:, :, ::-1]).transpose(Image.Transpose.ROTATE_90))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8769)[0xA405] = 26
    data = heic(stored, exif)
    info = imaging.probe(data)
    # The container turns the stored 80 x 48 to 48 x 80; the EXIF tag (which says the same) is not
    # applied a second time.
    assert (info.content_type, info.width, info.height, info.orientation) == ("image/heic", 48, 80, 1)
    assert info.focal_length_px == pytest.approx(26 * math.hypot(48, 80) / math.hypot(36, 24))
    decoded = imaging.decode_bgr(data)
    assert decoded.shape == (80, 48, 3)
    assert np.abs(decoded.astype(int) - displayed).mean() < 4
    mask = imaging.decode_gray(data)
    assert mask.shape == (80, 48)


def test_a_cropped_portrait_heic_reads_the_focal_length_of_the_same_photo_as_jpeg() -> None:
    """PixelX/YDimension are the camera's frame, before the turn. A HEIC's size has its container's
    turn applied: a portrait cropped (80 x 32 stored of the 80 x 48 taken, 32 x 80 displayed) was
    compared with them turned, fitted none, and read the diagonal of the crop: 8 % short (a review
    found it)."""
    turned = Image.fromarray(displayed_portrait()[:, :, ::-1]).transpose(Image.Transpose.ROTATE_90)
    stored = np.ascontiguousarray(np.asarray(turned)[:32])
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8769)[0xA405] = 26
    exif.get_ifd(0x8769)[0xA002], exif.get_ifd(0x8769)[0xA003] = 80, 48  # taken 80 x 48, cropped to 80 x 32
    jpeg = io.BytesIO()
    Image.fromarray(stored).save(jpeg, "JPEG", quality=95, exif=exif)
    heif, photo = imaging.probe(heic(stored, exif)), imaging.probe(jpeg.getvalue())
    assert (heif.width, heif.height) == (photo.width, photo.height) == (32, 80)
    assert heif.focal_length_px == pytest.approx(photo.focal_length_px)
    assert photo.focal_length_px == pytest.approx(26 * math.hypot(80, 48) / math.hypot(36, 24))


def test_a_heics_display_p3_colours_are_converted() -> None:
    original = np.repeat(np.repeat(colour_patches(), 2, axis=0), 2, axis=1)  # blocks HEVC keeps flat
    stored = in_profile(original, DISPLAY_P3)
    data = heic(np.ascontiguousarray(stored[:, :, ::-1]), icc_profile=DISPLAY_P3)
    assert imaging.probe(data).icc_profile == DISPLAY_P3
    decoded = imaging.decode_bgr(data)
    inner = (slice(4, 28), slice(None))  # away from the blocks' seams, where HEVC rings
    assert np.median(np.abs(decoded[inner].astype(int) - original[inner])) <= 2
    assert np.median(np.abs(stored[inner].astype(int) - original[inner])) > 5  # what reading it as sRGB would show


def test_heic_is_accepted_at_submit_and_refused_truncated() -> None:
    data = heic(np.ascontiguousarray(displayed_portrait()[:, :, ::-1]))
    violations, info = check_image(data, "material_swap.photo.data", Limits(), 16)
    assert not violations and info is not None and info.pixels == 48 * 80
    with pytest.raises(imaging.ImageError, match="truncated or corrupt"):
        imaging.probe(data[: len(data) // 2])


@pytest.fixture()
def without_pillow_heif(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(imaging, "_heif", lambda: None)
    yield


@pytest.mark.usefixtures("without_pillow_heif")
def test_without_a_decoder_heic_is_refused_naming_the_format() -> None:
    data = heic(np.ascontiguousarray(displayed_portrait()[:, :, ::-1]))
    violations, _ = check_image(data, "material_swap.photo.data", Limits(), 16)
    assert violations == [("material_swap.photo.data", "HEIC photos are not supported here: convert them to JPEG")]


def _box(data: bytes, kind: bytes) -> int:
    """Where a box's payload starts (after its size and type)."""
    return data.index(kind) + 4


def _version_127(data: bytes) -> bytes:
    at = _box(data, b"ipma")
    return data[:at] + b"\x7f\xff\xff\xff" + data[at + 4 :]  # a version libheif does not know: SyntaxError


def _no_decoder_configuration(data: bytes) -> bytes:
    at = data.index(b"hvcC")
    return data[:at] + b"\0\0\0\0" + data[at + 4 :]  # no image to read: IndexError


def _image_data_cut_short(data: bytes) -> bytes:
    # iloc v0 with 4-byte offsets, lengths and base offset, one item of one extent: its length last.
    at = _box(data, b"iloc")
    assert data[at : at + 8] == b"\0\0\0\0\x44\x40\0\x01"
    length = at + 22
    (extent,) = struct.unpack_from(">I", data, length)
    return data[:length] + struct.pack(">I", extent // 3) + data[length + 4 :]  # EOFError when decoded


def _monochrome_configuration(data: bytes) -> bytes:
    at = _box(data, b"hvcC") + 16  # chroma_format_idc, in a byte of reserved bits
    return data[:at] + b"\0" + data[at + 1 :]  # a conversion libheif does not support: SyntaxError


@pytest.mark.parametrize(
    "corrupt, at_probe",
    [
        (_version_127, True),
        (_no_decoder_configuration, True),
        (_image_data_cut_short, False),
        (_monochrome_configuration, False),
    ],
)
def test_a_corrupt_heic_is_refused_as_corrupt_wherever_it_fails(
    corrupt: Callable[[bytes], bytes], at_probe: bool
) -> None:
    """Whatever pillow-heif raises for a file it cannot read is an ImageError (else INTERNAL at
    submit and a pipeline error in a job), at the probe or, where the header reads, at the decode."""
    data = corrupt(heic(np.ascontiguousarray(displayed_portrait()[:, :, ::-1])))
    if at_probe:
        violations, _ = check_image(data, "material_swap.photo.data", Limits(), 16)
        assert violations == [("material_swap.photo.data", "the image is truncated or corrupt")]
        return
    assert imaging.probe(data).width == 48
    for decode, what in (
        (imaging.decode_bgr, "image"),
        (imaging.decode_swatch, "swatch"),
        (imaging.decode_gray, "mask"),
    ):
        with pytest.raises(imaging.ImageError, match=f"^the {what} could not be decoded$"):
            decode(data)  # type: ignore[operator]
