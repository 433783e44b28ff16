"""The delivery worker: one per gateway replica (like the dispatcher), from when Redis first
answers until the gateway drains.

It claims due deliveries with a lease, as many as it has free slots (WEBHOOK_CONCURRENCY), and
sends each: the payload made from its event, signed with every secret that signs now, posted under
the download rules of renderkit/fetch.py (no non-global address unless private URLs are allowed, the
address checked where it connects, no redirect followed, a whole-request timeout, the answer's body
read to a bound). A 2xx delivers it; a 410 gives up (and disables the endpoint); anything else is
retried after the next wait of the schedule, with jitter (a Retry-After is honoured up to the
schedule's longest wait), until the schedule is spent. A notice on the webhooks channel wakes it
when a delivery is queued; otherwise it sleeps until the next one is due. On drain it stops
claiming, lets the attempts in flight finish within the grace and hands back the rest. A worker
that dies mid-attempt leaves its claim to run out: another replica retries after the lease.

With tracing on, each attempt is a span in the trace of its job's submit (carrying the job's id
and tenant) and its request carries `traceparent`, so a receiver may join the trace; every attempt
counts in `render_webhook_attempts_total` and `render_webhook_attempt_duration_seconds`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import replace

from opentelemetry.trace import SpanKind, Status, StatusCode

from gateway.ledger import Attempt, Delivery, Ledger, keys
from gateway.ledger.jobs import now_ms
from gateway.links import OutputLinks
from gateway.metrics import WEBHOOK_ATTEMPT_DURATION, WEBHOOK_ATTEMPTS
from gateway.settings import WebhookSettings
from gateway.subscriptions import Subscriptions
from gateway.webhooks import signing
from gateway.webhooks.payloads import payload
from render.v1 import render_service_pb2 as pb
from renderkit import telemetry
from renderkit.fetch import DownloadError, FetchPolicy, OwnedLookups, PostResponse, post

log = logging.getLogger(__name__)

# An idle worker looks again at least this often (a notice or the next due time wakes it sooner).
_IDLE_LOOK_S = 1.0
_RESULTS = {
    "timeout": "timeout",
    "connection": "connection_failed",
    "tls": "tls_failed",
    "address_refused": "address_refused",
    "invalid_response": "invalid_response",
}


class EndpointGone(Exception):
    """A claimed delivery's endpoint was deleted or disabled before its attempt."""


def delivery_ttl_ms(settings: WebhookSettings, retention_s: float) -> int:
    """How long a delivery is kept: the job retention, or its whole retry schedule when longer, each
    wait as long as a Retry-After may make it (the longest step: a receiver answering every attempt
    with a long Retry-After had its delivery expire, unrecorded, halfway through the schedule), and
    every attempt as long as its lease (each wait starts when its attempt ends: a receiver slow to
    answer its 429s had the record expire just before the last attempt, which was never made)."""
    schedule = settings.retry_schedule_s
    longest = len(schedule) * max(schedule, default=0.0)
    return int(max(retention_s, longest + (len(schedule) + 1) * settings.lease_s) * 1000)


def after_attempt(
    settings: WebhookSettings,
    made: int,
    attempt: Attempt,
    answer: PostResponse | None,
    now: int,
    draw: Callable[[], float] = random.random,
) -> tuple[str, int, str]:
    """What follows the `made`-th attempt of a delivery: (outcome, when the next one is due (ms),
    why it failed). A 2xx delivers it and a 410 gives up; otherwise it waits the schedule's next
    step with jitter (uniform in [(1 - jitter) x step, step]; a Retry-After is honoured up to the
    longest step), or fails once the schedule is spent."""
    if attempt.result == "success":
        return "delivered", 0, ""
    if attempt.http_status == 410:
        return "gone", 0, "the receiver answered 410 Gone"
    schedule = settings.retry_schedule_s
    if made > len(schedule):
        return "failed", 0, f"all {made} attempts failed; the last: {attempt.error}"
    step = schedule[made - 1]
    wait = step * (1 - settings.jitter * draw())
    if answer is not None and answer.retry_after_s is not None:
        wait = max(wait, min(answer.retry_after_s, max(schedule)))
    return "retry", now + int(wait * 1000), ""


class DeliveryWorker:
    """Sends this replica's share of the webhook deliveries."""

    def __init__(
        self,
        ledger: Ledger,
        settings: WebhookSettings,
        policy: FetchPolicy,
        links: OutputLinks | None,
        subscriptions: Subscriptions,
    ) -> None:
        # A Redis restart must not lose an attempt's record: ledger calls wait up to a lease.
        self.ledger = ledger.with_retry(settings.lease_s)
        self.settings = settings
        # The names it posts to are tenants' (and may never resolve): resolved on threads of its
        # own, so a tenant's endpoints on a domain whose DNS drops queries cannot hold the
        # resolvers every download of every tenant waits for.
        # (Each tenant's own, OwnedLookups: a pool shared by the tenants filled with one's.)
        self._lookups = OwnedLookups(settings.tenant_concurrency)
        self.policy = replace(policy, timeout_s=settings.timeout_s, max_redirects=0)
        self.links = links
        self.claim = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._pool = concurrent.futures.ThreadPoolExecutor(max(settings.concurrency, 1), thread_name_prefix="webhook")
        subscriptions.on(keys.WEBHOOKS_CHANNEL, lambda _message: self._wake.set())
        subscriptions.on_subscribed(self._wake.set)  # deliveries queued while notices could not arrive

    def policy_for(self, tenant: str) -> FetchPolicy:
        """The rules of a tenant's posts: its names resolved among its own lookups (OwnedLookups)."""
        return replace(self.policy, resolvers=self._lookups.of(tenant))

    async def start(self) -> None:
        """Starts claiming deliveries (nothing with WEBHOOK_CONCURRENCY 0)."""
        if self.settings.concurrency > 0 and self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self, grace_s: float) -> None:
        """Stops claiming, lets attempts in flight finish within the grace, hands back the rest."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            # The claim loop may be in a ledger call that waits Redis out for up to a lease: it
            # stops now (a claim whose reply is lost runs out, and another worker takes it).
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=min(grace_s, self.settings.timeout_s + 1.0))
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        self._pool.shutdown(wait=False)

    async def _run(self) -> None:
        lease_ms = int(self.settings.lease_s * 1000)
        delay = 0.1
        while not self._stopping.is_set():
            free = self.settings.concurrency - len(self._inflight)
            pause = _IDLE_LOOK_S
            # Cleared whatever the slots: with every slot busy, an attempt's end may have set it
            # before its task left _inflight, and a set event's wait() returns without yielding, so
            # the loop would spin here forever (the event loop frozen, its timer heap growing).
            self._wake.clear()
            if free > 0:
                try:
                    claimed = await self.ledger.claim_deliveries(
                        self.claim, lease_ms, free, self.settings.tenant_concurrency
                    )
                    delay = 0.1
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.warning("claiming webhook deliveries failed; retrying", exc_info=True)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                for delivery in claimed.deliveries:
                    task = asyncio.create_task(self._deliver(delivery))
                    self._inflight.add(task)
                    task.add_done_callback(self._finished)
                if claimed.next_due_in_ms is not None:
                    pause = min(pause, max(claimed.next_due_in_ms / 1000, 0.01))
                if len(claimed.deliveries) == free:
                    pause = _IDLE_LOOK_S  # every slot busy: a finished attempt wakes the loop
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._wake.wait()

    def _finished(self, task: asyncio.Task[None]) -> None:
        """An attempt's task ended: its slot is free, and the claim loop looks again."""
        self._inflight.discard(task)
        self._wake.set()

    async def _deliver(self, delivery: Delivery) -> None:
        """One attempt of a claimed delivery, recorded with what comes next."""
        try:
            try:
                attempt, answer = await self._attempt(delivery)
            except EndpointGone:
                await self.ledger.record_attempt(delivery, self.claim, "release", None, 0)
                return  # the next claim finds the endpoint gone and fails the delivery
            now = now_ms()
            outcome, next_ms, reason = after_attempt(self.settings, delivery.attempts + 1, attempt, answer, now)
            due_in_ms = max(0, next_ms - now) if outcome == "retry" else 0
            if not await self.ledger.record_attempt(delivery, self.claim, outcome, attempt, due_in_ms, reason):
                log.info("webhook %s: its claim ran out mid-attempt; another worker has it", delivery.delivery_id)
            elif outcome != "retry":  # the URL is not logged: it may hold the receiver's token
                log.info("webhook %s (%s): %s", delivery.delivery_id, delivery.event_type, outcome)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):  # the worker is stopping: due again at once, elsewhere
                async with asyncio.timeout(2.0):
                    await self.ledger.record_attempt(delivery, self.claim, "release", None, 0)
            raise
        except Exception:
            log.exception("webhook %s: the attempt failed; it is retried when its claim runs out", delivery.delivery_id)

    async def _attempt(self, delivery: Delivery) -> tuple[Attempt, PostResponse | None]:
        secrets = delivery.secrets
        if secrets is None and not delivery.endpoint_id:  # the tenant's secret for requests: made on first use
            secrets = await self.ledger.tenant_secret(delivery.tenant)
        if secrets is None:  # an endpoint's secret goes with the endpoint: it was deleted meanwhile
            raise EndpointGone()
        room = await self._room(delivery) if delivery.event_type == "batch.room.completed" else None
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(self._pool, payload, delivery, self.links, room)
        parent = (
            telemetry.context_of(await self.ledger.trace_of(delivery.job_id)) if telemetry.tracing_enabled() else None
        )
        if delivery.endpoint_id:  # the endpoint as it is now: deleted, disabled or rotated since the claim
            secrets = await self.ledger.endpoint_signing(delivery.tenant, delivery.endpoint_id)
            if secrets is None:
                raise EndpointGone()
        with (
            telemetry.job_scope(delivery.job_id, delivery.tenant, parent),
            telemetry.tracer().start_as_current_span(
                f"webhook {delivery.event_type}",
                kind=SpanKind.CLIENT,
                attributes={
                    "render.webhook.event": delivery.event_type,
                    "render.webhook.attempt": delivery.attempts + 1,
                },
            ) as span,
        ):
            started = time.time()
            headers = signing.headers(delivery.delivery_id, int(started), body, secrets.signing(int(started * 1000)))
            headers.update(telemetry.trace_headers())
            clock = time.monotonic()
            answer: PostResponse | None = None
            try:
                policy = self.policy_for(delivery.tenant)
                answer = await loop.run_in_executor(self._pool, post, delivery.url, body, headers, policy)
                success = 200 <= answer.status < 300
                result = "success" if success else "http_error"
                error = "" if success else f"the receiver answered HTTP {answer.status}"
                span.set_attribute("http.response.status_code", answer.status)
            except DownloadError as exc:
                result = _RESULTS.get(exc.kind, "connection_failed")
                error = self._message(exc)
            except Exception:  # whatever a receiver makes the post raise, the attempt is recorded
                log.exception("webhook %s: the post failed unexpectedly", delivery.delivery_id)
                result, error = "invalid_response", "the receiver's answer could not be read"
            took = time.monotonic() - clock
            span.set_attribute("render.webhook.result", result)
            if error:
                span.set_status(Status(StatusCode.ERROR, error))
        WEBHOOK_ATTEMPTS.add(1, {"event": delivery.event_type, "result": result})
        WEBHOOK_ATTEMPT_DURATION.record(took, {"result": result})
        status = answer.status if answer is not None else 0
        return Attempt(int(started * 1000), result, status, int(took * 1000), error), answer

    def _message(self, exc: DownloadError) -> str:
        """An attempt's failure in words safe to show (fetch's words are about downloads)."""
        if exc.kind == "timeout":
            return f"no answer within {self.settings.timeout_s:g} s"
        if exc.kind == "failed":
            return "the request failed"
        return str(exc)

    async def _room(self, delivery: Delivery) -> pb.Room | None:
        """A batch room's own description (its id and name), read from its job while it is kept."""
        stored = await self.ledger.get(delivery.job_id)
        if stored is None:
            return None
        request = pb.SubmitRenderRequest.FromString(stored.request)
        return request.room_render.room if request.HasField("room_render") else None
