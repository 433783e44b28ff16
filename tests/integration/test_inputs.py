"""Bad inputs and hostile callers through the in-process gateway (and a projection process):
rotated photos, cut-out swatches, truncated files, headers that lie, points alone, memory."""

from __future__ import annotations

import io
import math
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import pillow_heif
import pytest
from google.rpc import error_details_pb2
from PIL import Image

from devstack import scenes
from devstack.launcher import ROOT, free_port
from gateway.server import Gateway
from gateway.settings import GatewaySettings
from render.imaging.v1 import imaging_pb2
from render.projection.v1 import projection_service_pb2 as projection_pb
from render.projection.v1 import projection_service_pb2_grpc as projection_grpc
from render.v1 import render_service_pb2 as pb
from render_client.client import RenderClient, material_swap_request
from renderkit import budget, homography, imaging
from renderkit.errors import status_details, unpack_detail
from renderkit.fetch import FetchPolicy
from tests.conftest import gateway_settings
from tests.credentials import client_for
from tests.forged import forged_jpeg
from tests.http_fixtures import serve
from tests.outputs import read_output

SWATCH = imaging.encode(scenes.plank_texture(64))[0]


@pytest.fixture()
def client(gateway_address: str, redis_url: str) -> Iterator[RenderClient]:
    with client_for(gateway_address, redis_url, "input-tests") as c:
        yield c


def refused_fields(client: RenderClient, request: pb.SubmitRenderRequest) -> dict[str, str]:
    """The BadRequest of a submit that must be refused."""
    with pytest.raises(grpc.RpcError) as info:
        client.submit(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    metadata = info.value.trailing_metadata()  # type: ignore[attr-defined]
    bad = unpack_detail(status_details(metadata), error_details_pb2.BadRequest)  # type: ignore[arg-type]
    assert isinstance(bad, error_details_pb2.BadRequest)
    return {v.field: v.description for v in bad.field_violations}


def finished(client: RenderClient, request: pb.SubmitRenderRequest) -> tuple[pb.Job, list[str]]:
    job = client.submit(request).job
    messages = [event.message for event in client.watch(job.id, timeout=90)]
    return client.get(job.id), messages


# --- orientation --------------------------------------------------------------------------------

PORTRAIT = scenes.room_scene(240, 320)  # displayed upright: 240 wide, 320 high, as a phone shows it
STORE_TURN = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def stored_rotated(displayed: np.ndarray, orientation: int) -> bytes:
    """A JPEG as a phone writes a portrait: the sensor's frame turned the other way, and the EXIF
    Orientation that turns it upright."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(displayed[:, :, ::-1]).transpose(STORE_TURN[orientation]).save(
        buffer, "JPEG", quality=95, exif=exif
    )
    return buffer.getvalue()


def upright_jpeg(displayed: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(displayed[:, :, ::-1]).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def portrait_request(photo: bytes, with_mask: bool = True) -> pb.SubmitRenderRequest:
    """A swap whose quad and client mask (or quad alone, which the projection draws) are in the
    displayed (portrait) frame."""
    quad = [(float(x), float(y)) for x, y in PORTRAIT.quad]
    mask = imaging.encode_mask(PORTRAIT.floor_mask) if with_mask else None
    request = material_swap_request(photo, SWATCH, quad=quad, mask=mask, output_format=pb.IMAGE_FORMAT_PNG)
    request.material_swap.options.real_world_scale.repeats = 4
    return request


@pytest.mark.parametrize(("orientation", "with_mask"), [(6, True), (8, True), (6, False)])
def test_a_photo_stored_rotated_renders_in_its_displayed_frame(
    client: RenderClient, orientation: int, with_mask: bool
) -> None:
    data = stored_rotated(PORTRAIT.photo, orientation)
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.size == (320, 240)  # the pixels are stored landscape
    rotated, _ = finished(client, portrait_request(data, with_mask))
    upright, _ = finished(client, portrait_request(upright_jpeg(PORTRAIT.photo), with_mask))
    assert rotated.state == pb.JOB_STATE_SUCCEEDED, rotated.error.message
    assert upright.state == pb.JOB_STATE_SUCCEEDED, upright.error.message
    full = rotated.result.outputs[0]
    assert (full.width, full.height) == (240, 320)
    out, reference = read_output(full).astype(int), read_output(upright.result.outputs[0]).astype(int)
    assert out.shape == reference.shape == (320, 240, 3)
    inside = cv2.erode(PORTRAIT.floor_mask, np.ones((5, 5), np.uint8)) == 255
    assert np.abs(out - PORTRAIT.photo)[inside].mean() > 10  # the floor was re-covered...
    assert np.abs(out - reference)[inside].mean() < 2.5  # ...exactly as in the upright photo
    assert np.abs(out - reference)[~inside].mean() < 2.5


def heic_rotated(displayed: np.ndarray, orientation: int) -> bytes:
    """A HEIC as an iPhone writes a portrait: stored turned, the turn in the container (pillow-heif
    writes EXIF orientation 6 as the container's rotation) and a 26 mm equivalent focal length."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif.get_ifd(0x8769)[0xA405] = 26
    stored = Image.fromarray(displayed[:, :, ::-1]).transpose(STORE_TURN[orientation])
    image = pillow_heif.from_pillow(stored)
    image.info["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    image.save(buffer, quality=95, chroma=444)
    return buffer.getvalue()


def test_a_heic_portrait_renders_like_the_same_photo_as_jpeg(client: RenderClient) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 26
    buffer = io.BytesIO()
    Image.fromarray(PORTRAIT.photo[:, :, ::-1]).save(buffer, "JPEG", quality=95, exif=exif)
    heic, _ = finished(client, portrait_request(heic_rotated(PORTRAIT.photo, 6)))
    jpeg, _ = finished(client, portrait_request(buffer.getvalue()))
    assert heic.state == pb.JOB_STATE_SUCCEEDED, heic.error.message
    full = heic.result.outputs[0]
    assert (full.width, full.height) == (240, 320)
    out, reference = read_output(full).astype(int), read_output(jpeg.result.outputs[0]).astype(int)
    inside = cv2.erode(PORTRAIT.floor_mask, np.ones((5, 5), np.uint8)) == 255
    assert np.abs(out - reference)[inside].mean() < 4  # HEVC's loss, not a turned or shifted floor
    assert np.abs(out - reference)[~inside].mean() < 4
    # The room's quad is seen head-on, which fixes no focal length: both take the EXIF's.
    assert heic.result.focal_source == jpeg.result.focal_source == "exif"
    assert heic.result.focal_length_px == pytest.approx(jpeg.result.focal_length_px)


def test_a_heic_whose_image_does_not_decode_fails_as_the_callers_naming_the_photo(client: RenderClient) -> None:
    """libheif reads the container, so the probe passes; its coded image is noise. The gateway's
    conversion to JPEG failed as an internal error (found by a review)."""
    good = heic_rotated(PORTRAIT.photo, 6)
    at = good.index(b"mdat") + 4
    broken = good[:at] + bytes(len(good) - at)
    assert imaging.probe(broken).width == 240  # displayed upright
    job, _ = finished(client, portrait_request(broken))
    assert job.state == pb.JOB_STATE_FAILED and job.error.code == pb.ERROR_CODE_VALIDATION_FAILED
    assert job.error.message.startswith("material_swap.photo: "), job.error.message


# --- points alone -------------------------------------------------------------------------------

TILED = scenes.camera_scene(
    scenes.View(60, 35, 20), scenes.tile_texture(128, tiles=1), scenes.plank_texture(128), size=(640, 480)
)


def clicked_on_tiled(photo: bytes) -> pb.SubmitRenderRequest:
    """A swap of TILED's floor outlined by five clicks on it alone."""
    request = material_swap_request(photo, imaging.encode(scenes.carpet_texture(128))[0])
    ys, xs = np.nonzero(cv2.erode(TILED.visible_surface.astype(np.uint8), np.ones((41, 41), np.uint8)))
    for index in np.linspace(0, len(xs) - 1, 5).astype(int):
        request.material_swap.hints.positive_points.add(x=float(xs[index]), y=float(ys[index]))
    return request


def test_clicks_alone_find_the_surface_and_the_lines_give_its_plane(client: RenderClient) -> None:
    job, messages = finished(client, clicked_on_tiled(imaging.encode(TILED.photo, quality=95)[0]))
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.error.message
    assert job.result.geometry_source == "vanishing_lines"
    assert any("plane from the photo's vanishing lines" in m for m in messages)
    out = read_output(job.result.outputs[0]).astype(int)
    surface = cv2.erode(TILED.visible_surface.astype(np.uint8), np.ones((9, 9), np.uint8)) == 1
    wall = cv2.dilate(TILED.visible_surface.astype(np.uint8) | TILED.occluder, np.ones((15, 15), np.uint8)) == 0
    assert np.abs(out - TILED.photo)[surface].mean() > 15
    assert np.abs(out - TILED.photo)[wall].mean() < 4


def test_a_heics_exif_focal_length_reaches_the_segmentation_as_a_jpegs_does(
    client: RenderClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clicks alone: the segmentation looks for the surface's plane with the photo's EXIF focal
    length. It read it from the photo it was sent, which for a HEIC is the gateway's JPEG of it,
    written without EXIF: a HEIC got none (a review found it)."""
    from services.segmentation.interactive import select_surface

    focals: list[float] = []

    def spied(*args: Any) -> np.ndarray:
        focals.append(float(args[5]))  # select_surface(photo, box, positives, negatives, probability, focal, ...)
        return select_surface(*args)

    monkeypatch.setattr("services.segmentation.server.select_surface", spied)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 30  # TILED's 60 degrees across 640 x 480: 30 mm equivalent
    exif.get_ifd(0x8769)[0xA002], exif.get_ifd(0x8769)[0xA003] = 640, 480
    buffer = io.BytesIO()
    Image.fromarray(TILED.photo[:, :, ::-1]).save(buffer, "JPEG", quality=95, exif=exif)
    heif = pillow_heif.from_pillow(Image.fromarray(TILED.photo[:, :, ::-1]))
    heif.info["exif"] = exif.tobytes()
    heic = io.BytesIO()
    heif.save(heic, quality=95, chroma=444)
    expected = 30 * 800 / math.hypot(36, 24)
    assert imaging.probe(heic.getvalue()).focal_length_px == pytest.approx(expected)

    jpeg_job, _ = finished(client, clicked_on_tiled(buffer.getvalue()))
    heic_job, heic_messages = finished(client, clicked_on_tiled(heic.getvalue()))
    assert jpeg_job.state == heic_job.state == pb.JOB_STATE_SUCCEEDED, (jpeg_job.error, heic_job.error)
    assert focals == [pytest.approx(expected), pytest.approx(expected)], focals
    assert heic_job.result.focal_source == jpeg_job.result.focal_source == "exif"
    # The lines settle the 35 mm value within its rounding, on HEVC's pixels or JPEG's.
    assert heic_job.result.focal_length_px == pytest.approx(jpeg_job.result.focal_length_px, rel=0.01)
    assert any("focal length from the photo's EXIF" in m for m in heic_messages), heic_messages


# --- swatches with alpha ------------------------------------------------------------------------


def cut_out_tiles() -> bytes:
    """A tile swatch cut out around its tiles: the 4 px joints transparent, black underneath."""
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[:, :, :3] = (60, 110, 170)
    rgba[4:60, 4:60, 3] = 255
    ok, data = cv2.imencode(".png", rgba)
    assert ok
    return data.tobytes()


def test_a_cut_out_swatch_is_grouted_and_the_events_say_so(client: RenderClient) -> None:
    scene = scenes.room_scene(320, 240)
    quad = [(float(x), float(y)) for x, y in scene.quad]
    request = material_swap_request(imaging.encode(scene.photo)[0], cut_out_tiles(), quad=quad, repeats=6)
    job, messages = finished(client, request)
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.error.message
    assert "Step 3/4: the swatch's transparent parts (23%) filled with grout #C8C8C8" in messages
    request.material_swap.options.grout_color = "#402010"
    request.material_swap.variant_swatches.add(data=SWATCH)
    job, messages = finished(client, request)
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.error.message
    assert "Step 3/4: the swatch's transparent parts (23%) filled with grout #402010" in messages
    assert not any("variant 1's" in m for m in messages)  # the opaque variant has nothing to fill
    request.material_swap.options.grout_color = "#40201"
    assert set(refused_fields(client, request)) == {"material_swap.options.grout_color"}


def test_physical_sizes_that_work_out_to_absurd_repeats_fail_naming_the_field(client: RenderClient) -> None:
    """Sizes within their ranges can still be a unit mistake together (a millimetre swatch on a
    plane 100 m away): once the plane is known the job fails naming the swatch's size, before
    anything is projected."""
    scene = scenes.room_scene(320, 240)
    quad = [(float(x), float(y)) for x, y in scene.quad]
    photo = imaging.encode(scene.photo)[0]
    request = material_swap_request(photo, SWATCH, quad=quad, swatch_size=(0.001, 0), plane_distance_meters=100)
    job, messages = finished(client, request)
    assert job.state == pb.JOB_STATE_FAILED and job.error.code == pb.ERROR_CODE_VALIDATION_FAILED
    assert job.error.message.startswith("material_swap.options.real_world_scale.swatch_size: puts the swatch ")
    assert not any(m.startswith("Step 3/4") for m in messages)
    sensible = material_swap_request(photo, SWATCH, quad=quad, swatch_size=(0.5, 0), plane_distance_meters=1.5)
    job, _ = finished(client, sensible)
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.error.message


# --- refused at submit --------------------------------------------------------------------------


def flat_png(width: int, height: int) -> bytes:
    """A greyscale PNG of the claimed size whose rows are all zero: tens of KB for 40 MP."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


QUAD = [(100.0, 150.0), (300.0, 150.0), (390.0, 290.0), (10.0, 290.0)]


def test_inputs_whose_headers_cannot_fit_the_memory_budget_are_refused_at_submit(client: RenderClient) -> None:
    # Outlined by a polygon, the segmentation refines the mask's edge on the photo (a quad alone
    # would be drawn without it, and a 6300x6300 photo fits the projection's budget).
    big = refused_fields(client, material_swap_request(flat_png(6300, 6300), SWATCH, polygon=QUAD))
    assert big == {
        "material_swap.photo.data": "a 6300x6300 photo needs about 2.1 GB to render; a request may use 2.0 GB "
        "(at most about 37 MP)"
    }
    forged = material_swap_request(forged_jpeg(6000, 6000), SWATCH, quad=QUAD, refine=True)
    fields = refused_fields(client, forged)
    assert list(fields) == ["material_swap.photo.data"]
    assert fields["material_swap.photo.data"].startswith("a 6000x6000 photo needs about 3.0 GB to render")


def test_truncated_photos_and_unknown_enum_values_are_refused_at_submit(client: RenderClient) -> None:
    photo = imaging.encode(scenes.room_scene(320, 240).photo)[0]
    fields = refused_fields(client, material_swap_request(photo[: len(photo) // 2], SWATCH, quad=QUAD))
    assert fields == {"material_swap.photo.data": "the image is truncated or corrupt"}
    request = material_swap_request(photo, SWATCH, quad=QUAD)
    request.output.format = 999  # type: ignore[assignment]
    request.material_swap.surface = 77  # type: ignore[assignment]
    assert set(refused_fields(client, request)) == {"output.format", "material_swap.surface"}


# --- the same checks on downloaded inputs -------------------------------------------------------


@pytest.fixture(scope="module")
def url_client(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RenderClient]:
    """A gateway that may download from loopback (its own Redis database: no other dispatcher
    takes its jobs)."""
    import redis

    redis.Redis.from_url(redis_url + "/13").flushdb()
    settings = gateway_settings(redis_url + "/13", tmp_path_factory.mktemp("url-storage"), stages)
    settings = replace(
        settings,
        limits=replace(settings.limits, allow_private_urls=True),
        fetch=FetchPolicy(allow_private=True, timeout_s=5),
    )
    gateway = start_gateway(settings)
    with client_for(f"127.0.0.1:{gateway.port}", redis_url + "/13", "input-tests") as c:
        yield c


def test_downloaded_inputs_meet_the_same_checks_when_they_arrive(url_client: RenderClient) -> None:
    photo = imaging.encode(scenes.room_scene(320, 240).photo)[0]
    routes = {
        "/truncated.jpg": (200, {"Content-Type": "image/jpeg"}, photo[: len(photo) // 2]),
        "/huge.png": (200, {"Content-Type": "image/png"}, flat_png(6300, 6300)),
    }
    with serve(routes) as base:
        truncated, _ = finished(url_client, material_swap_request(f"{base}/truncated.jpg", SWATCH, quad=QUAD))
        huge, _ = finished(url_client, material_swap_request(f"{base}/huge.png", SWATCH, polygon=QUAD))
    assert (truncated.state, truncated.error.code) == (pb.JOB_STATE_FAILED, pb.ERROR_CODE_VALIDATION_FAILED)
    assert truncated.error.message == "material_swap.photo.url: the image is truncated or corrupt"
    assert (huge.state, huge.error.code) == (pb.JOB_STATE_FAILED, pb.ERROR_CODE_VALIDATION_FAILED)
    assert huge.error.message.startswith("material_swap.photo.url: a 6300x6300 photo needs about 2.1 GB to render")


def test_a_jobs_downloads_run_together(url_client: RenderClient) -> None:
    """The photo and the swatch are downloaded at once: this server answers neither until both
    have been asked for (downloaded one after the other, the first would time out waiting)."""
    scene = scenes.room_scene(320, 240)
    routes = {
        "/photo.jpg": (200, {"Content-Type": "image/jpeg"}, imaging.encode(scene.photo)[0]),
        "/swatch.jpg": (200, {"Content-Type": "image/jpeg"}, SWATCH),
    }
    both_asked = threading.Barrier(2)
    quad = [(float(x), float(y)) for x, y in scene.quad]
    with serve(routes, before_response=lambda _: both_asked.wait(4)) as base:
        job, _ = finished(url_client, material_swap_request(f"{base}/photo.jpg", f"{base}/swatch.jpg", quad=quad))
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.error.message


def test_the_first_download_that_fails_fails_the_job_at_once(url_client: RenderClient, redis_url: str) -> None:
    """A swatch that cannot be downloaded fails the job while the photo's download is still held by
    its server: the job does not wait for its other inputs first, and stops waiting for them (the
    photo, answered later, is not taken in: no checkpoint of it appears)."""
    import redis

    from gateway.ledger import keys

    routes = {"/photo.jpg": (200, {"Content-Type": "image/jpeg"}, imaging.encode(scenes.room_scene(320, 240).photo)[0])}
    released, answered = threading.Event(), threading.Event()

    def hold_the_photo(path: str) -> None:
        if path == "/photo.jpg":
            released.wait(10)
            answered.set()

    with serve(routes, before_response=hold_the_photo) as base:
        try:  # one after the other, the photo's download would time out first and fail the job
            job, _ = finished(url_client, material_swap_request(f"{base}/photo.jpg", f"{base}/gone.jpg", quad=QUAD))
        finally:
            released.set()
        assert answered.wait(10)
        time.sleep(1.0)  # a fetch left running would have the photo now, and checkpoint it
    assert (job.state, job.error.code) == (pb.JOB_STATE_FAILED, pb.ERROR_CODE_DOWNLOAD_FAILED)
    assert job.error.message.startswith("material_swap.swatch.url:"), job.error.message
    check = redis.Redis.from_url(redis_url + "/13")
    saved = check.hkeys(keys.checkpoints(job.id))
    check.close()
    assert b"input:material_swap.photo" not in saved


# --- the projection stage's memory, measured on its own process ---------------------------------


def peak_resident_bytes(pid: int) -> int:
    """VmHWM: the most resident memory the process has had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def projection_process() -> Iterator[tuple[subprocess.Popen[bytes], projection_grpc.ProjectionServiceStub]]:
    port = free_port()
    env = {**os.environ, "PROJECTION_LISTEN": f"127.0.0.1:{port}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "services.projection"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=60)
        yield process, projection_grpc.ProjectionServiceStub(channel)
    finally:
        channel.close()
        process.terminate()
        process.wait(30)


def noisy_photo(width: int, height: int) -> bytes:
    rng = np.random.default_rng(3)
    return imaging.encode(cv2.resize(rng.integers(0, 255, (height // 8, width // 8, 3), np.uint8), (width, height)))[0]


def test_the_largest_projection_a_budget_admits_stays_within_it(
    projection_process: tuple[subprocess.Popen[bytes], projection_grpc.ProjectionServiceStub],
) -> None:
    """The worst case the model covers: a surface over the whole photo, the swatch's maps too."""
    process, stub = projection_process
    allowed = 448 * 1024**2  # a small budget, so the largest admitted photo is a few megapixels
    swatch = imaging.encode(scenes.plank_texture(512))[0]
    pixels = budget.largest_pixels(lambda px: budget.projection_bytes(px, 512 * 512, True), allowed)
    width = int((pixels * 4 / 3) ** 0.5) // 8 * 8
    height = width * 3 // 4
    assert 3_000_000 < width * height <= pixels
    quad = np.array([[0.3 * width, 0.0], [0.7 * width, 0.0], [width, height], [0.0, height]])
    request = projection_pb.ProjectRequest(
        photo=noisy_photo(width, height),
        swatch=swatch,
        mask_png=imaging.encode_mask(np.full((height, width), 255, np.uint8)),
        homography=imaging_pb2.Homography(m=homography.to_list(homography.quad_homography(quad))),
        repeats_u=8,
        repeats_v=8,
        output=imaging_pb2.OutputSpec(
            format=imaging_pb2.FORMAT_JPEG,
            renditions=[imaging_pb2.Rendition(name="full"), imaging_pb2.Rendition(name="preview", max_side=512)],
        ),
        material_maps=True,
    )
    time.sleep(0.5)  # let the server settle after its start
    before = peak_resident_bytes(process.pid)
    response = stub.Project(request, timeout=120)
    growth = peak_resident_bytes(process.pid) - before
    assert [image.name for image in response.images] == ["full", "preview", "normal", "roughness"]
    assert response.images[0].width == width
    assert growth <= allowed, f"{growth / 2**20:.0f} MiB for {width}x{height}, budget {allowed / 2**20:.0f} MiB"


def test_the_projection_process_refuses_repeats_that_are_not_finite_positive_numbers(
    projection_process: tuple[subprocess.Popen[bytes], projection_grpc.ProjectionServiceStub],
) -> None:
    """Each field named, and no library's own words (NaN reached numpy once, and its message the
    caller)."""
    _, stub = projection_process
    for bad in (float("nan"), float("inf"), 0.0, 1e300):
        request = projection_pb.ProjectRequest(
            photo=imaging.encode(np.full((240, 320, 3), 120, np.uint8))[0],
            swatch=SWATCH,
            mask_png=imaging.encode_mask(np.full((240, 320), 255, np.uint8)),
            homography=imaging_pb2.Homography(m=homography.to_list(np.eye(3) * 100)),
            repeats_u=bad,
            repeats_v=4,
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.Project(request, timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (info.value.details() or "").startswith("repeats must be positive and at most")
        bad_request = unpack_detail(status_details(info.value.trailing_metadata()), error_details_pb2.BadRequest)  # type: ignore[attr-defined, arg-type]
        assert isinstance(bad_request, error_details_pb2.BadRequest)
        assert [v.field for v in bad_request.field_violations] == ["repeats_u"]


def test_the_projection_process_refuses_what_its_budget_cannot_hold_before_decoding(
    projection_process: tuple[subprocess.Popen[bytes], projection_grpc.ProjectionServiceStub],
) -> None:
    process, stub = projection_process
    request = projection_pb.ProjectRequest(
        photo=imaging.encode(np.full((240, 320, 3), 120, np.uint8))[0],
        swatch=forged_jpeg(6000, 6000),
        mask_png=imaging.encode_mask(np.full((240, 320), 255, np.uint8)),
        homography=imaging_pb2.Homography(m=homography.to_list(np.eye(3) * 100)),
        repeats_u=4,
        repeats_v=4,
        material_maps=True,
    )
    before = peak_resident_bytes(process.pid)
    with pytest.raises(grpc.RpcError) as info:
        stub.Project(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "swatch: a 6000x6000 swatch needs about" in (info.value.details() or "")
    assert peak_resident_bytes(process.pid) - before < 64 * 1024**2  # refused from the header: nothing decoded
