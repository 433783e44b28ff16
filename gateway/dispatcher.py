"""The dispatcher: takes jobs from the ledger's work stream and runs their plans.

Any number of gateway replicas run one each. One intake loop takes work for its free slots only
(so N slots never hold N Redis connections, and nothing is taken that cannot start): first an entry
another dispatcher stopped renewing (it died: XAUTOCLAIM after the lease), else a new one. A job is
claimed only by the dispatcher holding its entry, and renewed only while that dispatcher owns it,
so two can never run one job: one that lost its job (taken over while its Redis was away) learns it
at its next renewal or write and stops without touching the new owner's work. A finished job's
entry and inputs are cleaned up only once the job is terminal. While Redis is away the dispatcher
waits (every ledger call retries for up to a lease); a job whose ledger stays away longer is handed
back, not failed: its entry stays pending and a dispatcher resumes it from its checkpoints. Cancel
reaches the running task through a Redis channel (and, should that notice be lost, through the
renewal, which fails once the job has ended) and cancels it, including the stage call in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable

from gateway.batch import run_room_batch
from gateway.context import JobContext, JobFailure
from gateway.generation_jobs import run_room_render, run_texture_edit
from gateway.ledger import Ledger, LedgerUnavailable, NotOwner, keys
from gateway.ledger.jobs import TERMINAL_PROTO
from gateway.material_swap import run_material_swap
from gateway.settings import GatewaySettings
from gateway.stages import StageClients
from gateway.subscriptions import Subscriptions
from render.v1 import render_service_pb2 as pb
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
DETACHED = {"room_batch"}
_INTAKE_BLOCK_MS = 1000


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
        self._running: dict[str, asyncio.Task[None]] = {}
        self._reclaim_from = "0-0"
        self._next_reclaim = 0.0
        self._stopping = asyncio.Event()
        subscriptions.on(keys.CANCEL_CHANNEL, self._cancel_if_running)
        subscriptions.on_subscribed(self._after_resubscribing)

    @property
    def running(self) -> int:
        """Jobs running in this process now."""
        return len(self._running)

    async def start(self) -> None:
        """Starts the intake and the reclaimer."""
        await self.ledger.ensure_group()
        if self.settings.dispatcher_concurrency > 0:
            self._tasks.append(asyncio.create_task(self._intake()))

    async def stop(self, grace_s: float) -> None:
        """Stops taking work, lets running jobs finish within the grace, then hands the rest back
        (their entries stay pending; another dispatcher resumes them)."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runs:
            await asyncio.wait(list(self._runs), timeout=grace_s)
        for task in [*self._running.values(), *self._runs]:
            task.cancel()
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
            try:
                entries = await self._stalled_entry() or await self.ledger.read_work(
                    self.consumer, block_ms=_INTAKE_BLOCK_MS
                )
                delay = 0.1
            except asyncio.CancelledError:
                self._slots.release()
                raise
            except Exception as exc:
                self._slots.release()
                if not isinstance(exc, LedgerUnavailable):
                    log.exception("reading the work stream failed; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if not entries:
                self._slots.release()
                continue
            entry_id, job_id = entries[0]
            if job_id in self._running:  # its renewals failed (Redis away) and it came back to us
                self._slots.release()
                continue
            self._spawn(self._dispatch(entry_id, job_id))

    async def _stalled_entry(self) -> list[tuple[str, str]]:
        """At most one entry whose dispatcher stopped renewing it for a lease, taken for a free slot
        (the pending list is scanned a page at a time, continuing where the last scan stopped)."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_reclaim:
            return []
        entries, self._reclaim_from = await self.ledger.reclaim_work(
            self.consumer, int(self.settings.lease_s * 1000), count=1, start=self._reclaim_from
        )
        if self._reclaim_from == "0-0" and not entries:  # a full scan found nothing: rest a while
            self._next_reclaim = loop.time() + self.settings.lease_s / 4
        for _, job_id in entries:
            log.info("reclaimed job %s from a stalled dispatcher", job_id)
        return entries

    async def _dispatch(self, entry_id: str, job_id: str) -> None:
        """Runs one entry in the slot the intake took (a detached kind gives its slot back)."""
        released = False
        try:
            if await self.ledger.kind(job_id) in DETACHED:
                self._slots.release()
                released = True
            await self._run(entry_id, job_id)
        except asyncio.CancelledError:
            raise
        except LedgerUnavailable:
            log.warning("job %s: the ledger is unavailable; handed back for a later resume", job_id)
        except Exception:
            log.exception("job %s: dispatch failed; handed back for a later resume", job_id)
        finally:
            if not released:
                self._slots.release()

    def _after_resubscribing(self) -> None:
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

    async def _renew(self, entry_id: str, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            try:
                renewed = await self.ledger.renew(self.consumer, entry_id, job_id)
            except Exception:
                continue  # Redis away: the job goes on (its writes wait); the lease may run out
            if not renewed:  # cancelled, or taken over, and the notice was lost
                self._cancel_if_running(job_id)
                return

    async def _run(self, entry_id: str, job_id: str) -> None:
        attempt = await self.ledger.claim(job_id, self.consumer, "Starting", entry_id)
        if attempt is None:
            await self._finish_if_ended(entry_id, job_id)  # ended while queued, or not ours to run
            return
        if self._stopping.is_set():
            return  # claimed while stopping: handed back at once
        task = asyncio.create_task(self._execute(job_id))
        self._running[job_id] = task
        renew = asyncio.create_task(self._renew(entry_id, job_id))
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            renew.cancel()
            self._running.pop(job_id, None)
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        await self._finish_if_ended(entry_id, job_id)

    async def _finish_if_ended(self, entry_id: str, job_id: str) -> None:
        """Acknowledges the job's entry and deletes its inputs once the job has ended (or expired).
        A job still running belongs to whoever holds it now (handed back, or taken over): its
        entry and inputs are left alone."""
        state = await self.ledger.state(job_id)
        if state is not None and not state.terminal:
            return
        await self._release_inputs(job_id)
        await self.ledger.finish_work(entry_id)

    async def _release_inputs(self, job_id: str) -> None:
        """Deletes a finished job's uploaded inputs and stored checkpoints; its outputs stay."""
        for prefix in (f"uploads/{job_id}/", f"work/{job_id}/"):
            try:
                await asyncio.to_thread(self.storage.delete_prefix, prefix)
            except OSError:
                log.warning("job %s: could not delete %s", job_id, prefix)

    async def _execute(self, job_id: str) -> None:
        stored = await self.ledger.get(job_id)
        if stored is None:
            return
        request = pb.SubmitRenderRequest()
        request.ParseFromString(stored.request)
        loop = asyncio.get_running_loop()
        ctx = JobContext(
            job_id=job_id,
            owner=self.consumer,
            tenant=stored.tenant,
            request=request,
            inputs=stored.inputs,
            ledger=self.ledger,
            storage=self.storage,
            stages=self.stages,
            fetch_policy=self.settings.fetch,
            limits=self.settings.limits,
            default_stage_timeout_s=self.settings.stage_timeout_s,
            deadline=loop.time() + self.settings.job_timeout_s,
            geometry_cache_s=self.settings.geometry_cache_s,
            geometry_cache_version=self.settings.geometry_cache_version,
            generation_timeout_s=self.settings.generation_timeout_s,
            max_tokens=self.settings.limits.max_tokens_per_job,
            max_cents=self.settings.limits.max_cents_per_job,
            checkpoints=await self.ledger.checkpoints(job_id),
        )
        plan = PLANS.get(request.WhichOneof("kind") or "")
        try:
            try:
                if plan is None:
                    raise JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, "the request has no kind this server runs")
                result = await plan(ctx)
            except JobFailure as failure:
                await self.ledger.fail(
                    job_id,
                    self.consumer,
                    pb.JobError(code=failure.code, message=failure.message),  # type: ignore[arg-type]
                    ctx.total_steps,
                )
                return
            except (LedgerUnavailable, NotOwner, asyncio.CancelledError):
                raise
            except Exception:
                log.exception("job %s failed unexpectedly", job_id)
                await self.ledger.fail(
                    job_id,
                    self.consumer,
                    pb.JobError(code=pb.ERROR_CODE_PIPELINE_ERROR, message="an internal error stopped the render"),
                    ctx.total_steps,
                )
                return
            await self.ledger.succeed(job_id, self.consumer, result, ctx.total_steps)
        except NotOwner as exc:
            log.info("job %s: %s (cancelled or taken over)", job_id, exc)
