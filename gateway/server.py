"""The gateway process: create_server(settings) builds it; main() serves until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import redis.asyncio as aioredis
from connectrpc.code import Code

from gateway.admin import SERVICE_NAME as ADMIN_SERVICE
from gateway.admin import AdminServicer
from gateway.assets import AssetStore, finish_storing
from gateway.auth.api_keys import AuthenticationError, KeyStore
from gateway.auth.interceptor import Authenticator, AuthInterceptor, missing_scope
from gateway.auth.jwt_tokens import JwtVerifier
from gateway.auth.principal import Scope
from gateway.dispatcher import Dispatcher
from gateway.http.app import Cors, HttpApp, Refusal
from gateway.http.asgi import Scope as AsgiScope
from gateway.http.asgi import header
from gateway.http.bridge import ServicerBridge
from gateway.http.console import ConsoleFiles
from gateway.http.files import FileRoute
from gateway.http.server import HttpServer, bind
from gateway.ledger import Ledger, connect, keys
from gateway.ledger.connection import RETRYABLE
from gateway.links import LinkSigner, OutputLinks, SigningKey, new_signing_key, parse_signing_keys
from gateway.metrics import QueueSampler
from gateway.servicer import RenderServicer
from gateway.settings import GatewaySettings, HttpSettings
from gateway.stages import StageClients
from gateway.subscriptions import Subscriptions
from gateway.uploads import UnrecordedUploads, check_delay_s
from gateway.watch import EventHub
from gateway.webhooks.worker import DeliveryWorker, delivery_ttl_ms
from render.admin.v1 import admin_service_pb2 as admin_pb
from render.admin.v1 import admin_service_pb2_grpc as admin_grpc
from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from renderkit.edge import Dependency, Edge, serve
from renderkit.errors import DependencyUnavailable
from renderkit.serving import connection_limit, raise_open_files_limit, single_threaded_blas
from renderkit.settings import refuse_bad_settings
from renderkit.storage import Storage, StorageError, open_storage, origin_of
from renderkit.tls import internal_client, public_server_credentials

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RenderService"].full_name
# The scope each method needs; a method of these services that is not listed is refused.
METHOD_SCOPES: dict[str, Scope | frozenset[Scope]] = {
    # SubmitAndWatch needs both, checked before its request is read like any other method's (the
    # servicer checks read again).
    **{f"/{SERVICE_NAME}/{m}": Scope.RENDER for m in ("SubmitRender", "CancelJob", "UploadAsset")},
    f"/{SERVICE_NAME}/SubmitAndWatch": frozenset({Scope.RENDER, Scope.READ}),
    **{
        f"/{SERVICE_NAME}/{m}": Scope.READ
        for m in ("GetJob", "WatchJob", "ListJobs", "GetBalance", "ListCreditEntries", "GetOutput")
    },
    **{
        f"/{SERVICE_NAME}/{m}": Scope.RENDER
        for m in ("CreateWebhookEndpoint", "DeleteWebhookEndpoint", "RotateWebhookSecret")
    },
    **{f"/{SERVICE_NAME}/{m}": Scope.READ for m in ("ListWebhookEndpoints", "ListWebhookDeliveries")},
    **{
        f"/{ADMIN_SERVICE}/{m}": Scope.ADMIN
        for m in ("CreateApiKey", "ListApiKeys", "RevokeApiKey", "GetTenant", "UpdateTenantLimits", "GrantCredits")
    },
}


@dataclass
class Gateway:
    """A created gateway: its edge (server, health), HTTP port, ledger, event hub and dispatcher."""

    edge: Edge
    ledger: Ledger
    hub: EventHub
    subscriptions: Subscriptions
    api_keys: KeyStore
    dispatcher: Dispatcher | None
    stages: StageClients
    redis: aioredis.Redis
    settings: GatewaySettings
    http: HttpServer | None = None

    @property
    def port(self) -> int:
        return self.edge.port

    @property
    def http_port(self) -> int:
        """The HTTP port (0: none is served)."""
        return self.http.port if self.http is not None else 0

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
    ledger.webhook_ttl_ms = delivery_ttl_ms(settings.webhooks, settings.retention_s)
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
    # Each public port's share of the files the process may open, so that a flood of connections
    # (no credential needed) cannot take the ones Redis and the stages need.
    open_files = raise_open_files_limit()
    per_port = connection_limit(settings.max_connections, ports=2 if settings.http.listen else 1, open_files=open_files)
    if per_port < settings.max_connections:
        log.warning(
            "each public port holds at most %d connections, not MAX_CONNECTIONS=%d: the process may open %d files",
            per_port,
            settings.max_connections,
            open_files,
        )
    edge = Edge(
        [SERVICE_NAME, ADMIN_SERVICE],
        listen=settings.listen,
        # Authentication as the error mapping's guard: what it raises is mapped like a handler's.
        guard=AuthInterceptor(authenticator, METHOD_SCOPES, {SERVICE_NAME, ADMIN_SERVICE}).admit,
        # A storage that fails an upload or a read (GCS away) is infrastructure: UNAVAILABLE, retried.
        infrastructure=[(StorageError, "the storage")],
        # The inline size limit: gRPC refuses a larger request from its length prefix, unread.
        max_receive_bytes=settings.max_request_bytes,
        probe_interval_s=settings.probe_interval_s,
        credentials=public_server_credentials(settings.tls_cert, settings.tls_key),
        max_connections=per_port,
        max_streams=settings.max_streams_per_connection,
        dependencies=[
            Dependency("redis", lambda: _answers(prober)),
            Dependency("the redis subscription", subscriptions.healthy),
        ],
    )
    # Watches end first (UNAVAILABLE): their clients go on at another replica at once, from their
    # cursors, and the HTTP port's streams do not hold its stop for the grace.
    edge.on_drain.append(hub.drain)
    # The HTTP port is bound first: links name the port it got.
    http_socket = bind(settings.http.listen) if settings.http.listen else None
    base_url = settings.http.base_url(http_socket.getsockname()[1] if http_socket else 0)
    signer = link_signer(settings.http, base_url)
    links = OutputLinks(storage, signer if base_url else None, settings.http.link_ttl_s)
    assets = AssetStore(
        ledger,
        storage,
        settings.limits,
        settings.http.asset_retention_s,
        settings.http.asset_quota,
        settings.retention_s,
    )
    unrecorded = UnrecordedUploads(ledger, storage, delay_s=check_delay_s(settings.redis_retry_s))
    servicer = RenderServicer(
        ledger,
        storage,
        settings.limits,
        hub,
        settings.prices,
        assets=assets,
        links=links,
        webhooks=settings.webhooks,
        dispatcher=dispatcher,
        unrecorded=unrecorded,
        still_valid=authenticator.still_valid,
    )
    admin = AdminServicer(api_keys, ledger)

    def register(server: grpc.aio.Server) -> None:
        pb_grpc.add_RenderServiceServicer_to_server(servicer, server)
        admin_grpc.add_AdminServiceServicer_to_server(admin, server)

    edge.add(register)
    http = (
        http_server(settings, http_socket, edge, register, storage, signer, authenticator, per_port)
        if http_socket
        else None
    )
    if http is not None:
        edge.on_start.append(http.start)
        edge.on_drain.append(lambda: http.stop(settings.grace_seconds))
    # Background work that needs Redis: the expired assets' sweep, the queue's sampler (its
    # snapshot feeds the queue gauges and /queue, which KEDA scales dispatchers on) and the uploads
    # of submits whose ledger write failed.
    sampler = QueueSampler(ledger)
    edge.metrics_documents["/queue"] = lambda: sampler.snapshot.document()
    background: list[asyncio.Task[None]] = []

    async def start_background() -> None:
        background.append(asyncio.create_task(assets.sweep_forever()))
        background.append(asyncio.create_task(sampler.run()))
        background.append(asyncio.create_task(unrecorded.run()))

    async def stop_background() -> None:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    edge.when_ready(start_background)
    edge.on_close.append(stop_background)
    # Uploads whose callers the drain cancelled finish writing and recording while Redis is open.
    edge.on_close.append(finish_storing)

    async def start_readers() -> None:
        subscriptions.start()
        hub.start()
        stages.start()  # follows the certificate files

    edge.on_start.append(start_readers)
    if dispatcher is not None:
        edge.when_ready(dispatcher.start)
        edge.on_drain.append(lambda: dispatcher.stop(settings.grace_seconds))
    # Webhook deliveries: a worker in every replica, from when Redis first answers until the drain.
    deliveries = DeliveryWorker(ledger, settings.webhooks, settings.fetch, links, subscriptions)
    edge.when_ready(deliveries.start)
    edge.on_drain.append(lambda: deliveries.stop(settings.grace_seconds))
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
        http=http,
    )


def link_signer(settings: HttpSettings, base_url: str) -> LinkSigner:
    """Signs links to the HTTP port with URL_SIGNING_KEYS; without them, with a key of this process
    (its links work only on this replica and until it restarts)."""
    keys: list[SigningKey] = list(settings.signing_keys)
    if not keys:
        if settings.listen:
            log.warning("URL_SIGNING_KEYS is not set: output links are signed by a key of this process only")
        keys = parse_signing_keys(new_signing_key("local"))
    return LinkSigner(keys, base_url, settings.link_ttl_s)


# What keeps a credential from being checked at all (Redis away, the identity provider's keys
# unreadable): the call is answered UNAVAILABLE.
UNREADABLE: tuple[type[Exception], ...] = (DependencyUnavailable, *RETRYABLE)


def http_server(
    settings: GatewaySettings,
    sock: socket.socket,
    edge: Edge,
    register: Callable[[grpc.aio.Server], None],
    storage: Storage,
    signer: LinkSigner,
    authenticator: Authenticator,
    max_connections: int,
) -> HttpServer:
    """The HTTP port: the same servicers through the same interceptors (Connect, gRPC-web, gRPC),
    a call's credential checked before its body is decoded, output links, the console."""
    bridge = ServicerBridge(edge.interceptors)
    bridge.add(
        register, pb.DESCRIPTOR.services_by_name["RenderService"], admin_pb.DESCRIPTOR.services_by_name["AdminService"]
    )
    console = Path(settings.http.console_dir)

    served = frozenset(bridge.endpoints())

    async def admit(scope: AsgiScope) -> Refusal | None:
        if scope["path"] not in served:
            return None  # not a method: Connect answers 404
        try:
            principal = await authenticator.authenticate([("authorization", header(scope, b"authorization"))])
        except AuthenticationError as exc:
            return Refusal(Code.UNAUTHENTICATED, str(exc))
        except UNREADABLE:  # the keys cannot be read: nothing is decoded meanwhile
            return Refusal(Code.UNAVAILABLE, "the credential cannot be checked now; retry")
        except Exception:  # a check that fails closed
            log.exception("a credential's check failed")
            return Refusal(Code.INTERNAL, "the credential could not be checked")
        # The scope too, as the gRPC port refuses it before reading the request: a credential
        # without the method's scope neither spends the event loop on decoding its body nor gets
        # another verdict (INVALID_ARGUMENT for a body that does not parse) than on that port.
        lacking = missing_scope(principal, METHOD_SCOPES.get(scope["path"]))
        return Refusal(Code.PERMISSION_DENIED, lacking) if lacking is not None else None

    app = HttpApp(
        rpc=bridge.application(settings.max_request_bytes),
        rpc_prefixes=[f"/{SERVICE_NAME}/", f"/{ADMIN_SERVICE}/"],
        files=FileRoute(storage, signer),
        console=ConsoleFiles(console, _link_origins(signer, storage)) if console.is_dir() else None,
        cors=Cors.parse(settings.http.cors_origins),
        max_request_bytes=settings.max_request_bytes,
        serving=lambda: edge.readiness.serving,
        admit=admit,
    )
    return HttpServer(
        app, sock, settings.tls_cert, settings.tls_key, max_connections, settings.max_streams_per_connection
    )


def _link_origins(signer: LinkSigner, storage: Storage) -> list[str]:
    """Where output links point: the gateway's own links (its public URL may be another origin
    than the one the console is opened at) and the storage's signed URLs."""
    own = origin_of(signer.base_url) if signer.base_url else ""
    return [origin for origin in (own, storage.link_origin()) if origin]


async def _answers(client: aioredis.Redis) -> bool:
    return bool(await client.ping())


@refuse_bad_settings("gateway")
def main() -> None:
    settings = GatewaySettings.from_env()
    single_threaded_blas()
    serve("gateway", lambda: create_server(settings).edge, settings.grace_seconds)
