"""Chaos: two gateway replicas, the stage services and Redis kill -9'd and restarted while 120
jobs run, half followed by SubmitRender then WatchJob and half by SubmitAndWatch. Nothing may be
lost, duplicated or failed, and every watcher must see every event of its job exactly once, in
order."""

from __future__ import annotations

import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import cv2
import grpc
import redis

from devstack import scenes
from devstack.launcher import Ports, Stack, free_port
from gateway.ledger import keys
from render.v1 import render_service_pb2 as pb
from render_client.client import RenderClient, RetryNotice, RetryPolicy, material_swap_request
from renderkit import imaging
from tests.credentials import TEST_CREDITS, key_for
from tests.outputs import read_output, register_storage

JOBS = 120
SUBMITS_PER_S = 3.0
TENANT = "chaos"


@dataclass
class Outcome:
    key: str
    job_id: str = ""
    events: list[pb.JobEvent] = field(default_factory=list)
    final: pb.Job | None = None
    error: str = ""
    one_call: bool = False
    notices: list[RetryNotice] = field(default_factory=list)  # the client's retries and resumptions


def run_job(client: RenderClient, index: int, start_at: float, photo: bytes, swatch: bytes, quad: list) -> Outcome:  # type: ignore[type-arg]
    outcome = Outcome(key=f"chaos-{index}", one_call=index % 2 == 1)
    noted = outcome.notices.append
    time.sleep(max(0.0, start_at - time.monotonic()))
    try:
        request = material_swap_request(photo, swatch, quad=quad, idempotency_key=outcome.key, repeats=8 + index % 5)
        if outcome.one_call:
            # The client resumes a broken stream as a watch, or repeats the submit (the key makes
            # it the same job) when the stream broke before the first event.
            for event in client.submit_and_watch(request, timeout=240, on_retry=noted):
                outcome.job_id = outcome.job_id or event.job_id
                outcome.events.append(event)
        else:
            outcome.job_id = client.submit(request, timeout=20, on_retry=noted).job.id
            outcome.events = list(client.watch(outcome.job_id, timeout=240, on_retry=noted))
        outcome.final = client.get(outcome.job_id)
    except Exception as exc:  # recorded: the assertions below report it with the job
        outcome.error = f"{type(exc).__name__}: {exc}"
    return outcome


# Every kind of process dies at least once; Redis twice.
SCHEDULE = ["segmentation", "gateway", "depth", "projection", "gateway-2", "redis", "projection", "gateway", "redis"]
VICTIMS = ["segmentation", "depth", "projection", "gateway", "gateway-2"]


def chaos(stack: Stack, stop: threading.Event, log: list[tuple[str, float]]) -> None:
    """Kills one process at a time with SIGKILL, Redis included (its AOF holds every write it
    acknowledged: the kernel has them even when the process dies), and starts it again after
    0.5-3 s, until stopped."""
    rng = random.Random(7)
    for turn in range(10_000):
        if stop.wait(rng.uniform(1.0, 2.5)):
            return
        name = SCHEDULE[turn] if turn < len(SCHEDULE) else rng.choice(VICTIMS)
        down = time.monotonic()
        stack.kill(name, sig=signal.SIGKILL)
        time.sleep(rng.uniform(0.5, 3.0))
        stack.restart(name, timeout_s=30)
        log.append((name, time.monotonic() - down))


def test_nothing_is_lost_duplicated_or_failed_under_chaos(tmp_path: Path) -> None:
    env = {
        "JOB_LEASE_SECONDS": "3",
        "HEALTH_PROBE_SECONDS": "0.5",
        "GEOMETRY_CACHE_SECONDS": "0",
        "WATCH_KEEPALIVE_SECONDS": "5",
    }
    stack = Stack(data_dir=tmp_path, ports=Ports.free(), with_triton=False, env=env)
    register_storage(stack.storage_dir)
    base = scenes.room_scene(960, 720)
    photo = imaging.encode(base.photo, quality=90)[0]
    swatch = imaging.encode(cv2.resize(scenes.tile_texture(256), (256, 256)))[0]
    quad = [(float(x), float(y)) for x, y in base.quad]
    with stack:
        second = free_port()
        stack.add_gateway("gateway-2", second)
        target = f"ipv4:{stack.gateway_address},127.0.0.1:{second}"
        restarts: list[tuple[str, float]] = []
        stop = threading.Event()
        # Patient enough for the longest outage the chaos makes (a restart shorter than 10 s).
        key = key_for(stack.redis_url, TENANT)
        with RenderClient(target, api_key=key, retry=RetryPolicy(give_up_after_s=60)) as client:
            monkey = threading.Thread(target=chaos, args=(stack, stop, restarts), daemon=True)
            monkey.start()
            start = time.monotonic()
            with ThreadPoolExecutor(max_workers=32) as pool:
                futures = [
                    pool.submit(run_job, client, i, start + i / SUBMITS_PER_S, photo, swatch, quad) for i in range(JOBS)
                ]
                outcomes = [f.result(timeout=400) for f in futures]
            stop.set()
            monkey.join(60)
        ledger = redis.Redis.from_url(stack.redis_url)
        members: Any = ledger.zrange(keys.tenant_index(TENANT), 0, -1)
        tenant_jobs = [m.decode() for m in members]
        streams = {
            o.job_id: [e.decode() for e, _ in cast(Any, ledger.xrange(keys.events(o.job_id)))]
            for o in outcomes
            if o.job_id
        }
        credit_log = [
            {k.decode(): v.decode() for k, v in fields.items()}
            for _, fields in cast(Any, ledger.xrange(keys.credits_log(TENANT)))
        ]
        balance = int(cast(Any, ledger.get(keys.credits_balance(TENANT))))
        ledger.close()

    assert {name for name, _ in restarts} == {*VICTIMS, "redis"}, restarts
    assert all(seconds < 10 for _, seconds in restarts), restarts
    problems = [o for o in outcomes if o.error or o.final is None]
    assert not problems, [(o.key, o.error) for o in problems][:5]
    # Nothing lost, nothing duplicated: one job per key, and the tenant has exactly those.
    ids = [o.job_id for o in outcomes]
    assert len(set(ids)) == JOBS and sorted(tenant_jobs) == sorted(ids)
    failed = [(o.key, o.final.error.message) for o in outcomes if o.final and o.final.state != pb.JOB_STATE_SUCCEEDED]
    assert not failed, failed[:5]
    for o in outcomes:
        cursors = [e.cursor for e in o.events]
        assert cursors == streams[o.job_id], f"{o.key}: the watch missed or repeated events"
        states = [e.state for e in o.events]
        assert states[0] == pb.JOB_STATE_QUEUED and states[-1] == pb.JOB_STATE_SUCCEEDED
        terminal = {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED}
        assert sum(s in terminal for s in states) == 1
    assert read_output(outcomes[-1].final.result.outputs[0]).shape == (720, 960, 3)  # type: ignore[union-attr]
    # Credits: every job charged once (its reservation), none refunded (all succeeded), and the
    # balance the sum of the log, whatever died while they ran.
    assert sum(int(e["amount"]) for e in credit_log) == balance
    reserves = [e["job"] for e in credit_log if e["kind"] == "reserve"]
    assert sorted(reserves) == sorted(ids) and not [e for e in credit_log if e["kind"] == "refund"]
    assert {o.final.credits_charged for o in outcomes if o.final} == {10}
    assert balance == TEST_CREDITS - 10 * JOBS
    print(f"\nchaos: {len(restarts)} restarts ({', '.join(f'{n} {s:.1f} s' for n, s in restarts)})")
    attempts = [o.final.attempt for o in outcomes if o.final]
    print(f"chaos: {sum(a > 1 for a in attempts)} of {JOBS} jobs resumed by another attempt")

    # Retries for a lost connection, a dead stream or an unavailable gateway: what the kills make
    # (not a busy gateway's RESOURCE_EXHAUSTED).
    def broken(o: Outcome) -> bool:
        return any(n.code != grpc.StatusCode.RESOURCE_EXHAUSTED for n in o.notices)

    for one_call, how in ((False, "SubmitRender + WatchJob"), (True, "SubmitAndWatch")):
        hit = [o for o in outcomes if o.one_call == one_call and broken(o)]
        print(f"chaos: {len(hit)} of {JOBS // 2} jobs followed by {how} retried or resumed a broken call")
    # The kills reached the clients' calls (else the checks above proved less than they claim).
    assert any(broken(o) for o in outcomes)
