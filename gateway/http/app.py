"""The gateway's HTTP port as one ASGI application.

| path | what answers |
|---|---|
| `/render.v1.RenderService/*`, `/render.admin.v1.AdminService/*` | Connect, gRPC-web, gRPC (HTTP/2): http.bridge |
| `/files/<key>?expires&kid&sig` | a job's output behind a signed link (gateway.http.files) |
| `/healthz` | GET or HEAD: 200 while the gateway serves, 503 otherwise (for load balancers that cannot speak gRPC) |
| anything else | the web console's files (gateway.http.console) |

Around all of it: CORS for the configured origins (preflights answered here; the headers Connect
and gRPC-web clients need to read trailers exposed), and the request size limit, enforced as the
body arrives (a Content-Length over it is refused before any byte is read), and a time limit on
the body: it must have arrived by the caller's deadline (`connect-timeout-ms`, `grpc-timeout`), or
within BODY_TIMEOUT_S when the caller sets none, else the call is DEADLINE_EXCEEDED and its
connection closed (a body that stops coming would otherwise hold it forever). A call whose
credential is refused is answered UNAUTHENTICATED before its body is decoded: parsing a large JSON
message costs seconds of the event loop, which no caller without a credential may spend; one whose
credential lacks the method's scope is answered PERMISSION_DENIED as early, as on the gRPC port
(the interceptors then check the credential again). Headers connect-python
cannot read (a value that is not UTF-8, a timeout that does not parse) are refused the same way,
INVALID_ARGUMENT naming the header (UNAUTHENTICATED for the credential's), in the call's own
protocol; gRPC over HTTP/1.1 and gRPC-web's text mode are refused with a line saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from connectrpc.code import Code
from connectrpc.errors import ConnectError

from gateway.http.asgi import App, Headers, Message, Receive, Scope, Send, header, note_refused, respond, text
from gateway.links import FILES_PATH

# What browsers may send and read (Connect's and gRPC-web's own headers, credentials, ranges).
ALLOWED_HEADERS = (
    "authorization",
    "content-type",
    "connect-protocol-version",
    "connect-timeout-ms",
    "connect-accept-encoding",
    "connect-content-encoding",
    "grpc-timeout",
    "x-grpc-web",
    "x-user-agent",
    "range",
    "if-none-match",
    "if-range",
)
EXPOSED_HEADERS = (
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "content-range",
    "content-length",
    "accept-ranges",
    "etag",
)
_ENVELOPE_SLACK = 64 * 1024  # framing around the message (envelope headers, end-of-stream frame)
_DRAIN_BYTES = 16 * 1024 * 1024  # what is read and dropped of a body over the limit before refusing it
# How long a call's body may take to arrive when the caller sets no deadline (a 48 MiB request
# needs 0.8 MB/s; larger inputs go by URL), and the most a caller's own deadline may give it (the
# TypeScript client waits 5 minutes for an upload's first answer).
BODY_TIMEOUT_S = 60.0
MAX_BODY_TIMEOUT_S = 300.0
# What a gRPC and a Connect deadline may look like (the protocols' grammars); anything else is refused.
_TIMEOUT_FORMS = {
    b"grpc-timeout": re.compile(rb"[0-9]{1,8}[HMSmun]"),
    b"connect-timeout-ms": re.compile(rb"[0-9]{1,10}"),
}
_GRPC_UNITS_S = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


@dataclass(frozen=True)
class Cors:
    """Which origins browsers may call from: exact origins, or "*" for any."""

    origins: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Cors:
        return cls(frozenset(o.strip().rstrip("/") for o in text.split(",") if o.strip()))

    def allows(self, origin: str) -> bool:
        return bool(origin) and ("*" in self.origins or origin in self.origins)

    def headers(self, origin: str) -> Headers:
        if not self.allows(origin):
            return []
        return [
            (b"access-control-allow-origin", origin.encode()),
            (b"access-control-expose-headers", ", ".join(EXPOSED_HEADERS).encode()),
            (b"vary", b"Origin"),
        ]

    async def preflight(self, scope: Scope, send: Send) -> None:
        origin = header(scope, b"origin")
        if not self.allows(origin):
            await respond(send, 204, content_type="", headers=[(b"vary", b"Origin")])
            return
        await respond(
            send,
            204,
            content_type="",
            headers=[
                (b"access-control-allow-origin", origin.encode()),
                (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                (b"access-control-allow-headers", ", ".join(ALLOWED_HEADERS).encode()),
                (b"access-control-max-age", b"7200"),
                (b"vary", b"Origin"),
            ],
        )


@dataclass(frozen=True)
class Refusal:
    """Why a call is answered before its body is decoded: its Connect code and a message."""

    code: Code
    message: str


# Checks a call's credential from its headers: None when it proves who the caller is, else why not.
Admit = Callable[[Scope], Awaitable[Refusal | None]]
_CONNECT_STATUS = {
    Code.INVALID_ARGUMENT: 400,
    Code.UNAUTHENTICATED: 401,
    Code.PERMISSION_DENIED: 403,
    Code.UNAVAILABLE: 503,
    Code.INTERNAL: 500,
}
_DRAIN_S = 5.0  # the longest a refused call's body is read for


class BodyTooSlow(ConnectError):
    """DEADLINE_EXCEEDED: the body had not arrived by its deadline (see `deadline_body`)."""


def header_problem(scope: Scope) -> tuple[Refusal | None, Scope]:
    """Why a call's headers cannot be read (None when they can), and the scope without the headers
    at fault, for connect-python to answer the refusal in the call's own protocol: it decodes every
    value as UTF-8 and parses the timeouts, and would answer UNKNOWN in Python's words otherwise."""
    refusal: Refusal | None = None
    kept: Headers = []
    for name, value in scope.get("headers", ()):
        problem = _unreadable(bytes(name), bytes(value))
        if problem is None:
            kept.append((name, value))
        elif refusal is None or problem.code == Code.UNAUTHENTICATED:  # the credential's comes first
            refusal = problem
    if refusal is None:
        return None, scope
    return refusal, {**scope, "headers": kept}


def _unreadable(name: bytes, value: bytes) -> Refusal | None:
    try:
        name.decode()
    except UnicodeDecodeError:
        return Refusal(Code.INVALID_ARGUMENT, "a header's name is not UTF-8 text")
    try:
        value.decode()
    except UnicodeDecodeError:
        if name == b"authorization":
            return Refusal(Code.UNAUTHENTICATED, "the authorization header is not UTF-8 text")
        return Refusal(Code.INVALID_ARGUMENT, f"the {name.decode()} header is not UTF-8 text")
    form = _TIMEOUT_FORMS.get(name)
    if form is not None and not form.fullmatch(value):
        usage = "1 to 8 digits and a unit (H, M, S, m, u, n)" if name == b"grpc-timeout" else "1 to 10 digits"
        return Refusal(Code.INVALID_ARGUMENT, f"the {name.decode()} header is not a timeout: {usage}")
    return None


def caller_timeout_s(scope: Scope) -> float | None:
    """The deadline a call's caller set, in seconds from now (its headers checked by header_problem)."""
    if connect := header(scope, b"connect-timeout-ms"):
        return int(connect) / 1000
    if grpc := header(scope, b"grpc-timeout"):
        return int(grpc[:-1]) * _GRPC_UNITS_S[grpc[-1]]
    return None


def deadline_body(scope: Scope, receive: Receive) -> Receive:
    """`receive` under which a call's body must have arrived by the caller's deadline, or within
    BODY_TIMEOUT_S when it sets none (never more than MAX_BODY_TIMEOUT_S): past it the call fails
    with DEADLINE_EXCEEDED in its own protocol, and the server closes the connection, its request
    unfinished. Once the body has ended, what comes next (a disconnect) is waited for as long as
    the call lasts."""
    asked = caller_timeout_s(scope)
    timeout_s = BODY_TIMEOUT_S if asked is None else min(asked, MAX_BODY_TIMEOUT_S)
    deadline = asyncio.get_running_loop().time() + timeout_s
    whose = "the call's deadline" if asked is not None else "the server's limit"
    late = BodyTooSlow(Code.DEADLINE_EXCEEDED, f"the request's body did not arrive within {whose} ({timeout_s:g} s)")
    arrived = expired = False

    async def receive_in_time() -> Message:
        nonlocal arrived, expired
        if arrived:
            return await receive()
        if expired:
            raise late
        try:
            async with asyncio.timeout_at(deadline):
                message = await receive()
        except TimeoutError:
            expired = True
            raise late from None
        arrived = message["type"] != "http.request" or not message.get("more_body", False)
        return message

    return receive_in_time


async def _drain(receive: Receive, seen: int, up_to: int) -> None:
    """Reads and drops the rest of a body (`seen` bytes of it read already) until it ends, more
    than `up_to` bytes have come, or its deadline passes (the caller then reads the refusal that
    the drain was for, not DEADLINE_EXCEEDED)."""
    with contextlib.suppress(BodyTooSlow):
        while seen <= up_to:
            message = await receive()
            if message["type"] != "http.request":
                return
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


def refuse_body(scope: Scope, receive: Receive, error: ConnectError) -> Receive:
    """`receive` that fails the call with `error` (in the call's own protocol) before any of its
    body is decoded: up to _DRAIN_BYTES of it are read and dropped first, so a client still
    writing reads the refusal rather than a broken pipe."""

    async def refused() -> Message:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_DRAIN_S):  # a body trickled in is not waited for
                await _drain(receive, 0, _DRAIN_BYTES)
        raise error

    return refused


def limit_body(scope: Scope, receive: Receive, limit: int) -> Receive:
    """`receive` that fails the call with RESOURCE_EXHAUSTED (in the call's own protocol) once the
    body passes `limit` bytes. A body a little over it is read to its end and dropped first, so the
    client, still writing, reads the refusal instead of a broken pipe; one whose Content-Length is
    far over it is refused at once, unread (the connection is then closed under it)."""
    length = header(scope, b"content-length")
    declared = int(length) if length.isascii() and length.isdigit() else 0  # str.isdigit() takes "²"
    over = ConnectError(
        Code.RESOURCE_EXHAUSTED, f"the request is larger than {limit:,} bytes; send large images by URL or as assets"
    )
    seen = 0

    async def receive_limited() -> Message:
        nonlocal seen
        if declared > limit:
            if declared <= limit + _DRAIN_BYTES:
                await _drain(receive, seen, limit + _DRAIN_BYTES)
            raise over
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                if message.get("more_body", False):
                    await _drain(receive, seen, limit + _DRAIN_BYTES)
                raise over
        return message

    return receive_limited


class HttpApp:
    """Routes the gateway's HTTP port (see the module's table)."""

    def __init__(
        self,
        *,
        rpc: App,
        rpc_prefixes: Sequence[str],
        files: App | None,
        console: App | None,
        cors: Cors,
        max_request_bytes: int,
        serving: Callable[[], bool],
        admit: Admit | None = None,
    ) -> None:
        self.rpc = rpc
        self.admit = admit
        self.rpc_prefixes = tuple(rpc_prefixes)
        self.files = files
        self.console = console
        self.cors = cors
        self.body_limit = max_request_bytes + _ENVELOPE_SLACK
        self.serving = serving

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["method"] == "OPTIONS" and header(scope, b"access-control-request-method"):
            await self.cors.preflight(scope, send)
            return
        extra = self.cors.headers(header(scope, b"origin"))
        if extra:
            send = _with_headers(send, extra)
        path: str = scope["path"]
        if path.startswith(self.rpc_prefixes):
            unserved = _unserved_transport(scope)
            if unserved is not None:
                await _refuse_plainly(receive, send, *unserved)
                return
            refusal, scope = header_problem(scope)
            if refusal is None and self.admit is not None:
                refusal = await self.admit(scope)
            if refusal is not None:
                note_refused(scope)  # a full port may close its connection for another caller's
            if refusal is not None and scope["method"] == "GET":  # Connect's unary GET: no body
                status = _CONNECT_STATUS.get(refusal.code, 500)
                await _connect_error(send, status, refusal.code.value, refusal.message)
                return
            receive, send, gone = _cancel_on_disconnect(receive, send)
            receive = deadline_body(scope, receive)
            if refusal is not None:
                receive = refuse_body(scope, receive, ConnectError(refusal.code, refusal.message))
            try:
                await self.rpc(scope, limit_body(scope, receive, self.body_limit), send)
            except ConnectError:
                # connect-python turns the cancel its client's disconnect caused into CANCELED and
                # raises it to the server, which logs it as an error: a client leaving is not one.
                if not gone():
                    raise
        elif path.startswith(FILES_PATH) and self.files is not None:
            await self.files(scope, receive, send)
        elif path == "/healthz" and scope["method"] not in ("GET", "HEAD"):
            # A CONNECT answered 200 switched its connection to a tunnel (h11): the body that
            # followed raised inside Hypercorn, an ERROR and a traceback per request, no credential.
            await text(send, 405, "only GET and HEAD are allowed here", [(b"allow", b"GET, HEAD")])
        elif path == "/healthz":
            ok = self.serving()
            await text(send, 200 if ok else 503, "SERVING" if ok else "NOT_SERVING", [(b"cache-control", b"no-store")])
        elif self.console is not None:
            await self.console(scope, receive, send)
        else:
            await text(send, 404, "not found")


def _unserved_transport(scope: Scope) -> tuple[int, str] | None:
    """The HTTP status and reason for a call in a protocol this port cannot serve it in, else None:
    gRPC without HTTP/2 (its status travels in trailers, which HTTP/1.1 servers do not send; as
    grpc-go answers it), and gRPC-web's base64 text mode (connect-python serves the binary one)."""
    content_type = header(scope, b"content-type")
    if content_type.startswith("application/grpc-web-text"):
        return 415, (
            "gRPC-web's text mode (application/grpc-web-text) is not served here: send "
            "application/grpc-web+proto (binary), or use Connect"
        )
    grpc = content_type == "application/grpc" or content_type.startswith("application/grpc+")  # connect-python's test
    if grpc and "http.response.trailers" not in scope.get("extensions", {}):
        return 400, (
            "gRPC requires HTTP/2 (TLS, or cleartext with prior knowledge); over HTTP/1.1 use Connect "
            "or gRPC-web (application/grpc-web+proto)"
        )
    return None


async def _refuse_plainly(receive: Receive, send: Send, status: int, reason: str) -> None:
    """A refusal in plain text, after reading and dropping a little of the body (as refuse_body)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_DRAIN_S):
            await _drain(receive, 0, _DRAIN_BYTES)
    await text(send, status, reason)


def _cancel_on_disconnect(receive: Receive, send: Send) -> tuple[Receive, Send, Callable[[], bool]]:
    """A stream whose client went away ends at once (its watcher leaves the event hub now, not at
    the next keep-alive): the disconnect, when Connect's monitor reads it, cancels the call's task,
    and what the call still sends afterwards is dropped."""
    call = asyncio.current_task()
    gone = False

    async def receive_watching() -> Message:
        nonlocal gone
        message = await receive()
        if message["type"] == "http.disconnect" and not gone:
            gone = True
            if call is not None:
                call.cancel()
        return message

    async def send_unless_gone(message: Message) -> None:
        if not gone:
            await send(message)

    def went() -> bool:
        """Whether the client went away (its call cancelled here, the cancel taken back)."""
        if gone and call is not None and call.cancelling():
            call.uncancel()
        return gone

    return receive_watching, send_unless_gone, went


async def _connect_error(send: Send, status: int, code: str, message: str) -> None:
    """An error as Connect's unary protocol writes one (its JSON, its HTTP status)."""
    body = json.dumps({"code": code, "message": message}).encode()
    await respond(send, status, body, content_type="application/json")


def _with_headers(send: Send, extra: Headers) -> Send:
    async def send_with(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return send_with


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
