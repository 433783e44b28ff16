"""One implementation, two transports: the gateway's gRPC servicers served over HTTP as Connect,
gRPC-web and gRPC (connect-python), through the very interceptors of the gRPC port.

`add_XServicer_to_server` registers its method handlers with a `HandlerRegistry` exactly as with a
grpc.aio server. A call that arrives over HTTP is resolved through the same interceptor chain
(the error mapping, authentication, whatever is added later) with the HTTP headers as metadata,
and the resulting handler runs with a context whose `abort` raises a Connect error carrying the
same code, safe message and google.rpc details as the gRPC port's trailers would.

Around connect-python: an enveloped body (gRPC, gRPC-web, Connect's streams) is checked envelope by
envelope as it arrives (`EnvelopeCheck`), so broken framing is INVALID_ARGUMENT saying what is
wrong, and a message declared larger than the limit is RESOURCE_EXHAUSTED from its 5-byte header;
and an exception that is not a Connect error is INTERNAL with a reference, its detail logged, never
the UNKNOWN with the exception's own words that connect-python would answer.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn

import grpc
from connectrpc._protocol import HTTPException
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo
from connectrpc.request import RequestContext
from connectrpc.server import ConnectASGIApplication, Endpoint
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor

from gateway.http import codecs
from gateway.http.asgi import Message, Receive, Scope, Send, header
from gateway.http.compression import BoundedGzip
from renderkit.errors import status_details

log = logging.getLogger(__name__)


class Metadatum(NamedTuple):
    """One metadata entry as grpc.aio gives it: a pair that also has `.key` and `.value` (what the
    OpenTelemetry server interceptor reads a call's trace context from)."""

    key: str
    value: str | bytes


Metadata = tuple[Metadatum, ...]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Any]]

# Transport headers that are not call metadata (what a gRPC server keeps out of it too).
_TRANSPORT_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "accept-encoding",
        "connection",
        "host",
        "te",
        "user-agent",
        "grpc-timeout",
        "grpc-encoding",
        "grpc-accept-encoding",
        "transfer-encoding",
    }
)


class HandlerRegistry:
    """Stands in for a grpc.aio server when servicers register: keeps each method's handler."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}  # full method name → grpc.RpcMethodHandler

    def add_generic_rpc_handlers(self, handlers: Sequence[Any]) -> None:
        """Generic handlers are registered again by method below; nothing to keep."""

    def add_registered_method_handlers(self, service: str, method_handlers: Mapping[str, Any]) -> None:
        for name, handler in method_handlers.items():
            self.handlers[f"/{service}/{name}"] = handler


@dataclass(frozen=True)
class _CallDetails:
    """grpc.HandlerCallDetails of a call that arrived over HTTP."""

    method: str
    invocation_metadata: Metadata


class _Aborted(grpc.aio.AbortError):
    """Raised by the bridge's context.abort; grpc.aio.AbortError so every interceptor lets it by."""

    def __init__(self, code: grpc.StatusCode, message: str, trailing_metadata: Metadata) -> None:
        super().__init__()
        self.code = code
        self.message = message
        self.trailing_metadata = trailing_metadata

    def to_connect(self) -> ConnectError:
        status = status_details(self.trailing_metadata)
        details = list(status.details) if status is not None else []
        return ConnectError(connect_code(self.code), self.message, details)


def connect_code(code: grpc.StatusCode) -> Code:
    """The Connect code of a gRPC status code (the two sets are the same, spelled apart)."""
    if code == grpc.StatusCode.CANCELLED:
        return Code.CANCELED
    try:
        return Code[code.name]
    except KeyError:
        return Code.UNKNOWN


class _Context:
    """The part of grpc.aio.ServicerContext that the gateway's handlers and interceptors use."""

    def __init__(self, metadata: Metadata, request: RequestContext[Any, Any]) -> None:
        self._metadata = metadata
        self._request = request

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()) -> NoReturn:
        raise _Aborted(code, details, tuple(trailing_metadata))

    def peer(self) -> str:
        return f"ipv4:{self._request.client_address() or 'unknown'}"

    def time_remaining(self) -> float | None:
        remaining = self._request.timeout_ms()
        return None if remaining is None else remaining / 1000.0

    def cancelled(self) -> bool:
        return False


def metadata_of(request: RequestContext[Any, Any]) -> Metadata:
    """A call's metadata from its HTTP headers, as a gRPC server would give it: lowercase keys,
    `-bin` values decoded, transport headers left out."""
    items: list[Metadatum] = []
    for key, value in request.request_headers().allitems():
        name = key.lower()
        if name in _TRANSPORT_HEADERS or name.startswith(("connect-", ":")):
            continue
        if name.endswith("-bin"):
            try:
                items.append(Metadatum(name, base64.b64decode(value + "=" * (-len(value) % 4))))
            except ValueError:
                continue
        else:
            items.append(Metadatum(name, value))
    return tuple(items)


class ServicerBridge:
    """Serves registered gRPC method handlers as Connect endpoints, through `interceptors` (the
    gRPC port's own list, outermost first)."""

    def __init__(self, interceptors: Sequence[grpc.aio.ServerInterceptor]) -> None:
        self.registry = HandlerRegistry()
        self.interceptors = list(interceptors)
        self._services: list[ServiceDescriptor] = []

    def add(self, register: Callable[[Any], None], *services: ServiceDescriptor) -> None:
        """Registers servicers (the same `register` the gRPC port takes) for the services named."""
        register(self.registry)
        self._services.extend(services)

    async def _handler(self, method: str, metadata: Metadata) -> Any:
        async def registered(details: grpc.HandlerCallDetails) -> Any:
            return self.registry.handlers.get(details.method)

        continuation: Continuation = registered
        for interceptor in reversed(self.interceptors):
            continuation = functools.partial(interceptor.intercept_service, continuation)
        return await continuation(_CallDetails(method, metadata))  # type: ignore[arg-type]

    def endpoints(self) -> dict[str, Any]:
        """Every registered method as a Connect endpoint (unary or server stream), by URL path."""
        endpoints: dict[str, Any] = {}
        for service in self._services:
            for method in service.methods:
                if method.client_streaming:
                    continue  # browsers cannot stream requests; the public APIs have no such method
                path = f"/{service.full_name}/{method.name}"
                info = MethodInfo(
                    name=method.name,
                    service_name=service.full_name,
                    input=message_factory.GetMessageClass(method.input_type),
                    output=message_factory.GetMessageClass(method.output_type),
                    idempotency_level=IdempotencyLevel.UNKNOWN,
                )
                if method.server_streaming:
                    endpoints[path] = Endpoint.server_stream(info, self._server_stream(path))
                else:
                    endpoints[path] = Endpoint.unary(info, self._unary(path))
        return endpoints

    def _unary(self, path: str) -> Callable[[Any, RequestContext[Any, Any]], Awaitable[Any]]:
        async def call(request: Any, ctx: RequestContext[Any, Any]) -> Any:
            metadata = metadata_of(ctx)
            try:
                handler = await self._handler(path, metadata)
                if handler is not None and handler.unary_unary is None and handler.stream_unary is not None:
                    # An interceptor's refusal (gateway.auth.interceptor), shaped to leave a gRPC
                    # request unread: it answers here as on the gRPC port.
                    return await handler.stream_unary(_one(request), _Context(metadata, ctx))
                if handler is None or handler.unary_unary is None:
                    raise ConnectError(Code.UNIMPLEMENTED, f"{path} is not served here")
                timer = asyncio.timeout_at(_deadline(ctx))  # the caller's deadline, as the gRPC port enforces it
                try:
                    async with timer:
                        return await handler.unary_unary(request, _Context(metadata, ctx))
                except TimeoutError:
                    if timer.expired():
                        raise _deadline_exceeded() from None
                    raise
            except _Aborted as aborted:
                raise aborted.to_connect() from None
            except ConnectError:
                raise
            except Exception as exc:
                raise internal_error(path, exc) from None

        return call

    def _server_stream(self, path: str) -> Callable[[Any, RequestContext[Any, Any]], AsyncIterator[Any]]:
        async def stream(request: Any, ctx: RequestContext[Any, Any]) -> AsyncIterator[Any]:
            metadata = metadata_of(ctx)
            try:
                handler = await self._handler(path, metadata)
                if handler is not None and handler.unary_stream is None and handler.stream_stream is not None:
                    responses = handler.stream_stream(_one(request), _Context(metadata, ctx))  # a refusal, as above
                elif handler is None or handler.unary_stream is None:
                    raise ConnectError(Code.UNIMPLEMENTED, f"{path} is not served here")
                else:
                    responses = handler.unary_stream(request, _Context(metadata, ctx))
                deadline = _deadline(ctx)
                try:
                    while True:  # each message by the caller's deadline, as the gRPC port enforces it
                        timer = asyncio.timeout_at(deadline)
                        try:
                            async with timer:
                                response = await anext(responses)
                        except StopAsyncIteration:
                            break
                        except TimeoutError:
                            if timer.expired():
                                raise _deadline_exceeded() from None
                            raise
                        yield response
                finally:
                    await responses.aclose()
            except _Aborted as aborted:
                raise aborted.to_connect() from None
            except ConnectError:
                raise
            except Exception as exc:
                raise internal_error(path, exc) from None

        return stream

    def application(self, read_max_bytes: int) -> ConnectASGIApplication[Any]:
        """The ASGI application serving every registered service (Connect, gRPC-web and gRPC); a
        body that does not parse is INVALID_ARGUMENT (codecs.install), and a compressed one is
        inflated no further than the size limit (compression.BoundedGzip)."""
        codecs.install()
        return _Application(
            service=self,
            endpoints=lambda bridge: bridge.endpoints(),
            read_max_bytes=read_max_bytes,
            compressions=[BoundedGzip(read_max_bytes)],
        )


def _deadline(ctx: RequestContext[Any, Any]) -> float | None:
    """The loop time by which the call must end (its caller's Connect-Timeout-Ms or grpc-timeout), or None."""
    remaining_ms = ctx.timeout_ms()
    return None if remaining_ms is None else asyncio.get_running_loop().time() + remaining_ms / 1000


def _deadline_exceeded() -> ConnectError:
    return ConnectError(Code.DEADLINE_EXCEEDED, "the call did not finish within its deadline")


async def _one(request: Any) -> AsyncIterator[Any]:
    """A request as the one message of a request stream."""
    yield request


def internal_error(where: str, exc: BaseException) -> ConnectError:
    """INTERNAL for an exception nobody mapped (a bug): a reference to find it by in the log, where
    its detail goes, and nothing of its own words (as renderkit.edge.errors answers on the gRPC port)."""
    reference = uuid.uuid4().hex[:12]
    log.error("%s failed (reference %s)", where, reference, exc_info=exc)
    return ConnectError(Code.INTERNAL, f"an internal error occurred (reference {reference})")


class EnvelopeCheck:
    """Follows an enveloped body's framing as it arrives (each message behind a 5-byte header: a
    flags byte, 0x01 for compressed, and the length, big-endian), without holding its bytes."""

    def __init__(self, protocol: str, limit: int, compressed: bool, encoding_header: str) -> None:
        self.protocol = protocol
        self.limit = limit
        self.compressed = compressed  # whether the call names a compression its messages may use
        self.encoding_header = encoding_header
        self.messages = 0
        self._header = bytearray()  # the part of an envelope's header that has come so far
        self._length = 0  # the message being read: its declared length
        self._left = 0  # and how much of it is still to come

    def feed(self, chunk: bytes) -> None:
        """Follows the next piece of the body; raises a ConnectError at the first fault."""
        position = 0
        while position < len(chunk):
            if self._left:
                step = min(self._left, len(chunk) - position)
                self._left -= step
                position += step
                continue
            taken = chunk[position : position + 5 - len(self._header)]
            self._header += taken
            position += len(taken)
            if len(self._header) == 5:
                self._begin(self._header[0], int.from_bytes(self._header[1:5], "big"))
                self._header.clear()

    def end(self) -> None:
        """Checks that the body ended after a whole message."""
        if self._header:
            raise ConnectError(
                Code.INVALID_ARGUMENT,
                f"the body ends inside a {self.protocol} envelope's 5-byte header "
                f"({len(self._header)} of its bytes came)",
            )
        if self._left:
            raise ConnectError(
                Code.INVALID_ARGUMENT,
                f"the body ends {self._length - self._left:,} bytes into a message whose {self.protocol} "
                f"envelope declares {self._length:,}",
            )
        if not self.messages:
            raise ConnectError(
                Code.INVALID_ARGUMENT,
                f"the body holds no message: a {self.protocol} request is a message behind a 5-byte envelope "
                "header, even when the message is empty",
            )

    def _begin(self, flags: int, length: int) -> None:
        if flags & ~0x01:
            raise ConnectError(
                Code.INVALID_ARGUMENT,
                f"the body is not {self.protocol} envelopes: an envelope's flags byte is 0x{flags:02x}, where a "
                "request's may be 0x00, or 0x01 for a compressed message",
            )
        if flags & 0x01 and not self.compressed:
            raise ConnectError(
                Code.INVALID_ARGUMENT,
                f"a message is flagged compressed, but the call's {self.encoding_header} names no "
                "compression read here",
            )
        if length > self.limit:
            raise ConnectError(
                Code.RESOURCE_EXHAUSTED,
                f"a message of {length:,} bytes is larger than {self.limit:,} bytes; send large images by URL or "
                "as assets",
            )
        self.messages += 1
        self._length = self._left = length


def checked_envelopes(receive: Receive, check: EnvelopeCheck) -> Receive:
    """`receive` that passes the body on only as far as its framing is sound (`check`)."""
    ended = False

    async def receive_checked() -> Message:
        nonlocal ended
        message = await receive()
        if message["type"] == "http.request" and not ended:
            check.feed(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                ended = True
                check.end()
        return message

    return receive_checked


def _refusing(error: ConnectError) -> Receive:
    """`receive` that fails the call with `error`, in the call's own protocol, before its body is read."""

    async def refused() -> Message:
        raise error

    return refused


class _Application(ConnectASGIApplication[ServicerBridge]):
    def __init__(self, *, read_max_bytes: int, **kwargs: Any) -> None:
        super().__init__(read_max_bytes=read_max_bytes, **kwargs)
        self.limit = read_max_bytes

    @property
    def path(self) -> str:
        return "/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        check = self._envelope_check(scope) if scope["type"] == "http" and scope["method"] == "POST" else None
        if check is not None:
            receive = checked_envelopes(receive, check)
            unknown = header(scope, b"connect-content-encoding") if check.protocol == "Connect" else ""
            if unknown and unknown not in self._compressions:  # connect-python would read it as identity
                receive = _refusing(
                    ConnectError(
                        Code.UNIMPLEMENTED,
                        f"unknown compression: '{unknown}': supported encodings are {', '.join(self._compressions)}",
                    )
                )
        await super().__call__(scope, receive, send)  # type: ignore[arg-type]

    def _envelope_check(self, scope: Scope) -> EnvelopeCheck | None:
        """The framing check for a call whose body connect-python reads as envelopes (by its own
        reading of the content type), else None."""
        content_type = header(scope, b"content-type")
        if content_type == "application/grpc" or content_type.startswith("application/grpc+"):
            protocol, encoding_header = "gRPC", "grpc-encoding"
        elif content_type == "application/grpc-web" or content_type.startswith("application/grpc-web+"):
            protocol, encoding_header = "gRPC-web", "grpc-encoding"
        elif content_type.startswith("application/connect+"):
            protocol, encoding_header = "Connect", "connect-content-encoding"
        else:
            return None
        encoding = header(scope, encoding_header.encode())
        compressed = encoding in self._compressions and encoding != "identity"
        return EnvelopeCheck(protocol, self.limit, compressed, encoding_header)

    async def _handle_error(self, exc: Exception, ctx: RequestContext[Any, Any] | None, send: Any) -> None:
        if not isinstance(exc, ConnectError | HTTPException):
            exc = internal_error("a call over HTTP", exc)
        await super()._handle_error(exc, ctx, send)


def service_descriptors(*modules: Any) -> Iterable[ServiceDescriptor]:
    """Every service a generated _pb2 module declares."""
    for module in modules:
        yield from module.DESCRIPTOR.services_by_name.values()
