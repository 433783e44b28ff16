"""One implementation, two transports: the gateway's gRPC servicers served over HTTP as Connect,
gRPC-web and gRPC (connect-python), through the very interceptors of the gRPC port.

`add_XServicer_to_server` registers its method handlers with a `HandlerRegistry` exactly as with a
grpc.aio server. A call that arrives over HTTP is resolved through the same interceptor chain
(the error mapping, authentication, whatever is added later) with the HTTP headers as metadata,
and the resulting handler runs with a context whose `abort` raises a Connect error carrying the
same code, safe message and google.rpc details as the gRPC port's trailers would.
"""

from __future__ import annotations

import base64
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo
from connectrpc.request import RequestContext
from connectrpc.server import ConnectASGIApplication, Endpoint
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor

from gateway.http import codecs
from gateway.http.compression import BoundedGzip
from renderkit.errors import status_details

log = logging.getLogger(__name__)

Metadata = tuple[tuple[str, str | bytes], ...]
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
    items: list[tuple[str, str | bytes]] = []
    for key, value in request.request_headers().allitems():
        name = key.lower()
        if name in _TRANSPORT_HEADERS or name.startswith(("connect-", ":")):
            continue
        if name.endswith("-bin"):
            try:
                items.append((name, base64.b64decode(value + "=" * (-len(value) % 4))))
            except ValueError:
                continue
        else:
            items.append((name, value))
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
                if handler is None or handler.unary_unary is None:
                    raise ConnectError(Code.UNIMPLEMENTED, f"{path} is not served here")
                return await handler.unary_unary(request, _Context(metadata, ctx))
            except _Aborted as aborted:
                raise aborted.to_connect() from None

        return call

    def _server_stream(self, path: str) -> Callable[[Any, RequestContext[Any, Any]], AsyncIterator[Any]]:
        async def stream(request: Any, ctx: RequestContext[Any, Any]) -> AsyncIterator[Any]:
            metadata = metadata_of(ctx)
            try:
                handler = await self._handler(path, metadata)
                if handler is None or handler.unary_stream is None:
                    raise ConnectError(Code.UNIMPLEMENTED, f"{path} is not served here")
                responses = handler.unary_stream(request, _Context(metadata, ctx))
                try:
                    async for response in responses:
                        yield response
                finally:
                    await responses.aclose()
            except _Aborted as aborted:
                raise aborted.to_connect() from None

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


class _Application(ConnectASGIApplication[ServicerBridge]):
    @property
    def path(self) -> str:
        return "/"


def service_descriptors(*modules: Any) -> Iterable[ServiceDescriptor]:
    """Every service a generated _pb2 module declares."""
    for module in modules:
        yield from module.DESCRIPTOR.services_by_name.values()
