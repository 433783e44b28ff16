"""The model path through the embedded Triton: tiny models of the real signatures, served and used."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import grpc
import numpy as np
import onnx
import pytest
import tritonclient.grpc as triton_grpc

from devstack import scenes
from devstack.model_export import install
from gateway.server import Gateway
from gateway.settings import GatewaySettings
from render.depth.v1 import depth_service_pb2 as depth_pb
from render.depth.v1 import depth_service_pb2_grpc as depth_grpc
from render.generation.v1 import generation_service_pb2 as gen_pb
from render.generation.v1 import generation_service_pb2_grpc as gen_grpc
from render.imaging.v1 import imaging_pb2
from render.projection.v1 import projection_service_pb2 as projection_pb
from render.projection.v1 import projection_service_pb2_grpc as projection_grpc
from render.segmentation.v1 import segmentation_service_pb2 as seg_pb
from render.segmentation.v1 import segmentation_service_pb2_grpc as seg_grpc
from render.v1 import render_service_pb2 as pb
from render_client.client import material_swap_request
from renderkit import homography, imaging
from renderkit.edge import Edge
from renderkit.homography import default_focal
from renderkit.triton import (
    CONTRACTS,
    DEPTH,
    INTRINSIC,
    METRIC_DEPTH,
    PROMPT_DECODER,
    PROMPT_ENCODER,
    REPOSITORY,
    datatype_name,
    read_config,
)
from services.depth.server import create_server as create_depth
from services.generation.server import create_server as create_generation
from services.projection.server import create_server as create_projection
from services.segmentation.server import create_server as create_segmentation
from tests.conftest import embedded_triton, gateway_settings, generation_settings, stage_settings
from tests.credentials import client_for
from tests.openai_fake import FakeOpenAI, Reply
from tests.outputs import read_output
from tests.tiny_models import depth_model, metric_depth_model, write_tiny_prompt_models


def test_every_config_matches_the_client_contract() -> None:
    configs = sorted(REPOSITORY.glob("*/config.pbtxt"))
    assert {p.parent.name for p in configs} == set(CONTRACTS)
    for path in configs:
        config = read_config(path)
        contract = CONTRACTS[config.name]
        assert config.name == path.parent.name
        assert config.max_batch_size > 0 and config.instance_group and config.HasField("dynamic_batching")
        for specs, tensors in ((contract.inputs, config.input), (contract.outputs, config.output)):
            assert [(s.name, s.datatype, s.dims) for s in specs] == [
                (t.name, datatype_name(t.data_type), tuple(t.dims)) for t in tensors
            ]


def floor_photo(width: int = 320, height: int = 240) -> np.ndarray:
    """Brighter towards the bottom (the tiny depth model reads that as nearer) with a bright-red floor."""
    ramp = np.linspace(40, 220, height, dtype=np.float32)[:, None].repeat(width, 1)
    image = np.stack([ramp * 0.5, ramp * 0.5, ramp * 0.5], axis=2)
    image[height // 2 :, :, 2] = 255  # red (BGR) lower half: the tiny segmentation model's "floor"
    return image.astype(np.uint8)


def inference_count(url: str, model: str) -> int:
    client = triton_grpc.InferenceServerClient(url)
    stats = client.get_inference_statistics(model, as_json=True)
    client.close()
    return int(stats["model_stats"][0]["inference_stats"]["success"].get("count", 0))


def settled_count(url: str, model: str, expected: int, timeout_s: float = 5.0) -> int:
    """A model's inference count once it reaches `expected` (Triton's statistics can trail the
    response by a moment), or as it stands after the timeout."""
    deadline = time.monotonic() + timeout_s
    while (count := inference_count(url, model)) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def test_depth_service_gets_the_plane_through_triton(
    triton_url: str, start_stage: Callable[[Callable[[], Edge]], Edge]
) -> None:
    server = start_stage(lambda: create_depth(stage_settings(triton_url)))
    photo = imaging.encode(floor_photo())[0]
    mask = np.zeros((240, 320), np.uint8)
    mask[130:, 20:300] = 255
    before = inference_count(triton_url, "depth")
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        reply = depth_grpc.DepthServiceStub(channel).EstimatePlane(
            depth_pb.EstimatePlaneRequest(width=320, height=240, photo=photo, mask_png=imaging.encode_mask(mask)),
            timeout=30,
        )
    assert settled_count(triton_url, "depth", before + 1) == before + 1
    assert reply.source == "depth_model" and reply.used_depth_model
    assert 0.5 < reply.confidence <= 1.0
    H = np.array(reply.homography.m).reshape(3, 3)
    origin = H @ [0.0, 0.0, 1.0]
    # The texture's origin sits under the mask's centroid (x 159.5, y 184.5).
    assert origin[:2] / origin[2] == pytest.approx([159.5, 184.5], abs=1e-6)


def test_segmentation_service_uses_the_model_when_no_hint_is_given(
    triton_url: str, start_stage: Callable[[Callable[[], Edge]], Edge]
) -> None:
    server = start_stage(lambda: create_segmentation(stage_settings(triton_url)))
    photo = imaging.encode(floor_photo())[0]
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        reply = seg_grpc.SegmentationServiceStub(channel).Segment(
            seg_pb.SegmentRequest(width=320, height=240, photo=photo, surface="floor"), timeout=30
        )
    mask = imaging.decode_gray(reply.mask_png)
    assert reply.source == "model" and mask.shape == (240, 320)
    assert mask[200, 160] > 200 and mask[40, 160] < 50
    assert 0.4 < reply.coverage < 0.6


def test_the_model_leaves_objects_standing_on_the_quad_out_of_the_mask(
    triton_url: str, start_stage: Callable[[Callable[[], Edge]], Edge]
) -> None:
    server = start_stage(lambda: create_segmentation(stage_settings(triton_url)))
    image = floor_photo()
    image[150:200, 120:180] = (90, 60, 40)  # a dark-blue cabinet standing on the red floor
    quad = [imaging_pb2.Point(x=x, y=y) for x, y in ((10, 125), (310, 125), (310, 235), (10, 235))]
    request = seg_pb.SegmentRequest(width=320, height=240, photo=imaging.encode(image)[0], quad=quad)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = seg_grpc.SegmentationServiceStub(channel)
        plain = stub.Segment(request, timeout=30)  # no surface named: the quad alone
        request.surface = "floor"
        fused = stub.Segment(request, timeout=30)
    assert (plain.used_model, fused.used_model) == (False, True)
    plain_mask, fused_mask = imaging.decode_gray(plain.mask_png), imaging.decode_gray(fused.mask_png)
    assert plain_mask[175, 150] == 255 and fused_mask[175, 150] < 30  # the cabinet is left out
    assert fused_mask[215, 60] > 225 and fused_mask[140, 250] > 225  # the floor around it stays
    assert fused_mask[100, 160] == 0  # nothing outside the quad is added
    assert fused.excluded_fraction == pytest.approx(50 * 60 / (300 * 110), abs=0.03)


def test_clicks_override_the_models_labels(triton_url: str, start_stage: Callable[[Callable[[], Edge]], Edge]) -> None:
    server = start_stage(lambda: create_segmentation(stage_settings(triton_url)))
    photo = imaging.encode(floor_photo())[0]
    whole = imaging_pb2.Box(x_min=0, y_min=0, x_max=320, y_max=240)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = seg_grpc.SegmentationServiceStub(channel)
        seeded = stub.Segment(
            seg_pb.SegmentRequest(width=320, height=240, photo=photo, box=whole, surface="floor"), timeout=30
        )
        overridden = stub.Segment(
            seg_pb.SegmentRequest(
                width=320,
                height=240,
                photo=photo,
                box=whole,
                surface="floor",
                negative_points=[imaging_pb2.Point(x=160, y=200)],
            ),
            timeout=30,
        )
    seeded_mask, overridden_mask = imaging.decode_gray(seeded.mask_png), imaging.decode_gray(overridden.mask_png)
    # Seeded by the model, a box around the whole photo finds the red floor.
    assert seeded.used_model and seeded_mask[200, 40] > 200 and seeded_mask[40, 160] < 50
    # A negative click on the floor wins over the model there.
    assert seeded_mask[200, 160] > 200 and overridden_mask[200, 160] < 50


def test_without_model_or_hint_segmentation_says_what_to_provide(stages: dict[str, str]) -> None:
    with grpc.insecure_channel(stages["segmentation"]) as channel, pytest.raises(grpc.RpcError) as info:
        seg_grpc.SegmentationServiceStub(channel).Segment(
            seg_pb.SegmentRequest(width=320, height=240, surface="floor"), timeout=10
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "provide a mask, a polygon, a quad, points or a box" in str(info.value.details())


def test_projection_lights_the_material_with_the_intrinsic_model(
    triton_url: str, start_stage: Callable[[Callable[[], Edge]], Edge]
) -> None:
    """With the intrinsic model deployed the projection takes the photo's light from it (the tiny
    model: the photo's blurred grey, which on this plain floor is its light): the new material is
    lit as the photo's floor is, here a sun patch on the floor's right half."""
    scene = scenes.room_scene(320, 240)
    floor = scene.floor_mask == 255
    photo = scene.photo.copy()
    sun = floor.copy()
    sun[:, :160] = False
    # Linear light: the floor at 0.3 of its own (nothing saturates), the sun patch 4 times that
    # (the scene's own light falls to half from left to right).
    photo[floor] = (photo[floor].astype(np.float32) * 0.3 ** (1 / 2.2)).astype(np.uint8)
    photo[sun] = np.clip(photo[sun].astype(np.float32) * 4 ** (1 / 2.2), 0, 255).astype(np.uint8)
    columns = np.arange(320)[None, :].repeat(240, 0)
    lit, shaded = floor & (columns > 180), floor & (columns < 140)  # clear of the blurred boundary

    def ratio(image: np.ndarray) -> float:
        grey = imaging.srgb_to_linear(image).mean(axis=2)
        return float(np.median(grey[lit]) / np.median(grey[shaded]))

    assert ratio(photo) > 1.6
    request = projection_pb.ProjectRequest(
        photo=imaging.encode(photo)[0],
        swatch=imaging.encode(np.full((32, 32, 3), 120, np.uint8))[0],
        mask_png=imaging.encode_mask(scene.floor_mask),
        homography=imaging_pb2.Homography(m=homography.to_list(scene.homography)),
        repeats_u=4,
        repeats_v=4,
        output=imaging_pb2.OutputSpec(format=imaging_pb2.FORMAT_PNG),
    )
    server = start_stage(lambda: create_projection(stage_settings(triton_url)))
    before = inference_count(triton_url, INTRINSIC.name)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        reply = projection_grpc.ProjectionServiceStub(channel).Project(request, timeout=30)
    assert reply.shading_source == "intrinsic"
    assert settled_count(triton_url, INTRINSIC.name, before + 1) == before + 1
    assert ratio(imaging.decode_bgr(reply.images[0].data)) == pytest.approx(ratio(photo), rel=0.1)


def test_models_dir_layout(models_dir: Path) -> None:
    for model in ("depth", "segmentation", "intrinsic", "diffusion"):
        assert (models_dir / model / "1" / "model.onnx").exists()


def test_generation_uses_the_diffusion_model_on_triton(
    triton_url: str, start_stage: Callable[[Callable[[], Edge]], Edge]
) -> None:
    server = start_stage(lambda: create_generation(generation_settings(None, triton_url, providers=("triton",))))
    before = inference_count(triton_url, "diffusion")
    texture = (np.random.default_rng(1).integers(60, 200, (256, 256, 3))).astype(np.uint8)
    mask = np.zeros((256, 256), np.uint8)
    mask[64:192, 64:192] = 255
    spec = imaging_pb2.OutputSpec(format=imaging_pb2.FORMAT_PNG, renditions=[imaging_pb2.Rendition(name="full")])
    budget = gen_pb.Budget(max_tokens=0, max_cents=5.0)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = gen_grpc.GenerationServiceStub(channel)
        made = stub.Generate(
            gen_pb.GenerateRequest(prompt="a sunny room", width=640, height=480, seed=3, output=spec, budget=budget),
            timeout=30,
        )
        other_seed = stub.Generate(
            gen_pb.GenerateRequest(prompt="a sunny room", width=640, height=480, seed=4, output=spec, budget=budget),
            timeout=30,
        )
        edited = stub.Edit(
            gen_pb.EditRequest(
                image=imaging.encode(texture, imaging_pb2.FORMAT_PNG)[0],
                mask_png=imaging.encode_mask(mask),
                prompt="marble",
                output=spec,
                budget=budget,
            ),
            timeout=30,
        )
        capabilities = stub.GetCapabilities(gen_pb.GetCapabilitiesRequest(), timeout=10)
    assert settled_count(triton_url, "diffusion", before + 3) == before + 3
    image = imaging.decode_bgr(made.images[0].data)
    assert image.shape == (480, 640, 3) and image.std() > 20
    assert made.call.provider == "triton" and made.call.model == "diffusion" and made.call.cost.cents == 0.4
    assert np.abs(image.astype(int) - imaging.decode_bgr(other_seed.images[0].data)).mean() > 5  # the seed counts
    out = imaging.decode_bgr(edited.images[0].data).astype(int)
    assert np.abs(out - texture)[100:156, 100:156].mean() > 10  # painted inside the mask
    assert np.abs(out - texture)[:40].mean() < 1  # untouched outside
    assert [(p.name, p.breaker_state) for p in capabilities.providers] == [("triton", "closed")]


def test_generation_fails_over_from_openai_to_the_diffusion_model(
    triton_url: str,
    generation_openai: FakeOpenAI,
    start_stage: Callable[[Callable[[], Edge]], Edge],
) -> None:
    generation_openai.reset()
    generation_openai.push(Reply("error", 500))
    server = start_stage(
        lambda: create_generation(generation_settings(generation_openai, triton_url, providers=("openai", "triton")))
    )
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        reply = gen_grpc.GenerationServiceStub(channel).Generate(
            gen_pb.GenerateRequest(prompt="a hall", budget=gen_pb.Budget(max_tokens=10000, max_cents=50)), timeout=30
        )
    assert [(a.provider, a.outcome) for a in reply.call.attempts] == [("openai", "error"), ("triton", "ok")]
    assert reply.call.provider == "triton"


def test_an_open_breaker_shows_in_health_capabilities_and_metrics(
    generation_openai: FakeOpenAI, start_stage: Callable[[Callable[[], Edge]], Edge]
) -> None:
    from dataclasses import replace

    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    generation_openai.reset()
    generation_openai.default = Reply("error", 502)
    settings = replace(generation_settings(generation_openai), breaker_threshold=2)
    server = start_stage(lambda: create_generation(settings, meter))
    request = gen_pb.GenerateRequest(prompt="a hall", budget=gen_pb.Budget(max_tokens=10000, max_cents=50))
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = gen_grpc.GenerationServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        name = "render.generation.v1.GenerationService/openai"
        assert (
            health.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING
        )
        codes = []
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as info:
                stub.Generate(request, timeout=10)
            codes.append(info.value.code())
        status = health.Check(health_pb2.HealthCheckRequest(service=name)).status
        capabilities = stub.GetCapabilities(gen_pb.GetCapabilitiesRequest(), timeout=5)
    generation_openai.reset()
    assert codes == [grpc.StatusCode.UNAVAILABLE] * 3
    assert status == health_pb2.HealthCheckResponse.NOT_SERVING
    (openai,) = capabilities.providers
    assert (openai.breaker_state, openai.failures_total, openai.breaker_opened_total) == ("open", 2, 1)
    points, gauge = (
        metric_points(reader, "render.generation.provider.calls"),
        metric_points(reader, "render.generation.breaker.state"),
    )
    assert points == {
        (("outcome", "error"), ("provider", "openai")): 2,
        (("outcome", "circuit_open"), ("provider", "openai")): 1,
    }
    assert gauge == {(("provider", "openai"),): 2}  # 0 closed, 1 half-open, 2 open


def metric_points(reader: object, name: str) -> dict[tuple[tuple[str, object], ...], float]:
    """The data points of one metric, by their sorted attributes."""
    data = reader.get_metrics_data()  # type: ignore[attr-defined]
    return {
        tuple(sorted(dict(p.attributes).items())): p.value
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for p in metric.data.data_points
    }


def test_a_triton_without_the_diffusion_model_is_skipped(
    triton_url: str, start_stage: Callable[[Callable[[], Edge]], Edge]
) -> None:
    from dataclasses import replace

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    settings = replace(generation_settings(None, triton_url, providers=("triton",)), diffusion_model="not-loaded")
    server = start_stage(lambda: create_generation(settings))
    budget = gen_pb.Budget(max_tokens=0, max_cents=5.0)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = gen_grpc.GenerationServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Generate(gen_pb.GenerateRequest(prompt="a hall", budget=budget), timeout=10)
        dry = stub.Generate(gen_pb.GenerateRequest(prompt="a hall", budget=budget, dry_run=True), timeout=10)
        capabilities = stub.GetCapabilities(gen_pb.GetCapabilitiesRequest(), timeout=10)
        provider_health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="render.generation.v1.GenerationService/triton"), timeout=5
        )
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "no configured image provider" in str(info.value.details())
    assert dry.call.dry_run and dry.call.provider == "triton" and dry.call.estimated_cost.cents == 0.4
    # Capabilities and health tell the truth: the provider is configured but cannot be called.
    (triton,) = capabilities.providers
    assert not triton.available and triton.unavailable_reason == "its model is not loaded"
    assert not capabilities.refine_available
    assert provider_health.status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_a_swap_runs_end_to_end_on_the_models(
    triton_url: str,
    redis_url: str,
    stages: dict[str, str],
    start_stage: Callable[[Callable[[], Edge]], Edge],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path: Path,
) -> None:
    """No hint but the surface's name: the segmentation model finds the floor, the depth model its plane."""
    model_stages = dict(stages)
    for name, create in (("segmentation", create_segmentation), ("depth", create_depth)):
        server = start_stage(lambda create=create: create(stage_settings(triton_url)))  # type: ignore[misc]
        model_stages[name] = f"127.0.0.1:{server.port}"
    gateway = start_gateway(gateway_settings(redis_url + "/9", tmp_path, model_stages))
    image = floor_photo()
    image[170:210, 130:190] = (90, 60, 40)  # an object standing on the floor
    request = material_swap_request(imaging.encode(image)[0], imaging.encode(np.full((32, 32, 3), 200, np.uint8))[0])
    request.material_swap.surface = pb.SURFACE_FLOOR
    before = (inference_count(triton_url, "segmentation"), inference_count(triton_url, "depth"))
    with client_for(f"127.0.0.1:{gateway.port}", redis_url + "/9", "models") as client:
        job = client.submit(request).job
        events = list(client.watch(job.id, timeout=60))
        result = client.get(job.id).result
    assert events[-1].state == pb.JOB_STATE_SUCCEEDED, events[-1].error.message
    assert (
        settled_count(triton_url, "segmentation", before[0] + 1),
        settled_count(triton_url, "depth", before[1] + 1),
    ) == (
        before[0] + 1,
        before[1] + 1,
    ), [e.message for e in events]
    assert result.geometry_source == "depth_model"
    assert any("mask from the segmentation model" in e.message for e in events)
    out = read_output(result.outputs[0])
    # The floor is re-covered: its red (R - G ~150) is now the grey swatch under the photo's light.
    assert abs(int(out[220, 60, 2]) - int(out[220, 60, 1])) < 30
    assert np.abs(out[190, 160].astype(int) - (90, 60, 40)).max() < 25  # the object stays in front
    assert np.abs(out[40, 160].astype(int) - image[40, 160]).max() < 12  # the wall is untouched


def floor_depth(
    width: int, height: int, focal: float, pitch_deg: float, camera_height: float
) -> tuple[np.ndarray, np.ndarray]:
    """Depth along the optical axis of a floor camera_height below a camera pitched down (inf above
    the horizon), and the floor's normal (facing away from the camera) in camera coordinates."""
    p = np.radians(pitch_deg)
    normal = np.array([0.0, np.cos(p), np.sin(p)])  # "down" in camera coordinates (y points down)
    ys = np.mgrid[0:height, 0:width][0].astype(np.float64)
    along = normal[1] * (ys - height / 2) / focal + normal[2]  # n . ray with ray z = 1
    return np.where(along > 1e-6, camera_height / np.maximum(along, 1e-6), np.inf), normal


def test_a_metric_depth_model_makes_the_plane_metric(
    start_stage: Callable[[Callable[[], Edge]], Edge], tmp_path: Path
) -> None:
    """A depth model that declares metric_depth (installed by `make models`' install step, served by
    its own embedded Triton): the plane's normal and its distance in metres come from the model."""
    near, per_level = 1.0, 5.0 / 255.0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metric.onnx"
        onnx.save(metric_depth_model(near, per_level), str(path))
        install(path, METRIC_DEPTH, tmp_path / "models")
    assert "metric_depth" in (tmp_path / "models" / "depth" / "config.pbtxt").read_text()
    width, height = 320, 240
    focal = default_focal(width, height)
    depth, normal = floor_depth(width, height, focal, pitch_deg=30, camera_height=1.5)
    grey = np.clip(np.round((depth - near) / per_level), 0, 255).astype(np.uint8)
    photo = imaging.encode(cv2.merge([grey, grey, grey]), imaging_pb2.FORMAT_PNG)[0]
    mask = ((depth > 1.6) & (depth < 5.5)).astype(np.uint8) * 255
    with embedded_triton(tmp_path / "models", tmp_path, ("depth",)) as url:
        server = start_stage(lambda: create_depth(stage_settings(url)))
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            reply = depth_grpc.DepthServiceStub(channel).EstimatePlane(
                depth_pb.EstimatePlaneRequest(
                    width=width, height=height, photo=photo, mask_png=imaging.encode_mask(mask)
                ),
                timeout=30,
            )
    assert (reply.source, reply.distance_source) == ("depth_model", "depth_model")
    H = homography.from_list(list(reply.homography.m))
    K_inv = np.linalg.inv(np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]]))
    found = np.cross(K_inv @ H[:, 0], K_inv @ H[:, 1])
    angle = np.degrees(np.arccos(min(1.0, abs(found @ normal) / np.linalg.norm(found))))
    assert angle < 2.0
    distance = reply.meters_per_unit / homography.rectangle_width(H, focal, width, height)
    assert distance == pytest.approx(1.5, rel=0.03)


def test_clicks_alone_swap_through_the_prompt_segmentation_models(
    redis_url: str,
    stages: dict[str, str],
    start_stage: Callable[[Callable[[], Edge]], Edge],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path: Path,
) -> None:
    """One click and no outline: the mask from the prompt segmentation encoder and decoder (tiny
    models of the real signatures installed by `make models`' install step, served by the embedded
    Triton), the plane from the depth model; the job's events say which model made the mask."""
    models = tmp_path / "models"
    write_tiny_prompt_models(models)
    onnx.save(depth_model(), str(tmp_path / "depth.onnx"))
    install(tmp_path / "depth.onnx", DEPTH, models)
    served = (PROMPT_ENCODER.name, PROMPT_DECODER.name, "depth")
    image = floor_photo()
    image[170:210, 130:190] = (90, 60, 40)  # an object standing on the red floor
    photo = imaging.encode(image)[0]
    with embedded_triton(models, tmp_path, served) as url:
        segmentation = start_stage(lambda: create_segmentation(stage_settings(url)))
        depth = start_stage(lambda: create_depth(stage_settings(url)))
        click = imaging_pb2.Point(x=60, y=220)
        with grpc.insecure_channel(f"127.0.0.1:{segmentation.port}") as channel:
            reply = seg_grpc.SegmentationServiceStub(channel).Segment(
                seg_pb.SegmentRequest(width=320, height=240, photo=photo, positive_points=[click]), timeout=30
            )
        assert (reply.source, reply.used_model) == ("prompt_points", True)
        mask = imaging.decode_gray(reply.mask_png)
        assert mask[220, 60] > 200 and mask[200, 300] > 200  # the floor, all of it
        assert mask[40, 160] < 50 and mask[190, 160] < 50  # not the wall, not the object on the floor
        assert settled_count(url, PROMPT_ENCODER.name, 1) == 1 and settled_count(url, PROMPT_DECODER.name, 1) == 1

        addresses = {**stages, "segmentation": f"127.0.0.1:{segmentation.port}", "depth": f"127.0.0.1:{depth.port}"}
        gateway = start_gateway(gateway_settings(redis_url + "/9", tmp_path, addresses))
        request = material_swap_request(photo, imaging.encode(np.full((32, 32, 3), 200, np.uint8))[0])
        request.material_swap.hints.positive_points.append(pb.Point(x=60, y=220))
        with client_for(f"127.0.0.1:{gateway.port}", redis_url + "/9", "prompt") as client:
            job = client.submit(request).job
            events = list(client.watch(job.id, timeout=60))
            result = client.get(job.id).result
        assert events[-1].state == pb.JOB_STATE_SUCCEEDED, events[-1].error.message
        assert settled_count(url, PROMPT_DECODER.name, 2) == 2
    assert any("mask from the clicks by the prompt segmentation model" in e.message for e in events)
    out = read_output(result.outputs[0])
    # The floor is re-covered: its red (R - G ~150) is now the grey swatch under the photo's light.
    assert abs(int(out[220, 60, 2]) - int(out[220, 60, 1])) < 30
    assert np.abs(out[190, 160].astype(int) - (90, 60, 40)).max() < 25  # the object stays in front
    assert np.abs(out[40, 160].astype(int) - image[40, 160]).max() < 12  # the wall is untouched
