"""A Triton restarting: up again, its models still loading. A stage that saw a model ready answers
UNAVAILABLE meanwhile (the job retries) instead of taking the path it takes without the model."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from devstack import scenes
from gateway.server import Gateway
from gateway.settings import GatewaySettings
from render.depth.v1 import depth_service_pb2 as depth_pb
from render.depth.v1 import depth_service_pb2_grpc as depth_grpc
from render.imaging.v1 import imaging_pb2
from render.projection.v1 import projection_service_pb2 as projection_pb
from render.projection.v1 import projection_service_pb2_grpc as projection_grpc
from render.segmentation.v1 import segmentation_service_pb2 as seg_pb
from render.segmentation.v1 import segmentation_service_pb2_grpc as seg_grpc
from render.v1 import render_service_pb2 as pb
from render_client.client import material_swap_request
from renderkit import homography, imaging
from renderkit.edge import Edge
from services.depth.server import create_server as create_depth
from services.projection.server import create_server as create_projection
from services.segmentation.server import create_server as create_segmentation
from tests.conftest import EmbeddedTriton, gateway_settings, stage_settings
from tests.credentials import client_for
from tests.integration.test_triton_models import floor_photo

DB = "/22"  # this module's gateway's database
STAGE_MODELS = ("segmentation", "depth", "intrinsic")
PHOTO = imaging.encode(floor_photo())[0]  # the tiny models' floor: the red lower half
FLOOR = np.zeros((240, 320), np.uint8)
FLOOR[130:, 20:300] = 255
MASK = imaging.encode_mask(FLOOR)
QUAD = np.array([(20.0, 130.0), (300.0, 130.0), (300.0, 240.0), (20.0, 240.0)])


def restart(triton: EmbeddedTriton, models_dir: Path, models: tuple[str, ...]) -> None:
    """Kills Triton and starts it again on the same ports, serving `models` from `models_dir`."""
    triton.kill()
    triton.env["MODELS_DIR"] = str(models_dir)
    triton.models = models
    triton.start()


def model_calls(addresses: dict[str, str]) -> dict[str, object]:
    """Each model stage asked for its model's path: its answer, or the error's code and message."""
    calls: dict[str, Callable[[grpc.Channel], object]] = {
        "segmentation": lambda channel: seg_grpc.SegmentationServiceStub(channel).Segment(
            seg_pb.SegmentRequest(width=320, height=240, photo=PHOTO, surface="floor"), timeout=10
        ),
        "depth": lambda channel: depth_grpc.DepthServiceStub(channel).EstimatePlane(
            depth_pb.EstimatePlaneRequest(width=320, height=240, photo=PHOTO, mask_png=MASK), timeout=10
        ),
        "projection": lambda channel: projection_grpc.ProjectionServiceStub(channel).Project(
            projection_pb.ProjectRequest(
                photo=PHOTO,
                swatch=imaging.encode(scenes.plank_texture(64))[0],
                mask_png=MASK,
                homography=imaging_pb2.Homography(m=homography.to_list(homography.quad_homography(QUAD))),
                repeats_u=4,
                repeats_v=4,
            ),
            timeout=10,
        ),
    }
    answers: dict[str, object] = {}
    for name, call in calls.items():
        with grpc.insecure_channel(addresses[name]) as channel:
            try:
                answers[name] = call(channel)
            except grpc.RpcError as exc:
                answers[name] = (exc.code(), exc.details())  # type: ignore[attr-defined]
    return answers


def test_a_model_loading_again_after_a_restart_is_unavailable_not_missing(
    models_dir: Path,
    redis_url: str,
    stages: dict[str, str],
    start_stage: Callable[[Callable[[], Edge]], Edge],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Triton killed and started again answers before its models are loaded. A Triton serving none
    of the stages' models stands for that moment (PyTriton's repository API is not open to tests):
    the stages that saw them ready say UNAVAILABLE; a job meanwhile waits and then succeeds on them."""
    loading = tmp_path / "loading"  # a repository with only a model no stage here uses
    shutil.copytree(models_dir / "diffusion", loading / "diffusion")
    triton = EmbeddedTriton(models_dir, tmp_path, STAGE_MODELS)
    try:
        triton.start()
        servers = {
            "segmentation": start_stage(lambda: create_segmentation(stage_settings(triton.url))),
            "depth": start_stage(lambda: create_depth(stage_settings(triton.url))),
            "projection": start_stage(lambda: create_projection(stage_settings(triton.url))),
        }
        addresses = {name: f"127.0.0.1:{server.port}" for name, server in servers.items()}
        assert_model_answers(model_calls(addresses))

        restart(triton, loading, ("diffusion",))
        assert model_calls(addresses) == {
            "segmentation": (grpc.StatusCode.UNAVAILABLE, "the segmentation model is loading; retry"),
            "depth": (grpc.StatusCode.UNAVAILABLE, "the depth model is loading; retry"),
            "projection": (grpc.StatusCode.UNAVAILABLE, "the intrinsic model is loading; retry"),
        }
        # A stage that never saw the model keeps treating it as not deployed.
        fresh = start_stage(lambda: create_segmentation(stage_settings(triton.url)))
        assert model_calls({**addresses, "segmentation": f"127.0.0.1:{fresh.port}"})["segmentation"] == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "cannot find the surface: provide a mask, a polygon, a quad, points or a box"
            " (the segmentation model is not deployed)",
        )

        gateway = start_gateway(gateway_settings(redis_url + DB, tmp_path / "storage", {**stages, **addresses}))
        request = material_swap_request(PHOTO, imaging.encode(np.full((32, 32, 3), 200, np.uint8))[0])
        request.material_swap.surface = pb.SURFACE_FLOOR  # no outline: the segmentation model finds the floor
        with client_for(f"127.0.0.1:{gateway.port}", redis_url + DB, "triton-restart") as client:
            job = client.submit(request).job
            deadline = time.monotonic() + 30
            while "the segmentation stage is unavailable; retrying" not in caplog.text:
                now = client.get(job.id)
                assert now.state in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING), now.error.message
                assert time.monotonic() < deadline, "the job never reached the segmentation stage"
                time.sleep(0.1)
            restart(triton, models_dir, STAGE_MODELS)
            done = client.wait(job.id, timeout=60)
        assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
        assert_model_answers(model_calls(addresses))
    finally:
        triton.stop()


def assert_model_answers(answers: dict[str, object]) -> None:
    """Each stage answered from its model."""
    segmented, plane, projected = answers.values()
    assert isinstance(segmented, seg_pb.SegmentResponse) and segmented.source == "model", segmented
    assert isinstance(plane, depth_pb.EstimatePlaneResponse) and plane.source == "depth_model", plane
    assert isinstance(projected, projection_pb.ProjectResponse) and projected.shading_source == "intrinsic", projected
