"""The embedded stack runs the production trust path: every stage and Triton take only the stack's
certificate, Redis only its password, and no secret is on a command line or readable by others."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import grpc
import pytest
import tritonclient.grpc as triton_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from devstack.launcher import Stack, health_of


def test_every_stage_and_triton_refuse_a_client_without_the_stacks_certificate(stack: Stack) -> None:
    assert stack.internal_tls
    for name in ("segmentation", "depth", "projection", "generation"):
        address = stack.spawns[name].address
        assert health_of(address) == "UNREACHABLE", name  # plaintext: refused in the handshake
        assert health_of(address, credentials=stack.internal_credentials()) == "SERVING", name
        root_only = grpc.ssl_channel_credentials((stack.internal_tls_dir / "ca.crt").read_bytes())
        with grpc.secure_channel(address, root_only) as ch, pytest.raises(grpc.RpcError) as refused:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)  # no client certificate
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    plain = triton_grpc.InferenceServerClient(stack.triton_url)
    with pytest.raises(InferenceServerException, match="UNAVAILABLE"):
        plain.is_server_live(client_timeout=5)
    plain.close()


def test_redis_answers_only_with_the_password_on_its_port_and_its_socket(stack: Stack) -> None:
    import redis

    assert stack.redis_socket is not None
    assert os.stat(stack.redis_socket).st_mode & 0o777 == 0o700  # only the stack's user connects
    unix = socket.socket(socket.AF_UNIX)
    unix.settimeout(5)
    unix.connect(str(stack.redis_socket))
    for raw in (socket.create_connection(("127.0.0.1", stack.ports.redis), timeout=5), unix):
        with raw:
            raw.sendall(b"PING\r\n")
            assert raw.recv(200).startswith(b"-NOAUTH")
    with redis.Redis.from_url(stack.redis_url) as client:
        assert client.ping()
        # The gateway's connections (named after its pid) come through the socket.
        gateway = stack.process("gateway").pid
        addresses = {c["addr"] for c in client.client_list() if f"-{gateway}-" in c.get("name", "")}
        assert addresses
        assert all(address.startswith(f"{stack.redis_socket}:") for address in addresses), addresses


def test_secrets_are_private_files_and_never_on_a_command_line(stack: Stack) -> None:
    data = stack.data_dir
    for secret in (data / "redis-password", data / "internal-ca.key", stack.internal_tls_dir / "tls.key"):
        assert os.stat(secret).st_mode & 0o777 == 0o600, secret.name
    password = stack.redis_password.encode()
    for name, process in stack.processes:
        assert password not in Path(f"/proc/{process.pid}/cmdline").read_bytes(), name
