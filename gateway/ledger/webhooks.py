"""Webhooks in the ledger: tenants' endpoints and signing secrets, and the durable delivery queue.

Deliveries are queued by the scripts that record job events (transition.lua through
lib/webhooks.lua), so an event and its deliveries are written in one step. Each is a hash with its
target, event and attempts, due in one sorted set; a delivery worker claims due ones with a lease
(webhook_claim.lua) and records each attempt (webhook_record.lua): delivered, failed, or due again
after a backoff. A worker that dies mid-attempt leaves its claim to run out, and any worker takes the
delivery again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.ledger import keys
from gateway.ledger.base import LedgerBase, LedgerError

# How long a caller's idempotency key for a new endpoint is kept: a day of retries.
ENDPOINT_KEY_TTL_S = 86_400


class EndpointLimit(LedgerError):
    """The tenant has as many webhook endpoints as it may."""

    def __init__(self, most: int) -> None:
        super().__init__(f"at most {most} webhook endpoints per tenant")
        self.most = most


class EndpointKeyUsed(LedgerError):
    """A caller's idempotency key already created an endpoint: for another request, or one that was
    deleted since (`deleted`)."""

    def __init__(self, endpoint_id: str, deleted: bool) -> None:
        super().__init__(f"the key created {endpoint_id}" + (", since deleted" if deleted else ""))
        self.endpoint_id = endpoint_id
        self.deleted = deleted


@dataclass(frozen=True)
class CreatedEndpoint:
    """A registered endpoint with its current secret; `repeated` when a caller's idempotency key
    found it registered by an earlier request."""

    endpoint: Endpoint
    secret: str
    repeated: bool = False


@dataclass(frozen=True)
class Endpoint:
    """A tenant's webhook endpoint (its secret is kept apart)."""

    endpoint_id: str
    url: str
    events: tuple[str, ...]  # "start", "progress", "completed"
    description: str
    created_ms: int
    disabled: bool = False


@dataclass(frozen=True)
class Secrets:
    """A webhook signing secret and, during a rotation's overlap, the one it replaced."""

    current: str
    previous: str = ""
    previous_until_ms: int = 0

    def signing(self, now_ms: int) -> list[str]:
        """The secrets that sign a delivery made now: the current one, and the previous one until
        its overlap ends."""
        if self.previous and now_ms < self.previous_until_ms:
            return [self.current, self.previous]
        return [self.current]


@dataclass(frozen=True)
class Attempt:
    """One attempt to deliver a webhook."""

    time_ms: int
    result: str  # success, http_error, timeout, connection_failed, tls_failed, address_refused, ...
    http_status: int
    duration_ms: int
    error: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {"t": self.time_ms, "r": self.result, "s": self.http_status, "d": self.duration_ms, "e": self.error}
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Attempt:
        data = json.loads(raw)
        return cls(int(data["t"]), str(data["r"]), int(data["s"]), int(data["d"]), str(data.get("e", "")))


@dataclass(frozen=True)
class Delivery:
    """A queued webhook delivery: one event of one job for one URL."""

    delivery_id: str  # the webhook-id header, the same on every attempt
    tenant: str
    job_id: str
    endpoint_id: str  # "" for the webhook set on the request
    url: str
    event_type: str  # job.started, job.progress, job.completed, batch.room.completed, batch.completed
    event: bytes  # the JobEvent it is about (serialized)
    kind: str = ""
    parent_job_id: str = ""
    project_id: str = ""
    user_id: str = ""
    job_attempt: int = 0  # the job's dispatcher attempt when the event happened
    attempts: int = 0  # attempts made so far
    created_ms: int = 0
    status: str = "pending"  # pending, delivered, failed
    next_ms: int = 0
    reason: str = ""
    history: tuple[Attempt, ...] = ()
    secrets: Secrets | None = None  # on a claimed delivery: what signs it (None: not made yet)


@dataclass(frozen=True)
class DeliveryWindow:
    """Some of a job's deliveries, each with its position in the job's list (one whose hash has
    expired is left out), and the position after them (None when none follows)."""

    deliveries: list[tuple[int, Delivery]]
    following: int | None


@dataclass
class Claimed:
    """What one claim returned: the deliveries now this worker's, and how long until the next one
    is due (by Redis's clock, which the due times are written by: not a time for this process's)."""

    deliveries: list[Delivery] = field(default_factory=list)
    next_due_in_ms: int | None = None


_CLAIMED_FIELDS = (
    "id",
    "tenant",
    "job",
    "endpoint",
    "url",
    "type",
    "event",
    "kind",
    "parent",
    "project",
    "user",
    "attempt",
    "attempts",
    "created_ms",
)


def new_secret() -> str:
    """A new signing secret: 32 random bytes, base64, prefixed "whsec_" (Standard Webhooks)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _secrets(raw: bytes | str | None) -> Secrets | None:
    if not raw:
        return None
    data = json.loads(raw)
    return Secrets(str(data["current"]), str(data.get("previous") or ""), int(data.get("previous_until_ms") or 0))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _int(value: Any) -> int:
    text = _text(value)
    return int(float(text)) if text else 0


def _delivery(h: dict[str, bytes]) -> Delivery:
    numbered = [(int(name[8:]), value) for name, value in h.items() if name.startswith("attempt:")]
    history = [Attempt.from_json(value) for _, value in sorted(numbered)]
    return Delivery(
        delivery_id=_text(h.get("id")),
        tenant=_text(h.get("tenant")),
        job_id=_text(h.get("job")),
        endpoint_id=_text(h.get("endpoint")),
        url=_text(h.get("url")),
        event_type=_text(h.get("type")),
        event=bytes(h.get("event", b"")),
        kind=_text(h.get("kind")),
        parent_job_id=_text(h.get("parent")),
        project_id=_text(h.get("project")),
        user_id=_text(h.get("user")),
        job_attempt=_int(h.get("attempt")),
        attempts=_int(h.get("attempts")),
        created_ms=_int(h.get("created_ms")),
        status=_text(h.get("status")) or "pending",
        next_ms=_int(h.get("next_ms")),
        reason=_text(h.get("reason")),
        history=tuple(history),
    )


def _endpoint(endpoint_id: str, raw: bytes | str) -> Endpoint:
    data = json.loads(raw)
    return Endpoint(
        endpoint_id=endpoint_id,
        url=str(data["url"]),
        events=tuple(e for e in str(data.get("events", "")).split(",") if e),
        description=str(data.get("description", "")),
        created_ms=int(float(data.get("created_ms") or 0)),
        disabled=bool(data.get("disabled", False)),
    )


class Webhooks(LedgerBase):
    """Tenants' webhook endpoints and secrets, and the delivery queue."""

    # -- endpoints and secrets -------------------------------------------------------------------

    async def create_endpoint(
        self,
        tenant: str,
        url: str,
        events: tuple[str, ...],
        description: str,
        now_ms: int,
        most: int,
        key: str = "",
    ) -> CreatedEndpoint:
        """Registers an endpoint with a new secret, once per caller's idempotency `key` within
        ENDPOINT_KEY_TTL_S (a repeat answers with the endpoint it made and its current secret).
        EndpointLimit when the tenant has `most` already; EndpointKeyUsed when the key made another
        request's endpoint, or one deleted since."""
        endpoint_id = "ep_" + secrets.token_hex(12)
        secret = new_secret()
        config = json.dumps(
            {"url": url, "events": ",".join(events), "description": description, "created_ms": str(now_ms)}
        )
        request = json.dumps([url, sorted(events), description])
        fingerprint = hashlib.sha256(request.encode()).hexdigest()[:32]
        reply: Any = await self._script(
            "webhook_endpoint",
            keys=[
                keys.webhook_endpoints(tenant),
                keys.webhook_secrets(tenant),
                keys.webhook_endpoint_key(tenant, key or endpoint_id),
            ],
            args=[
                endpoint_id,
                config,
                json.dumps({"current": secret}),
                most,
                ENDPOINT_KEY_TTL_S if key else 0,
                fingerprint,
            ],
        )
        outcome, found_id = int(reply[0]), _text(reply[1])
        if outcome == 0:
            raise EndpointLimit(most)
        if outcome in (3, 4):
            raise EndpointKeyUsed(found_id, deleted=outcome == 4)
        found_secrets = _secrets(reply[3])
        assert found_secrets is not None
        return CreatedEndpoint(_endpoint(found_id, reply[2]), found_secrets.current, repeated=outcome == 2)

    async def endpoints(self, tenant: str) -> list[Endpoint]:
        """A tenant's endpoints, oldest first."""
        raw: Any = await self._retry(lambda: self.redis.hgetall(keys.webhook_endpoints(tenant)))
        found = [_endpoint(k.decode(), v) for k, v in raw.items()]
        return sorted(found, key=lambda e: (e.created_ms, e.endpoint_id))

    async def delete_endpoint(self, tenant: str, endpoint_id: str) -> bool:
        """Removes an endpoint and its secret; False when there is no such endpoint. The answer is
        read before the delete: a delete repeated after its reply was lost finds nothing left to
        remove, and answered NOT_FOUND for an endpoint it had just deleted."""
        endpoints = keys.webhook_endpoints(tenant)
        if not await self._retry(lambda: self.redis.hexists(endpoints, endpoint_id)):
            return False

        async def delete() -> Any:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hdel(endpoints, endpoint_id)
                pipe.hdel(keys.webhook_secrets(tenant), f"endpoint:{endpoint_id}")
                return await pipe.execute()

        await self._retry(delete)
        return True

    async def rotate_secret(self, tenant: str, endpoint_id: str, until_ms: int) -> Secrets | None:
        """Gives an endpoint (or, with endpoint_id "", the tenant's webhooks on requests) a new
        secret; the previous one signs beside it until `until_ms`. None: no such endpoint."""
        return await self._secret(tenant, endpoint_id, until_ms, "rotate")

    async def endpoint_signing(self, tenant: str, endpoint_id: str) -> Secrets | None:
        """An endpoint's secrets as they are now, None when it was deleted or disabled: a worker
        reads them again just before it posts, since the claim's copy may be stale by then."""

        async def read() -> Any:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hget(keys.webhook_endpoints(tenant), endpoint_id)
                pipe.hget(keys.webhook_secrets(tenant), f"endpoint:{endpoint_id}")
                return await pipe.execute()

        config, secrets = await self._retry(read)
        if not config or json.loads(config).get("disabled"):
            return None
        return _secrets(secrets)

    async def tenant_secret(self, tenant: str) -> Secrets:
        """The tenant's secret for webhooks set on requests, made on first use."""
        made = await self._secret(tenant, "", 0, "ensure")
        assert made is not None
        return made

    async def _secret(self, tenant: str, endpoint_id: str, until_ms: int, mode: str) -> Secrets | None:
        candidate = new_secret()
        field = f"endpoint:{endpoint_id}" if endpoint_id else "tenant"
        raw: Any = await self._script(
            "webhook_secret",
            keys=[keys.webhook_secrets(tenant), keys.webhook_endpoints(tenant)],
            args=[field, endpoint_id, candidate, until_ms, mode],
        )
        return _secrets(raw)

    # -- deliveries --------------------------------------------------------------------------------

    async def claim_deliveries(self, claim: str, lease_ms: int, most: int, per_tenant: int = 1_000_000) -> Claimed:
        """Up to `most` due deliveries, now claimed by `claim` for a lease, with their secrets; none
        of a tenant with `per_tenant` attempts in flight already (across every worker)."""
        reply: Any = await self._script(
            "webhook_claim",
            keys=[keys.WEBHOOKS_DUE],
            args=[
                lease_ms,
                most,
                claim,
                keys.WEBHOOK_DELIVERY_TEMPLATE,
                keys.WEBHOOK_ENDPOINTS_TEMPLATE,
                keys.WEBHOOK_SECRETS_TEMPLATE,
                keys.WEBHOOK_IN_FLIGHT_TEMPLATE,
                per_tenant,
            ],
        )
        rows, next_due = reply
        out = Claimed(next_due_in_ms=_int(next_due) if _text(next_due) else None)
        for row in rows:
            h = dict(zip(_CLAIMED_FIELDS, row[: len(_CLAIMED_FIELDS)], strict=True))
            delivery = _delivery(h)
            out.deliveries.append(replace(delivery, secrets=_secrets(row[len(_CLAIMED_FIELDS)])))
        return out

    async def record_attempt(
        self, delivery: Delivery, claim: str, outcome: str, attempt: Attempt | None, due_in_ms: int, reason: str = ""
    ) -> bool:
        """Records an attempt of a claimed delivery ("delivered", "retry" due in `due_in_ms`,
        "failed", "gone"), or hands it back unattempted ("release", due in `due_in_ms`); False when
        the claim was lost (its lease ran out and another worker has it). The wait is counted from
        Redis's clock, which claims are judged by, not this process's."""
        recorded = await self._script(
            "webhook_record",
            keys=[keys.webhook_delivery(delivery.delivery_id), keys.WEBHOOKS_DUE],
            args=[
                delivery.delivery_id,
                claim,
                outcome,
                attempt.to_json() if attempt is not None else "",
                due_in_ms,
                reason,
                keys.WEBHOOK_ENDPOINTS_TEMPLATE,
                keys.WEBHOOK_IN_FLIGHT_TEMPLATE,
            ],
        )
        return bool(recorded)

    async def job_deliveries(self, job_id: str, start: int, count: int) -> DeliveryWindow:
        """Up to `count` of a job's deliveries (for a batch, its rooms' too), oldest first, from
        position `start` of its list. The list only grows at its end, so a position stays valid for
        a page token."""
        ids: Any = await self._retry(lambda: self.redis.lrange(keys.job_webhooks(job_id), start, start + count))
        more = len(ids) > count
        ids = ids[:count]

        async def read() -> Any:
            async with self.redis.pipeline(transaction=False) as pipe:
                for delivery_id in ids:
                    pipe.hgetall(keys.webhook_delivery(delivery_id.decode()))
                return await pipe.execute()

        rows: Any = await self._retry(read) if ids else []
        found = [(start + i, _delivery({k.decode(): v for k, v in row.items()})) for i, row in enumerate(rows) if row]
        return DeliveryWindow(found, start + len(ids) if more else None)
