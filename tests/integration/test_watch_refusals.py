"""The event hub against a real Redis when Redis refuses a read or a watched job disappears: one
watch that cannot be read never holds back the others, and a watch whose job is gone says so."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway.ledger import Ledger, NewJob, keys
from gateway.subscriptions import Subscriptions
from gateway.watch import CursorRefused, EventHub, JobGone
from render.v1 import render_service_pb2 as pb


def run(body: Callable[[Ledger, EventHub, aioredis.Redis], Coroutine[Any, Any, None]], redis_url: str) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url + "/4")
        await client.flushdb()
        ledger = Ledger(client)
        subscriptions = Subscriptions(client)
        subscriptions.start()
        hub = EventHub(ledger, subscriptions, keepalive_s=0.2, sweep_s=0.3)
        hub.start()
        try:
            await body(ledger, hub, client)
        finally:
            await hub.drain()
            await subscriptions.stop()
            await ledger.aclose()
            await client.flushdb()
            await client.aclose()

    asyncio.run(main())


async def submitted(ledger: Ledger) -> str:
    job_id = uuid.uuid4().hex
    await ledger.submit(NewJob(job_id, "acme", "material_swap", b"req", {}, "f", "", "", "", 4))
    return job_id


async def events_of(watch: AsyncIterator[pb.JobEvent | None], n: int) -> list[pb.JobEvent]:
    seen = []
    async for event in watch:
        if event is not None:
            seen.append(event)
            if len(seen) == n:
                break
    return seen


def test_a_watch_redis_cannot_read_ends_alone(redis_url: str) -> None:
    """A cursor past 2^64 - 1 (the servicer refuses it; the hub must not depend on that) makes
    Redis refuse the XREAD it is in: the hub reads job by job, ends that watch and serves the rest."""

    async def body(ledger: Ledger, hub: EventHub, client: aioredis.Redis) -> None:
        bad_job, good_job = await submitted(ledger), await submitted(ledger)
        bad = hub.watch(bad_job, after="1-18446744073709551616")
        failing = asyncio.ensure_future(events_of(bad, 1))
        await asyncio.sleep(0.1)  # its reads fail first
        good = await asyncio.wait_for(events_of(hub.watch(good_job), 1), 5)
        assert good[0].state == pb.JOB_STATE_QUEUED
        with pytest.raises(CursorRefused):
            await asyncio.wait_for(failing, 5)
        # And the hub goes on: a new watch of the same job is served.
        again = await asyncio.wait_for(events_of(hub.watch(bad_job), 1), 5)
        assert again[0].state == pb.JOB_STATE_QUEUED

    run(body, redis_url)


def test_a_watch_of_a_job_that_disappears_ends_with_job_gone(redis_url: str) -> None:
    """A Redis restarted without its data (or a job past its retention): the watch ends saying so,
    not as if the stream had ended in order without the job's end."""

    async def body(ledger: Ledger, hub: EventHub, client: aioredis.Redis) -> None:
        job_id = await submitted(ledger)
        watch = hub.watch(job_id)
        first = await asyncio.wait_for(events_of(watch, 1), 5)
        assert first[0].state == pb.JOB_STATE_QUEUED
        await client.delete(keys.job(job_id), keys.events(job_id))
        with pytest.raises(JobGone):
            await asyncio.wait_for(events_of(watch, 1), 5)

    run(body, redis_url)
