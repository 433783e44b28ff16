"""The job ledger against a real Redis: state machine, events, idempotency, work stream, retention."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway.ledger import (
    InsufficientCredits,
    Ledger,
    NewJob,
    Notice,
    NotOwner,
    Progress,
    QueueFull,
    QuotaExceeded,
    RateLimited,
    StartHere,
    TenantLimits,
    cursor_key,
    keys,
    parse_notice,
    progress_event,
)
from gateway.ledger.events import NOTICE_EVENT_BYTES
from gateway.ledger.jobs import now_ms
from gateway.metrics import QueueSampler
from render.v1 import render_service_pb2 as pb


def run(coro_fn: Callable[[Ledger], Coroutine[Any, Any, None]], redis_url: str, **kwargs: Any) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url + "/3")
        await client.flushdb()
        ledger = Ledger(client, **kwargs)
        try:
            await coro_fn(ledger)
        finally:
            await ledger.aclose()
            await client.flushdb()
            await client.aclose()

    asyncio.run(main())


def new_job(key: str = "", tenant: str = "acme") -> NewJob:
    return NewJob(
        job_id=uuid.uuid4().hex,
        tenant=tenant,
        kind="material_swap",
        request=b"req",
        inputs={},
        fingerprint="f",
        project_id="p1",
        user_id="u1",
        idempotency_key=key,
        total_steps=4,
    )


async def collect(events: AsyncIterator[pb.JobEvent]) -> list[pb.JobEvent]:
    return [e async for e in events]


async def follow(ledger: Ledger, job_id: str, after: str = "0", poll_s: float = 0.05) -> AsyncIterator[pb.JobEvent]:
    """A job's events after a cursor, then new ones until its terminal event (polling the stream)."""
    cursor = after
    while True:
        state = await ledger.state(job_id)
        if state is None:
            return
        batch = (await ledger.read_events({job_id: cursor})).get(job_id, [])
        for event in batch:
            cursor = event.cursor
            yield event
            if event.state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED):
                return
        if not batch:
            if state.terminal:
                return
            await asyncio.sleep(poll_s)


LEASE_S = 30.0
DETACHED = frozenset({"room_batch"})


async def claim(ledger: Ledger, job_id: str, consumer: str, lease_s: float = LEASE_S) -> int | None:
    """Takes the next job as the consumer; its attempt when it is the expected one."""
    taken = await ledger.take(consumer, lease_s, DETACHED)
    if taken is None:
        return None
    assert taken[0] == job_id, "another job came first"
    await ledger.started(job_id, consumer)
    return taken[1]


async def run_job(ledger: Ledger, job_id: str, owner: str = "w1") -> None:
    assert await claim(ledger, job_id, owner) == 1
    for step, stage in enumerate((pb.STAGE_SEGMENTATION, pb.STAGE_DEPTH, pb.STAGE_PROJECTION, pb.STAGE_OUTPUT), 1):
        await ledger.record_progress(
            job_id,
            owner,
            progress_event(
                job_id, stage=stage, step=step, total_steps=4, progress=(step - 1) / 4, message=f"Step {step}/4"
            ),
        )
    await ledger.succeed(job_id, owner, pb.JobResult(geometry_source="quad"), 4)


def test_event_stream_is_complete_ordered_and_resumable_from_any_cursor(redis_url: str) -> None:
    async def body(ledger: Ledger) -> None:
        job_id = (await ledger.submit(new_job())).job_id
        await run_job(ledger, job_id)
        events = await collect(follow(ledger, job_id))
        assert [e.message for e in events] == [
            "Queued",
            "Starting",
            "Step 1/4",
            "Step 2/4",
            "Step 3/4",
            "Step 4/4",
            "Done",
        ]
        assert events[-1].state == pb.JOB_STATE_SUCCEEDED and events[-1].result.geometry_source == "quad"
        assert [e.progress for e in events] == sorted(e.progress for e in events)
        for i, event in enumerate(events):
            resumed = await collect(follow(ledger, job_id, after=event.cursor))
            assert [e.cursor for e in resumed] == [e.cursor for e in events[i + 1 :]]

    run(body, redis_url)


def test_a_watcher_follows_live_events_until_the_end(redis_url: str) -> None:
    async def body(ledger: Ledger) -> None:
        job_id = (await ledger.submit(new_job())).job_id
        watcher = asyncio.create_task(collect(follow(ledger, job_id)))
        await asyncio.sleep(0.1)
        await run_job(ledger, job_id)
        events = await asyncio.wait_for(watcher, 5)
        assert events[-1].state == pb.JOB_STATE_SUCCEEDED and len(events) == 7

    run(body, redis_url)


async def notices_during(redis_url: str, job_id: str, count: int, act: Callable[[], Awaitable[object]]) -> list[Notice]:
    """The first `count` notices on a job's channel from act() on (subscribed before it starts)."""
    listener = aioredis.Redis.from_url(redis_url + "/3")
    pubsub = listener.pubsub()
    await pubsub.subscribe(keys.job_channel(job_id))
    heard: list[Notice] = []
    try:
        confirmed = await pubsub.get_message(timeout=5)
        assert confirmed is not None and confirmed["type"] == "subscribe"
        await act()
        async with asyncio.timeout(5):
            while len(heard) < count:
                message = await pubsub.get_message(timeout=1)
                if message is not None and message["type"] == "message":
                    heard.append(parse_notice(message["data"].decode()))
    finally:
        await pubsub.aclose()
        await listener.aclose()
    return heard


def test_each_notice_carries_its_event_and_names_the_entry_before_it(redis_url: str) -> None:
    """What lets a gateway hand an event to its up-to-date watchers without reading the stream:
    every notice of a job's run, in order, is its stream entry with the one before it."""

    async def body(ledger: Ledger) -> None:
        job_id = (await ledger.submit(new_job())).job_id
        notices = await notices_during(redis_url, job_id, 6, lambda: run_job(ledger, job_id))
        events = await collect(follow(ledger, job_id))
        assert [n.entry for n in notices] == [cursor_key(e.cursor) for e in events[1:]]
        assert [n.before for n in notices] == [cursor_key(e.cursor) for e in events[:-1]]
        assert [n.end for n in notices] == [False] * 5 + [True]
        assert [n.event for n in notices] == events[1:]  # the same events, cursors included

        # An event over the size a notice carries is named but not carried: watchers read it.
        second = (await ledger.submit(new_job())).job_id
        assert await claim(ledger, second, "w1") == 1

        async def two_steps() -> None:
            for size in (100, NOTICE_EVENT_BYTES + 1):
                step = progress_event(
                    second, stage=pb.STAGE_SEGMENTATION, step=1, total_steps=4, progress=0.1, message="m" * size
                )
                await ledger.record_progress(second, "w1", step)

        said = await notices_during(redis_url, second, 2, two_steps)
        assert said[0].event is not None and said[0].event.message == "m" * 100
        assert said[1].entry is not None and said[1].event is None

    run(body, redis_url)


def test_steps_recorded_together_read_as_separate_events(redis_url: str) -> None:
    """Steps a job took with nothing to wait for between them are written in one transition (or
    ahead of its end): each is its own stream entry and notice, in order, as separate calls would
    have written them, and the job's hash ends with the last one's fields."""

    def step(job_id: str, n: int) -> Progress:
        return progress_event(job_id, stage=n, step=n, total_steps=4, progress=(n - 1) / 4, message=f"Step {n}/4")

    async def body(ledger: Ledger) -> None:
        job_id = (await ledger.submit(new_job())).job_id
        assert await claim(ledger, job_id, "w1") == 1

        async def act() -> None:
            await ledger.record_progress(job_id, "w1", step(job_id, 1), step(job_id, 2))
            stored = await ledger.get(job_id)
            assert stored is not None and (stored.job.step, stored.job.message) == (2, "Step 2/4")
            await ledger.succeed(job_id, "w1", pb.JobResult(geometry_source="quad"), 4, before=[step(job_id, 3)])

        notices = await notices_during(redis_url, job_id, 4, act)
        events = await collect(follow(ledger, job_id))
        assert [e.message for e in events] == ["Queued", "Starting", "Step 1/4", "Step 2/4", "Step 3/4", "Done"]
        assert [n.entry for n in notices] == [cursor_key(e.cursor) for e in events[2:]]
        assert [n.before for n in notices] == [cursor_key(e.cursor) for e in events[1:-1]]
        assert [n.end for n in notices] == [False, False, False, True]
        assert [n.event for n in notices] == events[2:]

        # A failure ahead of which a step is written leaves that step on the job.
        second = (await ledger.submit(new_job())).job_id
        assert await claim(ledger, second, "w1") == 1
        await ledger.fail(
            second, "w1", pb.JobError(code=pb.ERROR_CODE_TIMEOUT, message="late"), 4, before=[step(second, 2)]
        )
        events = await collect(follow(ledger, second))
        assert [e.message for e in events] == ["Queued", "Starting", "Step 2/4", "Failed: late"]
        stored = await ledger.get(second)
        assert stored is not None and stored.job.step == 2 and stored.job.state == pb.JOB_STATE_FAILED

    run(body, redis_url)


def test_terminal_state_is_final(redis_url: str) -> None:
    async def body(ledger: Ledger) -> None:
        job_id = (await ledger.submit(new_job())).job_id
        await claim(ledger, job_id, "w1")
        assert await ledger.cancel(job_id)
        assert not await ledger.cancel(job_id)
        with pytest.raises(NotOwner):
            await ledger.succeed(job_id, "w1", pb.JobResult(), 4)
        with pytest.raises(NotOwner):
            await ledger.record_progress(
                job_id, "w1", progress_event(job_id, stage=1, step=1, total_steps=4, progress=0, message="late")
            )
        assert await claim(ledger, job_id, "w2") is None
        stored = await ledger.get(job_id)
        assert stored is not None and stored.job.state == pb.JOB_STATE_CANCELLED
        events = await collect(follow(ledger, job_id))
        assert [e.state for e in events][-1] == pb.JOB_STATE_CANCELLED
        assert (
            sum(e.state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED) for e in events) == 1
        )

    run(body, redis_url)


def test_an_end_notes_the_jobs_folders_for_a_reaper_in_the_same_step(redis_url: str) -> None:
    """No dispatcher deletes a cancelled queued job's uploads (none runs it), nor a running one's
    when its dispatcher is dead (the take skips an ended job), nor anything of a job whose
    dispatcher died as it ended: they stayed in storage for good (a review found them). A cancel
    notes the job's folders (its outputs too: a cancelled job keeps none), and so does a
    dispatcher's end those it names, for the reaper (releases_due)."""

    def uploaded(job_id: str) -> NewJob:
        return replace(
            new_job(), job_id=job_id, inputs={"material_swap.photo": f"uploads/{job_id}/material_swap.photo"}
        )

    async def body(ledger: Ledger) -> None:
        queued = (await ledger.submit(uploaded(uuid.uuid4().hex))).job_id
        assert await ledger.cancel(queued)
        # Its work and outputs too: a dispatcher may take it between the cancel's read and its step.
        due = [f"uploads/{queued}/", f"work/{queued}/", f"renders/acme/p1/{queued}/"]
        assert sorted(await ledger.releases_due(10)) == sorted(due)
        await ledger.released(*due)
        plain = (await ledger.submit(new_job())).job_id  # no uploads
        assert await ledger.cancel(plain)
        due = [f"work/{plain}/", f"renders/acme/p1/{plain}/"]
        assert sorted(await ledger.releases_due(10)) == sorted(due)
        await ledger.released(*due)
        running = (await ledger.submit(uploaded(uuid.uuid4().hex))).job_id
        assert await claim(ledger, running, "dead") == 1
        assert await ledger.cancel(running)
        due = [f"uploads/{running}/", f"work/{running}/", f"renders/acme/p1/{running}/"]
        assert sorted(await ledger.releases_due(10)) == sorted(due)
        await ledger.released(*due)
        ended = (await ledger.submit(uploaded(uuid.uuid4().hex))).job_id
        assert await claim(ledger, ended, "w1") == 1
        await ledger.succeed(ended, "w1", pb.JobResult(), 4, release=[f"uploads/{ended}/"])
        assert await ledger.releases_due(10) == [f"uploads/{ended}/"]
        # Repeated (a lost reply's retry) or refused (already ended), an end notes nothing more.
        await ledger.released(f"uploads/{ended}/")
        with pytest.raises(NotOwner):
            await ledger.fail(ended, "w1", pb.JobError(), 4, release=[f"work/{ended}/"])
        assert await ledger.releases_due(10) == []

    run(body, redis_url)


def test_a_taken_over_dispatcher_cannot_write(redis_url: str) -> None:
    async def body(ledger: Ledger) -> None:
        job_id = (await ledger.submit(new_job())).job_id
        assert await claim(ledger, job_id, "old", lease_s=0.1) == 1
        await asyncio.sleep(0.2)  # the old dispatcher stopped renewing: its lease ran out
        assert await ledger.requeue_expired() == 1
        assert await claim(ledger, job_id, "new") == 2
        assert not await ledger.renew("old", job_id, LEASE_S)  # the old owner learns it lost the job
        with pytest.raises(NotOwner):
            await ledger.save_checkpoint(job_id, "old", "depth", b"x")
        with pytest.raises(NotOwner):
            await ledger.fail(job_id, "old", pb.JobError(code=pb.ERROR_CODE_PIPELINE_ERROR, message="x"), 4)
        await ledger.save_checkpoint(job_id, "new", "depth", b"plane")
        assert (await ledger.checkpoints(job_id))["depth"] == b"plane"
        await ledger.succeed(job_id, "new", pb.JobResult(), 4)
        stored = await ledger.get(job_id)
        assert stored is not None and stored.job.attempt == 2 and stored.job.state == pb.JOB_STATE_SUCCEEDED

    run(body, redis_url)


def test_a_job_that_ended_takes_no_more_checkpoints(redis_url: str) -> None:
    """Its owner still at work when the job is cancelled (before any output was stored, so the end
    had no checkpoints to set expiring): the late output is refused, and no key is left that would
    never expire."""

    async def body(ledger: Ledger) -> None:
        job_id = (await ledger.submit(new_job())).job_id
        assert await claim(ledger, job_id, "w1") == 1
        assert await ledger.cancel(job_id)
        with pytest.raises(NotOwner):
            await ledger.save_checkpoint(job_id, "w1", "segmentation", b"mask")
        assert await ledger.checkpoints(job_id) == {}
        assert await ledger.redis.exists(keys.checkpoints(job_id)) == 0
        # A job that ended with outputs keeps them, expiring with it.
        other = (await ledger.submit(new_job())).job_id
        assert await claim(ledger, other, "w1") == 1
        await ledger.save_checkpoint(other, "w1", "segmentation", b"mask")
        await ledger.succeed(other, "w1", pb.JobResult(), 4)
        with pytest.raises(NotOwner):
            await ledger.save_checkpoint(other, "w1", "depth", b"plane")
        assert await ledger.checkpoints(other) == {"segmentation": b"mask"}
        assert await ledger.redis.ttl(keys.checkpoints(other)) > 0

    run(body, redis_url, retention_s=3600)


def test_idempotent_submit_returns_the_same_job(redis_url: str) -> None:
    async def body(ledger: Ledger) -> None:
        first, dup1, _, written, _, _ = await ledger.submit(new_job(key="order-17"))
        second, dup2, _, again, _, _ = await ledger.submit(new_job(key="order-17"))
        assert list(written) == (await ledger.read_events({first: "0"}))[first] and again == ()
        other = (await ledger.submit(new_job(key="order-17", tenant="other-tenant"))).job_id
        assert (first, dup1, dup2) == (second, False, True)
        assert other != first
        assert await ledger.queue_depth() == 2

    run(body, redis_url)


def test_queue_limit(redis_url: str) -> None:
    async def body(ledger: Ledger) -> None:
        a = (await ledger.submit(new_job())).job_id
        await ledger.submit(new_job())
        with pytest.raises(QueueFull):
            await ledger.submit(new_job())
        await ledger.cancel(a)
        await ledger.submit(new_job())  # a finished job frees its place

    run(body, redis_url, queue_limit=2)


def test_every_key_of_a_finished_job_expires_after_the_retention(redis_url: str) -> None:
    async def body(ledger: Ledger) -> None:
        job_id = (await ledger.submit(new_job(key="k1"))).job_id
        await claim(ledger, job_id, "w1")
        await ledger.save_checkpoint(job_id, "w1", "segmentation", b"mask")
        # A running job does not expire, nor does its idempotency key: a repeat of a job that waited
        # or ran past the retention must still find it, not make (and charge) a second.
        assert await ledger.redis.ttl(keys.job(job_id)) == -1
        assert await ledger.redis.ttl(keys.idempotency("acme", "k1")) == -1
        await ledger.fail(job_id, "w1", pb.JobError(code=pb.ERROR_CODE_TIMEOUT, message="slow"), 4)
        for key in (keys.job(job_id), keys.events(job_id), keys.checkpoints(job_id), keys.idempotency("acme", "k1")):
            ttl = await ledger.redis.ttl(key)
            assert 3500 < ttl <= 3600, key
        assert await ledger.queue_depth() == 0

    run(body, redis_url, retention_s=3600)


def test_stalled_work_is_put_back_and_renewed_work_is_not(redis_url: str) -> None:
    async def body(ledger: Ledger) -> None:
        stalled = (await ledger.submit(new_job(tenant="t1"))).job_id
        alive = (await ledger.submit(new_job(tenant="t2"))).job_id
        assert await claim(ledger, stalled, "dead", lease_s=0.2) == 1
        assert await claim(ledger, alive, "alive", lease_s=0.2) == 1
        await asyncio.sleep(0.1)
        assert await ledger.renew("alive", alive, LEASE_S)
        await asyncio.sleep(0.2)
        assert await ledger.requeue_expired() == 1
        assert await claim(ledger, stalled, "rescuer") == 2  # back at the front of its queue
        assert await ledger.take("rescuer", LEASE_S, DETACHED) is None  # nothing else is queued
        assert await ledger.renew("alive", alive, LEASE_S)

    run(body, redis_url)


def test_a_lease_that_ran_out_is_not_renewed_and_its_slot_waits_for_the_reaper(redis_url: str) -> None:
    """A dispatcher cut off (or killed) for longer than its lease: its renewal is refused, and its
    slot stays taken until a reaper puts the job back. Counted free at its expiry, the slot ran the
    tenant's next job while the lost one was still RUNNING by its events (two jobs at a concurrency
    of one, a review saw it after a kill -9), and that next job went ahead of the one put back at
    the front of the queue."""

    async def body(ledger: Ledger) -> None:
        await ledger.set_tenant_limits("solo", {"concurrency": 1})
        first = (await ledger.submit(new_job(tenant="solo"))).job_id
        second = (await ledger.submit(new_job(tenant="solo"))).job_id
        assert await claim(ledger, first, "cut-off", lease_s=0.2) == 1
        await asyncio.sleep(0.3)  # its lease runs out; no reaper has looked yet
        assert await ledger.take("other", LEASE_S, DETACHED) is None, "the lost job's slot ran another job"
        assert not await ledger.renew("cut-off", first, LEASE_S)
        assert (await ledger.tenant_usage("solo")).running == 1
        assert await ledger.requeue_expired() == 1  # the lost job goes back, first in its queue
        assert await claim(ledger, first, "other") == 2
        assert await ledger.take("other", LEASE_S, DETACHED) is None  # second waits for the slot
        await ledger.succeed(first, "other", pb.JobResult(), 4)
        assert await claim(ledger, second, "other") == 1

    run(body, redis_url)


def test_a_submit_does_not_start_a_job_in_a_slot_whose_lease_ran_out(redis_url: str) -> None:
    async def body(ledger: Ledger) -> None:
        await ledger.set_tenant_limits("solo", {"concurrency": 1})
        first = (await ledger.submit(new_job(tenant="solo"))).job_id
        assert await claim(ledger, first, "dead", lease_s=0.2) == 1
        await asyncio.sleep(0.3)  # the dispatcher died; nothing is queued, no reaper has looked
        second = await ledger.submit(new_job(tenant="solo"), start_here=StartHere("here", LEASE_S))
        assert second.started is None, "started beside the dead dispatcher's job: two running at a concurrency of one"

    run(body, redis_url)


def test_a_tenant_with_room_is_served_however_many_tenants_ahead_of_it_are_at_their_concurrency(
    redis_url: str,
) -> None:
    """A take looked at the 200 queued tenants lowest in virtual time and skipped those at their
    concurrency: with 250 such tenants ahead, a tenant with room was not served while dispatchers
    stood idle (a review found it). A take now parks the tenants it finds at their concurrency and
    looks on; a parked tenant goes back when its slot is freed or its limits change."""

    async def body(ledger: Ledger) -> None:
        full = [f"full{i:03d}" for i in range(250)]
        for tenant in full:
            await ledger.set_tenant_limits(tenant, {"concurrency": 1})
            for _ in range(2):
                await ledger.submit(new_job(tenant=tenant))
        first_jobs = {}
        for _ in full:  # each takes its one slot; each keeps a job queued
            taken = await ledger.take("w", LEASE_S, DETACHED)
            assert taken is not None
            first_jobs[taken[0]] = taken
        ids = [(await ledger.submit(new_job(tenant="roomy"))).job_id for _ in range(2)]
        assert [(await ledger.take("w", LEASE_S, DETACHED) or ("none",))[0] for _ in range(3)] == [*ids, "none"]
        # A parked tenant whose job ends is served next; one whose limit is raised, too.
        ended = next(iter(first_jobs))
        tenant = (await ledger.get(ended)).tenant  # type: ignore[union-attr]
        await ledger.succeed(ended, "w", pb.JobResult(), 4)
        again = await ledger.take("w", LEASE_S, DETACHED)
        assert again is not None and (await ledger.get(again[0])).tenant == tenant  # type: ignore[union-attr]
        await ledger.set_tenant_limits("full249", {"concurrency": 2})
        raised = await ledger.take("w", LEASE_S, DETACHED)
        assert raised is not None and (await ledger.get(raised[0])).tenant == "full249"  # type: ignore[union-attr]
        assert await ledger.take("w", LEASE_S, DETACHED) is None

    run(body, redis_url, tenant_defaults=TenantLimits(rate_per_s=0, queue_quota=0))


@contextlib.asynccontextmanager
async def work_notices(ledger: Ledger) -> AsyncIterator[Callable[[], Awaitable[int]]]:
    """Subscribed to the work channel: a count of the notices heard since it was last called."""
    pubsub = ledger.redis.pubsub()
    await pubsub.subscribe(keys.WORK_CHANNEL)
    await pubsub.get_message(timeout=1.0)  # the subscription's confirmation

    async def notices() -> int:
        heard = 0
        while await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2) is not None:
            heard += 1
        return heard

    try:
        yield notices
    finally:
        await pubsub.aclose()


def test_work_notices_are_sent_only_while_a_dispatcher_waits(redis_url: str) -> None:
    async def body(ledger: Ledger) -> None:
        async with work_notices(ledger) as notices:
            await ledger.submit(new_job())
            assert await notices() == 0  # no dispatcher has looked yet
            assert await ledger.take("w1", LEASE_S, DETACHED) is not None
            assert await ledger.take("w1", LEASE_S, DETACHED) is None  # w1 now waits for work
            await ledger.submit(new_job())
            assert await notices() == 1
            assert await ledger.take("w1", LEASE_S, DETACHED) is not None  # busy again
            await ledger.submit(new_job())
            assert await notices() == 0

    run(body, redis_url)


def test_an_end_announces_its_freed_slot_only_when_a_job_is_queued(redis_url: str) -> None:
    """A job's end frees its tenant's slot: a waiting dispatcher hears of it while some job is
    queued (acme's third, held back by its concurrency of two), and not when the queue is empty,
    where a take would find nothing."""

    async def body(ledger: Ledger) -> None:
        async with work_notices(ledger) as notices:
            ids = [(await ledger.submit(new_job())).job_id for _ in range(3)]
            assert await ledger.take("w1", LEASE_S, DETACHED) == (ids[0], 1, "material_swap")
            assert await ledger.take("w2", LEASE_S, DETACHED) == (ids[1], 1, "material_swap")
            assert await ledger.take("w3", LEASE_S, DETACHED) is None  # acme is at its concurrency
            await ledger.succeed(ids[0], "w1", pb.JobResult(), 4)
            assert await notices() == 1
            assert await ledger.take("w3", LEASE_S, DETACHED) == (ids[2], 1, "material_swap")
            assert await ledger.take("w1", LEASE_S, DETACHED) is None  # waits, and nothing is queued
            await ledger.succeed(ids[1], "w2", pb.JobResult(), 4)
            await ledger.succeed(ids[2], "w3", pb.JobResult(), 4)
            assert await notices() == 0

    run(body, redis_url)


def test_a_take_that_empties_the_queue_with_a_slot_free_waits_at_once(redis_url: str) -> None:
    """A dispatcher with another slot free whose take empties the queue is noted as waiting by that
    take (drained): the next submit notifies it, with no take that finds nothing in between. While
    jobs remain queued, or without a free slot, a take is as before."""

    async def body(ledger: Ledger) -> None:
        async with work_notices(ledger) as notices:
            first, second = (await ledger.submit(new_job())).job_id, (await ledger.submit(new_job())).job_id
            taken = await ledger.take("w1", LEASE_S, DETACHED, slot_free=True)
            assert taken == (first, 1, "material_swap") and not taken.drained  # the second is queued
            taken = await ledger.take("w1", LEASE_S, DETACHED, slot_free=True)
            assert taken == (second, 1, "material_swap") and taken.drained
            await ledger.submit(new_job(tenant="globex"))  # acme runs its two (its concurrency)
            assert await notices() == 1  # w1 was noted as waiting by the take that emptied the queue
            taken = await ledger.take("w1", LEASE_S, DETACHED)  # its last slot: not noted as waiting
            assert taken is not None and not taken.drained
            await ledger.submit(new_job())
            assert await notices() == 0

    run(body, redis_url)


def test_a_retried_take_hands_out_the_same_job(redis_url: str) -> None:
    async def body(ledger: Ledger) -> None:
        first = (await ledger.submit(new_job())).job_id
        await ledger.submit(new_job())
        args = [
            "w1",
            1_000,
            30_000,
            2,
            "1.0",
            keys.take("op-1"),
            keys.QUEUE_TEMPLATE,
            keys.TENANT_RUNNING_TEMPLATE,
            keys.TENANT_LIMITS_TEMPLATE,
            keys.JOB_TEMPLATE,
            ",room_batch,",
            10,
            10_000,
            "0",
            keys.CHECKPOINTS_TEMPLATE,
        ]
        script = ledger.scripts["take"]
        take_keys = keys.TAKE_KEYS
        assert await script(keys=take_keys, args=args) == await script(keys=take_keys, args=args)
        assert (await script(keys=take_keys, args=args))[0].decode() == first
        assert await ledger.redis.llen(keys.queue("acme")) == 1  # the second is still queued

    run(body, redis_url)


def test_a_take_hands_over_the_job_and_its_checkpoints_as_it_left_them(redis_url: str) -> None:
    """What the dispatcher starts the job from, without reading it again: the same as reading the
    job and its checkpoints after the take, on a first take and on one after a hand-back."""

    async def body(ledger: Ledger) -> None:
        job_id = (await ledger.submit(new_job())).job_id
        taken = await ledger.take("w1", LEASE_S, DETACHED)
        assert taken is not None and taken.stored is not None
        assert taken.stored == await ledger.get(job_id) and taken.checkpoints == {}
        assert taken.stored.owner == "w1" and taken.stored.job.state == pb.JOB_STATE_RUNNING
        await ledger.started(job_id, "w1", stored=taken.stored)
        await ledger.save_checkpoint(job_id, "w1", "segmentation", b"mask")
        assert await ledger.hand_back("w1", job_id)
        again = await ledger.take("w2", LEASE_S, DETACHED)
        assert again is not None and again.stored is not None
        assert again.stored == await ledger.get(job_id) and again.stored.job.attempt == 2
        assert again.checkpoints == {"segmentation": b"mask"} == await ledger.checkpoints(job_id)

    run(body, redis_url)


def test_a_tenant_never_runs_more_than_its_concurrency(redis_url: str) -> None:
    async def body(ledger: Ledger) -> None:
        ids = [(await ledger.submit(new_job())).job_id for _ in range(4)]
        taken = [await ledger.take(f"w{i}", LEASE_S, DETACHED) for i in range(4)]
        assert [t[0] for t in taken if t] == ids[:2] and taken[2:] == [None, None]
        await ledger.set_tenant_limits("acme", {"concurrency": 3})
        third = await ledger.take("w9", LEASE_S, DETACHED)
        assert third is not None and third[0] == ids[2]
        await ledger.succeed(ids[0], "w0", pb.JobResult(), 4)  # the end frees its slot
        fourth = await ledger.take("w9", LEASE_S, DETACHED)
        assert fourth is not None and fourth[0] == ids[3]

    run(body, redis_url, tenant_defaults=TenantLimits(concurrency=2, rate_per_s=0))


def test_a_job_submitted_beside_a_free_slot_starts_there_at_once(redis_url: str) -> None:
    """With nothing queued and the tenant under its concurrency, a submit that names a dispatcher
    starts the job for it (RUNNING, attempt 1, a slot for the lease) without queuing it; a retry of
    that submit hands it out again; its lease runs out as a taken job's does."""

    async def body(ledger: Ledger) -> None:
        new = new_job()
        job_id, duplicate, started, written, _, followed = await ledger.submit(new, start_here=StartHere("here", 0.2))
        assert not duplicate and started is not None
        assert (started.job.id, started.job.attempt, started.owner) == (job_id, 1, "here")
        assert started.job.state == pb.JOB_STATE_RUNNING and started.job.kind == "material_swap"
        assert started.request == b"req" and started == await ledger.get(job_id)
        events = (await ledger.read_events({job_id: "0"}))[job_id]  # and its start, as a dispatcher writes it
        assert [(e.state, e.message) for e in events] == [
            (pb.JOB_STATE_QUEUED, "Queued"),
            (pb.JOB_STATE_RUNNING, "Starting"),
        ]
        assert events[1].time == events[0].time and events[1].total_steps == 4
        assert list(written) == events  # the submit says what it wrote, cursors and all
        assert not followed  # no one followed its channel before it
        assert await ledger.take("other", LEASE_S, DETACHED) is None  # nothing is queued
        again = await ledger.submit(new, start_here=StartHere("here", 0.2))  # its answer was lost
        assert again.started == started and again.written == ()  # a repeat wrote nothing
        assert (await ledger.submit(new, start_here=StartHere("another", 0.2))).started is None
        step = progress_event(job_id, stage=1, step=1, total_steps=4, progress=0.0, message="Step 1/4")
        await ledger.record_progress(job_id, "here", step)
        await asyncio.sleep(0.3)  # the dispatcher dies: its lease runs out
        assert await ledger.requeue_expired() == 1
        assert await claim(ledger, job_id, "rescuer") == 2

    run(body, redis_url)


def test_a_submit_that_starts_its_job_says_whether_the_jobs_channel_was_followed_before_it(redis_url: str) -> None:
    """SubmitAndWatch follows a new job's channel before its submit (EventHub.follow_ahead); a submit
    that finds it followed says so (its watch then reads nothing to catch up), and one that does not,
    not: a subscription Redis had not yet made when the script ran."""

    async def body(ledger: Ledger) -> None:
        new = new_job()
        listener = ledger.redis.pubsub()
        try:
            await listener.subscribe(keys.job_channel(new.job_id))
            confirmed = await listener.get_message(timeout=2)
            assert confirmed is not None and confirmed["type"] == "subscribe"
            submitted = await ledger.submit(new, start_here=StartHere("here", LEASE_S))
            assert submitted.started is not None and submitted.followed
            notice = await listener.get_message(timeout=2)  # the start's notice came after it
            assert notice is not None and notice["data"].decode().startswith("next ")
            await listener.unsubscribe()
            other = await ledger.submit(new_job(tenant="globex"), start_here=StartHere("there", LEASE_S))
            assert other.started is not None and not other.followed
        finally:
            await listener.aclose()

    run(body, redis_url, tenant_defaults=TenantLimits(concurrency=2, rate_per_s=0))


def test_a_job_is_queued_beside_a_free_slot_when_others_wait_or_its_tenant_is_full(redis_url: str) -> None:
    """Starting at once never goes around the queue's order or a tenant's concurrency."""

    async def body(ledger: Ledger) -> None:
        here = StartHere("here", LEASE_S)
        first = await ledger.submit(new_job(), start_here=here)
        assert first.started is not None  # acme runs 1 of its 1
        second = await ledger.submit(new_job(), start_here=here)
        assert second.started is None  # acme is at its concurrency: queued
        third = await ledger.submit(new_job(tenant="globex"), start_here=here)
        assert third.started is None  # acme's job waits: globex queues behind it
        await ledger.succeed(first.job_id, "here", pb.JobResult(), 4)
        taken = [await ledger.take("w", LEASE_S, DETACHED) for _ in range(2)]
        # acme's first job moved its virtual time as a take would have: globex, which has run
        # nothing, goes first (as it does when acme's first job is queued and taken at once).
        assert [t[0] for t in taken if t] == [third.job_id, second.job_id]

    run(body, redis_url, tenant_defaults=TenantLimits(concurrency=1, rate_per_s=0))


def test_a_tenant_keeps_its_virtual_time_when_its_job_starts_at_its_submit_or_its_queue_is_cancelled(
    redis_url: str,
) -> None:
    """A job started at its submit (start_here) moves its tenant's virtual time as a take would, and
    a tenant whose queue a take finds holding only cancelled jobs keeps its own: queued again, it
    does not tie at the clock with (and by name go ahead of) a tenant that queued before it."""

    async def body(ledger: Ledger) -> None:
        here = StartHere("here", LEASE_S)
        for _ in range(3):
            ran = await ledger.submit(new_job(tenant="a"), start_here=here)
            assert ran.started is not None
            b_job = (await ledger.submit(new_job(tenant="b"))).job_id
            a_job = (await ledger.submit(new_job(tenant="a"))).job_id
            taken = [await ledger.take("w", LEASE_S, DETACHED) for _ in range(2)]
            assert [t[0] for t in taken if t] == [b_job, a_job]
            for job_id in (ran.job_id, b_job, a_job):
                await ledger.succeed(job_id, "here" if job_id == ran.job_id else "w", pb.JobResult(), 4)
        await ledger.submit(new_job(tenant="a"))
        assert await ledger.take("w", LEASE_S, DETACHED) is not None
        cancelled = (await ledger.submit(new_job(tenant="a"))).job_id
        await ledger.cancel(cancelled)
        assert await ledger.take("w", LEASE_S, DETACHED) is None  # finds only the cancelled job
        b_job = (await ledger.submit(new_job(tenant="b"))).job_id
        a_job = (await ledger.submit(new_job(tenant="a"))).job_id
        taken = [await ledger.take("w", LEASE_S, DETACHED) for _ in range(2)]
        assert [t[0] for t in taken if t] == [b_job, a_job]

    run(body, redis_url, tenant_defaults=TenantLimits(rate_per_s=0, concurrency=10))


def test_a_tenant_with_a_backlog_does_not_hold_back_another(redis_url: str) -> None:
    """Weighted fair queuing: tenant B's first job starts within one slot of being submitted,
    however many jobs tenant A has queued; a tenant of weight 2 gets twice the turns."""

    async def body(ledger: Ledger) -> None:
        for _ in range(200):
            await ledger.submit(new_job(tenant="a"))
        assert (await ledger.take("w", LEASE_S, DETACHED)) is not None  # A is being served
        b_job = (await ledger.submit(new_job(tenant="b"))).job_id
        order = []
        for _ in range(2):
            taken = await ledger.take("w", LEASE_S, DETACHED)
            assert taken is not None
            order.append(taken[0])
        assert b_job in order
        # Weights: C (weight 2) and D (weight 1), both with a backlog, get turns 2:1.
        await ledger.set_tenant_limits("c", {"weight": 2.0})
        for tenant in ("c", "d"):
            for _ in range(30):
                await ledger.submit(new_job(tenant=tenant))
        served = {"a": 0, "c": 0, "d": 0}
        for _ in range(60):
            taken = await ledger.take("w", LEASE_S, DETACHED)
            assert taken is not None
            tenant = (await ledger.get(taken[0])).tenant  # type: ignore[union-attr]
            served[tenant] += 1
        assert served["c"] == 2 * served["d"] or abs(served["c"] - 2 * served["d"]) <= 2, served

    run(body, redis_url, tenant_defaults=TenantLimits(concurrency=1000, rate_per_s=0, queue_quota=0))


def test_a_tenant_that_keeps_one_job_queued_does_not_shut_out_a_waiting_one(redis_url: str) -> None:
    """A client keeping its concurrency busy and one job queued (it submits the next as each ends)
    empties its queue at every take: it queued again at the virtual clock, tied with the tenant
    that waited, and won the tie by name, take after take (a review's tenant B waited 55-62 s
    behind 1.3 s jobs). It queues again at its last job's finish: B is taken at the next free slot."""

    async def body(ledger: Ledger) -> None:
        running = []
        for _ in range(3):  # concurrency 2, and one queued
            await ledger.submit(new_job(tenant="a"))
        for _ in range(2):
            taken = await ledger.take("w", LEASE_S, DETACHED)
            assert taken is not None
            running.append(taken[0])
        order: list[str] = []

        async def one_ends() -> None:
            await ledger.succeed(running.pop(0), "w", pb.JobResult(), 4)
            taken = await ledger.take("w", LEASE_S, DETACHED)
            assert taken is not None
            order.append(taken[0])
            running.append(taken[0])
            await ledger.submit(new_job(tenant="a"))  # its client's next job

        for _ in range(3):
            await one_ends()
        b_job = (await ledger.submit(new_job(tenant="b"))).job_id
        del order[:]
        for _ in range(4):
            await one_ends()
        assert b_job in order[:1], (b_job, order)

    run(body, redis_url)


def test_the_queue_counts_as_runnable_only_what_a_dispatcher_could_take_now(redis_url: str) -> None:
    """The dispatchers' autoscaler reads `runnable`: a tenant's backlog behind its own concurrency
    would add replicas that find nothing to take (a review found 38 queued, 2 takeable, 10 replicas
    asked for)."""

    async def body(ledger: Ledger) -> None:
        for _ in range(12):
            await ledger.submit(new_job(tenant="busy"))
        for _ in range(2):
            assert await ledger.take("w", LEASE_S, DETACHED) is not None  # its two slots
        for _ in range(3):
            assert await ledger.take("w", LEASE_S, DETACHED) is None  # the rest waits for them
        snapshot = await QueueSampler(ledger).read()
        assert (snapshot.queued, snapshot.running, snapshot.runnable) == (10, 2, 0)
        await ledger.set_tenant_limits("wide", {"concurrency": 5})
        for _ in range(3):
            await ledger.submit(new_job(tenant="wide"))
        await ledger.submit(new_job(tenant="one"))
        snapshot = await QueueSampler(ledger).read()
        assert (snapshot.queued, snapshot.runnable, snapshot.waiting_tenants) == (14, 4, 3)
        assert snapshot.document()["runnable"] == 4

    run(body, redis_url, tenant_defaults=TenantLimits(concurrency=2, rate_per_s=0, queue_quota=0))


def test_rate_and_quota_are_enforced_at_submit(redis_url: str) -> None:
    async def body(ledger: Ledger) -> None:
        for _ in range(3):  # the burst
            await ledger.submit(new_job())
        with pytest.raises(RateLimited) as limited:
            await ledger.submit(new_job())
        assert 0 < limited.value.retry_after_s <= 0.5  # 2 per second: one more in half a second
        await asyncio.sleep(limited.value.retry_after_s + 0.02)
        await ledger.submit(new_job())  # allowed again
        await ledger.set_tenant_limits("acme", {"rate_per_s": 0, "queue_quota": 4})
        with pytest.raises(QuotaExceeded):
            await ledger.submit(new_job())
        assert await ledger.submit(new_job(tenant="other"))  # another tenant's quota is its own

    run(body, redis_url, tenant_defaults=TenantLimits(rate_per_s=2, burst=3))


def test_a_batchs_rooms_are_not_refused_for_the_quota_or_the_queue_limit_the_batch_counted_against(
    redis_url: str,
) -> None:
    """A batch waits for its rooms: rooms refused for the unfinished jobs that batches are waited
    for each other for good, their credits reserved (a review's tenant with quota 1)."""

    async def body(ledger: Ledger) -> None:
        await ledger.set_tenant_limits("acme", {"rate_per_s": 0, "queue_quota": 1})
        batch = await ledger.submit(new_job())
        with pytest.raises(QuotaExceeded):
            await ledger.submit(new_job())
        assert await ledger.submit(replace(new_job(), parent_job_id=batch.job_id))

    run(body, redis_url)


def test_a_batch_holds_a_place_for_each_room_it_runs_at_once_from_its_submit_to_its_end(redis_url: str) -> None:
    """Its rooms were counted one by one as they were made, past the quota: a burst of batches
    admitted under it brought 8 rooms each (a review's tenant: 90 unfinished at a quota of 10, and
    the queue limit reached, every other tenant refused)."""

    async def body(ledger: Ledger) -> None:
        await ledger.set_tenant_limits("acme", {"rate_per_s": 0, "queue_quota": 4})
        batch = await ledger.submit(replace(new_job(), kind="room_batch", room_places=3))
        assert (await ledger.tenant_usage("acme")).unfinished == 4  # itself and three rooms' places
        assert await ledger.queue_depth() == 4
        with pytest.raises(QuotaExceeded):
            await ledger.submit(replace(new_job(), kind="room_batch", room_places=3))
        rooms = [(await ledger.submit(replace(new_job(), parent_job_id=batch.job_id))).job_id for _ in range(3)]
        assert (await ledger.tenant_usage("acme")).unfinished == 4  # the rooms take the batch's places
        for room in rooms:
            await ledger.cancel(room)
        await ledger.cancel(batch.job_id)
        assert (await ledger.tenant_usage("acme")).unfinished == 0  # its places end with it
        assert await ledger.queue_depth() == 0

    run(body, redis_url)


def test_list_pages_newest_first_without_gaps(redis_url: str) -> None:
    async def body(ledger: Ledger) -> None:
        ids = []
        for _ in range(7):
            ids.append((await ledger.submit(new_job())).job_id)
        await ledger.submit(new_job(tenant="someone-else"))
        seen: list[str] = []
        token = None
        while True:
            jobs, token = await ledger.list_jobs("acme", 3, token)
            seen += [j.id for j in jobs]
            if token is None:
                break
        assert sorted(seen) == sorted(ids) and len(seen) == 7
        created = [(await ledger.get(i)).job.create_time.ToMilliseconds() for i in seen]  # type: ignore[union-attr]
        assert created == sorted(created, reverse=True)

    run(body, redis_url)


def test_list_pages_give_every_job_once_however_many_share_a_millisecond(redis_url: str) -> None:
    """More jobs created in one millisecond than a page reads at once (page_size + 64): paging goes
    on past them rather than end early, with and without a project filter."""

    async def body(ledger: Ledger) -> None:
        ids = {(await ledger.submit(new_job())).job_id for _ in range(150)}
        older = (await ledger.submit(new_job())).job_id
        # A job's creation time is Redis's clock (submit.lua): the 150 are made to share a millisecond
        # in the index ListJobs pages (and in their hashes), the last submitted one a millisecond before.
        created = await ledger.clock_ms()
        for job_id, ms in [*((job_id, created) for job_id in ids), (older, created - 1)]:
            await ledger.redis.zadd(keys.tenant_index("acme"), {job_id: ms})
            await ledger.redis.hset(keys.job(job_id), "created_ms", ms)
        for page_size, project, scanned in ((1, "", 1000), (5, "", 1000), (100, "", 1000), (5, "p1", 30)):
            seen: list[str] = []
            token = None
            while True:
                jobs, token = await ledger.list_jobs("acme", page_size, token, project, max_scanned=scanned)
                seen += [j.id for j in jobs]
                if token is None:
                    break
            assert len(seen) == len(set(seen)) == 151, (page_size, project, len(seen))
            assert set(seen[:-1]) == ids and seen[-1] == older

    run(body, redis_url, tenant_defaults=TenantLimits(rate_per_s=0, queue_quota=0))


def test_a_stored_rate_however_small_limits_submits_without_failing_them(redis_url: str) -> None:
    """A rate stored before the admin API refused tiny ones (1e-300, the least float) is taken as
    one submit a day: the burst is accepted, the next refused with when to retry, none fails."""

    async def body(ledger: Ledger) -> None:
        for tenant, rate in (("tiny", 1e-300), ("least", 5e-324), ("daily", 1 / 86400)):
            await ledger.set_tenant_limits(tenant, {"rate_per_s": rate, "burst": 2})
            for _ in range(2):
                await ledger.submit(new_job(tenant=tenant))
            with pytest.raises(RateLimited) as limited:
                await ledger.submit(new_job(tenant=tenant))
            assert 86000 < limited.value.retry_after_s <= 86400, (tenant, limited.value.retry_after_s)
            with pytest.raises(RateLimited):
                await ledger.precheck(tenant, 0)

    run(body, redis_url, tenant_defaults=TenantLimits(queue_quota=0))


def test_a_raised_rate_applies_at_once(redis_url: str) -> None:
    """The next allowed time stored under a slow rate was kept against a faster one: a tenant held
    to one submit a day and then given ten a second waited out the day (found by a review). It is
    now held as if it had spent the new burst: the wait is the new rate's."""

    async def body(ledger: Ledger) -> None:
        await ledger.set_tenant_limits("raised", {"rate_per_s": 1 / 86400, "burst": 1})
        await ledger.submit(new_job(tenant="raised"))
        with pytest.raises(RateLimited) as limited:
            await ledger.submit(new_job(tenant="raised"))
        assert limited.value.retry_after_s > 86000
        await ledger.set_tenant_limits("raised", {"rate_per_s": 10, "burst": 5})
        with pytest.raises(RateLimited) as limited:
            await ledger.submit(new_job(tenant="raised"))
        assert 0 < limited.value.retry_after_s <= 0.1
        await asyncio.sleep(limited.value.retry_after_s + 0.02)
        await ledger.submit(new_job(tenant="raised"))

    run(body, redis_url, tenant_defaults=TenantLimits(queue_quota=0))


@pytest.mark.parametrize("rate", [10_000.0, 50_000.0, 100_000.0])
def test_a_high_rate_still_holds_its_burst(redis_url: str, rate: float) -> None:
    """The rate's next allowed time was stored with 14 digits, which left a millisecond timestamp
    one decimal: at any rate over 20,000 a second (the admin API takes up to 100,000) the interval
    rounded away and nothing was limited (a review found 500 of 500 admitted at one instant). The
    scripts judge the rate by Redis's clock, so 200 submits at one instant are 200 calls of the
    rate's code (lib/gcra.lua) in one script, at the instant the script reads."""

    async def body(ledger: Ledger) -> None:
        at_one_instant = (
            _source_of_lib("gcra")
            + """
local admitted = 0
local now = 1750000000000
for _ = 1, 200 do
  local wait, new_tat = gcra(KEYS[1], tonumber(ARGV[1]), 10, now)
  if wait == 0 then
    gcra_store(KEYS[1], new_tat, now)
    admitted = admitted + 1
  end
end
return admitted
"""
        )
        assert await ledger.redis.eval(at_one_instant, 1, keys.tenant_rate("fast"), repr(rate)) == 10

    run(body, redis_url, tenant_defaults=TenantLimits(queue_quota=0))


def _source_of_lib(name: str) -> str:
    from gateway.ledger.base import _SCRIPTS

    return (_SCRIPTS / "lib" / f"{name}.lua").read_text()


def test_a_precheck_or_an_uploads_admission_whose_reply_was_lost_is_counted_once(redis_url: str) -> None:
    """Every script is retried after a lost reply, so every script must apply once: the precheck
    of an inline submit and an upload's admission counted the tenant's rate again on the retry (a
    review found a burst of 2 refusing the second submit)."""
    import redis.exceptions

    lost: list[str] = []

    def losing_first_reply(script: Any) -> Any:
        async def call(keys: list[Any], args: list[Any]) -> Any:
            reply = await script(keys=keys, args=args)  # Redis ran it...
            if len(lost) % 2 == 0:
                lost.append("lost")  # ...and its reply is lost
                raise redis.exceptions.ConnectionError("the connection to Redis was lost")
            lost.append("answered")
            return reply

        return call

    async def body(ledger: Ledger) -> None:
        await ledger.set_tenant_limits("once", {"rate_per_s": 1 / 3600, "burst": 2})
        for name in ("precheck", "asset"):
            ledger.scripts[name] = losing_first_reply(ledger.scripts[name])
        await ledger.precheck("once", 0)
        await ledger.admit_asset("once", "a" * 32, now_ms(), 0)
        assert lost == ["lost", "answered", "lost", "answered"]
        with pytest.raises(RateLimited):  # the burst of two is spent by those two, not four
            await ledger.precheck("once", 0)

    run(body, redis_url, tenant_defaults=TenantLimits(queue_quota=0))


def test_a_grant_retried_after_a_lost_reply_is_not_answered_as_a_repeat(redis_url: str) -> None:
    """The call whose first try added the credits is the grant, not a repeat of one: it was answered
    deduplicated ("nothing added") and its grant was not logged (the diff's review)."""
    import redis.exceptions

    def losing_first_reply(script: Any) -> Any:
        lost: list[str] = []

        async def call(keys: list[Any], args: list[Any]) -> Any:
            reply = await script(keys=keys, args=args)  # Redis ran it...
            if not lost:
                lost.append("lost")  # ...and its reply is lost: the ledger retries
                raise redis.exceptions.ConnectionError("the connection to Redis was lost")
            return reply

        return call

    async def body(ledger: Ledger) -> None:
        original = ledger.scripts["grant"]
        for key in ("", "inv-1"):  # without a caller's key and with one
            ledger.scripts["grant"] = losing_first_reply(original)
            grant = await ledger.grant("t-" + (key or "nokey"), 100, "n", key, "100:x")
            assert (grant.balance, grant.repeated) == (100, False), key
        ledger.scripts["grant"] = original
        again = await ledger.grant("t-inv-1", 100, "n", "inv-1", "100:x")  # another call with the key
        assert (again.balance, again.repeated) == (100, True)

    run(body, redis_url)


def test_a_cancelled_batchs_cancel_mark_expires_with_the_batch(redis_url: str) -> None:
    """CancelJob of a batch marks it cancel-asked for a day whatever the job retention: with
    JOB_RETENTION_SECONDS under a day, every cancelled batch left that key behind after the batch
    itself had expired (the retention review)."""

    async def body(ledger: Ledger) -> None:
        batch = replace(new_job(), kind="room_batch", total_steps=2)
        await ledger.submit(batch)
        await ledger.cancelling(batch.job_id, 0.1)
        assert await ledger.cancel(batch.job_id)
        await asyncio.sleep(1.5)
        assert not await ledger.redis.exists(keys.job(batch.job_id))  # the batch has expired
        assert [k async for k in ledger.redis.scan_iter(match=f"job:{batch.job_id}*")] == []

    run(body, redis_url, retention_s=1.0)


def test_a_filtered_list_looks_at_a_bounded_number_of_jobs_per_page(redis_url: str) -> None:
    """A project filter that matches few of a tenant's many jobs pages through them a bounded
    number at a time (short, even empty, pages with a token), and still finds every match once."""

    async def body(ledger: Ledger) -> None:
        wanted = [(await ledger.submit(replace(new_job(), project_id="rare"))).job_id for _ in range(3)]
        for _ in range(12):
            await ledger.submit(new_job())  # newer, of project p1
        found: list[str] = []
        pages = 0
        token = None
        while True:
            jobs, token = await ledger.list_jobs("acme", 5, token, "rare", max_scanned=4)
            pages += 1
            found += [job.id for job in jobs]
            if token is None:
                break
        assert sorted(found) == sorted(wanted) and pages >= 4  # at most ~4 jobs looked at a page

    run(body, redis_url, tenant_defaults=TenantLimits(rate_per_s=0))


def test_a_precheck_counts_the_submit_against_the_rate_and_refuses_what_submit_would(redis_url: str) -> None:
    """An inline submit's precheck admits at most the tenant's burst at once (it counts each one;
    its submit then skips the rate), and refuses as submit would for the quota and credits."""

    async def body(ledger: Ledger) -> None:
        await ledger.precheck("acme", 0)
        await ledger.precheck("acme", 0)
        with pytest.raises(RateLimited):
            await ledger.precheck("acme", 0)  # the burst of two is spent, as a third submit's would be
        assert not (await ledger.submit(new_job(), rate_limited=False)).duplicate  # counted already
        with pytest.raises(InsufficientCredits):
            await ledger.precheck("globex", 5)  # no credits
        await ledger.set_tenant_limits("initech", {"queue_quota": 1})
        await ledger.submit(new_job(tenant="initech"))
        with pytest.raises(QuotaExceeded):
            await ledger.precheck("initech", 0)

    run(body, redis_url, tenant_defaults=TenantLimits(rate_per_s=1, burst=2))


def test_a_tenant_holds_at_most_its_share_of_webhook_attempts(redis_url: str) -> None:
    """A tenant whose receiver hangs: its deliveries fill at most `per_tenant` attempts across
    every worker, and another tenant's due delivery behind them is claimed at once. An attempt's
    record, or its lease running out, frees its place."""

    async def body(ledger: Ledger) -> None:
        now = now_ms()
        for tenant, count in (("stuck", 6), ("other", 1)):
            for i in range(count):
                delivery = f"{tenant}-{i}"
                await ledger.redis.hset(
                    keys.webhook_delivery(delivery),
                    mapping={"id": delivery, "tenant": tenant, "status": "pending", "endpoint": "", "url": "http://x"},
                )
                # The stuck tenant's deliveries come due first.
                await ledger.redis.zadd(keys.WEBHOOKS_DUE, {delivery: now - 100 + (50 if tenant == "other" else i)})
        lease_ms = 500  # short: the scripts judge leases by Redis's clock, so this test waits one out
        first = await ledger.claim_deliveries("w1", lease_ms, 8, per_tenant=2)
        assert [d.delivery_id for d in first.deliveries] == ["stuck-0", "stuck-1", "other-0"]
        assert first.next_due_in_ms is not None and first.next_due_in_ms > 0  # nothing due now to look for
        second = await ledger.claim_deliveries("w2", lease_ms, 8, per_tenant=2)  # another worker
        assert second.deliveries == []
        assert await ledger.record_attempt(first.deliveries[0], "w1", "release", None, 0)
        third = await ledger.claim_deliveries("w2", lease_ms, 8, per_tenant=2)
        assert [d.delivery_id for d in third.deliveries] == ["stuck-0"]  # a place is free again
        # A worker that died mid-attempt: its claims count until their lease's end.
        await asyncio.sleep(lease_ms / 1000 + 0.1)
        later = await ledger.claim_deliveries("w3", lease_ms, 8, per_tenant=2)
        assert sum(d.tenant == "stuck" for d in later.deliveries) == 2

    run(body, redis_url)


def test_a_tenants_backlog_of_webhooks_does_not_hide_another_tenants(redis_url: str) -> None:
    """Hundreds of due deliveries of a tenant at its cap ahead of another tenant's one: the other's
    is claimed within two looks, not when the backlog has drained."""

    async def body(ledger: Ledger) -> None:
        now = now_ms()
        for i in range(301):
            tenant, delivery = ("other", "other-0") if i == 300 else ("stuck", f"stuck-{i}")
            await ledger.redis.hset(
                keys.webhook_delivery(delivery),
                mapping={"id": delivery, "tenant": tenant, "status": "pending", "endpoint": "", "url": "http://x"},
            )
            await ledger.redis.zadd(keys.WEBHOOKS_DUE, {delivery: now - 1000 + i})
        looks = [await ledger.claim_deliveries("w1", 30_000, 8, per_tenant=2) for _ in range(2)]
        claimed = [d.delivery_id for look in looks for d in look.deliveries]
        assert claimed == ["stuck-0", "stuck-1", "other-0"]

    run(body, redis_url)


def test_a_delivery_claimed_before_its_endpoint_was_deleted_is_not_posted(redis_url: str) -> None:
    """The claim read the endpoint and its secrets once: deleted (or its secret rotated) between
    the claim and the post, the delivery still went to it, signed with the old secret (a review
    found it). The worker reads the endpoint again just before it posts."""
    from gateway.ledger.jobs import now_ms as ledger_now
    from gateway.settings import WebhookSettings
    from gateway.subscriptions import Subscriptions
    from gateway.webhooks.worker import DeliveryWorker, delivery_ttl_ms
    from renderkit.fetch import FetchPolicy

    async def body(ledger: Ledger) -> None:
        settings = WebhookSettings(timeout_s=1.0, concurrency=0)
        ledger.webhook_ttl_ms = delivery_ttl_ms(settings, 3600)
        worker = DeliveryWorker(ledger, settings, FetchPolicy(allow_private=True), None, Subscriptions(ledger.redis))
        endpoint = (
            await ledger.create_endpoint("acme", "http://127.0.0.1:9/never", ("completed",), "", ledger_now(), 10)
        ).endpoint
        job = (await ledger.submit(new_job())).job_id
        await ledger.cancel(job)
        claimed = await ledger.claim_deliveries(worker.claim, int(settings.lease_s * 1000), 10)
        (delivery,) = claimed.deliveries
        assert delivery.endpoint_id == endpoint.endpoint_id and delivery.secrets is not None
        assert await ledger.delete_endpoint("acme", endpoint.endpoint_id)
        posted: list[str] = []
        worker_post = worker._attempt

        async def attempt(d: Any) -> Any:
            posted.append(d.delivery_id)
            return await worker_post(d)

        worker._attempt = attempt  # type: ignore[method-assign,assignment]
        await worker._deliver(delivery)
        stored = await ledger.redis.hgetall(keys.webhook_delivery(delivery.delivery_id))
        assert posted == [delivery.delivery_id]  # the attempt began...
        assert stored[b"status"] == b"pending" and stored.get(b"attempts", b"0") == b"0"  # ...and posted nothing

    run(body, redis_url)


def test_webhook_endpoint_calls_repeated_after_a_lost_reply_answer_as_once(redis_url: str) -> None:
    """The ledger retries a call whose reply was lost, so each must answer the same when it ran
    twice (a review's proxy dropped replies after Redis ran them): the tenant's last allowed
    endpoint was refused though created, a rotation done twice made the new secret its own
    previous one (the old secret stopped signing at once, not at the overlap's end), and a delete
    answered NOT_FOUND for the endpoint it had removed."""

    async def body(ledger: Ledger) -> None:
        async def twice(operation: Callable[[], Awaitable[Any]], *, pipelined: bool = False) -> Any:
            await operation()  # ran, its reply lost
            return await operation()

        ledger._retry = twice  # type: ignore[method-assign]
        first = (
            await ledger.create_endpoint("lost-replies", "https://hooks.example/a", ("completed",), "", now_ms(), 2)
        ).endpoint
        last = (
            await ledger.create_endpoint("lost-replies", "https://hooks.example/b", ("completed",), "", now_ms(), 2)
        ).endpoint
        created = await ledger.create_endpoint(
            "lost-replies", "https://hooks.example/c", ("completed",), "", now_ms(), 3, "c"
        )  # keyed: the retry finds its own endpoint by its key, and is not a repeat
        assert not created.repeated and created.endpoint.url == "https://hooks.example/c"
        assert await ledger.delete_endpoint("lost-replies", created.endpoint.endpoint_id)
        assert {e.endpoint_id for e in await ledger.endpoints("lost-replies")} == {first.endpoint_id, last.endpoint_id}
        before = await ledger.endpoint_signing("lost-replies", first.endpoint_id)
        assert before is not None
        until = now_ms() + 60_000
        rotated = await ledger.rotate_secret("lost-replies", first.endpoint_id, until)
        assert rotated is not None and rotated.current != before.current
        assert (rotated.previous, rotated.previous_until_ms) == (before.current, until)
        assert await ledger.delete_endpoint("lost-replies", last.endpoint_id)
        assert not await ledger.delete_endpoint("lost-replies", last.endpoint_id)  # gone: NOT_FOUND

    run(body, redis_url)


def test_submit_and_watch_on_a_draining_gateway_makes_no_job(redis_url: str) -> None:
    """A draining gateway refuses watches; SubmitAndWatch made its job first, then ended
    UNAVAILABLE before the event naming it, so its caller never learned the job's id and a retry
    made a second one, charged again (a review found it). It now refuses before the submit."""
    from gateway.auth.principal import Principal, Scope, set_principal
    from gateway.servicer import RenderServicer
    from gateway.subscriptions import Subscriptions
    from gateway.validation import Limits
    from gateway.watch import EventHub, ServerDraining
    from render_client.client import room_render, room_render_request

    async def body(ledger: Ledger) -> None:
        subscriptions = Subscriptions(ledger.redis)
        hub = EventHub(ledger, subscriptions)
        subscriptions.start()
        hub.start()
        try:
            servicer = RenderServicer(ledger, None, Limits(), hub, assets=None, links=None)  # type: ignore[arg-type]
            set_principal(Principal("acme", "key:test", frozenset(Scope)))
            await hub.drain()
            request = pb.SubmitAndWatchRequest(request=room_render_request(room_render("hall", dry_run=True)))
            with pytest.raises(ServerDraining):
                async for _ in servicer.SubmitAndWatch(request, None):  # type: ignore[arg-type]
                    pass
            assert await ledger.redis.scard(keys.tenant_active("acme")) == 0
        finally:
            await hub.drain()
            await subscriptions.stop()

    run(body, redis_url)


def test_submit_and_watch_whose_submit_the_drain_overtakes_names_its_job(redis_url: str) -> None:
    """The drain began while SubmitAndWatch's submit was in flight (uploads stored, the ledger
    writing): the job was made and charged, but the call ended UNAVAILABLE before the event naming
    it, so an unkeyed caller never learned its id and a retry made a second job. Its first event
    now comes before the UNAVAILABLE, and the client resumes as a watch from it."""
    from gateway.auth.principal import Principal, Scope, set_principal
    from gateway.servicer import RenderServicer
    from gateway.subscriptions import Subscriptions
    from gateway.validation import Limits
    from gateway.watch import EventHub, ServerDraining
    from render_client.client import room_render, room_render_request

    async def body(ledger: Ledger) -> None:
        subscriptions = Subscriptions(ledger.redis)
        hub = EventHub(ledger, subscriptions)
        subscriptions.start()
        hub.start()
        submit = ledger.submit

        async def overtaken(*args: Any, **kwargs: Any) -> Any:
            submitted = await submit(*args, **kwargs)
            await hub.drain()  # SIGTERM while the submit's reply was on its way
            return submitted

        ledger.submit = overtaken  # type: ignore[method-assign]
        try:
            servicer = RenderServicer(ledger, None, Limits(), hub, assets=None, links=None)  # type: ignore[arg-type]
            set_principal(Principal("acme", "key:test", frozenset(Scope)))
            request = pb.SubmitAndWatchRequest(request=room_render_request(room_render("hall", dry_run=True)))
            replies = []
            with pytest.raises(ServerDraining):
                async for reply in servicer.SubmitAndWatch(request, None):  # type: ignore[arg-type]
                    replies.append(reply)
            made: Any = await ledger.redis.zrange(keys.tenant_index("acme"), 0, -1)
            assert [r.event.job_id for r in replies] == [m.decode() for m in made]
            assert replies[0].event.state == pb.JOB_STATE_QUEUED and replies[0].event.cursor
        finally:
            await subscriptions.stop()

    run(body, redis_url)


def test_a_parked_tenants_new_job_waits_behind_its_queued_ones(redis_url: str) -> None:
    """A tenant parked at its concurrency has older jobs queued: its submit's start-here path, which
    looked only at the queued tenants, started a new job ahead of them once a lease lapsed and
    before the tenant went back (a review of this batch found it)."""

    async def body(ledger: Ledger) -> None:
        await ledger.set_tenant_limits("fifo", {"concurrency": 1})
        first = (await ledger.submit(new_job(tenant="fifo"))).job_id
        await ledger.submit(new_job(tenant="fifo"))  # the second, queued
        assert await claim(ledger, first, "w", lease_s=0.2) == 1
        assert await ledger.take("w", LEASE_S, DETACHED) is None  # fifo is at its concurrency: parked
        await asyncio.sleep(0.3)  # its lease lapses; nothing has unparked it yet
        third = await ledger.submit(new_job(tenant="fifo"), start_here=StartHere("here", 30.0))
        assert third.started is None  # queued, behind the second
        assert await ledger.requeue_expired() == 1
        retaken = await ledger.take("w", LEASE_S, DETACHED)
        assert retaken is not None and retaken[0] == first  # the lapsed one goes back at the front

    run(body, redis_url)


def test_a_tenants_index_loses_the_jobs_that_expired(redis_url: str) -> None:
    """The soak review: tenant:{t}:jobs held a member for every job ever submitted."""

    async def body(ledger: Ledger) -> None:
        ids = [(await ledger.submit(new_job())).job_id for _ in range(8)]
        for job_id in ids:
            assert await ledger.cancel(job_id)
        await asyncio.sleep(0.3)  # past the retention: every key of those jobs expired
        index = "tenant:acme:jobs"
        assert await ledger.redis.zcard(index) == 8
        for _ in range(3):
            await ledger.submit(new_job())
        assert await ledger.redis.zcard(index) == 3  # four dead members go at each submit

    run(body, redis_url, retention_s=0.1)


def test_a_webhook_endpoint_is_created_once_per_idempotency_key(redis_url: str) -> None:
    """CreateWebhookEndpoint had no idempotency key: a client retrying after a lost reply made a
    second endpoint, and every event was then delivered twice. A key now makes one endpoint a
    tenant; a repeat answers with it and its current secret, even at the tenant's limit; another
    request with the key, or a repeat after the endpoint's delete, is refused."""
    from gateway.ledger import EndpointKeyUsed, EndpointLimit

    async def body(ledger: Ledger) -> None:
        async def create(tenant: str, url: str, key: str, description: str = "") -> Any:
            return await ledger.create_endpoint(tenant, url, ("completed",), description, now_ms(), 1, key)

        first = await create("keyed", "https://hooks.example/a", "order-1")
        assert not first.repeated
        again = await create("keyed", "https://hooks.example/a", "order-1")  # at the limit of 1, too
        assert again.repeated and again.endpoint == first.endpoint and again.secret == first.secret
        with pytest.raises(EndpointLimit):
            await create("keyed", "https://hooks.example/a", "order-2")
        rotated = await ledger.rotate_secret("keyed", first.endpoint.endpoint_id, now_ms() + 1000)
        assert rotated is not None
        assert (await create("keyed", "https://hooks.example/a", "order-1")).secret == rotated.current
        with pytest.raises(EndpointKeyUsed) as other:
            await create("keyed", "https://hooks.example/a", "order-1", description="another")
        assert not other.value.deleted
        elsewhere = await create("another-tenant", "https://hooks.example/a", "order-1")
        assert not elsewhere.repeated and elsewhere.endpoint.endpoint_id != first.endpoint.endpoint_id
        assert await ledger.delete_endpoint("keyed", first.endpoint.endpoint_id)
        with pytest.raises(EndpointKeyUsed) as deleted:
            await create("keyed", "https://hooks.example/a", "order-1")
        assert deleted.value.deleted
        assert 0 < await ledger.redis.ttl(keys.webhook_endpoint_key("keyed", "order-1")) <= 86_400
        assert [e.endpoint_id for e in await ledger.endpoints("keyed")] == []

    run(body, redis_url)


def test_the_queue_snapshot_counts_a_slot_whose_lease_ran_out_as_a_take_does(redis_url: str) -> None:
    """A take counts a slot whose lease ran out until the reaper puts its job back; the queue
    snapshot KEDA scales the dispatchers on (`runnable`) counted it free (a review found it)."""

    async def body(ledger: Ledger) -> None:
        first = (await ledger.submit(new_job(tenant="solo"))).job_id
        await ledger.submit(new_job(tenant="solo"))
        assert await claim(ledger, first, "dead", lease_s=0.2) == 1
        await asyncio.sleep(0.3)  # the dispatcher died; no reaper has looked yet
        assert await ledger.take("other", LEASE_S, DETACHED) is None  # the take: nothing to take
        snapshot = await QueueSampler(ledger).read()
        assert snapshot.runnable == 0, f"/queue says {snapshot.runnable} runnable; a take finds none"

    run(body, redis_url, tenant_defaults=TenantLimits(concurrency=1, rate_per_s=0))


def test_a_batchs_places_are_not_queued_jobs(redis_url: str) -> None:
    """The queue's and a tenant's `queued` were the unfinished jobs less the running ones, and a
    batch's places for its rooms stood as queued jobs (one queued 3-room batch read as 4; a review
    found it)."""

    async def body(ledger: Ledger) -> None:
        await ledger.submit(replace(new_job(), kind="room_batch", room_places=3))
        snapshot = await QueueSampler(ledger).read()
        usage = await ledger.tenant_usage("acme")
        assert (snapshot.queued, usage.queued, usage.unfinished) == (1, 1, 4)  # the quota counts the places

    run(body, redis_url)


def test_the_places_of_a_batch_an_older_gateway_ended_are_dropped(redis_url: str) -> None:
    """An older gateway's end (a rolling upgrade) removed the batch and not its places, which
    then held its tenant's quota and the queue limit for good."""

    async def body(ledger: Ledger) -> None:
        await ledger.set_tenant_limits("acme", {"rate_per_s": 0, "queue_quota": 3})
        ended = await ledger.submit(replace(new_job(), kind="room_batch", room_places=3))
        running = await ledger.submit(replace(new_job(tenant="other"), kind="room_batch", room_places=2))
        # What an older gateway's transition.lua did at the end: the state, and the job's own member.
        await ledger.redis.hset(keys.job(ended.job_id), "state", "CANCELLED")
        await ledger.redis.srem(keys.ACTIVE_SET, ended.job_id)
        await ledger.redis.srem(keys.tenant_active("acme"), ended.job_id)
        with pytest.raises(QuotaExceeded):
            await ledger.submit(new_job())
        assert await ledger.drop_ended_places() == 3
        assert (await ledger.tenant_usage("acme")).unfinished == 0
        assert await ledger.submit(new_job())
        assert (await ledger.tenant_usage("other")).unfinished == 3  # a batch not ended keeps them
        assert await ledger.drop_ended_places() == 0
        assert running.started is None  # still queued, its places kept above

    run(body, redis_url)
