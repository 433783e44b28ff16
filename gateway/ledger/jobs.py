"""The Redis job ledger: an atomic state machine, per-job event streams and the work stream.

Every state change runs as one Lua script, so a job has exactly one terminal state and nothing
moves it out of it, and a dispatcher whose lease was taken over cannot write any more.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp

from gateway import keys
from render.v1 import render_service_pb2 as pb


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


class LedgerError(RuntimeError):
    """A ledger operation was refused."""


class QueueFull(LedgerError):
    """The number of unfinished jobs is at its limit."""


class NotOwner(LedgerError):
    """The job ended, or another dispatcher took it over."""


# With decode_responses off every reply is bytes; redis-py types them as unions, so replies are
# annotated Any where they are unpacked.
_TERMINAL_LUA = "local function terminal(s) return s == 'SUCCEEDED' or s == 'FAILED' or s == 'CANCELLED' end\n"

# KEYS: job, events, work, active, tenant index, idempotency key
# ARGV: job_id, use_idempotency, queue_limit, created_ms, retention_ms, event, fields...
_SUBMIT = """
if ARGV[2] == '1' then
  local existing = redis.call('GET', KEYS[6])
  if existing then return {'duplicate', existing} end
end
local limit = tonumber(ARGV[3])
if limit > 0 and redis.call('SCARD', KEYS[4]) >= limit then return {'full', ''} end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('XADD', KEYS[2], '*', 'event', ARGV[6])
redis.call('XADD', KEYS[3], '*', 'job_id', ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1])
if ARGV[2] == '1' then redis.call('SET', KEYS[6], ARGV[1], 'PX', ARGV[5]) end
return {'ok', ARGV[1]}
"""

# KEYS: job, events, active, checkpoints
# ARGV: owner ('' = anyone), new_state ('' = unchanged), retention_ms, event, fields...
_TRANSITION = (
    _TERMINAL_LUA
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if terminal(state) then return 'terminal' end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 'not_owner' end
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
if ARGV[2] ~= '' then fields[#fields + 1] = 'state'; fields[#fields + 1] = ARGV[2] end
if #fields > 0 then redis.call('HSET', KEYS[1], unpack(fields)) end
redis.call('XADD', KEYS[2], '*', 'event', ARGV[4])
if ARGV[2] ~= '' and terminal(ARGV[2]) then
  redis.call('SREM', KEYS[3], KEYS[1]:sub(5))
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  redis.call('PEXPIRE', KEYS[4], ARGV[3])
  local idem = redis.call('HGET', KEYS[1], 'idempotency_key')
  if idem and idem ~= '' then redis.call('PEXPIRE', idem, ARGV[3]) end
end
return 'ok'
"""
)

# KEYS: job, events. ARGV: owner, now_ms, event.
_CLAIM = (
    _TERMINAL_LUA
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if terminal(state) then return -2 end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('HSET', KEYS[1], 'state', 'RUNNING', 'owner', ARGV[1], 'updated_ms', ARGV[2])
redis.call('HSETNX', KEYS[1], 'started_ms', ARGV[2])
redis.call('XADD', KEYS[2], '*', 'event', ARGV[3])
return attempt
"""
)

# KEYS: checkpoints, job. ARGV: owner, field, value.
_CHECKPOINT = """
if redis.call('HGET', KEYS[2], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
"""


def now_ms() -> int:
    return int(time.time() * 1000)


def timestamp(ms: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class StoredJob:
    """A job hash as read back."""

    job: pb.Job
    tenant: str
    owner: str
    request: bytes
    inputs: dict[str, str]
    fingerprint: str


class Ledger:
    """The job ledger over one Redis connection pool."""

    def __init__(self, client: aioredis.Redis, *, retention_s: float = 48 * 3600, queue_limit: int = 0) -> None:
        self.redis = client
        self.retention_ms = int(retention_s * 1000)
        self.queue_limit = queue_limit
        self._submit = client.register_script(_SUBMIT)
        self._transition = client.register_script(_TRANSITION)
        self._claim = client.register_script(_CLAIM)
        self._checkpoint = client.register_script(_CHECKPOINT)

    async def ensure_group(self) -> None:
        """Creates the work stream's consumer group if it does not exist."""
        try:
            await self.redis.xgroup_create(keys.WORK_STREAM, keys.WORK_GROUP, id="0", mkstream=True)
        except aioredis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -- submit and read ---------------------------------------------------------------------

    async def submit(self, new: NewJob) -> tuple[str, bool]:
        """Records and queues a job; returns (job id, whether an earlier job with the key was returned)."""
        created = now_ms()
        event = pb.JobEvent(
            job_id=new.job_id,
            time=timestamp(created),
            state=pb.JOB_STATE_QUEUED,
            total_steps=new.total_steps,
            message="Queued",
        )
        idem_key = keys.idempotency(new.tenant, new.idempotency_key) if new.idempotency_key else ""
        fields: dict[str, str | bytes | int] = {
            "id": new.job_id,
            "tenant": new.tenant,
            "kind": new.kind,
            "state": State.QUEUED.value,
            "request": new.request,
            "inputs": json.dumps(dict(new.inputs)),
            "fingerprint": new.fingerprint,
            "project_id": new.project_id,
            "user_id": new.user_id,
            "idempotency_key": idem_key,
            "created_ms": created,
            "updated_ms": created,
            "step": 0,
            "total_steps": new.total_steps,
            "progress": 0,
            "message": "Queued",
            "attempt": 0,
            "owner": "",
            "parent_job_id": new.parent_job_id,
        }
        flat: list[str | bytes | int] = []
        for k, v in fields.items():
            flat += [k, v]
        status, job_id = await self._submit(
            keys=[
                keys.job(new.job_id),
                keys.events(new.job_id),
                keys.WORK_STREAM,
                keys.ACTIVE_SET,
                keys.tenant_index(new.tenant),
                idem_key or "idem:none",
            ],
            args=[
                new.job_id,
                "1" if idem_key else "0",
                self.queue_limit,
                created,
                self.retention_ms,
                event.SerializeToString(),
                *flat,
            ],
        )
        if status == b"full":
            raise QueueFull(f"{self.queue_limit} jobs are waiting or running")
        return job_id.decode(), status == b"duplicate"

    async def job_for_key(self, tenant: str, idempotency_key: str) -> str | None:
        """The job an idempotency key maps to, if any."""
        value: Any = await self.redis.get(keys.idempotency(tenant, idempotency_key))
        return value.decode() if value else None

    async def get(self, job_id: str) -> StoredJob | None:
        """Reads a job; None when it does not exist (or has expired)."""
        raw: Any = await self.redis.hgetall(keys.job(job_id))
        if not raw:
            return None
        return _stored_job({k.decode(): v for k, v in raw.items()})

    async def queue_depth(self) -> int:
        """The number of jobs queued or running."""
        return int(await self.redis.scard(keys.ACTIVE_SET))

    async def list_jobs(
        self, tenant: str, page_size: int, token: tuple[int, str] | None, project_id: str = ""
    ) -> tuple[list[pb.Job], tuple[int, str] | None]:
        """A page of a tenant's jobs, newest first, and the position to continue after (None at the end).

        A position is (creation ms, job id); members with equal scores come in descending id order.
        """
        index = keys.tenant_index(tenant)
        jobs: list[pb.Job] = []
        position = token
        while True:
            rows: Any = await self.redis.zrevrangebyscore(
                index, str(position[0]) if position else "+inf", "-inf", start=0, num=page_size + 64, withscores=True
            )
            candidates = [(m.decode(), int(score)) for m, score in rows]
            if position:
                candidates = [c for c in candidates if not (c[1] == position[0] and c[0] >= position[1])]
            if not candidates:
                return jobs, None
            for job_id, score in candidates:
                if len(jobs) == page_size:
                    return jobs, position
                position = (score, job_id)
                stored = await self.get(job_id)
                if stored is None:
                    await self.redis.zrem(index, job_id)  # expired after its retention
                    continue
                if not project_id or stored.job.project_id == project_id:
                    jobs.append(stored.job)

    # -- events -------------------------------------------------------------------------------

    async def events(self, job_id: str, after: str = "0", block_ms: int = 15000) -> AsyncIterator[pb.JobEvent]:
        """Yields a job's events after a cursor, then follows the stream until a terminal event.

        The job's state is read at the start and after a quiet spell only: while events flow, the
        terminal event itself ends the stream (one round trip per wake-up, not two).
        """
        cursor = after or "0"
        stream = keys.events(job_id)
        check_state = True
        ended = False
        while True:
            if check_state:
                state: Any = await self.redis.hget(keys.job(job_id), "state")
                if state is None:  # expired after its retention
                    return
                ended = State(state.decode()).terminal
            # An ended job gets no new events: read what is left without blocking, then stop.
            reply: Any = await self.redis.xread({stream: cursor}, count=100, block=None if ended else block_ms)
            if not reply:
                if ended:
                    return
                check_state = True
                continue
            check_state = False
            for entry_id, fields in reply[0][1]:
                event = pb.JobEvent()
                event.ParseFromString(fields[b"event"])
                event.cursor = entry_id.decode()
                cursor = event.cursor
                yield event
                if event.state in _TERMINAL_PROTO:
                    return

    # -- transitions ----------------------------------------------------------------------------

    async def claim(self, job_id: str, owner: str, message: str) -> int | None:
        """Takes a job for a dispatcher; returns the attempt number, or None when it has ended or vanished."""
        stored = await self.get(job_id)
        if stored is None:
            return None
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
        attempt = int(
            await self._claim(keys=[keys.job(job_id), keys.events(job_id)], args=[owner, ms, event.SerializeToString()])
        )
        return attempt if attempt > 0 else None

    async def progress(
        self,
        job_id: str,
        owner: str,
        *,
        stage: int,
        step: int,
        total_steps: int,
        progress: float,
        message: str,
        stage_progress: float = 0.0,
        children: Sequence[pb.ChildJob] = (),
    ) -> None:
        """Records a step of a running job; raises NotOwner if the job ended or was taken over."""
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
        await self._apply(
            job_id,
            owner,
            "",
            event,
            {
                "stage": stage,
                "step": step,
                "total_steps": total_steps,
                "progress": progress,
                "message": message,
                "updated_ms": ms,
            },
        )

    async def succeed(self, job_id: str, owner: str, result: pb.JobResult, total_steps: int) -> None:
        """Ends a job with its result."""
        await self._end(job_id, owner, State.SUCCEEDED, "Done", total_steps, result=result)

    async def fail(self, job_id: str, owner: str, error: pb.JobError, total_steps: int) -> None:
        """Ends a job with an error."""
        await self._end(job_id, owner, State.FAILED, f"Failed: {error.message}", total_steps, error=error)

    async def cancel(self, job_id: str) -> bool:
        """Cancels a job that has not ended; True if this call cancelled it. Notifies its dispatcher."""
        stored = await self.get(job_id)
        if stored is None:
            return False
        try:
            await self._end(
                job_id,
                "",
                State.CANCELLED,
                "Cancelled",
                stored.job.total_steps,
                step=stored.job.step,
                progress=stored.job.progress,
            )
        except NotOwner:
            return False
        await self.redis.publish(keys.CANCEL_CHANNEL, job_id)
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
        await self._apply(job_id, owner, state.value, event, fields)

    async def _apply(
        self,
        job_id: str,
        owner: str,
        new_state: str,
        event: pb.JobEvent,
        fields: Mapping[str, str | bytes | int | float],
    ) -> None:
        flat: list[str | bytes | int | float] = []
        for k, v in fields.items():
            flat += [k, v]
        status = await self._transition(
            keys=[keys.job(job_id), keys.events(job_id), keys.ACTIVE_SET, keys.checkpoints(job_id)],
            args=[owner, new_state, self.retention_ms, event.SerializeToString(), *flat],
        )
        if status != b"ok":
            raise NotOwner(f"job {job_id}: {status.decode()}")

    # -- batches ----------------------------------------------------------------------------------

    async def add_child(self, parent_id: str, owner: str, index: int, child_id: str) -> None:
        """Records a batch's child job under its room index (with the batch's checkpoints, so it
        expires with them); refused when another dispatcher owns the batch."""
        await self.save_checkpoint(parent_id, owner, f"{_CHILD}{index}", child_id.encode())

    async def children(self, parent_id: str) -> dict[int, str]:
        """A batch's child jobs by room index."""
        raw: Any = await self.redis.hgetall(keys.checkpoints(parent_id))
        return {
            int(k[len(_CHILD) :]): v.decode()
            for k, v in ((k.decode(), v) for k, v in raw.items())
            if k.startswith(_CHILD)
        }

    async def jobs(self, job_ids: Sequence[str]) -> list[StoredJob | None]:
        """Several jobs in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(keys.job(job_id))
            rows: Any = await pipe.execute()
        return [_stored_job({k.decode(): v for k, v in row.items()}) if row else None for row in rows]

    async def kind(self, job_id: str) -> str:
        """A job's kind ("" when it does not exist)."""
        value: Any = await self.redis.hget(keys.job(job_id), "kind")
        return value.decode() if value else ""

    # -- checkpoints -----------------------------------------------------------------------------

    async def save_checkpoint(self, job_id: str, owner: str, name: str, value: bytes) -> None:
        """Stores a stage's output; refused when another dispatcher owns the job."""
        ok = await self._checkpoint(keys=[keys.checkpoints(job_id), keys.job(job_id)], args=[owner, name, value])
        if not ok:
            raise NotOwner(f"job {job_id}: not the owner")

    async def checkpoints(self, job_id: str) -> dict[str, bytes]:
        """Every stored output of a job, by name (read once when a run starts or resumes)."""
        raw: Any = await self.redis.hgetall(keys.checkpoints(job_id))
        return {k.decode(): bytes(v) for k, v in raw.items()}

    # -- shared geometry cache -----------------------------------------------------------------------

    async def cached_geometry(self, fingerprint: str) -> tuple[bytes, bytes] | None:
        """The segmentation and depth outputs stored for a fingerprint, if any."""
        values: Any = await self.redis.hmget(keys.geometry(fingerprint), ["segmentation", "depth"])
        if values[0] is None or values[1] is None:
            return None
        return bytes(values[0]), bytes(values[1])

    async def cache_geometry(self, fingerprint: str, segmentation: bytes, depth: bytes, ttl_s: float) -> None:
        """Stores a job's segmentation and depth outputs for later jobs on the same photo and hints."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.geometry(fingerprint), mapping={"segmentation": segmentation, "depth": depth})
            pipe.pexpire(keys.geometry(fingerprint), int(ttl_s * 1000))
            await pipe.execute()

    # -- work stream ------------------------------------------------------------------------------

    async def read_work(self, consumer: str, block_ms: int) -> list[tuple[str, str]]:
        """New (entry id, job id) pairs for a dispatcher."""
        reply: Any = await self.redis.xreadgroup(
            keys.WORK_GROUP, consumer, {keys.WORK_STREAM: ">"}, count=1, block=block_ms
        )
        return [(eid.decode(), f[b"job_id"].decode()) for _, entries in reply or [] for eid, f in entries]

    async def reclaim_work(self, consumer: str, min_idle_ms: int) -> list[tuple[str, str]]:
        """Entries another dispatcher took but stopped renewing (it died): now this consumer's."""
        reply: Any = await self.redis.xautoclaim(
            keys.WORK_STREAM, keys.WORK_GROUP, consumer, min_idle_ms, start_id="0-0", count=10
        )
        # Redis 6.2 answers [next, entries]; Redis 7 adds a list of deleted ids.
        entries = reply[1]
        return [(eid.decode(), f[b"job_id"].decode()) for eid, f in entries if f]

    async def renew(self, consumer: str, entry_id: str) -> None:
        """Resets an entry's idle time so it is not reclaimed while its dispatcher works on it."""
        await self.redis.xclaim(keys.WORK_STREAM, keys.WORK_GROUP, consumer, 0, [entry_id], justid=True)

    async def finish_work(self, entry_id: str) -> None:
        """Acknowledges and deletes a work entry."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(keys.WORK_STREAM, keys.WORK_GROUP, entry_id)
            pipe.xdel(keys.WORK_STREAM, entry_id)
            await pipe.execute()


_CHILD = "child:"  # checkpoint fields of a batch's child jobs: child:{room index} -> job id
_TERMINAL_PROTO = {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED}


def _stored_job(h: dict[str, bytes]) -> StoredJob:
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
    )
