"""What every job's plan shares: its context (request, owner, services, deadlines, checkpoints),
typed failures, and writing outputs to storage."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from opentelemetry.trace import Status, StatusCode

from gateway import folders
from gateway.ledger import Ledger, NotOwner, Progress, progress_event
from gateway.metrics import STAGE_DURATION
from gateway.pricing import PriceTable
from gateway.stages import StageClients
from gateway.validation import Limits, check_image
from render.generation.v1 import generation_service_pb2 as generation_pb
from render.imaging.v1 import imaging_pb2
from render.v1 import render_service_pb2 as pb
from renderkit import imaging, telemetry
from renderkit.errors import error_metadata, error_reason, status_details, unpack_detail
from renderkit.fetch import DownloadError, FetchPolicy, fetch_async
from renderkit.storage import Storage, StorageError, StorageMissing
from renderkit.storage.together import put_all

log = logging.getLogger(__name__)
M = TypeVar("M", bound=Message)
T = TypeVar("T")

_FORMATS = {
    pb.IMAGE_FORMAT_UNSPECIFIED: imaging_pb2.FORMAT_JPEG,
    pb.IMAGE_FORMAT_JPEG: imaging_pb2.FORMAT_JPEG,
    pb.IMAGE_FORMAT_PNG: imaging_pb2.FORMAT_PNG,
    pb.IMAGE_FORMAT_WEBP: imaging_pb2.FORMAT_WEBP,
}
_STAGE_LABELS: dict[int, str] = {
    pb.STAGE_SEGMENTATION: "segmentation",
    pb.STAGE_DEPTH: "depth",
    pb.STAGE_PROJECTION: "projection",
    pb.STAGE_GENERATION: "generation",
}
# What a job failed by a storage that is away (a read or a checkpoint's write) says: not its fault.
_STORAGE_AWAY = "the storage was unavailable; submit the job again in a moment"
# Checkpoints larger than this go to storage; Redis keeps their key.
_INLINE_CHECKPOINT_BYTES = 512 * 1024
# How many of one job's input images are fetched, and of its outputs stored, at the same time.
INPUTS_AT_ONCE = 3
UPLOADS_AT_ONCE = 4
PREVIEW_SIDE = 512


class JobFailure(Exception):
    """Ends a job with a typed error.

    `stage_field` is the field of a stage's own request that the stage's refusal named (its
    BadRequest), "" when none: the plan that built the request knows which public field it came
    from, and names that instead (a stage's names mean nothing to the job's submitter)."""

    def __init__(self, code: int, message: str, stage_field: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.stage_field = stage_field


def stage_label(stage: int) -> str:
    """A stage's name in messages ("segmentation")."""
    return _STAGE_LABELS.get(stage, "a")


# Codes a stage answers with while it restarts, drains or waits for its own dependency (Triton):
# the call is retried, with backoff, until the job's budget is spent. A stage that attaches an
# ErrorInfo reason (a provider that refused, a budget) has given a typed answer: never retried.
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
_BACKOFF_START_S = 0.1
_BACKOFF_MAX_S = 2.0
# A stage process that stops while it works on a job's call (killed, crashed, out of memory) is
# asked again: once is a restart or a deploy, or another request's doing. A call the stage stopped
# under is sent again alone among such calls; a stage that stops under it alone this many times was
# stopped by the request itself (an input that crashes a decoder, memory the budget did not
# foresee): asked again until the job's budget ran out, it would take the stage down again and
# again under every other job.
MAX_STOPS_ALONE = 2
# The steps announced before a stage call with no checkpoint are written while it runs once it has
# run this long: a call answered sooner (a dry run's report) leaves them to the job's next write,
# one Redis round trip (a script, an fsync, its notices) fewer; a watcher sees them with that write.
STEPS_HELD_S = 0.02


def retryable(stage: int, exc: grpc.aio.AioRpcError) -> bool:
    """Whether a failed stage call should be tried again. Never a generation call: calls wait for
    the stage to be ready before they are sent, so an UNAVAILABLE there means the stage stopped in
    the middle of a provider call, which may have been charged."""
    return stage != pb.STAGE_GENERATION and exc.code() in _RETRYABLE and error_reason(exc) is None


def asked_again_after_deadline(stage: int, exc: grpc.aio.AioRpcError) -> bool:
    """Whether a stage call that ran past its deadline is asked once more: a model-free or model
    stage's answer is a pure function of its request, and a replica that hangs (a frozen VM, a
    wedged thread) is worth one more try, which the channel may send to another replica. Not a
    generation call (it may have been charged)."""
    return stage != pb.STAGE_GENERATION and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def stopped_during_call(exc: grpc.aio.AioRpcError) -> bool:
    """Whether a call to a connected stage failed because the stage stopped under it: UNAVAILABLE
    from the transport (a stage that answers UNAVAILABLE itself, its Triton away or draining, sends
    its status's details, as renderkit.errors.abort always does)."""
    return exc.code() == grpc.StatusCode.UNAVAILABLE and status_details(exc.trailing_metadata()) is None  # type: ignore[arg-type]


def failure_from_rpc(stage: int, exc: grpc.aio.AioRpcError, timeout_s: float, asked: int = 1) -> JobFailure:
    """The job error a failed stage call stands for (asked: how many times the call was sent)."""
    label = stage_label(stage)
    reason = error_reason(exc)
    if reason and f"ERROR_CODE_{reason}" in pb.ErrorCode.keys():  # noqa: SIM118 (the wrapper is not iterable)
        return JobFailure(pb.ErrorCode.Value(f"ERROR_CODE_{reason}"), exc.details() or f"the {label} stage failed")
    code = exc.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        twice = " (asked twice)" if asked == 2 else ""
        return JobFailure(pb.ERROR_CODE_TIMEOUT, f"the {label} stage did not answer within {timeout_s:g} s{twice}")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
        refused = unpack_detail(status_details(exc.trailing_metadata()), error_details_pb2.BadRequest)  # type: ignore[arg-type]
        violations = refused.field_violations if isinstance(refused, error_details_pb2.BadRequest) else []
        return JobFailure(
            pb.ERROR_CODE_VALIDATION_FAILED,
            exc.details() or f"the {label} stage refused the input",
            violations[0].field if violations else "",
        )
    if stage == pb.STAGE_GENERATION and code in _RETRYABLE:
        return JobFailure(
            pb.ERROR_CODE_PIPELINE_ERROR,
            "the generation stage stopped during the image provider's call; it was not repeated, "
            "since the call may have been charged",
        )
    if code == grpc.StatusCode.UNAVAILABLE:
        return JobFailure(pb.ERROR_CODE_PIPELINE_ERROR, f"the {label} stage is unavailable")
    return JobFailure(pb.ERROR_CODE_PIPELINE_ERROR, f"the {label} stage failed")


@dataclass
class JobContext:
    """What one run of a job needs: its request, its owner's identity and the services.

    The steps a plan announces (step, detail) are recorded together, in one ledger round trip,
    when the job next waits for something: before a stage call, a checkpoint, an input's read or
    download and the outputs' write (flush), and with the job's end (the dispatcher takes them with
    unwritten). Steps with nothing to wait for between them cost one write, not one each. A plan
    that awaits anything else after announcing a step calls flush first.
    """

    job_id: str
    owner: str
    tenant: str
    request: pb.SubmitRenderRequest
    inputs: dict[str, str]
    ledger: Ledger
    storage: Storage
    stages: StageClients
    fetch_policy: FetchPolicy
    limits: Limits
    default_stage_timeout_s: float
    deadline: float  # event-loop time
    geometry_cache_version: str = "1"
    geometry_cache_s: float = 0.0
    generation_timeout_s: float = 180.0
    max_tokens: int = 10000  # the server's per-job caps on provider spending
    max_cents: float = 100.0
    prices: PriceTable | None = None  # the credit prices (None: credits off), for a batch's cancel
    total_steps: int = 0
    reused: set[str] = field(default_factory=set)
    spent: pb.Cost = field(default_factory=pb.Cost)
    # The job's checkpoints as stored when this run began, kept current as it saves more: a run
    # owns its job, so nothing else writes them meanwhile (and the ledger refuses a stale owner).
    checkpoints: dict[str, bytes] = field(default_factory=dict)
    # The bytes of inputs its submit stored, by storage key, when the submit started the job here:
    # each is used once instead of being read back (from a bucket, a round trip each).
    held: dict[str, bytes] = field(default_factory=dict)
    # What an earlier run left: a step found here is "resumed from checkpoint".
    restored: frozenset[str] = field(init=False)
    # Whether this run may have written a file under work/<job>/ (set before the write).
    wrote_work: bool = False
    wrote_outputs: bool = False  # this run stored outputs (under outputs_folder)
    # Steps announced and not yet recorded, and the lock that keeps one write of them at a time
    # (a plan's concurrent stage calls flush too): two of a job's transitions in flight at once
    # could apply a retried one after the other. A write refused (NotOwner) is kept: the job is no
    # longer this dispatcher's, whichever of its flushes asks.
    _unwritten: list[Progress] = field(default_factory=list, init=False)
    _writing: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _refused: NotOwner | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.restored = frozenset(self.checkpoints)

    def stage_timeout(self, stage: int) -> float:
        """The deadline of a stage call: the stage budget, capped by what is left of the job's."""
        options = self.request.material_swap.options
        if options.HasField("stage_timeout_seconds"):
            budget = options.stage_timeout_seconds
        elif stage == pb.STAGE_GENERATION:
            budget = self.generation_timeout_s
        else:
            budget = self.default_stage_timeout_s
        left = self.deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise JobFailure(pb.ERROR_CODE_TIMEOUT, "the job ran out of time")
        return min(budget, left)

    def spend(self, cost: generation_pb.Cost) -> None:
        """Adds a provider call's cost to what the job has spent."""
        self.spent.tokens += cost.tokens
        self.spent.cents += cost.cents

    async def step(self, step: int, stage: int, text: str, checkpoint: str = "") -> None:
        """Announces a step ("Step 2/4: estimating geometry"), saying so when a checkpoint replaces it."""
        message = f"Step {step}/{self.total_steps}: {text}"
        if checkpoint in self.reused:
            message += " (reused from an earlier render of this photo)"
        elif checkpoint in self.restored:
            message += " (resumed from checkpoint)"
        await self._event(step, stage, message, done=False)

    async def detail(self, step: int, stage: int, text: str) -> None:
        """Reports what a finished step found (stage progress 1), as "Step 2/4: plane from the quad ..."."""
        await self._event(step, stage, f"Step {step}/{self.total_steps}: {text}", done=True)

    async def _event(self, step: int, stage: int, message: str, done: bool) -> None:
        self._unwritten.append(
            progress_event(
                self.job_id,
                stage=stage,
                step=step,
                total_steps=self.total_steps,
                progress=(step if done else step - 1) / self.total_steps,
                stage_progress=1.0 if done else 0.0,
                message=message,
            )
        )

    async def flush(self) -> None:
        """Records the steps announced since the last write, in one transition; returns once
        every step announced so far is recorded (a write of them still under way, too). Once a
        write has been refused (the job is no longer this dispatcher's), every flush raises that."""
        if not self._unwritten and not self._writing.locked() and self._refused is None:
            return
        async with self._writing:
            if self._refused is not None:
                raise self._refused
            steps, self._unwritten = self._unwritten, []
            if steps:
                try:
                    await self.ledger.record_progress(self.job_id, self.owner, *steps)
                except NotOwner as exc:
                    self._refused = exc
                    raise

    async def unwritten(self) -> list[Progress]:
        """The steps not yet recorded, taken for the job's end to write before it (once a write
        still under way has finished: the end must not be in flight beside it)."""
        async with self._writing:
            steps, self._unwritten = self._unwritten, []
        return steps

    async def call(
        self,
        stage: int,
        name: str,
        kind: type[M],
        rpc: Callable[[float], Awaitable[M]],
        *,
        checkpoint: bool = True,
        may_charge: bool | None = None,
    ) -> M:
        """A stage call with its deadline, its output checkpointed (and reused when resuming).

        The steps announced before it are written first when the call may be charged (by default a
        generation stage's: the write is also the check that the job is still this dispatcher's,
        so a job taken over is not paid for twice), and while it runs otherwise (both have finished
        when this returns), except that a call with no checkpoint answered within STEPS_HELD_S
        leaves them to the job's next write.

        `checkpoint=False` is for an answer the job stores straight away as its outputs: a checkpoint
        would store the same bytes a second time (an upload of the whole render, to save redoing
        the call only if the dispatcher dies in the moment between the answer and the job's end),
        and for an answer that costs nothing to ask for again (a generation dry run's report). A
        checkpoint from an earlier run is still used.

        A stage that is unavailable (restarting, draining, its Triton down) is retried with
        exponential backoff and jitter (the channel balances over the stage's replicas, so a retry
        may land on another one) until the job's budget is spent; then the job fails with TIMEOUT
        naming the stage. A call past its stage deadline is asked once more (not a generation
        call), then fails the job with TIMEOUT.
        """
        saved = await self._load_checkpoint(name)
        if saved is not None:
            message = kind()
            message.ParseFromString(saved)
            return message
        if may_charge is None:
            may_charge = stage == pb.STAGE_GENERATION
        if may_charge:
            await self.flush()
        label = stage_label(stage)
        started = time.monotonic()
        outcome = "failed"
        with telemetry.tracer().start_as_current_span(f"stage {label}", attributes={telemetry.STAGE: label}) as span:
            try:
                calling = self._call_with_retries(stage, rpc)
                # A checkpointed answer's write flushes the steps at once anyway: they are held
                # (STEPS_HELD_S) only where no write follows the call.
                hold = 0.0 if checkpoint else STEPS_HELD_S
                response = await (calling if may_charge else self._beside_steps(calling, hold))
                outcome = "ok"
            except JobFailure as failure:
                span.set_status(Status(StatusCode.ERROR, failure.message))
                raise
            finally:
                STAGE_DURATION.record(time.monotonic() - started, {"stage": label, "outcome": outcome})
        if checkpoint:
            await self.save_checkpoint(name, response.SerializeToString())
        return response

    async def _beside_steps(self, work: Awaitable[T], hold: float = STEPS_HELD_S) -> T:
        """work's result, with the steps announced before it written meanwhile once it has taken
        `hold` (at once when 0); work done sooner leaves them to the next write (the next call's or the
        job's end, which writes them first). The write is never cut short, and its refusal (the
        job is no longer this dispatcher's) comes first: a job taken over or cancelled reports
        nothing of its own. Should the work fail while the write cannot reach the ledger, the
        work's failure is what the job reports."""
        # The work runs in this task and a timer starts the write: a task of its own for the work
        # and an asyncio.wait on it (a future, a timer and callbacks more) cost a dry-run job ~40k
        # of the gateway's ~4.7M instructions (docs/benchmarks.md, "A dry-run job's path, counted").
        loop = asyncio.get_running_loop()
        writes: list[asyncio.Task[None]] = []

        def start_writing() -> None:
            writes.append(loop.create_task(self.flush()))

        timer = loop.call_later(hold, start_writing) if hold > 0 else None
        if timer is None:
            start_writing()
        try:
            result = await work
        except BaseException as exc:
            if timer is not None:
                timer.cancel()
            if writes:
                await asyncio.wait(writes)
                refused = None if writes[0].cancelled() else writes[0].exception()
                if isinstance(refused, NotOwner) and not isinstance(exc, asyncio.CancelledError):
                    raise refused from None
            raise
        if timer is not None:
            timer.cancel()
        if writes:
            await writes[0]
        return result

    async def _call_with_retries(self, stage: int, rpc: Callable[[float], Awaitable[M]]) -> M:
        """The stage's answer, retried while it is unavailable within the job's budget."""
        delay = _BACKOFF_START_S
        waiting_since: float | None = None
        loop = asyncio.get_running_loop()
        if stage == pb.STAGE_GENERATION:
            await self._wait_for_generation()
        deadline_missed = False
        label = stage_label(stage)
        stops = alone = 0  # the stage stopped under this call; of those, while it was sent alone
        while True:
            timeout = self.stage_timeout(stage)
            # Once the stage has stopped under it, the call is sent again alone among the calls it
            # stopped under (a stop ends every call in flight on the replica, each as suspect as
            # the next): a stop then is this call's own.
            quarantine = self.stages.quarantine(label) if stops else contextlib.nullcontext()
            async with quarantine:
                connected = self.stages.connected(label)
                try:
                    response = await rpc(timeout)
                    break
                except grpc.aio.AioRpcError as failed:
                    exc = failed
            if connected and retryable(stage, exc) and stopped_during_call(exc):
                alone += 1 if stops else 0
                stops += 1
                log.warning("job %s: the %s stage stopped during its call", self.job_id, label)
                if alone >= MAX_STOPS_ALONE:
                    raise JobFailure(
                        pb.ERROR_CODE_PIPELINE_ERROR,
                        f"the {label} stage stopped {stops} times while it worked on this job, {alone} of them "
                        "with this job's call sent alone; it was not asked again",
                    ) from None
            if asked_again_after_deadline(stage, exc) and not deadline_missed:
                deadline_missed = True
                log.warning(
                    "job %s: the %s stage did not answer within %g s; asking once more",
                    self.job_id,
                    label,
                    timeout,
                )
                continue
            if not retryable(stage, exc):
                self._count_spent(exc)
                raise failure_from_rpc(stage, exc, timeout, asked=2 if deadline_missed else 1) from None
            if waiting_since is None:
                waiting_since = loop.time()
                log.warning("job %s: the %s stage is unavailable; retrying", self.job_id, stage_label(stage))
            pause = delay * random.uniform(0.5, 1.5)
            if self.deadline - loop.time() <= pause:
                waited = loop.time() - waiting_since
                raise JobFailure(
                    pb.ERROR_CODE_TIMEOUT,
                    f"the job ran out of time: the {stage_label(stage)} stage was unavailable for {waited:.0f} s",
                ) from None
            await asyncio.sleep(pause)
            delay = min(delay * 2, _BACKOFF_MAX_S)
        if waiting_since is not None:
            log.info(
                "job %s: the %s stage answered after %.1f s",
                self.job_id,
                stage_label(stage),
                loop.time() - waiting_since,
            )
        return response

    def _count_spent(self, exc: grpc.aio.AioRpcError) -> None:
        """What a failed stage call's providers spent (the generation stage says so in its error's
        ErrorInfo), added to the job's spending: a job that fails for the caller's reason after a
        billed call (over its budget once a blank image was paid for) is charged it."""
        with contextlib.suppress(ValueError):
            cents = float(error_metadata(exc).get("spent_cents", "0"))
            if math.isfinite(cents) and cents > 0:
                self.spent.cents += cents

    async def _wait_for_generation(self) -> None:
        """Waits, within the job's budget, until the generation stage can be reached: its calls are
        never repeated (they may have been charged), so none is sent while it is down."""
        left = self.deadline - asyncio.get_running_loop().time()
        if not await self.stages.wait_ready("generation", max(left, 0.0)):
            raise JobFailure(pb.ERROR_CODE_TIMEOUT, "the job ran out of time: the generation stage was unavailable")

    async def _load_checkpoint(self, name: str) -> bytes | None:
        value = self.checkpoints.get(name)
        if value is None:
            return None
        if value.startswith(b"storage:"):
            await self.flush()
            try:
                return await asyncio.to_thread(self.storage.get, value[8:].decode())
            except StorageMissing:  # (not made again: a generation call is never repeated, it may be charged)
                log.warning("job %s: its checkpoint %s is missing from storage", self.job_id, name)
                raise JobFailure(
                    pb.ERROR_CODE_PIPELINE_ERROR, "the job's saved work is gone; submit it again"
                ) from None
            except StorageError as exc:
                log.warning("job %s: storage failed: %s", self.job_id, exc)
                raise JobFailure(pb.ERROR_CODE_PIPELINE_ERROR, _STORAGE_AWAY) from None
        return value

    async def save_checkpoint(self, name: str, value: bytes) -> None:
        """Stores a stage's output as a checkpoint of the job (kept inline, or in storage when large)."""
        await self.flush()
        if len(value) > _INLINE_CHECKPOINT_BYTES:
            key = f"{folders.work(self.job_id)}{name}.pb"
            self.wrote_work = True
            try:
                await finish_even_if_cancelled(
                    asyncio.to_thread(self.storage.put, key, value, "application/x-protobuf")
                )
            except StorageError as exc:
                log.warning("job %s: storage failed: %s", self.job_id, exc)
                raise JobFailure(pb.ERROR_CODE_UPLOAD_FAILED, _STORAGE_AWAY) from None
            value = b"storage:" + key.encode()
        await self.ledger.save_checkpoint(self.job_id, self.owner, name, value)
        self.checkpoints[name] = value

    async def image_inputs(self, wanted: Sequence[tuple[str, pb.ImageSource, int]]) -> list[bytes]:
        """Several inputs' bytes (field path, source, least side), in order, read or downloaded
        together (each download or storage read is a round trip of its own), INPUTS_AT_ONCE at a
        time: a job with many URLs does not take every download thread. The first that fails fails
        the job; the others stop waiting (a download already under way runs on in its thread until
        it ends or times out: threads cannot be stopped)."""
        gate = asyncio.Semaphore(INPUTS_AT_ONCE)

        async def one(path: str, source: pb.ImageSource, min_side: int) -> bytes:
            async with gate:
                return await self.image_input(path, source, min_side)

        return await together(*(one(path, source, min_side) for path, source, min_side in wanted))

    async def image_input(self, field_path: str, source: pb.ImageSource, min_side: int) -> bytes:
        """An input image's bytes: uploaded at submit (handed over by it, else read back), or
        downloaded once (then kept as a checkpoint)."""
        if field_path in self.inputs:
            held = self.held.pop(self.inputs[field_path], None)
            if held is not None:
                return held
        await self.flush()
        if field_path in self.inputs:
            try:
                return await asyncio.to_thread(self.storage.get, self.inputs[field_path])
            except StorageMissing:
                log.warning("job %s: uploaded %s is missing from storage", self.job_id, field_path)
                raise JobFailure(pb.ERROR_CODE_PIPELINE_ERROR, f"{field_path}: the uploaded image is gone") from None
            except StorageError as exc:  # the storage away (past STORAGE_RETRY_SECONDS): the image may be there
                log.warning("job %s: storage failed: %s", self.job_id, exc)
                raise JobFailure(pb.ERROR_CODE_PIPELINE_ERROR, f"{field_path}: {_STORAGE_AWAY}") from None
        saved = await self._load_checkpoint(f"input:{field_path}")
        if saved is not None:
            return saved
        try:
            # The downloads' own pool: slow servers cannot starve the loop's default executor.
            data = await fetch_async(source.url, self.fetch_policy)
        except DownloadError as exc:
            raise JobFailure(pb.ERROR_CODE_DOWNLOAD_FAILED, f"{field_path}.url: {exc}") from None
        problems, _ = await asyncio.to_thread(check_image, data, f"{field_path}.url", self.limits, min_side)
        if problems:
            raise JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, f"{problems[0][0]}: {problems[0][1]}")
        await self.save_checkpoint(f"input:{field_path}", data)
        return data


async def together(*steps: Awaitable[T]) -> list[T]:
    """The results of steps run concurrently, in order. The first to fail cancels the others, and
    its error is raised once they have stopped (asyncio.gather would leave them running)."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def finish_even_if_cancelled(work: Awaitable[T]) -> T:
    """Awaits work in a thread (a storage write). Cancelled, it waits for the thread to finish
    before the cancellation goes on: the write cannot be stopped, and a job's clean-up after it
    must find what the write left (or a file would land after the job's work folder was deleted)."""
    future = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise


def budget_for(ctx: JobContext, requested: pb.Budget) -> generation_pb.Budget:
    """What the job may still spend: its budget (the server's caps unless it set lower ones) less what
    it has spent."""
    tokens = requested.max_tokens if requested.HasField("max_tokens") else ctx.max_tokens
    cents = requested.max_cents if requested.HasField("max_cents") else ctx.max_cents
    return generation_pb.Budget(
        max_tokens=max(tokens - ctx.spent.tokens, 0), max_cents=max(cents - ctx.spent.cents, 0.0)
    )


def generation_report(call: generation_pb.ProviderCall, ctx: JobContext) -> pb.GenerationReport:
    """A provider call as the job's result reports it, with what the whole job spent."""
    return pb.GenerationReport(
        prompt=call.prompt,
        revised_prompt=call.revised_prompt,
        provider=call.provider,
        model=call.model,
        cost=pb.Cost(tokens=ctx.spent.tokens, cents=round(ctx.spent.cents, 4)),
        estimated_cost=pb.Cost(tokens=call.estimated_cost.tokens, cents=call.estimated_cost.cents),
        dry_run=call.dry_run,
        attempts=[pb.ProviderAttempt(provider=a.provider, outcome=a.outcome, detail=a.detail) for a in call.attempts],
    )


def output_spec(options: pb.OutputOptions) -> imaging_pb2.OutputSpec:
    """The renditions a job writes: full size, the 512 px preview unless skipped, 2048 px on request."""
    renditions = [imaging_pb2.Rendition(name="full", max_side=0)]
    if options.include_2048:
        renditions.append(imaging_pb2.Rendition(name="2048", max_side=2048))
    if not options.skip_preview:
        renditions.append(imaging_pb2.Rendition(name="preview", max_side=PREVIEW_SIDE))
    return imaging_pb2.OutputSpec(format=_FORMATS[options.format], quality=options.quality, renditions=renditions)


def named(images: Sequence[imaging_pb2.EncodedImage], prefix: str) -> list[imaging_pb2.EncodedImage]:
    """The images with their names prefixed (a variant's "v1-"), renamed in place: they are a
    stage's answer the job owns, and a copy of each would copy its bytes too (a 4K render's ~1 MB,
    on the event loop, into freshly faulted pages, between the answer and the outputs' write)."""
    if prefix:
        for image in images:
            image.name = prefix + image.name
    return list(images)


async def write_outputs(ctx: JobContext, images: list[imaging_pb2.EncodedImage]) -> list[pb.OutputFile]:
    """Stores renditions at renders/{tenant}/{project or "-"}/{job_id}/{name}.{ext}. When one cannot
    be stored the job fails with UPLOAD_FAILED and those already stored are deleted: a job's outputs
    are all there or none is (and a job cancelled as it ended keeps none: the dispatcher deletes
    what its run stored)."""
    if images:
        await ctx.flush()
    with telemetry.tracer().start_as_current_span("storage write", attributes={"render.files": len(images)}) as span:
        try:
            outputs = await _write_outputs(ctx, images)
        except JobFailure as failure:
            span.set_status(Status(StatusCode.ERROR, failure.message))
            raise
        # From what was stored: each read of a bytes field copies it, here on the event loop.
        span.set_attribute("render.bytes", sum(output.size_bytes for output in outputs))
        return outputs


def outputs_folder(ctx: JobContext) -> str:
    """Where the job's outputs are stored: renders/{tenant}/{project or "-"}/{job_id}/."""
    return folders.outputs(ctx.tenant, ctx.request.project_id, ctx.job_id)


async def _write_outputs(ctx: JobContext, images: list[imaging_pb2.EncodedImage]) -> list[pb.OutputFile]:
    folder = outputs_folder(ctx)
    items = [
        (
            f"{folder}{image.name}.{imaging.EXTENSIONS[image.content_type]}",
            lambda image=image: image.data,  # type: ignore[misc]
            image.content_type,
        )
        for image in images
    ]
    # From here outputs may be stored, even should the job be cancelled meanwhile: the writes
    # finish before a cancellation goes on, so the dispatcher's clean-up finds all they left.
    ctx.wrote_outputs = True
    try:
        stored = await finish_even_if_cancelled(put_all(ctx.storage, items, UPLOADS_AT_ONCE))
    except StorageError as exc:
        log.warning("job %s: storage failed: %s", ctx.job_id, exc)
        raise JobFailure(pb.ERROR_CODE_UPLOAD_FAILED, "the render could not be stored") from None
    return [
        pb.OutputFile(
            name=image.name,
            uri=result.uri,
            size_bytes=result.size_bytes,
            content_type=result.content_type,
            sha256=result.sha256,
            width=image.width,
            height=image.height,
        )
        for image, result in zip(images, stored, strict=True)
    ]
