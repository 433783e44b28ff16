"""Credentials for tests: API keys minted through the real key store into the Redis a gateway uses
(as `python -m gateway.bootstrap` does). Minted fresh each time: tests flush their databases."""

from __future__ import annotations

from typing import Any

from gateway.auth.principal import ALL_SCOPES, Scope
from gateway.bootstrap import mint_key
from render_client.client import RenderClient

TEST_CREDITS = 10_000_000


def key_for(redis_url: str, tenant: str, scopes: frozenset[Scope] = ALL_SCOPES, credits: int = TEST_CREDITS) -> str:
    """A new API key of the tenant, valid for gateways on that Redis (database included); the tenant
    gets `credits` more to spend."""
    return mint_key(redis_url, tenant, f"tests ({tenant})", scopes, credits=credits)


def bearer(key: str) -> tuple[tuple[str, str]]:
    """The call metadata that authenticates with a key (for raw stubs)."""
    return (("authorization", f"Bearer {key}"),)


def client_for(address: str, redis_url: str, tenant: str, **options: Any) -> RenderClient:
    """A RenderClient of the tenant."""
    return RenderClient(address, api_key=key_for(redis_url, tenant), **options)
