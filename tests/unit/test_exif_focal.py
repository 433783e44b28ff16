"""The camera's focal length from EXIF: parsed without decoding, in the displayed frame, and used by
the depth stage when the client gives none."""

from __future__ import annotations

import io
import math
import struct

import numpy as np
import pytest
from PIL import Image, ImageOps
from PIL.TiffImagePlugin import IFDRational

from devstack import scenes
from render.depth.v1 import depth_service_pb2 as depth_pb
from renderkit import homography, imaging
from renderkit.planes import quad_plane
from services.depth.server import lines_plane

FILM_DIAGONAL_MM = math.hypot(36, 24)


def exif_jpeg(width: int, height: int, orientation: int = 1, photo: np.ndarray | None = None, **tags: float) -> bytes:
    """A JPEG whose EXIF (written by Pillow) holds an orientation and Exif IFD tags by name."""
    names = {
        "focal_35mm": 0xA405,
        "focal_mm": 0x920A,
        "plane_x_resolution": 0xA20E,
        "plane_unit": 0xA210,
        "pixel_x": 0xA002,
        "pixel_y": 0xA003,
    }
    exif = Image.Exif()
    exif[0x0112] = orientation
    ifd = exif.get_ifd(0x8769)
    for name, value in tags.items():
        ifd[names[name]] = value
    pixels = photo if photo is not None else np.full((height, width, 3), 90, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels[:, :, ::-1])).save(buffer, "JPEG", quality=92, exif=exif)
    return buffer.getvalue()


def test_the_35mm_focal_length_is_read_by_the_diagonal() -> None:
    info = imaging.probe(exif_jpeg(400, 300, focal_35mm=26))
    assert info.focal_length_px == pytest.approx(26 * 500 / FILM_DIAGONAL_MM)  # 300.4 px: 400x300 has a 500 px diagonal
    assert imaging.probe(exif_jpeg(400, 300)).focal_length_px == 0.0  # no EXIF focal: unknown


def test_a_portrait_stored_turned_swaps_the_sides_but_not_the_focal_length() -> None:
    """Orientation 6: the pixels are stored 400 wide, displayed 300 wide; the focal length in
    pixels is the same either way (pixels are square), and the diagonal does not turn."""
    stored = exif_jpeg(400, 300, orientation=6, focal_35mm=26)
    info = imaging.probe(stored)
    assert (info.width, info.height, info.orientation) == (300, 400, 6)
    assert info.focal_length_px == pytest.approx(imaging.probe(exif_jpeg(400, 300, focal_35mm=26)).focal_length_px)


def big_endian_exif(entries: dict[int, tuple[int, float]], orientation: int = 1) -> bytes:
    """A hand-built big-endian TIFF: IFD0 (Orientation, the Exif IFD's pointer), then the Exif IFD
    with the entries (tag: (type, value); SHORT 3 inline, RATIONAL 5 as value/1000 stored after)."""
    ifd0_at = 8
    exif_at = ifd0_at + 2 + 2 * 12 + 4
    count = len(entries)
    data_at = exif_at + 2 + count * 12 + 4
    ifd0 = struct.pack(">H", 2) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    ifd0 += struct.pack(">HHII", 0x8769, 4, 1, exif_at) + struct.pack(">I", 0)
    exif = struct.pack(">H", count)
    extra = b""
    for tag, (kind, value) in sorted(entries.items()):
        if kind == 5:
            exif += struct.pack(">HHII", tag, 5, 1, data_at + len(extra))
            extra += struct.pack(">II", round(value * 1000), 1000)
        elif kind == 4:
            exif += struct.pack(">HHII", tag, 4, 1, int(value))
        else:
            exif += struct.pack(">HHIHH", tag, 3, 1, int(value), 0)
    exif += struct.pack(">I", 0)
    return b"MM\x00*" + struct.pack(">I", ifd0_at) + ifd0 + exif + extra


def with_exif(jpeg: bytes, tiff: bytes) -> bytes:
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def test_the_sensors_focal_length_and_resolution_give_pixels_scaled_to_the_image() -> None:
    """A 4.25 mm lens on a sensor of 1000 px/mm (1 µm pixels), photo taken 4000x3000 and sent at
    800x600: 4250 px at capture, 850 px in this image."""
    plain = imaging.encode(np.full((600, 800, 3), 90, np.uint8))[0]
    tags = {0x920A: (5, 4.25), 0xA20E: (5, 10000.0), 0xA210: (3, 3), 0xA002: (4, 4000), 0xA003: (4, 3000)}
    assert imaging.probe(with_exif(plain, big_endian_exif(tags))).focal_length_px == pytest.approx(850.0)
    # With a 35 mm value that agrees (850 px is 36.8 mm equivalent), the sensor's exact figure wins;
    # one that disagrees (the photo was cropped, or mis-tagged) leaves the 35 mm value.
    agreeing = tags | {0xA405: (3, 37)}
    assert imaging.probe(with_exif(plain, big_endian_exif(agreeing))).focal_length_px == pytest.approx(850.0)
    disagreeing = tags | {0xA405: (3, 50)}
    assert imaging.probe(with_exif(plain, big_endian_exif(disagreeing))).focal_length_px == pytest.approx(
        50 * 1000 / FILM_DIAGONAL_MM
    )
    # Only the sensor's figures make the value exact (the depth stage then does not settle it).
    assert imaging.probe(with_exif(plain, big_endian_exif(tags))).focal_length_exact
    assert imaging.probe(with_exif(plain, big_endian_exif(agreeing))).focal_length_exact
    assert not imaging.probe(with_exif(plain, big_endian_exif(disagreeing))).focal_length_exact
    assert not imaging.probe(with_exif(plain, big_endian_exif({0xA405: (3, 37)}))).focal_length_exact


@pytest.mark.parametrize(
    "tags",
    [
        {0x920A: (5, 4.25)},  # a focal length in mm without the sensor's size says nothing in pixels
        {0xA405: (3, 0)},
        {0xA405: (3, 1)},  # 1 mm equivalent: a 175° field of view, not a camera's
        {0x920A: (5, 4.25), 0xA20E: (5, 10000.0), 0xA210: (3, 9)},  # an unknown unit
    ],
)
def test_missing_or_implausible_focal_lengths_read_as_unknown(tags: dict[int, tuple[int, float]]) -> None:
    plain = imaging.encode(np.full((600, 800, 3), 90, np.uint8))[0]
    assert imaging.probe(with_exif(plain, big_endian_exif(tags))).focal_length_px == 0.0


def test_a_camera_scenes_focal_length_survives_the_35mm_convention() -> None:
    """A known camera's focal length written as a camera would (35 mm equivalent, whole mm) and
    read back: within the rounding of a millimetre."""
    for size, fov in (((1024, 768), 60), ((768, 1024), 45), ((1200, 800), 70)):
        focal = 0.5 * size[0] / math.tan(math.radians(fov) / 2)
        f35 = round(focal * FILM_DIAGONAL_MM / math.hypot(*size))
        info = imaging.probe(exif_jpeg(*size, focal_35mm=f35))
        assert info.focal_length_px == pytest.approx(focal, rel=0.5 / f35 + 1e-9)


TILES = scenes.tile_texture(128, tiles=1)


def normal_error(plane: depth_pb.EstimatePlaneResponse, truth: np.ndarray, width: int, height: int) -> float:
    H = homography.from_list(list(plane.homography.m))
    f = plane.focal_length_px
    K_inv = np.linalg.inv(np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]]))
    normal = np.cross(K_inv @ H[:, 0], K_inv @ H[:, 1])
    return math.degrees(math.acos(min(1.0, abs(float(normal @ truth)) / float(np.linalg.norm(normal)))))


def test_the_depth_stage_uses_the_exif_focal_length_where_the_lines_cannot_give_one() -> None:
    """A head-on floor (its rows parallel in the photo) fixes no focal length: the 60° guess tilts
    the plane by degrees, the EXIF's (as the gateway passes it) puts it within a degree."""
    scene = scenes.camera_scene(scenes.View(45, 30, 0), TILES, TILES, size=(640, 480), supersample=2)
    mask = (scene.visible_surface * 255).astype(np.uint8)
    f35 = round(scene.focal * FILM_DIAGONAL_MM / 800)
    exif_focal = imaging.probe(exif_jpeg(640, 480, focal_35mm=f35)).focal_length_px
    request = depth_pb.EstimatePlaneRequest(width=640, height=480, exif_focal_length_px=exif_focal)
    plane = lines_plane(scene.photo, mask, request)
    # Rows parallel in the photo cannot move the EXIF's value (what a finite pair does: below).
    assert plane.focal_source == "exif" and plane.focal_length_px == pytest.approx(exif_focal, rel=0.002)
    assert normal_error(plane, scene.normal, 640, 480) < 1.0
    guessed = lines_plane(scene.photo, mask, depth_pb.EstimatePlaneRequest(width=640, height=480))
    assert guessed.focal_source == "assumed"
    assert normal_error(guessed, scene.normal, 640, 480) > 3.0
    # A hint wins over the EXIF.
    hinted = lines_plane(
        scene.photo,
        mask,
        depth_pb.EstimatePlaneRequest(width=640, height=480, focal_length_px=500, exif_focal_length_px=exif_focal),
    )
    assert (hinted.focal_source, hinted.focal_length_px) == ("hint", 500)


def test_lines_that_fix_the_focal_length_settle_an_exifs_rounded_value_but_not_a_hint() -> None:
    """A turned floor's two vanishing points are both in reach: with the EXIF 2 % off (a 24 mm
    equivalent's rounding), the lines bring the focal length within half a percent of the truth,
    and the texture's scale with it. A client's hint is taken as exact."""
    scene = scenes.camera_scene(scenes.View(60, 35, 20), TILES, TILES, size=(640, 480), supersample=2)
    mask = (scene.visible_surface * 255).astype(np.uint8)
    off = scene.focal * 1.02
    request = depth_pb.EstimatePlaneRequest(width=640, height=480, exif_focal_length_px=off)
    plane = lines_plane(scene.photo, mask, request)
    assert plane.focal_source == "exif"
    assert plane.focal_length_px == pytest.approx(scene.focal, rel=0.005)
    assert normal_error(plane, scene.normal, 640, 480) < 0.3
    hinted = lines_plane(scene.photo, mask, depth_pb.EstimatePlaneRequest(width=640, height=480, focal_length_px=off))
    assert (hinted.focal_source, hinted.focal_length_px) == ("hint", off)


def test_an_exact_exif_focal_length_is_not_settled_by_the_lines() -> None:
    """The same turned floor whose lines settle a rounded 35 mm value: told the EXIF's value is the
    sensor's exact one (as the gateway passes it), the depth stage keeps it as it is."""
    scene = scenes.camera_scene(scenes.View(60, 35, 20), TILES, TILES, size=(640, 480), supersample=2)
    mask = (scene.visible_surface * 255).astype(np.uint8)
    off = scene.focal * 1.02
    request = depth_pb.EstimatePlaneRequest(
        width=640, height=480, exif_focal_length_px=off, exif_focal_length_exact=True
    )
    plane = lines_plane(scene.photo, mask, request)
    assert (plane.focal_source, plane.focal_length_px) == ("exif", off)


def test_a_quads_rectangle_fixes_the_focal_length_before_the_exif() -> None:
    turned = scenes.camera_scene(scenes.View(60, 35, 20), TILES, TILES, size=(320, 240), supersample=1)
    plane = quad_plane(turned.quad, 320, 240, exif_focal=999.0)
    assert plane.focal_source == "rectangle"
    assert plane.focal_length_px == pytest.approx(turned.focal, rel=1e-6)
    head_on = scenes.camera_scene(scenes.View(45, 30, 0), TILES, TILES, size=(320, 240), supersample=1)
    plane = quad_plane(head_on.quad, 320, 240, exif_focal=head_on.focal)
    assert (plane.focal_source, plane.focal_length_px) == ("exif", head_on.focal)
    # The rectangle's aspect (4 x 5 m) comes out right with the EXIF's focal length.
    assert plane.aspect_ratio == pytest.approx(scenes.FLOOR_M[0] / scenes.FLOOR_M[1], rel=1e-6)
    assert quad_plane(head_on.quad, 320, 240).focal_source == "assumed"


@pytest.mark.parametrize("orientation", [1, 6])
@pytest.mark.parametrize(
    "box", [(252, 0, 1764, 1512), (0, 189, 2016, 1323), (0, 0, 1008, 1512)], ids=["square", "16:9", "half"]
)
def test_a_crop_that_keeps_the_exif_keeps_the_focal_length_in_pixels(
    box: tuple[int, int, int, int], orientation: int
) -> None:
    """A phone photo (2016 x 1512 stored, 26 mm equivalent) cropped by a tool that keeps its EXIF,
    PixelX/YDimension included: the lens's focal length in pixels is unchanged by a crop, though
    the cropped image's diagonal is shorter (read by it, a square crop came out 15 % short). (A crop
    of the photo's own aspect cannot be told from a resize: it is read as one.)"""
    exif = Image.Exif()
    exif[0x0112] = orientation
    sub = exif.get_ifd(0x8769)
    sub[0xA405], sub[0xA002], sub[0xA003] = 26, 2016, 1512
    photo = Image.fromarray(np.full((1512, 2016, 3), 90, np.uint8)).crop(box)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", exif=exif.tobytes())
    info = imaging.probe(buffer.getvalue())
    assert info.focal_length_px == pytest.approx(26 * math.hypot(2016, 1512) / FILM_DIAGONAL_MM)
    # Scaled down after the crop (no longer one whole side): what the diagonal gives, as before.
    small = io.BytesIO()
    photo.resize((photo.width // 2, photo.height // 2)).save(small, "JPEG", exif=exif.tobytes())
    resized = imaging.probe(small.getvalue())
    assert resized.focal_length_px <= info.focal_length_px / 2 + 1e-6
    assert resized.focal_length_px >= 26 * math.hypot(photo.width // 2, photo.height // 2) / FILM_DIAGONAL_MM - 1e-6


@pytest.mark.parametrize("size", [(1512, 2016), (1008, 1344), (3024, 4032)])
def test_a_photo_turned_by_an_editor_that_kept_the_exif_keeps_its_focal_length(size: tuple[int, int]) -> None:
    """A portrait phone photo (4032 x 3024 stored, Orientation 6, 26 mm equivalent) normalised as web
    back ends do: Pillow's exif_transpose turns the pixels and drops the Orientation tag, but keeps
    PixelX/YDimension as the camera wrote them (4032 x 3024), then a resize. Compared with them
    unturned, the scaled-down frame "fit" at 2/3 instead of 1/2 and its focal length read 33 % long
    (past the depth stage's 4 % tolerance; and the sensor's figures, taken as exact, the same)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(np.full((3024, 4032, 3), 90, np.uint8)).save(buffer, "JPEG", exif=exif.tobytes())
    turned = ImageOps.exif_transpose(Image.open(io.BytesIO(buffer.getvalue()))).resize(size)
    kept = Image.Exif()  # what exif_transpose leaves: no Orientation, the Exif IFD as it was
    sub = kept.get_ifd(0x8769)
    sub[0xA405], sub[0xA002], sub[0xA003] = 26, 4032, 3024
    # A 5.6 mm wide sensor (720 px a mm) behind a 4.25 mm lens.
    sub[0x920A], sub[0xA20E], sub[0xA210] = IFDRational(425, 100), IFDRational(720, 1), 4
    out = io.BytesIO()
    turned.save(out, "JPEG", exif=kept.tobytes())
    info = imaging.probe(out.getvalue())
    assert (info.width, info.height) == size
    assert info.focal_length_exact
    assert info.focal_length_px == pytest.approx(4.25 * 720 * size[1] / 4032, rel=1e-6)
    by_35mm = imaging.exif_focal(imaging.Exif(focal_35mm=26, pixel_dimensions=(4032, 3024)), *size, size)[0]
    assert by_35mm == pytest.approx(26 * math.hypot(*size) / FILM_DIAGONAL_MM, rel=1e-6)
