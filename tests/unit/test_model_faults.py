"""A deployed model that answers NaN, or raises on its input, is the model's fault: asking again
gives the same answer. The stages use their model-free path (or fail for good, saying why) instead
of answering UNAVAILABLE, which the gateway retried until the job's deadline (600 s by default)
and then failed as "the segmentation stage was unavailable" (a review found it)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from render.depth.v1 import depth_service_pb2 as depth_pb
from render.depth.v1 import depth_service_pb2_grpc as depth_grpc
from render.imaging.v1 import imaging_pb2
from render.segmentation.v1 import segmentation_service_pb2 as seg_pb
from render.segmentation.v1 import segmentation_service_pb2_grpc as seg_grpc
from renderkit import imaging
from renderkit.errors import error_reason
from renderkit.triton import (
    DEPTH,
    INTRINSIC,
    PROMPT_DECODER,
    PROMPT_ENCODER,
    SEGMENTATION,
    ModelOutputError,
    TritonModels,
)
from services.depth.server import DepthServicer
from services.projection.server import ProjectionServicer
from services.segmentation.server import SegmentationServicer
from tests.triton_stand_in import StandInModels

INTERNAL = InferenceServerException(msg="onnx runtime error 1: Reshape failed", status="StatusCode.INTERNAL")
NAN_OUTPUTS = {
    DEPTH.name: {"predicted_depth": np.full((1, 64, 64), np.nan, np.float32)},
    SEGMENTATION.name: {"logits": np.full((1, 150, 16, 16), np.nan, np.float32)},
    PROMPT_ENCODER.name: {"image_embeddings": np.zeros((1, 256, 64, 64), np.float32)},
    PROMPT_DECODER.name: {
        "mask_logits": np.ones((1, 2, 256, 256), np.float32),
        "iou_scores": np.full((1, 2), np.nan, np.float32),
    },
    INTRINSIC.name: {"shading": np.full((1, 1, 64, 64), np.nan, np.float32)},
}


class Answer:
    def __init__(self, outputs: dict[str, np.ndarray]) -> None:
        self.outputs = outputs

    def as_numpy(self, name: str) -> np.ndarray | None:
        return self.outputs.get(name)


class Client:
    """A tritonclient whose every model is ready and answers NaN (or raises `raises`)."""

    def __init__(
        self, raises: Exception | None = None, deployed: tuple[str, ...] = (), outputs: dict[str, Any] | None = None
    ) -> None:
        self.raises, self.deployed = raises, deployed
        self.outputs = {**NAN_OUTPUTS, **(outputs or {})}

    async def is_model_ready(self, name: str, **_: Any) -> bool:
        return name in self.deployed

    async def get_model_metadata(self, name: str, **_: Any) -> Any:
        output = type("Output", (), {"name": "predicted_depth"})()
        return type("Metadata", (), {"outputs": (output,)})()

    async def infer(self, name: str, *args: Any, **kwargs: Any) -> Answer:
        if self.raises is not None:
            raise self.raises
        return Answer(self.outputs[name])


def models(client: Client) -> TritonModels:
    return StandInModels(client)


def photo() -> tuple[bytes, np.ndarray]:
    image = np.full((240, 320, 3), 90, np.uint8)
    image[130:, :, 2] = 230  # a red floor below a grey wall
    return imaging.encode(image)[0], image


async def call(servicer: Any, add: Any, invoke: Any) -> Any:
    server = grpc.aio.server()
    add(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                return await invoke(channel)
            except grpc.aio.AioRpcError as exc:
                return exc
    finally:
        await server.stop(0)


def segment(triton: TritonModels, request: seg_pb.SegmentRequest) -> Any:
    return asyncio.run(
        call(
            SegmentationServicer(triton),
            seg_grpc.add_SegmentationServiceServicer_to_server,
            lambda channel: seg_grpc.SegmentationServiceStub(channel).Segment(request, timeout=20),
        )
    )


OUTLINE = [imaging_pb2.Point(x=x, y=y) for x, y in ((20, 130), (300, 130), (300, 239), (20, 239))]


def test_an_outline_is_used_alone_when_the_segmentation_model_answers_nan() -> None:
    data, _ = photo()
    request = seg_pb.SegmentRequest(width=320, height=240, photo=data, polygon=OUTLINE, surface="floor")
    reply = segment(models(Client(deployed=(SEGMENTATION.name,))), request)
    assert not isinstance(reply, grpc.aio.AioRpcError), reply.details()
    assert (reply.source, reply.used_model) == ("polygon", False) and reply.coverage > 0.3
    # The job's events say which model failed (only the stage's log did).
    assert reply.model_fallback_reason.startswith("the segmentation model's answer was unusable (")


def test_a_segmentation_model_that_answers_the_same_everywhere_is_at_fault() -> None:
    """Logits the same at every pixel (a broken export) gave an empty mask: the job failed as the
    caller's empty surface, charged. The model is now at fault: an outline is used alone, and a
    surface named alone fails as the deployment's (refunded)."""
    flat = Client(deployed=(SEGMENTATION.name,), outputs={SEGMENTATION.name: {"logits": np.zeros((1, 150, 16, 16))}})
    data, _ = photo()
    request = seg_pb.SegmentRequest(width=320, height=240, photo=data, polygon=OUTLINE, surface="floor")
    outlined = segment(models(flat), request)
    assert not isinstance(outlined, grpc.aio.AioRpcError), outlined.details()
    assert (outlined.source, outlined.used_model) == ("polygon", False) and outlined.coverage > 0.3
    assert "logits are the same at every pixel" in outlined.model_fallback_reason
    named = segment(models(flat), seg_pb.SegmentRequest(width=320, height=240, photo=data, surface="floor"))
    assert isinstance(named, grpc.aio.AioRpcError) and error_reason(named) == "PIPELINE_ERROR"


def test_clicks_take_the_model_free_path_when_the_prompt_model_answers_nan() -> None:
    data, _ = photo()
    request = seg_pb.SegmentRequest(width=320, height=240, photo=data, positive_points=[imaging_pb2.Point(x=60, y=220)])
    reply = segment(models(Client(deployed=(PROMPT_ENCODER.name, PROMPT_DECODER.name))), request)
    assert not isinstance(reply, grpc.aio.AioRpcError), reply.details()
    assert (reply.source, reply.used_model) == ("points", False)
    assert reply.model_fallback_reason.startswith("the prompt segmentation model's answer was unusable (")


def test_a_surface_named_alone_fails_for_good_when_the_model_answers_nan() -> None:
    data, _ = photo()
    request = seg_pb.SegmentRequest(width=320, height=240, photo=data, surface="floor")
    reply = segment(models(Client(deployed=(SEGMENTATION.name,))), request)
    assert isinstance(reply, grpc.aio.AioRpcError)
    assert reply.code() == grpc.StatusCode.FAILED_PRECONDITION, reply.details()
    assert "unusable" in (reply.details() or "") and error_reason(reply) == "PIPELINE_ERROR"


def test_a_model_that_raises_on_its_input_is_the_models_fault() -> None:
    inputs = {"pixel_values": np.zeros((1, 3, 8, 8), np.float32)}
    with pytest.raises(ModelOutputError):
        asyncio.run(models(Client(raises=INTERNAL)).infer(DEPTH, inputs))
    away = InferenceServerException(msg="connection refused", status="StatusCode.UNAVAILABLE")
    with pytest.raises(Exception) as raised:
        asyncio.run(models(Client(raises=away)).infer(DEPTH, inputs))
    assert not isinstance(raised.value, ModelOutputError)  # Triton away: still retried


@pytest.mark.parametrize("raises", [INTERNAL, None], ids=["raises", "nan"])
def test_a_depth_model_at_fault_is_not_the_callers_fault(raises: Exception | None) -> None:
    """Raising: UNAVAILABLE, retried until the job's deadline. NaN: the photo's lines instead, and
    where it has none the job failed as VALIDATION_FAILED, charged to the caller."""
    data, _ = photo()
    mask = np.zeros((240, 320), np.uint8)
    mask[130:, 20:300] = 255
    request = depth_pb.EstimatePlaneRequest(width=320, height=240, photo=data, mask_png=imaging.encode_mask(mask))
    reply = asyncio.run(
        call(
            DepthServicer(models(Client(raises=raises, deployed=(DEPTH.name,)))),
            depth_grpc.add_DepthServiceServicer_to_server,
            lambda channel: depth_grpc.DepthServiceStub(channel).EstimatePlane(request, timeout=20),
        )
    )
    # The photo's lines instead: this flat photo has none, so the plane cannot be found, for good.
    assert isinstance(reply, grpc.aio.AioRpcError)
    assert reply.code() == grpc.StatusCode.FAILED_PRECONDITION, reply.details()
    assert "depth model's answer was unusable" in (reply.details() or "")
    assert error_reason(reply) == "PIPELINE_ERROR"  # the deployment's fault: refunded


def test_the_lines_plane_says_why_the_depth_models_plane_was_not_used() -> None:
    from devstack import scenes
    from tests.unit.test_geometry import tiled_floor

    scene, mask = tiled_floor(scenes.View(60, 35, 20))
    request = depth_pb.EstimatePlaneRequest(
        width=640, height=480, photo=imaging.encode(scene.photo)[0], mask_png=imaging.encode_mask(mask)
    )
    reply = asyncio.run(
        call(
            DepthServicer(models(Client(deployed=(DEPTH.name,)))),
            depth_grpc.add_DepthServiceServicer_to_server,
            lambda channel: depth_grpc.DepthServiceStub(channel).EstimatePlane(request, timeout=20),
        )
    )
    assert not isinstance(reply, grpc.aio.AioRpcError), reply.details()
    assert (reply.source, reply.used_depth_model) == ("vanishing_lines", False)
    assert reply.model_fallback_reason.startswith("the depth model's answer was unusable (")


def test_the_classical_light_says_why_the_intrinsic_models_shading_was_not_used() -> None:
    from tests.unit.test_projection_service import FakeContext, swap_request

    swatch = imaging.encode(np.full((32, 32, 3), 150, np.uint8))[0]
    servicer = ProjectionServicer(triton=models(Client(deployed=(INTRINSIC.name,))))
    reply = asyncio.run(servicer.Project(swap_request(swatch), FakeContext()))  # type: ignore[arg-type]
    assert reply.shading_source == "texture_space" and len(reply.images) == 1
    assert reply.model_fallback_reason.startswith("the intrinsic model's answer was unusable (")


# ONNX Runtime's answer when the GPU is short of memory under load (Triton's onnxruntime backend
# answers INTERNAL): the same photo goes through once the load passes.
OUT_OF_MEMORY = InferenceServerException(
    msg="onnx runtime error 6: Non-zero status code returned while running Conv node. Name:'Conv_12' Status "
    "Message: /workspace/onnxruntime/onnxruntime/core/framework/bfc_arena.cc:368 void* "
    "onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*, bool, "
    "onnxruntime::WaitNotificationFn) Failed to allocate memory for requested buffer of size 2830172160",
    status="StatusCode.INTERNAL",
)
RESET = InferenceServerException(msg="Received RST_STREAM with error code 2", status="StatusCode.INTERNAL")


@pytest.mark.parametrize("raises", [OUT_OF_MEMORY, RESET], ids=["out-of-memory", "reset"])
def test_an_internal_that_is_not_about_the_input_is_retried(raises: Exception) -> None:
    """A GPU out of memory (or a batch of other requests too large together) and a reset stream are
    transient: as the model's fault, a surface named alone failed the job for good and hints were
    used alone where the model would have answered a moment later."""
    inputs = {"pixel_values": np.zeros((1, 3, 8, 8), np.float32)}
    with pytest.raises(Exception) as raised:
        asyncio.run(models(Client(raises=raises)).infer(DEPTH, inputs))
    assert not isinstance(raised.value, ModelOutputError)
    data, _ = photo()
    request = seg_pb.SegmentRequest(width=320, height=240, photo=data, surface="floor")
    reply = segment(models(Client(raises=raises, deployed=(SEGMENTATION.name,))), request)
    assert isinstance(reply, grpc.aio.AioRpcError)
    assert reply.code() == grpc.StatusCode.UNAVAILABLE, reply.details()


def test_the_jobs_events_name_the_model_whose_answer_was_not_used() -> None:
    from gateway.material_swap import describe_geometry, describe_segmentation, describe_shading

    why = "the segmentation model's answer was unusable (its logits are not finite)"
    seg = seg_pb.SegmentResponse(source="polygon", coverage=0.4, model_fallback_reason=why)
    assert describe_segmentation(seg) == f"mask from the polygon hints without the model: {why}"
    plane = depth_pb.EstimatePlaneResponse(
        source="vanishing_lines", confidence=0.8, focal_source="exif", model_fallback_reason="the depth model's answer"
    )
    assert describe_geometry(plane).endswith("focal length from the photo's EXIF (the depth model's answer)")
    assert describe_shading("texture_space", "the intrinsic model's answer").endswith(
        "pattern left out (the intrinsic model's answer)"
    )
    assert "(" not in describe_shading("texture_space")  # no model failed: nothing more said
    sunlit = describe_shading("texture_space", patch_colour=True)
    assert (
        sunlit.startswith("light read from the photo on the surface's plane") and "sharp-edged light's colour" in sunlit
    )
