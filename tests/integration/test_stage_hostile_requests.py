"""The stages' own defences against requests no gateway of this version sends (a buggy or newer
gateway, or anyone on the internal network): refused with a typed status naming the field, before
any provider is paid or any large image decoded."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import grpc
import numpy as np
import pytest

from render.generation.v1 import generation_service_pb2 as gen_pb
from render.generation.v1 import generation_service_pb2_grpc as gen_grpc
from renderkit.edge import Edge
from services.generation.server import create_server as create_generation
from tests.conftest import generation_settings

PLENTY = gen_pb.Budget(max_tokens=10**9, max_cents=1e9)


def _refusal(stub: gen_grpc.GenerationServiceStub, request: gen_pb.GenerateRequest) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        stub.Generate(request, timeout=30)
    return info.value


@pytest.mark.parametrize(
    ("width", "height", "field"), [(-5, 512, "width"), (512, -1, "height"), (40_000, 40_000, "width")]
)
def test_a_generation_size_no_provider_makes_is_refused(
    start_stage: Callable[[Callable[[], Edge]], Edge], width: int, height: int, field: str
) -> None:
    server = start_stage(lambda: create_generation(generation_settings(None)))
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        error = _refusal(
            gen_grpc.GenerationServiceStub(channel),
            gen_pb.GenerateRequest(prompt="a room", width=width, height=height, budget=PLENTY, dry_run=True),
        )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and (error.details() or "").startswith(f"{field}:")


def test_bad_sizes_do_not_open_the_diffusion_providers_breaker_for_everyone(
    triton_url: str, start_stage: Callable[[Callable[[], Edge]], Edge]
) -> None:
    server = start_stage(lambda: create_generation(generation_settings(None, triton_url, providers=("triton",))))
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = gen_grpc.GenerationServiceStub(channel)
        for _ in range(6):  # more than the breaker's threshold (5)
            error = _refusal(stub, gen_pb.GenerateRequest(prompt="a room", width=-5, height=512, budget=PLENTY))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        made = stub.Generate(gen_pb.GenerateRequest(prompt="a room", width=512, height=512, budget=PLENTY), timeout=30)
        capabilities = stub.GetCapabilities(gen_pb.GetCapabilitiesRequest(), timeout=10)
    assert made.images and made.call.provider == "triton"
    assert [(p.name, p.breaker_state, p.consecutive_failures) for p in capabilities.providers] == [
        ("triton", "closed", 0)
    ]


def test_reference_images_are_refused_by_count_and_by_memory_before_they_are_decoded(
    start_stage: Callable[[Callable[[], Edge]], Edge],
) -> None:
    server = start_stage(lambda: create_generation(generation_settings(None)))
    small = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))[1].tobytes()
    # 39.7 MP in 116 KB: every one decodes to 119 MB (each of them was decoded, even for a dry run).
    flat = cv2.imencode(".png", np.zeros((6300, 6300, 3), np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()
    with grpc.insecure_channel(
        f"127.0.0.1:{server.port}", options=[("grpc.max_send_message_length", 64 << 20)]
    ) as channel:
        stub = gen_grpc.GenerationServiceStub(channel)
        many = _refusal(
            stub, gen_pb.GenerateRequest(prompt="x", reference_images=[small] * 5000, dry_run=True, budget=PLENTY)
        )
        large = _refusal(
            stub, gen_pb.GenerateRequest(prompt="x", reference_images=[flat] * 8, dry_run=True, budget=PLENTY)
        )
        junk = _refusal(
            stub, gen_pb.GenerateRequest(prompt="x", reference_images=[small, b"junk"], dry_run=True, budget=PLENTY)
        )
        fine = stub.Generate(
            gen_pb.GenerateRequest(prompt="x", reference_images=[small, flat], dry_run=True, budget=PLENTY)
        )
    assert many.code() == grpc.StatusCode.INVALID_ARGUMENT and (many.details() or "").startswith(
        "reference_images: at most 16"
    )
    assert large.code() == grpc.StatusCode.INVALID_ARGUMENT and (large.details() or "").startswith(
        "reference_images[0]: a 6300x6300"
    )
    assert junk.code() == grpc.StatusCode.INVALID_ARGUMENT and (junk.details() or "").startswith("reference_images[1]:")
    assert fine.call.dry_run
