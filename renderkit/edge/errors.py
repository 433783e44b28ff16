"""One error mapping at the edge of every server.

Handlers end RPCs they understand themselves (`renderkit.errors.abort`, typed and safe). Anything
else that escapes a handler is mapped here: a dependency that is down becomes UNAVAILABLE with a
RetryInfo, so clients and the dispatcher retry; anything else is a bug and becomes INTERNAL with a
reference the logs can be searched for, never the exception's text.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from renderkit.errors import DependencyUnavailable, abort, retry_info

log = logging.getLogger(__name__)

# (exception type, the dependency it means) for libraries whose errors are not wrapped where raised.
Infrastructure = Sequence[tuple[type[BaseException], str]]
# A check of a call's handler before it runs (the handler found, the call's details): the handler
# to run, which may be one that refuses the call.
Guard = Callable[[Any, grpc.HandlerCallDetails], Awaitable[Any]]


@dataclass(frozen=True)
class Unreadable:
    """A request message that did not parse, handed to the call in its place: gRPC's own answer to
    a deserializer's error is UNKNOWN with the exception's class and words."""

    message: str


def _readable(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """The deserializer, returning Unreadable for bytes that are not its message."""
    if deserializer is None:
        return None
    message_type = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    name = getattr(message_type, "full_name", "")
    unreadable = Unreadable(f"the request is not a valid {name} message" if name else "the request is not valid")

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return unreadable

    return deserialize


class ErrorMapping(grpc.aio.ServerInterceptor):
    """Maps exceptions that escape a handler to safe gRPC statuses."""

    def __init__(self, infrastructure: Infrastructure = (), guard: Guard | None = None) -> None:
        self.infrastructure = list(infrastructure)
        # What an interceptor after this one would do with the handler found (authentication's
        # check), run here: each layer of grpc.aio's chain is a coroutine and a partial a call.
        self.guard = guard
        # One wrapped handler per method and inner handler, made once (not on every call).
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        if self.guard is not None:
            handler = await self.guard(handler, handler_call_details)
            if handler is None:
                return handler
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: Any) -> Any:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                request_deserializer=_readable(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, handler.unary_stream),
                request_deserializer=_readable(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(method, handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(
            self._stream(method, handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _unary(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:  # type: ignore[type-arg]
            if isinstance(request, Unreadable):
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, request.message)
            try:
                return await behavior(request, context)
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as exc:
                await self._map(method, exc, context)

        return call

    def _stream(self, method: str, behavior: Callable[..., Any]) -> Callable[..., AsyncIterator[Any]]:
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:  # type: ignore[type-arg]
            if isinstance(request, Unreadable):
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, request.message)
            try:
                result = behavior(request, context)
                if inspect.isasyncgen(result):
                    async for item in result:
                        yield item
                else:  # a handler that writes with context.write()
                    await result
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as exc:
                await self._map(method, exc, context)

        return stream

    async def _map(self, method: str, exc: Exception, context: grpc.aio.ServicerContext) -> None:  # type: ignore[type-arg]
        if _over(context):
            # gRPC ended the call already (its client reset it, or gRPC refused its message, a
            # compressed one say), so the handler's own answer could not be sent: nothing is left
            # to answer, and nothing went wrong here. As a cancel: gRPC logs it at debug.
            log.debug("%s: the call ended before its answer (%s)", method, exc)
            raise asyncio.CancelledError()
        dependency = self._dependency(exc)
        if dependency is not None:
            cause = exc.__cause__ or exc
            # A timeout's text is empty: its kind says what happened (the log is the operator's).
            log.warning("%s: %s is unavailable (%s)", method, dependency.dependency, str(cause) or type(cause).__name__)
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"{dependency.dependency} is unavailable; retry in a moment",
                retry_info(dependency.retry_after_s),
            )
        reference = uuid.uuid4().hex[:12]
        log.error("%s failed (reference %s)", method, reference, exc_info=exc)
        await abort(context, grpc.StatusCode.INTERNAL, f"an internal error occurred (reference {reference})")

    def _dependency(self, exc: BaseException) -> DependencyUnavailable | None:
        if isinstance(exc, DependencyUnavailable):
            return exc
        if isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE:
            return DependencyUnavailable("a service this one calls")
        for kind, name in self.infrastructure:
            if isinstance(exc, kind):
                return DependencyUnavailable(name)
        return None


def _over(context: Any) -> bool:
    """Whether gRPC has ended the call (the HTTP port's context has no such state: never)."""
    done = getattr(context, "done", None)
    return bool(done is not None and done())
