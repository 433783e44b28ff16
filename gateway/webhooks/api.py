"""The webhook methods of render.v1.RenderService: a tenant's endpoints and secrets, and a job's
deliveries. Every call is the caller's tenant's (the credential's); RenderServicer inherits them."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Sequence

import grpc

from gateway.auth.principal import current_principal
from gateway.ledger import Delivery, Endpoint, EndpointKeyUsed, EndpointLimit, Ledger
from gateway.ledger.jobs import now_ms, timestamp
from gateway.settings import WebhookSettings
from gateway.validation import (
    IDENTIFIER,
    IDENTIFIER_RULE,
    Limits,
    Violation,
    unknown_enum_values,
    webhook_violations,
)
from gateway.webhooks import events
from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from renderkit.errors import abort, bad_request

log = logging.getLogger(__name__)

MAX_DESCRIPTION_CHARS = 200
# A page of deliveries: page_size (0 means the default) up to the most, and never past the
# bytes a default client receives (4 MiB) whatever the retry schedule makes of its attempts.
DEFAULT_DELIVERIES_PAGE = 50
MAX_DELIVERIES_PAGE = 100
MAX_PAGE_BYTES = 1 << 20
# An attempt's error as the API shows it: the kind of failure and its gist, not a receiver's
# 2 KB host name repeated in every attempt.
MAX_ERROR_MESSAGE_CHARS = 300
_ENDPOINT_ID = re.compile(r"^ep_[0-9a-f]{24}\Z")
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_STATUSES = {
    "pending": pb.WEBHOOK_DELIVERY_STATUS_PENDING,
    "delivered": pb.WEBHOOK_DELIVERY_STATUS_DELIVERED,
    "failed": pb.WEBHOOK_DELIVERY_STATUS_FAILED,
}
_RESULTS = {
    "success": pb.WEBHOOK_ATTEMPT_RESULT_SUCCESS,
    "http_error": pb.WEBHOOK_ATTEMPT_RESULT_HTTP_ERROR,
    "timeout": pb.WEBHOOK_ATTEMPT_RESULT_TIMEOUT,
    "connection_failed": pb.WEBHOOK_ATTEMPT_RESULT_CONNECTION_FAILED,
    "tls_failed": pb.WEBHOOK_ATTEMPT_RESULT_TLS_FAILED,
    "address_refused": pb.WEBHOOK_ATTEMPT_RESULT_ADDRESS_REFUSED,
    "invalid_response": pb.WEBHOOK_ATTEMPT_RESULT_INVALID_RESPONSE,
}

Context = grpc.aio.ServicerContext  # type: ignore[type-arg]


def endpoint_message(endpoint: Endpoint) -> pb.WebhookEndpoint:
    """An endpoint as the API shows it (never its secret)."""
    return pb.WebhookEndpoint(
        id=endpoint.endpoint_id,
        url=endpoint.url,
        events=events.from_stored(endpoint.events),
        description=endpoint.description,
        create_time=timestamp(endpoint.created_ms),
        disabled=endpoint.disabled,
    )


def shortened(text: str, most: int) -> str:
    """The text, cut to `most` characters (the last an ellipsis) when longer."""
    return text if len(text) <= most else text[: most - 1] + "\u2026"


def page_token(position: int) -> str:
    """The opaque token of a position in a job's list of deliveries."""
    return base64.urlsafe_b64encode(f"d{position}".encode()).decode()


def token_position(token: str) -> int | None:
    """The position a page token names (0 for none), or None when it is not one page_token made."""
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except ValueError:
        return None
    digits = text[1:]
    if not (text.startswith("d") and digits.isascii() and digits.isdigit() and len(digits) <= 18):
        return None
    return int(digits)


def delivery_message(delivery: Delivery) -> pb.WebhookDelivery:
    """A delivery with its attempts, as the API shows it."""
    message = pb.WebhookDelivery(
        id=delivery.delivery_id,
        job_id=delivery.job_id,
        endpoint_id=delivery.endpoint_id,
        url=delivery.url,
        event_type=delivery.event_type,
        status=_STATUSES.get(delivery.status, pb.WEBHOOK_DELIVERY_STATUS_UNSPECIFIED),
        create_time=timestamp(delivery.created_ms),
        failure_reason=delivery.reason,
        attempts=[
            pb.WebhookDeliveryAttempt(
                time=timestamp(a.time_ms),
                result=_RESULTS.get(a.result, pb.WEBHOOK_ATTEMPT_RESULT_UNSPECIFIED),
                http_status=a.http_status,
                duration_ms=a.duration_ms,
                error_message=shortened(a.error, MAX_ERROR_MESSAGE_CHARS),
            )
            for a in delivery.history
        ],
    )
    if delivery.status == "pending" and delivery.next_ms:
        message.next_attempt_time.CopyFrom(timestamp(delivery.next_ms))
    return message


class WebhookMethods(pb_grpc.RenderServiceServicer):
    """CreateWebhookEndpoint, ListWebhookEndpoints, DeleteWebhookEndpoint, RotateWebhookSecret and
    ListWebhookDeliveries, over the servicer's ledger, limits and webhook settings."""

    ledger: Ledger
    limits: Limits
    webhooks: WebhookSettings

    async def _invalid(self, context: Context, violations: Sequence[Violation]) -> None:
        """INVALID_ARGUMENT naming the first violations, each in the BadRequest detail."""
        summary = "; ".join(f"{f}: {d}" for f, d in violations[:3])
        await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"invalid request: {summary}", bad_request(violations))

    async def _endpoint_id(self, endpoint_id: str, context: Context) -> None:
        if not _ENDPOINT_ID.match(endpoint_id):
            await self._invalid(context, [("endpoint_id", "must be an endpoint's id (ep_ and 24 hex digits)")])

    async def CreateWebhookEndpoint(
        self, request: pb.CreateWebhookEndpointRequest, context: Context
    ) -> pb.CreateWebhookEndpointResponse:
        tenant = current_principal().tenant
        violations = unknown_enum_values(request)
        violations += webhook_violations(request.url, request.events, "", self.limits.allow_private_urls)
        if len(request.description) > MAX_DESCRIPTION_CHARS:
            violations.append(("description", f"at most {MAX_DESCRIPTION_CHARS} characters"))
        if request.idempotency_key and not IDENTIFIER.match(request.idempotency_key):
            violations.append(("idempotency_key", IDENTIFIER_RULE))
        if violations:
            await self._invalid(context, violations)
        most = self.webhooks.endpoints_per_tenant
        try:
            created = await self.ledger.create_endpoint(
                tenant,
                request.url,
                events.categories(request.events),
                request.description,
                now_ms(),
                most,
                request.idempotency_key,
            )
        except EndpointLimit:
            await abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"tenant {tenant} has {most} webhook endpoints, its limit; delete one first",
            )
        except EndpointKeyUsed as used:
            reason = "an endpoint since deleted" if used.deleted else "a different request"
            await abort(
                context,
                grpc.StatusCode.ALREADY_EXISTS,
                f"idempotency_key was already used for {reason}",
                bad_request([("idempotency_key", f"was used for {reason}")]),
            )
        if not created.repeated:
            log.info("tenant %s: webhook endpoint %s created", tenant, created.endpoint.endpoint_id)
        return pb.CreateWebhookEndpointResponse(
            endpoint=endpoint_message(created.endpoint), secret=created.secret, deduplicated=created.repeated
        )

    async def ListWebhookEndpoints(
        self, request: pb.ListWebhookEndpointsRequest, context: Context
    ) -> pb.ListWebhookEndpointsResponse:
        found = await self.ledger.endpoints(current_principal().tenant)
        return pb.ListWebhookEndpointsResponse(endpoints=[endpoint_message(e) for e in found])

    async def DeleteWebhookEndpoint(
        self, request: pb.DeleteWebhookEndpointRequest, context: Context
    ) -> pb.DeleteWebhookEndpointResponse:
        tenant = current_principal().tenant
        await self._endpoint_id(request.endpoint_id, context)
        if not await self.ledger.delete_endpoint(tenant, request.endpoint_id):
            await abort(context, grpc.StatusCode.NOT_FOUND, f"webhook endpoint {request.endpoint_id} not found")
        log.info("tenant %s: webhook endpoint %s deleted", tenant, request.endpoint_id)
        return pb.DeleteWebhookEndpointResponse()

    async def RotateWebhookSecret(
        self, request: pb.RotateWebhookSecretRequest, context: Context
    ) -> pb.RotateWebhookSecretResponse:
        tenant = current_principal().tenant
        if request.endpoint_id:
            await self._endpoint_id(request.endpoint_id, context)
        until = now_ms() + int(self.webhooks.secret_overlap_s * 1000)
        rotated = await self.ledger.rotate_secret(tenant, request.endpoint_id, until)
        if rotated is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"webhook endpoint {request.endpoint_id} not found")
        assert rotated is not None
        log.info("tenant %s: webhook secret of %s rotated", tenant, request.endpoint_id or "the tenant")
        response = pb.RotateWebhookSecretResponse(secret=rotated.current)
        if rotated.previous:
            response.previous_secret_expire_time.CopyFrom(timestamp(rotated.previous_until_ms))
        return response

    async def ListWebhookDeliveries(
        self, request: pb.ListWebhookDeliveriesRequest, context: Context
    ) -> pb.ListWebhookDeliveriesResponse:
        tenant = current_principal().tenant
        if not _JOB_ID.match(request.job_id):
            await self._invalid(context, [("job_id", "must be 1-64 letters, digits, _ or -")])
        violations: list[Violation] = []
        if not 0 <= request.page_size <= MAX_DELIVERIES_PAGE:
            violations.append(("page_size", f"must be between 0 and {MAX_DELIVERIES_PAGE}"))
        start = token_position(request.page_token)
        if start is None:
            violations.append(("page_token", "must be a next_page_token from ListWebhookDeliveries"))
        if violations:
            await self._invalid(context, violations)
        assert start is not None
        stored = await self.ledger.get(request.job_id)
        if stored is None or stored.tenant != tenant:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"job {request.job_id} not found")
        window = await self.ledger.job_deliveries(request.job_id, start, request.page_size or DEFAULT_DELIVERIES_PAGE)
        response = pb.ListWebhookDeliveriesResponse()
        weight = 0
        for position, delivery in window.deliveries:
            message = delivery_message(delivery)
            # Each delivery weighs its size and a few bytes of framing; the first always goes, so
            # every page moves on.
            weight += message.ByteSize() + 8
            if response.deliveries and weight > MAX_PAGE_BYTES:
                response.next_page_token = page_token(position)
                return response
            response.deliveries.append(message)
        if window.following is not None:
            response.next_page_token = page_token(window.following)
        return response
