"""The dispatcher: takes jobs from the ledger's work stream and runs their plans.

Any number of gateway replicas run one each. A job's work entry stays pending while its
dispatcher renews it; if the dispatcher dies, another one reclaims the entry after the lease and
resumes at the first stage without a checkpoint. Cancel reaches the running task through a Redis
channel and cancels it, including the stage call in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable

from gateway import keys
from gateway.batch import run_room_batch
from gateway.context import JobContext, JobFailure
from gateway.generation_jobs import run_room_render, run_texture_edit
from gateway.ledger import Ledger, NotOwner
from gateway.material_swap import run_material_swap
from gateway.settings import GatewaySettings
from gateway.stages import StageClients
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


class Dispatcher:
    """Runs up to `concurrency` jobs at once in this process."""

    def __init__(self, ledger: Ledger, storage: Storage, stages: StageClients, settings: GatewaySettings) -> None:
        self.ledger = ledger
        self.storage = storage
        self.stages = stages
        self.settings = settings
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._tasks: list[asyncio.Task[None]] = []
        self._detached: set[asyncio.Task[None]] = set()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._reclaimed: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        """Starts the workers, the reclaimer and the cancel listener."""
        await self.ledger.ensure_group()
        self._tasks.append(asyncio.create_task(self._listen_for_cancels()))
        await asyncio.wait_for(self._subscribed.wait(), 10)
        self._tasks.append(asyncio.create_task(self._reclaim_loop()))
        for _ in range(self.settings.dispatcher_concurrency):
            self._tasks.append(asyncio.create_task(self._worker()))

    async def stop(self, grace_s: float) -> None:
        """Stops taking work, lets running jobs finish within the grace, then hands the rest back."""
        self._stopping.set()
        running = list(self._running.values())
        if running:
            await asyncio.wait(running, timeout=grace_s)
        for task in [*self._running.values(), *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._detached, return_exceptions=True)

    async def _worker(self) -> None:
        while not self._stopping.is_set():
            try:
                entries = (
                    [self._reclaimed.get_nowait()]
                    if not self._reclaimed.empty()
                    else await self.ledger.read_work(self.consumer, block_ms=500)
                )
                for entry_id, job_id in entries:
                    if await self.ledger.kind(job_id) in DETACHED:
                        task = asyncio.create_task(self._run(entry_id, job_id))
                        self._detached.add(task)
                        task.add_done_callback(self._detached.discard)
                    else:
                        await self._run(entry_id, job_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatcher worker error; retrying")
                await asyncio.sleep(1)

    async def _reclaim_loop(self) -> None:
        lease_ms = int(self.settings.lease_s * 1000)
        while not self._stopping.is_set():
            try:
                for entry in await self.ledger.reclaim_work(self.consumer, lease_ms):
                    log.info("reclaimed job %s from a stalled dispatcher", entry[1])
                    await self._reclaimed.put(entry)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reclaim failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.lease_s / 2)

    async def _listen_for_cancels(self) -> None:
        pubsub = self.ledger.redis.pubsub()
        await pubsub.subscribe(keys.CANCEL_CHANNEL)
        self._subscribed.set()
        try:
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                task = self._running.get(message["data"].decode())
                if task is not None:
                    task.cancel()
        finally:
            await pubsub.aclose()

    async def _renew(self, entry_id: str) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            with contextlib.suppress(Exception):
                await self.ledger.renew(self.consumer, entry_id)

    async def _run(self, entry_id: str, job_id: str) -> None:
        attempt = await self.ledger.claim(job_id, self.consumer, "Starting")
        if attempt is None:  # ended (cancelled while queued) or expired
            await self._release_inputs(job_id)
            await self.ledger.finish_work(entry_id)
            return
        task = asyncio.create_task(self._execute(job_id))
        self._running[job_id] = task
        renew = asyncio.create_task(self._renew(entry_id))
        try:
            await asyncio.wait([task])
        finally:
            renew.cancel()
            self._running.pop(job_id, None)
        if task.cancelled() and self._stopping.is_set():
            return  # handed back: the entry stays pending and another dispatcher resumes the job
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
