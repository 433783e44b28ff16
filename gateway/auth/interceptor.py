"""Authentication at the gateway's edge: every call to the public and admin APIs carries
`authorization: Bearer <token>`, an API key or a JWT; the tenant comes from that credential only.

No credential, or one that proves nothing: UNAUTHENTICATED. A credential without the scope the
method needs: PERMISSION_DENIED. Health and reflection stay open (probes and tools need them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc

from gateway.auth.api_keys import PREFIX, AuthenticationError, KeyStore
from gateway.auth.jwt_tokens import JwtVerifier
from gateway.auth.principal import Principal, Scope, set_principal
from renderkit.errors import abort

Handler = Any  # grpc.RpcMethodHandler (subscripted only in the type stubs)
log = logging.getLogger(__name__)


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

    async def still_valid(self, principal: Principal) -> bool:
        """Whether the credential that proved `principal` at a call's start still does: not past its
        expiry, and for an API key not revoked. A stream (a watch lasts as long as its job) asks
        before each message, so a revoked key or an expired token stops receiving events.
        The key store unreadable now: taken as still valid (the next message asks again)."""
        if principal.expires_s and time.time() >= principal.expires_s:
            return False
        if not principal.key_id:
            return True
        try:
            return await self.api_keys.in_force(principal.key_id)
        except Exception:  # Redis away: the stream's own reads will say so
            log.debug("a streaming call's key could not be checked again", exc_info=True)
            return True


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates the calls of the listed methods (full method name → the scope it needs) and
    makes the principal the call's (gateway.auth.principal.current_principal); a protected service's
    method that is not listed is refused.

    The credential is checked from the call's metadata before its request is read: a refused call
    is answered by a handler that never reads its message (gRPC reads and parses a unary request
    whole before its handler runs: 16 calls of 40 MiB without a credential held 3.6 GB)."""

    def __init__(
        self, authenticator: Authenticator, scopes: Mapping[str, Scope | frozenset[Scope]], services: set[str]
    ) -> None:
        self.authenticator = authenticator
        self.scopes = dict(scopes)
        self.services = services

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        return await self.admit(await continuation(handler_call_details), handler_call_details)

    async def admit(self, handler: Handler | None, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        """The call's handler once its credential is checked: `handler` itself with the principal
        made the call's, else one that refuses the call unread. The edge's error mapping runs this
        as its guard (renderkit.edge.server.Edge), one layer of grpc.aio's interceptor chain fewer
        a call; as an interceptor it does the same."""
        method = handler_call_details.method
        service = method.rsplit("/", 1)[0].lstrip("/")
        if handler is None or service not in self.services:
            return handler
        needed = self.scopes.get(method)
        try:
            principal = await self.authenticator.authenticate(handler_call_details.invocation_metadata)
        except AuthenticationError as exc:
            return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED, str(exc))
        except Exception as exc:  # the key store or the identity provider away: mapped as the call's error
            return _raising(handler, exc)
        lacking = missing_scope(principal, needed)
        if lacking is not None:
            return _refusal(handler, grpc.StatusCode.PERMISSION_DENIED, lacking)
        set_principal(principal)  # the call's own task runs its handler next
        return handler


def missing_scope(principal: Principal, needed: Scope | frozenset[Scope] | None) -> str | None:
    """Why a credential may not call a method needing `needed` (a scope, or several all needed), or
    None when it may (a method that names no scope, `needed` None, no credential may call)."""
    if needed is None:
        return "this credential lacks a scope this method has"
    lacking = sorted(s.value for s in ({needed} if isinstance(needed, Scope) else needed) if not principal.may(s))
    if not lacking:
        return None
    return f"this credential lacks the {' and '.join(lacking)} scope{'s' if len(lacking) > 1 else ''}"


def _raising(handler: Any, exc: Exception) -> Any:
    """A handler that raises, unread, what the credential's check raised, for the error mapping
    around it (renderkit.edge.errors) to answer as it answers a handler's own: a dependency away is
    UNAVAILABLE with RetryInfo, anything else INTERNAL with a reference."""

    async def fail(requests: Any, context: grpc.aio.ServicerContext) -> Any:  # type: ignore[type-arg]
        raise exc

    if handler.unary_stream is not None or handler.stream_stream is not None:

        async def fail_stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:  # type: ignore[type-arg]
            raise exc
            yield  # unreachable: makes this an async generator

        return grpc.stream_stream_rpc_method_handler(fail_stream, response_serializer=handler.response_serializer)
    return grpc.stream_unary_rpc_method_handler(fail, response_serializer=handler.response_serializer)


def _refusal(handler: Any, code: grpc.StatusCode, message: str) -> Any:
    """A handler that refuses the call without reading its request (a streaming request's messages
    are read only when asked for), in the shape of the call's responses."""

    async def refuse(requests: Any, context: grpc.aio.ServicerContext) -> Any:  # type: ignore[type-arg]
        await abort(context, code, message)

    if handler.unary_stream is not None or handler.stream_stream is not None:

        async def refuse_stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:  # type: ignore[type-arg]
            await abort(context, code, message)
            yield  # unreachable: makes this an async generator

        return grpc.stream_stream_rpc_method_handler(refuse_stream, response_serializer=handler.response_serializer)
    return grpc.stream_unary_rpc_method_handler(refuse, response_serializer=handler.response_serializer)
