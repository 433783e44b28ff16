"""API keys: minted for a tenant with a name, scopes and an optional expiry, shown once, stored only
as a SHA-256 digest under a short public id, listable, revocable.

A key reads `rk_<id>_<secret>`: the id (12 characters) finds the record, the secret (43) is the
credential; 256 random bits need no slow hash, a plain digest compared in constant time suffices.
Every gateway caches what it looked up for a few seconds, and drops a key the moment a revocation
is published (REVOKED_KEYS_CHANNEL), so revocation reaches every replica within the cache's
lifetime even if that notice is lost. For as long as it caches a record, a gateway also remembers
the keys it verified against it, whole, so a caller's repeated key is not parsed and hashed again
(another secret with the same id is checked in full). The last-use time is written at most once a minute per key
and gateway, off the request's path.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from gateway.auth.principal import Principal, Scope, parse_scopes
from gateway.auth.verified import make_room
from gateway.ledger import keys
from gateway.ledger.connection import retrying

log = logging.getLogger(__name__)

PREFIX = "rk_"
_TOKEN = re.compile(r"^rk_([a-z0-9]{12})_([A-Za-z0-9_-]{43})\Z")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
LAST_USE_EVERY_S = 60.0


class AuthenticationError(Exception):
    """A credential that proves nothing; the message is safe to show."""


@dataclass(frozen=True)
class ApiKeyRecord:
    """An API key as stored (never the key itself)."""

    key_id: str
    tenant: str
    name: str
    scopes: frozenset[Scope]
    created_ms: int
    expires_ms: int = 0  # 0: never
    revoked_ms: int = 0  # 0: not revoked
    last_used_ms: int = 0
    digest: str = ""

    def principal(self) -> Principal:
        return Principal(
            tenant=self.tenant,
            subject=f"key:{self.key_id}",
            scopes=self.scopes,
            key_id=self.key_id,
            expires_s=self.expires_ms / 1000,
        )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _record(key_id: str, fields: dict[str, str]) -> ApiKeyRecord:
    def number(name: str) -> int:
        return int(fields.get(name) or 0)

    return ApiKeyRecord(
        key_id=key_id,
        tenant=fields.get("tenant", ""),
        name=fields.get("name", ""),
        scopes=parse_scopes(fields.get("scopes", "")),
        created_ms=number("created_ms"),
        expires_ms=number("expires_ms"),
        revoked_ms=number("revoked_ms"),
        last_used_ms=number("last_used_ms"),
        digest=fields.get("digest", ""),
    )


class KeyStore:
    """API keys in Redis, with a short per-gateway cache of lookups."""

    def __init__(self, client: aioredis.Redis, *, cache_s: float = 2.0, retry_s: float = 2.0) -> None:
        self.redis = client
        self.cache_s = cache_s
        self.retry_s = retry_s
        self._cache: dict[str, tuple[float, ApiKeyRecord | None]] = {}
        # Keys this gateway verified, by the presented key: (when the record was read, the record,
        # its principal). A repeat of the same key within cache_s skips the parse, the digest and
        # the principal's construction; only a key whose digest matched is ever put here.
        self._verified: dict[str, tuple[float, ApiKeyRecord, Principal]] = {}
        self._last_use_written: dict[str, float] = {}
        self._writes: set[asyncio.Task[None]] = set()
        # The reads under way, by key id: the callers that find a key's record stale at once (every
        # open watch of its job, each of its events) wait for one read rather than each making one.
        self._reading: dict[str, asyncio.Task[ApiKeyRecord | None]] = {}

    # -- minting and managing ---------------------------------------------------------------

    async def create(
        self, tenant: str, name: str, scopes: Iterable[Scope], ttl_s: float | None = None
    ) -> tuple[str, ApiKeyRecord]:
        """Mints a key; returns the key (shown once, never stored) and its record."""
        key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
        token = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        now = _now_ms()
        record = ApiKeyRecord(
            key_id=key_id,
            tenant=tenant,
            name=name,
            scopes=frozenset(scopes),
            created_ms=now,
            expires_ms=now + int(ttl_s * 1000) if ttl_s else 0,
            digest=_digest(token),
        )
        fields: dict[Any, Any] = {
            "tenant": tenant,
            "name": name,
            "scopes": " ".join(sorted(record.scopes)),
            "created_ms": str(now),
            "expires_ms": str(record.expires_ms),
            "revoked_ms": "0",
            "digest": record.digest,
        }

        async def write() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(keys.api_key(key_id), mapping=fields)
                pipe.sadd(keys.tenant_api_keys(tenant), key_id)
                await pipe.execute()

        await retrying(write, self.retry_s)
        return token, record

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        """A key's record straight from Redis (no cache)."""
        raw: Any = await retrying(lambda: self.redis.hgetall(keys.api_key(key_id)), self.retry_s)
        if not raw:
            return None
        return _record(key_id, {k.decode(): v.decode() for k, v in raw.items()})

    async def list(self, tenant: str) -> list[ApiKeyRecord]:
        """A tenant's keys, newest first (revoked and expired ones included, marked)."""
        ids: Any = await retrying(lambda: self.redis.smembers(keys.tenant_api_keys(tenant)), self.retry_s)
        records = [await self.get(key_id.decode()) for key_id in ids]
        return sorted((r for r in records if r is not None), key=lambda r: r.created_ms, reverse=True)

    async def revoke(self, key_id: str) -> ApiKeyRecord | None:
        """Revokes a key (at once on this gateway, within seconds on every other); None if unknown."""
        record = await self.get(key_id)
        if record is None:
            return None
        if not record.revoked_ms:

            async def write() -> None:
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.hset(keys.api_key(key_id), "revoked_ms", str(_now_ms()))
                    pipe.publish(keys.REVOKED_KEYS_CHANNEL, key_id)
                    await pipe.execute()

            await retrying(write, self.retry_s)
        self.forget(key_id)
        return await self.get(key_id)

    # -- authenticating -------------------------------------------------------------------------

    def forget(self, key_id: str) -> None:
        """Drops a key from this gateway's cache (a revocation was published)."""
        self._cache.pop(key_id, None)
        self._reading.pop(key_id, None)  # a read begun before the revocation is not waited for again
        for token in [t for t, (_, record, _) in self._verified.items() if record.key_id == key_id]:
            del self._verified[token]

    def forget_all(self) -> None:
        """Drops every cached key (after a reconnect, revocations published meanwhile were lost)."""
        self._cache.clear()
        self._verified.clear()
        self._reading.clear()

    async def authenticate(self, token: str) -> Principal:
        """The principal an API key proves; AuthenticationError when it proves nothing."""
        remembered = self._remembered(token)
        if remembered is not None:
            return remembered
        match = _TOKEN.match(token)
        if match is None:
            raise AuthenticationError("the API key is malformed")
        key_id = match.group(1)
        record = await self._lookup(key_id)
        if record is None or not hmac.compare_digest(record.digest, _digest(token)):
            raise AuthenticationError("the API key is not valid")
        if record.revoked_ms:
            raise AuthenticationError("the API key was revoked")
        self._admit(record)
        principal = record.principal()
        cached = self._cache.get(key_id)
        if cached is None or cached[1] is not record:  # read while a revocation dropped it: not kept
            return principal
        read_at = cached[0]
        self._verified.pop(token, None)  # re-verified: to the end, as the newest
        self._verified = make_room(self._verified, lambda v: read_at - v[0] < self.cache_s)
        self._verified[token] = (read_at, record, principal)
        return principal

    async def in_force(self, key_id: str) -> bool:
        """Whether the key still stands (not revoked, as this gateway knows it: at once here, within
        cache_s elsewhere), for a call that outlasts its authentication (a watch)."""
        record = await self._lookup(key_id)
        return record is not None and not record.revoked_ms

    def _remembered(self, token: str) -> Principal | None:
        """The principal of a key this gateway verified, while its record is fresh in the cache."""
        entry = self._verified.get(token)
        if entry is None:
            return None
        # The loop's clock read once for the call and handed on: on this project's VMs each read
        # costs ~0.3 µs and each get_running_loop (a getpid) ~0.6 µs, and a remembered key's
        # check made three and two of them.
        now_s = asyncio.get_running_loop().time()
        if now_s - entry[0] >= self.cache_s:
            return None
        self._admit(entry[1], now_s)
        return entry[2]

    def _admit(self, record: ApiKeyRecord, now_s: float | None = None) -> None:
        """Refuses a key past its expiry; notes its use (now_s: the loop's time, when read already)."""
        now = _now_ms()
        if record.expires_ms and now >= record.expires_ms:
            raise AuthenticationError("the API key has expired")
        self._note_use(record.key_id, now, asyncio.get_running_loop().time() if now_s is None else now_s)

    async def _lookup(self, key_id: str) -> ApiKeyRecord | None:
        loop = asyncio.get_running_loop()
        cached = self._cache.get(key_id)
        if cached is not None and loop.time() - cached[0] < self.cache_s:
            return cached[1]
        reading = self._reading.get(key_id)
        if reading is None:
            reading = asyncio.ensure_future(self._read(key_id))
            self._reading[key_id] = reading
            reading.add_done_callback(lambda done: self._read_done(key_id, done))
        # Shielded: a caller that leaves (its client went away) does not cancel the others' read.
        return await asyncio.shield(reading)

    async def _read(self, key_id: str) -> ApiKeyRecord | None:
        record = await self.get(key_id)
        # Unknown ids are not cached (a caller could fill the cache with them), nor a record read
        # while a revocation dropped the key (forget): the next lookup reads it again.
        if record is not None and self._reading.get(key_id) is asyncio.current_task():
            self._cache[key_id] = (asyncio.get_running_loop().time(), record)
        return record

    def _read_done(self, key_id: str, done: asyncio.Task[ApiKeyRecord | None]) -> None:
        if self._reading.get(key_id) is done:
            del self._reading[key_id]
        if not done.cancelled():
            done.exception()  # retrieved: every caller may have left before it ended

    def _note_use(self, key_id: str, now_ms: int, now_s: float) -> None:
        """Writes the key's last use (now_ms) at most every LAST_USE_EVERY_S (now_s: the loop's time)."""
        if now_s - self._last_use_written.get(key_id, -LAST_USE_EVERY_S) < LAST_USE_EVERY_S:
            return
        self._last_use_written[key_id] = now_s

        async def write() -> None:
            try:
                await self.redis.hset(keys.api_key(key_id), "last_used_ms", str(now_ms))
            except Exception:  # best effort: the next use writes it again
                self._last_use_written.pop(key_id, None)

        task = asyncio.create_task(write())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)


def scopes_text(scopes: Sequence[Scope] | frozenset[Scope]) -> str:
    """Scopes as text ("admin read render")."""
    return " ".join(sorted(scopes))
