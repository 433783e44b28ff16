"""renderctl's admin commands (render.admin.v1.AdminService): API keys and limits of any tenant.
They need a key with the admin scope (the embedded stack's development key has it)."""

from __future__ import annotations

import argparse
from datetime import timedelta

import grpc
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration

from render.admin.v1 import admin_service_pb2 as pb
from render.admin.v1 import admin_service_pb2_grpc as pb_grpc

SCOPES = {"render": pb.SCOPE_RENDER, "read": pb.SCOPE_READ, "admin": pb.SCOPE_ADMIN}
SCOPE_NAMES = {v: k for k, v in SCOPES.items()}


def parse_scopes(text: str) -> list[pb.Scope]:
    """'render,read' as scopes."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCOPES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"scopes are a comma-separated list of {', '.join(SCOPES)}")
    return [SCOPES[n] for n in names]


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Adds `renderctl keys ...` to renderctl's subcommands."""
    keys = commands.add_parser("keys", help="API keys of tenants (admin scope)")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="mint a key; it is printed once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument("--scopes", type=parse_scopes, default="render,read", help="render, read, admin")
    create.add_argument("--ttl-days", type=float, help="how long the key works (default: until revoked)")
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


def describe(key: pb.ApiKey) -> str:
    """One line per key: id, tenant, name, scopes, and whether it is revoked or expiring."""
    scopes = ",".join(SCOPE_NAMES.get(s, "?") for s in key.scopes)
    state = "revoked" if key.HasField("revoke_time") else "active"
    expires = f", expires {key.expire_time.ToJsonString()}" if key.HasField("expire_time") else ""
    return f"{key.key_id}  {key.tenant:<16} {state:<8} {scopes:<18} {key.name}{expires}"


def run(args: argparse.Namespace, channel: grpc.Channel, metadata: tuple[tuple[str, str], ...]) -> int:
    """Runs an admin command; grpc.RpcError propagates (renderctl reports it)."""
    stub = pb_grpc.AdminServiceStub(channel)
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
        if args.ttl_days:
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
