"""The ledger's pipelined connection against a real Redis (with its password): replies reach their
callers in order, errors stay with their call, and a lost or silent connection fails what waits and
is made again."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.exceptions

from gateway.ledger import connect
from gateway.ledger.connection import MAX_BLOCK_MS, LedgerUnavailable, client_name, retrying
from gateway.ledger.pipelining import ATTEMPT_DEADLINE, Packed, Pipeline, PipelinedScript, packed

pytestmark = pytest.mark.integration


def run(body: Callable[[Pipeline, Any], Coroutine[Any, Any, None]], url: str, **kwargs: Any) -> None:
    async def main() -> None:
        client = connect(url + "/3", max_connections=2, role="pipelining-test")
        pipeline = Pipeline(client, **kwargs)
        try:
            await body(pipeline, client)
        finally:
            await pipeline.aclose()
            await client.aclose()

    asyncio.run(main())


def test_concurrent_calls_get_their_own_replies(redis_url: str) -> None:
    async def body(pipeline: Pipeline, client: Any) -> None:
        key = f"pipelining-test:{uuid.uuid4().hex}"
        try:
            replies = await asyncio.gather(*(pipeline.execute("ECHO", f"call {i}") for i in range(2000)))
            assert replies == [f"call {i}".encode() for i in range(2000)]
            counts = await asyncio.gather(*(pipeline.execute("INCR", key) for _ in range(500)))
            assert sorted(counts) == list(range(1, 501))
        finally:
            await client.delete(key)

    run(body, redis_url)


def test_an_error_reply_fails_only_its_call(redis_url: str) -> None:
    async def body(pipeline: Pipeline, client: Any) -> None:
        key = f"pipelining-test:{uuid.uuid4().hex}"
        try:
            await client.set(key, "text")
            results = await asyncio.gather(
                pipeline.execute("ECHO", "before"),
                pipeline.execute("INCR", key),  # not an integer
                pipeline.execute("ECHO", "after"),
                return_exceptions=True,
            )
            assert results[0] == b"before" and results[2] == b"after"
            assert isinstance(results[1], redis.exceptions.ResponseError)
            assert await pipeline.execute("GET", key) == b"text"
        finally:
            await client.delete(key)

    run(body, redis_url)


def test_runs_packed_once_send_what_a_whole_call_sends(redis_url: str) -> None:
    """A script called with runs, some packed beforehand (Packed), gets the keys and arguments a
    call with them all in one list gets, in the same order and count, and is loaded again after
    Redis lost it."""

    async def body(pipeline: Pipeline, client: Any) -> None:
        script = PipelinedScript(pipeline, "return {#KEYS, KEYS, ARGV}")
        keys, args = ["k1", "k2", "k3"], ["a", 7, b"\x00\r\n", "", 2.5, "z"]
        whole = await script(keys=keys, args=args)
        assert whole == [3, [b"k1", b"k2", b"k3"], [b"a", b"7", b"\x00\r\n", b"", b"2.5", b"z"]]
        once = packed("k3", "a", 7)
        assert once == Packed(3, b"$2\r\nk3\r\n$1\r\na\r\n$1\r\n7\r\n")
        assert await script.call_runs(3, ("k1", "k2"), once, (b"\x00\r\n", ""), packed(2.5), ("z",)) == whole
        await client.script_flush()  # as a Redis restart does
        assert await script.call_runs(3, ("k1", "k2"), once, (b"\x00\r\n", ""), packed(2.5, "z")) == whole

    run(body, redis_url)


def test_a_script_is_loaded_again_after_redis_lost_it(redis_url: str) -> None:
    async def body(pipeline: Pipeline, client: Any) -> None:
        script = PipelinedScript(pipeline, "return {KEYS[1], ARGV[1]}")
        assert await script(keys=["k"], args=["v"]) == [b"k", b"v"]
        await client.script_flush()  # as a Redis restart does
        assert await script(keys=["k2"], args=[7]) == [b"k2", b"7"]

    run(body, redis_url)


def test_a_killed_connection_fails_what_waits_and_the_next_call_reconnects(redis_url: str) -> None:
    async def body(pipeline: Pipeline, client: Any) -> None:
        assert await pipeline.execute("PING") == b"PONG"
        name = f"{client_name(client)}-pipeline"
        listed = (await client.execute_command("CLIENT", "LIST")).decode()
        assert f"name={name} " in listed  # the connection is named after its client
        # A call that is still waiting when the connection dies fails with ConnectionError.
        waiting = asyncio.ensure_future(pipeline.execute("BLPOP", f"pipelining-test:{uuid.uuid4().hex}", 5))
        await asyncio.sleep(0.2)
        killed = await client.execute_command("CLIENT", "KILL", "SKIPME", "yes", "TYPE", "normal", "USER", "default")
        assert killed >= 1
        with pytest.raises(redis.exceptions.ConnectionError):
            await asyncio.wait_for(waiting, 5)
        assert await pipeline.execute("ECHO", "again") == b"again"

    run(body, redis_url)


def test_a_wrong_password_is_refused(redis_url: str) -> None:
    parts = urlsplit(redis_url)
    wrong = urlunsplit(parts._replace(netloc=f":not-the-password@{parts.hostname}:{parts.port}"))

    async def body(pipeline: Pipeline, client: Any) -> None:
        with pytest.raises(redis.exceptions.AuthenticationError):
            await pipeline.execute("PING")

    run(body, wrong)


@contextlib.asynccontextmanager
async def silent_redis(timeout_s: float) -> AsyncIterator[tuple[Pipeline, list[asyncio.StreamWriter]]]:
    """A Pipeline to a server that answers the handshake (CLIENT SETNAME) and then nothing
    (half-open), with the connections it accepted."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        writer.write(b"+OK\r\n")

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = connect(f"redis://127.0.0.1:{port}/0", max_connections=1, role="pipelining-test")
    pipeline = Pipeline(client, timeout_s=timeout_s)
    try:
        yield pipeline, accepted
    finally:
        await pipeline.aclose()
        await client.aclose()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


def test_a_silent_connection_is_dropped_after_the_timeout() -> None:
    async def main() -> None:
        async with silent_redis(timeout_s=0.3) as (pipeline, _):
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(redis.exceptions.ConnectionError):
                await asyncio.wait_for(pipeline.execute("PING"), 5)
            assert loop.time() - started < 1.5  # the watchdog, not the 2 s connect timeout

    asyncio.run(main())


def test_a_retried_call_is_bounded_by_its_budget_not_the_watchdog() -> None:
    """A script call through `retrying(..., pipelined=True)` on a connection that stops answering:
    each attempt fails at its deadline (the Pipeline's sweep), not after the 30 s watchdog, and the
    whole call gives up as LedgerUnavailable after its budget plus the longest blocking read. The
    connection stays up for the calls that follow."""

    async def main() -> None:
        async with silent_redis(timeout_s=30.0) as (pipeline, accepted):
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(LedgerUnavailable):
                await retrying(lambda: pipeline.execute("PING"), 0.2, pipelined=True)
            took = loop.time() - started
            assert 0.2 + MAX_BLOCK_MS / 1000 <= took < 0.2 + MAX_BLOCK_MS / 1000 + 1.0
            assert len(accepted) == 1  # timed out calls do not drop the connection

    asyncio.run(main())


def test_replies_after_a_timed_out_call_still_reach_their_own_callers(redis_url: str) -> None:
    """A call that timed out keeps its place in the reply order: the calls after it get their own
    replies, not its."""

    async def body(pipeline: Pipeline, client: Any) -> None:
        key = f"t:{uuid.uuid4().hex}"
        token = ATTEMPT_DEADLINE.set(asyncio.get_running_loop().time() + 0.05)
        try:
            slow = asyncio.ensure_future(pipeline.execute("BLPOP", key, "1"))  # answered after ~1 s
        finally:
            ATTEMPT_DEADLINE.reset(token)
        with pytest.raises(TimeoutError):
            await slow
        assert await pipeline.execute("ECHO", "after") == b"after"
        assert await pipeline.execute("SET", key, "v") == b"OK"
        assert await pipeline.execute("GET", key) == b"v"

    run(body, redis_url)


def test_a_reply_that_is_not_resp_drops_the_connection_and_the_next_call_connects_again() -> None:
    """A server that answers the handshake, then bytes that are no Redis reply at all: the waiting
    call fails with ConnectionError at once (not at the watchdog), and the next call opens a new
    connection."""

    async def main() -> None:
        connections = 0

        async def garbled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            await reader.readuntil(b"SETNAME")
            writer.write(b"+OK\r\n")
            await reader.read(100)
            writer.write(b"?not a reply\r\n")
            await writer.drain()
            await reader.read()  # until the client drops it
            writer.close()

        server = await asyncio.start_server(garbled, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = connect(f"redis://127.0.0.1:{port}/0", max_connections=1, role="pipelining-test")
        pipeline = Pipeline(client, timeout_s=30.0)
        try:
            for attempt in (1, 2):
                with pytest.raises(redis.exceptions.ConnectionError):
                    await asyncio.wait_for(pipeline.execute("PING"), 5)
                assert connections == attempt
        finally:
            await pipeline.aclose()
            await client.aclose()
            server.close()
            await server.wait_closed()

    asyncio.run(main())
