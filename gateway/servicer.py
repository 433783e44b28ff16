"""render.v1.RenderService: validate, record in the ledger, stream progress. Every call is
authenticated before it gets here (gateway/auth); the tenant is the credential's."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import grpc

from gateway import folders
from gateway.assets import SWEPT_RETRY_S, AssetRefused, AssetStore, image_info
from gateway.auth.principal import Principal, Scope, current_principal
from gateway.batch import CANCEL_HOLD_S, cancelled_outcome, room_places, submitted_children
from gateway.ledger import (
    AssetBeingSwept,
    AssetQuotaExceeded,
    CreditEntry,
    InsufficientCredits,
    Ledger,
    LimitError,
    NewJob,
    QueueFull,
    QuotaExceeded,
    RateLimited,
    StoredAsset,
    StoredJob,
    is_cursor,
)
from gateway.ledger.jobs import Submitted, new_job_id, timestamp
from gateway.links import OutputLinks
from gateway.metrics import CREDITS_MOVED, JOBS_ENDED, count_cancel
from gateway.pricing import Price, PriceTable, price_of
from gateway.requests import image_fields, plan_steps
from gateway.settings import WebhookSettings
from gateway.uploads import UnrecordedUploads, drop_uploads, upload_inputs
from gateway.validation import Assets, Limits, Violation, named_asset_problems, too_many_entries, validate_submit
from gateway.watch import CursorPastEnd, CursorRefused, EventHub, EventsUnreadable, JobGone, ServerDraining
from gateway.webhooks import events as webhook_events
from gateway.webhooks.api import WebhookMethods
from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from renderkit import telemetry
from renderkit.errors import abort, bad_request, precondition_failure, retry_info
from renderkit.storage import Storage, StorageMissing

if TYPE_CHECKING:
    from gateway.dispatcher import Dispatcher

log = logging.getLogger(__name__)

OUTPUT_CHUNK_BYTES = 256 * 1024

_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
# A watched job that no longer exists: past its retention, or lost by a Redis without its data.
_JOB_GONE = "the job no longer exists: it expired, or the job ledger lost it"
_EVENTS_UNREADABLE = "the job's events could not be read"
_CREDENTIAL_ENDED = "the credential this stream was opened with was revoked or has expired"


def fingerprint(request: pb.SubmitRenderRequest) -> str:
    """A digest of a request's content, to tell a retry from a different request with a reused key."""
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


def _checked(
    request: pb.SubmitRenderRequest, limits: Limits, assets: Assets, keyed: bool
) -> tuple[list[Violation], str]:
    """The request's problems, and its fingerprint when it has an idempotency key: only such a
    request can repeat, and serializing and hashing a 4K photo's bytes cost ~0.4 ms (tens of
    milliseconds at the request limit)."""
    violations = validate_submit(request, limits, assets)
    return violations, fingerprint(request) if keyed and not violations else ""


async def _refuse(
    exc: InsufficientCredits | QueueFull | LimitError,
    tenant: str,
    context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
) -> None:
    """Ends a submit the ledger refused: FAILED_PRECONDITION with the balance for credits, else
    RESOURCE_EXHAUSTED with when to retry."""
    if isinstance(exc, InsufficientCredits):
        await abort(
            context,
            grpc.StatusCode.FAILED_PRECONDITION,
            f"tenant {tenant} has {exc.balance} credits; this job's price is up to {exc.price}",
            precondition_failure("CREDITS", f"tenant/{tenant}", f"balance {exc.balance}, price {exc.price}"),
        )
    message, delay = _shed(exc, tenant)
    await abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, message, retry_info(delay))


def _shed(exc: QueueFull | LimitError, tenant: str) -> tuple[str, float]:
    """What a submit refused for load says, and when to retry."""
    if isinstance(exc, RateLimited):
        return f"tenant {tenant} is over its request rate; retry in {exc.retry_after_s:.2f} s", exc.retry_after_s
    if isinstance(exc, QuotaExceeded):
        return f"tenant {tenant} has {exc.quota} unfinished jobs, its quota; retry when some have ended", 5.0
    return "the render queue is full; retry later", 5.0  # its size is the operator's, not the caller's


class RenderServicer(WebhookMethods, pb_grpc.RenderServiceServicer):
    """The public API (the webhook methods come from gateway/webhooks/api.py)."""

    def __init__(
        self,
        ledger: Ledger,
        storage: Storage,
        limits: Limits,
        hub: EventHub,
        prices: PriceTable | None = None,
        *,
        assets: AssetStore,
        links: OutputLinks,
        webhooks: WebhookSettings | None = None,
        dispatcher: Dispatcher | None = None,
        unrecorded: UnrecordedUploads | None = None,
        still_valid: Callable[[Principal], Awaitable[bool]] | None = None,
    ) -> None:
        # Whether a stream's credential still stands (Authenticator.still_valid): asked before each
        # message of a watch, which lasts as long as its job.
        self.still_valid = still_valid
        self.webhooks = webhooks or WebhookSettings()
        self.unrecorded = unrecorded  # the uploads of submits whose ledger write failed
        self.dispatcher = dispatcher  # this process's, when it dispatches: it may start a job at once
        self.ledger = ledger
        self.storage = storage
        self.limits = limits
        self.hub = hub
        self.prices = prices  # None: jobs cost nothing
        self.assets = assets
        self.links = links
        self._open_watches: collections.Counter[str] = collections.Counter()

    @staticmethod
    def _tenant() -> str:
        """The caller's tenant: the credential's (the authentication interceptor proved it), never
        anything the caller says."""
        return current_principal().tenant

    async def _job(self, job_id: str, tenant: str, context: grpc.aio.ServicerContext) -> StoredJob:  # type: ignore[type-arg]
        if not job_id:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "job_id is required",
                bad_request([("job_id", "is required")]),
            )
        if not _JOB_ID.match(job_id):
            # Never echoed: an id can be anything a caller sends, of any size.
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "job_id is not a job id",
                bad_request([("job_id", "must be 1-64 letters, digits, _ or -")]),
            )
        stored = await self.ledger.get(job_id)
        if stored is None or stored.tenant != tenant:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"job {job_id} not found")
        assert stored is not None
        return stored

    async def SubmitRender(
        self,
        request: pb.SubmitRenderRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.SubmitRenderResponse:
        return (await self._submit(request, context))[0]

    async def SubmitAndWatch(
        self,
        request: pb.SubmitAndWatchRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> AsyncIterator[pb.SubmitAndWatchResponse]:
        # The interceptor checked the render scope; following the job reads it.
        if not current_principal().may(Scope.READ):
            await abort(context, grpc.StatusCode.PERMISSION_DENIED, "this credential lacks the read scope")
        async with self._watching(self._tenant(), context):  # before the job is made
            if self.hub.draining:  # the watch would be refused: make no job its caller never hears of
                raise ServerDraining()
            # The new job's channel is followed as its submit is written (_submit, follow=True): the
            # SUBSCRIBE goes out beside the submit's script instead of after its round trip, and a
            # watch of a job whose submit found its channel followed reads nothing to catch up
            # (EventHub.follow_ahead).
            job_id = new_job_id()
            try:
                submitted, written, followed = await self._submit(request.request, context, job_id, follow=True)
                if self.hub.draining and written:
                    # The drain began while the job was being made: the job exists, so its caller
                    # must hear of it (its first event names it) before the stream ends UNAVAILABLE;
                    # the client then resumes as a watch elsewhere, from that cursor, instead of
                    # submitting again. (A duplicate writes nothing: its caller has a key, and a
                    # repeat finds it.)
                    yield pb.SubmitAndWatchResponse(event=written[0])
                    raise ServerDraining()
                follow = self._follow(
                    context,
                    submitted.job.id,
                    "",
                    outcome_only=request.outcome_only,
                    first_too=True,
                    written=written,
                    followed=followed,
                )
                async for event in follow:
                    yield (
                        pb.SubmitAndWatchResponse(keep_alive=True)
                        if event is None
                        else pb.SubmitAndWatchResponse(event=event)
                    )
            finally:
                # (Nothing left to do once the job's watch began: it ends what follow_ahead began.)
                self.hub.forget_ahead(job_id)

    async def _submit(
        self,
        request: pb.SubmitRenderRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        job_id: str = "",
        *,
        follow: bool = False,
    ) -> tuple[pb.SubmitRenderResponse, tuple[pb.JobEvent, ...], bool]:
        """The submit's answer, the events it wrote (to hand a watcher of the new job without
        reading them back; none for a duplicate), and whether it found the job's channel followed
        (Submitted.followed). `job_id`: the id a new job gets (drawn here when ""); `follow`: its
        channel is followed just before the submit's script is sent (EventHub.follow_ahead: the
        SUBSCRIBE and the script reach Redis together, one wake-up of it instead of two)."""
        tenant = self._tenant()
        # Fields this version does not know are dropped: the job keeps its request for days and
        # reads it back with every read of the job (megabytes of them were stored whole), and a
        # field no check here has seen must not reach a newer dispatcher that would honour it.
        request.DiscardUnknownFields()
        if crowded := too_many_entries(request):  # before anything walks the lists
            await self._invalid(context, [crowded])
        # Inline images are probed, checked and stored off the event loop; a request without them
        # is checked here and recorded in one ledger round trip (the script sees duplicates, the
        # limits, the queue and the credits itself). Uploaded assets are read with what their
        # upload probed (one more round trip, only for requests that name some).
        images = image_fields(request)
        inline = any(source.WhichOneof("source") == "data" for _, source in images)
        named = [(path, source.asset_id) for path, source in images if source.WhichOneof("source") == "asset_id"]
        if problems := named_asset_problems(named):  # before any is looked up
            await self._invalid(context, problems)
        ids = list(dict.fromkeys(asset_id for _, asset_id in named))
        # Drawn before the assets are read: each asset notes the job, and is kept while it has not ended.
        job_id = job_id or new_job_id()
        assets: dict[str, StoredAsset] = await self.assets.for_job(tenant, ids, job_id) if ids else {}
        infos = {asset_id: image_info(asset) for asset_id, asset in assets.items()}
        keyed = bool(request.idempotency_key)
        if inline:  # its images are probed, and digested for a key, off the loop
            violations, digest = await asyncio.to_thread(_checked, request, self.limits, infos, keyed)
        else:
            violations, digest = _checked(request, self.limits, infos, keyed)
        if violations:
            await self._invalid(context, violations)
        inputs: dict[str, str] = {
            path: assets[source.asset_id].storage_key
            for path, source in images
            if source.WhichOneof("source") == "asset_id"
        }
        # An inline request is stored without its images (upload_inputs, below).
        stored_request = b"" if inline else request.SerializeToString()
        price = price_of(request, self.prices, self.limits.max_cents_per_job) if self.prices else Price(0, 0)
        if inline:
            if request.idempotency_key:  # a repeat need not upload its images again
                existing = await self.ledger.job_for_key(tenant, request.idempotency_key)
                if existing is not None:
                    return await self._duplicate(existing, digest, context), (), False
            try:  # a submit that would be refused is not written to storage first
                await self.ledger.precheck(tenant, price.reserved)
            except (InsufficientCredits, QueueFull, LimitError) as exc:
                await _refuse(exc, tenant, context)
            stored_request, uploaded = await upload_inputs(self.storage, job_id, request)
            inputs.update(uploaded)
        new = NewJob(
            job_id=job_id,
            tenant=tenant,
            kind=request.WhichOneof("kind") or "",
            request=stored_request,
            inputs=inputs,
            fingerprint=digest,
            project_id=request.project_id,
            user_id=request.user_id,
            idempotency_key=request.idempotency_key,
            webhook_url=request.webhook.url,
            webhook_events=webhook_events.stored(request.webhook.events) if request.webhook.url else "",
            total_steps=plan_steps(request),
            credits_base=price.base,
            credits_reserved=price.reserved,
            room_places=room_places(request),
            # With tracing off no span is ever current in a call (only the tracing interceptor starts
            # one), and asking OpenTelemetry's context so was ~1 % of a submit's CPU.
            trace=telemetry.current_traceparent() if telemetry.tracing_enabled() else "",
        )

        def held() -> dict[str, bytes]:  # the inline images' bytes, for a job that starts here
            return {inputs[path]: source.data for path, source in images if source.WhichOneof("source") == "data"}

        if follow:
            self.hub.follow_ahead(job_id)
        try:
            # An inline submit was counted against the rate by its precheck.
            submitted = await self._record(new, held if inline else None, rate_limited=not inline)
        except (InsufficientCredits, QueueFull, LimitError) as exc:
            await asyncio.to_thread(drop_uploads, self.storage, job_id, inputs)
            await _refuse(exc, tenant, context)
        except BaseException:
            # The ledger away past its retries, or the caller gone mid-write: the job may have been
            # recorded with its reply lost (a retry with the same idempotency key then finds it),
            # and a job without its inputs would be worse than an upload kept a while. They are
            # deleted once the ledger says the job does not exist.
            if self.unrecorded is not None and folders.has_uploads(job_id, inputs):
                self.unrecorded.note(job_id)
            raise
        if submitted.duplicate:  # the key was used before (or a race with the same key was lost)
            await asyncio.to_thread(drop_uploads, self.storage, job_id, inputs)
            return await self._duplicate(submitted.job_id, digest, context), (), False
        log.debug("job %s submitted (tenant %s)", submitted.job_id, tenant)
        if price.reserved:
            CREDITS_MOVED.add(price.reserved, {"movement": "reserve"})
        # Its create_time as the ledger recorded it (Redis's clock), as GetJob will read it.
        return pb.SubmitRenderResponse(job=new.queued(submitted.created_ms)), submitted.written, submitted.followed

    async def _record(
        self, new: NewJob, held: Callable[[], dict[str, bytes]] | None = None, *, rate_limited: bool = True
    ) -> Submitted:
        """Submits the job to the ledger (its id, whether it is an earlier one with the same key,
        the events written). A job this gateway's dispatcher can start at once (a slot free,
        nothing queued, the tenant under its concurrency) starts here, with neither a wait in the
        queue nor a take, and is handed the inputs' bytes the submit stored (`held`, by storage
        key) instead of reading them back. If the ledger fails after starting it, the slot is given
        back and the job's lease runs out: the reaper puts it back for any dispatcher, as for one
        that died after a take. A caller gone meanwhile does not stop it (Dispatcher.submit_here)."""
        if self.dispatcher is None or not self.dispatcher.may_claim(new.kind):
            return await self.ledger.submit(new, rate_limited=rate_limited)
        return await self.dispatcher.submit_here(
            new.kind, lambda start_here: self.ledger.submit(new, rate_limited=rate_limited, start_here=start_here), held
        )

    async def _duplicate(
        self,
        job_id: str,
        digest: str,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.SubmitRenderResponse:
        stored = await self.ledger.get(job_id)
        if stored is None:
            await abort(context, grpc.StatusCode.ABORTED, "the job of this idempotency key is being written; retry")
        assert stored is not None
        if stored.fingerprint != digest:
            await abort(
                context,
                grpc.StatusCode.ALREADY_EXISTS,
                "idempotency_key was already used for a different request",
                bad_request([("idempotency_key", "was used for a different request")]),
            )
        return pb.SubmitRenderResponse(job=await self.links.fill_job_async(stored.job), deduplicated=True)

    async def GetJob(
        self,
        request: pb.GetJobRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.GetJobResponse:
        stored = await self._job(request.job_id, self._tenant(), context)
        return pb.GetJobResponse(job=await self.links.fill_job_async(stored.job))

    async def WatchJob(
        self,
        request: pb.WatchJobRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> AsyncIterator[pb.WatchJobResponse]:
        tenant = self._tenant()
        if request.after and not is_cursor(request.after):
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "after is not a cursor from this job's events",
                bad_request([("after", "must be an event cursor such as 1700000000000-0")]),
            )
        await self._job(request.job_id, tenant, context)
        try:
            async with self._watching(tenant, context):
                async for event in self._follow(
                    context, request.job_id, request.after, outcome_only=request.outcome_only
                ):
                    yield pb.WatchJobResponse(keep_alive=True) if event is None else pb.WatchJobResponse(event=event)
        except CursorRefused:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "after is not a cursor from this job's events",
                bad_request([("after", "must be an event cursor such as 1700000000000-0")]),
            )
        except CursorPastEnd:
            # The job ended at or before the cursor (when the watch began, or since): nothing will
            # ever follow, and the watch would wait out its deadline, or the job's retention. A
            # cursor past a running job's latest event is let be until then: after a Redis
            # failover that lost the latest events a client's cursor can be, and the events
            # written since come after it.
            await abort(
                context,
                grpc.StatusCode.OUT_OF_RANGE,
                "the job has ended and no event follows this cursor; GetJob returns it as it ended",
                bad_request([("after", "is at or past the ended job's last event")]),
            )

    @contextlib.asynccontextmanager
    async def _watching(
        self,
        tenant: str,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> AsyncIterator[None]:
        """Counts an open watch of the tenant on this replica, refusing one past the tenant's
        limit: each costs a queue and a stream, and one tenant's thousands must not fill the
        process for all."""
        limit = self.limits.max_watches_per_tenant
        if self._open_watches[tenant] >= limit:
            await abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this credential's tenant has {limit:,} watches open on this gateway, the most it may",
                retry_info(5.0),
            )
        self._open_watches[tenant] += 1
        try:
            yield
        finally:
            self._open_watches[tenant] -= 1
            if not self._open_watches[tenant]:
                del self._open_watches[tenant]

    async def _follow(
        self,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        job_id: str,
        after: str,
        *,
        outcome_only: bool = False,
        first_too: bool = False,
        written: tuple[pb.JobEvent, ...] = (),
        followed: bool = False,
    ) -> AsyncIterator[pb.JobEvent | None]:
        """A job's events after the cursor (all of them from ""; with outcome_only the terminal
        one, and with first_too the first too), and None for each keep-alive due, until it ends;
        the caller has checked that the job is its tenant's. `written`: the events its submit just
        wrote, and `followed`: whether it found the job's channel followed (EventHub.watch). (A
        response built with an unset event would mark it set: each caller builds its keep-alive
        without one.) A job gone meanwhile, or whose events Redis will not read, ends the call here;
        a cursor's own problems are the caller's to answer (WatchJob)."""
        principal = current_principal()
        watch = self.hub.watch(
            job_id, after, outcome_only=outcome_only, first_too=first_too, written=written, followed=followed
        )
        try:
            async for event in watch:
                if self.still_valid is not None and not await self.still_valid(principal):
                    await watch.aclose()  # its watcher leaves the hub now
                    await abort(context, grpc.StatusCode.UNAUTHENTICATED, _CREDENTIAL_ENDED)
                if event is not None and event.HasField("result"):
                    # The hub shares one message among every watcher of the job: each gets its own links.
                    event = pb.JobEvent.FromString(event.SerializeToString())
                    await self.links.fill_result_async(event.result)
                yield event
        except JobGone:
            await abort(context, grpc.StatusCode.NOT_FOUND, _JOB_GONE)
        except EventsUnreadable:
            await abort(context, grpc.StatusCode.INTERNAL, _EVENTS_UNREADABLE)

    async def CancelJob(
        self,
        request: pb.CancelJobRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.CancelJobResponse:
        tenant = self._tenant()
        current = await self._job(request.job_id, tenant, context)
        charge, result = None, None
        if current.job.kind == "room_batch" and current.job.state in (pb.JOB_STATE_RUNNING, pb.JOB_STATE_QUEUED):
            # Its rooms first, then what the rooms that ended report and cost, then the batch: a
            # room that rendered between the charge's read and its cancel kept its outputs for free.
            # Its run, finding its rooms ended meanwhile, waits for this cancel (CANCEL_HOLD_S).
            await self.ledger.cancelling(request.job_id, CANCEL_HOLD_S)
            await self._cancel_children(tenant, current)
            current = await self._job(request.job_id, tenant, context)
            charge, result = await cancelled_outcome(self.ledger, self.prices, tenant, current)
        cancelled = await self.ledger.cancel(request.job_id, charge, result)
        if cancelled:
            log.info("job %s cancelled", request.job_id)
        # (Again for a batch: a room it submitted since.)
        await self._cancel_children(tenant, current)
        stored = await self._job(request.job_id, tenant, context)
        if cancelled:  # its end, its charge (by its state) and refund, and its time
            count_cancel(stored.job, stored.credits_reserved)
        return pb.CancelJobResponse(job=await self.links.fill_job_async(stored.job))

    async def _cancel_children(self, tenant: str, current: StoredJob) -> None:
        """Cancels the job's children that have not ended (a batch's rooms, a room submitted but
        not yet recorded too)."""
        job_id = current.job.id
        if current.job.kind == "room_batch":
            children = await submitted_children(self.ledger, tenant, job_id, current.job.total_steps)
        else:
            children = list((await self.ledger.children(job_id)).values())
        for child_id in children:
            if await self.ledger.cancel(child_id):
                log.info("job %s cancelled with its batch %s", child_id, job_id)
                JOBS_ENDED.add(1, {"kind": "room_render", "state": "cancelled", "error_code": ""})

    async def ListJobs(
        self,
        request: pb.ListJobsRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.ListJobsResponse:
        tenant = self._tenant()
        if not 0 <= request.page_size <= 100:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "page_size must be between 0 and 100",
                bad_request([("page_size", "must be between 0 and 100")]),
            )
        token = None
        if request.page_token:
            try:
                score, job_id = base64.urlsafe_b64decode(request.page_token.encode()).decode().split("|", 1)
                token = (int(score), job_id)
            except ValueError:
                await abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "page_token is not from a previous page",
                    bad_request([("page_token", "must be a next_page_token from ListJobs")]),
                )
        jobs, position = await self.ledger.list_jobs(tenant, request.page_size or 20, token, request.project_id)
        next_token = base64.urlsafe_b64encode(f"{position[0]}|{position[1]}".encode()).decode() if position else ""
        return pb.ListJobsResponse(jobs=await self.links.fill_jobs(jobs), next_page_token=next_token)

    async def GetBalance(
        self,
        request: pb.GetBalanceRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.GetBalanceResponse:
        balance, reserved = await self.ledger.balance(self._tenant())
        return pb.GetBalanceResponse(balance=balance, reserved=reserved)

    async def ListCreditEntries(
        self,
        request: pb.ListCreditEntriesRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.ListCreditEntriesResponse:
        if not 0 <= request.page_size <= 100:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "page_size must be between 0 and 100",
                bad_request([("page_size", "must be between 0 and 100")]),
            )
        if request.page_token and not is_cursor(request.page_token):
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "page_token is not from a previous page",
                bad_request([("page_token", "must be a next_page_token from ListCreditEntries")]),
            )
        entries, following = await self.ledger.credit_entries(
            self._tenant(), request.page_size or 20, request.page_token
        )
        return pb.ListCreditEntriesResponse(entries=[credit_entry(e) for e in entries], next_page_token=following)

    async def UploadAsset(
        self,
        request: pb.UploadAssetRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.UploadAssetResponse:
        tenant = self._tenant()
        try:
            asset = await self.assets.upload(tenant, request.data, request.name)
        except AssetRefused as exc:
            await abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"invalid upload: {exc}", bad_request(exc.violations)
            )
        except RateLimited as exc:
            message, delay = _shed(exc, tenant)
            await abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, message, retry_info(delay))
        except AssetQuotaExceeded as exc:
            await abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"tenant {tenant} holds {exc.quota} assets, its quota; retry when some have expired",
                retry_info(60.0),
            )
        except AssetBeingSwept as exc:  # its expired file's delete outlasted the wait: still going
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                "the expired copy of this asset is being deleted; retry",
                # The claim's lease can run minutes longer than a slow delete: ask again soon.
                retry_info(min(max(1.0, exc.retry_after_s), SWEPT_RETRY_S)),
            )
        return pb.UploadAssetResponse(asset=asset_message(asset))

    async def GetOutput(
        self,
        request: pb.GetOutputRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> AsyncIterator[pb.GetOutputResponse]:
        stored = await self._job(request.job_id, self._tenant(), context)
        if request.offset < 0 or request.limit < 0:
            field = "offset" if request.offset < 0 else "limit"
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{field} must not be negative",
                bad_request([(field, "must not be negative")]),
            )
        job = stored.job
        found = [o for o in job.result.outputs if o.name == request.name]
        if not request.name or not found:
            await abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"job {request.job_id} has no output named {request.name[:64]!r}",
                bad_request([("name", "must be the name of one of the job's outputs")]),
            )
        output = found[0]
        try:
            key = self.storage.key_of(output.uri)
            size = (await asyncio.to_thread(self.storage.stat, key)).size_bytes
        except StorageMissing:  # (the storage away is UNAVAILABLE, as for every call)
            await abort(context, grpc.StatusCode.NOT_FOUND, f"the output {request.name} is no longer stored")
        position = min(request.offset, size)
        end = size if request.limit == 0 else min(size, position + request.limit)
        described = pb.OutputFile()
        described.CopyFrom(output)
        self.links.fill_output(described)
        yield pb.GetOutputResponse(file=described)
        while position < end:
            try:
                chunk = await asyncio.to_thread(
                    self.storage.read, key, position, min(OUTPUT_CHUNK_BYTES, end - position)
                )
            except StorageMissing:  # deleted while it was being sent: asking again will not help
                await abort(context, grpc.StatusCode.NOT_FOUND, f"the output {request.name} is no longer stored")
            if not chunk:
                await abort(context, grpc.StatusCode.DATA_LOSS, f"the output {request.name} ended early")
            position += len(chunk)
            yield pb.GetOutputResponse(data=chunk)


def asset_message(asset: StoredAsset) -> pb.Asset:
    """An asset as the public API shows it."""
    return pb.Asset(
        id=asset.asset_id,
        name=asset.name,
        content_type=asset.content_type,
        width=asset.width,
        height=asset.height,
        size_bytes=asset.size_bytes,
        sha256=asset.sha256,
        create_time=timestamp(asset.created_ms),
        expire_time=timestamp(asset.expire_ms),
    )


_ENTRY_KINDS = {
    "grant": pb.CREDIT_ENTRY_KIND_GRANT,
    "reserve": pb.CREDIT_ENTRY_KIND_RESERVE,
    "refund": pb.CREDIT_ENTRY_KIND_REFUND,
}


def credit_entry(entry: CreditEntry) -> pb.CreditEntry:
    """A credit log entry as the public API shows it."""
    return pb.CreditEntry(
        id=entry.entry_id,
        kind=_ENTRY_KINDS.get(entry.kind, pb.CREDIT_ENTRY_KIND_UNSPECIFIED),
        amount=entry.amount,
        balance=entry.balance,
        job_id=entry.job_id,
        note=entry.note,
        time=timestamp(entry.time_ms),
    )
