"""Photos tagged with a colour profile other than sRGB are converted to sRGB as they are decoded;
LittleCMS (through Pillow's ImageCms) is the independent implementation the conversion is checked
against."""

from __future__ import annotations

import io
import struct
import sys

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from renderkit import icc, imaging
from tests.colour_profiles import (
    ADOBE_RGB,
    DISPLAY_P3,
    GREY_GAMMA_22,
    SRGB,
    SRGB_CURVE,
    by_littlecms,
    colour_patches,
    in_profile,
    matrix_profile,
    tagged,
    to_xyz_d50,
)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("profile", [DISPLAY_P3, ADOBE_RGB], ids=["display-p3", "adobe-rgb"])
def test_a_photo_in_another_colour_space_decodes_to_its_srgb_colours(fmt: str, profile: bytes) -> None:
    original = colour_patches()
    stored = in_profile(original, profile)
    assert np.abs(stored.astype(int) - original).max() > 15  # read as sRGB, the colours would shift
    data = tagged(stored, profile, fmt)
    assert imaging.probe(data).icc_profile == profile
    tolerance = 3 if fmt == "JPEG" else 2
    for decoded in (imaging.decode_bgr(data), imaging.decode_swatch(data)[0]):
        assert np.abs(decoded.astype(int) - original).max() <= tolerance


def test_an_srgb_profile_costs_no_conversion() -> None:
    assert icc.conversion_for(SRGB) is None
    assert icc.conversion_for(matrix_profile(icc.SRGB_TO_XYZ_D50, SRGB_CURVE)) is None
    assert icc.conversion_for(DISPLAY_P3) is not None
    data = tagged(colour_patches(), SRGB, "PNG")
    np.testing.assert_array_equal(imaging.decode_bgr(data), colour_patches())


def test_the_fast_conversion_agrees_with_littlecms() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for profile in (DISPLAY_P3, ADOBE_RGB):
        conversion = icc.conversion_for(profile)
        assert conversion is not None and conversion.matrix is not None
        ours = icc.to_srgb(pixels.copy(), conversion)
        lcms = icc.to_srgb(pixels.copy(), icc.Conversion(None, None, icc.littlecms_transform(profile)))
        assert np.abs(ours.astype(int) - lcms).max() <= 1


def test_a_cut_out_swatch_in_p3_is_converted_before_it_meets_the_grout() -> None:
    original = colour_patches()
    stored = in_profile(original, DISPLAY_P3)
    rgba = np.dstack([cv2.cvtColor(stored, cv2.COLOR_BGR2RGB), np.full(stored.shape[:2], 255, np.uint8)])
    rgba[:, :8, 3] = 0  # a transparent strip: grout
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, "PNG", icc_profile=DISPLAY_P3)
    swatch, transparent = imaging.decode_swatch(buffer.getvalue(), "#102030")
    assert transparent > 0
    assert np.abs(swatch[:, 8:].astype(int) - original[:, 8:]).max() <= 2
    assert np.abs(swatch[:, :8].astype(int) - (0x30, 0x20, 0x10)).max() <= 1  # the grout is not converted


@pytest.mark.parametrize(
    "profile",
    [b"not a profile at all", ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()],
    ids=["garbage", "lab"],
)
def test_unusable_profiles_leave_the_pixels_as_they_are(profile: bytes) -> None:
    assert icc.conversion_for(profile) is None
    data = tagged(colour_patches(), profile, "PNG")
    assert imaging.probe(data).icc_profile == profile
    np.testing.assert_array_equal(imaging.decode_bgr(data), colour_patches())


# A gamma curve whose value is missing: 12 bytes, the last tag of the profile.
_NO_GAMMA = b"curv\0\0\0\0" + struct.pack(">I", 1)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_tone_curve_without_its_gamma_leaves_the_pixels_as_they_are(fmt: str) -> None:
    profile = matrix_profile(to_xyz_d50([(0.680, 0.320), (0.265, 0.690), (0.150, 0.060)]), _NO_GAMMA)
    assert profile.endswith(_NO_GAMMA)
    assert icc.conversion_for(profile) is None
    data = tagged(colour_patches(), profile, fmt)
    assert imaging.probe(data).icc_profile == profile
    tolerance = 3 if fmt == "JPEG" else 0
    for decoded in (imaging.decode_bgr(data), imaging.decode_swatch(data)[0]):
        assert np.abs(decoded.astype(int) - colour_patches()).max() <= tolerance


def test_no_conversion_keeps_the_profile_it_was_made_from() -> None:
    """Conversions are cached by the profile's digest: a photo's profile (up to 4 MB) is not kept
    alive by the cache once the photo is done with."""
    for profile in (bytes(bytearray(DISPLAY_P3)), b"garbage " * 1000, b"\0" * (icc.MAX_PROFILE_BYTES + 1)):
        references = sys.getrefcount(profile)
        icc.conversion_for(profile)
        assert sys.getrefcount(profile) == references
    assert icc.conversion_for(bytes(bytearray(DISPLAY_P3))) is icc.conversion_for(DISPLAY_P3)  # cached


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_greyscale_photo_with_a_grey_profile_decodes_to_its_srgb_tones(fmt: str) -> None:
    """A greyscale photo tagged "Gray Gamma 2.2" (Photoshop's grey working spaces): its shadows are
    darker than the same levels in sRGB (level 16 shows as 7), as LittleCMS and browsers show it."""
    ramp = np.tile(np.arange(256, dtype=np.uint8), (16, 1))
    buffer = io.BytesIO()
    Image.fromarray(ramp, "L").save(
        buffer, fmt, icc_profile=GREY_GAMMA_22, **({"quality": 100} if fmt == "JPEG" else {})
    )
    expected = by_littlecms(Image.fromarray(ramp, "L"), GREY_GAMMA_22, SRGB)[:, :, 0].astype(int)
    decoded = imaging.decode_bgr(buffer.getvalue())
    assert np.abs(decoded.astype(int) - expected[:, :, None]).max() <= 1
    assert np.abs(ramp.astype(int) - expected).max() > 5  # what reading it as sRGB would show


def test_a_grey_profile_on_a_colour_image_is_ignored() -> None:
    data = tagged(colour_patches(), GREY_GAMMA_22, "PNG")
    np.testing.assert_array_equal(imaging.decode_bgr(data), colour_patches())
