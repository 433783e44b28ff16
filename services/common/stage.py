"""The skeleton of a stage service process: settings, server factory, readiness and main()."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
import numpy as np
from grpc_health.v1._async import HealthServicer

from render.imaging.v1 import imaging_pb2
from renderkit.serving import (
    SERVER_OPTIONS,
    add_health_and_reflection,
    bind,
    configure_logging,
    run_until_signalled,
    set_serving,
)
from renderkit.settings import env_float, env_str
from renderkit.triton import TritonModels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageSettings:
    """What every stage reads from the environment."""

    listen: str
    triton_url: str  # empty: no Triton, only the model-free paths
    grace_seconds: float

    @classmethod
    def from_env(cls, prefix: str, default_port: int) -> StageSettings:
        return cls(
            listen=env_str(f"{prefix}_LISTEN", f"127.0.0.1:{default_port}"),
            triton_url=env_str("TRITON_URL", ""),
            grace_seconds=env_float("SHUTDOWN_GRACE_SECONDS", 10.0, minimum=0.0),
        )


@dataclass
class StageServer:
    """A created (not yet started) stage server."""

    server: grpc.aio.Server
    port: int
    service_names: list[str]
    health: HealthServicer
    ready: Callable[[], Awaitable[bool]]
    close: Callable[[], Awaitable[None]]

    async def start(self) -> None:
        """Starts serving and reports SERVING once the stage's dependencies answer."""
        await self.server.start()
        await self.mark_ready()

    async def mark_ready(self, timeout_s: float = 60.0) -> None:
        """Waits until ready() holds, then flips health to SERVING."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not await self.ready():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the stage's dependencies did not become ready")
            await asyncio.sleep(0.2)
        await set_serving(self.health, self.service_names, True)

    async def stop(self, grace: float = 2.0) -> None:
        """Stops the server and releases its clients."""
        await self.server.stop(grace)
        await self.close()


def triton_for(settings: StageSettings) -> TritonModels | None:
    """The Triton client when TRITON_URL is set."""
    return TritonModels(settings.triton_url) if settings.triton_url else None


async def triton_ready(triton: TritonModels | None) -> bool:
    """A stage that was given a Triton is ready only once Triton answers."""
    return True if triton is None else await triton.server_live()


async def _always_ready() -> bool:
    return True


async def _nothing_to_close() -> None:
    return None


def build_server(
    settings: StageSettings,
    service_names: list[str],
    register: Callable[[grpc.aio.Server], None],
    ready: Callable[[], Awaitable[bool]] = _always_ready,
    close: Callable[[], Awaitable[None]] = _nothing_to_close,
) -> StageServer:
    """Creates a server with the stage's servicer, health (NOT_SERVING until ready) and reflection."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    register(server)
    health = add_health_and_reflection(server, service_names)
    port = bind(server, settings.listen)
    return StageServer(server=server, port=port, service_names=service_names, health=health, ready=ready, close=close)


def build_model_server(
    settings: StageSettings, service_name: str, register: Callable[[grpc.aio.Server, TritonModels | None], None]
) -> StageServer:
    """A stage that uses Triton when TRITON_URL is set: ready once Triton answers; closes its client."""
    triton = triton_for(settings)

    async def close() -> None:
        if triton is not None:
            await triton.close()

    return build_server(settings, [service_name], lambda s: register(s, triton), lambda: triton_ready(triton), close)


def run_stage(name: str, create: Callable[[], StageServer], grace_seconds: float) -> None:
    """main() of a stage process: serve until SIGTERM, then drain."""
    configure_logging(name)

    async def serve() -> None:
        stage = create()
        log.info("%s listening on port %d", name, stage.port)
        await run_until_signalled(
            stage.server, stage.health, grace_seconds=grace_seconds, on_start=stage.mark_ready, on_drain=stage.close
        )

    asyncio.run(serve())


def points(values: object) -> np.ndarray:
    """Repeated imaging.v1.Point as an (N, 2) float64 array."""
    return np.array([[p.x, p.y] for p in values], dtype=np.float64).reshape(-1, 2)  # type: ignore[attr-defined]


def box_of(box: imaging_pb2.Box) -> tuple[float, float, float, float] | None:
    """A box as (x0, y0, x1, y1), or None when unset."""
    if box.x_max <= box.x_min or box.y_max <= box.y_min:
        return None
    return (box.x_min, box.y_min, box.x_max, box.y_max)
