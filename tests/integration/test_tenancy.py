"""Tenants cannot starve each other: request rates with RetryInfo, running-job limits that hold
across two dispatching replicas, and fair dispatch behind another tenant's backlog. Real Redis,
real gRPC, in-process gateways sharing one ledger."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
import redis
from google.rpc import error_details_pb2

from devstack import scenes
from gateway.ledger import TenantLimits, keys
from gateway.server import Gateway
from gateway.settings import GatewaySettings
from render.admin.v1 import admin_service_pb2 as admin_pb
from render.admin.v1 import admin_service_pb2_grpc as admin_grpc
from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from render_client.client import RenderClient, material_swap_request, room_render, room_render_request
from renderkit import imaging
from renderkit.errors import status_details, unpack_detail
from renderkit.settings import SettingsError
from tests.conftest import gateway_settings
from tests.credentials import bearer, key_for

SCENE = scenes.room_scene(480, 360)
PHOTO = imaging.encode(SCENE.photo)[0]
SWATCH = imaging.encode(scenes.plank_texture(64))[0]
QUAD = [(float(x), float(y)) for x, y in SCENE.quad]
ROOM = room_render_request(room_render("hall", dry_run=True))
TERMINAL = {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED}


def settings_for(
    url: str, stages: dict[str, str], tmp_path: Path, limits: TenantLimits, **overrides: object
) -> GatewaySettings:
    return replace(gateway_settings(url, tmp_path, stages, **overrides), tenant_defaults=limits)


def test_a_burst_over_the_rate_is_refused_at_once_with_when_to_retry(
    redis_url: str, stages: dict[str, str], start_gateway: Callable[[GatewaySettings], Gateway], tmp_path: Path
) -> None:
    url = redis_url + "/4"
    redis.Redis.from_url(url).flushdb()
    gateway = start_gateway(settings_for(url, stages, tmp_path, TenantLimits(rate_per_s=2, burst=5)))
    key = key_for(url, "bursty")
    accepted, refused = [], []
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        for _ in range(12):
            started = time.monotonic()
            try:
                accepted.append(stub.SubmitRender(ROOM, metadata=bearer(key), timeout=10).job.id)
            except grpc.RpcError as exc:
                refused.append((exc, time.monotonic() - started))
    assert len(accepted) == 5 and len(refused) == 7  # the burst, then nothing until the rate allows
    # Refused at once: ~1 ms each here. The median is held to the 50 ms: one refusal caught
    # behind a stall of the test process's shared event loop (every in-process server of the session
    # runs on it) once took 136 ms on a busy CI machine, and says nothing about the gateway.
    times = sorted(seconds for _, seconds in refused)
    assert times[len(times) // 2] < 0.05, f"refusals took {[round(t * 1000) for t in times]} ms"
    assert times[-1] < 1.0
    for error, _ in refused:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        retry = unpack_detail(status_details(error.trailing_metadata()), error_details_pb2.RetryInfo)  # type: ignore[attr-defined, arg-type]
        assert isinstance(retry, error_details_pb2.RetryInfo)
        assert 0 < retry.retry_delay.ToTimedelta().total_seconds() <= 0.5
    # The accepted jobs finish; after the advised delay the tenant may submit again.
    with RenderClient(f"127.0.0.1:{gateway.port}", api_key=key) as client:
        assert {client.wait(job_id, timeout=60).state for job_id in accepted} == {pb.JOB_STATE_SUCCEEDED}
        time.sleep(0.6)
        client.submit(ROOM)
    # Another tenant's rate is its own.
    with RenderClient(f"127.0.0.1:{gateway.port}", api_key=key_for(url, "calm")) as other:
        other.submit(ROOM)


def running_at_once(client: RenderClient, job_ids: list[str]) -> int:
    """The most jobs that ran at the same moment, from their events: from each run's Starting
    event to its terminal event."""
    marks = []
    for job_id in job_ids:
        events = list(client.watch(job_id, timeout=120))
        starts = [e.time.ToMilliseconds() for e in events if e.message == "Starting"]
        end = next(e.time.ToMilliseconds() for e in events if e.state in TERMINAL)
        assert events[-1].state == pb.JOB_STATE_SUCCEEDED, events[-1].error.message
        marks += [(starts[0], 1), (end, -1)]
    most = running = 0
    for _, step in sorted(marks):  # at equal times the end comes first (-1 < 1)
        running += step
        most = max(most, running)
    return most


def test_no_tenant_runs_more_than_its_concurrency_across_two_replicas(
    redis_url: str, stages: dict[str, str], start_gateway: Callable[[GatewaySettings], Gateway], tmp_path: Path
) -> None:
    url = redis_url + "/15"
    redis.Redis.from_url(url).flushdb()
    limits = TenantLimits(rate_per_s=0, concurrency=2, queue_quota=0)
    first = start_gateway(settings_for(url, stages, tmp_path, limits, dispatcher_concurrency=4))
    start_gateway(settings_for(url, stages, tmp_path, limits, dispatcher_concurrency=4))
    wide = key_for(url, "wide")
    operator = bearer(key_for(url, "operators"))
    with grpc.insecure_channel(f"127.0.0.1:{first.port}") as channel:
        admin = admin_grpc.AdminServiceStub(channel)
        updated = admin.UpdateTenantLimits(
            admin_pb.UpdateTenantLimitsRequest(tenant="wide", limits=admin_pb.TenantLimits(concurrency=3)),
            metadata=operator,
        ).tenant
        assert updated.limits.concurrency == 3 and list(updated.overridden) == ["concurrency"]
        with pytest.raises(grpc.RpcError) as bad:
            admin.UpdateTenantLimits(
                admin_pb.UpdateTenantLimitsRequest(tenant="wide", limits=admin_pb.TenantLimits(concurrency=0)),
                metadata=operator,
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    request = material_swap_request(PHOTO, SWATCH, quad=QUAD)
    with (
        RenderClient(f"127.0.0.1:{first.port}", api_key=key_for(url, "narrow")) as narrow,
        RenderClient(f"127.0.0.1:{first.port}", api_key=wide) as broad,
    ):
        narrow_jobs = [narrow.submit(request).job.id for _ in range(8)]
        broad_jobs = [broad.submit(request).job.id for _ in range(8)]
        assert running_at_once(narrow, narrow_jobs) == 2  # never more, and the slots were used
        assert 2 <= running_at_once(broad, broad_jobs) <= 3


def test_a_rate_below_one_submit_a_day_is_refused_naming_the_field(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tiny positive rate (one submit in 10^295 years) is not "no limit" (0): the admin API and
    TENANT_RATE_PER_SECOND refuse it, and a tenant given the least rate allowed can still submit."""
    url = redis_url + "/11"
    redis.Redis.from_url(url).flushdb()
    gateway = start_gateway(gateway_settings(url, tmp_path, stages, dispatch=False))
    operator = bearer(key_for(url, "operators"))
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        admin = admin_grpc.AdminServiceStub(channel)

        def set_rate(rate: float) -> admin_pb.Tenant:
            request = admin_pb.UpdateTenantLimitsRequest(
                tenant="slow", limits=admin_pb.TenantLimits(rate_per_second=rate)
            )
            return admin.UpdateTenantLimits(request, metadata=operator).tenant

        for tiny in (1e-300, 5e-324, 1 / 86400 / 2):
            with pytest.raises(grpc.RpcError) as bad:
                set_rate(tiny)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
            details = unpack_detail(status_details(bad.value.trailing_metadata()), error_details_pb2.BadRequest)  # type: ignore[attr-defined, arg-type]
            assert isinstance(details, error_details_pb2.BadRequest)
            assert [v.field for v in details.field_violations] == ["limits.rate_per_second"]
        assert set_rate(0).limits.rate_per_second == 0  # no limit
        assert set_rate(1 / 86400).limits.rate_per_second == 1 / 86400
        stub = pb_grpc.RenderServiceStub(channel)
        assert stub.SubmitRender(ROOM, metadata=bearer(key_for(url, "slow")), timeout=10).job.id
        # A rate an older gateway stored before this floor can still be reset to the default.
        redis.Redis.from_url(url).hset(keys.tenant_limits("slow"), "rate", repr(1e-300))
        reset = admin.UpdateTenantLimits(
            admin_pb.UpdateTenantLimitsRequest(tenant="slow", reset=["rate_per_second"]), metadata=operator
        ).tenant
        assert "rate_per_second" not in reset.overridden
        assert reset.limits.rate_per_second == gateway.settings.tenant_defaults.rate_per_s
    monkeypatch.setenv("TENANT_RATE_PER_SECOND", "1e-300")
    with pytest.raises(SettingsError, match="TENANT_RATE_PER_SECOND"):
        GatewaySettings.from_env()
    monkeypatch.setenv("TENANT_RATE_PER_SECOND", "0")
    assert GatewaySettings.from_env().tenant_defaults.rate_per_s == 0


def test_a_tenant_behind_another_tenants_backlog_starts_within_one_slot(
    redis_url: str, stages: dict[str, str], start_gateway: Callable[[GatewaySettings], Gateway], tmp_path: Path
) -> None:
    url = redis_url + "/2"
    redis.Redis.from_url(url).flushdb()
    limits = TenantLimits(rate_per_s=0, concurrency=1000, queue_quota=0)
    gateway = start_gateway(settings_for(url, stages, tmp_path, limits, dispatch=False))
    address = f"127.0.0.1:{gateway.port}"
    try:
        with RenderClient(address, api_key=key_for(url, "backlog")) as heavy:
            backlog = [heavy.submit(ROOM).job.id for _ in range(300)]
            start_gateway(settings_for(url, stages, tmp_path, limits, dispatcher_concurrency=1))
            while heavy.get(backlog[2]).state == pb.JOB_STATE_QUEUED:  # the backlog is being served
                time.sleep(0.01)
            with RenderClient(address, api_key=key_for(url, "newcomer")) as light:
                job = light.submit(ROOM).job
                events = list(light.watch(job.id, timeout=60))
            started = next(e.time.ToMilliseconds() for e in events if e.message == "Starting")
            submitted = job.create_time.ToMilliseconds()
            overtaking = 0
            for job_id in backlog:
                first_start = heavy.get(job_id).start_time
                if first_start.seconds and submitted < first_start.ToMilliseconds() < started:
                    overtaking += 1
        assert events[-1].state == pb.JOB_STATE_SUCCEEDED
        assert overtaking <= 1, f"{overtaking} of the backlog's jobs started before the newcomer's"
    finally:
        redis.Redis.from_url(url).flushdb()  # the rest of the backlog is dropped with its ledger


def test_a_tenant_may_hold_only_so_many_watches_open_on_a_replica(
    redis_url: str, stages: dict[str, str], start_gateway: Callable[[GatewaySettings], Gateway], tmp_path: Path
) -> None:
    """Each open watch costs the gateway a stream and a queue: past TENANT_WATCHES one more is
    RESOURCE_EXHAUSTED (a SubmitAndWatch before its job is made), for that tenant only."""
    url = redis_url + "/5"
    redis.Redis.from_url(url).flushdb()
    base = gateway_settings(url, tmp_path, stages, dispatch=False)
    gateway = start_gateway(replace(base, limits=replace(base.limits, max_watches_per_tenant=2)))
    key, other = key_for(url, "watchful"), key_for(url, "elsewhere")
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        job_id = stub.SubmitRender(ROOM, metadata=bearer(key), timeout=10).job.id
        watches = [stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=bearer(key), timeout=30) for _ in range(2)]
        for watch in watches:
            assert next(watch).event.state == pb.JOB_STATE_QUEUED  # open, and counted
        for over in (
            stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=bearer(key), timeout=10),
            stub.SubmitAndWatch(pb.SubmitAndWatchRequest(request=ROOM), metadata=bearer(key), timeout=10),
        ):
            with pytest.raises(grpc.RpcError) as info:
                next(over)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        listed = stub.ListJobs(pb.ListJobsRequest(), metadata=bearer(key), timeout=10).jobs
        assert [job.id for job in listed] == [job_id]  # the refused SubmitAndWatch made no job
        mine = stub.SubmitRender(ROOM, metadata=bearer(other), timeout=10).job.id
        assert next(stub.WatchJob(pb.WatchJobRequest(job_id=mine), metadata=bearer(other), timeout=10)).event.job_id
        watches[0].cancel()
        deadline = time.monotonic() + 5
        while True:  # the cancelled watch's count is given back once its stream is torn down
            try:
                again = stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=bearer(key), timeout=10)
                assert next(again).event.state == pb.JOB_STATE_QUEUED
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        again.cancel()
        watches[1].cancel()
