"""Leases and slots judged by one clock: Redis's, not each gateway replica's wall clock.

Gateway replicas' wall clocks differ (a pod on a host whose NTP is off by minutes) and jump (an NTP
step). A lease written by one replica and judged by another's clock is then taken over while its
dispatcher is alive and renewing, or a tenant runs more jobs than its concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import types
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from redis.typing import EncodableT, FieldT

from gateway import metrics
from gateway.ledger import Ledger, RateLimited, TenantLimits, jobs, keys, work
from gateway.settings import WebhookSettings
from gateway.webhooks import worker as worker_module
from gateway.webhooks.payloads import payload
from gateway.webhooks.worker import DeliveryWorker
from render.v1 import render_service_pb2 as pb
from renderkit.fetch import FetchPolicy
from tests.integration.test_ledger import DETACHED, LEASE_S, claim, new_job, run

SKEW_MS = 120_000  # two minutes: a replica whose NTP is off, or a wall clock stepped forward
CLOCK_STEP_MS = 120_000  # Redis's own clock stepped back this far (an NTP step, a failover)


@contextlib.contextmanager
def clock_ahead(ms: int) -> Iterator[None]:
    """This process's wall clock (as the ledger reads it) `ms` ahead, as another replica's would be."""
    patch = pytest.MonkeyPatch()
    real = jobs.now_ms
    for module in (jobs, work):
        patch.setattr(module, "now_ms", lambda: real() + ms)
    try:
        yield
    finally:
        patch.undo()


def test_a_replica_whose_clock_is_ahead_does_not_take_over_a_live_lease(redis_url: str) -> None:
    async def body(ledger: Ledger) -> None:
        job_id = (await ledger.submit(new_job())).job_id
        assert await claim(ledger, job_id, "alive") == 1  # a 30 s lease, renewed every 10 s
        with clock_ahead(SKEW_MS):  # another replica's reaper, its clock two minutes ahead
            requeued = await ledger.requeue_expired()
        assert requeued == 0, "a live dispatcher's job was put back for another to take over"
        assert await ledger.renew("alive", job_id, LEASE_S)

    run(body, redis_url)


def test_a_replica_whose_clock_is_ahead_keeps_a_tenant_within_its_concurrency(redis_url: str) -> None:
    async def body(ledger: Ledger) -> None:
        first = (await ledger.submit(new_job(tenant="solo"))).job_id
        await ledger.submit(new_job(tenant="solo"))
        assert await claim(ledger, first, "a") == 1
        with clock_ahead(SKEW_MS):
            second = await ledger.take("b", LEASE_S, DETACHED)
        assert second is None, "the tenant's one slot was counted free: two of its jobs run at once"

    run(body, redis_url, tenant_defaults=TenantLimits(concurrency=1, rate_per_s=0))


def test_a_wall_clock_stepped_forward_does_not_lose_the_replicas_own_lease(redis_url: str) -> None:
    async def body(ledger: Ledger) -> None:
        job_id = (await ledger.submit(new_job())).job_id
        assert await claim(ledger, job_id, "alive") == 1
        with clock_ahead(SKEW_MS):  # NTP steps this host's clock forward by two minutes
            assert await ledger.renew("alive", job_id, LEASE_S), "the dispatcher lost its own job"

    run(body, redis_url)


def test_a_tenants_rate_holds_across_replicas_whose_clocks_differ(redis_url: str) -> None:
    """One submit a second, a burst of one: submits spread over two replicas (a load balancer's
    round robin), one of them two minutes ahead, are admitted one a second all the same."""

    async def body(ledger: Ledger) -> None:
        admitted = 0
        for i in range(20):  # at once, alternately through each replica
            with clock_ahead(SKEW_MS) if i % 2 else contextlib.nullcontext(), contextlib.suppress(RateLimited):
                await ledger.submit(new_job())
                admitted += 1
        assert admitted <= 2, f"{admitted} of 20 submits admitted at a rate of one a second"

    run(body, redis_url, tenant_defaults=TenantLimits(rate_per_s=1, burst=1, queue_quota=0))


def test_a_webhook_claimed_by_one_worker_is_not_claimed_again_by_a_worker_whose_clock_is_ahead(
    redis_url: str,
) -> None:
    """Each worker passes its own wall clock: one two minutes ahead took a delivery another worker
    had just claimed (a lease of 31 s) and sent it again beside it, and counted none of the other
    worker's attempts in flight against the tenant's cap (attempts per tenant across workers)."""

    async def queue(ledger: Ledger, tenant: str, delivery_id: str) -> None:
        fields: dict[FieldT, EncodableT] = {"id": delivery_id, "tenant": tenant, "job": "job", "endpoint": ""}
        fields |= {"status": "pending", "url": "https://example.com/hook", "type": "job.completed", "attempts": "0"}
        await ledger.redis.hset(f"webhook:{delivery_id}", mapping=fields)
        await ledger.redis.zadd(keys.WEBHOOKS_DUE, {delivery_id: jobs.now_ms() - 1})

    async def body(ledger: Ledger) -> None:
        lease_ms = 31_000
        await queue(ledger, "acme", "msg_a_0")
        first = await ledger.claim_deliveries("worker-a", lease_ms, 10)
        assert [d.delivery_id for d in first.deliveries] == ["msg_a_0"]
        again = await ledger.claim_deliveries("worker-b", lease_ms, 10)
        assert [d.delivery_id for d in again.deliveries] == [], "sent twice at once: worker-a's claim runs"

        await queue(ledger, "capped", "msg_c_0")
        await queue(ledger, "capped", "msg_c_1")
        first = await ledger.claim_deliveries("worker-a", lease_ms, 1, per_tenant=1)
        assert len(first.deliveries) == 1
        beside = await ledger.claim_deliveries("worker-b", lease_ms, 10, per_tenant=1)
        assert [d.delivery_id for d in beside.deliveries] == [], "two attempts in flight at a cap of one"

    run(body, redis_url)


def test_webhooks_fall_due_by_redis_clock_whichever_replica_queued_or_retried_them(redis_url: str) -> None:
    """A job ended by a replica two minutes ahead queued its deliveries due two minutes late for
    every worker, and a retry recorded by one put its next attempt the skew further off."""

    async def body(ledger: Ledger) -> None:
        await ledger.create_endpoint("acme", "https://example.com/hook", ("completed",), "", jobs.now_ms(), 10)
        job = (await ledger.submit(new_job())).job_id
        with clock_ahead(SKEW_MS):  # the replica that ends the job
            await ledger.cancel(job)
        claimed = await ledger.claim_deliveries("w1", 30_000, 10)
        (delivery,) = claimed.deliveries  # due now, not in two minutes
        with clock_ahead(SKEW_MS):  # its attempt failed; due again in a second
            assert await ledger.record_attempt(delivery, "w1", "retry", None, 1000)
        score = await ledger.redis.zscore(keys.WEBHOOKS_DUE, delivery.delivery_id)
        seconds, micros = await ledger.redis.time()
        assert score is not None and abs(score - (seconds * 1000 + micros // 1000 + 1000)) < 1000

    run(body, redis_url)


class _Subscriptions:
    def on(self, channel: str, handler: object) -> None:
        pass

    def on_subscribed(self, handler: object) -> None:
        pass


def test_a_worker_ahead_of_redis_does_not_claim_in_a_loop(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker whose clock is ahead compared the due set's times (Redis's clock) with its own: it
    looked again every 10 ms while any delivery was in flight anywhere (the diff's review)."""

    async def body(ledger: Ledger) -> None:
        fields: dict[FieldT, EncodableT] = {"id": "msg_0", "tenant": "acme", "job": "job", "endpoint": ""}
        fields |= {"status": "pending", "url": "https://example.com/hook", "type": "job.completed", "attempts": "0"}
        await ledger.redis.hset("webhook:msg_0", mapping=fields)
        await ledger.redis.zadd(keys.WEBHOOKS_DUE, {"msg_0": jobs.now_ms() - 1})
        # Another replica's worker claims it (its attempt hangs): due again a lease from now.
        (_taken,) = (await ledger.claim_deliveries("elsewhere", 31_000, 10)).deliveries
        real = jobs.now_ms
        monkeypatch.setattr(worker_module, "now_ms", lambda: real() + SKEW_MS)  # this replica's clock
        calls = 0
        plain = ledger.claim_deliveries

        async def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return await plain(*args, **kwargs)

        ledger.claim_deliveries = counted  # type: ignore[method-assign]
        worker = DeliveryWorker(ledger, WebhookSettings(), FetchPolicy(), None, _Subscriptions())  # type: ignore[arg-type]
        worker.ledger = ledger
        await worker.start()
        await asyncio.sleep(2.0)
        await worker.stop(1.0)
        assert calls <= 4, f"{calls} claim scripts in 2 s (an idle worker looks once a second)"

    run(body, redis_url)


def test_running_jobs_are_counted_whatever_this_replicas_clock(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """/queue (what KEDA scales the dispatchers on) and a tenant's usage (admin GetTenant) compared
    leases written by Redis's clock with this replica's: two minutes ahead, it counted no job
    running and a tenant at its concurrency runnable (the diff's review)."""

    async def body(ledger: Ledger) -> None:
        first = (await ledger.submit(new_job(tenant="solo"))).job_id
        await ledger.submit(new_job(tenant="solo"))  # queued behind it: the tenant's one slot is in use
        assert await claim(ledger, first, "alive") == 1  # a 30 s lease, live
        ahead = types.SimpleNamespace(time=lambda: time.time() + SKEW_MS / 1000)
        monkeypatch.setattr(metrics, "time", ahead)  # this replica's clock two minutes ahead
        snapshot = await metrics.QueueSampler(ledger).read()
        with clock_ahead(SKEW_MS):
            usage = await ledger.tenant_usage("solo")
        assert snapshot.running == 1 and snapshot.queued == 1, snapshot
        assert snapshot.runnable == 0, "the tenant's queued job counted runnable: its one slot is in use"
        assert usage.running == 1 and usage.queued == 1, usage

    run(body, redis_url, tenant_defaults=TenantLimits(concurrency=1, rate_per_s=0))


def test_event_times_do_not_depend_on_one_replicas_clock(redis_url: str) -> None:
    """A job's event times came from the writing replica's wall clock: the running intervals read
    from the events of jobs two replicas ran overlapped (a tenant over its concurrency, by its
    events). They are the stream entries' times now, Redis's clock (a review found it)."""

    async def body(ledger: Ledger) -> None:
        first = (await ledger.submit(new_job(tenant="solo"))).job_id
        second = (await ledger.submit(new_job(tenant="solo"))).job_id
        with clock_ahead(SKEW_MS):  # replica B, its clock two minutes ahead, runs the first job
            taken = await ledger.take("b", LEASE_S, DETACHED)
            assert taken is not None and taken[0] == first
            await ledger.started(first, "b")
            await ledger.succeed(first, "b", pb.JobResult(), 4)
        taken = await ledger.take("a", LEASE_S, DETACHED)  # replica A, right on time, the second
        assert taken is not None and taken[0] == second
        await ledger.started(second, "a")
        events = await ledger.read_events({first: "0", second: "0"})
        end_first = next(e for e in events[first] if e.state == pb.JOB_STATE_SUCCEEDED).time.ToMilliseconds()
        start_second = next(e for e in events[second] if e.state == pb.JOB_STATE_RUNNING).time.ToMilliseconds()
        assert start_second >= end_first, (
            f"by its events the second job started {end_first - start_second} ms before the first ended "
            "(a tenant of concurrency 1 ran two jobs)"
        )

    run(body, redis_url, tenant_defaults=TenantLimits(concurrency=1, rate_per_s=0))


def test_a_jobs_times_agree_with_its_events_times(redis_url: str) -> None:
    """A job's start, update and end times (GetJob, ListJobs, metrics) were the writing replica's
    clock while its events' are Redis's: with one replica two minutes ahead, a job's end_time was
    two minutes after its SUCCEEDED event, and by GetJob two jobs overlapped (a review found it).
    (Its create_time is Redis's too: test_a_jobs_create_time_is_redis_clock_whatever_the_submitting_replicas.)"""

    async def body(ledger: Ledger) -> None:
        first = (await ledger.submit(new_job(tenant="solo"))).job_id
        second = (await ledger.submit(new_job(tenant="solo"))).job_id
        with clock_ahead(SKEW_MS):  # replica B, two minutes ahead, runs the first job
            taken = await ledger.take("b", LEASE_S, DETACHED)
            assert taken is not None and taken[0] == first
            await ledger.started(first, "b")
            await ledger.succeed(first, "b", pb.JobResult(), 4)
        taken = await ledger.take("a", LEASE_S, DETACHED)
        assert taken is not None and taken[0] == second
        await ledger.started(second, "a")
        events = await ledger.read_events({first: "0"})
        end_event = next(e for e in events[first] if e.state == pb.JOB_STATE_SUCCEEDED).time.ToMilliseconds()
        start_event = next(e for e in events[first] if e.state == pb.JOB_STATE_RUNNING).time.ToMilliseconds()
        stored1, stored2 = await ledger.get(first), await ledger.get(second)
        assert stored1 is not None and stored2 is not None
        job1, job2 = stored1.job, stored2.job
        assert abs(job1.end_time.ToMilliseconds() - end_event) < 1000, "GetJob's end_time is not its end event's time"
        assert abs(job1.start_time.ToMilliseconds() - start_event) < 1000, "GetJob's start_time is not its start's"
        assert job2.start_time.ToMilliseconds() >= job1.end_time.ToMilliseconds(), "by GetJob the jobs overlap"

    run(body, redis_url, tenant_defaults=TenantLimits(concurrency=1, rate_per_s=0))


def test_a_webhooks_timestamp_is_its_events_time_after_redis_clock_steps_back(redis_url: str) -> None:
    """An event's time is its stream entry's id, and a stream's ids never go back: after Redis's
    clock stepped back (an NTP step, a failover to a replica behind), a job's later entries are
    ahead of its clock, and its webhook's timestamp (its delivery's created_ms, TIME) disagreed
    with its event's by the step (a review found it)."""

    async def body(ledger: Ledger) -> None:
        job = replace(new_job(), webhook_url="https://example.test/hook", webhook_events="completed")
        job_id = (await ledger.submit(job)).job_id
        taken = await ledger.take("a", LEASE_S, DETACHED)
        assert taken is not None and taken[0] == job_id
        await ledger.started(job_id, "a")
        # The entry written just before Redis's clock stepped back two minutes: its id is ahead now.
        ahead = await ledger.clock_ms() + CLOCK_STEP_MS
        await ledger.redis.xadd(
            keys.events(job_id), {"event": pb.JobEvent(job_id=job_id).SerializeToString()}, id=f"{ahead}-0"
        )
        await ledger.succeed(job_id, "a", pb.JobResult(), 4)
        events = (await ledger.read_events({job_id: "0"}))[job_id]
        end = next(e for e in events if e.state == pb.JOB_STATE_SUCCEEDED)
        ((_, delivery),) = (await ledger.job_deliveries(job_id, 0, 10)).deliveries
        sent = json.loads(payload(delivery, None))["timestamp"]  # what the endpoint reads
        assert sent.startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(end.time.seconds))), sent
        assert abs(end.time.ToMilliseconds() - delivery.created_ms) < 1000, (
            f"the end event reads {end.time.ToMilliseconds() - delivery.created_ms} ms after its webhook's timestamp"
        )

    run(body, redis_url, tenant_defaults=TenantLimits(rate_per_s=0))


def test_a_jobs_create_time_is_redis_clock_whatever_the_submitting_replicas(redis_url: str) -> None:
    """A job's create_time was the submitting replica's wall clock while its events' times (and its
    start and end times) are Redis's: with a replica two minutes ahead, a job was created two
    minutes after its QUEUED event, and ListJobs ordered a tenant's jobs by whichever replica took
    each submit. The replica's clock here is its own (the ledger's, per instance), not this
    process's: SubmitRender answers, GetJob reads and ListJobs pages the creation time the submit
    script took from Redis's TIME, and a repeat of the submit (its reply lost, or its idempotency
    key used again) answers the first one's."""
    from gateway.auth.principal import Principal, Scope, set_principal
    from gateway.servicer import RenderServicer
    from gateway.validation import Limits
    from render_client.client import room_render, room_render_request

    class Links:  # a duplicate's job is read back and its output links filled (it has none)
        async def fill_job_async(self, job: pb.Job) -> pb.Job:
            return job

    async def body(ahead: Ledger) -> None:
        behind = Ledger(ahead.redis, wall_clock=lambda: jobs.now_ms() - SKEW_MS)  # another replica
        try:
            set_principal(Principal("acme", "key:test", frozenset(Scope)))
            servicer = RenderServicer(ahead, None, Limits(), None, assets=None, links=Links())  # type: ignore[arg-type]
            request = room_render_request(room_render("hall", dry_run=True))
            request.idempotency_key = "once"
            before = await ahead.clock_ms()
            answer = await servicer.SubmitRender(request, None)  # type: ignore[arg-type]
            after = await ahead.clock_ms()
            job = answer.job
            created = job.create_time.ToMilliseconds()
            assert before <= created <= after, f"create_time {created - before} ms from Redis's clock"
            assert job.update_time == job.create_time
            queued = (await ahead.read_events({job.id: "0"}))[job.id][0]
            assert queued.state == pb.JOB_STATE_QUEUED
            assert abs(queued.time.ToMilliseconds() - created) < 50, "create_time is not its QUEUED event's time"
            stored = await ahead.get(job.id)
            assert stored is not None and stored.job.create_time == job.create_time, "GetJob reads another time"
            again = await servicer.SubmitRender(request, None)  # type: ignore[arg-type]
            assert again.deduplicated and again.job.id == job.id and again.job.create_time == job.create_time

            # A repeat of the script (its reply lost) answers the time the job was recorded at.
            first = await behind.submit(new_job())
            repeat = await behind.submit(replace(new_job(), job_id=first.job_id))
            assert repeat.created_ms == first.created_ms and not repeat.written
            stored = await behind.get(first.job_id)
            assert stored is not None and stored.job.create_time.ToMilliseconds() == first.created_ms
            assert first.created_ms >= created, "the replica behind recorded its job before the one ahead"

            # ListJobs: newest first by Redis's clock, the index scored as the jobs' create_time.
            listed, _ = await ahead.list_jobs("acme", 10, None)
            assert [j.id for j in listed] == [first.job_id, job.id]
            scores: Any = await ahead.redis.zrange(keys.tenant_index("acme"), 0, -1, withscores=True)
            assert {member.decode(): int(score) for member, score in scores} == {
                j.id: j.create_time.ToMilliseconds() for j in listed
            }
        finally:
            await behind.aclose()

    run(body, redis_url, wall_clock=lambda: jobs.now_ms() + SKEW_MS, tenant_defaults=TenantLimits(rate_per_s=0))


def test_a_jobs_duration_is_measured_by_redis_clock_as_its_create_time(
    redis_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """render_job_duration_seconds (and the log's "in N s") is a job's time from its create_time,
    which is Redis's clock: measured to a replica's wall clock, a job of a replica two minutes
    ahead took two minutes more, and one of a replica behind took 0 s (a review found it). Its
    queued part is Redis's clock (create_time to the take), its run this process's monotonic
    clock: the replica's wall clock, skewed here both ways, plays no part."""
    from gateway import dispatcher as dispatcher_module
    from gateway.dispatcher import Dispatcher
    from gateway.settings import GatewaySettings
    from gateway.subscriptions import Subscriptions
    from renderkit.storage.local import LocalStorage

    recorded: list[float] = []
    monkeypatch.setattr(
        dispatcher_module, "JOB_DURATION", types.SimpleNamespace(record=lambda took, attrs: recorded.append(took))
    )

    async def plan(ctx: Any) -> pb.JobResult:
        await asyncio.sleep(0.2)
        return pb.JobResult()

    monkeypatch.setitem(dispatcher_module.PLANS, "material_swap", plan)

    async def body(ledger: Ledger) -> None:
        settings = replace(GatewaySettings.from_env(), redis_url=redis_url + "/3", prices=None)
        stubs: Any = None  # the plan reaches no stage
        dispatcher = Dispatcher(ledger, LocalStorage(tmp_path), stubs, settings, Subscriptions(ledger.redis))
        request = pb.SubmitRenderRequest(material_swap=pb.MaterialSwap())
        job_id = (await ledger.submit(replace(new_job(), request=request.SerializeToString()))).job_id
        await asyncio.sleep(0.3)  # queued
        assert await claim(ledger, job_id, dispatcher.consumer) == 1
        stored = await ledger.get(job_id)
        assert stored is not None
        await dispatcher._execute(job_id, stored, {})
        assert 0.45 <= recorded[-1] < 5, f"a job queued 0.3 s and run 0.2 s measured {recorded[-1]:.1f} s"

    for skew_ms in (SKEW_MS, -SKEW_MS):  # this replica's clock ahead of Redis's, then behind

        def skewed(skew: int = skew_ms) -> int:
            return jobs.now_ms() + skew

        run(body, redis_url, wall_clock=skewed, tenant_defaults=TenantLimits(rate_per_s=0))
