"""Pauses: a process stopped (SIGSTOP, as a VM freeze or a long GC pause does) past its lease and
woken again. A dispatcher that wakes after its job was taken over must write nothing more; Redis
paused under load must lose, duplicate and fail nothing."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import cv2
import pytest
import redis

from devstack import scenes
from devstack.launcher import Ports, Stack, free_port
from gateway.ledger import keys
from render.v1 import render_service_pb2 as pb
from render_client.client import RenderClient, RetryPolicy, material_swap_request
from renderkit import imaging
from tests.credentials import key_for
from tests.outputs import read_output, register_storage

LEASE_S = 2.0
TERMINAL = {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"JOB_LEASE_SECONDS": str(LEASE_S), "HEALTH_PROBE_SECONDS": "0.5", "GEOMETRY_CACHE_SECONDS": "0"}
    running = Stack(data_dir=tmp_path_factory.mktemp("pauses"), ports=Ports.free(), with_triton=False, env=env)
    register_storage(running.storage_dir)
    with running:
        running.add_gateway("gateway-2", free_port())
        yield running


def swap_inputs(width: int, height: int) -> tuple[bytes, bytes, list[tuple[float, float]]]:
    base = scenes.room_scene(width, height)
    swatch = imaging.encode(cv2.resize(scenes.tile_texture(256), (256, 256)))[0]
    return imaging.encode(base.photo, quality=90)[0], swatch, [(float(x), float(y)) for x, y in base.quad]


def events_of(ledger: redis.Redis, job_id: str) -> list[pb.JobEvent]:
    entries: Any = ledger.xrange(keys.events(job_id))
    return [pb.JobEvent.FromString(fields[b"event"]) for _, fields in entries]


def job_fields(ledger: redis.Redis, job_id: str) -> dict[str, str]:
    """The job's state, attempt and owner."""
    values: Any = ledger.hmget(keys.job(job_id), ["state", "attempt", "owner"])
    return {name: (value or b"").decode() for name, value in zip(("state", "attempt", "owner"), values, strict=True)}


def whole_job(ledger: redis.Redis, job_id: str) -> dict[bytes, bytes]:
    raw: Any = ledger.hgetall(keys.job(job_id))
    return dict(raw)


def credit_entries(ledger: redis.Redis, tenant: str) -> list[dict[str, str]]:
    entries: Any = ledger.xrange(keys.credits_log(tenant))
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


def wait_for(check: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_paused_dispatcher_is_taken_over_and_writes_nothing_when_it_wakes(stack: Stack) -> None:
    tenant = "paused-dispatcher"
    key = key_for(stack.redis_url, tenant)
    ledger = redis.Redis.from_url(stack.redis_url)
    first = stack.process("gateway")
    photo, swatch, quad = swap_inputs(4000, 3000)  # 12 MP: the job runs for a while
    try:
        with RenderClient(stack.gateway_address, api_key=key) as client:
            # Submitted to the first gateway, which starts it in the submit; stopped at once.
            job_id = client.submit(material_swap_request(photo, swatch, quad=quad, repeats=8)).job.id
            first.send_signal(signal.SIGSTOP)
            try:
                before = job_fields(ledger, job_id)
                assert before["state"] == "RUNNING" and before["attempt"] == "1", before
                assert before["owner"].split("-")[1] == str(first.pid), before  # the paused one holds it
                # Its lease runs out; the other replica's reaper puts it back and runs it again.
                wait_for(lambda: job_fields(ledger, job_id)["state"] == "SUCCEEDED", 60)
                taken = job_fields(ledger, job_id)
                assert taken["attempt"] == "2" and taken["owner"].split("-")[1] != str(first.pid), taken
                events, ended = events_of(ledger, job_id), whole_job(ledger, job_id)
            finally:
                first.send_signal(signal.SIGCONT)
            # Awake, the first dispatcher finds the job no longer its own: nothing more is written.
            time.sleep(3 * LEASE_S)
            assert events_of(ledger, job_id) == events
            assert whole_job(ledger, job_id) == ended
            assert [e.state in TERMINAL for e in events].count(True) == 1 and events[-1].state in TERMINAL
            assert [e.message for e in events].count("Starting") == 2
            done = client.get(job_id)
            assert done.state == pb.JOB_STATE_SUCCEEDED and done.attempt == 2
            assert read_output(done.result.outputs[0]).shape == (3000, 4000, 3)
            # Charged once: one reservation, nothing refunded, the balance the sum of the log.
            log = credit_entries(ledger, tenant)
            assert [e["kind"] for e in log if e.get("job") == job_id] == ["reserve"]
            assert sum(int(e["amount"]) for e in log) == int(cast(Any, ledger.get(keys.credits_balance(tenant))))
            assert done.credits_charged == -int(next(e["amount"] for e in log if e.get("job") == job_id))
            # And the woken gateway serves again.
            assert client.submit(material_swap_request(photo, swatch, quad=quad, repeats=4)).job.id
    finally:
        ledger.close()


def test_redis_paused_under_load_loses_duplicates_and_fails_nothing(stack: Stack) -> None:
    tenant = "paused-redis"
    key = key_for(stack.redis_url, tenant)
    photo, swatch, quad = swap_inputs(960, 720)
    target = f"ipv4:{stack.gateway_address},127.0.0.1:{stack.spawns['gateway-2'].address.rsplit(':', 1)[1]}"
    store = stack.process("redis")
    paused = threading.Event()

    def pause() -> None:
        time.sleep(1.0)
        store.send_signal(signal.SIGSTOP)
        paused.set()
        time.sleep(4.0)
        store.send_signal(signal.SIGCONT)

    def one(client: RenderClient, index: int) -> tuple[str, list[pb.JobEvent], float]:
        time.sleep(index * 0.2)
        request = material_swap_request(photo, swatch, quad=quad, repeats=6, idempotency_key=f"pause-{index}")
        start = time.monotonic()
        events = list(client.submit_and_watch(request, timeout=120))
        return events[0].job_id, events, time.monotonic() - start

    with RenderClient(target, api_key=key, retry=RetryPolicy(give_up_after_s=60)) as client:
        pauser = threading.Thread(target=pause, daemon=True)
        pauser.start()
        with ThreadPoolExecutor(max_workers=20) as pool:
            outcomes = list(pool.map(lambda i: one(client, i), range(20)))
        pauser.join(30)
    assert paused.is_set()
    assert max(seconds for _, _, seconds in outcomes) > 3.0  # the pause held jobs up (else it proved nothing)
    ledger = redis.Redis.from_url(stack.redis_url)
    try:
        ids = [job_id for job_id, _, _ in outcomes]
        assert len(set(ids)) == len(ids)
        for job_id, watched, _ in outcomes:
            stored = events_of(ledger, job_id)
            assert [e.state in TERMINAL for e in stored].count(True) == 1 and stored[-1].state == pb.JOB_STATE_SUCCEEDED
            entries: Any = ledger.xrange(keys.events(job_id))
            assert [e.cursor for e in watched] == [entry.decode() for entry, _ in entries]  # each once, in order
        log = credit_entries(ledger, tenant)
        assert sorted(e["job"] for e in log if e["kind"] == "reserve") == sorted(ids)
        assert not [e for e in log if e["kind"] == "refund"]
        assert sum(int(e["amount"]) for e in log) == int(cast(Any, ledger.get(keys.credits_balance(tenant))))
    finally:
        ledger.close()


def test_a_hung_stage_is_asked_again_after_its_deadline(stack: Stack) -> None:
    """A projection stage frozen past a call's deadline, then woken: the call is asked once more
    instead of failing the job (a stage that misses both deadlines fails it with TIMEOUT)."""
    key = key_for(stack.redis_url, "hung-stage")
    ledger = redis.Redis.from_url(stack.redis_url)
    stage = stack.process("projection")
    photo, swatch, quad = swap_inputs(960, 720)
    request = material_swap_request(photo, swatch, quad=quad, repeats=6)
    request.material_swap.options.stage_timeout_seconds = 2.0
    try:
        with RenderClient(stack.gateway_address, api_key=key) as client:
            stage.send_signal(signal.SIGSTOP)
            try:
                job_id = client.submit(request).job.id
                # The projection's step is written beside its call: from then on, the call waits.
                wait_for(lambda: any(e.stage == pb.STAGE_PROJECTION for e in events_of(ledger, job_id)), 30)
                asked = time.monotonic()
                time.sleep(2.5)  # past the first call's deadline, well within the second's
                assert job_fields(ledger, job_id)["state"] == "RUNNING"
            finally:
                stage.send_signal(signal.SIGCONT)
            done = client.wait(job_id, timeout=60)
            assert done.state == pb.JOB_STATE_SUCCEEDED, done.error
            assert time.monotonic() - asked > 2.0
            assert read_output(done.result.outputs[0]).shape == (720, 960, 3)

            # Frozen for good: both deadlines pass and the job fails, naming the stage.
            stage.send_signal(signal.SIGSTOP)
            try:
                failed = client.wait(client.submit(request).job.id, timeout=60)
            finally:
                stage.send_signal(signal.SIGCONT)
            assert failed.state == pb.JOB_STATE_FAILED and failed.error.code == pb.ERROR_CODE_TIMEOUT
            assert failed.error.message == "the projection stage did not answer within 2 s (asked twice)"
    finally:
        ledger.close()
