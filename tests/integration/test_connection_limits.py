"""The public ports' connection limits: a flood of connections, no credential needed, must not
take every file the gateway may open, nor keep other callers out for long."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.certificates import DEVELOPMENT_HOSTS, CertificateAuthority, write_material
from gateway.http import server as http_server
from gateway.http import streams
from gateway.http.asgi import Receive, Scope, Send, respond
from gateway.server import Gateway
from gateway.settings import GatewaySettings
from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from tests.conftest import gateway_settings
from tests.credentials import bearer, key_for

DB = "/24"
LIMIT = 6
STREAMS = 8  # each connection's streams at once (MAX_STREAMS_PER_CONNECTION)


@pytest.fixture(scope="module")
def gateway(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path_factory: pytest.TempPathFactory,
) -> Gateway:
    redis.Redis.from_url(redis_url + DB).flushdb()
    settings = gateway_settings(redis_url + DB, tmp_path_factory.mktemp("connections"), stages)
    http = replace(settings.http, listen="127.0.0.1:0")
    return start_gateway(
        replace(settings, http=http, max_connections=LIMIT, max_streams_per_connection=STREAMS, dispatch=False)
    )


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def connect(port: int, opened: list[socket.socket], send: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    opened.append(sock)
    if send:
        sock.sendall(send)
    return sock


def closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closed the connection (EOF or a reset) within the time."""
    sock.settimeout(within_s)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def wait_until(check: Callable[[], bool], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def healthz(gateway: Gateway) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.http_port}/healthz", timeout=5) as answer:
        return int(answer.status)


def test_a_full_http_port_closes_its_oldest_idle_connection_for_a_new_caller(
    gateway: Gateway, sockets: list[socket.socket]
) -> None:
    assert gateway.http is not None
    wait_until(lambda: gateway.http is not None and gateway.http.connections == 0, 5)
    # Half-sent requests fill every place the port has.
    half = [connect(gateway.http_port, sockets, b"GET /healthz HTTP/1.1\r\nHost: x\r\n") for _ in range(LIMIT)]
    wait_until(lambda: gateway.http is not None and gateway.http.connections == LIMIT, 5)
    assert healthz(gateway) == 200  # a caller still gets in
    assert closed_by_server(half[0], 5)  # in the oldest one's place
    assert not closed_by_server(half[-1], 0.2)


def test_a_full_http_port_of_requests_in_flight_refuses_new_connections(
    gateway: Gateway, sockets: list[socket.socket], redis_url: str
) -> None:
    wait_until(lambda: gateway.http is not None and gateway.http.connections == 0, 5)
    # Requests whose bodies have not arrived yet: each is in flight, and none is closed for another.
    key = key_for(redis_url + DB, "connections")
    busy = b"POST /render.v1.RenderService/GetJob HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    busy += f"Authorization: Bearer {key}\r\nContent-Length: 100\r\n\r\n".encode()
    for _ in range(LIMIT):
        connect(gateway.http_port, sockets, busy)
    wait_until(lambda: gateway.http is not None and gateway.http.connections == LIMIT, 5)
    late = connect(gateway.http_port, sockets, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert closed_by_server(late, 5)
    assert gateway.http is not None and gateway.http.connections == LIMIT
    for sock in sockets:
        sock.close()
    wait_until(lambda: gateway.http is not None and gateway.http.connections == 0, 10)
    assert healthz(gateway) == 200


def test_a_connection_that_sends_no_whole_request_is_closed(
    gateway: Gateway, sockets: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_server, "FIRST_REQUEST_S", 0.5)
    silent = connect(gateway.http_port, sockets, b"GET /healthz HT")
    assert closed_by_server(silent, 5)
    used = connect(gateway.http_port, sockets, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert used.recv(64).startswith(b"HTTP/1.1 200")
    assert not closed_by_server(used, 1.0)  # kept alive past the deadline: it sent a request


def test_the_grpc_port_holds_at_most_its_limit_of_connections(
    gateway: Gateway, sockets: list[socket.socket], tmp_path: Path
) -> None:
    def check() -> grpc.StatusCode:
        # A connection of its own each time (channels in one process share connections otherwise).
        with grpc.insecure_channel(f"127.0.0.1:{gateway.port}", [("grpc.use_local_subchannel_pool", 1)]) as channel:
            try:
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="liveness"), timeout=5)
            except grpc.RpcError as exc:
                return exc.code()  # type: ignore[attr-defined,no-any-return]
            return grpc.StatusCode.OK

    silent = [connect(gateway.port, sockets) for _ in range(LIMIT)]
    time.sleep(0.3)
    assert check() == grpc.StatusCode.UNAVAILABLE  # refused, not a file taken from Redis's
    for sock in silent:
        sock.close()
    wait_until(lambda: check() == grpc.StatusCode.OK, 10)


def test_requests_refused_for_their_credential_keep_no_caller_out(
    gateway: Gateway, sockets: list[socket.socket]
) -> None:
    """A caller without a credential opening requests whose bodies never come (each refused, and
    read for a few seconds meanwhile) holds no place a caller with a request must wait for."""
    wait_until(lambda: gateway.http is not None and gateway.http.connections == 0, 5)
    refused = b"POST /render.v1.RenderService/GetJob HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    refused += b"Content-Length: 100\r\n\r\n"
    for _ in range(LIMIT):
        connect(gateway.http_port, sockets, refused)
    wait_until(lambda: gateway.http is not None and gateway.http.connections == LIMIT, 5)
    assert healthz(gateway) == 200


def test_tls_handshakes_count_against_the_limit_and_make_room(tmp_path: Path, sockets: list[socket.socket]) -> None:
    """Connections still in their TLS handshake hold a file each: they are counted and refused like
    any other (the handshake used to run before the count), and a caller that completes one gets in."""
    files = write_material(
        tmp_path / "tls", CertificateAuthority.create("a test CA").issue(DEVELOPMENT_HOSTS, common_name="gateway")
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, 200, b"ok")

    async def body() -> None:
        server = http_server.HttpServer(app, http_server.bind("127.0.0.1:0"), str(files.cert), str(files.key), 2)
        await server.start()
        loop = asyncio.get_running_loop()
        try:
            silent = [await loop.run_in_executor(None, connect, server.port, sockets) for _ in range(6)]
            await asyncio.sleep(0.3)
            assert server.connections == 2  # the other four were closed at once
            assert sum([await loop.run_in_executor(None, closed_by_server, s, 1.0) for s in silent]) >= 4

            def call() -> int:
                context = ssl.create_default_context(cafile=str(files.ca))
                with urllib.request.urlopen(f"https://127.0.0.1:{server.port}/", timeout=5, context=context) as answer:
                    return int(answer.status)

            assert await loop.run_in_executor(None, call) == 200  # a silent handshake made room for it
        finally:
            await server.stop(1.0)

    asyncio.run(body())


async def let_go(server: http_server.HttpServer, finished: list[str], within_s: float) -> None:
    """Waits until the port holds no connection and the app's handler has ended (["app"])."""
    for _ in range(int(within_s / 0.1)):
        if server.connections == 0 and finished:
            break
        await asyncio.sleep(0.1)
    assert server.connections == 0 and finished == ["app"]


def _request(path: str, method: str = "GET") -> list[tuple[str, str]]:
    return [(":method", method), (":scheme", "http"), (":authority", "x"), (":path", path)]


@dataclass
class _Seen:
    """What an HTTP/2 client saw of its connection: streams reset (and their codes), the bodies of
    those that ended, and whether the server closed the connection."""

    resets: dict[int, int] = field(default_factory=dict)
    bodies: dict[int, bytes] = field(default_factory=dict)
    ended: set[int] = field(default_factory=set)
    refused: set[int] = field(default_factory=set)
    closed: bool = False


def h2_client(
    port: int,
    sockets: list[socket.socket],
    conn: h2.connection.H2Connection,
    done: Callable[[_Seen], bool],
    on_event: Callable[[h2.events.Event, _Seen], None] = lambda event, seen: None,
    read_for_s: float = 5.0,
) -> _Seen:
    """Sends what `conn` has to send and reads the socket (every byte, so it never stalls) until
    `done` says so, the server closes the connection or `read_for_s` passes. Data of a stream whose
    window is open (only such streams get any) is given back, as a browser would."""
    sock = connect(port, sockets, conn.data_to_send())
    sock.settimeout(0.05)
    seen = _Seen()
    deadline = time.monotonic() + read_for_s
    while not done(seen) and time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            data = b""
        if not data:
            seen.closed = True
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.StreamReset):
                seen.resets[event.stream_id] = event.error_code
                if event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM:
                    seen.refused.add(event.stream_id)
            elif isinstance(event, h2.events.DataReceived):
                seen.bodies[event.stream_id] = seen.bodies.get(event.stream_id, b"") + event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                seen.ended.add(event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                seen.closed = True
            on_event(event, seen)
        sock.sendall(conn.data_to_send())
    return seen


async def reset_alone_with_its_window_shut(
    app: Callable[[Scope, Receive, Send], Awaitable[None]],
    finished: list[str],
    sockets: list[socket.socket],
    request: list[tuple[str, str]],
) -> None:
    """Serves `app` on an HTTP port to one HTTP/2 client that sends `request` with its streams'
    flow-control windows left at 0 (its connection's window open) and reads everything the server
    sends (its socket never stalls): the server must reset that stream alone (CANCEL), let the
    app's handler end and its request's place go, and keep the connection."""

    def shut_window(port: int) -> _Seen:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        conn.send_headers(conn.get_next_available_stream_id(), request, end_stream=True)
        return h2_client(port, sockets, conn, lambda seen: 1 in seen.resets)

    server = http_server.HttpServer(app, http_server.bind("127.0.0.1:0"), max_connections=4)
    await server.start()
    loop = asyncio.get_running_loop()
    try:
        seen = await loop.run_in_executor(None, shut_window, server.port)
        assert seen.resets == {1: h2.errors.ErrorCodes.CANCEL} and not seen.closed, seen
        for _ in range(50):
            if finished:
                break
            await asyncio.sleep(0.1)
        assert finished == ["app"]
        [connection] = server._open.values()  # the connection is kept, its request let go of
        assert not connection.requests and not connection.closing
        for sock in sockets:
            sock.close()
        await let_go(server, finished, 5.0)
    finally:
        await server.stop(1.0)


def test_a_client_that_stops_reading_its_response_is_let_go(
    sockets: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A response the client reads nothing of for WRITE_STALL_S ends its connection: a client that
    stops reading a download (or a watch) no longer holds it, its file and its request's place."""
    monkeypatch.setattr(streams, "WRITE_STALL_S", 0.5)
    finished: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"33554432")]})
            for _ in range(512):  # 32 MiB, far past what the sockets' buffers hold
                await send({"type": "http.response.body", "body": bytes(65536), "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            finished.append("app")

    async def body() -> None:
        server = http_server.HttpServer(app, http_server.bind("127.0.0.1:0"), max_connections=4)
        await server.start()
        loop = asyncio.get_running_loop()
        try:
            reader = await loop.run_in_executor(
                None, connect, server.port, sockets, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await let_go(server, finished, 10.0)
        finally:
            await server.stop(1.0)

    asyncio.run(body())


def test_an_http2_stream_whose_client_leaves_its_window_shut_is_reset(
    sockets: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An HTTP/2 client may read its socket yet never open a stream's flow-control window: the
    socket never stalls, so only the stream's own wait can tell. The stream is reset after
    WRITE_STALL_S (it held its handler, its place and its buffered response for good: no
    credential needed, the port full of them refused everyone); its connection is kept, since
    the connection's own window is open and its other streams still move."""
    monkeypatch.setattr(streams, "WRITE_STALL_S", 0.5, raising=False)
    finished: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            await respond(send, 200, bytes(100_000))
        finally:
            finished.append("app")

    asyncio.run(reset_alone_with_its_window_shut(app, finished, sockets, _request("/")))


def test_an_http2_grpc_response_whose_trailers_wait_on_a_shut_window_is_let_go(
    sockets: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """gRPC over HTTP/2 ends with trailers, which wait for the stream's buffer to drain: a response
    under the buffer's high water went in at once, and the trailers' wait was not bounded, so a
    client leaving its window shut held the call and its connection for good. The stream is reset
    alone (its trailers never sent)."""
    monkeypatch.setattr(streams, "WRITE_STALL_S", 0.5)
    finished: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            start = {"type": "http.response.start", "status": 200, "trailers": True, "headers": []}
            await send(start)
            await send({"type": "http.response.body", "body": bytes(1000), "more_body": False})
            await send({"type": "http.response.trailers", "headers": [(b"grpc-status", b"0")], "more_trailers": False})
        finally:
            finished.append("app")

    call = [*_request("/a.B/C", "POST"), ("te", "trailers"), ("content-type", "application/grpc")]
    asyncio.run(reset_alone_with_its_window_shut(app, finished, sockets, call))


def test_a_stalled_http2_stream_is_reset_while_its_connections_other_calls_go_on(
    sockets: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A browser multiplexes its calls on one HTTP/2 connection: one whose stream's window its
    client leaves shut is reset alone (CANCEL), and the others (one in flight as it is reset, one
    opened after it) complete. Aborting the connection lost them all. The reset stream's handler
    is told its client went (http.disconnect: a call is cancelled) and ends, and its place among
    the connection's streams (2 here) and its request in flight are let go of."""
    monkeypatch.setattr(streams, "WRITE_STALL_S", 0.5)
    finished: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/stuck":
            await asyncio.sleep(1.0)  # in flight while the stuck stream is reset
            await respond(send, 200, b"ok " + scope["path"].encode())
            finished.append(scope["path"])
            return

        async def disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        told = asyncio.create_task(disconnect())
        try:
            await respond(send, 200, bytes(100_000))
            await asyncio.wait_for(told, 5)
            finished.append("told")
        finally:
            told.cancel()
            finished.append("stuck")

    def calls(port: int) -> _Seen:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        conn.send_headers(1, _request("/stuck"), end_stream=True)
        conn.send_headers(3, _request("/second"), end_stream=True)
        conn.increment_flow_control_window(1 << 20, stream_id=3)  # stream 1's window alone stays shut

        def on_event(event: h2.events.Event, seen: _Seen) -> None:
            if isinstance(event, h2.events.StreamReset) and event.stream_id == 1:
                # Both of the connection's 2 places were taken: the reset stream's is free now.
                conn.send_headers(5, _request("/third"), end_stream=True)
                conn.increment_flow_control_window(1 << 20, stream_id=5)

        return h2_client(port, sockets, conn, lambda seen: {3, 5} <= seen.ended, on_event)

    async def body() -> None:
        server = http_server.HttpServer(app, http_server.bind("127.0.0.1:0"), max_connections=4, max_streams=2)
        await server.start()
        loop = asyncio.get_running_loop()
        try:
            seen = await loop.run_in_executor(None, calls, server.port)
            assert not seen.closed, seen
            assert seen.resets == {1: h2.errors.ErrorCodes.CANCEL}, seen
            assert seen.bodies.get(3) == b"ok /second" and seen.bodies.get(5) == b"ok /third", seen
            assert 1 not in seen.ended
            for _ in range(50):
                if len(finished) == 4:
                    break
                await asyncio.sleep(0.1)
            assert sorted(finished) == ["/second", "/third", "stuck", "told"]
            [connection] = server._open.values()
            assert not connection.requests and not connection.busy and not connection.closing
            for sock in sockets:
                sock.close()
            for _ in range(50):
                if server.connections == 0:
                    break
                await asyncio.sleep(0.1)
            assert server.connections == 0
        finally:
            await server.stop(1.0)

    asyncio.run(body())


def test_an_http2_client_that_leaves_its_connections_window_shut_is_let_go(
    sockets: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that opens its streams' windows but never its connection's: once the connection's
    window is spent every stream on it is stuck, and the connection is aborted after WRITE_STALL_S
    (its handler let go), as one whose socket is not read."""
    monkeypatch.setattr(streams, "WRITE_STALL_S", 0.5)
    finished: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            await respond(send, 200, bytes(200_000))  # past the connection's 65,535 bytes
        finally:
            finished.append("app")

    def shut_connection_window(port: int) -> _Seen:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        conn.send_headers(1, _request("/"), end_stream=True)
        seen = _Seen()
        sock = connect(port, sockets, conn.data_to_send())
        seen.closed = closed_by_server(sock, 5.0)  # reads every byte, gives no window back
        return seen

    async def body() -> None:
        server = http_server.HttpServer(app, http_server.bind("127.0.0.1:0"), max_connections=4)
        await server.start()
        try:
            seen = await asyncio.get_running_loop().run_in_executor(None, shut_connection_window, server.port)
            assert seen.closed
            await let_go(server, finished, 5.0)
        finally:
            await server.stop(1.0)

    asyncio.run(body())


def test_a_stalled_http2_stream_beside_a_steady_download_is_reset_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream whose window its client leaves shut, beside a download on the same connection whose
    client gives the connection's window back slowly but steadily (16 KiB every 0.1 s): the
    connection's window is spent most of the time, also at the stall, yet the download moves on.
    The stuck stream is reset alone; aborting the connection (its window read as shut at that
    instant) lost the download too (a review found it)."""
    monkeypatch.setattr(streams, "WRITE_STALL_S", 1.0)
    size = 1 << 20

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/stuck":
            await respond(send, 200, bytes(100_000))
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(4):
            await send({"type": "http.response.body", "body": bytes(size // 4), "more_body": i < 3})

    def calls(port: int) -> tuple[int, bool, dict[int, int], bool]:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})  # stream 1's stays shut
        conn.send_headers(1, _request("/stuck"), end_stream=True)
        conn.send_headers(3, _request("/download"), end_stream=True)
        conn.increment_flow_control_window(1 << 24, stream_id=3)
        got, ended, resets, closed = 0, False, {}, False
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(conn.data_to_send())
            sock.settimeout(0.05)
            owed: list[int] = []
            next_ack = 0.0
            deadline = time.monotonic() + 20
            while not ended and time.monotonic() < deadline:
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    data = None
                except OSError:
                    data = b""
                if data == b"":
                    closed = True
                    break
                for event in conn.receive_data(data or b""):
                    if isinstance(event, h2.events.DataReceived):
                        got += len(event.data)
                        owed.append(event.flow_controlled_length)
                    elif isinstance(event, h2.events.StreamEnded) and event.stream_id == 3:
                        ended = True
                    elif isinstance(event, h2.events.StreamReset):
                        resets[event.stream_id] = event.error_code
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        closed = True
                if owed and time.monotonic() >= next_ack:  # 16 KiB of window back every 0.1 s
                    conn.acknowledge_received_data(owed.pop(0), 3)
                    next_ack = time.monotonic() + 0.1
                sock.sendall(conn.data_to_send())
        return got, ended, resets, closed

    async def body() -> tuple[int, bool, dict[int, int], bool]:
        server = http_server.HttpServer(app, http_server.bind("127.0.0.1:0"), max_connections=4)
        await server.start()
        try:
            return await asyncio.get_running_loop().run_in_executor(None, calls, server.port)
        finally:
            await server.stop(1.0)

    got, ended, resets, closed = asyncio.run(body())
    assert resets == {1: h2.errors.ErrorCodes.CANCEL}, (got, ended, resets, closed)
    assert not closed and ended and got == size, (got, ended, resets, closed)


def test_an_http2_client_reading_slowly_but_steadily_is_not_let_go(monkeypatch: pytest.MonkeyPatch) -> None:
    """WRITE_STALL_S counts from the last bytes the client took, not from a send's start: a
    256 KiB chunk read at 160 KiB/s (each 16 KiB taken within 0.1 s) outlasts a 1 s WRITE_STALL_S
    and is not stalled (at 120 s, anything under 2.2 KB/s a stream was cut off)."""
    monkeypatch.setattr(streams, "WRITE_STALL_S", 1.0)
    size = 4 * 256 * 1024

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(4):
            await send({"type": "http.response.body", "body": bytes(256 * 1024), "more_body": i < 3})

    def download(port: int) -> tuple[int, bool]:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 16384})
        conn.send_headers(
            1, [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/")], end_stream=True
        )
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(conn.data_to_send())
            sock.settimeout(0.05)
            got, ended, owed, next_ack = 0, False, [], 0.0
            deadline = time.monotonic() + 20
            while not ended and time.monotonic() < deadline:
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    data = None
                except OSError:
                    break
                if data == b"":
                    break
                for event in conn.receive_data(data or b""):
                    if isinstance(event, h2.events.DataReceived):
                        got += len(event.data)
                        owed.append(event.flow_controlled_length)
                    elif isinstance(event, h2.events.StreamEnded):
                        ended = True
                if owed and time.monotonic() >= next_ack:  # 16 KiB of window back every 0.1 s
                    conn.acknowledge_received_data(owed.pop(0), 1)
                    next_ack = time.monotonic() + 0.1
                sock.sendall(conn.data_to_send())
        return got, ended

    async def body() -> None:
        server = http_server.HttpServer(app, http_server.bind("127.0.0.1:0"), max_connections=4)
        await server.start()
        try:
            got, ended = await asyncio.get_running_loop().run_in_executor(None, download, server.port)
            assert ended and got == size, (got, ended)
        finally:
            await server.stop(1.0)

    asyncio.run(body())


def test_the_grpc_port_takes_no_compressed_message(gateway: Gateway) -> None:
    """gRPC inflates a compressed message whole before the size limit and the credential are
    checked (40 KiB of gzip became 40 MiB), so the public port takes none."""
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        request = health_pb2.HealthCheckRequest(service="liveness")
        assert check(request, timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as refused:
            check(request, timeout=5, compression=grpc.Compression.Gzip)
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]


def test_an_http2_request_hypercorn_cannot_take_is_refused_alone(sockets: list[socket.socket]) -> None:
    """A :path or :method that is not ASCII, or a CONNECT without a :path, raised inside Hypercorn
    out of the connection's task: every stream on it ended without a GOAWAY, and each such request
    logged an ERROR with a traceback (no credential needed). Such a stream is now refused alone
    (PROTOCOL_ERROR, a malformed request) and the connection's other streams are answered."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await respond(send, 200, b"ok")

    unexpected: list[object] = []

    async def body() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: unexpected.append(context.get("exception")))
        server = http_server.HttpServer(app, http_server.bind("127.0.0.1:0"), max_connections=4)
        await server.start()
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False
            )
        )
        conn.initiate_connection()
        base = [(b":scheme", b"http"), (b":authority", b"x")]
        for request in (
            [(b":method", b"GET"), (b":path", b"/\xff\xfe"), *base],
            [(b":method", b"G\xffT"), (b":path", b"/"), *base],
            [(b":method", b"CONNECT"), (b":authority", b"x:1")],
            [(b":method", b"POST"), (b":path", b"/\xff"), *base],  # with a body after it
            [(b":method", b"GET"), (b":path", b"/"), *base],
        ):
            stream = conn.get_next_available_stream_id()
            conn.send_headers(stream, request, end_stream=request[0][1] != b"POST")
            if request[0][1] == b"POST":
                conn.send_data(stream, b"x" * 1000, end_stream=True)
        try:
            sock = await loop.run_in_executor(None, connect, server.port, sockets, conn.data_to_send())
            seen = await loop.run_in_executor(None, answer, sock, 2.0)
            assert seen.responses == 1 and not seen.closed  # the well-formed request, on the same connection
        finally:
            await server.stop(1.0)
        await asyncio.sleep(0.1)

    asyncio.run(body())
    assert not unexpected


def rapid_resets(port: int, headers: list[tuple[str, str]], body: bytes, streams: int) -> socket.socket:
    """A connection that opens `streams` streams and resets each at once (HTTP/2 "rapid reset"), then
    pings, all sent before anything the server says is read (what the server has not taken in
    within 3 s is left unsent); returns its socket."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(conn.data_to_send())
    request = [(":method", "POST"), (":scheme", "http"), (":authority", f"127.0.0.1:{port}"), *headers]
    for _ in range(streams):
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, request)
        conn.send_data(stream, body)
        conn.reset_stream(stream)
    conn.ping(b"resetall")
    sock.settimeout(3.0)
    with contextlib.suppress(TimeoutError):
        sock.sendall(conn.data_to_send())
    return sock


@dataclass
class Answer:
    """What the server sent on a rapid_resets connection (its frames read as they are: a client's
    state would reject resets of streams it reset)."""

    settings: dict[int, int] = field(default_factory=dict)  # what it announced
    refused: int = 0  # streams it refused past its bound (RST_STREAM, ENHANCE_YOUR_CALM)
    refused_alone: int = 0  # streams it refused past its bound (RST_STREAM, REFUSED_STREAM)
    responses: int = 0  # HEADERS frames it sent
    pinged: bool = False  # the ping after the streams answered
    closed: bool = False  # GOAWAY, or the connection closed


def answer(sock: socket.socket, for_s: float) -> Answer:
    seen = Answer()
    buffer = b""
    start = time.monotonic()
    sock.settimeout(0.1)
    while time.monotonic() - start < for_s and not seen.closed:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        seen.closed = not data
        buffer += data
        while len(buffer) >= 9 and len(buffer) >= 9 + int.from_bytes(buffer[:3], "big"):
            length, kind, flags = int.from_bytes(buffer[:3], "big"), buffer[3], buffer[4]
            payload, buffer = buffer[9 : 9 + length], buffer[9 + length :]
            if kind == 0x4 and not flags & 0x1:  # SETTINGS, not an acknowledgement
                for at in range(0, length, 6):
                    value = int.from_bytes(payload[at + 2 : at + 6], "big")
                    seen.settings[int.from_bytes(payload[at : at + 2], "big")] = value
            elif kind == 0x3 and int.from_bytes(payload, "big") == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM:
                seen.refused += 1
            elif kind == 0x3 and int.from_bytes(payload, "big") == h2.errors.ErrorCodes.REFUSED_STREAM:
                seen.refused_alone += 1
            elif kind == 0x1:
                seen.responses += 1
            elif kind == 0x6 and flags & 0x1:  # PING, acknowledged
                seen.pinged = True
            elif kind == 0x7:  # GOAWAY
                seen.closed = True
    return seen


def test_the_grpc_port_refuses_a_connections_streams_past_its_bound(gateway: Gateway, redis_url: str) -> None:
    """gRPC counts a stream until its handler is done: with a bound, a client that opens streams
    and resets them at once has at most that many calls in the gateway, the rest refused before
    any Python runs (without one, such a client held every caller for seconds and grew the
    gateway by gigabytes)."""
    key = key_for(redis_url + DB, "rapid-grpc")
    message = pb.GetJobRequest(job_id="nope").SerializeToString()
    headers = [
        (":path", "/render.v1.RenderService/GetJob"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("authorization", f"Bearer {key}"),
    ]
    with rapid_resets(gateway.port, headers, b"\0" + len(message).to_bytes(4, "big") + message, 400) as sock:
        seen = answer(sock, 2.0)
    assert seen.settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS) == STREAMS
    assert seen.refused  # streams past the bound, refused by gRPC itself
    # And the port serves on.
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel, pytest.raises(grpc.RpcError) as missing:
        pb_grpc.RenderServiceStub(channel).GetJob(pb.GetJobRequest(job_id="nope"), metadata=bearer(key), timeout=10)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def test_the_http_port_reads_a_client_that_resets_streams_at_its_budgets_pace(gateway: Gateway) -> None:
    """Hypercorn's send task fell behind a client that opened and reset streams, and took each out
    of its tree in time proportional to how many it held: one such client held every caller of
    either port at 0.6 s. The port now takes in a new stream only once the streams that are over
    have mostly gone, and reads a client that resets more than its budget of streams at the
    budget's pace (tests/unit/test_http_streams.py has the details): 3,000 resets and a ping would
    take it (3,000 - RESETS_BURST) / RESETS_PER_S = 56 s to read, where Hypercorn's own read them
    all at once (and said goodbye at its 1,000 requests a connection)."""
    assert gateway.http_port
    headers = [(":path", "/render.v1.RenderService/GetJob"), ("content-type", "application/proto")]
    body = pb.GetJobRequest(job_id="nope").SerializeToString()
    assert (3000 - streams.RESETS_BURST) / streams.RESETS_PER_S > 30
    with rapid_resets(gateway.http_port, headers, body, 3000) as sock:
        seen = answer(sock, 3.0)
        assert seen.settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS) == STREAMS
        assert not seen.pinged and not seen.closed  # still being read, slowly
        assert healthz(gateway) == 200  # while every other connection goes on


def test_the_http_port_refuses_a_stream_past_its_bound_alone(gateway: Gateway) -> None:
    """A client that opens more streams than the port announced (here: all sent before its
    SETTINGS are read) has each stream past the bound refused with REFUSED_STREAM, which it may
    retry, and the rest answered on the same connection; the h2 library alone ended the
    connection, every call on it included."""
    assert gateway.http_port
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    body = pb.GetJobRequest(job_id="nope").SerializeToString()
    request = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", f"127.0.0.1:{gateway.http_port}"),
        (":path", "/render.v1.RenderService/GetJob"),
        ("content-type", "application/proto"),
    ]
    for _ in range(STREAMS + 3):
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, request)
        conn.send_data(stream, body, end_stream=True)
    conn.ping(b"refused!")
    with socket.create_connection(("127.0.0.1", gateway.http_port), timeout=5) as sock:
        sock.sendall(conn.data_to_send())
        seen = answer(sock, 2.0)
    assert seen.settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS) == STREAMS
    assert seen.refused_alone == 3
    assert seen.responses == STREAMS  # each stream within the bound answered (no credential: 401)
    assert seen.pinged and not seen.closed


def _answering_unread(finished: list[str]) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An app that answers /healthz's way, reading nothing of the request's body, and notes in
    `finished` when its handler has ended."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            await respond(send, 200, b"SERVING")
        finally:
            finished.append("app")

    return app


@pytest.mark.parametrize("window", [1 << 20, 0], ids=["answered", "reset-at-its-stall"])
def test_a_handler_that_answers_without_reading_a_long_body_is_let_go(
    window: int, sockets: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler that answers without reading its request's body (/healthz, a file, the console:
    no credential needed) and a client that sends more DATA frames than the handler's queue holds
    (Hypercorn's max_app_queue_size, 10): the disconnect put into that full queue at the stream's
    end (its response's end, or its reset at a stall) waited for ever, from the handler's own task.
    The handler never ended, its request stayed in flight and its connection was held for good
    (never closed for another caller), its client gone too (a review found it)."""
    monkeypatch.setattr(streams, "WRITE_STALL_S", 0.5)
    finished: list[str] = []
    app = _answering_unread(finished)

    def long_body(port: int) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        conn.send_headers(1, _request("/healthz"))
        for _ in range(12):
            conn.send_data(1, b"x")
        sock = connect(port, sockets, conn.data_to_send())
        closed_by_server(sock, 1.5)  # past the stall
        sock.close()  # the client goes

    async def body() -> None:
        server = http_server.HttpServer(app, http_server.bind("127.0.0.1:0"), max_connections=4)
        await server.start()
        try:
            await asyncio.get_running_loop().run_in_executor(None, long_body, server.port)
            await let_go(server, finished, 5.0)
        finally:
            await server.stop(1.0)

    asyncio.run(body())


def test_an_http1_handler_that_answers_without_reading_a_chunked_body_is_let_go() -> None:
    """HTTP/1.1's twin of the test above: a handler that answers without reading its body (/healthz,
    a file, the console) and a client that sends more body chunks than the handler's queue holds (a
    chunked body of twelve one-byte chunks, 70 bytes): the reader waited to put the eleventh and the
    disconnect put at the response's end waited for ever, the request in flight for good. Its
    connection was never closed for another caller's, so two such requests held a port of two
    connections shut to everyone, no credential needed (a review found it)."""
    finished: list[str] = []
    app = _answering_unread(finished)

    def chunked_healthz(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            head = b"POST /healthz HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
            sock.sendall(head + b"1\r\nx\r\n" * 12)
            sock.settimeout(2.0)
            got = b""
            while b"SERVING" not in got:
                data = sock.recv(4096)
                assert data, got
                got += data  # answered; the client then goes

    def plain_healthz(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            sock.settimeout(2.0)
            got = b""
            with contextlib.suppress(OSError):
                while data := sock.recv(4096):
                    got += data
            return got

    async def body() -> bytes:
        server = http_server.HttpServer(app, http_server.bind("127.0.0.1:0"), max_connections=2)
        await server.start()
        loop = asyncio.get_running_loop()
        try:
            for _ in range(2):
                await loop.run_in_executor(None, chunked_healthz, server.port)
            await asyncio.sleep(0.5)  # both clients gone: their requests are over
            return await loop.run_in_executor(None, plain_healthz, server.port)
        finally:
            await server.stop(1.0)

    answer = asyncio.run(body())
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert finished == ["app"] * 3
