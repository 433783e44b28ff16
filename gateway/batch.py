"""Room batches (seed 000): every room of a floor plan as a child job, at most N rendering at once.

The batch job submits its rooms as ordinary `room_render` jobs (any dispatcher runs them), records
each child under its room index, and reports `done/total` with every child's state in its events.
A batch resumed by another dispatcher finds its children in the ledger; child submissions carry an
idempotency key derived from the batch and room, so a room is never submitted twice. Cancelling the
batch cancels the children that have not ended.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.context import JobContext, JobFailure
from gateway.ledger import Ledger, LimitError, NewJob, NotOwner, QueueFull, StoredJob, progress_event
from gateway.ledger.jobs import new_job_id
from gateway.metrics import count_cancel
from gateway.pricing import CALLERS_FAULT, Price, PriceTable, charge_for_cancelled_batch
from gateway.requests import SURFACES
from gateway.webhooks import events as webhook_events
from render.v1 import render_service_pb2 as pb

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 3
MAX_CONCURRENCY = 8
MAX_ROOMS = 50
POLL_S = 0.2
# A CancelJob cancels a batch's rooms, then the batch (whose charge counts the rooms that ended):
# meanwhile the batch's run, finding every room ended, waits this long for that cancel before it
# finishes the cancel itself (the cancelling gateway died: Jobs.cancel_asked).
CANCEL_HOLD_S = 10.0
_TERMINAL = {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED}
_STATE_WORDS = {
    pb.JOB_STATE_QUEUED: "queued",
    pb.JOB_STATE_RUNNING: "rendering",
    pb.JOB_STATE_SUCCEEDED: "done",
    pb.JOB_STATE_FAILED: "failed",
    pb.JOB_STATE_CANCELLED: "cancelled",
}


def child_request(ctx: JobContext, index: int) -> tuple[pb.SubmitRenderRequest, dict[str, str]]:
    """A room of the batch as its own room_render request, with the batch's uploaded swatches."""
    batch = ctx.request.room_batch
    room = pb.RoomRender()
    room.CopyFrom(batch.rooms[index])
    if not room.HasField("options"):
        room.options.CopyFrom(batch.options)
    request = pb.SubmitRenderRequest(
        project_id=ctx.request.project_id,
        user_id=ctx.request.user_id,
        output=ctx.request.output,
        room_render=room,
    )
    inputs = {}
    for surface in SURFACES:
        source = f"room_batch.rooms[{index}].materials.{surface}.swatch"
        if source in ctx.inputs:
            inputs[f"room_render.materials.{surface}.swatch"] = ctx.inputs[source]
    return request, inputs


async def submit_child(ctx: JobContext, index: int) -> str | None:
    """Submits one room; None when the queue or the tenant's quota is full (the batch tries again later)."""
    request, inputs = child_request(ctx, index)
    # A room's completion goes to its batch's webhook (as batch.room.completed); its start and
    # progress do not.
    hook = ctx.request.webhook
    rooms_hooked = bool(hook.url) and "completed" in webhook_events.categories(hook.events)
    new = NewJob(
        job_id=new_job_id(),
        tenant=ctx.tenant,
        kind="room_render",
        request=request.SerializeToString(),
        inputs=inputs,
        fingerprint=f"batch:{ctx.job_id}:{index}",
        project_id=request.project_id,
        user_id=request.user_id,
        idempotency_key=child_key(ctx.job_id, index),  # a tenant cannot claim it first
        webhook_url=hook.url if rooms_hooked else "",
        webhook_events="completed" if rooms_hooked else "",
        total_steps=3,
        parent_job_id=ctx.job_id,
    )
    try:
        # The batch counted against the tenant's rate when it was submitted; its rooms do not.
        child_id = (await ctx.ledger.submit(new, rate_limited=False)).job_id
    except (QueueFull, LimitError):
        return None
    try:
        await ctx.ledger.add_child(ctx.job_id, ctx.owner, index, child_id)
    except NotOwner:
        # The batch was cancelled since: a room nobody records would render anyway, unbilled, and
        # no cancel of the batch would reach it. (Taken over instead, its new run records this
        # very room: the idempotency key gives it the same job.)
        state = await ctx.ledger.state(ctx.job_id)
        if state is None or state.terminal:
            await ctx.ledger.cancel(child_id)
        raise
    return child_id


def child_view(index: int, room: pb.RoomRender, job_id: str, stored: StoredJob | None) -> pb.ChildJob:
    child = pb.ChildJob(index=index, room_id=room.room.id, room_name=room.room.name, job_id=job_id)
    if stored is not None:
        child.state = stored.job.state
        if stored.job.HasField("error"):
            child.error.CopyFrom(stored.job.error)
        child.outputs.extend(stored.job.result.outputs)
    elif job_id:
        child.state = pb.JOB_STATE_FAILED
        child.error.CopyFrom(pb.JobError(code=pb.ERROR_CODE_PIPELINE_ERROR, message="the room's job expired"))
    return child


def child_key(batch_id: str, index: int) -> str:
    """The idempotency key of a batch's room ("/" is in no key a caller may send: validation._ID)."""
    return f"batch/{batch_id}/{index}"


async def submitted_rooms(ledger: Ledger, tenant: str, batch_id: str, rooms: int) -> dict[int, str]:
    """The ids of a batch's rooms submitted so far, by index: those recorded, and a room submitted
    but not yet recorded (its dispatcher died between the two, or the cancel came between them),
    found by its idempotency key."""
    recorded = await ledger.children(batch_id)
    found = {}
    for index in range(rooms):
        child_id = recorded.get(index) or await ledger.job_for_key(tenant, child_key(batch_id, index))
        if child_id:
            found[index] = child_id
    return found


async def submitted_children(ledger: Ledger, tenant: str, batch_id: str, rooms: int) -> list[str]:
    """The ids of a batch's rooms submitted so far (submitted_rooms)."""
    return list((await submitted_rooms(ledger, tenant, batch_id, rooms)).values())


async def cancelled_report(
    ledger: Ledger, tenant: str, batch_id: str, rooms: list[pb.RoomRender]
) -> tuple[pb.BatchReport, list[pb.Job]]:
    """What a batch being cancelled reports: every room's state, error and outputs as they stand (a
    room never submitted has no job and no state), what the rendered rooms' providers cost; and
    the rooms' jobs."""
    ids = await submitted_rooms(ledger, tenant, batch_id, len(rooms))
    found = dict(zip(ids, await ledger.jobs(list(ids.values())), strict=True))
    children = [child_view(i, rooms[i], ids.get(i, ""), found.get(i)) for i in range(len(rooms))]
    jobs = [job for job in found.values() if job is not None]
    return batch_report(children, jobs), [job.job for job in jobs]


async def cancelled_outcome(
    ledger: Ledger, prices: PriceTable | None, tenant: str, stored: StoredJob
) -> tuple[int | None, pb.JobResult]:
    """What a batch cancelled now reports (its rooms as they stand: the cancel has cancelled those
    that had not ended) and costs: the rooms rendered so far (None: the usual rule)."""
    request = pb.SubmitRenderRequest.FromString(stored.request)
    report, rooms = await cancelled_report(ledger, tenant, stored.job.id, list(request.room_batch.rooms))
    if prices is None or not stored.credits_reserved:
        return None, pb.JobResult(batch=report)
    price = Price(stored.credits_base, stored.credits_reserved - stored.credits_base)
    return charge_for_cancelled_batch(stored.job.total_steps, rooms, price, prices), pb.JobResult(batch=report)


async def finish_cancel(ctx: JobContext) -> None:
    """Finishes a CancelJob whose gateway died after it began (its hold passed, the batch still
    runs): cancels the rooms, then the batch, as CancelJob does, and stops the run (NotOwner)."""
    await cancel_children(ctx)
    stored = await ctx.ledger.get(ctx.job_id)
    if stored is not None and stored.job.state in (pb.JOB_STATE_RUNNING, pb.JOB_STATE_QUEUED):
        charge, result = await cancelled_outcome(ctx.ledger, ctx.prices, ctx.tenant, stored)

        def counted(done: asyncio.Future[bool]) -> None:
            if done.cancelled() or done.exception() is not None or not done.result():
                return
            log.info("job %s: its batch's cancel, begun by a gateway that stopped, finished by its run", ctx.job_id)
            ended = pb.Job()
            ended.CopyFrom(stored.job)
            ended.credits_charged = charge or 0
            ended.end_time.GetCurrentTime()
            count_cancel(ended, stored.credits_reserved if charge is not None else 0)

        # Counted when it is done, whatever becomes of this run: the cancel's notice cancels it,
        # often before the cancel's own answer has come back.
        cancelling = asyncio.ensure_future(ctx.ledger.cancel(ctx.job_id, charge, result))
        cancelling.add_done_callback(counted)
        await asyncio.shield(cancelling)
    raise NotOwner(f"batch {ctx.job_id} cancelled")


async def cancel_children(ctx: JobContext) -> None:
    """Cancels every child of the batch that has not ended (submitted_children)."""
    for child_id in await submitted_children(ctx.ledger, ctx.tenant, ctx.job_id, len(ctx.request.room_batch.rooms)):
        await ctx.ledger.cancel(child_id)


def concurrency(batch: pb.RoomBatch) -> int:
    """How many of its rooms a batch keeps unfinished at once."""
    return batch.max_concurrency or DEFAULT_CONCURRENCY


def room_places(request: pb.SubmitRenderRequest) -> int:
    """The places a batch holds against the queue quota and the queue limit for its rooms (0: not
    a batch): as many as it keeps unfinished at once."""
    if request.WhichOneof("kind") != "room_batch":
        return 0
    return min(len(request.room_batch.rooms), concurrency(request.room_batch))


async def run_room_batch(ctx: JobContext) -> pb.JobResult:
    """Runs the rooms as child jobs and waits for all of them."""
    batch = ctx.request.room_batch
    rooms = list(batch.rooms)
    total = len(rooms)
    limit = concurrency(batch)
    ctx.total_steps = total
    try:
        return await _run(ctx, rooms, total, limit)
    except asyncio.CancelledError:
        stored = await ctx.ledger.get(ctx.job_id)
        if stored is not None and stored.job.state == pb.JOB_STATE_CANCELLED:
            await cancel_children(ctx)
        raise


async def _run(ctx: JobContext, rooms: list[pb.RoomRender], total: int, limit: int) -> pb.JobResult:
    last_seen: list[tuple[int, pb.JobState]] | None = None
    while True:
        known = await ctx.ledger.children(ctx.job_id)
        stored = dict(zip(known, await ctx.ledger.jobs(list(known.values())), strict=True))
        children = [child_view(i, rooms[i], known.get(i, ""), stored.get(i)) for i in range(total)]
        active = sum(1 for c in children if c.job_id and c.state not in _TERMINAL)
        held: bool | None = None  # a CancelJob under way (it cancels the rooms first): none is submitted
        for child in children:
            if active >= limit:
                break
            if not child.job_id:
                if held is None:
                    held = await ctx.ledger.is_cancelling(ctx.job_id)
                    if not held and await ctx.ledger.cancel_asked(ctx.job_id):
                        await finish_cancel(ctx)  # its canceller died: no more rooms
                if held:
                    break
                child_id = await submit_child(ctx, child.index)
                if child_id is None:
                    break
                child.job_id, child.state = child_id, pb.JOB_STATE_QUEUED
                active += 1
        done = sum(1 for c in children if c.state in _TERMINAL)
        seen = [(c.index, c.state) for c in children]
        if seen != last_seen:
            last_seen = seen
            states = ", ".join(
                f"{c.room_name or c.room_id or c.index}: {_STATE_WORDS.get(c.state, 'waiting')}" for c in children
            )
            step = progress_event(
                ctx.job_id,
                stage=pb.STAGE_GENERATION,
                step=done,
                total_steps=total,
                progress=done / total,
                stage_progress=done / total,
                message=f"Rendered {done}/{total} rooms ({states})",
                children=children,
            )
            await ctx.ledger.record_progress(ctx.job_id, ctx.owner, step)
        if done == total:
            cancelled = any(c.state == pb.JOB_STATE_CANCELLED for c in children)
            if not (cancelled and await ctx.ledger.is_cancelling(ctx.job_id)):
                if cancelled and await ctx.ledger.cancel_asked(ctx.job_id):
                    await finish_cancel(ctx)  # its canceller died having cancelled the rooms
                return _report(children, [s for s in stored.values() if s is not None])
        await asyncio.sleep(POLL_S)


class BatchFailure(JobFailure):
    """A batch none of whose rooms rendered. It reports its first room's error, but is settled room
    by room: only the rooms that failed for the caller's reason (a refused prompt, a budget) are
    charged, each its base, as each would have been alone; a room the provider failed costs nothing."""

    def __init__(
        self, code: int, message: str, rooms: int, rooms_at_fault: int, report: pb.BatchReport | None = None
    ) -> None:
        super().__init__(code, message)
        self.rooms = rooms
        self.rooms_at_fault = rooms_at_fault
        self.report = report  # every room's state and error, as a batch that rendered some reports them


def batch_report(children: list[pb.ChildJob], jobs: list[StoredJob]) -> pb.BatchReport:
    """The rooms' states and outputs, their counts by state and the providers' cost (of `jobs`)."""
    report = pb.BatchReport(total=len(children), children=children)
    for job in jobs:
        report.cost.tokens += job.job.result.generation.cost.tokens
        report.cost.cents += job.job.result.generation.cost.cents
    report.succeeded = sum(1 for c in children if c.state == pb.JOB_STATE_SUCCEEDED)
    report.failed = sum(1 for c in children if c.state == pb.JOB_STATE_FAILED)
    report.cancelled = sum(1 for c in children if c.state == pb.JOB_STATE_CANCELLED)
    return report


def _report(children: list[pb.ChildJob], jobs: list[StoredJob]) -> pb.JobResult:
    report = batch_report(children, jobs)
    if report.succeeded == 0:
        first = next((c.error for c in children if c.HasField("error")), None)
        reason = f"; first error: {first.message}" if first is not None else ""
        raise BatchFailure(
            first.code if first is not None else pb.ERROR_CODE_PIPELINE_ERROR,
            f"no room of the batch rendered ({report.failed} failed, {report.cancelled} cancelled){reason}",
            rooms=len(children),
            rooms_at_fault=sum(1 for c in children if c.HasField("error") and c.error.code in CALLERS_FAULT),
            report=report,
        )
    return pb.JobResult(batch=report)
