"""Live health: every dependency of a server probed on a loop, published through grpc.health.v1.

A server is SERVING only while every required dependency answers, and NOT_SERVING while one is
down or while it drains. Optional dependencies (an image provider, say) are published under their
own health names and do not change the server's overall status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True)
class Dependency:
    """Something a server needs: `probe` answers whether it works now (it must not raise for long:
    each probe runs under a timeout, and an exception counts as down)."""

    name: str
    probe: Callable[[], Awaitable[bool]]
    required: bool = True
    health_name: str = ""  # also published under this grpc.health.v1 service name


class Readiness:
    """Probes the dependencies every `interval_s` and keeps the health service's statuses true."""

    def __init__(
        self,
        health: HealthServicer,
        service_names: Sequence[str],
        dependencies: Sequence[Dependency] = (),
        *,
        interval_s: float = 1.0,
        probe_timeout_s: float = 2.0,
        on_first_ready: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self.health = health
        self.service_names = list(service_names)
        self.dependencies = list(dependencies)
        self.interval_s = interval_s
        self.probe_timeout_s = probe_timeout_s
        self.on_first_ready = list(on_first_ready)
        self.up: dict[str, bool] = {}
        self.serving = False
        self._started_up = False
        self._changed = asyncio.Event()

    async def _probe(self, dependency: Dependency) -> bool:
        try:
            async with asyncio.timeout(self.probe_timeout_s):
                return bool(await dependency.probe())
        except asyncio.CancelledError:
            raise
        except Exception:
            return False

    async def check(self) -> bool:
        """Probes every dependency once, publishes the statuses, and returns whether the server serves."""
        results = await asyncio.gather(*(self._probe(d) for d in self.dependencies))
        for dependency, ok in zip(self.dependencies, results, strict=True):
            before = self.up.get(dependency.name)
            self.up[dependency.name] = ok
            if before is not None and before != ok:
                log.warning("%s is %s", dependency.name, "back" if ok else "down")
            elif before is None and not ok:
                log.info("waiting for %s", dependency.name)
            if dependency.health_name:
                await self.health.set(dependency.health_name, SERVING if ok else NOT_SERVING)
        ready = all(ok for d, ok in zip(self.dependencies, results, strict=True) if d.required)
        if ready and not self._started_up:
            try:
                for hook in self.on_first_ready:
                    await hook()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("start-up after the dependencies answered failed; retrying")
                ready = False
            else:
                self._started_up = True
        if ready != self.serving:
            log.info("%s", "SERVING" if ready else "NOT_SERVING: " + ", ".join(self.down()))
        self.serving = ready
        for name in ["", *self.service_names]:
            await self.health.set(name, SERVING if ready else NOT_SERVING)
        self._changed.set()
        return ready

    def down(self) -> list[str]:
        """The required dependencies that did not answer the last probe."""
        return [d.name for d in self.dependencies if d.required and not self.up.get(d.name, False)]

    async def run(self) -> None:
        """Probes forever (until cancelled)."""
        while True:
            with contextlib.suppress(Exception):
                await self.check()
            await asyncio.sleep(self.interval_s)

    async def wait_serving(self, timeout_s: float) -> None:
        """Returns once the server serves; TimeoutError naming what is down otherwise."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.serving:
            self._changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError("not serving; waiting for " + (", ".join(self.down()) or "start-up"))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._changed.wait()
