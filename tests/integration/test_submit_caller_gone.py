"""A submit whose caller goes away (its deadline, a disconnect) while its ledger write is in flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import redis

from gateway.server import Gateway
from gateway.settings import GatewaySettings
from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from render_client.client import room_render, room_render_request
from tests.conftest import gateway_settings
from tests.credentials import bearer, key_for

# Holds Redis for 1.5 s (a script runs alone): commands sent meanwhile wait behind it.
_BUSY = (
    "local t = redis.call('TIME'); local e = t[1] * 1e6 + t[2] + 1500000; "
    "while true do local n = redis.call('TIME'); if n[1] * 1e6 + n[2] > e then break end end return 1"
)


def test_a_job_started_here_as_its_caller_gave_up_runs_at_once(
    redis_url: str, stages: dict[str, str], start_gateway: Callable[[GatewaySettings], Gateway], tmp_path: Path
) -> None:
    """The submit script started the job for this gateway's dispatcher, but the call had been
    cancelled by then and nothing ran it: it waited out its lease (30 s) for the reaper, holding one
    of its tenant's concurrency slots (found by a review)."""
    url = redis_url + "/29"
    redis.Redis.from_url(url).flushdb()
    gateway = start_gateway(gateway_settings(url, tmp_path / "storage", stages))
    key = key_for(url, "caller-gone")

    def dry_room(idempotency_key: str) -> pb.SubmitRenderRequest:
        request = room_render_request(
            room_render("kitchen", custom_prompt="a kitchen"), idempotency_key=idempotency_key
        )
        request.room_render.options.dry_run = True
        return request

    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        stub.SubmitRender(dry_room("warm"), metadata=bearer(key), timeout=10)  # the key and the ledger's connection
        time.sleep(0.5)
        busy = threading.Thread(target=lambda: redis.Redis.from_url(url).eval(_BUSY, 0))
        busy.start()
        time.sleep(0.1)
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitRender(dry_room("gone"), metadata=bearer(key), timeout=0.3)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        busy.join()
        job = stub.SubmitRender(dry_room("gone"), metadata=bearer(key), timeout=10)
        assert job.deduplicated  # the script ran: the job exists
        start = time.monotonic()
        got = job.job
        while got.state != pb.JOB_STATE_SUCCEEDED and time.monotonic() - start < 40:
            time.sleep(0.1)
            got = stub.GetJob(pb.GetJobRequest(job_id=job.job.id), metadata=bearer(key), timeout=10).job
        assert got.state == pb.JOB_STATE_SUCCEEDED and time.monotonic() - start < 5
        assert got.attempt == 1  # run where it was started, not put back by the reaper
