"""Geometry made by a model-free path because a deployed model was at fault is not cached: it was
kept for GEOMETRY_CACHE_SECONDS, so a later job for the same photo reused the fallback mask, never
asked the mended model, and replayed a failure that did not happen in its job (a review found it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from devstack import scenes
from gateway.server import Gateway
from render.segmentation.v1 import segmentation_service_pb2_grpc as seg_grpc
from render.v1 import render_service_pb2 as pb
from render_client.client import material_swap_request
from renderkit import imaging
from renderkit.triton import SEGMENTATION
from services.segmentation.server import SegmentationServicer
from tests.conftest import gateway_settings
from tests.credentials import client_for
from tests.unit.test_model_faults import Client, models

SCENE = scenes.room_scene(320, 240)
SWATCH = imaging.encode(scenes.plank_texture(64))[0]
QUAD = [(float(x), float(y)) for x, y in SCENE.quad]


def good_logits() -> np.ndarray:
    logits = np.zeros((1, 150, 64, 64), np.float32)
    logits[0, 0, :32] = 5.0  # wall above
    logits[0, 3, 32:] = 5.0  # floor below
    return logits


def test_geometry_made_without_a_failed_model_is_not_reused_once_the_model_answers(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[..., Gateway],
    loop_thread: Any,
    tmp_path: Path,
) -> None:
    fake = Client(deployed=(SEGMENTATION.name,), outputs={SEGMENTATION.name: {"logits": np.zeros((1, 150, 64, 64))}})
    calls: list[str] = []
    infer = fake.infer

    async def counted(name: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return await infer(name, *args, **kwargs)

    fake.infer = counted  # type: ignore[method-assign]

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server()
        seg_grpc.add_SegmentationServiceServicer_to_server(SegmentationServicer(models(fake)), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = loop_thread.run(start())
    try:
        settings = gateway_settings(redis_url, tmp_path, {**stages, "segmentation": f"127.0.0.1:{port}"})
        gateway = start_gateway(settings)
        with client_for(f"127.0.0.1:{gateway.port}", redis_url, "fallback-cache") as client:
            photo = imaging.encode(SCENE.photo, quality=91)[0]  # a fresh cache key
            request = material_swap_request(photo, SWATCH, quad=QUAD, surface=pb.SURFACE_FLOOR)
            first = client.wait(client.submit(request).job.id, timeout=60)
            assert first.state == pb.JOB_STATE_SUCCEEDED, first.error.message
            first_events = [e.message for e in client.watch(first.id)]
            assert any("the segmentation model's answer was unusable" in m for m in first_events), first_events
            assert calls == [SEGMENTATION.name]

            # The model is mended (Triton restarted with its weights loaded): it answers again.
            fake.outputs[SEGMENTATION.name] = {"logits": good_logits()}
            again = client.wait(client.submit(request).job.id, timeout=60)
            assert again.state == pb.JOB_STATE_SUCCEEDED, again.error.message
            events = [e.message for e in client.watch(again.id)]
            # The mended model is asked (a fallback's geometry is not kept), and no event says a
            # model failed in this job.
            assert not again.result.geometry_reused
            assert not any("answer was unusable" in m for m in events), events
            assert calls == [SEGMENTATION.name] * 2
    finally:
        loop_thread.run(server.stop(0))
