"""Kubernetes exec probe for a gRPC server that accepts only mutual-TLS clients.

The kubelet's native `grpc:` probe speaks plaintext only and presents no client certificate, so
it cannot reach a stage that serves the mutual TLS of INTERNAL_TLS_DIR. This probe asks
grpc.health.v1 the same way the gateway calls the stage: with the directory's client
certificate, checking that the server's certificate names `--name` (the Service name clients
dial). Without INTERNAL_TLS_DIR it asks in plaintext.

Exit status: 0 when the server reports SERVING, 1 for any other status or when it cannot be
reached, 2 for bad usage. The kubelet treats every non-zero status as a failed probe.

    python /opt/render/grpc_health_check.py --port 50061 --name segmentation
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from renderkit.tls import TlsError, TlsFiles, channel_credentials


def check(port: int, name: str, service: str, timeout_s: float, tls_dir: str) -> str:
    """The server's status for `service` (SERVING, NOT_SERVING, ...) or UNREACHABLE."""
    address = f"127.0.0.1:{port}"
    if tls_dir:
        credentials = channel_credentials(TlsFiles.directory(tls_dir).read())
        # Dial loopback but verify the certificate against the Service name, as the gateway does.
        channel = grpc.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", name)])
    else:
        channel = grpc.insecure_channel(address)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError as exc:
            return f"UNREACHABLE ({exc.code().name})"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="the server's port on loopback")
    parser.add_argument("--name", default="localhost", help="the DNS name the server's certificate must carry")
    parser.add_argument("--service", default="", help="the grpc.health.v1 service name (default: the server)")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    try:
        status = check(args.port, args.name, args.service, args.timeout, os.environ.get("INTERNAL_TLS_DIR", ""))
    except (OSError, TlsError) as exc:
        print(f"INTERNAL_TLS_DIR unusable: {exc}", file=sys.stderr)
        return 1
    if status != "SERVING":
        print(status, file=sys.stderr)  # the kubelet records it in the pod's events
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
