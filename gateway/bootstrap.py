"""The first credential: mints an API key straight into Redis, for operators with access to it.

The admin API needs an admin credential, so the first one cannot come from it. Run this once (in
Kubernetes as a Job with REDIS_URL), keep the key it prints, and manage everything else through the
admin API (`renderctl keys|tenants|credits ...`). The embedded stack uses it to mint its development key.

    python -m gateway.bootstrap --tenant ops --name "first admin" --scopes admin,render,read
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys

from gateway.admin import MAX_GRANT
from gateway.auth.api_keys import KeyStore
from gateway.auth.principal import TENANT_NAME, TENANT_NAME_RULE, Scope, parse_scopes
from gateway.ledger import Ledger, connect
from renderkit.settings import env_str


async def mint_key_async(
    redis_url: str,
    tenant: str,
    name: str,
    scopes: frozenset[Scope],
    ttl_s: float | None = None,
    credits: int = 0,
) -> str:
    """Mints a key in the Redis at redis_url (and grants its tenant credits) and returns it."""
    client = connect(redis_url, max_connections=2, role="bootstrap")
    try:
        token, _ = await KeyStore(client, retry_s=10.0).create(tenant, name, scopes, ttl_s=ttl_s)
        if credits > 0:
            ledger = Ledger(client, retry_s=10.0)
            await ledger.grant(tenant, credits, f"granted with the key {name!r}")
            await ledger.aclose()
        return token
    finally:
        await client.aclose()


def mint_key(
    redis_url: str,
    tenant: str,
    name: str,
    scopes: frozenset[Scope],
    ttl_s: float | None = None,
    credits: int = 0,
) -> str:
    """mint_key_async from synchronous code (the launcher, tests)."""
    return asyncio.run(mint_key_async(redis_url, tenant, name, scopes, ttl_s, credits))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.bootstrap", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--name", required=True, help="what the key is for")
    parser.add_argument("--scopes", default="admin,render,read", help="comma-separated: render, read, admin")
    parser.add_argument("--ttl-days", type=float, help="how long the key works (default: until revoked)")
    parser.add_argument("--credits", type=int, default=0, help="credits to grant the tenant as well")
    args = parser.parse_args(argv)
    # What the admin API would refuse is refused here too (a tenant named with a key's separator
    # got a working admin key that the API then could not manage).
    if not TENANT_NAME.match(args.tenant):
        parser.error(f"--tenant: {TENANT_NAME_RULE}")
    if not 1 <= len(args.name) <= 200:
        parser.error("--name takes 1 to 200 characters saying what the key is for")
    # Every name must be a scope (as renderctl and the admin API require): one misspelt was dropped,
    # and "admn,render,read" minted a key without the admin scope that the operator asked for.
    names = [n.strip() for n in args.scopes.split(",") if n.strip()]
    if not names or any(n not in {s.value for s in Scope} for n in names):
        parser.error("--scopes takes a comma-separated list of render, read, admin")
    scopes = parse_scopes(",".join(names))
    if args.ttl_days is not None and not (math.isfinite(args.ttl_days) and 1 / 86400 <= args.ttl_days <= 3650):
        parser.error("--ttl-days takes a number of days from a second to ten years (leave it out: no expiry)")
    if not 0 <= args.credits <= MAX_GRANT:
        parser.error(f"--credits takes 0 to {MAX_GRANT:,}")
    redis_url = env_str("REDIS_URL", "redis://127.0.0.1:6390/0")
    ttl_s = args.ttl_days * 86400 if args.ttl_days is not None else None
    print(mint_key(redis_url, args.tenant, args.name, scopes, ttl_s, args.credits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
