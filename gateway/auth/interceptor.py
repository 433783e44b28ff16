"""Authentication at the gateway's edge: every call to the public and admin APIs carries
`authorization: Bearer <token>`, an API key or a JWT; the tenant comes from that credential only.

No credential, or one that proves nothing: UNAUTHENTICATED. A credential without the scope the
method needs: PERMISSION_DENIED. Health and reflection stay open (probes and tools need them).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc

from gateway.auth.api_keys import PREFIX, AuthenticationError, KeyStore
from gateway.auth.jwt_tokens import JwtVerifier
from gateway.auth.principal import Principal, Scope, set_principal
from renderkit.errors import abort

Handler = Any  # grpc.RpcMethodHandler (subscripted only in the type stubs)


class Authenticator:
    """Turns a bearer token into a principal: an API key (rk_...) or a JWT of the configured issuer."""

    def __init__(self, api_keys: KeyStore, jwt: JwtVerifier | None = None) -> None:
        self.api_keys = api_keys
        self.jwt = jwt

    async def authenticate(self, metadata: Any) -> Principal:
        """The caller's principal from its metadata; AuthenticationError when there is none."""
        header = ""
        for key, value in metadata or ():
            if key == "authorization":
                header = value if isinstance(value, str) else value.decode()
                break
        scheme, _, token = header.strip().partition(" ")
        if not header:
            raise AuthenticationError("a credential is required: send authorization: Bearer <API key or token>")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("the authorization header must be: Bearer <API key or token>")
        token = token.strip()
        if token.startswith(PREFIX):
            return await self.api_keys.authenticate(token)
        if self.jwt is None:
            raise AuthenticationError("the bearer token is not an API key, and no token issuer is configured")
        return await self.jwt.authenticate(token)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates the calls of the listed methods (full method name → the scope it needs) and
    makes the principal the call's (gateway.auth.principal.current_principal); a protected service's
    method that is not listed is refused."""

    def __init__(self, authenticator: Authenticator, scopes: Mapping[str, Scope], services: set[str]) -> None:
        self.authenticator = authenticator
        self.scopes = dict(scopes)
        self.services = services
        # One wrapped handler per method and inner handler, made once (not on every call).
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        service = method.rsplit("/", 1)[0].lstrip("/")
        if handler is None or service not in self.services:
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, self.scopes.get(method))
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: Any, needed: Scope | None) -> Any:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, needed),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream, needed),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # the public and admin APIs have no client-streaming methods

    async def _admit(self, context: grpc.aio.ServicerContext, needed: Scope | None) -> None:  # type: ignore[type-arg]
        try:
            principal = await self.authenticator.authenticate(context.invocation_metadata())
        except AuthenticationError as exc:
            await abort(context, grpc.StatusCode.UNAUTHENTICATED, str(exc))
        if needed is None or not principal.may(needed):
            scope = needed.value if needed is not None else "a scope this method has"
            await abort(context, grpc.StatusCode.PERMISSION_DENIED, f"this credential lacks the {scope} scope")
        set_principal(principal)

    def _unary(self, behavior: Callable[..., Any], needed: Scope | None) -> Callable[..., Awaitable[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:  # type: ignore[type-arg]
            await self._admit(context, needed)
            return await behavior(request, context)

        return call

    def _stream(self, behavior: Callable[..., Any], needed: Scope | None) -> Callable[..., AsyncIterator[Any]]:
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:  # type: ignore[type-arg]
            await self._admit(context, needed)
            result = behavior(request, context)
            if asyncio.iscoroutine(result):
                await result
                return
            async for item in result:
                yield item

        return stream
