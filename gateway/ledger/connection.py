"""The ledger's Redis connections and the one rule for retrying them.

Timeouts agree with each other: the socket timeout is longer than any blocking read the gateway
makes (redis-py's default of 5 s ended every quiet event read). The pool is bounded, so many
watchers or workers never mean many connections. redis-py's own retries are off: every ledger
operation is retried here, for a time budget, with exponential backoff and jitter, and every
script is idempotent, so a retry after a reply lost in a Redis restart applies nothing twice.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.ledger.pipelining import ATTEMPT_DEADLINE
from renderkit.errors import DependencyUnavailable

T = TypeVar("T")

# Longer than any blocking read the gateway makes (MAX_BLOCK_MS), so a quiet read never times out.
SOCKET_TIMEOUT_S = 10.0
MAX_BLOCK_MS = 2000
CONNECT_TIMEOUT_S = 2.0

# Redis restarting (connection refused, LOADING), a replica promoted (READONLY), a socket cut.
RETRYABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    OSError,
)


# Redis answering, but refusing writes for now: out of memory under `noeviction`, its AOF or RDB
# failing to write (a full disk: MISCONF), a script running too long (BUSY), a failover under way.
# Redis refuses such a command before it runs, and a script before its first write (after reads only),
# so the call can be made again, as after a lost connection. A script's refusal comes wrapped
# ("Error running script (...): @user_script: 180: -OOM command not allowed ..."), and so does a
# transaction's ("Command # 1 (...) of pipeline caused error: ('MISCONF ...',)").
_REFUSING_FOR_NOW: tuple[type[Exception], ...] = (
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,  # MASTERDOWN too
)
_REFUSAL = re.compile(r"(?:\A|: -|\(')(?:OOM|MISCONF|BUSY|NOREPLICAS|MASTERDOWN|TRYAGAIN|CLUSTERDOWN) ")


def transient(exc: BaseException) -> bool:
    """Whether a Redis failure should pass: a connection lost or refused, a timeout, a replica
    being promoted, or Redis refusing writes for now (_REFUSING_FOR_NOW); not an error in the call."""
    if isinstance(exc, (*RETRYABLE, *_REFUSING_FOR_NOW)):
        return True
    return isinstance(exc, redis.exceptions.ResponseError) and _REFUSAL.search(str(exc)) is not None


class LedgerUnavailable(DependencyUnavailable):
    """Redis did not answer within the operation's retry budget."""

    def __init__(self) -> None:
        super().__init__("the job ledger", retry_after_s=1.0)


def connect(url: str, *, max_connections: int = 16, role: str = "gateway") -> aioredis.Redis:
    """A client over a bounded pool; callers wait for a free connection rather than open more.

    Each connection is named (CLIENT SETNAME) after the process and this client (`client_name`),
    so `CLIENT LIST` shows who holds what.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=SOCKET_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        client_name=f"render-{role}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
        retry=Retry(NoBackoff(), 0),
    )
    return aioredis.Redis(connection_pool=pool)


def client_name(client: aioredis.Redis) -> str:
    """The name a client's connections carry in CLIENT LIST."""
    return str(client.connection_pool.connection_kwargs.get("client_name", ""))


async def retrying(
    operation: Callable[[], Awaitable[T]],
    budget_s: float,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    pipelined: bool = False,
) -> T:
    """Runs a Redis operation, retrying connection failures with backoff and jitter for up to
    budget_s; then raises LedgerUnavailable. Each attempt is bounded too (by what is left of the
    budget, plus the longest blocking read), so a connection that hangs, or a wait for a free
    one, cannot stretch the budget to the socket timeout. A pipelined operation (script calls over
    the ledger's Pipeline) is given its bound as ATTEMPT_DEADLINE, which the Pipeline enforces for
    all its calls with one timer: an asyncio.timeout per call cost ~4 % of a submit's CPU."""
    loop = asyncio.get_running_loop()
    now = loop.time()  # read once for the first attempt (each read ~0.3 µs on this project's VMs)
    deadline = now + budget_s
    bound = max(deadline, now) + MAX_BLOCK_MS / 1000
    delay = 0.05
    while True:
        try:
            if pipelined:
                token = ATTEMPT_DEADLINE.set(bound)
                try:
                    return await operation()
                finally:
                    ATTEMPT_DEADLINE.reset(token)
            async with asyncio.timeout_at(bound):  # no task per call
                return await operation()
        except Exception as exc:
            if not transient(exc):
                raise
            left = deadline - loop.time()
            if left <= 0:
                raise LedgerUnavailable() from exc
            await sleep(min(left, delay * random.uniform(0.5, 1.5)))
            bound = max(deadline, loop.time()) + MAX_BLOCK_MS / 1000
            delay = min(delay * 2, 1.0)
