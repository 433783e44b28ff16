"""The HTTP port's server: Hypercorn's connections on the gateway's own event loop (HTTP/1.1, and
HTTP/2 with TLS or cleartext prior knowledge), so the Connect handlers share the gRPC port's
ledger, event hub and interceptors without another process or thread.

The port accepts its own connections (Hypercorn's `serve` accepts without bound) and serves each
with Hypercorn's connection handler, so that no caller, credential or not, can hold every file the
process may open (each held connection is one):

- at most `max_connections` at once: one more closes the oldest connection with no request in
  flight (an idle keep-alive, or one that never sent a whole request), or, when every one is
  busy, is closed unanswered;
- a connection whose first request has not begun within `FIRST_REQUEST_S` is closed (a client
  that sends half a request and waits held one for the keep-alive's 75 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass, field

from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config
from hypercorn.utils import wrap_app

from gateway.http.asgi import App, Receive, Scope, Send

log = logging.getLogger(__name__)

FIRST_REQUEST_S = 10.0  # from the connection's accept (and TLS handshake) to its first request's headers
_TLS_HANDSHAKE_S = 10.0
_REFUSAL_LOG_S = 10.0  # at most one line this often while connections are refused


def bind(listen: str) -> socket.socket:
    """A listening socket for host:port (port 0 picks a free one); bound now, so the port is known
    before the server starts and nobody can take it meanwhile."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except (OSError, ValueError) as exc:
        sock.close()
        raise OSError(f"could not bind the HTTP port {listen}") from exc
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


@dataclass(eq=False)
class _Connection:
    writer: asyncio.StreamWriter
    in_flight: int = 0  # requests (HTTP/2: streams) being answered
    used: bool = False  # a request has begun on it
    closing: bool = False

    def close(self) -> None:
        self.closing = True
        self.writer.close()


@dataclass
class _Refusals:
    """Connections refused at the limit, logged at most once per _REFUSAL_LOG_S."""

    count: int = 0
    logged_at: float = field(default=-_REFUSAL_LOG_S)

    def note(self, limit: int) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.logged_at >= _REFUSAL_LOG_S:
            log.warning(
                "the HTTP port holds its limit of %d connections, each with a request in flight: "
                "%d new connections refused so far",
                limit,
                self.count,
            )
            self.logged_at = now


class HttpServer:
    """Serves an ASGI application on a bound socket until stopped."""

    def __init__(
        self, app: App, sock: socket.socket, tls_cert: str = "", tls_key: str = "", max_connections: int = 10_000
    ) -> None:
        self.app = app
        self.socket = sock
        self.port: int = self.socket.getsockname()[1]
        self.max_connections = max_connections
        self.config = Config()
        self.config.accesslog = None
        self.config.errorlog = log
        self.config.include_server_header = False
        # Watches are long-lived responses: only idle connections are closed.
        self.config.keep_alive_timeout = 75
        self.config.h2_max_concurrent_streams = 1000
        if tls_cert and tls_key:
            self.config.certfile = tls_cert
            self.config.keyfile = tls_key
            self.config.alpn_protocols = ["h2", "http/1.1"]
        # Hypercorn's ASGI adapter, around the application that notes each connection's requests.
        self._app = wrap_app(self._tracked, self.config.wsgi_max_body_size, "asgi")  # type: ignore[arg-type]
        self._open: dict[tuple[object, ...], _Connection] = {}  # by the peer's (host, port), oldest first
        self._tasks: set[asyncio.Task[None]] = set()
        self._context = WorkerContext(None)
        self._server: asyncio.Server | None = None
        self._refusals = _Refusals()

    @property
    def connections(self) -> int:
        """Connections held now."""
        return len(self._open)

    async def start(self) -> None:
        ssl = self.config.create_ssl_context() if self.config.ssl_enabled else None
        self._context = WorkerContext(None)
        self._server = await asyncio.start_server(
            self._serve,
            sock=self.socket,
            backlog=1024,
            ssl=ssl,
            ssl_handshake_timeout=_TLS_HANDSHAKE_S if ssl else None,
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        key = tuple(peer[:2]) if isinstance(peer, tuple) else (id(writer),)
        if len(self._open) >= self.max_connections and not self._close_an_idle_one():
            self._refusals.note(self.max_connections)
            writer.close()
            return
        connection = _Connection(writer)
        self._open[key] = connection
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        loop = asyncio.get_running_loop()
        deadline = loop.call_later(FIRST_REQUEST_S, self._close_unless_used, connection)
        try:
            await TCPServer(self._app, loop, self.config, self._context, {}, reader, writer)
        finally:
            deadline.cancel()
            if self._open.get(key) is connection:
                del self._open[key]
            self._tasks.discard(task)

    def _close_an_idle_one(self) -> bool:
        """Closes the oldest connection with no request in flight; False when every one has one."""
        for key, connection in self._open.items():
            if connection.in_flight == 0:
                del self._open[key]
                connection.close()
                return True
        return False

    def _close_unless_used(self, connection: _Connection) -> None:
        if not connection.used and not connection.closing:
            connection.close()

    async def _tracked(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = self._open.get(tuple(scope.get("client") or ())) if scope["type"] == "http" else None
        if connection is None:
            await self.app(scope, receive, send)
            return
        connection.used = True
        connection.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            connection.in_flight -= 1

    async def stop(self, grace_s: float) -> None:
        """Stops taking connections and waits up to grace_s for responses in flight."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        await self._context.terminated.set()  # idle connections close now
        for connection in list(self._open.values()):
            if connection.in_flight == 0:
                connection.close()
        tasks = list(self._tasks)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=2.0)
        with contextlib.suppress(OSError):
            self.socket.close()
