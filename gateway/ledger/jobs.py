"""Jobs in the ledger: an atomic state machine (Lua), stage checkpoints, batches' children and the
shared geometry cache.

Every state change runs as one idempotent Lua script (scripts/), so a job has exactly one terminal
state and nothing moves it out of it, a dispatcher whose lease was taken over cannot write any more,
and a retry after a lost reply applies nothing twice.
"""

from __future__ import annotations

import collections
import enum
import functools
import json
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from google.protobuf.timestamp_pb2 import Timestamp

from gateway import folders
from gateway.ledger import keys
from gateway.ledger.base import LedgerBase, LedgerError, as_dict
from gateway.ledger.events import notice_payload, stamp
from gateway.ledger.pipelining import Packed, packed
from gateway.ledger.tenants import InsufficientCredits, QuotaExceeded, RateLimited
from render.v1 import render_service_pb2 as pb
from renderkit.errors import safe_message


class State(enum.StrEnum):
    """Job states as stored in Redis."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (State.SUCCEEDED, State.FAILED, State.CANCELLED)

    @property
    def proto(self) -> pb.JobState:
        return cast(pb.JobState, pb.JobState.Value(f"JOB_STATE_{self.value}"))


class QueueFull(LedgerError):
    """The number of unfinished jobs is at its limit."""


class NotOwner(LedgerError):
    """The job ended, or another dispatcher took it over."""


# With decode_responses off every reply is bytes; redis-py types them as unions, so replies are
# annotated Any where they are unpacked.


# Webhooks (queued by transition.lua): progress at most once a second per job, and at most this
# many start and progress deliveries per job (its completion always goes).
WEBHOOK_PROGRESS_INTERVAL_MS = 1000
WEBHOOK_MOST_PER_JOB = 100
# The message of a job's start (ledger.started, or its submit's when it starts the job at once).
STARTING = "Starting"


def now_ms() -> int:
    return int(time.time() * 1000)


def timestamp(ms: int) -> Timestamp:
    return Timestamp(seconds=ms // 1000, nanos=ms % 1000 * 1_000_000)  # FromMilliseconds, in C


# Not frozen: a frozen dataclass's __init__ sets each of its 17 fields through object.__setattr__,
# ~24k instructions a submit (callgrind; the servicer's whole path in process is ~480k), and a plain
# one's takes a quarter of that time. Nothing changes a NewJob once made (tests make variants with
# dataclasses.replace).
@dataclass(slots=True)
class NewJob:
    """What SubmitRender records."""

    job_id: str
    tenant: str
    kind: str
    request: bytes  # SubmitRenderRequest with inline image bytes moved to storage
    inputs: Mapping[str, str]  # field path -> storage key of an uploaded input
    fingerprint: str
    project_id: str
    user_id: str
    idempotency_key: str
    total_steps: int
    parent_job_id: str = ""
    # The webhook set on the request (a batch's room: its batch's, for its completion), which the
    # transition script queues deliveries to; events as "start,progress,completed".
    webhook_url: str = ""
    webhook_events: str = ""
    credits_base: int = 0  # the price's base (what a cancel after the start keeps)
    credits_reserved: int = 0  # what the submit reserves from the tenant's credits (0: nothing)
    # A batch's: the rooms it keeps unfinished at once, each a place it holds against the queue
    # quota and the queue limit from its submit to its end (its rooms are admitted without them).
    room_places: int = 0
    trace: str = ""  # the submit's trace context (renderkit.telemetry.current_traceparent); "": none

    def queued(self, created_ms: int) -> pb.Job:
        """The job as the submit recorded it (what SubmitRender answers without reading it back),
        created at `created_ms` as the ledger recorded it (Submitted.created_ms: Redis's clock)."""
        created = timestamp(created_ms)
        return pb.Job(
            id=self.job_id,
            state=pb.JOB_STATE_QUEUED,
            total_steps=self.total_steps,
            project_id=self.project_id,
            user_id=self.user_id,
            kind=self.kind,
            message="Queued",
            parent_job_id=self.parent_job_id,
            credits_reserved=self.credits_reserved,
            create_time=created,
            update_time=created,
        )


@dataclass(frozen=True)
class StoredJob:
    """A job hash as read back."""

    job: pb.Job
    tenant: str
    owner: str
    request: bytes
    inputs: dict[str, str]
    fingerprint: str
    credits_base: int = 0
    credits_reserved: int = 0
    trace: str = ""  # the submit's trace context, which the job's work joins


@dataclass(frozen=True)
class StartHere:
    """A dispatcher in the submitting process with a slot free: a job it may start at once."""

    owner: str
    lease_s: float


def _raise_refusal(status: bytes, value: bytes, price: int, queue_limit: int) -> None:
    """The exception for submit.lua's (or precheck.lua's) refusal; nothing for any other answer."""
    if status == b"limited":
        raise RateLimited(int(value) / 1000)
    if status == b"quota":
        raise QuotaExceeded(int(value))
    if status == b"full":
        raise QueueFull(f"{queue_limit} jobs are waiting or running")
    if status == b"credits":
        raise InsufficientCredits(balance=int(value), price=price)


def _at(event: pb.JobEvent, entry: bytes) -> pb.JobEvent:
    """The event as its stream entry reads back: its cursor and time set (the message itself)."""
    return stamp(event, entry.decode())


class Submitted(NamedTuple):
    """A submit's outcome: the job's id, whether it is an earlier job with the same idempotency key,
    the job as stored when it was started at once for StartHere's dispatcher (None: queued), the
    events this submit wrote, their cursors set (its queued event, and its start's when it started
    it; none when it recorded nothing new: a repeat, a duplicate), and the job's creation time as
    the ledger recorded it (Redis's clock, as its events' times are; a repeat's is its first
    call's; 0 for a duplicate, whose job is the key's: read it)."""

    job_id: str
    duplicate: bool
    started: StoredJob | None = None
    written: tuple[pb.JobEvent, ...] = ()
    created_ms: int = 0
    # Whether the job's notice channel was followed before the submit wrote its events (a watch
    # subscribed ahead, EventHub.follow_ahead): its notices since have all reached that subscription.
    followed: bool = False


# Job ids drawn ahead, IDS_AT_ONCE at a time from the system's random source (one read instead of
# one per submit); a deque is safe to pop from any thread, and a forked child draws its own.
IDS_AT_ONCE = 64
_ids: collections.deque[str] = collections.deque()
os.register_at_fork(after_in_child=_ids.clear)


@dataclass(frozen=True)
class Progress:
    """A step of a running job as it happened: its event, and the fields it leaves on the job's
    hash. Built when the step happens (progress_event) and recorded then or with a later transition
    of the job (Jobs.record_progress, or before its end)."""

    event: pb.JobEvent
    fields: Mapping[str, str | bytes | int | float]


def progress_event(
    job_id: str,
    *,
    stage: int,
    step: int,
    total_steps: int,
    progress: float,
    message: str,
    stage_progress: float = 0.0,
    children: Sequence[pb.ChildJob] = (),
) -> Progress:
    """A running job's step, timed now."""
    ms = now_ms()
    event = pb.JobEvent(
        job_id=job_id,
        time=timestamp(ms),
        state=pb.JOB_STATE_RUNNING,
        stage=cast(pb.Stage, stage),
        step=step,  # type: ignore[arg-type]
        total_steps=total_steps,
        progress=progress,
        stage_progress=stage_progress,
        message=message,
        children=children,
    )
    fields: dict[str, str | bytes | int | float] = {
        "stage": stage,
        "step": step,
        "total_steps": total_steps,
        "progress": progress,
        "message": message,
        "updated_ms": ms,
    }
    return Progress(event, fields)


def new_job_id() -> str:
    """A new job's id: 128 random bits as 32 hex digits (the format of a UUID's hex)."""
    try:
        return _ids.popleft()
    except IndexError:
        drawn = secrets.token_hex(16 * IDS_AT_ONCE)
        _ids.extend([drawn[i : i + 32] for i in range(32, len(drawn), 32)])
        return drawn[:32]


def _op() -> str:
    """An operation id: a retried script call carries the same one, so it applies once."""
    return secrets.token_hex(8)


# submit.lua's keys: the job's, the tenant's and the global ones (Jobs.submit names them in order).
SUBMIT_KEYS = 21
# submit.lua's arguments 15-26 for a job that is queued (no dispatcher starts it in the submit).
_NOT_STARTING = packed("", 0, 0, "", "", "", "", "", "", 0, 0, 0)


# submit.lua's keys 20-21: the parked tenants and the queue's finish.
_FINISH_KEYS = packed(keys.PARKED_TENANTS, keys.QUEUE_FINISH)


@functools.lru_cache(maxsize=1024)
def _tenant_index(tenant: str) -> Packed:
    """submit.lua's keys 3-4: the active set and the tenant's index of jobs."""
    return packed(keys.ACTIVE_SET, keys.tenant_index(tenant))


@functools.lru_cache(maxsize=16)  # a ledger's settings: one or two in a process
def _ledger_args(queue_limit: int, retention_ms: int) -> Packed:
    """submit.lua's arguments 3-5: the queue limit, an unused slot (the script reads Redis's clock)
    and the retention."""
    return packed(queue_limit, "", retention_ms)


@functools.lru_cache(maxsize=1024)
def _tenant_args(tenant: str, rate_per_s: float, burst: int, queue_quota: int) -> Packed:
    """submit.lua's arguments 8-12: the work channel, the tenant and its default rate, burst and
    queue quota (the script reads the tenant's own where set)."""
    return packed(keys.WORK_CHANNEL, tenant, repr(rate_per_s), burst, queue_quota)


@functools.lru_cache(maxsize=16)
def _weight_args(weight: float) -> Packed:
    """submit.lua's arguments 27-28: the tenant's default weight and the job key's template."""
    return packed(repr(weight), keys.JOB_TEMPLATE)


@functools.lru_cache(maxsize=1024)  # tenants submitting at a time; a tenant's run is ~300 bytes
def _tenant_keys(tenant: str) -> Packed:
    """submit.lua's keys 6-18, packed once per tenant: its queue, the queued tenants, the queue
    clock, its limits, rate, active set, credit balance, credits reserved and credit log, the
    waiting dispatchers, the running set, its running set and the webhooks due."""
    return packed(
        keys.queue(tenant),
        keys.QUEUED_TENANTS,
        keys.QUEUE_CLOCK,
        keys.tenant_limits(tenant),
        keys.tenant_rate(tenant),
        keys.tenant_active(tenant),
        keys.credits_balance(tenant),
        keys.credits_reserved(tenant),
        keys.credits_log(tenant),
        keys.WAITING_DISPATCHERS,
        keys.RUNNING,
        keys.tenant_running(tenant),
        keys.WEBHOOKS_DUE,
    )


# The most of a tenant's jobs one page of a filtered list looks at (see Jobs.list_jobs).
MAX_SCANNED_PER_PAGE = 1000


class Jobs(LedgerBase):
    """Submitting, reading and moving jobs."""

    # -- submit and read ---------------------------------------------------------------------

    async def submit(self, new: NewJob, *, rate_limited: bool = True, start_here: StartHere | None = None) -> Submitted:
        """Records and queues a job within the tenant's rate and quota and the queue limit. Raises
        RateLimited, QuotaExceeded or QueueFull. rate_limited False: the job does not count against
        the rate (a batch's rooms: the batch itself did). start_here: a dispatcher with a slot free
        for the job, which gets it at once (RUNNING, attempt 1, in the slot of a lease) instead of
        its queue when nothing is queued and the tenant is under its concurrency (submit.lua). The
        job's creation time is Redis's clock, the script's TIME (Submitted.created_ms), never this
        process's: its events' times are their stream entries' (Redis's), and a replica whose clock
        was off recorded a job created minutes from its QUEUED event, and ordered a tenant's jobs
        (ListJobs) by whichever replica took each submit."""
        # The events' own times are their stream entries' once read (events.stamp): this process's
        # clock is only what the bytes carry.
        written_at = self.wall_ms()
        event = pb.JobEvent(
            job_id=new.job_id,
            time=timestamp(written_at),
            state=pb.JOB_STATE_QUEUED,
            total_steps=new.total_steps,
            message="Queued",
        )
        idem_key = keys.idempotency(new.tenant, new.idempotency_key) if new.idempotency_key else ""
        # What the request fixes; the script writes the id, the tenant, the creation time (Redis's
        # clock) and the initial state (QUEUED, step 0, no owner). Empty optional fields are
        # left out: a missing field reads as empty.
        flat: list[str | bytes | int] = [
            "kind", new.kind,
            "request", new.request,
            "fingerprint", new.fingerprint,
            "total_steps", new.total_steps,
        ]  # fmt: skip
        optional: tuple[tuple[str, str | int], ...] = (
            ("inputs", json.dumps(dict(new.inputs)) if new.inputs else ""),
            ("webhook_url", new.webhook_url),
            ("webhook_events", new.webhook_events),
            ("project_id", new.project_id),
            ("user_id", new.user_id),
            ("idempotency_key", idem_key),
            ("parent_job_id", new.parent_job_id),
            ("credits_base", new.credits_base),
            ("credits_reserved", new.credits_reserved),
            ("room_places", new.room_places),
            ("trace", new.trace),
        )
        for name, value in optional:
            if value:
                flat += [name, value]
        defaults = self.defaults
        start = _NOT_STARTING if start_here is None else self._start_args(new, start_here, written_at)
        # Its keys and arguments in the order submit.lua takes them, in runs: those that are the
        # same from one submit to the next (the tenant's, this ledger's settings', a queued job's
        # empty start) are packed once (pipelining.Packed; each argument packed per call costs
        # ~1,400 instructions, hiredis's printf of its length).
        reply: Any = await self._script_runs(
            "submit",
            SUBMIT_KEYS,
            (keys.job(new.job_id), keys.events(new.job_id)),
            _tenant_index(new.tenant),
            (idem_key or "idem:none",),
            _tenant_keys(new.tenant),
            (keys.job_webhooks(new.job_id),),
            _FINISH_KEYS,
            # the arguments
            (new.job_id, "1" if idem_key else "0"),
            _ledger_args(self.queue_limit, self.retention_ms),
            (event.SerializeToString(), keys.job_channel(new.job_id)),
            _tenant_args(new.tenant, defaults.rate_per_s, defaults.burst, defaults.queue_quota),
            ("room" if new.parent_job_id else "1" if rate_limited else "0", new.credits_reserved),
            start,
            _weight_args(defaults.weight),
            tuple(flat),
        )
        status, value = reply[0], reply[1]
        _raise_refusal(status, value, new.credits_reserved, self.queue_limit)
        if status == b"started":
            fields = {k.decode(): v for k, v in as_dict(reply[2]).items()}
            written: tuple[pb.JobEvent, ...] = ()
            followed = False
            if len(reply) == 6:
                assert not isinstance(start, Packed) and isinstance(start[3], bytes)
                written = (_at(event, reply[3]), _at(pb.JobEvent.FromString(start[3]), reply[4]))
                followed = int(reply[5]) > 0
            stored = stored_job(fields)
            return Submitted(value.decode(), False, stored, written, stored.job.create_time.ToMilliseconds(), followed)
        if status == b"ok":
            entry, created = reply[2], int(reply[3] or 0)
            return Submitted(value.decode(), False, written=(_at(event, entry),) if entry else (), created_ms=created)
        return Submitted(value.decode(), status == b"duplicate")

    async def precheck(self, tenant: str, price: int) -> None:
        """Raises what submit would raise now for the tenant's rate, quota, the queue limit and
        its credits (RateLimited, QuotaExceeded, QueueFull, InsufficientCredits): a submit with
        inline images asks before it writes them to storage. Admitted, the submit is counted
        against the rate here: its submit() is then called with rate_limited=False."""
        defaults = self.defaults
        reply: Any = await self._script(
            "precheck",
            keys=[
                keys.tenant_limits(tenant),
                keys.tenant_rate(tenant),
                keys.tenant_active(tenant),
                keys.ACTIVE_SET,
                keys.credits_balance(tenant),
                keys.counted(tenant, _op()),  # a retry carries the same mark: counted once
            ],
            args=[repr(defaults.rate_per_s), defaults.burst, defaults.queue_quota, self.queue_limit, price],
        )
        _raise_refusal(reply[0], reply[1], price, self.queue_limit)

    def _start_args(self, new: NewJob, start_here: StartHere, written_at: int) -> tuple[str | bytes | int, ...]:
        """submit.lua's arguments 15-26: the dispatcher that may start the job, its lease, and the
        start's event and webhooks as the dispatcher's start would write them (ledger.started);
        _NOT_STARTING without one (the job is queued)."""
        event = pb.JobEvent(
            job_id=new.job_id,
            time=timestamp(written_at),  # its entry's once read (events.stamp)
            state=pb.JOB_STATE_RUNNING,
            message=STARTING,
            total_steps=new.total_steps,
        ).SerializeToString()
        return (
            start_here.owner,
            int(start_here.lease_s * 1000),
            self.defaults.concurrency,
            event,
            notice_payload(event),
            *self._webhook_args(),
        )

    def _webhook_args(self) -> list[str | int]:
        """What lib/webhooks.lua's queue_webhooks needs besides the job and its event, in the order
        transition.lua and submit.lua take it (their arguments 17-23 and 20-26)."""
        return [
            keys.WEBHOOK_ENDPOINTS_TEMPLATE,
            keys.WEBHOOK_DELIVERY_TEMPLATE,
            keys.JOB_WEBHOOKS_TEMPLATE,
            keys.WEBHOOKS_CHANNEL,
            self.webhook_ttl_ms,
            WEBHOOK_PROGRESS_INTERVAL_MS,
            WEBHOOK_MOST_PER_JOB,
        ]

    async def job_for_key(self, tenant: str, idempotency_key: str) -> str | None:
        """The job an idempotency key maps to, if any."""
        value: Any = await self._retry(lambda: self.redis.get(keys.idempotency(tenant, idempotency_key)))
        return value.decode() if value else None

    async def get(self, job_id: str) -> StoredJob | None:
        """Reads a job; None when it does not exist (or has expired)."""
        raw = as_dict(await self._command("HGETALL", keys.job(job_id)))
        if not raw:
            return None
        return stored_job({k.decode(): v for k, v in raw.items()})

    async def state(self, job_id: str) -> State | None:
        """A job's state alone; None when it does not exist."""
        value = await self._command("HGET", keys.job(job_id), "state")
        return State(value.decode()) if value else None

    async def trace_of(self, job_id: str) -> str:
        """The trace context stored with a job at its submit ("" when none, or the job is gone)."""
        value: Any = await self._retry(lambda: self.redis.hget(keys.job(job_id), "trace"))
        return value.decode() if value else ""

    async def queue_depth(self) -> int:
        """The number of jobs queued or running (a batch with its rooms' places)."""
        return int(await self._retry(lambda: self.redis.scard(keys.ACTIVE_SET)))

    async def drop_ended_places(self) -> int:
        """Removes the places of batches that have ended from the unfinished jobs' sets
        (lib/room_places.lua), and returns how many. A batch's end removes its places itself; an
        older gateway's (a rolling upgrade) did not, and they held its tenant's quota and the queue
        limit for good. Read member by member (SSCAN), judged from each batch's state: a batch
        being submitted or running is not touched. A batch whose hash has expired (a retention
        after its end) leaves its places in its tenant's set: the sweep is to run well within that."""
        places: dict[str, list[bytes]] = {}

        async def scan() -> None:
            places.clear()
            async for member in self.redis.sscan_iter(keys.ACTIVE_SET, match="*#*", count=1000):
                places.setdefault(member.split(b"#", 1)[0].decode(), []).append(member)

        await self._retry(scan)
        if not places:
            return 0
        batches = list(places)

        async def states() -> Any:
            async with self.redis.pipeline(transaction=False) as pipe:
                for batch in batches:
                    pipe.hmget(keys.job(batch), "state", "tenant")
                return await pipe.execute()

        ended = [
            (batch, tenant)
            for batch, (state, tenant) in zip(batches, await self._retry(states), strict=True)
            if state is None or State(state.decode()).terminal
        ]
        if not ended:
            return 0

        async def drop() -> None:
            async with self.redis.pipeline(transaction=False) as pipe:
                for batch, tenant in ended:
                    pipe.srem(keys.ACTIVE_SET, *places[batch])
                    if tenant is not None:
                        pipe.srem(keys.tenant_active(tenant.decode()), *places[batch])
                await pipe.execute()

        await self._retry(drop)
        return sum(len(places[batch]) for batch, _ in ended)

    async def list_jobs(
        self,
        tenant: str,
        page_size: int,
        token: tuple[int, str] | None,
        project_id: str = "",
        max_scanned: int = MAX_SCANNED_PER_PAGE,
    ) -> tuple[list[pb.Job], tuple[int, str] | None]:
        """A page of a tenant's jobs, newest first, and the position to continue after (None at the end).

        A position is (creation ms, job id); members with equal scores come in descending id order.
        With a project filter, a page looks at most `max_scanned` of the tenant's jobs: a filter
        that matches few of many answers a short (even empty) page and the position to go on from,
        rather than read every job the tenant has in one call.
        """
        index = keys.tenant_index(tenant)
        jobs: list[pb.Job] = []
        position = token
        scanned = 0
        batch = page_size + 64
        skip = 0  # rows at the position's score known to come at or before it
        while True:
            if scanned >= max_scanned:
                return jobs, position
            top = str(position[0]) if position else "+inf"
            rows: Any = await self._retry(
                lambda top=top, skip=skip: self.redis.zrevrangebyscore(  # type: ignore[misc]
                    index, top, "-inf", start=skip, num=batch, withscores=True
                )
            )
            candidates = [(m.decode(), int(score)) for m, score in rows]
            if position:
                candidates = [c for c in candidates if not (c[1] == position[0] and c[0] >= position[1])]
            if not candidates:
                if len(rows) < batch:
                    return jobs, None
                # A whole batch of jobs created in the position's millisecond, every one at or
                # before it: the rest follow them.
                skip += batch
                continue
            skip = 0
            candidates = candidates[: max_scanned - scanned]
            stored_jobs = await self.jobs([job_id for job_id, _ in candidates])
            for (job_id, score), stored in zip(candidates, stored_jobs, strict=True):
                if len(jobs) == page_size:
                    return jobs, position
                position = (score, job_id)
                scanned += 1
                if stored is None:
                    await self._retry(lambda job_id=job_id: self.redis.zrem(index, job_id))  # type: ignore[misc]
                    continue
                if not project_id or stored.job.project_id == project_id:
                    jobs.append(stored.job)

    async def jobs(self, job_ids: Sequence[str]) -> list[StoredJob | None]:
        """Several jobs in one round trip."""

        async def read() -> Any:
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.hgetall(keys.job(job_id))
                return await pipe.execute()

        rows: Any = await self._retry(read) if job_ids else []
        return [stored_job({k.decode(): v for k, v in row.items()}) if row else None for row in rows]

    async def states(self, job_ids: Sequence[str]) -> list[State | None]:
        """Several jobs' states (None: no such job) in one round trip."""

        async def read() -> Any:
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.hget(keys.job(job_id), "state")
                return await pipe.execute()

        values: Any = await self._retry(read) if job_ids else []
        return [State(value.decode()) if value else None for value in values]

    async def kind(self, job_id: str) -> str:
        """A job's kind ("" when it does not exist)."""
        value: Any = await self._retry(lambda: self.redis.hget(keys.job(job_id), "kind"))
        return value.decode() if value else ""

    # -- transitions ----------------------------------------------------------------------------

    async def started(
        self, job_id: str, owner: str, message: str = STARTING, *, stored: StoredJob | None = None
    ) -> StoredJob:
        """The event of a dispatcher starting (or resuming) a job it took; the job as read before
        (or as its take read it: stored)."""
        if stored is None:
            stored = await self.get(job_id)
        if stored is None:
            raise NotOwner(f"job {job_id}: missing")
        ms = now_ms()
        event = pb.JobEvent(
            job_id=job_id,
            time=timestamp(ms),
            state=pb.JOB_STATE_RUNNING,
            message=message,
            total_steps=stored.job.total_steps,
            step=stored.job.step,
            progress=stored.job.progress,
        )
        await self._apply(job_id, owner, "", event, {"message": message, "updated_ms": ms}, webhook="start")
        return stored

    async def record_progress(self, job_id: str, owner: str, *steps: Progress) -> None:
        """Records steps of a running job (progress_event), in order, in one transition (one round
        trip); raises NotOwner if the job ended or was taken over."""
        *before, last = steps
        await self._apply(job_id, owner, "", last.event, last.fields, webhook="progress", before=before)

    async def succeed(
        self,
        job_id: str,
        owner: str,
        result: pb.JobResult,
        total_steps: int,
        charge: int = 0,
        before: Sequence[Progress] = (),
        release: Sequence[str] = (),
    ) -> None:
        """Ends a job with its result, charging it `charge` credits (the rest of its reservation is
        refunded), after the steps `before` not yet recorded (in the same transition), noting the
        storage folders `release` for a reaper (its dispatcher deletes them and calls released)."""
        await self._end(
            job_id,
            owner,
            State.SUCCEEDED,
            "Done",
            total_steps,
            result=result,
            charge=str(charge),
            before=before,
            release=release,
        )

    async def fail(
        self,
        job_id: str,
        owner: str,
        error: pb.JobError,
        total_steps: int,
        charge: int = 0,
        before: Sequence[Progress] = (),
        release: Sequence[str] = (),
        result: pb.JobResult | None = None,
    ) -> None:
        """Ends a job with an error (its message made safe to show, whatever produced it), charging
        it `charge` credits, after the steps `before` not yet recorded (in the same transition),
        noting the storage folders `release` as succeed does. `result`: what a failed job still
        reports (a batch none of whose rooms rendered: each room's state and error)."""
        safe = pb.JobError(code=error.code, message=safe_message(error.message))
        await self._end(
            job_id,
            owner,
            State.FAILED,
            f"Failed: {safe.message}",
            total_steps,
            result=result,
            error=safe,
            charge=str(charge),
            before=before,
            release=release,
        )

    async def cancel(self, job_id: str, charge: int | None = None, result: pb.JobResult | None = None) -> bool:
        """Cancels a job that has not ended; True if this call cancelled it. Notifies its dispatcher.
        It is charged `charge` credits, or by default by its state: nothing while queued, its base
        once started. `result`: what the cancelled job still reports (a batch: its rooms). Its
        storage folders are noted for a reaper in the same step: a queued job has no dispatcher to
        delete its uploads, a running one's may be dead (and a cancelled job keeps no outputs)."""
        stored = await self.get(job_id)
        if stored is None:
            return False
        # All of them, whatever the state read here: a dispatcher may take the job between this
        # read and the cancel's step (a folder never written costs the reaper one listing).
        release = [folders.uploads(job_id)] if folders.has_uploads(job_id, stored.inputs) else []
        release += [folders.work(job_id), folders.outputs(stored.tenant, stored.job.project_id, job_id)]
        try:
            await self._end(
                job_id,
                "",
                State.CANCELLED,
                "Cancelled",
                stored.job.total_steps,
                step=stored.job.step,
                progress=stored.job.progress,
                charge="cancel" if charge is None else str(charge),
                result=result,
                release=release,
            )
        except NotOwner:
            return False
        await self._retry(lambda: self.redis.publish(keys.CANCEL_CHANNEL, job_id))
        return True

    async def _end(
        self,
        job_id: str,
        owner: str,
        state: State,
        message: str,
        total_steps: int,
        *,
        result: pb.JobResult | None = None,
        error: pb.JobError | None = None,
        step: int | None = None,
        progress: float | None = None,
        charge: str = "0",
        before: Sequence[Progress] = (),
        release: Sequence[str] = (),
    ) -> None:
        ms = now_ms()
        done = state is State.SUCCEEDED
        event = pb.JobEvent(
            job_id=job_id,
            time=timestamp(ms),
            state=state.proto,
            message=message,  # type: ignore[arg-type]
            total_steps=total_steps,
            step=total_steps if done else (step or 0),
            progress=1.0 if done else (progress or 0.0),
            result=result,
            error=error,
        )
        fields: dict[str, str | bytes | int | float] = {
            "ended_ms": ms,
            "updated_ms": ms,
            "message": message,
            "stage": 0,
            "owner": owner,
        }
        if done:
            fields.update(progress=1.0, step=total_steps)
        if result is not None:
            fields["result"] = result.SerializeToString()
        if error is not None:
            fields["error"] = error.SerializeToString()
        await self._apply(job_id, owner, state.value, event, fields, charge, before=before, release=release)

    def transition_call(
        self,
        job_id: str,
        owner: str,
        new_state: str,
        event: pb.JobEvent,
        fields: Mapping[str, str | bytes | int | float],
        op: str,
        charge: str = "0",
        webhook: str = "",
        before: Sequence[Progress] = (),
        release: Sequence[str] = (),
    ) -> tuple[list[str], list[str | bytes | int | float]]:
        """transition.lua's keys and arguments for one operation `op` (a retry repeats it): `event`,
        after the progress events `before` (each its own stream entry, webhooks and notice, in
        order; the job's hash ends with their fields, then `fields`). An end notes the storage
        folders `release` for a reaper (releases_due), in the same step."""
        merged: dict[str, str | bytes | int | float] = {}
        earlier: list[str | bytes | int | float] = [len(before)]
        for step in before:
            merged.update(step.fields)
            serialized_step = step.event.SerializeToString()
            earlier += [serialized_step, notice_payload(serialized_step)]
        merged.update(fields)
        flat: list[str | bytes | int | float] = []
        for k, v in merged.items():
            flat += [k, v]
        call_keys = [
            keys.job(job_id),
            keys.events(job_id),
            keys.ACTIVE_SET,
            keys.checkpoints(job_id),
            keys.RUNNING,
            keys.WAITING_DISPATCHERS,
            keys.WEBHOOKS_DUE,
            keys.job_webhooks(job_id),
            keys.QUEUED_TENANTS,
            keys.PARKED_TENANTS,
            keys.RELEASES_DUE,
            keys.job_cancel_asked(job_id),
        ]
        serialized = event.SerializeToString()
        args: list[str | bytes | int | float] = [
            job_id,
            owner,
            new_state,
            self.retention_ms,
            serialized,
            op,
            keys.job_channel(job_id),
            keys.WORK_CHANNEL,
            keys.TENANT_RUNNING_TEMPLATE,
            keys.TENANT_ACTIVE_TEMPLATE,
            charge,
            keys.CREDITS_BALANCE_TEMPLATE,
            keys.CREDITS_RESERVED_TEMPLATE,
            keys.CREDITS_LOG_TEMPLATE,
            webhook,
            event.time.ToMilliseconds(),
            *self._webhook_args(),
            notice_payload(serialized),
            json.dumps(list(release)),
            *earlier,
            *flat,
        ]
        return call_keys, args

    async def _apply(
        self,
        job_id: str,
        owner: str,
        new_state: str,
        event: pb.JobEvent,
        fields: Mapping[str, str | bytes | int | float],
        charge: str = "0",
        webhook: str = "",
        before: Sequence[Progress] = (),
        release: Sequence[str] = (),
    ) -> None:
        """One transition.lua call; `webhook` is the event's webhook category ("start", "progress";
        an end is always "completed"), whose deliveries the script queues; `before`, progress
        events written ahead of it in the same call; `release`, the folders an end leaves to delete."""
        call_keys, args = self.transition_call(
            job_id, owner, new_state, event, fields, _op(), charge, webhook, before=before, release=release
        )
        status = await self._script("transition", keys=call_keys, args=args)
        if status != b"ok":
            raise NotOwner(f"job {job_id}: {status.decode()}")

    # -- batches ----------------------------------------------------------------------------------

    async def add_child(self, parent_id: str, owner: str, index: int, child_id: str) -> None:
        """Records a batch's child job under its room index (with the batch's checkpoints, so it
        expires with them); refused when another dispatcher owns the batch."""
        await self.save_checkpoint(parent_id, owner, f"{_CHILD}{index}", child_id.encode())

    async def children(self, parent_id: str) -> dict[int, str]:
        """A batch's child jobs by room index."""
        raw = as_dict(await self._command("HGETALL", keys.checkpoints(parent_id)))
        return {
            int(k[len(_CHILD) :]): v.decode()
            for k, v in ((k.decode(), v) for k, v in raw.items())
            if k.startswith(_CHILD)
        }

    async def cancelling(self, job_id: str, hold_s: float) -> None:
        """Notes for `hold_s` that a cancel of the batch is under way (it cancels the rooms first),
        and for a day that one was asked (cancel_asked: the batch's run finishes a cancel whose
        gateway died)."""
        await self._command("SET", keys.job_cancel_asked(job_id), b"1", "EX", 86400)
        await self._command("SET", keys.job_cancelling(job_id), b"1", "PX", max(1, int(hold_s * 1000)))

    async def cancel_asked(self, job_id: str) -> bool:
        """Whether a CancelJob of the batch began (cancelling), its hold passed or not."""
        return bool(await self._command("EXISTS", keys.job_cancel_asked(job_id)))

    async def is_cancelling(self, job_id: str) -> bool:
        """Whether a cancel of the batch noted itself (cancelling) less than its hold ago."""
        return bool(await self._command("EXISTS", keys.job_cancelling(job_id)))

    # -- checkpoints -----------------------------------------------------------------------------

    async def save_checkpoint(self, job_id: str, owner: str, name: str, value: bytes) -> None:
        """Stores a stage's output; refused when another dispatcher owns the job or it ended."""
        ok = await self._script(
            "checkpoint", keys=[keys.checkpoints(job_id), keys.job(job_id)], args=[owner, name, value]
        )
        if not ok:
            raise NotOwner(f"job {job_id}: not the owner, or ended")

    async def defer_release(self, prefix: str) -> None:
        """Notes an ended job's storage folder whose delete failed, for releases_due."""
        await self._retry(lambda: self.redis.sadd(keys.RELEASES_DUE, prefix))

    async def releases_due(self, count: int) -> list[str]:
        """Up to count folders whose delete is still due (any of them: every reaper deletes some)."""
        found: Any = await self._retry(lambda: self.redis.srandmember(keys.RELEASES_DUE, count))
        return [prefix.decode() for prefix in found or []]

    async def released(self, *prefixes: str) -> None:
        """Due folders whose delete went through."""
        await self._retry(lambda: self.redis.srem(keys.RELEASES_DUE, *prefixes))

    async def checkpoints(self, job_id: str) -> dict[str, bytes]:
        """Every stored output of a job, by name (read once when a run starts or resumes)."""
        raw = as_dict(await self._command("HGETALL", keys.checkpoints(job_id)))
        return {k.decode(): bytes(v) for k, v in raw.items()}

    # -- shared geometry cache -----------------------------------------------------------------------

    async def cached_geometry(self, fingerprint: str) -> tuple[bytes, bytes] | None:
        """The segmentation and depth outputs stored for a fingerprint, if any."""
        values: Any = await self._retry(lambda: self.redis.hmget(keys.geometry(fingerprint), ["segmentation", "depth"]))
        if values[0] is None or values[1] is None:
            return None
        return bytes(values[0]), bytes(values[1])

    async def cache_geometry(self, fingerprint: str, segmentation: bytes, depth: bytes, ttl_s: float) -> None:
        """Stores a job's segmentation and depth outputs for later jobs on the same photo and hints."""

        async def write() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(keys.geometry(fingerprint), mapping={"segmentation": segmentation, "depth": depth})
                pipe.pexpire(keys.geometry(fingerprint), int(ttl_s * 1000))
                await pipe.execute()

        await self._retry(write)


_CHILD = "child:"  # checkpoint fields of a batch's child jobs: child:{room index} -> job id
TERMINAL_PROTO = {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED}


def stored_job(h: dict[str, bytes]) -> StoredJob:
    def s(name: str) -> str:
        return h.get(name, b"").decode()

    def i(name: str) -> int:
        return int(float(s(name) or 0))

    job = pb.Job(
        id=s("id"),
        state=State(s("state")).proto,
        stage=cast(pb.Stage, i("stage")),
        step=i("step"),
        total_steps=i("total_steps"),  # type: ignore[arg-type]
        progress=float(s("progress") or 0),
        project_id=s("project_id"),
        user_id=s("user_id"),
        kind=s("kind"),
        message=s("message"),
        attempt=i("attempt"),
        parent_job_id=s("parent_job_id"),
        credits_reserved=i("credits_reserved"),
        credits_charged=i("credits_charged"),
    )
    for field, name in (
        ("created_ms", "create_time"),
        ("updated_ms", "update_time"),
        ("started_ms", "start_time"),
        ("ended_ms", "end_time"),
    ):
        if s(field):
            getattr(job, name).CopyFrom(timestamp(i(field)))
    if h.get("result"):
        job.result.ParseFromString(h["result"])
    if h.get("error"):
        job.error.ParseFromString(h["error"])
    return StoredJob(
        job=job,
        tenant=s("tenant"),
        owner=s("owner"),
        request=h.get("request", b""),
        inputs=json.loads(s("inputs") or "{}"),
        fingerprint=s("fingerprint"),
        credits_base=i("credits_base"),
        credits_reserved=i("credits_reserved"),
        trace=s("trace"),
    )
