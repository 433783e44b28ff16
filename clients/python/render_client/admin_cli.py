"""renderctl's commands for tenants: API keys, limits and credit grants (render.admin.v1, a key with
the admin scope: the embedded stack's development key has it), and the caller's own credits
(render.v1's balance and credit log)."""

from __future__ import annotations

import argparse
import math
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration

from render.admin.v1 import admin_service_pb2 as pb
from render.admin.v1 import admin_service_pb2_grpc as pb_grpc
from render.v1 import render_service_pb2 as render_pb
from render.v1 import render_service_pb2_grpc as render_grpc

SCOPES = {"render": pb.SCOPE_RENDER, "read": pb.SCOPE_READ, "admin": pb.SCOPE_ADMIN}
SCOPE_NAMES = {v: k for k, v in SCOPES.items()}
T = TypeVar("T")


def names_arg(table: Mapping[str, T], what: str) -> Callable[[str], list[T]]:
    """An option's parser for a comma-separated list of the table's names ('render,read'), as the
    table's values; `what` names them in the usage error."""

    def parse(text: str) -> list[T]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        if not names or any(n not in table for n in names):
            raise argparse.ArgumentTypeError(f"{what} are a comma-separated list of {', '.join(table)}")
        return [table[n] for n in names]

    return parse


parse_scopes = names_arg(SCOPES, "scopes")


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Adds `renderctl keys ...` to renderctl's subcommands."""
    keys = commands.add_parser("keys", help="API keys of tenants (admin scope)")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="mint a key; it is printed once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument("--scopes", type=parse_scopes, default="render,read", help="render, read, admin")
    create.add_argument("--ttl-days", type=_ttl_days, help="how long the key works, in days (default: until revoked)")
    listing = actions.add_parser("list", help="a tenant's keys")
    listing.add_argument("--tenant", required=True)
    revoke = actions.add_parser("revoke", help="revoke a key (within seconds on every gateway)")
    revoke.add_argument("key_id", help="the 12 characters after rk_")
    tenants = commands.add_parser("tenants", help="tenants' limits (admin scope)")
    tenant_actions = tenants.add_subparsers(dest="tenants_command", required=True)
    show = tenant_actions.add_parser("get", help="a tenant's limits and what it holds now")
    show.add_argument("tenant")
    change = tenant_actions.add_parser("set", help="set (or --reset) some of a tenant's limits")
    change.add_argument("tenant")
    change.add_argument("--rate", type=float, help="submits per second (0: no limit)")
    change.add_argument("--burst", type=int, help="submits at once above the rate")
    change.add_argument("--concurrency", type=int, help="jobs running at once")
    change.add_argument("--quota", type=int, help="unfinished jobs (0: no limit)")
    change.add_argument("--weight", type=float, help="share of the dispatchers")
    change.add_argument("--reset", action="append", default=[], metavar="LIMIT", help="back to the default")
    credits = commands.add_parser("credits", help="credits: your balance and log; grants (admin scope)")
    credit_actions = credits.add_subparsers(dest="credits_command", required=True)
    credit_actions.add_parser("balance", help="your tenant's balance")
    history = credit_actions.add_parser("log", help="your tenant's credit movements, newest first")
    history.add_argument("--page-size", type=int, default=20)
    history.add_argument("--page-token", default="")
    grant = credit_actions.add_parser("grant", help="add credits to a tenant (admin scope)")
    grant.add_argument("--tenant", required=True)
    grant.add_argument("--amount", type=int, required=True)
    grant.add_argument("--note", default="")
    grant.add_argument(
        "--idempotency-key", default="", help="the same grant sent again with it within 7 days adds nothing again"
    )


def _ttl_days(text: str) -> float:
    """--ttl-days: a number of days, from a second to ten years (0 would have meant no expiry)."""
    value = float(text)
    if not (math.isfinite(value) and 1 / 86400 <= value <= 3650):
        raise argparse.ArgumentTypeError("--ttl-days takes a number of days from a second to ten years")
    return value


def describe(key: pb.ApiKey) -> str:
    """One line per key: id, tenant, name, scopes, and whether it is revoked, expired or active."""
    scopes = ",".join(SCOPE_NAMES.get(s, "?") for s in key.scopes)
    expired = key.HasField("expire_time") and key.expire_time.ToSeconds() <= time.time()
    state = "revoked" if key.HasField("revoke_time") else "expired" if expired else "active"
    expires = f", expires {key.expire_time.ToJsonString()}" if key.HasField("expire_time") else ""
    return f"{key.key_id}  {key.tenant:<16} {state:<8} {scopes:<18} {key.name}{expires}"


# How long `credits grant` repeats a grant answered UNAVAILABLE or past its deadline (the ledger away
# or slow: the grant may or may not have been applied), with the same idempotency key, so it is
# applied once.
GRANT_RETRY_S = 60.0
# The answers after which a grant may have been applied: repeated with its key. A deadline passed
# while the gateway waited on the ledger, as much as a ledger that went away.
_UNSURE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def grant_once(
    stub: pb_grpc.AdminServiceStub,
    tenant: str,
    amount: int,
    note: str,
    idempotency_key: str,
    metadata: tuple[tuple[str, str], ...],
    *,
    retry_s: float = GRANT_RETRY_S,
    sleep: Callable[[float], None] = time.sleep,
) -> pb.GrantCreditsResponse:
    """One grant, whatever the connection does. An UNAVAILABLE or a deadline may come after the ledger
    applied the grant (Redis restarted between the write and its reply), so the grant always carries an
    idempotency key (its own when the caller gave none) and is repeated with it: a repeat adds
    nothing again. Past `retry_s` the error propagates, with the key to repeat it by."""
    key = idempotency_key or f"renderctl-{uuid.uuid4().hex}"
    request = pb.GrantCreditsRequest(tenant=tenant, amount=amount, note=note, idempotency_key=key)
    deadline = time.monotonic() + retry_s
    delay = 0.2
    hint = f"the grant may have been applied: repeat it with --idempotency-key {key}"
    while True:
        try:
            return stub.GrantCredits(request, metadata=metadata, timeout=30)  # type: ignore[no-any-return]
        except grpc.RpcError as exc:
            if exc.code() not in _UNSURE or time.monotonic() + delay > deadline:
                if exc.code() in _UNSURE and not idempotency_key:
                    print(hint, file=sys.stderr)  # with the error, not in the command's output
                raise
        except KeyboardInterrupt:  # Ctrl-C while the grant waits or repeats: it may have landed
            if not idempotency_key:
                print(f"\n{hint}", file=sys.stderr)
            raise
        sleep(delay)
        delay = min(delay * 2, 5.0)


def run(args: argparse.Namespace, channel: grpc.Channel, metadata: tuple[tuple[str, str], ...]) -> int:
    """Runs an admin command; grpc.RpcError propagates (renderctl reports it)."""
    stub = pb_grpc.AdminServiceStub(channel)
    if args.command == "credits":
        return _credits(args, channel, stub, metadata)
    if args.command == "tenants":
        if args.tenants_command == "get":
            tenant = stub.GetTenant(pb.GetTenantRequest(tenant=args.tenant), metadata=metadata, timeout=30).tenant
        else:
            limits = pb.TenantLimits()
            for option, field in (
                ("rate", "rate_per_second"),
                ("burst", "burst"),
                ("concurrency", "concurrency"),
                ("quota", "queue_quota"),
                ("weight", "weight"),
            ):
                if getattr(args, option) is not None:
                    setattr(limits, field, getattr(args, option))
            update = pb.UpdateTenantLimitsRequest(tenant=args.tenant, limits=limits, reset=args.reset)
            tenant = stub.UpdateTenantLimits(update, metadata=metadata, timeout=30).tenant
        print(json_format.MessageToJson(tenant, preserving_proto_field_name=True))
        return 0
    if args.keys_command == "create":
        request = pb.CreateApiKeyRequest(tenant=args.tenant, name=args.name, scopes=args.scopes)
        if args.ttl_days is not None:
            ttl = Duration()
            ttl.FromTimedelta(timedelta(days=args.ttl_days))
            request.ttl.CopyFrom(ttl)
        created = stub.CreateApiKey(request, metadata=metadata, timeout=30)
        print(created.secret)
        print(describe(created.key))
    elif args.keys_command == "list":
        for key in stub.ListApiKeys(pb.ListApiKeysRequest(tenant=args.tenant), metadata=metadata, timeout=30).keys:
            print(describe(key))
    else:
        revoked = stub.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=args.key_id), metadata=metadata, timeout=30)
        print(json_format.MessageToJson(revoked.key, preserving_proto_field_name=True))
    return 0


def _credits(
    args: argparse.Namespace,
    channel: grpc.Channel,
    stub: pb_grpc.AdminServiceStub,
    metadata: tuple[tuple[str, str], ...],
) -> int:
    public = render_grpc.RenderServiceStub(channel)
    if args.credits_command == "grant":
        granted = grant_once(stub, args.tenant, args.amount, args.note, args.idempotency_key, metadata)
        repeat = "; a repeat of that grant, nothing added" if granted.deduplicated else ""
        print(f"balance {granted.balance} (entry {granted.entry_id}{repeat})")
    elif args.credits_command == "balance":
        balance = public.GetBalance(render_pb.GetBalanceRequest(), metadata=metadata, timeout=30)
        print(f"balance {balance.balance}, reserved by unfinished jobs {balance.reserved}")
    else:
        page = public.ListCreditEntries(
            render_pb.ListCreditEntriesRequest(page_size=args.page_size, page_token=args.page_token),
            metadata=metadata,
            timeout=30,
        )
        for entry in page.entries:
            kind = render_pb.CreditEntryKind.Name(entry.kind).removeprefix("CREDIT_ENTRY_KIND_").lower()
            what = entry.job_id or entry.note
            print(f"{entry.time.ToJsonString()}  {kind:<8} {entry.amount:>+10}  balance {entry.balance:>10}  {what}")
        if page.next_page_token:
            print(f"next page: --page-token {page.next_page_token}")
    return 0
