"""The gateway's configuration, parsed once from the environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gateway.auth.jwt_tokens import JwtSettings
from gateway.ledger.tenants import TenantLimits
from gateway.links import SigningKey, parse_signing_keys
from gateway.pricing import PriceTable
from gateway.validation import Limits
from renderkit.edge.server import PUBLIC_MAX_STREAMS
from renderkit.fetch import FetchPolicy
from renderkit.settings import MAX_DURATION_S, SettingsError, env_bool, env_float, env_int, env_listen, env_str

# The web console's build, beside the packages in a checkout or an image.
DEFAULT_CONSOLE_DIR = str(Path(__file__).resolve().parent.parent / "console" / "dist")


@dataclass(frozen=True)
class HttpSettings:
    """The HTTP port: browsers (Connect, gRPC-web), output links, uploads' retention, the console."""

    listen: str = ""  # host:port; empty: no HTTP port
    public_url: str = ""  # how other hosts reach it (links are made with it); empty: from listen
    signing_keys: tuple[SigningKey, ...] = ()  # empty: a key of this process only
    link_ttl_s: float = 3600.0
    cors_origins: str = ""
    console_dir: str = DEFAULT_CONSOLE_DIR
    asset_retention_s: float = 7 * 24 * 3600.0
    asset_quota: int = 1000

    def base_url(self, port: int) -> str:
        """The URL links start with: GATEWAY_PUBLIC_URL, else the bound port on the listen host
        when it names one others can dial (not 0.0.0.0 or ::), else "" (no links)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.listen.rpartition(":")[0].strip("[]")
        if not self.listen or host in ("", "0.0.0.0", "::"):
            return ""
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}"

    @classmethod
    def from_env(cls) -> HttpSettings:
        public_url = env_str("GATEWAY_PUBLIC_URL", "")
        if public_url and not public_url.startswith(("http://", "https://")):
            raise SettingsError(f"GATEWAY_PUBLIC_URL must be an http(s) URL, got {public_url!r}")
        listen = env_str("GATEWAY_HTTP_LISTEN", "127.0.0.1:8080").strip()
        return cls(
            listen="" if listen.lower() == "off" else listen,
            public_url=public_url,
            signing_keys=tuple(parse_signing_keys(env_str("URL_SIGNING_KEYS", ""))),
            link_ttl_s=env_float("OUTPUT_URL_TTL_SECONDS", 3600.0, minimum=1.0, maximum=MAX_DURATION_S),
            cors_origins=env_str("HTTP_CORS_ORIGINS", ""),
            console_dir=env_str("CONSOLE_DIR", DEFAULT_CONSOLE_DIR),
            asset_retention_s=env_float(
                "ASSET_RETENTION_SECONDS", 7 * 24 * 3600.0, minimum=60.0, maximum=MAX_DURATION_S
            ),
            asset_quota=env_int("TENANT_ASSET_QUOTA", 1000, minimum=0),
        )


# Waits before each retry of a webhook delivery (s): about a day in all, then it has failed.
DEFAULT_WEBHOOK_RETRY_SCHEDULE = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 28800.0)


@dataclass(frozen=True)
class WebhookSettings:
    """Webhook deliveries: per-attempt timeout, retries, secrets' overlap, concurrency, limits."""

    timeout_s: float = 15.0
    retry_schedule_s: tuple[float, ...] = DEFAULT_WEBHOOK_RETRY_SCHEDULE
    jitter: float = 1.0  # each wait is uniform in [(1 - jitter) x step, step]: 1 is full jitter
    secret_overlap_s: float = 24 * 3600.0
    concurrency: int = 8  # attempts in flight per gateway (0: this gateway delivers none)
    endpoints_per_tenant: int = 10
    # Attempts in flight per tenant across every gateway: a tenant whose receiver hangs holds this
    # many slots, not every gateway's.
    tenant_concurrency: int = 4

    @property
    def lease_s(self) -> float:
        """How long a claimed delivery is this worker's: past it (the worker died mid-attempt),
        another claims it."""
        return 2 * self.timeout_s + 1.0

    @classmethod
    def from_env(cls) -> WebhookSettings:
        raw = env_str("WEBHOOK_RETRY_SCHEDULE", "")
        try:
            schedule = tuple(float(step) for step in raw.split(",")) if raw else DEFAULT_WEBHOOK_RETRY_SCHEDULE
        except ValueError:
            raise SettingsError(f"WEBHOOK_RETRY_SCHEDULE must be seconds separated by commas, got {raw!r}") from None
        if any(step < 0 for step in schedule):
            raise SettingsError(f"WEBHOOK_RETRY_SCHEDULE must not hold negative waits, got {raw!r}")
        jitter = env_float("WEBHOOK_RETRY_JITTER", 1.0, minimum=0.0)
        if jitter > 1:
            raise SettingsError(f"WEBHOOK_RETRY_JITTER must be between 0 and 1, got {jitter}")
        return cls(
            timeout_s=env_float("WEBHOOK_TIMEOUT_SECONDS", 15.0, minimum=0.1),
            retry_schedule_s=schedule,
            jitter=jitter,
            secret_overlap_s=env_float("WEBHOOK_SECRET_OVERLAP_SECONDS", 24 * 3600.0, minimum=0.0),
            concurrency=env_int("WEBHOOK_CONCURRENCY", 8, minimum=0),
            endpoints_per_tenant=env_int("WEBHOOK_ENDPOINTS_PER_TENANT", 10, minimum=0),
            tenant_concurrency=env_int("WEBHOOK_TENANT_CONCURRENCY", 4, minimum=1),
        )


@dataclass(frozen=True)
class GatewaySettings:
    """Everything the gateway process reads from the environment."""

    listen: str
    redis_url: str
    storage_url: str
    segmentation_addr: str
    depth_addr: str
    projection_addr: str
    generation_addr: str
    retention_s: float
    queue_limit: int
    dispatcher_concurrency: int
    lease_s: float
    stage_timeout_s: float
    job_timeout_s: float
    limits: Limits
    fetch: FetchPolicy
    grace_seconds: float
    dispatch: bool
    geometry_cache_s: float
    geometry_cache_version: str
    generation_timeout_s: float = 180.0
    max_request_bytes: int = 48 * 1024 * 1024
    max_connections: int = 10_000
    max_streams_per_connection: int = PUBLIC_MAX_STREAMS
    redis_retry_s: float = 2.0
    redis_max_connections: int = 16
    watch_keepalive_s: float = 15.0
    probe_interval_s: float = 1.0
    jwt: JwtSettings = field(default_factory=JwtSettings)
    api_key_cache_s: float = 2.0
    tenant_defaults: TenantLimits = field(default_factory=TenantLimits)
    prices: PriceTable | None = field(default_factory=PriceTable)  # None: credits off
    internal_tls_dir: str = ""  # ca.crt, tls.crt, tls.key: mutual TLS to the stages; empty: plaintext
    tls_cert: str = ""  # the public port's certificate chain and key (PEM files); empty: plaintext
    tls_key: str = ""
    http: HttpSettings = field(default_factory=HttpSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)

    def __post_init__(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SettingsError("GATEWAY_TLS_CERT and GATEWAY_TLS_KEY go together: set both or neither")
        if self.internal_tls_dir:
            for name, address in self.stage_addresses().items():
                if _address_list(address):
                    # gRPC checks every replica's certificate against the target's one name, which
                    # a list has not: no call would ever reach a stage.
                    raise SettingsError(
                        f"{name} lists several addresses, which INTERNAL_TLS_DIR's certificates cannot"
                        " be checked against: give one DNS name that resolves to every replica"
                        " (dns:///projection:50063, a headless Service)"
                    )

    def stage_addresses(self) -> dict[str, str]:
        """The stages' addresses by the setting that names them."""
        return {
            "SEGMENTATION_ADDR": self.segmentation_addr,
            "DEPTH_ADDR": self.depth_addr,
            "PROJECTION_ADDR": self.projection_addr,
            "GENERATION_ADDR": self.generation_addr,
        }

    @classmethod
    def from_env(cls) -> GatewaySettings:
        allow_private = env_bool("ALLOW_PRIVATE_URLS", False)
        return cls(
            listen=env_listen("GATEWAY_LISTEN", "127.0.0.1:50051"),
            redis_url=_redis_url(),
            storage_url=env_str("STORAGE_URL", "var/storage"),
            segmentation_addr=env_str("SEGMENTATION_ADDR", "127.0.0.1:50061"),
            depth_addr=env_str("DEPTH_ADDR", "127.0.0.1:50062"),
            projection_addr=env_str("PROJECTION_ADDR", "127.0.0.1:50063"),
            generation_addr=env_str("GENERATION_ADDR", "127.0.0.1:50064"),
            retention_s=env_float("JOB_RETENTION_SECONDS", 48 * 3600.0, minimum=1.0, maximum=MAX_DURATION_S),
            queue_limit=env_int("QUEUE_LIMIT", 1000, minimum=0),
            # Above a tenant's default concurrency (2): a job holds its slot while it downloads its
            # URL inputs, so one tenant's downloads trickling to their timeout held every slot.
            dispatcher_concurrency=env_int("DISPATCHER_CONCURRENCY", 4, minimum=0),
            lease_s=env_float("JOB_LEASE_SECONDS", 30.0, minimum=1.0, maximum=MAX_DURATION_S),
            stage_timeout_s=env_float("STAGE_TIMEOUT_SECONDS", 60.0, minimum=0.1),
            job_timeout_s=env_float("JOB_TIMEOUT_SECONDS", 600.0, minimum=1.0, maximum=MAX_DURATION_S),
            limits=Limits(
                max_image_bytes=env_int("MAX_IMAGE_BYTES", 40 * 1024 * 1024, minimum=1),
                max_pixels=env_int("MAX_IMAGE_PIXELS", 40_000_000, minimum=1),
                allow_private_urls=allow_private,
                max_tokens_per_job=env_int("MAX_TOKENS_PER_JOB", 10000, minimum=0),
                max_cents_per_job=env_float("MAX_COST_CENTS_PER_JOB", 100.0, minimum=0.0),
                request_memory_bytes=env_int("REQUEST_MEMORY_MB", 2048, minimum=64) * 1024 * 1024,
                max_watches_per_tenant=env_int("TENANT_WATCHES", 1000, minimum=1),
            ),
            fetch=FetchPolicy(
                allow_private=allow_private,
                max_bytes=env_int("MAX_IMAGE_BYTES", 40 * 1024 * 1024, minimum=1),
                timeout_s=env_float("DOWNLOAD_TIMEOUT_SECONDS", 20.0, minimum=0.1),
                min_bytes_per_s=env_float("DOWNLOAD_MIN_KIB_PER_SECOND", 16.0, minimum=0.0) * 1024,
            ),
            grace_seconds=env_float("SHUTDOWN_GRACE_SECONDS", 10.0, minimum=0.0),
            dispatch=env_bool("GATEWAY_DISPATCH", True),
            geometry_cache_s=env_float("GEOMETRY_CACHE_SECONDS", 24 * 3600.0, minimum=0.0, maximum=MAX_DURATION_S),
            geometry_cache_version=env_str("GEOMETRY_CACHE_VERSION", "1"),
            generation_timeout_s=env_float("GENERATION_TIMEOUT_SECONDS", 180.0, minimum=0.1),
            max_request_bytes=env_int("MAX_REQUEST_BYTES", 48 * 1024 * 1024, minimum=1024),
            max_connections=env_int("MAX_CONNECTIONS", 10_000, minimum=1),
            max_streams_per_connection=env_int("MAX_STREAMS_PER_CONNECTION", PUBLIC_MAX_STREAMS, minimum=1),
            redis_retry_s=env_float("REDIS_RETRY_SECONDS", 2.0, minimum=0.0),
            redis_max_connections=env_int("REDIS_MAX_CONNECTIONS", 16, minimum=4),
            watch_keepalive_s=env_float("WATCH_KEEPALIVE_SECONDS", 15.0, minimum=0.1),
            probe_interval_s=env_float("HEALTH_PROBE_SECONDS", 1.0, minimum=0.05),
            jwt=JwtSettings(
                issuer=env_str("JWT_ISSUER", ""),
                audience=env_str("JWT_AUDIENCE", ""),
                jwks=env_str("JWT_JWKS", ""),
                tenant_claim=env_str("JWT_TENANT_CLAIM", "tenant"),
                subject_claim=env_str("JWT_SUBJECT_CLAIM", "sub"),
                scopes_claim=env_str("JWT_SCOPES_CLAIM", "scope"),
                # A signing key dropped from the JWKS is still honoured for a token verified with it
                # just before, this long: at most a minute.
                cache_s=env_float("JWT_CACHE_SECONDS", 2.0, minimum=0.0, maximum=60.0),
                allow_admin=env_bool("JWT_ALLOW_ADMIN", False),
            ).checked(),
            api_key_cache_s=env_float("API_KEY_CACHE_SECONDS", 2.0, minimum=0.0, maximum=60.0),
            internal_tls_dir=env_str("INTERNAL_TLS_DIR", ""),
            tls_cert=env_str("GATEWAY_TLS_CERT", ""),
            tls_key=env_str("GATEWAY_TLS_KEY", ""),
            tenant_defaults=TenantLimits(
                rate_per_s=_default_rate(),
                burst=env_int("TENANT_BURST", 20, minimum=1),
                concurrency=env_int("TENANT_CONCURRENCY", 2, minimum=1),
                queue_quota=env_int("TENANT_QUEUE_QUOTA", 200, minimum=0),
                weight=env_float("TENANT_WEIGHT", 1.0, minimum=0.01),
            ),
            prices=_prices(),
            http=HttpSettings.from_env(),
            webhooks=WebhookSettings.from_env(),
        )


def _address_list(target: str) -> bool:
    """Whether a gRPC target names several addresses (`ipv4:a:1,b:2`, `ipv6:[::1]:1,[::2]:2`)."""
    return target.startswith(("ipv4:", "ipv6:")) and "," in target


def _default_rate() -> float:
    """TENANT_RATE_PER_SECOND, held to what the admin API accepts for a tenant (a tiny rate would
    overflow the submit script's arithmetic)."""
    rate = env_float("TENANT_RATE_PER_SECOND", 10.0)
    problem = dict(TenantLimits(rate_per_s=rate).problems()).get("rate_per_s")
    if problem:
        raise SettingsError(f"TENANT_RATE_PER_SECOND {problem}, got {rate}")
    return rate


def _prices() -> PriceTable | None:
    """The credit price table (CREDIT_PRICES: a JSON file or object over the defaults), or None
    when CREDITS_ENABLED is false (every job free)."""
    if not env_bool("CREDITS_ENABLED", True):
        return None
    try:
        return PriceTable.load(env_str("CREDIT_PRICES", ""))
    except (OSError, ValueError, TypeError) as exc:
        raise SettingsError(f"CREDIT_PRICES is not a price table: {exc}") from None


def _redis_url() -> str:
    """REDIS_URL, refused at start when redis-py cannot parse it (the URL is not echoed: it holds
    the password)."""
    from redis.asyncio.connection import parse_url

    url = env_str("REDIS_URL", "redis://127.0.0.1:6390/0")
    try:
        parse_url(url)
    except ValueError as exc:
        raise SettingsError(f"REDIS_URL: {exc}") from None
    return url
