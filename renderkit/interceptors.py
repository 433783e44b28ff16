"""A server interceptor around each unary call: the shape shared by the interceptors that act on a
call's work (its duration, the memory it leaves behind)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]  # type: ignore[type-arg]


class UnaryInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each unary-unary call's behaviour (`wrap`); streams pass through untouched."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            self.wrap(handler_call_details.method, handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        """The behaviour to run instead of `behavior` for a call of `method` (/package.Service/Method)."""
        raise NotImplementedError
