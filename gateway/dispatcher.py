"""The dispatcher: takes jobs from the ledger's work stream and runs their plans.

Any number of gateway replicas run one each. One intake loop reads the work stream for as many
jobs as there are free slots (so N slots never hold N Redis connections). A job's work entry stays
pending while its dispatcher renews it; if the dispatcher dies, another one reclaims the entry
after the lease and resumes at the first stage without a checkpoint. While Redis is away the
dispatcher waits (every ledger call retries for up to a lease); a job whose ledger stays away longer
is handed back, not failed: its entry stays pending and a dispatcher resumes it later. Cancel
reaches the running task through a Redis channel (and, should that notice be lost, through the
job's state, read at every renewal) and cancels it, including the stage call in flight.
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
        self._reclaimed: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
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
            self._tasks.append(asyncio.create_task(self._reclaim_loop()))

    async def stop(self, grace_s: float) -> None:
        """Stops taking work, lets running jobs finish within the grace, then hands the rest back."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        running = list(self._running.values())
        if running:
            await asyncio.wait(running, timeout=grace_s)
        for task in self._running.values():
            task.cancel()
        await asyncio.gather(*self._runs, return_exceptions=True)

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
                entries = (
                    [self._reclaimed.get_nowait()]
                    if not self._reclaimed.empty()
                    else await self.ledger.read_work(self.consumer, block_ms=_INTAKE_BLOCK_MS)
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
            self._spawn(self._dispatch(entry_id, job_id))

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

    async def _reclaim_loop(self) -> None:
        lease_ms = int(self.settings.lease_s * 1000)
        while not self._stopping.is_set():
            try:
                for entry in await self.ledger.reclaim_work(self.consumer, lease_ms):
                    log.info("reclaimed job %s from a stalled dispatcher", entry[1])
                    await self._reclaimed.put(entry)
            except asyncio.CancelledError:
                raise
            except LedgerUnavailable:
                pass
            except Exception:
                log.exception("reclaim failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.lease_s / 2)

    def _after_resubscribing(self) -> None:
        self._spawn(self._check_running())

    def _cancel_if_running(self, job_id: str) -> None:
        task = self._running.get(job_id)
        if task is not None:
            task.cancel()

    async def _check_running(self) -> None:
        """After a reconnect: cancels running jobs that were cancelled while the notice could not arrive."""
        for job_id in list(self._running):
            with contextlib.suppress(Exception):
                state = await self.ledger.state(job_id)
                if state is None or state.terminal:
                    self._cancel_if_running(job_id)

    async def _renew(self, entry_id: str, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            with contextlib.suppress(Exception):
                await self.ledger.renew(self.consumer, entry_id)
                state = await self.ledger.state(job_id)
                if state is None or state.terminal:  # cancelled, and the notice was lost
                    self._cancel_if_running(job_id)

    async def _run(self, entry_id: str, job_id: str) -> None:
        attempt = await self.ledger.claim(job_id, self.consumer, "Starting")
        if attempt is None:  # ended (cancelled while queued) or expired
            await self._release_inputs(job_id)
            await self.ledger.finish_work(entry_id)
            return
        task = asyncio.create_task(self._execute(job_id))
        self._running[job_id] = task
        renew = asyncio.create_task(self._renew(entry_id, job_id))
        try:
            await asyncio.wait([task])
        finally:
            renew.cancel()
            self._running.pop(job_id, None)
        if task.cancelled() and self._stopping.is_set():
            return  # handed back: the entry stays pending and another dispatcher resumes the job
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
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
