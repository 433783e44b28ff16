"""The serving edge: a grpc.aio server with the pipeline's limits, error mapping, live health,
reflection of the real services only, and a graceful drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from renderkit import telemetry
from renderkit.edge.errors import ErrorMapping, Guard, Infrastructure
from renderkit.edge.health import Dependency, Readiness

log = logging.getLogger(__name__)

# Stage requests carry whole photos (a photo, a swatch and a mask); the gateway's public limit is
# set from its own settings.
INTERNAL_MESSAGE_BYTES = 256 * 1024 * 1024

Hook = Callable[[], Awaitable[None]]
# The health name a liveness probe asks for (the server's own name, "", is its readiness).
LIVENESS = "liveness"


# A public port's connection must finish its TLS and HTTP/2 handshakes within this (gRPC's own
# default is 120 s: a caller that connects and sends nothing held a file that long).
PUBLIC_HANDSHAKE_MS = 10_000
# An internal server (a stage) ends each client connection after this long (GOAWAY; calls in flight
# get the grace, longer than any stage call's deadline), so a client re-resolves its address and
# spreads its calls over replicas that were added since (a headless Service lists every pod; one
# HTTP/2 connection would otherwise stay with the replica it first reached).
INTERNAL_CONNECTION_AGE_MS = 60_000
INTERNAL_CONNECTION_AGE_GRACE_MS = 300_000


# Streams one connection of a public port may hold at once, by default (MAX_STREAMS_PER_CONNECTION;
# Envoy's edge configuration and nginx use about as many). gRPC counts a stream until its handler is
# done, so a client that opens streams and resets them at once (HTTP/2 "rapid reset") has at most
# this many calls in the gateway, and the rest are refused (ENHANCE_YOUR_CALM) before any Python runs:
# without a bound, one connection doing it held every caller for 0.8-10 s and grew the gateway by
# 0.7-3.4 GB in 12 s. A client that needs more streams at once (watches) opens more connections.
PUBLIC_MAX_STREAMS = 100
# Compressions a public port accepts: none. gRPC inflates a compressed message whole, before the
# size limit and before the credential is checked: 40 KiB of gzip became 40 MiB, and 16 such calls
# took the gateway to 1.9 GB. Photos are JPEG, PNG or WebP already; the HTTP port bounds its own.
_IDENTITY_ONLY = 1


def server_options(
    max_receive_bytes: int, max_connections: int | None = None, max_streams: int = PUBLIC_MAX_STREAMS
) -> list[tuple[str, int]]:
    """The channel arguments of every server; with `max_connections` (a public port), gRPC closes
    each connection past that many at once, and each that has not finished its handshakes within
    PUBLIC_HANDSHAKE_MS, holds at most `max_streams` streams of one connection, and refuses
    compressed messages."""
    limits = (
        [
            ("grpc.max_allowed_incoming_connections", max_connections),
            ("grpc.server_handshake_timeout_ms", PUBLIC_HANDSHAKE_MS),
            ("grpc.max_concurrent_streams", max_streams),
            ("grpc.compression_enabled_algorithms_bitset", _IDENTITY_ONLY),
        ]
        if max_connections
        else [
            ("grpc.max_connection_age_ms", INTERNAL_CONNECTION_AGE_MS),
            ("grpc.max_connection_age_grace_ms", INTERNAL_CONNECTION_AGE_GRACE_MS),
        ]
    )
    return [
        *limits,
        ("grpc.max_send_message_length", INTERNAL_MESSAGE_BYTES),
        # Enforced by gRPC as the message arrives: a larger request is refused from its length
        # prefix, before it is read into memory.
        ("grpc.max_receive_message_length", max_receive_bytes),
        # Without this, more than ~1,000 streams opened at once are cancelled by a backlog limit.
        ("grpc.server.max_pending_requests", 10000),
        ("grpc.so_reuseport", 0),
        # Pings on quiet connections find clients that vanished, so their watch streams end.
        ("grpc.keepalive_time_ms", 30000),
        ("grpc.keepalive_timeout_ms", 10000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


class Edge:
    """A server of the stack, created (bound) but not started.

    `service_names` are the real services: they get health statuses and reflection. Dependencies
    are probed on a loop while the server runs. Hooks: `on_start` before the server takes calls;
    `when_ready` once, when every required dependency first answers (before SERVING is first
    reported); `on_drain` after health turns NOT_SERVING, at once with the server's stop;
    `on_close` last. With `credentials` the port serves TLS only (renderkit.tls makes them: mutual
    for the internal hops, server-only for the public port), else plaintext.
    """

    def __init__(
        self,
        service_names: Sequence[str],
        *,
        listen: str,
        dependencies: Sequence[Dependency] = (),
        max_receive_bytes: int = INTERNAL_MESSAGE_BYTES,
        probe_interval_s: float = 1.0,
        infrastructure: Infrastructure = (),
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        guard: Guard | None = None,
        credentials: grpc.ServerCredentials | None = None,
        max_connections: int | None = None,
        max_streams: int = PUBLIC_MAX_STREAMS,
    ) -> None:
        self.service_names = list(service_names)
        # The error mapping runs first, so whatever a later interceptor (authentication) raises is
        # mapped to a safe status too.
        # The chain every call goes through, outermost first (also what another transport of the
        # same servicers, such as the gateway's HTTP port, runs its calls through): the trace span
        # (when tracing is on) around everything, so errors and refusals are recorded on it.
        self.interceptors: list[grpc.aio.ServerInterceptor] = [
            *telemetry.server_interceptors(),
            ErrorMapping(infrastructure, guard),
            *interceptors,
        ]
        self.server = grpc.aio.server(
            options=server_options(max_receive_bytes, max_connections, max_streams), interceptors=self.interceptors
        )
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.readiness = Readiness(self.health, self.service_names, dependencies, interval_s=probe_interval_s)
        self.on_start: list[Hook] = []
        self.on_drain: list[Hook] = []
        self.on_close: list[Hook] = []
        # JSON documents the process's metrics endpoint publishes beside /metrics (path → producer).
        self.metrics_documents: dict[str, Callable[[], Mapping[str, Any]]] = {}
        self._listen = listen
        self._credentials = credentials
        self._loop_task: asyncio.Task[None] | None = None
        self.port = 0

    def add(self, register: Callable[[grpc.aio.Server], None]) -> None:
        """Registers servicers; then binds the port (reflection lists the registered services)."""
        register(self.server)
        reflection.enable_server_reflection(
            [
                *self.service_names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self.server,
        )
        if self._credentials is not None:
            self.port = self.server.add_secure_port(self._listen, self._credentials)
        else:
            self.port = self.server.add_insecure_port(self._listen)
        if self.port == 0:
            raise OSError(f"could not bind {self._listen}")

    def depend_on(self, dependency: Dependency) -> None:
        """Adds a dependency to probe (before start)."""
        self.readiness.dependencies.append(dependency)

    def when_ready(self, hook: Hook) -> None:
        """Runs a hook once, the first time every required dependency answers (before SERVING)."""
        self.readiness.on_first_ready.append(hook)

    async def start(self) -> None:
        """Starts taking calls (NOT_SERVING until the dependencies answer) and the probe loop."""
        for name in ["", *self.service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        # Liveness is the process answering at all (its event loop runs the health servicer): a
        # dependency that is down makes the server unready, never a reason to restart it.
        await self.health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        for hook in self.on_start:
            await hook()
        await self.server.start()
        self._loop_task = asyncio.create_task(self.readiness.run())

    async def wait_serving(self, timeout_s: float = 60.0) -> None:
        """Returns once the server reports SERVING (tests and in-process use)."""
        await self.readiness.wait_serving(timeout_s)

    async def stop(self, grace_s: float) -> None:
        """Drains: NOT_SERVING, then the drain hooks and the server's stop (it takes no new call;
        those in flight finish) at once, within one grace; then the close hooks."""
        await self.health.enter_graceful_shutdown()
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        # The drain steps and the server's stop run at once, each within the grace: one after another
        # (the HTTP port, the dispatcher, the webhook deliveries, then the server, each with the whole
        # grace) they added up past the pod's own grace, and the kubelet's SIGKILL ended the rest.
        # The server stops taking calls at once, as the HTTP port does, and its calls in flight get
        # the whole grace: stopped last with what the other steps left (none, with a job running
        # past the grace), it took calls all through the drain and then cut them all at once (an
        # upload begun a second before the end failed UNAVAILABLE, its bytes sent for nothing). They
        # start in order: the first (the watches' end) runs up to its first wait before the others
        # begin, so no watch holds the server's stop.
        steps = [hook() for hook in self.on_drain]
        for failed in await asyncio.gather(*steps, self.server.stop(grace_s), return_exceptions=True):
            if isinstance(failed, Exception):
                log.error("drain step failed", exc_info=failed)
        for hook in self.on_close:
            try:
                await hook()
            except Exception:
                log.exception("close step failed")


def serve(name: str, create: Callable[[], Edge], grace_s: Callable[[], float] | float) -> None:
    """main() of a process: configure logs, traces and metrics, serve until SIGTERM or SIGINT, then
    drain."""
    observed = telemetry.configure(name)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        edge = create()
        if observed.metrics is not None:
            observed.metrics.documents.update(edge.metrics_documents)
        log.info("%s listening on port %d", name, edge.port)
        await edge.start()
        try:
            await stop.wait()
        finally:
            log.info("draining")
            grace = grace_s() if callable(grace_s) else grace_s
            with contextlib.suppress(Exception):
                await edge.stop(grace)
            log.info("stopped")

    try:
        asyncio.run(run())
    finally:
        observed.shutdown()
    exit_now()


def exit_now() -> None:
    """Ends a process that has drained: its logs and output flushed, without the interpreter's
    teardown. Every server here releases what it holds while it drains (connections, channels,
    telemetry); the teardown then only joins library threads, and a stage whose channel to Triton
    ever waited out a failed connection spent ~2 s in it (gRPC's own threads), so that stopping
    the embedded stack took ~10 s. A failed drain raises instead of reaching this."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)
