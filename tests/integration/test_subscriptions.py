"""The gateway's one subscription against a real Redis: channels followed and unfollowed while it
runs, including while it is being made, are heard exactly while followed."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest

from gateway.ledger import connect
from gateway.subscriptions import Subscriptions

pytestmark = pytest.mark.integration


async def _until(condition: object, timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


def test_followed_channels_are_heard_while_followed(redis_url: str) -> None:
    async def body() -> None:
        listener = connect(redis_url + "/3", max_connections=1, role="subscriptions-test")
        publisher = connect(redis_url + "/3", max_connections=1, role="subscriptions-test")
        subscriptions = Subscriptions(listener)
        fixed = f"fixed-{uuid.uuid4().hex}"
        subscriptions.on(fixed, lambda _message: None)
        heard: dict[str, list[str]] = {}

        def follow(channel: str) -> None:
            subscriptions.follow(channel, lambda message: heard.setdefault(channel, []).append(message))

        early, racing, late = (f"job:{uuid.uuid4().hex}:notice" for _ in range(3))
        follow(early)  # before the subscription exists
        subscriptions.start()
        await asyncio.sleep(0)  # the listener has sent its SUBSCRIBE (for early) and waits for Redis
        follow(racing)  # while the subscription is being made
        try:
            await _until(lambda: subscriptions.subscribed)
            follow(late)  # once it stands
            # Each follow hears "" once its subscription is confirmed (the listener's cue to read
            # what came before), then every message.
            await _until(lambda: all(heard.get(c) == [""] for c in (early, racing, late)))
            for channel in (early, racing, late):
                await publisher.publish(channel, "n1")
            await _until(lambda: all(heard[c] == ["", "n1"] for c in (early, racing, late)))
            subscriptions.unfollow(racing)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            numsub = dict(await publisher.pubsub_numsub(racing, early))
            while numsub[racing.encode()] != 0 and loop.time() < deadline:  # the unsubscribe is on its way
                await asyncio.sleep(0.01)
                numsub = dict(await publisher.pubsub_numsub(racing, early))
            assert numsub == {racing.encode(): 0, early.encode(): 1}
            await publisher.publish(racing, "n2")
            await publisher.publish(early, "n2")
            await _until(lambda: heard[early] == ["", "n1", "n2"])
            assert heard[racing] == ["", "n1"]  # unfollowed: not heard any more
            # Nor remembered: a job's confirmed channel stayed until a reconnect, every job's (the soak review).
            assert racing not in subscriptions._confirmed
        finally:
            await subscriptions.stop()
            await listener.aclose()
            await publisher.aclose()

    asyncio.run(body())


def test_a_killed_connection_comes_back_subscribed_and_says_so(redis_url: str) -> None:
    """Redis drops the subscription's connection: it is made again, every channel (fixed and
    followed) subscribed again, and the catch-up callbacks run, since what was published meanwhile
    is lost; the connection's number changes (a follow made before it cannot vouch for it)."""

    async def body() -> None:
        listener = connect(redis_url + "/3", max_connections=1, role="subscriptions-kill")
        publisher = connect(redis_url + "/3", max_connections=1, role="subscriptions-test")
        subscriptions = Subscriptions(listener)
        fixed, followed = f"fixed-{uuid.uuid4().hex}", f"job:{uuid.uuid4().hex}:notice"
        heard: list[tuple[str, str]] = []
        subscriptions.on(fixed, lambda message: heard.append((fixed, message)))
        catch_ups: list[int] = []
        subscriptions.on_subscribed(lambda: catch_ups.append(1))
        subscriptions.follow(followed, lambda message: heard.append((followed, message)))
        subscriptions.start()
        try:
            await _until(lambda: subscriptions.subscribed and (followed, "") in heard)
            first = subscriptions.connection
            assert first is not None
            clients = (await publisher.execute_command("CLIENT", "LIST", "TYPE", "pubsub")).decode()
            # Named as the client it is made from, so CLIENT LIST shows whose it is.
            ours = re.search(r"id=(\d+) .*name=render-subscriptions-kill-\S+-subscriptions ", clients)
            assert ours is not None
            await publisher.execute_command("CLIENT", "KILL", "ID", ours.group(1))
            await _until(lambda: len(catch_ups) == 2 and heard.count((followed, "")) == 2)
            assert subscriptions.subscribed and subscriptions.connection not in (None, first)
            await publisher.publish(fixed, "after")
            await publisher.publish(followed, "after")
            await _until(lambda: (fixed, "after") in heard and (followed, "after") in heard)
        finally:
            await subscriptions.stop()
            await listener.aclose()
            await publisher.aclose()

    asyncio.run(body())


def test_a_refused_handshake_is_logged_and_never_counts_as_subscribed(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong password is no fault that waiting mends: every attempt says why, and the gateway's
    health (which follows `subscribed`) stays down."""

    async def body() -> None:
        wrong = re.sub(r"//:[^@]*@", "//:not-the-password@", redis_url)
        listener = connect(wrong + "/3", max_connections=1, role="subscriptions-refused")
        subscriptions = Subscriptions(listener)
        subscriptions.on(f"fixed-{uuid.uuid4().hex}", lambda _message: None)
        subscriptions.start()
        try:
            await _until(lambda: any("refused the subscription" in r.getMessage() for r in caplog.records))
            assert not subscriptions.subscribed
            assert "not-the-password" not in caplog.text
        finally:
            await subscriptions.stop()
            await listener.aclose()

    with caplog.at_level("ERROR", logger="gateway.subscriptions"):
        asyncio.run(body())
