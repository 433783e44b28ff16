"""The dispatcher: takes jobs from the ledger and runs their plans.

Any number of gateway replicas run one each. One intake loop takes work for its free slots only, so
N slots never hold N Redis connections and nothing is taken that cannot start: the ledger's take
picks the next job fairly across tenants and within each tenant's concurrency (gateway/ledger/work.py).
A notice on the work channel wakes the intake at once; it also looks every second. A job submitted
to this same process while a slot is free and nothing is queued skips both: its submit starts it
here (claim, then the ledger's submit with start_here), as the next take would have. A job's slot
lasts a lease that its dispatcher renews, and only while it still owns the job; a dispatcher that
dies stops renewing, and any dispatcher's reaper puts the job back at the front of its tenant's
queue, owner cleared, so another resumes it from its checkpoints and the old one's writes and
renewals are refused. A finished job's inputs are deleted only once it has ended. While Redis is
away the dispatcher waits (every ledger call retries for up to a lease); a job whose ledger stays
away longer is left to the reaper, not failed. Cancel reaches the running task through a Redis
channel (and, should that notice be lost, through the renewal, which fails once the job has ended)
and cancels it, including the stage call in flight. On SIGTERM running jobs get the grace to finish
and the rest are handed back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

from opentelemetry.trace import Status, StatusCode

from gateway import folders
from gateway.batch import BatchFailure, run_room_batch
from gateway.context import JobContext, JobFailure, outputs_folder
from gateway.generation_jobs import run_room_render, run_texture_edit
from gateway.ledger import Ledger, LedgerUnavailable, NotOwner, StartHere, StoredJob, Submitted, Taken, keys
from gateway.ledger.jobs import TERMINAL_PROTO, State
from gateway.material_swap import run_material_swap
from gateway.metrics import JOB_DURATION, JOBS_ENDED, count_settlement
from gateway.pricing import Price, charge_for, charge_for_failed_batch, charge_for_failure
from gateway.settings import GatewaySettings
from gateway.stages import StageClients
from gateway.subscriptions import Subscriptions
from render.v1 import render_service_pb2 as pb
from renderkit import telemetry
from renderkit.fetch import download_lookups
from renderkit.storage import Storage

log = logging.getLogger(__name__)

# The plan of each request kind.
PLANS: dict[str, Callable[[JobContext], Awaitable[pb.JobResult]]] = {
    "material_swap": run_material_swap,
    "room_render": run_room_render,
    "room_batch": run_room_batch,
    "texture_edit": run_texture_edit,
}
# Kinds that mostly wait for other jobs: they run beside the workers, not in a worker's slot, so a
# batch never starves its own children of dispatchers.
DETACHED = frozenset({"room_batch"})
# How long an idle intake waits for a work notice before it looks again anyway.
_IDLE_LOOK_S = 1.0
# Folders due for a delete (a cancelled job's, a job's whose dispatcher died as it ended, one whose
# delete failed) that one look of a reaper (every quarter lease) deletes, at most.
_RELEASES_PER_LOOK = 20
# How long a run's clean-up after a cancel asks the ledger, at most.
_CLEAN_UP_S = 2.0


class Dispatcher:
    """Runs up to `concurrency` jobs at once in this process."""

    def __init__(
        self,
        ledger: Ledger,
        storage: Storage,
        stages: StageClients,
        settings: GatewaySettings,
        subscriptions: Subscriptions,
    ) -> None:
        # A Redis restart must not fail a job: the dispatcher's ledger calls wait up to a lease.
        self.ledger = ledger.with_retry(settings.lease_s)
        self.storage = storage
        self.stages = stages
        self.settings = settings
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._slots = asyncio.Semaphore(settings.dispatcher_concurrency)
        self._tasks: list[asyncio.Task[None]] = []
        self._runs: set[asyncio.Task[None]] = set()
        # The names of its jobs' input URLs, resolved among their tenant's own lookups (OwnedLookups:
        # one tenant's URLs on a domain whose DNS drops queries held every tenant's resolvers).
        self._lookups = download_lookups()
        self._submits: set[asyncio.Future[Submitted]] = set()  # submit_here's, their callers maybe gone
        self._running: dict[str, asyncio.Task[bool]] = {}
        self._work = asyncio.Event()
        self._stopping = asyncio.Event()
        self._releasing: asyncio.Task[None] | None = None  # the reaper's deletes of due folders
        subscriptions.on(keys.CANCEL_CHANNEL, self._cancel_if_running)
        subscriptions.on(keys.WORK_CHANNEL, lambda _tenant: self._work.set())
        subscriptions.on_subscribed(self._after_resubscribing)

    @property
    def running(self) -> int:
        """Jobs running in this process now."""
        return len(self._running)

    async def start(self) -> None:
        """Starts the intake and the reaper."""
        if self.settings.dispatcher_concurrency > 0:
            self._tasks.append(asyncio.create_task(self._intake()))
            self._tasks.append(asyncio.create_task(self._reaper()))

    async def claim(self, kind: str) -> StartHere | None:
        """A slot for a job this process is submitting, when one is free now (None: the job goes to
        the queue as usual). The submit starts the job here only if nothing else is queued and its
        tenant is under its concurrency (ledger.submit's start_here); then `run_started` runs it in
        the slot, else `release` gives the slot back. Kinds that take no slot go to the queue."""
        if not self.may_claim(kind):
            return None
        await self._slots.acquire()  # free: it returns at once
        return StartHere(self.consumer, self.settings.lease_s)

    def may_claim(self, kind: str) -> bool:
        """Whether claim would find a slot for a job of `kind` now (a submit that cannot start its
        job here goes to the ledger directly, without submit_here's task)."""
        return bool(self._tasks) and not self._stopping.is_set() and kind not in DETACHED and not self._slots.locked()

    def run_started(self, started: StoredJob, held: Mapping[str, bytes] | None = None) -> None:
        """Runs a job its submit started for this dispatcher (see claim), in the claimed slot.
        `held`: the bytes of the inputs the submit stored (by storage key), which the run uses
        instead of reading them back (JobContext.held)."""
        taken = Taken((started.job.id, started.job.attempt, started.job.kind), stored=started, announced=True)
        self._spawn(self._dispatch(taken, slot=True, held=held))

    def release(self) -> None:
        """Gives back a claimed slot whose job was queued (or not submitted)."""
        self._slots.release()

    async def submit_here(
        self,
        kind: str,
        submit: Callable[[StartHere | None], Awaitable[Submitted]],
        held: Callable[[], Mapping[str, bytes]] | None = None,
    ) -> Submitted:
        """Submits a job through `submit` (the ledger's, given where to start it: see claim) and
        runs it here when the submit started it, else gives the slot back. Once the submit is sent
        its caller going away (a deadline, a disconnect) does not stop it: the script may have
        started the job for this dispatcher already, and a job started here that nobody runs waits
        out its lease for the reaper, holding one of its tenant's concurrency slots."""
        start = await self.claim(kind)
        if start is None:
            return await submit(None)

        async def submitting() -> Submitted:
            try:
                submitted = await submit(start)
            except BaseException:
                self.release()
                raise
            if submitted.started is None:
                self.release()
            else:
                self.run_started(submitted.started, held() if held is not None else None)
            return submitted

        task = asyncio.ensure_future(submitting())
        self._submits.add(task)
        task.add_done_callback(self._submits.discard)
        task.add_done_callback(lambda done: done.cancelled() or done.exception())  # no one may hear it
        return await asyncio.shield(task)

    async def stop(self, grace_s: float) -> None:
        """Stops taking work, lets running jobs finish within the grace, then hands the rest back
        (to the front of their queues, for another dispatcher to resume)."""
        self._stopping.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s  # one grace for both waits below
        if self._submits:  # a job they start runs (or goes back to its queue) below
            await asyncio.wait(list(self._submits), timeout=grace_s)
        background = [*self._tasks, *([self._releasing] if self._releasing is not None else [])]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if self._runs:
            await asyncio.wait(list(self._runs), timeout=max(0.0, deadline - loop.time()))
        for running in [*self._running.values(), *self._runs]:
            running.cancel()
        await asyncio.gather(*self._runs, *self._running.values(), return_exceptions=True)

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)
        return task

    async def _intake(self) -> None:
        delay = 0.1
        while not self._stopping.is_set():
            await self._slots.acquire()
            self._work.clear()
            try:
                # With another slot free, a take that empties the queue notes this dispatcher as
                # waiting for work itself (one script call a job less when jobs come one at a time).
                slot_free = not self._slots.locked()
                taken = await self.ledger.take(self.consumer, self.settings.lease_s, DETACHED, slot_free=slot_free)
                delay = 0.1
            except asyncio.CancelledError:
                self._slots.release()
                raise
            except Exception as exc:
                self._slots.release()
                if not isinstance(exc, LedgerUnavailable):
                    log.exception("taking work failed; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if taken is None:
                self._slots.release()
                await self._idle()
                continue
            if taken[2] in DETACHED:  # it waits for its rooms, which take the slots
                self._slots.release()
                self._spawn(self._dispatch(taken, slot=False))
            else:
                self._spawn(self._dispatch(taken, slot=True))
            if taken.drained:  # the queue is empty and this dispatcher noted as waiting: wait now
                await self._idle()

    async def _idle(self) -> None:
        """Waits for a work notice (set since the last take began), or looks again after a while."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_IDLE_LOOK_S):  # no task made per wait, as wait_for would
                await self._work.wait()

    async def _dispatch(self, taken: Taken, slot: bool, held: Mapping[str, bytes] | None = None) -> None:
        """Runs one taken job (in the slot the intake took, for kinds that take one)."""
        job_id = taken[0]
        try:
            stale = self._running.get(job_id)
            if stale is not None:  # our earlier run lost its lease (Redis away) and the job came back
                stale.cancel()
                await asyncio.gather(stale, return_exceptions=True)
                # It wrote as this dispatcher, so it may have checkpointed after the take: read again.
                taken = taken.unread()
            await self._run(taken, held)
        except asyncio.CancelledError:
            raise
        except LedgerUnavailable:
            log.warning("job %s: the ledger is unavailable; the reaper puts it back when its lease ends", job_id)
        except Exception:
            log.exception("job %s: dispatch failed; the reaper puts it back when its lease ends", job_id)
        finally:
            if slot:
                self._slots.release()

    async def _reaper(self) -> None:
        while not self._stopping.is_set():
            try:
                requeued = await self.ledger.requeue_expired()
                if requeued:
                    log.info("put back %d job(s) whose dispatcher stopped renewing", requeued)
                if self._releasing is None or self._releasing.done():
                    # Beside the reaping: a storage that hangs must not hold the leases' reaper.
                    self._releasing = asyncio.create_task(self._release_due())
            except asyncio.CancelledError:
                raise
            except LedgerUnavailable:
                pass
            except Exception:
                log.exception("reaping expired leases failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.lease_s / 4):
                    await self._stopping.wait()

    def _after_resubscribing(self) -> None:
        self._work.set()  # work queued while the notices could not arrive
        self._spawn(self._check_running())

    def _cancel_if_running(self, job_id: str) -> None:
        task = self._running.get(job_id)
        if task is not None:
            task.cancel()

    async def _check_running(self) -> None:
        """After a reconnect: cancels running jobs that ended (were cancelled) or were taken over
        while the notice could not arrive."""
        for job_id in list(self._running):
            with contextlib.suppress(Exception):
                stored = await self.ledger.get(job_id)
                if stored is None or stored.owner != self.consumer or stored.job.state in TERMINAL_PROTO:
                    self._cancel_if_running(job_id)

    async def _renew(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            try:
                renewed = await self.ledger.renew(self.consumer, job_id, self.settings.lease_s)
            except Exception:
                continue  # Redis away: the job goes on (its writes wait); the lease may run out
            if not renewed:  # cancelled, or put back for another dispatcher, and the notice was lost
                self._cancel_if_running(job_id)
                return

    async def _run(self, taken: Taken, held: Mapping[str, bytes] | None = None) -> None:
        job_id, attempt, _ = taken
        if taken.announced and taken.stored is not None:
            stored = taken.stored  # its submit started it here and wrote its start
        else:
            try:  # the take read the job and its checkpoints: starting it is one round trip
                stored = await self.ledger.started(job_id, self.consumer, stored=taken.stored)
            except NotOwner:
                return  # cancelled (or put back) between the take and now, or expired
        saved = taken.checkpoints if taken.stored is not None else await self.ledger.checkpoints(job_id)
        task = asyncio.create_task(self._execute(job_id, stored, saved, held))
        self._running[job_id] = task
        renew = asyncio.create_task(self._renew(job_id))
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            renew.cancel()
            if self._running.get(job_id) is task:
                del self._running[job_id]
        if task.cancelled() and self._stopping.is_set():
            with contextlib.suppress(Exception):
                await self.ledger.hand_back(self.consumer, job_id)
            return
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        # Only what may exist is listed and deleted: uploads the submit recorded, and work files of
        # this run or an earlier one (a dry run or a small job has neither: no storage calls).
        uploads = folders.has_uploads(job_id, stored.inputs)
        work = attempt > 1 or task.cancelled() or task.result()
        await self._release_if_ended(job_id, uploads=uploads, work=work)

    async def _release_if_ended(self, job_id: str, *, uploads: bool = True, work: bool = True) -> None:
        """Deletes the job's inputs once it has ended (or expired). A job still running belongs to
        whoever holds it now (put back, or taken over): its inputs are left alone."""
        if not (uploads or work):
            return
        state = await self.ledger.state(job_id)
        if state is not None and not state.terminal:
            return
        await self._release_inputs(job_id, uploads=uploads, work=work)

    async def _release_inputs(self, job_id: str, *, uploads: bool = True, work: bool = True) -> None:
        """Deletes a finished job's uploaded inputs and stored checkpoints; its outputs stay. Its
        end noted them for a reaper (in case this process died first): deleted, they are struck
        off; a folder whose delete fails stays noted, and a reaper deletes it later."""
        prefixes = [p for p, present in ((folders.uploads(job_id), uploads), (folders.work(job_id), work)) if present]
        deleted = [prefix for prefix in prefixes if await self._delete_folder(job_id, prefix)]
        if deleted:
            with contextlib.suppress(LedgerUnavailable):  # left noted: a reaper deletes nothing twice over
                await self.ledger.released(*deleted)

    async def _delete_folder(self, job_id: str, prefix: str) -> bool:
        """Deletes a job's storage folder (True), or notes it in the ledger for a reaper to delete
        later (_release_due) when the storage fails now (False)."""
        try:
            await asyncio.to_thread(self.storage.delete_prefix, prefix)
            return True
        except OSError:  # StorageError too
            log.warning("job %s: could not delete %s; it is deleted later", job_id, prefix)
            try:
                await self.ledger.defer_release(prefix)
            except LedgerUnavailable:
                log.error("job %s: %s could not be noted for a later delete", job_id, prefix)
            return False

    async def _release_due(self) -> None:
        """Deletes folders noted as due (a job's end or cancel notes them: _release_inputs strikes
        off what its dispatcher deleted, a failed delete stays), some of them (any: a folder that
        keeps failing does not hold the others back for good)."""
        # A full look is followed by another at once (within a lease's quarter): at 20 a look every
        # lease_s / 4 a gateway deleted 2.7 folders a second, and every cancel notes two or three,
        # so a tenant cancelling more than ~1.3 jobs a second grew the set without bound.
        loop = asyncio.get_running_loop()
        until = loop.time() + self.settings.lease_s / 4
        try:
            while True:
                due = await self.ledger.releases_due(_RELEASES_PER_LOOK)
                for prefix in due:
                    try:
                        await asyncio.to_thread(self.storage.delete_prefix, prefix)
                    except OSError:  # StorageError too
                        return  # the storage still fails: the next look tries again
                    await self.ledger.released(prefix)
                if len(due) < _RELEASES_PER_LOOK or loop.time() >= until:
                    return
        except LedgerUnavailable:
            return

    async def _execute(
        self, job_id: str, stored: StoredJob, checkpoints: dict[str, bytes], held: Mapping[str, bytes] | None = None
    ) -> bool:
        """Runs the job's plan and records its end; whether a file under work/<job>/ may exist."""
        request = pb.SubmitRenderRequest()
        request.ParseFromString(stored.request)
        loop = asyncio.get_running_loop()
        began = time.monotonic()
        ctx = JobContext(
            job_id=job_id,
            owner=self.consumer,
            tenant=stored.tenant,
            request=request,
            inputs=stored.inputs,
            ledger=self.ledger,
            storage=self.storage,
            stages=self.stages,
            fetch_policy=replace(self.settings.fetch, resolvers=self._lookups.of(stored.tenant)),
            limits=self.settings.limits,
            default_stage_timeout_s=self.settings.stage_timeout_s,
            deadline=loop.time() + self.settings.job_timeout_s,
            geometry_cache_s=self.settings.geometry_cache_s,
            geometry_cache_version=self.settings.geometry_cache_version,
            generation_timeout_s=self.settings.generation_timeout_s,
            max_tokens=self.settings.limits.max_tokens_per_job,
            max_cents=self.settings.limits.max_cents_per_job,
            prices=self.settings.prices,
            checkpoints=checkpoints,
            held=dict(held or {}),
        )
        kind = request.WhichOneof("kind") or ""
        # The job's work joins the trace of its submit (whichever replica runs it, after a takeover
        # too), and carries its id and tenant to the stages as baggage.
        with (
            telemetry.job_scope(job_id, stored.tenant, telemetry.context_of(stored.trace)),
            telemetry.tracer().start_as_current_span(
                f"job {kind}", attributes={telemetry.KIND: kind, "render.attempt": stored.job.attempt}
            ) as span,
        ):
            log.info("job %s: %s started (attempt %d)", job_id, kind, stored.job.attempt)
            try:
                ended = await self._run_plan(job_id, stored, ctx, PLANS.get(kind))
            except NotOwner as exc:
                log.info("job %s: %s (cancelled or taken over)", job_id, exc)
                await self._drop_outputs_if_cancelled(ctx)
                return True
            except asyncio.CancelledError:
                await self._drop_outputs_if_cancelled(ctx)
                raise
            span.set_attribute("render.state", ended[0])
            if ended[1]:
                span.set_status(Status(StatusCode.ERROR, ended[1]))
            took = job_seconds(stored, time.monotonic() - began)
            log.info("job %s: %s %s", job_id, ended[0], f"({ended[1]})" if ended[1] else f"in {took:.2f} s")
        JOB_DURATION.record(took, {"kind": kind, "state": ended[0]})
        JOBS_ENDED.add(1, {"kind": kind, "state": ended[0], "error_code": ended[1]})
        return ctx.wrote_work

    async def _drop_outputs_if_cancelled(self, ctx: JobContext) -> None:
        """Deletes the outputs a run stored before its job was cancelled (the cancel came as it
        ended): a cancelled job's result names none, so they would stay in storage for good. A job
        another dispatcher took over is left alone: its run writes the same keys."""
        if not ctx.wrote_outputs:
            return
        try:
            # Briefly: a drain with Redis away must not wait out the ledger's retries here.
            async with asyncio.timeout(_CLEAN_UP_S):
                if await self.ledger.state(ctx.job_id) is not State.CANCELLED:
                    return
        except (LedgerUnavailable, TimeoutError):
            log.warning("job %s: its outputs stay: the ledger could not say whether it was cancelled", ctx.job_id)
            return
        await self._delete_folder(ctx.job_id, outputs_folder(ctx))

    async def _run_plan(
        self,
        job_id: str,
        stored: StoredJob,
        ctx: JobContext,
        plan: Callable[[JobContext], Awaitable[pb.JobResult]] | None,
    ) -> tuple[str, str]:
        """Runs the plan and records its end; returns the terminal state and error code names."""
        try:
            if plan is None:
                raise JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, "the request has no kind this server runs")
            result = await plan(ctx)
        except JobFailure as failure:
            charge = self._failure_charge(stored, failure, ctx)
            report = failure.report if isinstance(failure, BatchFailure) else None
            failed_result = pb.JobResult(batch=report) if report is not None else None
            error: pb.JobError | None = pb.JobError(code=failure.code, message=failure.message)  # type: ignore[arg-type]
            ended = "failed", pb.ErrorCode.Name(failure.code).removeprefix("ERROR_CODE_").lower()
        except (LedgerUnavailable, NotOwner, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("job %s failed unexpectedly", job_id)
            charge, failed_result = 0, None
            error = pb.JobError(code=pb.ERROR_CODE_PIPELINE_ERROR, message="an internal error stopped the render")
            ended = "failed", "pipeline_error"
        else:
            charge, error, ended = self._success_charge(stored, result, ctx), None, ("succeeded", "")
            failed_result = None
        # The steps not yet written and the folders the end leaves to delete, in the end's step.
        before, release = await ctx.unwritten(), _folders_left(job_id, stored, ctx)
        if error is None:
            await self.ledger.succeed(
                job_id, self.consumer, result, ctx.total_steps, charge=charge, before=before, release=release
            )
        else:
            await self.ledger.fail(
                job_id,
                self.consumer,
                error,
                ctx.total_steps,
                charge=charge,
                before=before,
                release=release,
                result=failed_result,
            )
        # The end's notice reaches this gateway with the script's reply: one turn of the loop lets
        # the watchers it woke send the end before the job's own bookkeeping (its count, log line,
        # metrics and span) runs.
        await asyncio.sleep(0)
        count_settlement(stored.credits_reserved, charge)
        return ended

    def _success_charge(self, stored: StoredJob, result: pb.JobResult, ctx: JobContext) -> int:
        """What a job that succeeded costs (the ledger refunds the rest of its reservation)."""
        prices = self.settings.prices
        if prices is None or not stored.credits_reserved:
            return 0
        return charge_for(result, _price(stored), ctx.spent.cents, prices)

    def _failure_charge(self, stored: StoredJob, failure: JobFailure, ctx: JobContext) -> int:
        """What a failed job costs: nothing unless the failure was the caller's (a batch's: its
        rooms' that were)."""
        prices = self.settings.prices
        if prices is None or not stored.credits_reserved:
            return 0
        if isinstance(failure, BatchFailure):
            return charge_for_failed_batch(failure.rooms, failure.rooms_at_fault, _price(stored))
        return charge_for_failure(failure.code, _price(stored), ctx.spent.cents, prices)


def job_seconds(stored: StoredJob, running_s: float) -> float:
    """A job's time from its creation to its end (render_job_duration_seconds): from create_time to
    this attempt's hand-out (update_time as the take or the submit wrote it), both Redis's clock,
    then this run by this process's monotonic clock. No replica's wall clock, which may be minutes
    off, and no read of Redis's after the end (a round trip a job, and a wait a cancel could cut)."""
    job = stored.job
    if not job.HasField("create_time"):
        return running_s
    queued_ms = job.update_time.ToMilliseconds() - job.create_time.ToMilliseconds()
    return max(queued_ms / 1000, 0.0) + running_s


def _price(stored: StoredJob) -> Price:
    return Price(stored.credits_base, stored.credits_reserved - stored.credits_base)


def _folders_left(job_id: str, stored: StoredJob, ctx: JobContext) -> list[str]:
    """The storage folders a job's end leaves to delete (outputs stay): its uploads, and its work
    files where this run or an earlier one may have written some."""
    left = [folders.uploads(job_id)] if folders.has_uploads(job_id, stored.inputs) else []
    if stored.job.attempt > 1 or ctx.wrote_work:
        left.append(folders.work(job_id))
    return left
