"""A JPEG encoded in bands of rows on several cores is the whole image's encode, byte for byte."""

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from PIL import Image

from render.imaging.v1 import imaging_pb2
from renderkit import imaging, jpeg_bands


@pytest.fixture(autouse=True)
def two_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bands as on a machine of two cores or more, whatever this one has."""
    monkeypatch.setattr(jpeg_bands, "WORKERS", 2)


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth structure and noise: every band's entropy-coded data differs from the others'."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 16 + 2, width // 16 + 2, 3), np.uint8)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.add(image, rng.integers(0, 24, (height, width, 3), np.uint8))


def whole(image: np.ndarray, quality: int) -> bytes:
    """The whole image in one encode, restarting at every row of 16x16 MCUs."""
    mcus_a_row = -(-image.shape[1] // 16)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_RST_INTERVAL, mcus_a_row]
    ok, buf = cv2.imencode(".jpg", image, params)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(
    "width, height",
    [
        (1920, 1080),  # 4K's shape, smaller: the last band short and not a multiple of 16 rows
        (1000, 1337),  # portrait, neither side a multiple of 16
        (333, 512),  # exactly two bands
        (64, 2049),  # tall and narrow: nine bands, the last one row
    ],
)
def test_bands_join_to_the_whole_images_encode(width: int, height: int) -> None:
    image = photo(width, height)
    data = jpeg_bands.encode_jpeg(image, 90)
    assert data == whole(image, 90)
    # Other decoders read it as OpenCV does (Pillow's libjpeg), the pixels those of a plain encode.
    plain = cv2.imdecode(np.frombuffer(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1], np.uint8), 1)
    assert data is not None
    ours = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(ours, plain)
    with Image.open(io.BytesIO(data)) as pillow:
        assert pillow.size == (width, height)
        assert np.array_equal(np.asarray(pillow.convert("RGB"))[..., ::-1], ours)


def test_the_encode_through_imaging_is_banded() -> None:
    image = photo(900, 700, seed=1)
    data, content_type = imaging.encode(image, imaging_pb2.FORMAT_JPEG, 85)
    assert (data, content_type) == (whole(image, 85), "image/jpeg")


def test_the_bytes_are_the_same_whatever_the_cores_or_the_height(monkeypatch: pytest.MonkeyPatch) -> None:
    image = photo(640, 900, seed=4)
    banded = jpeg_bands.encode_jpeg(image, 90)
    monkeypatch.setattr(jpeg_bands, "WORKERS", 1)
    assert jpeg_bands.encode_jpeg(image, 90) == banded == whole(image, 90)
    short = photo(300, 400)  # too short to cut: one call, the same restarts
    assert jpeg_bands.encode_jpeg(short, 90) == whole(short, 90)


def test_single_channel_images_are_encoded_as_before() -> None:
    grey = photo(600, 800)[..., 0].copy()
    _ok, buf = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert jpeg_bands.encode_jpeg(grey, 90) == buf.tobytes()


@pytest.mark.parametrize("shape", [(65_510, 16, 3), (600, 65_510, 3)])
def test_an_image_larger_than_libjpeg_writes_is_refused_not_joined(shape: tuple[int, int, int]) -> None:
    large = np.full(shape, 128, np.uint8)  # a tall one's bands would each encode; the whole cannot
    assert jpeg_bands.encode_jpeg(large, 90) is None
    with pytest.raises(imaging.ImageError, match="could not be encoded"):
        imaging.encode(large)


def test_only_bands_of_420_chroma_with_restarts_are_joined() -> None:
    band = photo(320, 256, seed=2)
    params = [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_RST_INTERVAL, 20]
    full_chroma = [*params, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    parts = {
        "4:2:0": [cv2.imencode(".jpg", band, full_chroma)[1].data] * 2,
        "restart": [cv2.imencode(".jpg", band, params[:2])[1].data] * 2,
    }
    for reason, pair in parts.items():
        with pytest.raises(ValueError, match=reason):
            jpeg_bands._joined(pair, 512)
    joinable = [cv2.imencode(".jpg", band, params)[1].data] * 2
    assert jpeg_bands._joined(joinable, 512) == whole(np.vstack([band, band]), 90)


def test_bands_that_cannot_be_joined_fall_back_to_one_encode(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(parts: list[memoryview], height: int) -> bytes:
        raise ValueError("not 4:2:0 chroma")

    monkeypatch.setattr(jpeg_bands, "_joined", refuse)
    image = photo(400, 700, seed=3)
    assert jpeg_bands.encode_jpeg(image, 90) == whole(image, 90)


def test_with_every_worker_busy_the_caller_encodes_every_band_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    busy, release = ThreadPoolExecutor(1), threading.Event()
    monkeypatch.setattr(jpeg_bands, "_POOL", busy)
    busy.submit(release.wait)  # another request's work, say, held until released
    watchdog = threading.Timer(30, release.set)  # what frees the worker if the encode waits for it
    watchdog.start()
    image = photo(500, 1300, seed=6)
    try:
        assert jpeg_bands.encode_jpeg(image, 90) == whole(image, 90)
        assert not release.is_set()  # done without the worker
    finally:
        watchdog.cancel()
        release.set()
        busy.shutdown()


def test_the_benchmark_part_reports_each_size(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.projection import jpeg_part

    jpeg_part(1)
    lines = capsys.readouterr().out.splitlines()
    for size in ("3840x2160", "4032x3024", "6000x4000"):
        (line,) = [line for line in lines if line.strip().startswith(size)]
        assert "of the wall time" in line and "of the CPU" in line
