"""The HTTP port's server: Hypercorn's connections on the gateway's own event loop (HTTP/1.1, and
HTTP/2 with TLS or cleartext prior knowledge), so the Connect handlers share the gRPC port's
ledger, event hub and interceptors without another process or thread.

The port accepts its own connections (Hypercorn's `serve` accepts without bound) and serves each
with Hypercorn's connection handler, so that no caller, credential or not, can hold every file the
process may open (each held connection is one):

- at most `max_connections` at once, counted from the accept (a TLS handshake in progress holds a
  file too, so TLS starts once the connection has its place): one more closes the oldest
  connection with no request in flight that the port keeps a place for (an idle keep-alive, one
  that never sent a whole request, or one whose requests are all being refused for their
  credential), or, when every one has one, is closed unanswered;
- a connection whose first request has not begun within `FIRST_REQUEST_S` is closed (a client
  that sends half a request and waits held one for the keep-alive's 75 s);
- a connection whose client has read nothing of a response for `WRITE_STALL_S` is closed
  (Hypercorn waits for ever: a client that stops reading held its connection for good), over
  HTTP/2 too where the connection's own flow-control window is left shut; an HTTP/2 stream whose
  client reads the socket but leaves that stream's window alone shut is reset by itself
  (RST_STREAM CANCEL), its connection's other calls going on (gateway.http.streams);
- a connection closed by the port is aborted (what it had not sent is dropped: a client that
  stopped reading would hold a closing one for good) and its handler ended; one its client closes
  while idle ends at once (Hypercorn's own waited out the keep-alive, holding the socket).

Serving connections itself, the port uses Hypercorn's connection handler (`TCPServer`) and, in
`_TCPServer`, two of its internals (the idle timer, `protocol_send`): requirements.lock pins
Hypercorn, and tests/integration/test_connection_limits.py exercises each of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from dataclasses import dataclass, field

from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData
from hypercorn.utils import wrap_app

from gateway.http import streams
from gateway.http.asgi import REQUEST_STATE, App, Receive, RequestState, Scope, Send
from gateway.http.streams import Stalled
from renderkit.edge.server import PUBLIC_MAX_STREAMS

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


class _TCPServer(TCPServer):
    """Hypercorn's connection handler, ending when its client closes an idle connection (its own
    waits out the keep-alive, 75 s, first, holding the socket, so a client that opens and closes
    connections kept a file for each of those seconds) and when its client has read nothing of a
    response for WRITE_STALL_S (its own waits for ever: a client that stops reading a download or
    a watch would hold the connection, its file and its request's place for good)."""

    async def _read_data(self) -> None:
        await super()._read_data()
        if self.idle_task._handle is not None:  # idle: no request to finish answering
            await self.idle_task.stop()

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, Stalled):  # an HTTP/2 client left its connection's window shut
            self.writer.transport.abort()
            await self.protocol.handle(Closed())
            return
        if not isinstance(event, RawData):
            await super().protocol_send(event)
            return
        async with self.send_lock:
            try:
                self.writer.write(event.data)
                # The buffer drains as the client reads: a client reading slowly still moves it.
                # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancel that
                # arrives as the drain completes, and a stream whose client had just left (its
                # call cancelled as the last bytes went out) then ran on to its next keep-alive.
                async with asyncio.timeout(streams.WRITE_STALL_S):
                    await self.writer.drain()
            except TimeoutError:
                self.writer.transport.abort()
                await self.protocol.handle(Closed())
            except (ConnectionError, RuntimeError):
                await self.protocol.handle(Closed())


@dataclass(eq=False)
class _Connection:
    writer: asyncio.StreamWriter
    handler: asyncio.Task[None]  # the task serving it
    requests: set[RequestState] = field(default_factory=set)  # in flight (HTTP/2: its streams)
    used: bool = False  # a request has begun on it
    closing: bool = False

    @property
    def busy(self) -> bool:
        """Whether a request the port keeps a place for is in flight: one refused for its
        credential is not (a caller without one opening such requests must not hold the port)."""
        return any(not request.refused for request in self.requests)

    def close(self) -> None:
        """Closes the connection now, dropping what it has not sent (a client that stopped reading
        would otherwise keep a closing connection, and its file, for good), and ends its handler
        (Hypercorn's would wait out its keep-alive first)."""
        self.closing = True
        self.writer.transport.abort()
        self.handler.cancel()


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
        self,
        app: App,
        sock: socket.socket,
        tls_cert: str = "",
        tls_key: str = "",
        max_connections: int = 10_000,
        max_streams: int = PUBLIC_MAX_STREAMS,
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
        # An HTTP/2 connection's streams open at once, as announced: a stream opened past it is
        # refused alone (gateway.http.streams).
        self.config.h2_max_concurrent_streams = max_streams
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
        self._ssl: ssl.SSLContext | None = None
        self._closing = 0  # connections closed whose handlers have not ended yet
        self._refusals = _Refusals()

    @property
    def connections(self) -> int:
        """Connections held now (a closed one until its handler has ended)."""
        return len(self._open)

    async def start(self) -> None:
        streams.install()
        self._ssl = self.config.create_ssl_context() if self.config.ssl_enabled else None
        self._context = WorkerContext(None)
        # Accepted plain, and TLS started once a connection has its place: a handshake in progress
        # holds a file too, so it is counted and refused like any other connection.
        self._server = await asyncio.start_server(self._serve, sock=self.socket, backlog=1024)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        key = tuple(peer[:2]) if isinstance(peer, tuple) else (id(writer),)
        if len(self._open) - self._closing >= self.max_connections and not self._close_an_idle_one():
            self._refusals.note(self.max_connections)
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        connection = _Connection(writer, task)
        self._open[key] = connection
        self._tasks.add(task)
        loop = asyncio.get_running_loop()
        deadline = loop.call_later(FIRST_REQUEST_S, self._close_unless_used, connection)
        try:
            if self._ssl is not None:
                try:
                    await writer.start_tls(self._ssl, ssl_handshake_timeout=_TLS_HANDSHAKE_S)
                except Exception:  # failed, abandoned or closed under it (asyncio then raises its own errors)
                    log.debug("a TLS handshake on the HTTP port did not finish", exc_info=True)
                    return
            await _TCPServer(self._app, loop, self.config, self._context, {}, reader, writer)
        finally:
            deadline.cancel()
            if self._open.get(key) is connection:
                del self._open[key]
            if connection.closing:
                self._closing -= 1
            self._tasks.discard(task)

    def _close_an_idle_one(self) -> bool:
        """Closes the oldest connection with no request in flight that the port keeps a place for;
        False when every one has one."""
        for connection in self._open.values():
            if not connection.closing and not connection.busy:
                self._close(connection)
                return True
        return False

    def _close_unless_used(self, connection: _Connection) -> None:
        if not connection.used and not connection.closing:
            self._close(connection)

    def _close(self, connection: _Connection) -> None:
        connection.close()
        self._closing += 1

    async def _tracked(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = self._open.get(tuple(scope.get("client") or ())) if scope["type"] == "http" else None
        if connection is None:
            await self.app(scope, receive, send)
            return
        request = RequestState()
        scope[REQUEST_STATE] = request
        connection.used = True
        connection.requests.add(request)
        try:
            await self.app(scope, receive, send)
        finally:
            connection.requests.discard(request)

    async def stop(self, grace_s: float) -> None:
        """Stops taking connections and waits up to grace_s for responses in flight."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        await self._context.terminated.set()  # idle connections close now
        for connection in list(self._open.values()):
            if not connection.requests and not connection.closing:
                self._close(connection)
        tasks = list(self._tasks)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=2.0)
        with contextlib.suppress(OSError):
            self.socket.close()
