"""KeyStore's lookups of a key's record: the callers that find it stale together (every open watch
of a job, at each of its events: Authenticator.still_valid) share one Redis read."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import pytest

from gateway.auth import api_keys
from gateway.auth.api_keys import AuthenticationError, KeyStore

KEY = "rk_abcdefghijkl_" + "A" * 43


class CountingRedis:
    """hgetall of one key's record, counted; each read takes `delay` seconds."""

    def __init__(self, delay: float = 0.02) -> None:
        self.reads = 0
        self.delay = delay
        self.revoked_ms = "0"

    async def hgetall(self, name: str) -> dict[bytes, bytes]:
        self.reads += 1
        revoked_ms = self.revoked_ms  # as Redis had it when the read was made
        await asyncio.sleep(self.delay)
        fields = {
            "tenant": "acme",
            "name": "k",
            "scopes": "read render",
            "created_ms": "1",
            "expires_ms": "0",
            "revoked_ms": revoked_ms,
            "digest": hashlib.sha256(KEY.encode()).hexdigest(),
        }
        return {k.encode(): v.encode() for k, v in fields.items()}

    async def hset(self, *args: Any, **kwargs: Any) -> None:  # the last use, written off the path
        return None


def test_the_watches_of_one_key_share_one_read_per_stale_record() -> None:
    async def run() -> tuple[int, list[bool]]:
        redis = CountingRedis()
        store = KeyStore(redis, cache_s=0.05)  # type: ignore[arg-type]
        await store.authenticate(KEY)
        await asyncio.sleep(0.06)  # the record is stale: an event reaches 500 watches of the key
        answers = await asyncio.gather(*(store.in_force("abcdefghijkl") for _ in range(500)))
        return redis.reads, answers

    reads, answers = asyncio.run(run())
    assert all(answers)
    assert reads == 2, f"{reads} Redis reads for one event of 500 watches (1 at the start + 1 expected)"


def test_a_caller_that_leaves_does_not_cancel_the_shared_read_and_a_revocation_is_not_cached_over() -> None:
    async def run() -> tuple[bool, bool, bool]:
        redis = CountingRedis(delay=0.05)
        store = KeyStore(redis, cache_s=60.0)  # type: ignore[arg-type]
        leaving = asyncio.ensure_future(store.in_force("abcdefghijkl"))
        staying = asyncio.ensure_future(store.in_force("abcdefghijkl"))
        await asyncio.sleep(0.01)
        leaving.cancel()
        stayed = await staying
        # A read under way when the revocation is published: its (older) record is not cached.
        reading = asyncio.ensure_future(store.authenticate(KEY))
        store.forget("abcdefghijkl")  # the cache empty: authenticate reads Redis
        await asyncio.sleep(0.01)
        redis.revoked_ms = "5"
        store.forget("abcdefghijkl")  # published while the read was under way
        await reading  # the record as read before the revocation: this call is let through
        return stayed, await store.in_force("abcdefghijkl"), leaving.cancelled()

    stayed, after_revocation, cancelled = asyncio.run(run())
    assert stayed and cancelled
    assert after_revocation is False


def test_a_remembered_key_notes_its_use_at_most_once_a_period_and_is_refused_past_its_expiry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A key verified once is taken from memory on its next calls: its use is still written at most
    once every LAST_USE_EVERY_S, and its expiry still checked on every call, without reading its
    record again."""
    monkeypatch.setattr(api_keys, "LAST_USE_EVERY_S", 0.3)

    class Uses(CountingRedis):
        def __init__(self, expires_ms: int) -> None:
            super().__init__(delay=0.0)
            self.uses = 0
            self.expires_ms = str(expires_ms)

        async def hgetall(self, name: str) -> dict[bytes, bytes]:
            fields = await super().hgetall(name)
            return {**fields, b"expires_ms": self.expires_ms.encode()}

        async def hset(self, *args: Any, **kwargs: Any) -> None:
            self.uses += 1

    async def run() -> tuple[int, int, int, str]:
        expires_ms = int(time.time() * 1000) + 600_000
        redis = Uses(expires_ms=expires_ms)
        store = KeyStore(redis, cache_s=60.0)  # type: ignore[arg-type]
        for _ in range(50):
            assert (await store.authenticate(KEY)).tenant == "acme"
        await asyncio.sleep(0.01)  # the use's write runs off the call's path
        uses_at_once = redis.uses
        await asyncio.sleep(0.35)
        await store.authenticate(KEY)
        await asyncio.sleep(0.01)
        uses_later = redis.uses
        monkeypatch.setattr(api_keys, "_now_ms", lambda: expires_ms)  # the key's expiry reached
        try:
            await store.authenticate(KEY)
            refused = ""
        except AuthenticationError as exc:
            refused = str(exc)
        return uses_at_once, uses_later, redis.reads, refused

    uses_at_once, uses_later, reads, refused = asyncio.run(run())
    assert uses_at_once == 1, f"{uses_at_once} last-use writes for 50 calls within the period"
    assert uses_later == 2
    assert reads == 1, f"{reads} reads of a key's record the cache held"
    assert refused == "the API key has expired"
