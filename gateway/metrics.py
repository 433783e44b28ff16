"""The gateway's metrics (OpenTelemetry instruments; renderkit.telemetry exports them to Prometheus
on METRICS_LISTEN): jobs by kind, state and error code, their latency and each stage's, the queue,
running jobs per tenant, credit movements and webhook attempts. The queue's figures come from a
snapshot a sampler reads from Redis every few seconds, which also answers the `/queue` document KEDA
scales on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics

from gateway.ledger import Ledger, keys
from render.v1 import render_service_pb2 as pb
from renderkit.telemetry import Tally

log = logging.getLogger(__name__)
meter = metrics.get_meter("render.gateway")

JOB_DURATION = meter.create_histogram(
    "render.job.duration",
    unit="s",
    description="Time from a job's submit to its end, by kind and terminal state.",
)
STAGE_DURATION = meter.create_histogram(
    "render.stage.duration",
    unit="s",
    description="Time of one stage call of a job (retries included), by stage and outcome.",
)
# Counters are Tallies: a submit adds to one, and the SDK's own counter cost ~5 % of its CPU.
JOBS_ENDED = Tally(
    meter,
    "render.jobs.ended",
    description="Jobs that reached a terminal state, by kind, state and error code.",
)
CREDITS_MOVED = Tally(
    meter,
    "render.credits.moved",
    description="Credits moved: reserved at submits, charged and refunded at ends (cancels too).",
)


def count_cancel(job: pb.Job, reserved: int) -> None:
    """A cancel in the metrics, whoever made it (CancelJob, or a batch's run finishing one whose
    gateway died): the job ended, its charge and refund (`job` as the cancel left it) and its time
    from submit to end."""
    JOBS_ENDED.add(1, {"kind": job.kind, "state": "cancelled", "error_code": ""})
    count_settlement(reserved, job.credits_charged)
    if job.HasField("create_time") and job.HasField("end_time"):
        took = max(job.end_time.ToMilliseconds() - job.create_time.ToMilliseconds(), 0) / 1000
        JOB_DURATION.record(took, {"kind": job.kind, "state": "cancelled"})


def count_settlement(reserved: int, charged: int) -> None:
    """The credit movements of a job's end, whichever way it ended (a dispatcher's end, a cancel):
    the charge kept, the rest of the reservation refunded."""
    if reserved:
        CREDITS_MOVED.add(min(charged, reserved), {"movement": "charge"})
        CREDITS_MOVED.add(max(reserved - charged, 0), {"movement": "refund"})


WEBHOOK_ATTEMPTS = Tally(
    meter,
    "render.webhook.attempts",
    description="Webhook delivery attempts, by event type and result (success, http_error, timeout, ...).",
)
WEBHOOK_ATTEMPT_DURATION = meter.create_histogram(
    "render.webhook.attempt.duration",
    unit="s",
    description="Time of one webhook delivery attempt, from its request to the receiver's answer, by result.",
)


@dataclass
class QueueSnapshot:
    """The ledger's queue as last read: queued and running jobs, tenants waiting, running jobs per
    tenant, and when it was read (0: never)."""

    queued: int = 0
    running: int = 0
    waiting_tenants: int = 0
    # Queued jobs a dispatcher could take now: each waiting tenant's queue up to its free concurrency
    # slots (a tenant at its concurrency waits for its own jobs, not for another dispatcher).
    runnable: int = 0
    running_by_tenant: dict[str, int] = field(default_factory=dict)
    read_at: float = 0.0

    def document(self) -> Mapping[str, Any]:
        """The `/queue` JSON: what KEDA's metrics-api scaler reads (`runnable`, `running`)."""
        return {
            "queued": self.queued,
            "running": self.running,
            "waiting_tenants": self.waiting_tenants,
            "runnable": self.runnable,
            "age_seconds": round(time.time() - self.read_at, 1) if self.read_at else None,
        }


# How often a sampler drops the places of batches that ended without removing them (well within a
# job's retention, after which the batch's tenant is no longer known).
PLACES_SWEEP_S = 600.0


class QueueSampler:
    """Reads the queue every `interval_s` into a snapshot the gauges and `/queue` report."""

    def __init__(self, ledger: Ledger, interval_s: float = 5.0) -> None:
        self.ledger = ledger
        self.interval_s = interval_s
        self.snapshot = QueueSnapshot()
        meter.create_observable_gauge(
            "render.queue.jobs",
            callbacks=[self._jobs],
            description="Jobs in the ledger's queue now, by state (queued, running).",
        )
        meter.create_observable_gauge(
            "render.queue.waiting_tenants",
            callbacks=[self._tenants],
            description="Tenants with jobs waiting to be taken.",
        )
        meter.create_observable_gauge(
            "render.tenant.running_jobs",
            callbacks=[self._by_tenant],
            description="Jobs running now, by tenant (each tenant's concurrency slots in use).",
        )

    async def read(self) -> QueueSnapshot:
        """Reads the queue now (one pipelined round trip, and one more while tenants wait)."""
        now_ms = await self.ledger.clock_ms()  # the leases' clock (lib/clock.lua), not this replica's

        async def query() -> Any:
            async with self.ledger.redis.pipeline(transaction=False) as pipe:
                pipe.zrange(keys.QUEUED_TENANTS, 0, -1)
                pipe.zrange(keys.PARKED_TENANTS, 0, -1)  # queued jobs too, their tenants at their concurrency
                pipe.zrangebyscore(keys.RUNNING, now_ms, "+inf")
                return await pipe.execute()

        queued_tenants, parked_tenants, running = await self.ledger._retry(query)
        by_tenant = Counter(member.decode().split("|", 1)[0] for member in running)
        waiting = sorted({t.decode() for t in [*queued_tenants, *parked_tenants]})
        queued, runnable = await self._queues(waiting) if waiting else (0, 0)
        self.snapshot = QueueSnapshot(
            queued=queued,
            running=len(running),
            waiting_tenants=len(queued_tenants) + len(parked_tenants),
            runnable=runnable,
            running_by_tenant=dict(by_tenant),
            read_at=time.time(),
        )
        return self.snapshot

    async def _queues(self, tenants: list[str]) -> tuple[int, int]:
        """The jobs in the waiting tenants' queues, and those of them that could be taken now: per
        tenant, its queue's length up to its concurrency less its running jobs (one pipelined round
        trip, a few commands a tenant). Read from the queues, not the unfinished jobs' count less
        the running: that count holds a batch's places for its rooms (lib/room_places.lua), which
        no queued job stands behind. (A job cancelled while queued stays in its queue, and in these
        counts, until a take drops it, as `runnable` always counted it.)"""

        async def sizes() -> Any:
            async with self.ledger.redis.pipeline(transaction=False) as pipe:
                for tenant in tenants:
                    pipe.llen(keys.queue(tenant))
                    pipe.hget(keys.tenant_limits(tenant), "concurrency")
                    # its slots in use, as a take counts them (take.lua: a lease that ran out holds
                    # its slot until a reaper puts its job back)
                    pipe.zcard(keys.tenant_running(tenant))
                return await pipe.execute()

        replies = await self.ledger._retry(sizes)
        queued = runnable = 0
        for i in range(len(tenants)):
            length, concurrency, in_use = replies[3 * i : 3 * i + 3]
            limit = int(concurrency) if concurrency is not None else self.ledger.defaults.concurrency
            queued += int(length)
            runnable += min(int(length), max(limit - int(in_use), 0))
        return queued, runnable

    async def run(self) -> None:
        """Samples until cancelled; a failed read keeps the last snapshot (its age tells). Every
        PLACES_SWEEP_S (and at once) it also drops the places ended batches left (a rolling
        upgrade's older gateways: Ledger.drop_ended_places)."""
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while True:
            with contextlib.suppress(Exception):
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + PLACES_SWEEP_S
                    dropped = await self.ledger.drop_ended_places()
                    if dropped:
                        log.warning("dropped %d places of batches that had ended", dropped)
                await self.read()
            await asyncio.sleep(self.interval_s)

    def _jobs(self, _options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        snapshot = self.snapshot
        return [
            metrics.Observation(snapshot.queued, {"state": "queued"}),
            metrics.Observation(snapshot.running, {"state": "running"}),
        ]

    def _tenants(self, _options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        return [metrics.Observation(self.snapshot.waiting_tenants)]

    def _by_tenant(self, _options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        return [metrics.Observation(n, {"tenant": t}) for t, n in self.snapshot.running_by_tenant.items()]
