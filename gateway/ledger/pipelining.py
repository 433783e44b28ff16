"""Script calls and hot reads go to Redis over one pipelined connection: many in flight, replies
in order.

Every submit, take and transition is one Lua script call (LedgerBase._script); a job's reads on
a job's path (the job, its checkpoints, its event stream) are single commands (LedgerBase._command).
Through redis-py's pool each call costs
~200 µs of the event loop's time on its own (a connection taken from the pool and given back, the
command packed in Python, a task per write for its timeout, a read), more than the gRPC call it
serves. The Pipeline instead keeps one connection of its own: a call packs its command (hiredis,
in C) and queues its future; the command is written at once when no earlier write is still waiting
for its replies, else it is held with the others that come meanwhile, and they leave in one write
as soon as those replies are in (idle, a call waits for nothing; under load, writes grow with it).
The connection's protocol feeds what arrives to a hiredis reader and resolves the futures in order,
in the callback itself (no task, no per-reply await). Redis answers a connection's commands in the
order sent, so the n-th reply is the n-th waiter's.

Faults: a lost connection (Redis restarted, a socket cut) fails every call still waiting with
ConnectionError and the next call connects again; a connection that answers nothing for
`timeout_s` while calls wait (half-open) is dropped the same way. A call made with an
ATTEMPT_DEADLINE (the caller's retry sets it) fails with TimeoutError once that passes, checked by
one timer every SWEEP_S while such calls wait; its reply, when it comes, is dropped. The caller's retry
(gateway.ledger.connection.retrying) sends a failed call again, and every script is idempotent, so a
call whose reply was lost applies once. An error reply fails only its own call, with redis-py's
exception for it (NOSCRIPT, LOADING, READONLY, ...). Blocking reads (XREAD BLOCK) never come here:
they would hold every reply behind them.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import hashlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NamedTuple

import hiredis
import redis.asyncio as aioredis
import redis.exceptions
from redis._parsers.base import BaseParser

log = logging.getLogger(__name__)

# The loop time by which the current attempt must be answered (None: only the half-open watchdog
# bounds it); set by gateway.ledger.connection.retrying around a pipelined operation.
ATTEMPT_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("attempt_deadline", default=None)
SWEEP_S = 0.1


class Packed(NamedTuple):
    """A run of a command's arguments packed once (RESP bulk strings), sent as it is by every call
    that has it (PipelinedScript.call_runs). hiredis packs an argument in ~1,400 instructions
    (~0.3 µs; a printf of its length), and packing a submit's ~65 was 12 % of the gateway's
    instructions per submit, gRPC's included (callgrind, docs/benchmarks.md); 25 of them, its
    tenant's keys and a queued job's empty start, are the same from one submit to the next."""

    size: int  # how many arguments
    data: bytes


def packed(*items: Any) -> Packed:
    """items as one Packed run."""
    return Packed(len(items), _bulk(items))


def _bulk(items: tuple[Any, ...]) -> bytes:
    """items as RESP bulk strings, without the "*<count>" header of a whole command."""
    whole = hiredis.pack_command(items)
    return whole[whole.index(b"\n") + 1 :]


def _error(reply: hiredis.ReplyError) -> Exception:
    """redis-py's exception for an error reply (NoScriptError, BusyLoadingError, ...)."""
    return BaseParser.parse_error(str(reply))


def replies(reader: hiredis.Reader, data: bytes, on_garbage: Callable[[], None]) -> Iterator[Any]:
    """The complete replies in what arrived, in order; what is not RESP at all calls on_garbage
    (which drops the connection) and ends them."""
    reader.feed(data)
    while True:
        try:
            reply = reader.gets()
        except hiredis.ProtocolError:
            on_garbage()
            return
        if reply is False:
            return
        yield reply


class _Protocol(asyncio.Protocol):
    def __init__(self, on_lost: Any, max_unanswered_writes: int) -> None:
        self.loop = asyncio.get_running_loop()  # the loop its connection is made on
        self.reader = hiredis.Reader()
        self.waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.on_lost = on_lost
        self.lost = False
        self.max_unanswered_writes = max_unanswered_writes
        self._held: list[bytes] = []  # commands waiting for a write
        self._writes: collections.deque[int] = collections.deque()  # replies owed per write, oldest first

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, packed: bytes, future: asyncio.Future[Any]) -> None:
        """Queues a command and its future; written now unless enough writes are unanswered, else
        with the others held when the oldest write's replies are in."""
        self.waiters.append(future)
        self._held.append(packed)
        if len(self._writes) < self.max_unanswered_writes:
            self._write()

    def _write(self) -> None:
        assert self.transport is not None
        self.transport.write(b"".join(self._held))
        self._writes.append(len(self._held))
        self._held = []

    def data_received(self, data: bytes) -> None:
        waiters, writes = self.waiters, self._writes
        for reply in replies(self.reader, data, self.close):
            if not writes:  # a reply nobody asked for: the stream is not what we think
                self.close()
                return
            writes[0] -= 1
            if writes[0] == 0:
                writes.popleft()
            future = waiters.popleft()
            if future.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(_error(reply))
            else:
                future.set_result(reply)
        if self.transport is None or self.transport.is_closing():
            return  # dropped above: what is held fails with the connection
        if self._held and len(writes) < self.max_unanswered_writes:
            self._write()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        failure = redis.exceptions.ConnectionError("the connection to Redis was lost")
        while self.waiters:
            future = self.waiters.popleft()
            if not future.done():
                future.set_exception(failure)
        self.on_lost(self)

    def close(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.abort()


class Pipeline:
    """One Redis connection with any number of commands in flight (see the module's notes).

    Connects like the client it is made from (host or unix socket, TLS, user and password, db) and
    names its connection after it (CLIENT SETNAME), with a "-pipeline" suffix.
    """

    def __init__(self, client: aioredis.Redis, *, timeout_s: float = 10.0, max_unanswered_writes: int = 1) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.max_unanswered_writes = max_unanswered_writes
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._watched: asyncio.Future[Any] | None = None
        self._deadlines: list[tuple[float, asyncio.Future[Any]]] = []
        self._sweeper: asyncio.TimerHandle | None = None

    def execute(self, *command: Any) -> Awaitable[Any]:
        """The reply to one command; an error reply raises redis-py's exception for it, and a
        call past its ATTEMPT_DEADLINE raises TimeoutError."""
        return self.send(hiredis.pack_command(command))

    async def send(self, command: bytes) -> Any:
        """The reply to one command packed already (RESP), as execute answers it."""
        deadline = ATTEMPT_DEADLINE.get()
        protocol = self._protocol
        if protocol is None or protocol.lost:
            if deadline is None:
                protocol = await self._connect()
            else:
                async with asyncio.timeout_at(deadline):
                    protocol = await self._connect()
        loop = protocol.loop  # not get_running_loop: a getpid each call (~0.6 µs here)
        future: asyncio.Future[Any] = loop.create_future()
        protocol.send(command, future)
        if self._watchdog is None:
            self._arm(loop, protocol)
        if deadline is not None:
            self._deadlines.append((deadline, future))
            if self._sweeper is None:
                self._sweeper = loop.call_later(SWEEP_S, self._sweep, loop)
        return await future

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fails the calls whose deadline has passed; forgets the answered ones."""
        now = loop.time()
        waiting = []
        for deadline, future in self._deadlines:
            if future.done():
                continue
            if deadline <= now:
                future.set_exception(TimeoutError("Redis did not answer in time"))
            else:
                waiting.append((deadline, future))
        self._deadlines = waiting
        self._sweeper = loop.call_later(SWEEP_S, self._sweep, loop) if waiting else None

    async def aclose(self) -> None:
        """Closes the connection (calls still waiting fail)."""
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None

    # -- a connection that stops answering ---------------------------------------------------------

    def _arm(self, loop: asyncio.AbstractEventLoop, protocol: _Protocol) -> None:
        self._watched = protocol.waiters[0] if protocol.waiters else None
        self._watchdog = loop.call_later(self.timeout_s, self._check, loop, protocol)

    def _check(self, loop: asyncio.AbstractEventLoop, protocol: _Protocol) -> None:
        self._watchdog = None
        if protocol.lost or not protocol.waiters:
            return
        if protocol.waiters[0] is self._watched:  # no reply for timeout_s while calls waited
            log.warning("Redis answered nothing for %.0f s; reconnecting", self.timeout_s)
            protocol.close()
            return
        self._arm(loop, protocol)

    # -- connecting ----------------------------------------------------------------------------------

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_future()
            connecting = self._connecting
            try:
                protocol = await self._open()
            except BaseException as exc:
                self._connecting = None
                connecting.set_exception(exc if isinstance(exc, Exception) else ConnectionError("cancelled"))
                connecting.exception()  # retrieved: the callers waiting on it get it too
                raise
            self._protocol = protocol
            self._connecting = None
            connecting.set_result(protocol)
            return protocol
        return await asyncio.shield(self._connecting)

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        kwargs = self.client.connection_pool.connection_kwargs
        protocol = _Protocol(self._lost, self.max_unanswered_writes)
        try:
            async with asyncio.timeout(kwargs.get("socket_connect_timeout") or self.timeout_s):
                await connect_protocol(self.client, protocol)
                for command in handshake(kwargs, "-pipeline"):
                    future: asyncio.Future[Any] = loop.create_future()
                    protocol.send(hiredis.pack_command(command), future)
                    await future
        except OSError as exc:
            protocol.close()
            raise redis.exceptions.ConnectionError("could not connect to Redis") from exc
        except BaseException:
            protocol.close()
            raise
        return protocol

    def _lost(self, protocol: _Protocol) -> None:
        if self._protocol is protocol:
            self._protocol = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None


async def connect_protocol(client: aioredis.Redis, protocol: asyncio.Protocol) -> None:
    """Connects a protocol of our own to the Redis the client is made for (host or unix socket, TLS)."""
    loop = asyncio.get_running_loop()
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        await loop.create_unix_connection(lambda: protocol, kwargs["path"])
    else:
        host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
        await loop.create_connection(lambda: protocol, host, port, ssl=_ssl_context(kwargs, client))


def handshake(kwargs: dict[str, Any], suffix: str) -> list[tuple[Any, ...]]:
    """The commands that open a connection as the client's would (AUTH, the client's name with a
    suffix, SELECT), for its connection kwargs."""
    commands: list[tuple[Any, ...]] = []
    if kwargs.get("password"):
        user = kwargs.get("username")
        commands.append(("AUTH", user, kwargs["password"]) if user else ("AUTH", kwargs["password"]))
    if kwargs.get("client_name"):
        commands.append(("CLIENT", "SETNAME", f"{kwargs['client_name']}{suffix}"))
    if int(kwargs.get("db") or 0):
        commands.append(("SELECT", int(kwargs["db"])))
    return commands


def _ssl_context(kwargs: dict[str, Any], client: aioredis.Redis) -> ssl.SSLContext | None:
    connection_class = client.connection_pool.connection_class
    if not issubclass(connection_class, aioredis.SSLConnection):
        return None
    context = ssl.create_default_context(cafile=kwargs.get("ssl_ca_certs"))
    if kwargs.get("ssl_cert_reqs") in ("none", ssl.CERT_NONE):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if kwargs.get("ssl_certfile"):
        context.load_cert_chain(kwargs["ssl_certfile"], kwargs.get("ssl_keyfile"))
    return context


class PipelinedScript:
    """A Lua script called by its SHA over a Pipeline; loaded again when Redis lost it (a restart
    empties the script cache). Called as redis-py's Script is: script(keys=..., args=...)."""

    def __init__(self, pipeline: Pipeline, source: str) -> None:
        self.pipeline = pipeline
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._heads: dict[int, Packed] = {}  # "EVALSHA <sha> <numkeys>" packed, by numkeys

    def __call__(self, keys: list[Any], args: list[Any]) -> Awaitable[Any]:
        return self._send(hiredis.pack_command(("EVALSHA", self.sha, len(keys), *keys, *args)))

    def call_runs(self, numkeys: int, *runs: Packed | tuple[Any, ...]) -> Awaitable[Any]:
        """As a call with the runs' items in order as its keys (the first numkeys) and arguments: a
        Packed run is sent as it was packed, a tuple is packed here."""
        head = self._heads.get(numkeys)
        if head is None:
            head = self._heads[numkeys] = packed("EVALSHA", self.sha, numkeys)
        count, chunks = head.size, [b"", head.data]
        for run in runs:
            if isinstance(run, Packed):
                count += run.size
                chunks.append(run.data)
            else:
                count += len(run)
                chunks.append(_bulk(run))
        chunks[0] = b"*%d\r\n" % count
        return self._send(b"".join(chunks))  # packed now, sent when awaited

    async def _send(self, command: bytes) -> Any:
        """The reply to the script's EVALSHA command (packed), the script loaded again where Redis
        lost it (a restart empties its script cache)."""
        try:
            return await self.pipeline.send(command)
        except redis.exceptions.NoScriptError:
            await self.pipeline.execute("SCRIPT", "LOAD", self.source)
            return await self.pipeline.send(command)
