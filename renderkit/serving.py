"""The lifecycle every gRPC process shares: health, reflection, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

log = logging.getLogger(__name__)

SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    # Without this, more than ~1,000 streams opened at once are cancelled by a backlog limit.
    ("grpc.server.max_pending_requests", 10000),
    ("grpc.so_reuseport", 0),
]

CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
]


def add_health_and_reflection(server: grpc.aio.Server, service_names: Sequence[str]) -> HealthServicer:
    """Registers grpc.health.v1 and reflection; every service starts NOT_SERVING."""
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    return health


async def set_serving(health: HealthServicer, service_names: Sequence[str], serving: bool) -> None:
    """Marks the listed services and the overall server ("") SERVING or NOT_SERVING."""
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ["", *service_names]:
        await health.set(name, status)


def bind(server: grpc.aio.Server, address: str) -> int:
    """Binds an insecure loopback/cluster port and returns the port actually bound (for port 0)."""
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {address}")
    return port


async def run_until_signalled(
    server: grpc.aio.Server,
    health: HealthServicer,
    *,
    grace_seconds: float = 10.0,
    on_start: Callable[[], Awaitable[None]] | None = None,
    on_drain: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Starts the server, waits for SIGTERM/SIGINT, then drains: NOT_SERVING, stop with grace."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        if on_start is not None:
            await on_start()
        await stop.wait()
    finally:
        log.info("draining")
        await health.enter_graceful_shutdown()
        if on_drain is not None:
            with contextlib.suppress(Exception):
                await on_drain()
        await server.stop(grace_seconds)
        log.info("stopped")


def configure_logging(name: str) -> None:
    """One log format for every process of the stack."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")
