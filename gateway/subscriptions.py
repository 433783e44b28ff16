"""One Redis pub/sub connection per gateway, shared by every listener, that comes back by itself.

Pub/sub forgets what it delivered while a connection was down, so listeners also get a callback
after every (re)subscription and catch up from the ledger, which does not forget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from gateway.ledger.connection import RETRYABLE

log = logging.getLogger(__name__)


class Subscriptions:
    """Channels with their callbacks over one connection, resubscribed after every reconnect.

    A connection that stops answering its pings (a half-open socket after a network fault) is
    dropped and made again. Besides the fixed channels (on), channels come and go while it runs
    (follow/unfollow): their handler hears "" once each subscription is confirmed, so a listener can
    read what it may have missed before.
    """

    def __init__(self, client: aioredis.Redis, *, ping_s: float = 5.0) -> None:
        self.redis = client
        self.ping_s = ping_s
        self._handlers: dict[str, list[Callable[[str], None]]] = {}
        self._followed: dict[str, Callable[[str], None]] = {}
        self._on_subscribed: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._pubsub: Any = None
        self._changes: set[asyncio.Task[None]] = set()

    def on(self, channel: str, handler: Callable[[str], None]) -> None:
        """Calls handler(message) for each message on the channel (register before start)."""
        self._handlers.setdefault(channel, []).append(handler)

    def follow(self, channel: str, handler: Callable[[str], None]) -> None:
        """Subscribes to a channel now (and again after every reconnect) until unfollow."""
        self._followed[channel] = handler
        self._change("subscribe", channel)

    def unfollow(self, channel: str) -> None:
        """Stops following a channel."""
        if self._followed.pop(channel, None) is not None:
            self._change("unsubscribe", channel)

    def _change(self, command: str, channel: str) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return  # the next (re)subscription subscribes every followed channel

        async def send() -> None:
            with contextlib.suppress(Exception):  # a lost connection resubscribes everything
                await getattr(pubsub, command)(channel)

        task = asyncio.create_task(send())
        self._changes.add(task)
        task.add_done_callback(self._changes.discard)

    def on_subscribed(self, callback: Callable[[], None]) -> None:
        """Calls back after each (re)subscription: messages sent meanwhile were lost; catch up."""
        self._on_subscribed.append(callback)

    @property
    def subscribed(self) -> bool:
        """Whether the connection is up and subscribed to every channel now."""
        return self._subscribed.is_set()

    async def healthy(self) -> bool:
        """The health probe: subscribed now."""
        return self.subscribed

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._subscribed.clear()

    async def _run(self) -> None:
        delay = 0.1
        while True:
            pubsub = self.redis.pubsub()
            was_subscribed = False
            try:
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except RETRYABLE as exc:
                if self._subscribed.is_set():
                    log.warning("lost the Redis subscription (%s); reconnecting", type(exc).__name__)
            except Exception:
                log.exception("subscription listener failed; reconnecting")
            finally:
                was_subscribed = self._subscribed.is_set()
                self._subscribed.clear()
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            delay = 0.1 if was_subscribed else min(delay * 2, 2.0)
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))

    async def _listen(self, pubsub: Any) -> None:
        loop = asyncio.get_running_loop()
        sent = {*self._handlers, *self._followed}
        await pubsub.subscribe(*sent)
        self._pubsub = pubsub  # from now on, follow and unfollow send their own commands
        # Channels followed or unfollowed while that subscription was on its way.
        missed = [c for c in self._followed if c not in sent]
        stale = [c for c in sent if c not in self._followed and c not in self._handlers]
        if missed:
            await pubsub.subscribe(*missed)
        if stale:
            await pubsub.unsubscribe(*stale)
        confirmed: set[str] = set()
        last_heard = loop.time()
        last_ping = loop.time()
        while True:
            message = await pubsub.get_message(timeout=1.0)
            now = loop.time()
            if message is not None:
                last_heard = now
                kind, channel = message.get("type"), _text(message.get("channel"))
                if kind == "subscribe":
                    confirmed.add(channel)
                    followed = self._followed.get(channel)
                    if followed is not None:
                        followed("")  # subscribed: catch up on what came before
                    if confirmed >= set(self._handlers) and not self._subscribed.is_set():
                        self._subscribed.set()
                        log.info("subscribed to %s", ", ".join(sorted(self._handlers)))
                        for callback in self._on_subscribed:
                            callback()
                elif kind == "message":
                    data = _text(message.get("data"))
                    for handler in self._handlers.get(channel, []):
                        handler(data)
                    followed = self._followed.get(channel)
                    if followed is not None:
                        followed(data)
            if now - last_ping >= self.ping_s:
                await pubsub.ping()
                last_ping = now
            if now - last_heard > 3 * self.ping_s:
                raise TimeoutError("the subscription stopped answering its pings")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
