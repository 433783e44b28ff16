"""The depth service without Triton: the plane from the photo's vanishing lines, over real gRPC."""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import grpc
import numpy as np
import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from devstack import scenes
from render.depth.v1 import depth_service_pb2 as depth_pb
from render.depth.v1 import depth_service_pb2_grpc as depth_grpc
from render.imaging.v1 import imaging_pb2
from render.v1 import render_service_pb2 as pb
from render_client.client import material_swap_request
from renderkit import homography, imaging
from renderkit.edge import Edge
from services.depth.server import create_server as create_depth
from tests.conftest import stage_settings
from tests.credentials import client_for

TILES = scenes.tile_texture(128, tiles=1)
SCENE = scenes.camera_scene(scenes.View(60, 35, 20), TILES, scenes.plank_texture(128), size=(640, 480), supersample=2)
PHOTO = imaging.encode(SCENE.photo, quality=95)[0]
MASK = imaging.encode_mask((SCENE.visible_surface * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def depth(start_stage: Callable[[Callable[[], Edge]], Edge]) -> depth_grpc.DepthServiceStub:
    server = start_stage(lambda: create_depth(stage_settings()))
    return depth_grpc.DepthServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))


def test_without_a_quad_or_model_the_plane_comes_from_the_lines(depth: depth_grpc.DepthServiceStub) -> None:
    reply = depth.EstimatePlane(
        depth_pb.EstimatePlaneRequest(
            width=640, height=480, photo=PHOTO, mask_png=MASK, plane_distance_meters=scenes.CAMERA_HEIGHT_M
        ),
        timeout=30,
    )
    assert (reply.source, reply.focal_source, reply.used_depth_model) == ("vanishing_lines", "lines", False)
    assert reply.focal_length_px == pytest.approx(SCENE.focal, rel=0.03)
    H = homography.from_list(list(reply.homography.m))
    K_inv = np.linalg.inv(np.array([[reply.focal_length_px, 0, 320], [0, reply.focal_length_px, 240], [0, 0, 1]]))
    normal = np.cross(K_inv @ H[:, 0], K_inv @ H[:, 1])
    error = math.degrees(math.acos(min(1.0, abs(normal @ SCENE.normal) / np.linalg.norm(normal))))
    assert error < 1.0
    assert reply.meters_per_unit > 0  # metric, from the camera's height
    assert 0.5 < reply.confidence <= 1.0


def test_a_given_focal_length_is_used(depth: depth_grpc.DepthServiceStub) -> None:
    reply = depth.EstimatePlane(
        depth_pb.EstimatePlaneRequest(width=640, height=480, photo=PHOTO, mask_png=MASK, focal_length_px=700.0),
        timeout=30,
    )
    assert (reply.focal_length_px, reply.focal_source, reply.meters_per_unit) == (700.0, "hint", 0.0)


def test_a_surface_without_lines_fails_saying_what_to_provide(depth: depth_grpc.DepthServiceStub) -> None:
    blank = imaging.encode(np.full((240, 320, 3), 128, np.uint8))[0]
    mask = np.zeros((240, 320), np.uint8)
    mask[120:] = 255
    with pytest.raises(grpc.RpcError) as info:
        depth.EstimatePlane(
            depth_pb.EstimatePlaneRequest(width=320, height=240, photo=blank, mask_png=imaging.encode_mask(mask)),
            timeout=30,
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = info.value.details() or ""
    assert "straight lines" in details and "provide a quad" in details.lower()


@pytest.mark.parametrize(
    "request_fields, field",
    [
        ({"focal_length_px": -1.0}, "focal_length_px"),
        (  # a quad's plane for a focal length no camera has: refused, not a crash of the stage
            {
                "quad": [imaging_pb2.Point(x=x, y=y) for x, y in ((100, 300), (500, 300), (600, 470), (20, 470))],
                "focal_length_px": 1e300,
            },
            "focal_length_px",
        ),
        # Each refused before any work (a review found the stage failing inside, or answering NaN):
        ({"focal_length_px": float("nan")}, "focal_length_px"),
        ({"exif_focal_length_px": float("inf")}, "exif_focal_length_px"),
        ({"focal_length_px": 5e-324}, "focal_length_px"),
        ({"plane_distance_meters": float("inf")}, "plane_distance_meters"),
        ({"quad": [imaging_pb2.Point(x=float("nan"), y=1.0)] * 4}, "quad[0]"),
        ({"width": 60_000, "height": 60_000}, "width"),
        ({"photo": b"", "mask_png": MASK}, "photo"),
        ({"photo": b"not an image"}, "photo"),
        ({"mask_png": b"not an image"}, "mask_png"),
    ],
)
def test_bad_plane_requests_name_the_field(
    depth: depth_grpc.DepthServiceStub, request_fields: dict[str, object], field: str
) -> None:
    fields: dict[str, object] = {"width": 640, "height": 480, "photo": PHOTO, "mask_png": MASK} | request_fields
    with pytest.raises(grpc.RpcError) as info:
        depth.EstimatePlane(depth_pb.EstimatePlaneRequest(**fields), timeout=30)  # type: ignore[arg-type]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = info.value.details() or ""
    assert field in details or "image" in details


def test_a_mask_only_swap_is_placed_at_scale_from_the_cameras_height(gateway_address: str, redis_url: str) -> None:
    request = material_swap_request(PHOTO, imaging.encode(scenes.plank_texture(128))[0], mask=MASK)
    request.material_swap.hints.plane_distance_meters = scenes.CAMERA_HEIGHT_M
    request.material_swap.options.real_world_scale.swatch_size.width_meters = scenes.TILE_M
    with client_for(gateway_address, redis_url, "geometry") as client:
        job = client.submit(request).job
        events = list(client.watch(job.id, timeout=60))
        result = client.get(job.id).result
    assert events[-1].state == pb.JOB_STATE_SUCCEEDED, events[-1].error.message
    assert (result.geometry_source, result.scale_source) == ("vanishing_lines", "swatch_size")
    assert any(
        "plane from the photo's vanishing lines" in e.message
        and "focal length from the vanishing points" in e.message
        and "the swatch's physical size and the plane's distance" in e.message
        for e in events
    )


def test_a_swatch_size_on_a_plane_that_is_not_metric_fails_naming_the_field(
    gateway_address: str, redis_url: str
) -> None:
    request = material_swap_request(PHOTO, imaging.encode(scenes.plank_texture(128))[0], mask=MASK)
    request.material_swap.options.real_world_scale.swatch_size.width_meters = scenes.TILE_M
    with client_for(gateway_address, redis_url, "geometry") as client:
        job = client.wait(client.submit(request).job.id, timeout=60)
    assert job.state == pb.JOB_STATE_FAILED
    assert job.error.code == pb.ERROR_CODE_VALIDATION_FAILED
    assert job.error.message.startswith("material_swap.options.real_world_scale.swatch_size: the plane is not metric")


def test_a_portrait_jpegs_exif_focal_length_reaches_the_plane(gateway_address: str, redis_url: str) -> None:
    """A phone's portrait: pixels stored landscape with Orientation 6 and the focal length as a
    35 mm equivalent. The swap's plane uses that focal length, and the result says so."""
    scene = scenes.camera_scene(scenes.View(50, 30, 0), TILES, TILES, size=(360, 480), supersample=1)
    f35 = round(scene.focal * math.hypot(36, 24) / math.hypot(360, 480))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8769)[0xA405] = f35
    buffer = io.BytesIO()
    stored = Image.fromarray(scene.photo[:, :, ::-1]).transpose(Image.Transpose.ROTATE_90)  # shown upright by 6
    stored.save(buffer, "JPEG", quality=95, exif=exif)
    mask = imaging.encode_mask((scene.visible_surface * 255).astype(np.uint8))
    request = material_swap_request(buffer.getvalue(), imaging.encode(scenes.plank_texture(64))[0], mask=mask)
    request.material_swap.hints.plane_distance_meters = scenes.CAMERA_HEIGHT_M
    request.material_swap.options.real_world_scale.swatch_size.width_meters = scenes.TILE_M
    with client_for(gateway_address, redis_url, "geometry") as client:
        job = client.submit(request).job
        events = list(client.watch(job.id, timeout=60))
        result = client.get(job.id).result
    assert events[-1].state == pb.JOB_STATE_SUCCEEDED, events[-1].error.message
    assert result.focal_source == "exif"
    assert result.focal_length_px == pytest.approx(scene.focal, rel=0.02)
    assert (result.outputs[0].width, result.outputs[0].height) == (360, 480)
    assert any("focal length from the photo's EXIF" in e.message for e in events)


def test_a_cameras_exact_focal_length_reaches_the_plane_unsettled(gateway_address: str, redis_url: str) -> None:
    """A camera that writes its lens's focal length and its sensor's resolution gives the focal
    length exactly: the gateway says so to the depth stage, whose lines then leave it as it is (a
    35 mm equivalent, rounded to a millimetre, they would settle: this floor's lines fix it)."""
    scene = scenes.camera_scene(scenes.View(60, 35, 20), TILES, TILES, size=(480, 360), supersample=1)
    written = scene.focal * 1.015  # what this camera's figures say, 1.5 % from the render's
    exif = Image.Exif()
    ifd = exif.get_ifd(0x8769)
    ifd[0x920A] = IFDRational(4, 1)  # FocalLength, mm
    ifd[0xA20E] = IFDRational(round(written * 10 / 4.0 * 1000), 1000)  # FocalPlaneXResolution, px per cm
    ifd[0xA210] = 3  # centimetres
    ifd[0xA002], ifd[0xA003] = 480, 360
    buffer = io.BytesIO()
    Image.fromarray(scene.photo[:, :, ::-1]).save(buffer, "JPEG", quality=95, exif=exif)
    info = imaging.probe(buffer.getvalue())
    assert info.focal_length_exact and info.focal_length_px == pytest.approx(written, rel=1e-4)
    mask = imaging.encode_mask((scene.visible_surface * 255).astype(np.uint8))
    request = material_swap_request(buffer.getvalue(), imaging.encode(scenes.plank_texture(64))[0], mask=mask)
    request.material_swap.hints.plane_distance_meters = scenes.CAMERA_HEIGHT_M
    with client_for(gateway_address, redis_url, "geometry") as client:
        job = client.wait(client.submit(request).job.id, timeout=60)
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.error.message
    assert job.result.focal_source == "exif"
    assert job.result.focal_length_px == pytest.approx(info.focal_length_px, rel=1e-9)
