"""What every part of the ledger shares: the Redis client, the retry budget, the Lua scripts."""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import redis.asyncio as aioredis

from gateway.ledger.connection import SOCKET_TIMEOUT_S, retrying
from gateway.ledger.pipelining import Packed, Pipeline, PipelinedScript
from gateway.ledger.tenants import TenantLimits

T = TypeVar("T")

_SCRIPTS = Path(__file__).resolve().parent / "scripts"
# A line `-- include: NAME` in a script is replaced by scripts/lib/NAME.lua (code several scripts share).
_INCLUDE = re.compile(r"^-- include: ([a-z_]+)$", re.M)


def _source(path: Path) -> str:
    return _INCLUDE.sub(lambda m: (_SCRIPTS / "lib" / f"{m.group(1)}.lua").read_text(), path.read_text())


SCRIPT_SOURCES = {path.stem: _source(path) for path in sorted(_SCRIPTS.glob("*.lua"))}


def wall_ms() -> int:
    """This process's wall clock in ms."""
    return int(time.time() * 1000)


class LedgerError(RuntimeError):
    """A ledger operation was refused."""


class LedgerBase:
    """The connection and policy of a ledger; the parts (jobs, events, work) add the operations."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        retention_s: float = 48 * 3600,
        queue_limit: int = 0,
        retry_s: float = 2.0,
        tenant_defaults: TenantLimits | None = None,
        wall_clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.redis = client
        # This process's wall clock (ms), per ledger (a test stands in another replica's, skewed).
        # What the ledger records a time by is Redis's clock (TIME, in its scripts); this one only
        # fills the time an event's bytes carry, which its stream entry's id replaces once read.
        self.wall_ms = wall_clock
        self.defaults = tenant_defaults or TenantLimits()
        self.retention_ms = int(retention_s * 1000)
        # How long a webhook delivery is kept: the job retention, or its retry schedule when longer
        # (set by whoever runs the deliveries).
        self.webhook_ttl_ms = self.retention_ms
        self.queue_limit = queue_limit
        self.retry_s = retry_s
        # Script calls and the hot reads (a job, its checkpoints, event streams) share one pipelined
        # connection (see pipelining); other commands use the pool.
        self.pipeline = Pipeline(client, timeout_s=SOCKET_TIMEOUT_S)
        self.scripts: dict[str, Any] = {
            name: PipelinedScript(self.pipeline, source) for name, source in SCRIPT_SOURCES.items()
        }

    async def aclose(self) -> None:
        """Closes the ledger's own connection (the client's pool is its owner's to close)."""
        await self.pipeline.aclose()

    def with_retry(self: T, retry_s: float) -> T:
        """The same ledger, retrying connection failures for another budget (the dispatcher waits
        out a Redis restart; an API call answers UNAVAILABLE after a short one)."""
        patient = copy.copy(self)
        patient.retry_s = retry_s  # type: ignore[attr-defined]
        return patient

    async def clock_ms(self) -> int:
        """Redis's clock (TIME) in ms: what leases and slots are written and judged by
        (scripts/lib/clock.lua), not this process's wall clock."""
        seconds, micros = await self._retry(lambda: self.redis.time())
        return int(seconds) * 1000 + int(micros) // 1000

    # _retry and the script calls below return their awaitable rather than awaiting it: each
    # coroutine layer between a submit and its reply is built, and passed through when the call
    # suspends and again when it resumes.

    def _retry(self, operation: Callable[[], Awaitable[T]], *, pipelined: bool = False) -> Awaitable[T]:
        """operation, retried for the ledger's budget; pipelined: it goes over the Pipeline (its
        attempts are bounded there, see connection.retrying)."""
        return retrying(operation, self.retry_s, pipelined=pipelined)

    async def _script(self, name: str, keys: list[Any], args: list[Any]) -> Any:
        """A Lua script's reply (scripts/NAME.lua), called over the pipelined connection, retried:
        every script is idempotent, so a call whose reply was lost applies once."""
        script = self.scripts[name]
        return await self._retry(lambda: script(keys=keys, args=args), pipelined=True)

    def _script_runs(self, name: str, numkeys: int, *runs: Packed | tuple[Any, ...]) -> Awaitable[Any]:
        """As _script, its keys and arguments given as runs (PipelinedScript.call_runs)."""
        script = self.scripts[name]
        return self._retry(lambda: script.call_runs(numkeys, *runs), pipelined=True)

    async def _command(self, *command: Any) -> Any:
        """One non-blocking command's raw reply over the pipelined connection, retried: a read there
        costs the event loop a fraction of a pooled one (a blocking one would hold every reply
        behind it, so none comes here)."""
        return await self._retry(lambda: self.pipeline.execute(*command), pipelined=True)


def as_dict(flat: Any) -> dict[bytes, bytes]:
    """A raw HGETALL (or stream entry) reply, [field, value, ...], as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True)) if flat else {}
