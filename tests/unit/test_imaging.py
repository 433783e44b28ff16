import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

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


def test_local_storage_writes_atomically_and_deletes_folders(tmp_path: Path) -> None:
    from renderkit.storage import LocalStorage, StorageError

    storage = LocalStorage(tmp_path)
    stored = storage.put("uploads/job1/photo", b"abc", "image/jpeg")
    storage.put("uploads/job1/swatch", b"de", "image/jpeg")
    storage.put("renders/t/-/job1/full.jpg", b"out", "image/jpeg")
    assert stored.size_bytes == 3 and stored.uri.startswith("file://") and storage.get("uploads/job1/photo") == b"abc"
    assert not list(tmp_path.glob("uploads/job1/.tmp-*"))
    assert storage.delete_prefix("uploads/job1/") == 2
    assert not (tmp_path / "uploads" / "job1").exists() and storage.get("renders/t/-/job1/full.jpg") == b"out"
    storage.delete("renders/t/-/job1/full.jpg")
    assert not (tmp_path / "renders").exists()
    for bad in ("../escape", "/abs", "a//b", ""):
        with pytest.raises(StorageError):
            storage.put(bad, b"x", "text/plain")
