"""One Redis pub/sub connection per gateway, shared by every listener, that comes back by itself.

Pub/sub forgets what it delivered while a connection was down, so listeners also get a callback
after every (re)subscription and catch up from the ledger, which does not forget.

The connection is a protocol of its own (as the ledger's pipelined one is): hiredis parses what
arrives and each message goes to its handlers in the callback itself. Through redis-py's PubSub a
message cost a read loop's turn, a timeout and a parse in Python; the dispatcher's work notice and
every event's notice for a watched job lie on a job's path to its watchers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

import hiredis
import redis.asyncio as aioredis

from gateway.ledger.connection import RETRYABLE
from gateway.ledger.pipelining import connect_protocol, handshake, replies

log = logging.getLogger(__name__)


class SubscriptionRefused(RuntimeError):
    """Redis answered the connection's handshake with an error (a wrong password, an unknown
    database): not a fault that waiting mends, so every attempt logs it."""


class _Listener(asyncio.Protocol):
    """The subscription connection: its handshake's replies first, then everything Redis pushes
    (subscribe confirmations, messages, pongs), handed to `pushed` as it is parsed."""

    def __init__(self, pushed: Callable[[list[Any]], None], handshake_replies: int) -> None:
        loop = asyncio.get_running_loop()
        self.reader = hiredis.Reader()
        self.pushed = pushed
        self.pending = handshake_replies
        self.ready: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.pending:
            self.ready.set_result(None)

    def send(self, *command: Any) -> None:
        if self.transport is not None and not self.closed.done():
            self.transport.write(hiredis.pack_command(command))

    def data_received(self, data: bytes) -> None:
        for reply in replies(self.reader, data, self.close):
            if self.pending:
                self.pending -= 1
                if isinstance(reply, hiredis.ReplyError):  # a wrong password, an unknown database
                    self._fail(SubscriptionRefused(f"Redis refused the subscription's connection: {reply}"))
                    return
                if not self.pending:
                    self.ready.set_result(None)
            elif isinstance(reply, list) and reply:
                self.pushed(reply)

    def _fail(self, exc: Exception) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("the connection to Redis was lost"))
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


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
        self._listener: _Listener | None = None
        self._confirmed: set[str] = set()
        self._last_heard = 0.0
        self._connections = 0  # connections made so far: the current one's number (connection)

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
        # Written at once, in order, on the one connection; without one, the next (re)subscription
        # subscribes every followed channel.
        if self._listener is not None:
            self._listener.send(command, channel)

    def on_subscribed(self, callback: Callable[[], None]) -> None:
        """Calls back after each (re)subscription: messages sent meanwhile were lost; catch up."""
        self._on_subscribed.append(callback)

    @property
    def connection(self) -> int | None:
        """The number of the connection that follow and unfollow write to now (None: none is up):
        a channel followed while it stays the same has been subscribed there ever since Redis
        confirmed it, with no notice lost in between."""
        return self._connections if self._listener is not None else None

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
            was_subscribed = False
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except RETRYABLE as exc:
                if self._subscribed.is_set():
                    log.warning("lost the Redis subscription (%s); reconnecting", type(exc).__name__)
            except SubscriptionRefused as exc:
                log.error("%s; trying again", exc)
            except Exception:
                log.exception("subscription listener failed; reconnecting")
            finally:
                was_subscribed = self._subscribed.is_set()
                self._subscribed.clear()
            delay = 0.1 if was_subscribed else min(delay * 2, 2.0)
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        kwargs = self.redis.connection_pool.connection_kwargs
        commands = handshake(kwargs, "-subscriptions")
        listener = _Listener(self._pushed, len(commands))
        try:
            try:
                async with asyncio.timeout(kwargs.get("socket_connect_timeout") or 5.0):
                    await connect_protocol(self.redis, listener)
                    for command in commands:
                        listener.send(*command)
                    await listener.ready
            except OSError as exc:  # refused, unreachable, timed out, lost
                raise ConnectionError("could not connect to Redis") from exc
            self._confirmed = set()
            self._last_heard = loop.time()
            channels = {*self._handlers, *self._followed}
            if channels:
                listener.send("SUBSCRIBE", *channels)
            else:
                self._on_confirmed()
            self._listener = listener  # from now on, follow and unfollow send their own commands
            self._connections += 1
            while not listener.closed.done():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.ping_s):
                        await asyncio.shield(listener.closed)
                if listener.closed.done():
                    break
                if loop.time() - self._last_heard > 3 * self.ping_s:
                    raise TimeoutError("the subscription stopped answering its pings")
                listener.send("PING")
            raise ConnectionError("the subscription's connection was lost")
        finally:
            self._listener = None
            listener.close()

    def _pushed(self, reply: list[Any]) -> None:
        """What Redis pushed: a message, a subscription confirmed, or a pong."""
        self._last_heard = asyncio.get_running_loop().time()
        kind = reply[0]
        try:
            if kind == b"message":
                channel, data = _text(reply[1]), _text(reply[2])
                for handler in self._handlers.get(channel, []):
                    handler(data)
                followed = self._followed.get(channel)
                if followed is not None:
                    followed(data)
            elif kind == b"subscribe":
                channel = _text(reply[1])
                if channel in self._handlers:  # only these count for _on_confirmed; a job's channel
                    self._confirmed.add(channel)  # would stay here after its unfollow, to a reconnect
                followed = self._followed.get(channel)
                if followed is not None:
                    followed("")  # subscribed: catch up on what came before
                if self._confirmed >= set(self._handlers) and not self._subscribed.is_set():
                    self._on_confirmed()
        except Exception:  # a listener's fault must not take the connection down with it
            log.exception("a subscription's handler failed")

    def _on_confirmed(self) -> None:
        self._subscribed.set()
        log.info("subscribed to %s", ", ".join(sorted(self._handlers)))
        for callback in self._on_subscribed:
            callback()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
