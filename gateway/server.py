"""The gateway process: create_server(settings) builds it; main() serves until SIGTERM."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
import redis.asyncio as aioredis

from gateway.admin import SERVICE_NAME as ADMIN_SERVICE
from gateway.admin import AdminServicer
from gateway.auth.api_keys import KeyStore
from gateway.auth.interceptor import Authenticator, AuthInterceptor
from gateway.auth.jwt_tokens import JwtVerifier
from gateway.auth.principal import Scope
from gateway.dispatcher import Dispatcher
from gateway.ledger import Ledger, connect, keys
from gateway.servicer import RenderServicer
from gateway.settings import GatewaySettings
from gateway.stages import StageClients
from gateway.subscriptions import Subscriptions
from gateway.watch import EventHub
from render.admin.v1 import admin_service_pb2_grpc as admin_grpc
from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from renderkit.edge import Dependency, Edge, serve
from renderkit.storage import open_storage
from renderkit.tls import internal_client, public_server_credentials

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RenderService"].full_name
# The scope each method needs; a method of these services that is not listed is refused.
METHOD_SCOPES = {
    **{f"/{SERVICE_NAME}/{m}": Scope.RENDER for m in ("SubmitRender", "CancelJob")},
    **{
        f"/{SERVICE_NAME}/{m}": Scope.READ
        for m in ("GetJob", "WatchJob", "ListJobs", "GetBalance", "ListCreditEntries")
    },
    **{
        f"/{ADMIN_SERVICE}/{m}": Scope.ADMIN
        for m in ("CreateApiKey", "ListApiKeys", "RevokeApiKey", "GetTenant", "UpdateTenantLimits", "GrantCredits")
    },
}


@dataclass
class Gateway:
    """A created gateway: its edge (server, health), ledger, event hub and dispatcher."""

    edge: Edge
    ledger: Ledger
    hub: EventHub
    subscriptions: Subscriptions
    api_keys: KeyStore
    dispatcher: Dispatcher | None
    stages: StageClients
    redis: aioredis.Redis
    settings: GatewaySettings

    @property
    def port(self) -> int:
        return self.edge.port

    async def start(self) -> None:
        """Starts serving: NOT_SERVING until Redis answers, then the dispatcher starts and SERVING."""
        await self.edge.start()

    async def stop(self, grace_s: float = 2.0) -> None:
        """Drains and stops (SIGTERM does the same with the configured grace)."""
        await self.edge.stop(grace_s)


def create_server(settings: GatewaySettings) -> Gateway:
    """Builds the gateway bound to settings.listen (port 0 picks a free port)."""
    client = connect(settings.redis_url, max_connections=settings.redis_max_connections)
    ledger = Ledger(
        client,
        retention_s=settings.retention_s,
        queue_limit=settings.queue_limit,
        retry_s=settings.redis_retry_s,
        tenant_defaults=settings.tenant_defaults,
    )
    storage = open_storage(settings.storage_url)
    stages = StageClients.connect(
        settings.segmentation_addr,
        settings.depth_addr,
        settings.projection_addr,
        settings.generation_addr,
        tls=internal_client(settings.internal_tls_dir),
    )
    # Pub/sub and the health probe have connections of their own: a pool busy with API calls must
    # neither starve the subscription nor make a healthy Redis look down.
    listener = connect(settings.redis_url, max_connections=1, role="gateway-subscriber")
    prober = connect(settings.redis_url, max_connections=1, role="gateway-probe")
    subscriptions = Subscriptions(listener)
    hub = EventHub(ledger, subscriptions, keepalive_s=settings.watch_keepalive_s)
    api_keys = KeyStore(client, cache_s=settings.api_key_cache_s, retry_s=settings.redis_retry_s)
    subscriptions.on(keys.REVOKED_KEYS_CHANNEL, api_keys.forget)
    subscriptions.on_subscribed(api_keys.forget_all)
    authenticator = Authenticator(api_keys, JwtVerifier(settings.jwt) if settings.jwt.enabled else None)
    dispatcher = Dispatcher(ledger, storage, stages, settings, subscriptions) if settings.dispatch else None
    edge = Edge(
        [SERVICE_NAME, ADMIN_SERVICE],
        listen=settings.listen,
        interceptors=[AuthInterceptor(authenticator, METHOD_SCOPES, {SERVICE_NAME, ADMIN_SERVICE})],
        # The inline size limit: gRPC refuses a larger request from its length prefix, unread.
        max_receive_bytes=settings.max_request_bytes,
        probe_interval_s=settings.probe_interval_s,
        credentials=public_server_credentials(settings.tls_cert, settings.tls_key),
        dependencies=[
            Dependency("redis", lambda: _answers(prober)),
            Dependency("the redis subscription", subscriptions.healthy),
        ],
    )
    servicer = RenderServicer(ledger, storage, settings.limits, hub, settings.prices)
    admin = AdminServicer(api_keys, ledger)

    def register(server: grpc.aio.Server) -> None:
        pb_grpc.add_RenderServiceServicer_to_server(servicer, server)
        admin_grpc.add_AdminServiceServicer_to_server(admin, server)

    edge.add(register)

    async def start_readers() -> None:
        subscriptions.start()
        hub.start()
        stages.start()  # follows the certificate files

    edge.on_start.append(start_readers)
    if dispatcher is not None:
        edge.when_ready(dispatcher.start)
        edge.on_drain.append(lambda: dispatcher.stop(settings.grace_seconds))
    edge.on_drain.append(hub.drain)
    edge.on_close.append(subscriptions.stop)
    edge.on_close.append(stages.close)
    edge.on_close.append(ledger.aclose)
    for redis_client in (client, listener, prober):
        edge.on_close.append(redis_client.aclose)
    return Gateway(
        edge=edge,
        ledger=ledger,
        hub=hub,
        subscriptions=subscriptions,
        api_keys=api_keys,
        dispatcher=dispatcher,
        stages=stages,
        redis=client,
        settings=settings,
    )


async def _answers(client: aioredis.Redis) -> bool:
    return bool(await client.ping())


def main() -> None:
    settings = GatewaySettings.from_env()
    serve("gateway", lambda: create_server(settings).edge, settings.grace_seconds)
