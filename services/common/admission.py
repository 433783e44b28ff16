"""Admission of a stage's requests by the memory they need.

Each request fits the per-request budget (REQUEST_MEMORY_MB: the gateway refuses at submit what its
headers say cannot, and the stages check again), but nothing bounded how many run in one process
at once: a dispatcher runs several jobs at a time, several dispatchers call the same replica, and
four 40 MP projections together need far more than a pod's memory limit, which the kernel enforces
by killing the process and every call in it.

The gate admits requests while the sum of their estimated peaks (renderkit.budget's figures, from
the images' headers) fits the process's allowance; the others wait in order of arrival, for as
long as their callers' deadlines allow (a call cancelled while waiting leaves the queue). A
request larger than the whole allowance runs alone. The allowance is STAGE_MEMORY_MB, else what
the container's memory limit (cgroup v2 `memory.max`) leaves above the process's size at start,
less a tenth; with neither, requests are not gated.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
from collections.abc import AsyncIterator, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from opentelemetry import metrics

from renderkit import heap
from renderkit.settings import SettingsError, env_int

T = TypeVar("T")

CGROUP_MEMORY_MAX = Path("/sys/fs/cgroup/memory.max")
# Of what the container's limit leaves, this share is the allowance: the rest is headroom for what
# the estimates do not count (allocator fragmentation, the gRPC messages in and out).
_LIMIT_SHARE = 0.9


class MemoryGate:
    """At most `capacity_bytes` of requests' estimated need at once (None: no limit); requests
    are admitted in order of arrival."""

    def __init__(self, capacity_bytes: int | None) -> None:
        if capacity_bytes is not None and capacity_bytes <= 0:
            raise ValueError("a memory gate's capacity must be positive")
        self.capacity_bytes = capacity_bytes
        self.in_use = 0
        self._running = 0
        self._waiting: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @contextlib.asynccontextmanager
    async def admitted(self, need_bytes: int) -> AsyncIterator[None]:
        """Holds `need_bytes` of the allowance while the block runs (waiting for it first)."""
        if self.capacity_bytes is None:
            yield
            return
        need = max(0, need_bytes)
        if self._waiting or not self._fits(need):
            turn = asyncio.get_running_loop().create_future()
            entry = (need, turn)
            self._waiting.append(entry)
            try:
                await turn
            except BaseException:
                if entry in self._waiting:
                    self._waiting.remove(entry)
                elif turn.done() and not turn.cancelled():  # admitted as it was cancelled: give it back
                    self._release(need)
                self._admit()
                raise
        else:
            self._take(need)
        try:
            yield
        finally:
            self._release(need)

    async def run(self, need_bytes: int, work: Coroutine[Any, Any, T]) -> T:
        """Runs `work` once admitted, holding `need_bytes` until it ends. A caller that gives up
        while the work runs (its deadline: gRPC cancels the handler) is answered at once, but the
        work's worker threads cannot be stopped and keep their memory: the allowance is held until
        the work itself ends (its result dropped)."""
        if self.capacity_bytes is None:
            return await work
        task: asyncio.Future[T] | None = None
        try:
            async with self.admitted(need_bytes):
                task = asyncio.ensure_future(work)
                try:
                    return await asyncio.shield(task)
                except asyncio.CancelledError:
                    await asyncio.wait([task])  # cancelled again meanwhile: the allowance goes back then
                    if not task.cancelled():
                        task.exception()  # retrieved: what failed after its caller left is nobody's
                    raise
        finally:
            if task is None:
                work.close()  # its caller gave up while it waited: it never started

    def _fits(self, need: int) -> bool:
        assert self.capacity_bytes is not None
        # A request larger than the whole allowance runs alone rather than never.
        return self.in_use + need <= self.capacity_bytes or self._running == 0

    def _take(self, need: int) -> None:
        self.in_use += need
        self._running += 1

    def _release(self, need: int) -> None:
        self.in_use -= need
        self._running -= 1
        self._admit()

    def _admit(self) -> None:
        """Admits waiting requests in order while the first one fits."""
        while self._waiting and self._fits(self._waiting[0][0]):
            need, turn = self._waiting.popleft()
            if turn.done():  # cancelled meanwhile
                continue
            self._take(need)
            turn.set_result(None)


def report(gate: MemoryGate) -> None:
    """The gate's state as gauges (once per process: the stage's server calls it): the estimated
    bytes its running requests hold and how many requests wait (a replica short of memory for its
    load waits often; its pods want a larger limit or more replicas)."""
    meter = metrics.get_meter("render.stage")
    meter.create_observable_gauge(
        "render.stage.memory.admitted",
        [lambda _options: [metrics.Observation(gate.in_use)]],
        unit="By",
        description="Estimated peak memory of the requests running now (the gate's allowance: STAGE_MEMORY_MB).",
    )
    meter.create_observable_gauge(
        "render.stage.memory.waiting",
        [lambda _options: [metrics.Observation(gate.waiting)]],
        description="Requests waiting for memory to be admitted.",
    )


def allowance_bytes(
    env: Mapping[str, str] | None = None, cgroup_max: Path = CGROUP_MEMORY_MAX, resident: int | None = None
) -> int | None:
    """The memory a stage's requests may hold at once: STAGE_MEMORY_MB, else a share of what the
    container's limit leaves above this process's size now, else None (no limit known)."""
    environ = os.environ if env is None else env
    if environ.get("STAGE_MEMORY_MB", "").strip():
        return env_int("STAGE_MEMORY_MB", 0, minimum=64, env=environ) * 2**20
    try:
        text = cgroup_max.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():  # "max": no limit
        return None
    size = heap.resident_bytes() if resident is None else resident
    left = int(text) - size
    if left <= 64 * 2**20:
        raise SettingsError(
            f"the container's memory limit ({int(text) // 2**20} MiB) leaves no room for requests "
            f"above the process's {size // 2**20} MiB"
        )
    return int(left * _LIMIT_SHARE)
