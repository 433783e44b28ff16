"""A cancel settles the job's credits (render_credits_moved_total) and counts its end
(render_jobs_ended_total), as a dispatcher's end of a job does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import grpc
import redis

from devstack import scenes
from gateway.metrics import CREDITS_MOVED, JOBS_ENDED
from gateway.server import Gateway
from gateway.settings import GatewaySettings
from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from render_client.client import material_swap_request
from renderkit import imaging
from tests.conftest import gateway_settings
from tests.credentials import bearer, key_for

SCENE = scenes.room_scene(320, 240)
PHOTO = imaging.encode(SCENE.photo)[0]
SWATCH = imaging.encode(scenes.plank_texture(64))[0]
QUAD = [(float(x), float(y)) for x, y in SCENE.quad]


def counted(tally: object) -> dict[tuple[tuple[str, str], ...], float]:
    return dict(tally._sums)  # type: ignore[attr-defined]


def test_a_cancelled_jobs_refund_is_counted(
    redis_url: str, stages: dict[str, str], start_gateway: Callable[[GatewaySettings], Gateway], tmp_path: Path
) -> None:
    redis.Redis.from_url(redis_url + "/27").flushdb()
    settings = gateway_settings(redis_url + "/27", tmp_path / "storage", stages)
    gateway = start_gateway(replace(settings, dispatch=False))  # the job stays queued
    key = key_for(redis_url + "/27", "cancelling")
    credits_before, ended_before = counted(CREDITS_MOVED), counted(JOBS_ENDED)
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        job = stub.SubmitRender(material_swap_request(PHOTO, SWATCH, quad=QUAD), metadata=bearer(key)).job
        cancelled = stub.CancelJob(pb.CancelJobRequest(job_id=job.id), metadata=bearer(key)).job
    assert cancelled.state == pb.JOB_STATE_CANCELLED
    assert (cancelled.credits_reserved, cancelled.credits_charged) == (10, 0)  # queued: all of it back
    credits, ended = counted(CREDITS_MOVED), counted(JOBS_ENDED)

    def moved(movement: str) -> float:
        key = (("movement", movement),)
        return credits.get(key, 0) - credits_before.get(key, 0)

    assert (moved("reserve"), moved("charge"), moved("refund")) == (10, 0, 10)
    cancel = (("error_code", ""), ("kind", "material_swap"), ("state", "cancelled"))
    assert ended.get(cancel, 0) - ended_before.get(cancel, 0) == 1
