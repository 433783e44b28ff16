"""renderctl's webhook commands: the tenant's endpoints, its signing secrets, and a job's deliveries
(render.v1, a key with the render scope; deliveries need read)."""

from __future__ import annotations

import argparse
import uuid

from render.v1 import render_service_pb2 as pb
from render_client.admin_cli import names_arg
from render_client.client import RenderClient

EVENTS = {
    "started": pb.WEBHOOK_EVENT_STARTED,
    "progress": pb.WEBHOOK_EVENT_PROGRESS,
    "completed": pb.WEBHOOK_EVENT_COMPLETED,
}
EVENT_NAMES = {v: k for k, v in EVENTS.items()}


parse_events = names_arg(EVENTS, "events")  # 'started,completed' as webhook events


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Adds `renderctl webhooks ...` to renderctl's subcommands."""
    webhooks = commands.add_parser("webhooks", help="webhook endpoints, signing secrets and deliveries")
    actions = webhooks.add_subparsers(dest="webhooks_command", required=True)
    create = actions.add_parser("create", help="register a URL for all your jobs' events; its secret is printed once")
    create.add_argument("url")
    create.add_argument(
        "--events", type=parse_events, default=[], help="started, progress, completed (default completed)"
    )
    create.add_argument("--description", default="")
    create.add_argument(
        "--idempotency-key",
        default="",
        help="the same request sent again with it within 24 hours creates nothing again (default: one of its own)",
    )
    actions.add_parser("list", help="your endpoints")
    delete = actions.add_parser("delete", help="delete an endpoint (its pending deliveries fail)")
    delete.add_argument("endpoint_id")
    rotate = actions.add_parser(
        "rotate", help="a new signing secret, printed once: an endpoint's, or (no id) the one requests' webhooks use"
    )
    rotate.add_argument("endpoint_id", nargs="?", default="")
    deliveries = actions.add_parser("deliveries", help="a job's deliveries and their attempts, oldest first")
    deliveries.add_argument("job_id")
    deliveries.add_argument("--page-size", type=int, default=0, help="1-100 (default 50)")
    deliveries.add_argument("--page-token", default="")


def describe(endpoint: pb.WebhookEndpoint) -> str:
    """One line per endpoint: id, events, URL and description, and whether it is disabled (its
    receiver answered 410 Gone: it receives nothing more until deleted and created again)."""
    events = ",".join(EVENT_NAMES.get(e, str(e)) for e in endpoint.events) or "completed"
    line = f"{endpoint.id}  {events:<26} {endpoint.url}  {endpoint.description}".rstrip()
    if endpoint.disabled:
        line += "  [disabled: the receiver answered 410 Gone; delete it and create it again]"
    return line


def delivery_lines(delivery: pb.WebhookDelivery) -> list[str]:
    """A delivery on one line, then one indented line per attempt."""
    status = pb.WebhookDeliveryStatus.Name(delivery.status).removeprefix("WEBHOOK_DELIVERY_STATUS_").lower()
    line = f"{delivery.id}  {delivery.event_type:<21} {status:<9} {delivery.url}"
    if delivery.HasField("next_attempt_time"):
        line += f"  next {delivery.next_attempt_time.ToJsonString()}"
    if delivery.failure_reason:
        line += f"  ({delivery.failure_reason})"
    lines = [line]
    for attempt in delivery.attempts:
        result = pb.WebhookAttemptResult.Name(attempt.result).removeprefix("WEBHOOK_ATTEMPT_RESULT_").lower()
        answer = f"HTTP {attempt.http_status}" if attempt.http_status else result
        when = attempt.time.ToJsonString()
        lines.append(f"    {when}  {answer:<18} {attempt.duration_ms:>6} ms  {attempt.error_message}".rstrip())
    return lines


def run(args: argparse.Namespace, client: RenderClient) -> int:
    """Runs a webhooks command; grpc.RpcError propagates (renderctl reports it)."""
    stub, metadata = client.stub, client.metadata
    command = args.webhooks_command
    if command == "create":
        # A key of its own, so that a create whose reply was lost is retried without making a
        # second endpoint (every event would then be delivered twice).
        key = args.idempotency_key or f"renderctl-{uuid.uuid4().hex}"
        request = pb.CreateWebhookEndpointRequest(
            url=args.url, events=args.events, description=args.description, idempotency_key=key
        )
        created = client.create_webhook_endpoint(request)
        print(created.secret)
        print(describe(created.endpoint))
    elif command == "list":
        for endpoint in stub.ListWebhookEndpoints(
            pb.ListWebhookEndpointsRequest(), metadata=metadata, timeout=30
        ).endpoints:
            print(describe(endpoint))
    elif command == "delete":
        stub.DeleteWebhookEndpoint(
            pb.DeleteWebhookEndpointRequest(endpoint_id=args.endpoint_id), metadata=metadata, timeout=30
        )
        print(f"deleted {args.endpoint_id}")
    elif command == "rotate":
        rotated = stub.RotateWebhookSecret(
            pb.RotateWebhookSecretRequest(endpoint_id=args.endpoint_id), metadata=metadata, timeout=30
        )
        print(rotated.secret)
        if rotated.HasField("previous_secret_expire_time"):
            until = rotated.previous_secret_expire_time.ToJsonString()
            print(f"the previous secret keeps signing beside it until {until}")
    else:
        page = stub.ListWebhookDeliveries(
            pb.ListWebhookDeliveriesRequest(job_id=args.job_id, page_size=args.page_size, page_token=args.page_token),
            metadata=metadata,
            timeout=30,
        )
        for delivery in page.deliveries:
            print("\n".join(delivery_lines(delivery)))
        if page.next_page_token:
            print(f"next page: --page-token {page.next_page_token}")
    return 0
