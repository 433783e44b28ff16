import io
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from render.imaging.v1 import imaging_pb2
from renderkit import imaging


def jpeg(width: int, height: int) -> bytes:
    return imaging.encode(np.full((height, width, 3), 120, np.uint8))[0]


def test_probe_reads_type_and_size_without_decoding() -> None:
    info = imaging.probe(jpeg(320, 200))
    assert (info.content_type, info.width, info.height) == ("image/jpeg", 320, 200)


@pytest.mark.parametrize("data, message", [(b"", "empty"), (b"not an image at all", "not a JPEG")])
def test_probe_refuses_non_images(data: bytes, message: str) -> None:
    with pytest.raises(imaging.ImageError, match=message):
        imaging.probe(data)


def test_probe_refuses_decompression_bombs() -> None:
    with pytest.raises(imaging.ImageError, match="more than"):
        imaging.probe(jpeg(400, 300), max_pixels=100_000)


def test_probe_refuses_other_formats() -> None:
    _ok, gif = cv2.imencode(".bmp", np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(imaging.ImageError, match="BMP"):
        imaging.probe(gif.tobytes())


@pytest.mark.parametrize(
    "fmt, content_type",
    [
        (imaging_pb2.FORMAT_JPEG, "image/jpeg"),
        (imaging_pb2.FORMAT_PNG, "image/png"),
        (imaging_pb2.FORMAT_WEBP, "image/webp"),
    ],
)
def test_renditions_are_encoded_at_their_sizes(fmt: imaging_pb2.Format, content_type: str) -> None:
    image = np.random.default_rng(0).integers(0, 255, (600, 1000, 3), dtype=np.uint8)
    spec = imaging_pb2.OutputSpec(
        format=fmt, renditions=[imaging_pb2.Rendition(name="full"), imaging_pb2.Rendition(name="preview", max_side=512)]
    )
    full, preview = imaging.encode_renditions(image, spec)
    assert (full.width, full.height, preview.width, preview.height) == (1000, 600, 512, 307)
    assert full.content_type == preview.content_type == content_type
    decoded = imaging.decode_bgr(preview.data)
    assert decoded.shape == (307, 512, 3)
    if fmt == imaging_pb2.FORMAT_PNG:
        np.testing.assert_array_equal(imaging.decode_bgr(full.data), image)


def test_mask_alpha_is_used_when_colour_is_flat() -> None:
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[5:15, 10:20, 3] = 255
    mask = imaging.decode_gray(imaging.encode_mask(rgba))
    assert mask[10, 15] == 255 and mask[0, 0] == 0


def test_a_white_on_black_mask_with_a_stray_translucent_pixel_is_read_by_its_colour() -> None:
    """Any alpha under 255 made the alpha the mask: a white-on-black mask opaque but for one pixel
    at 254 covered the whole photo (a review found it). A cut-out (some pixel at most half opaque,
    its colours the photo's) is still read by its alpha."""
    rgba = np.full((20, 30, 4), 255, np.uint8)
    rgba[:, :, :3] = 0
    rgba[5:15, 10:20, :3] = 255
    rgba[0, 0, 3] = 254
    mask = imaging.decode_gray(imaging.encode_mask(rgba))
    assert mask[10, 15] == 255 and mask[1, 1] == 0
    cut_out = np.random.default_rng(1).integers(0, 256, (20, 30, 4), np.uint8)
    cut_out[:, :, 3] = 0
    cut_out[5:15, 10:20, 3] = 255
    mask = imaging.decode_gray(imaging.encode_mask(cut_out))
    assert mask[10, 15] == 255 and mask[1, 1] == 0


@pytest.mark.parametrize("shape", [(1, 1), (37, 53), (64, 48)])
def test_masks_are_standard_lossless_pngs(shape: tuple[int, int]) -> None:
    """The hand-built PNG decodes bit-exactly with OpenCV and with Pillow (another decoder)."""
    mask = (np.random.default_rng(0).random(shape) * 255).astype(np.uint8)
    mask[: shape[0] // 2] = 255  # flat rows, as masks have
    data = imaging.encode_mask(mask)
    assert imaging.probe(data).content_type == "image/png"
    np.testing.assert_array_equal(imaging.decode_gray(data), mask)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), mask)


def test_srgb_linear_round_trip() -> None:
    values = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(imaging.linear_to_srgb(imaging.srgb_to_linear(values)), values)


@pytest.mark.parametrize("shape", [(5, 7, 3), (5, 7)])
def test_srgb_to_linear_writes_into_a_view_when_given_one(shape: tuple[int, ...]) -> None:
    """As the mip atlas is made: into a part of a larger array, the same values as a new array."""
    image = np.random.default_rng(2).integers(0, 256, shape, dtype=np.uint8)
    larger = np.zeros((9, 11, *shape[2:]), np.float32)
    view = larger[2:7, 3:10]
    assert imaging.srgb_to_linear(image, view) is not None
    np.testing.assert_array_equal(view, imaging.srgb_to_linear(image))
    assert not larger[:2].any() and not larger[:, :3].any()  # nothing outside the view


def test_local_storage_writes_atomically_and_deletes_folders(tmp_path: Path) -> None:
    from renderkit.storage import LocalStorage, StorageError

    storage = LocalStorage(tmp_path)
    stored = storage.put("uploads/job1/photo", b"abc", "image/jpeg")
    storage.put("uploads/job1/swatch", b"de", "image/jpeg")
    storage.put("renders/t/-/job1/full.jpg", b"out", "image/jpeg")
    assert stored.size_bytes == 3 and stored.uri == "local:uploads/job1/photo"
    assert storage.get("uploads/job1/photo") == b"abc"
    assert not list(tmp_path.glob("uploads/job1/.tmp-*"))
    assert storage.delete_prefix("uploads/job1/") == 2
    assert not (tmp_path / "uploads" / "job1").exists() and storage.get("renders/t/-/job1/full.jpg") == b"out"
    storage.delete("renders/t/-/job1/full.jpg")
    assert not (tmp_path / "renders").exists()
    for bad in ("../escape", "/abs", "a//b", ""):
        with pytest.raises(StorageError):
            storage.put(bad, b"x", "text/plain")


# What each EXIF orientation does to the displayed image to store it (the inverse of what a viewer
# applies), as Pillow transposes: the stored pixels are the displayed ones turned the other way.
_STORE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # a viewer turns it back 90° clockwise
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def displayed_scene() -> np.ndarray:
    """An asymmetric 90x60 BGR image in blocks (so JPEG keeps it close) that every turn changes."""
    image = np.zeros((60, 90, 3), np.uint8)
    image[:30, :45] = (0, 0, 220)
    image[:30, 45:] = (0, 200, 0)
    image[30:, :30] = (220, 0, 0)
    image[30:, 30:] = (200, 200, 200)
    return image


def stored_with_orientation(displayed: np.ndarray, orientation: int, fmt: str, **options: object) -> bytes:
    """The image stored as a phone would: the pixels turned, the EXIF Orientation tag set."""
    image = Image.fromarray(np.ascontiguousarray(displayed[:, :, ::-1]))
    turn = _STORE[orientation]
    if turn is not None:
        image = image.transpose(turn)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, fmt, exif=exif, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt, options", [("JPEG", {"quality": 95}), ("PNG", {})])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_probe_and_every_decode_agree_on_the_displayed_frame(
    fmt: str, options: dict[str, object], orientation: int
) -> None:
    displayed = displayed_scene()
    data = stored_with_orientation(displayed, orientation, fmt, **options)
    info = imaging.probe(data)
    assert (info.orientation, info.width, info.height) == (orientation, 90, 60)
    tolerance = 6 if fmt == "JPEG" else 0
    bgr = imaging.decode_bgr(data)
    assert bgr.shape == (60, 90, 3)
    assert np.abs(bgr.astype(int) - displayed).mean() <= tolerance
    grey = imaging.decode_gray(data)
    assert grey.shape == (60, 90)
    assert np.abs(grey.astype(int) - cv2.cvtColor(displayed, cv2.COLOR_BGR2GRAY)).mean() <= tolerance
    swatch, transparent = imaging.decode_swatch(data)
    assert swatch.shape == (60, 90, 3) and transparent == 0.0
    # Pillow's own reading of the tag agrees (another implementation of the same rules).
    with Image.open(io.BytesIO(data)) as image:
        upright = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))[:, :, ::-1]
    assert np.abs(bgr.astype(int) - upright).mean() <= tolerance


def png_with_late_exif(data: bytes) -> bytes:
    """The PNG with its eXIf chunk moved after its image data (PNG's first editions allowed it)."""
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        chunks.append(data[pos : pos + 12 + length])
        pos += 12 + length
    exif = [c for c in chunks if c[4:8] == b"eXIf"]
    rest = [c for c in chunks if c[4:8] != b"eXIf"]
    return data[:8] + b"".join(rest[:-1]) + b"".join(exif) + rest[-1]


@pytest.mark.parametrize("orientation", [3, 6, 8])
@pytest.mark.parametrize("late", ["webp", "png-exif-after-idat"])
def test_an_orientation_stated_after_the_image_data_is_not_applied_as_browsers_do_not(
    late: str, orientation: int
) -> None:
    """Browsers turn an image only by metadata before its image data (CSS Images 3): a WebP's EXIF
    chunk (always after the bitstream) and a PNG's eXIf after its IDAT leave the photo as stored.
    The console draws hints over what the browser shows, so the stages must see the same frame."""
    displayed = displayed_scene()
    if late == "webp":
        data = stored_with_orientation(displayed, orientation, "WEBP", lossless=True)
    else:
        data = png_with_late_exif(stored_with_orientation(displayed, orientation, "PNG"))
    with Image.open(io.BytesIO(data)) as image:
        stored = np.asarray(image.convert("RGB"))[:, :, ::-1]
    info = imaging.probe(data)
    assert (info.orientation, info.width, info.height) == (1, stored.shape[1], stored.shape[0])
    np.testing.assert_array_equal(imaging.decode_bgr(data), stored)


def test_a_mask_stored_rotated_is_read_upright() -> None:
    mask = np.zeros((60, 90), np.uint8)
    mask[40:, 10:50] = 255
    stored = Image.fromarray(mask).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "PNG", exif=exif)
    np.testing.assert_array_equal(imaging.decode_gray(buffer.getvalue()), mask)


def photo_jpeg(width: int = 640, height: int = 480) -> bytes:
    rng = np.random.default_rng(1)
    image = cv2.resize(rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8), (width, height))
    return imaging.encode(image)[0]


def test_a_truncated_jpeg_is_refused() -> None:
    data = photo_jpeg()
    for cut in (len(data) // 2, len(data) - 2, 300):
        with pytest.raises(imaging.ImageError, match=r"^the image is truncated or corrupt$"):
            imaging.probe(data[:cut])
        with pytest.raises(imaging.ImageError, match="truncated"):
            imaging.decode_bgr(data[:cut])


def test_jpeg_walk_accepts_progressive_scans_exif_thumbnails_and_trailing_data() -> None:
    image = Image.open(io.BytesIO(photo_jpeg()))
    exif = Image.Exif()
    exif[0x0112] = 3
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", progressive=True, exif=exif)
    progressive = buffer.getvalue()
    assert imaging.probe(progressive).orientation == 3
    # An EXIF block holding a JPEG thumbnail (with its own EOI) inside APP1.
    thumb = io.BytesIO()
    image.resize((64, 48)).save(thumb, "JPEG")
    app1_payload = b"Exif\x00\x00" + _tiff_with_thumbnail(thumb.getvalue())
    app1 = b"\xff\xe1" + (len(app1_payload) + 2).to_bytes(2, "big") + app1_payload
    plain = photo_jpeg()
    with_thumbnail = plain[:2] + app1 + plain[2:]
    assert imaging.probe(with_thumbnail).orientation == 6
    assert imaging.probe(plain + b"appended by a phone \xff\xd8 not an image").width == 640
    with pytest.raises(imaging.ImageError, match="truncated"):
        imaging.probe(with_thumbnail[: len(with_thumbnail) - 1000])


def _tiff_with_thumbnail(thumbnail: bytes) -> bytes:
    """A little-endian TIFF: IFD0 with Orientation 6, then the thumbnail bytes (an EOI among them)."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + thumbnail


def test_truncated_pngs_and_webps_are_refused() -> None:
    image = np.random.default_rng(2).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    png = imaging.encode(image, imaging_pb2.FORMAT_PNG)[0]
    webp = imaging.encode(image, imaging_pb2.FORMAT_WEBP)[0]
    assert imaging.probe(png).width == imaging.probe(webp).width == 300
    for data in (png[: len(png) // 2], png[:-12], webp[: len(webp) // 2], webp[:-1]):
        with pytest.raises(imaging.ImageError, match=r"^the image is truncated or corrupt$"):
            imaging.probe(data)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def flat_png(width: int, height: int) -> bytes:
    """A valid greyscale PNG of any claimed size whose rows are all zero (a few KB of zlib)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)),
            png_chunk(b"IDAT", body),
            png_chunk(b"IEND", b""),
        )
    )


def test_a_png_bomb_is_refused_with_its_true_size_before_any_decode() -> None:
    header_only = flat_png(30000, 30000)[:33] + png_chunk(b"IDAT", b"x") + png_chunk(b"IEND", b"")
    message = "the image is 30000x30000 (900 MP), more than 40,000,000 pixels"
    with pytest.raises(imaging.ImageError) as info:
        imaging.probe(header_only)
    assert str(info.value) == message
    for decode in (imaging.decode_bgr, imaging.decode_gray, imaging.decode_swatch):
        with pytest.raises(imaging.ImageError, match="900 MP"):
            decode(header_only)  # type: ignore[operator]


@pytest.mark.parametrize("first", ["renderkit", "cv2"])
def test_opencv_itself_refuses_decodes_over_the_pixel_limit(first: str) -> None:
    """OpenCV's own limit comes from the environment the renderkit package sets before cv2 loads:
    a decode that skipped the probe still cannot allocate more than the limit (a process that
    loads cv2 before renderkit, the control, decodes it)."""
    script = (
        f"import {first}, renderkit, cv2, numpy as np, sys\n"
        "data = np.frombuffer(sys.stdin.buffer.read(), np.uint8)\n"
        "try:\n"
        "    print('decoded' if cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) is not None else 'failed')\n"
        "except cv2.error:\n"
        "    print('refused')\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_IO_") and k != "MAX_IMAGE_PIXELS"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=flat_png(7000, 6000),  # 42 MP
        capture_output=True,
        check=True,
        cwd=Path(__file__).parents[2],
        env=clean,
    )
    assert result.stdout.strip() == (b"refused" if first == "renderkit" else b"decoded")


def test_a_raised_pixel_limit_is_every_decodes_default() -> None:
    """A stage calls the decodes without a limit: with MAX_IMAGE_PIXELS raised, a photo the
    gateway accepted must not be refused there (a 45 MP photo was, at the 40 MP default)."""
    script = (
        "import sys\n"
        "from renderkit import imaging\n"
        "data = sys.stdin.buffer.read()\n"
        "print(imaging.probe(data).width, imaging.decode_gray(data).shape[1])\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_IO_")}
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=flat_png(7000, 6000),  # 42 MP
        capture_output=True,
        cwd=Path(__file__).parents[2],
        env={**clean, "MAX_IMAGE_PIXELS": "60000000"},
    )
    assert result.stdout.split() == [b"7000", b"7000"], result.stderr.decode()[-500:]


def with_second_frame_header(data: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header claiming another size, and its own placed again after the
    scan, before the EOI: libjpeg decodes by the first, a walk that kept the last read the real one."""
    at = data.index(b"\xff\xc0")
    length = struct.unpack(">H", data[at + 2 : at + 4])[0]
    own = data[at : at + 2 + length]
    other = bytearray(own)
    other[5:9] = struct.pack(">HH", height, width)
    assert data.endswith(b"\xff\xd9")
    return data[:at] + bytes(other) + data[at + 2 + length : -2] + own + b"\xff\xd9"


def test_an_image_with_two_frame_headers_is_refused_before_it_decodes_at_another_size() -> None:
    lying = with_second_frame_header(jpeg(320, 200), 6000, 6000)
    assert cv2.imdecode(np.frombuffer(lying, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (6000, 6000)
    with pytest.raises(imaging.ImageError, match="more than one frame header"):
        imaging.probe(lying)

    def webp_chunks(width: int, height: int, **options: object) -> bytes:
        out = io.BytesIO()
        Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(out, "WEBP", **options)
        return out.getvalue()[12:]  # the chunks after RIFF, its size and WEBP

    for options in ({"quality": 10}, {"lossless": True}):
        body = b"WEBP" + webp_chunks(1200, 1200, **options) + webp_chunks(320, 200, **options)
        two = b"RIFF" + struct.pack("<I", len(body)) + body
        with pytest.raises(imaging.ImageError, match="more than one image"):
            imaging.probe(two)


def rgba_png(rgba: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", rgba)
    assert ok
    return buffer.tobytes()


def test_a_swatch_with_alpha_is_composited_over_the_grout() -> None:
    """Transparent joints (whose stored colour is black) show the grout colour, not black lines."""
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[:, :, :3] = (30, 90, 160)
    rgba[2:38, 2:38, 3] = 255  # a tile with a transparent 2 px joint around it (black underneath)
    data = rgba_png(rgba)
    assert imaging.probe(data).has_alpha
    swatch, transparent = imaging.decode_swatch(data, "#C8C8C8")
    assert transparent == pytest.approx(1 - 36 * 36 / 1600)
    assert tuple(swatch[0, 0]) == (200, 200, 200) and tuple(swatch[20, 20]) == (30, 90, 160)
    red_grout, _ = imaging.decode_swatch(data, "#FF0000")
    assert tuple(red_grout[0, 0]) == (0, 0, 255)
    # Half transparent over white, mixed in linear light: brighter than the sRGB average.
    rgba[:, :, 3] = 128
    rgba[:, :, :3] = 0
    half, share = imaging.decode_swatch(rgba_png(rgba), "#FFFFFF")
    assert share == pytest.approx(127 / 255) and 180 <= int(half[0, 0, 0]) <= 190


def test_a_photo_with_alpha_is_composited_over_white() -> None:
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[:, :10] = (10, 20, 30, 255)
    photo = imaging.decode_bgr(rgba_png(rgba))
    assert tuple(photo[5, 5]) == (10, 20, 30) and tuple(photo[5, 15]) == (255, 255, 255)


@pytest.mark.parametrize("text", ["", "#c8c8c8", "#00FF7f"])
def test_grout_colours(text: str) -> None:
    assert len(imaging.grout_bgr(text)) == 3


@pytest.mark.parametrize("text", ["C8C8C8", "#C8C8C", "#GGGGGG", "red", "#C8C8C8FF"])
def test_malformed_grout_colours_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="#RRGGBB"):
        imaging.grout_bgr(text)


def test_probing_a_4k_jpeg_takes_about_a_millisecond() -> None:
    data = photo_jpeg(3840, 2160)
    started = time.perf_counter()
    for _ in range(10):
        imaging.probe(data)
    assert (time.perf_counter() - started) / 10 < 0.01


def test_mask_pixels_are_numpys_nonzero_in_the_same_order() -> None:
    """Every step-th of np.nonzero(mask > 127), whether the mask is found in one band of rows or in
    several (the last mask: three bands, the sample running on across their borders)."""
    rng = np.random.default_rng(3)
    for mask in (
        np.zeros((5, 7), np.uint8),
        np.full((3, 4), 128, np.uint8),
        np.full((3, 4), 127, np.uint8),
        (rng.random((301, 499)) * 255).astype(np.uint8),
        ((rng.random((3000, 700)) > 0.4) * 255).astype(np.uint8),
    ):
        expected_rows, expected_cols = np.nonzero(mask > 127)
        for step in (1, 2, 7, 1000):
            rows, cols = imaging.mask_pixels(mask, step)
            assert np.array_equal(rows, expected_rows[::step]) and np.array_equal(cols, expected_cols[::step])


def test_convex_coverage_is_the_share_of_the_image_inside_the_polygon() -> None:
    inside = np.array([[100, 100], [300, 100], [300, 200], [100, 200]], np.float64)
    assert imaging.convex_coverage(inside, 640, 480) == pytest.approx(200 * 100 / (640 * 480))
    assert imaging.convex_coverage(inside[::-1], 640, 480) == pytest.approx(200 * 100 / (640 * 480))
    half_out = inside + np.array([-200, 0])  # x from -100 to 100: half of it is off the photo
    assert imaging.convex_coverage(half_out, 640, 480) == pytest.approx(100 * 100 / (640 * 480))
    assert imaging.convex_coverage(inside + np.array([1000, 0]), 640, 480) == 0.0  # wholly beside the photo
    # What the drawn mask covers, to its anti-aliased edge.
    quad = np.array([[50.5, 400.2], [590.3, 410.7], [420.1, 120.4], [180.6, 110.9]])
    drawn = imaging.polygon_mask(quad, 640, 480).astype(np.float64).sum() / 255 / (640 * 480)
    assert imaging.convex_coverage(quad, 640, 480) == pytest.approx(drawn, rel=0.01)


@pytest.mark.parametrize("reach", [1e6, 1e9, 1e15])
def test_a_polygon_reaching_far_past_the_image_is_drawn_as_far_as_it_shows(reach: float) -> None:
    """Corners become int32 fixed point: past ~1.3e8 px they wrapped round and the mask came out
    empty. What lies inside the image is the same as for the polygon cut at the image's edges."""
    around = np.array([[-reach, -reach], [reach, -reach], [reach, reach], [-reach, reach]])
    assert (imaging.polygon_mask(around, 640, 480) == 255).all()
    # A concave outline with a corner far off to the right: inside the image, its edges keep their slopes.
    arrow = np.array([[100.0, 100.0], [reach, 240.0], [100.0, 380.0], [300.0, 240.0]])
    slope = 140.0 / (reach - 100.0)
    far_edge = [[2000.0, 100.0 + 1900.0 * slope], [2000.0, 380.0 - 1900.0 * slope]]  # the same slopes, cut at x = 2000
    near = np.array([[100.0, 100.0], *far_edge, [100.0, 380.0], [300.0, 240.0]])
    drawn = imaging.polygon_mask(arrow, 640, 480).astype(int)
    assert np.abs(drawn - imaging.polygon_mask(near, 640, 480)).max() <= 1


def test_an_image_too_wide_for_webp_is_an_image_error() -> None:
    """WebP stores a side in 14 bits; OpenCV's own error became a stage's crash (PIPELINE_ERROR)."""
    with pytest.raises(imaging.ImageError, match="at most 16383 px a side"):
        imaging.encode(np.full((64, 16400, 3), 120, np.uint8), imaging_pb2.FORMAT_WEBP)
    data, content_type = imaging.encode(np.full((64, 16383, 3), 120, np.uint8), imaging_pb2.FORMAT_WEBP)
    assert content_type == "image/webp" and imaging.probe(data).width == 16383


def with_scans(progressive: bytes, scans: int) -> bytes:
    """The progressive JPEG with its last scan repeated until it has `scans` scans (a scan bomb
    when many: each scan is a pass of the decoder over every coefficient)."""
    last = progressive.rindex(b"\xff\xda")  # a scan's own 0xFF bytes are stuffed: this is its marker
    scan = progressive[last:-2]  # to the EOI
    return progressive[:-2] + scan * (scans - progressive.count(b"\xff\xda")) + progressive[-2:]


def test_a_jpeg_with_more_scans_than_any_encoder_writes_is_refused_at_the_probe() -> None:
    from gateway.validation import Limits, check_image

    buffer = io.BytesIO()
    Image.new("L", (64, 64), 128).save(buffer, "JPEG", progressive=True)
    most = with_scans(buffer.getvalue(), imaging.MAX_JPEG_SCANS)
    assert imaging.probe(most).width == 64
    bomb = with_scans(buffer.getvalue(), imaging.MAX_JPEG_SCANS + 1)
    message = f"the JPEG has more than {imaging.MAX_JPEG_SCANS} scans (progressive passes)"
    for read in (imaging.probe, imaging.decode_gray, imaging.decode_swatch):
        with pytest.raises(imaging.ImageError) as info:
            read(bomb)  # type: ignore[operator]
        assert str(info.value) == message
    # At submit, the refusal names the field (INVALID_ARGUMENT with that field's violation).
    assert check_image(bomb, "material_swap.mask.data", Limits(), 1)[0] == [("material_swap.mask.data", message)]


def webp_with_chunks(extra: bytes) -> bytes:
    webp = imaging.encode(np.full((16, 16, 3), 90, np.uint8), imaging_pb2.FORMAT_WEBP)[0]
    body = webp[12:] + extra
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def test_header_walks_stop_after_ten_thousand_parts() -> None:
    """Files of empty markers or chunks are refused once the walk has visited MAX_HEADER_PARTS
    (Python-speed steps: a 40 MB file of them took ~1.7 s a probe); fill bytes, skipped at C speed,
    are not parts."""
    parts = imaging.MAX_HEADER_PARTS + 1
    plain = jpeg(16, 16)
    png = imaging.encode(np.full((16, 16, 3), 90, np.uint8), imaging_pb2.FORMAT_PNG)[0]
    empty = png_chunk(b"teXt", b"")
    for data, message in (
        (plain[:2] + b"\xff\x01" * parts + plain[2:], "the JPEG has more than 10,000 markers"),
        (png[:33] + empty * parts + png[33:], "the PNG has more than 10,000 chunks"),
        (webp_with_chunks(b"JUNK\0\0\0\0" * parts), "the WebP has more than 10,000 chunks"),
    ):
        with pytest.raises(imaging.ImageError) as info:
            imaging.probe(data)
        assert str(info.value) == message
    assert imaging.probe(plain[:2] + b"\xff" * 100_000 + plain[2:]).width == 16
    assert imaging.probe(png[:33] + empty * 100 + png[33:]).width == 16


def test_only_a_pngs_first_colour_profile_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """PNG allows one iCCP chunk; each is inflated up to 4 MB, so a file of a thousand (4 MB of
    them) took seconds a probe. Later ones are ignored, as libpng ignores them."""
    inflated: list[bytes] = []
    png_profile = imaging._png_profile

    def counted(body: bytes) -> bytes:
        inflated.append(body)
        return png_profile(body)

    monkeypatch.setattr(imaging, "_png_profile", counted)
    first, other = b"first profile" * 20, b"other profile" * 20
    png = imaging.encode(np.full((16, 16, 3), 90, np.uint8), imaging_pb2.FORMAT_PNG)[0]
    chunks = [png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(profile)) for profile in [first] + [other] * 50]
    assert imaging.probe(png[:33] + b"".join(chunks) + png[33:]).icc_profile == first
    assert len(inflated) == 1


def test_a_profile_over_the_limit_is_dropped_by_the_probe() -> None:
    """A profile too large to use (icc.MAX_PROFILE_BYTES) is not kept in the header, where every
    decode would hand it on (and caches kept it: 30 MB a request)."""
    from renderkit import icc

    junk = b"\x01" * (icc.MAX_PROFILE_BYTES + 2)
    data = webp_with_chunks(b"ICCP" + struct.pack("<I", len(junk)) + junk)
    assert imaging.probe(data).icc_profile == b""
    fits = junk[: icc.MAX_PROFILE_BYTES]
    assert imaging.probe(webp_with_chunks(b"ICCP" + struct.pack("<I", len(fits)) + fits)).icc_profile == fits
    assert imaging.decode_bgr(data).shape == (16, 16, 3)


def test_a_jpeg_whose_data_is_far_short_of_its_headers_size_is_refused() -> None:
    """A 320x200 JPEG whose frame header says 6000x6000 and still ends properly: libjpeg filled
    the rest with grey, warning only (a render of a grey photo, charged)."""
    small = jpeg(320, 200)
    sof = small.index(b"\xff\xc0")
    lying = small[: sof + 5] + struct.pack(">HH", 6000, 6000) + small[sof + 9 :]
    with pytest.raises(imaging.ImageError, match="far shorter than the size its header states"):
        imaging.probe(lying)
    # Flat photos, the least data a size can have, pass: baseline, progressive, greyscale.
    for array, options in (
        (np.full((3000, 4000, 3), 128, np.uint8), {"quality": 1}),
        (np.full((3000, 4000, 3), 128, np.uint8), {"quality": 1, "progressive": True}),
        (np.zeros((3000, 4000), np.uint8), {"quality": 1, "progressive": True}),
    ):
        out = io.BytesIO()
        Image.fromarray(array).save(out, "JPEG", **options)
        assert imaging.probe(out.getvalue()).width == 4000


def _grey_png(levels: np.ndarray, bits: int, key: int) -> bytes:
    """A greyscale PNG of these levels at this bit depth, with tRNS making `key` transparent."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = []
    for row in levels:
        if bits == 16:
            packed = row.astype(">u2").tobytes()
        elif bits == 8:
            packed = row.astype(np.uint8).tobytes()
        else:
            bitstring = "".join(format(int(v), f"0{bits}b") for v in row)
            bitstring += "0" * (-len(bitstring) % 8)
            packed = int(bitstring, 2).to_bytes(len(bitstring) // 8, "big")
        rows.append(b"\x00" + packed)
    height, width = levels.shape
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits, 0, 0, 0, 0))
        + chunk(b"tRNS", struct.pack(">H", key))
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("bits", [1, 2, 4, 8, 16])
def test_a_greyscale_png_s_transparent_level_is_the_grout(bits: int) -> None:
    """A greyscale PNG's tRNS (one transparent grey level), which OpenCV drops, is honoured as a
    truecolour PNG's is: the level shows the grout, and the share is reported."""
    top = (1 << bits) - 1
    levels = np.full((16, 16), top, np.int64)
    levels[:, 8:] = 0  # the transparent level
    if bits > 1:
        levels[0, 8] = 1  # a level next to the key stays opaque
    swatch, transparent = imaging.decode_swatch(_grey_png(levels, bits, 0), "#FF0000")
    expected = 0.5 if bits == 1 else 0.5 - 1 / 256
    assert transparent == pytest.approx(expected)
    assert (swatch[1:, 8:] == (0, 0, 255)).all()  # the grout
    assert (swatch[:, :8] == (255, 255, 255)).all()  # the opaque white
    if bits > 1:
        assert tuple(swatch[0, 8]) != (0, 0, 255)


def with_precision(data: bytes, precision: int) -> bytes:
    """The JPEG with its frame header's sample precision changed (SOF1, extended sequential, the
    process 12-bit JPEGs use)."""
    at = data.index(b"\xff\xc0")
    return data[:at] + b"\xff\xc1" + data[at + 2 : at + 4] + bytes([precision]) + data[at + 5 :]


def test_a_12_bit_jpeg_is_refused_by_the_probe_naming_its_precision() -> None:
    """OpenCV's libjpeg decodes 8-bit samples only: a 12-bit JPEG (medical, some cameras' and
    scanners' exports) passed the probe, was accepted at submit and failed the job later with
    "the image could not be decoded" (and the caller was charged for a VALIDATION_FAILED)."""
    twelve = with_precision(jpeg(320, 200), 12)
    assert cv2.imdecode(np.frombuffer(twelve, np.uint8), cv2.IMREAD_COLOR) is None
    with pytest.raises(imaging.ImageError, match="12-bit samples"):
        imaging.probe(twelve)
    assert imaging.probe(with_precision(jpeg(320, 200), 8)).width == 320  # SOF1 at 8 bits decodes
    assert imaging.decode_bgr(with_precision(jpeg(320, 200), 8)).shape == (200, 320, 3)
