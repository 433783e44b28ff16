"""The gateway process: create_server(settings) builds it; main() serves until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import grpc
import redis.asyncio as aioredis
from grpc_health.v1._async import HealthServicer

from gateway.dispatcher import Dispatcher
from gateway.ledger import Ledger
from gateway.servicer import RenderServicer
from gateway.settings import GatewaySettings
from gateway.stages import StageClients
from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from renderkit.serving import (
    SERVER_OPTIONS,
    add_health_and_reflection,
    bind,
    configure_logging,
    run_until_signalled,
    set_serving,
)
from renderkit.storage import open_storage

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RenderService"].full_name


@dataclass
class Gateway:
    """A created gateway: its server, ledger and dispatcher."""

    server: grpc.aio.Server
    port: int
    health: HealthServicer
    ledger: Ledger
    dispatcher: Dispatcher | None
    stages: StageClients
    redis: aioredis.Redis
    settings: GatewaySettings

    async def start(self) -> None:
        """Starts serving; SERVING once Redis answers and the dispatcher runs."""
        await self.server.start()
        await self.mark_ready()

    async def mark_ready(self) -> None:
        """Waits for Redis, starts the dispatcher, then reports SERVING."""
        for _ in range(300):
            try:
                await self.redis.ping()
                break
            except (aioredis.ConnectionError, OSError):
                await asyncio.sleep(0.1)
        await self.ledger.ensure_group()
        if self.dispatcher is not None:
            await self.dispatcher.start()
        await set_serving(self.health, [SERVICE_NAME], True)

    async def drain(self) -> None:
        """Stops the dispatcher (running jobs finish or are handed back) and closes clients."""
        if self.dispatcher is not None:
            await self.dispatcher.stop(self.settings.grace_seconds)
        await self.stages.close()
        await self.redis.aclose()

    async def stop(self, grace: float = 2.0) -> None:
        """Stops everything (tests)."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        await self.drain()


def create_server(settings: GatewaySettings) -> Gateway:
    """Builds the gateway bound to settings.listen (port 0 picks a free port)."""
    client = aioredis.Redis.from_url(settings.redis_url, max_connections=10000)
    ledger = Ledger(client, retention_s=settings.retention_s, queue_limit=settings.queue_limit)
    storage = open_storage(settings.storage_url)
    stages = StageClients.connect(
        settings.segmentation_addr, settings.depth_addr, settings.projection_addr, settings.generation_addr
    )
    server = grpc.aio.server(options=SERVER_OPTIONS)
    pb_grpc.add_RenderServiceServicer_to_server(RenderServicer(ledger, storage, settings.limits), server)
    health = add_health_and_reflection(server, [SERVICE_NAME])
    port = bind(server, settings.listen)
    dispatcher = Dispatcher(ledger, storage, stages, settings) if settings.dispatch else None
    return Gateway(
        server=server,
        port=port,
        health=health,
        ledger=ledger,
        dispatcher=dispatcher,
        stages=stages,
        redis=client,
        settings=settings,
    )


def main() -> None:
    configure_logging("gateway")
    settings = GatewaySettings.from_env()

    async def serve() -> None:
        gateway = create_server(settings)
        log.info("gateway listening on port %d", gateway.port)
        await run_until_signalled(
            gateway.server,
            gateway.health,
            grace_seconds=settings.grace_seconds,
            on_start=gateway.mark_ready,
            on_drain=gateway.drain,
        )

    asyncio.run(serve())
