"""A tenant whose name would make its queue's key a global key of the dispatchers (queue:%s and
queue:tenants, queue:clock, queue:parked, queue:finish) is refused, not one that breaks every tenant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
import redis

from gateway.server import Gateway
from gateway.settings import GatewaySettings
from render.admin.v1 import admin_service_pb2 as admin_pb
from render.admin.v1 import admin_service_pb2_grpc as admin_grpc
from render.v1 import render_service_pb2_grpc as pb_grpc
from render_client.client import room_render, room_render_request
from tests.conftest import gateway_settings
from tests.credentials import bearer, key_for

ROOM = room_render_request(room_render("hall", dry_run=True))


@pytest.mark.parametrize("name", ["tenants", "clock", "parked", "finish"])
def test_a_tenant_named_like_a_global_queue_key_is_refused_or_harmless(
    name: str,
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path: Path,
) -> None:
    url = redis_url + "/26"
    redis.Redis.from_url(url).flushdb()
    gateway = start_gateway(replace(gateway_settings(url, tmp_path, stages), dispatcher_concurrency=0))
    operator = bearer(key_for(url, "ops"))
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        admin = admin_grpc.AdminServiceStub(channel)
        stub = pb_grpc.RenderServiceStub(channel)
        try:
            made = admin.CreateApiKey(
                admin_pb.CreateApiKeyRequest(tenant=name, name="n", scopes=[admin_pb.SCOPE_RENDER]),
                metadata=operator,
                timeout=10,
            )
        except grpc.RpcError as exc:  # the fixed behaviour: the name is refused
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
            return
        admin.GrantCredits(admin_pb.GrantCreditsRequest(tenant=name, amount=100), metadata=operator, timeout=10)
        for _ in range(2):
            try:
                stub.SubmitRender(ROOM, metadata=bearer(made.secret), timeout=10)
            except grpc.RpcError as exc:
                print(f"tenant {name!r} submit:", exc.code(), exc.details())  # type: ignore[attr-defined]
        # Every other tenant must be unaffected.
        stub.SubmitRender(ROOM, metadata=bearer(key_for(url, "acme")), timeout=10)
