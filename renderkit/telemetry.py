"""OpenTelemetry for every process of the stack: traces, metrics and structured logs.

- **Traces** are on when an exporter is configured the standard way (`OTEL_TRACES_EXPORTER`, or an
  `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, which means OTLP; the SDK
  reads the rest of `OTEL_*` itself). Then every server gets the OpenTelemetry gRPC server
  interceptor (the gateway's HTTP port too: it runs the same interceptors), every stage channel
  its client interceptors, and the pipeline adds spans of its own (jobs, stages, Triton
  inferences, provider calls, storage writes, webhook deliveries) with `render.*` attributes.
  `render.job_id` and `render.tenant` travel as W3C baggage, so a stage's spans and log lines carry
  them too. Without an exporter nothing is instrumented and nothing costs anything.
- **Metrics** go to a Prometheus scrape endpoint on `METRICS_LISTEN` (`/metrics`), and by OTLP
  when `OTEL_METRICS_EXPORTER` says `otlp`. A process may publish more JSON documents beside it
  (the gateway's `/queue`, for KEDA).
- **Logs** are JSON lines (`LOG_FORMAT=json`, the default; `text` for people) carrying the job id,
  tenant and trace id of the work they describe.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry import baggage, context, metrics, propagate, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from renderkit.interceptors import Behavior, UnaryInterceptor
from renderkit.settings import SettingsError, env_listen, env_str

log = logging.getLogger(__name__)

# Attributes the pipeline's spans, metrics and logs use, in the `render.` namespace.
JOB_ID = "render.job_id"
TENANT = "render.tenant"
STAGE = "render.stage"
KIND = "render.kind"
MODEL = "render.model"
PROVIDER = "render.provider"
# Baggage entries copied onto every span a process starts (and into its log lines).
CARRIED = (JOB_ID, TENANT)
# Services that would only add noise to traces (probes, tools).
UNTRACED_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection")

_state_lock = threading.Lock()
_tracer_provider: trace.TracerProvider | None = None


def tracing_enabled() -> bool:
    """Whether this process traces (an exporter was configured, or a test installed a provider)."""
    return _tracer_provider is not None


def tracer(name: str = "render") -> trace.Tracer:
    """The tracer the pipeline's own spans come from (a no-op one while tracing is off)."""
    provider = _tracer_provider
    return provider.get_tracer(name) if provider is not None else trace.NoOpTracer()


# The job a task works on, as job_scope set it in this process: what spans and log lines name.
_JOB_KEY = context.create_key("render-job")
# Whether the job named by baggage that arrived with a call is believed: by the stages, whose
# callers are the gateways (mutual TLS), not by the gateway, whose callers could send any baggage
# and so plant their lines and spans under another tenant's name (trust_incoming_baggage).
_trust_incoming_baggage = False


def trust_incoming_baggage() -> None:
    """This process's callers are the pipeline's own: the job their baggage names is the task's."""
    global _trust_incoming_baggage
    _trust_incoming_baggage = True


def carried(ctx: context.Context | None = None) -> dict[str, str]:
    """The job id and tenant the current work is for (render.job_id, render.tenant): job_scope's,
    or, where callers are trusted, the baggage that came with the call."""
    scoped = context.get_value(_JOB_KEY, ctx)
    if isinstance(scoped, dict):
        return scoped
    if not _trust_incoming_baggage:
        return {}
    found = baggage.get_all(ctx)
    return {name: str(found[name]) for name in CARRIED if found.get(name) is not None}


class BaggageAttributes(SpanProcessor):
    """Copies the job's id and tenant (carried) onto every span as it starts."""

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        for name, value in carried(parent_context).items():
            span.set_attribute(name, value)

    def on_end(self, span: ReadableSpan) -> None:
        """Nothing to do when a span ends."""

    def shutdown(self) -> None:
        """Holds nothing."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def install_tracer_provider(provider: TracerProvider) -> None:
    """Makes `provider` the process's (tests install one with an in-memory exporter); from then on
    new servers and channels are instrumented."""
    global _tracer_provider
    with _state_lock:
        provider.add_span_processor(BaggageAttributes())
        _tracer_provider = provider
        trace.set_tracer_provider(provider)


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """The OpenTelemetry gRPC server interceptor when tracing is on (none otherwise)."""
    if _tracer_provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    untraced = filters.any_of(*(filters.service_name(name) for name in UNTRACED_SERVICES))
    return [aio_server_interceptor(tracer_provider=_tracer_provider, filter_=filters.negate(untraced))]


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """The OpenTelemetry gRPC client interceptors when tracing is on (none otherwise)."""
    if _tracer_provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(tracer_provider=_tracer_provider))


@contextlib.contextmanager
def job_scope(job_id: str, tenant: str, parent: context.Context | None = None) -> Iterator[None]:
    """Makes the job's id and tenant this task's baggage (stages, spans and log lines inherit it),
    within `parent` (the submit's trace, see context_of) when given."""
    ctx = baggage.set_baggage(JOB_ID, job_id, parent if parent is not None else context.get_current())
    ctx = context.set_value(_JOB_KEY, {JOB_ID: job_id, TENANT: tenant}, baggage.set_baggage(TENANT, tenant, ctx))
    token = context.attach(ctx)
    try:
        yield
    finally:
        context.detach(token)


def current_traceparent() -> str:
    """The current span's context as W3C headers in one string (stored with a job, so work on any
    replica joins the trace of its submit); "" when no span is recording."""
    if not trace.get_current_span().get_span_context().is_valid:
        return ""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return json.dumps(carrier, separators=(",", ":"))


def context_of(traceparent: str) -> context.Context | None:
    """The trace context a stored `current_traceparent()` names (None for "")."""
    if not traceparent:
        return None
    try:
        carrier = json.loads(traceparent)
    except ValueError:
        return None
    return propagate.extract(carrier) if isinstance(carrier, dict) else None


def trace_headers() -> dict[str, str]:
    """The current trace context as headers for a call no interceptor sees (Triton's client)."""
    if _tracer_provider is None:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {k: v for k, v in carrier.items() if k in ("traceparent", "tracestate")}


class RpcDurations(UnaryInterceptor):
    """Records every unary call's duration (`render.rpc.server.duration`, by method and outcome):
    what a stage's scrape shows of its load and latency. Streams are not timed."""

    def __init__(self) -> None:
        self.histogram = metrics.get_meter("render.rpc").create_histogram(
            "render.rpc.server.duration", unit="s", description="Time to answer one call, by method and outcome."
        )

    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        name, histogram = method.rsplit("/", 1)[-1], self.histogram

        async def timed(request: Any, servicer_context: grpc.aio.ServicerContext) -> Any:  # type: ignore[type-arg]
            started = time.monotonic()
            outcome = "error"
            try:
                response = await behavior(request, servicer_context)
                outcome = "ok"
                return response
            finally:
                histogram.record(time.monotonic() - started, {"rpc.method": name, "outcome": outcome})

        return timed


class Tally:
    """A monotonic counter for hot paths: `add` sums into a dict (about a microsecond), and an
    ObservableCounter of the same name reports the sums at each collection, cumulative, as
    Prometheus and OTLP read counters. The SDK's synchronous `Counter.add` took ~20 µs of the
    gateway's event loop per call (attribute checks, the view's lookup and aggregation, its
    locks): ~5 % of a submit's CPU for the one credit counter it touches (docs/benchmarks.md)."""

    def __init__(self, meter: metrics.Meter, name: str, description: str = "", unit: str = "") -> None:
        self._sums: dict[tuple[tuple[str, str], ...], float] = {}
        self._lock = threading.Lock()
        meter.create_observable_counter(name, callbacks=[self._observe], unit=unit, description=description)

    def add(self, amount: float, attributes: Mapping[str, str] | None = None) -> None:
        """Counts amount (not negative) under the attributes."""
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = tuple(sorted(attributes.items())) if attributes else ()
        with self._lock:
            self._sums[key] = self._sums.get(key, 0) + amount

    def _observe(self, _options: metrics.CallbackOptions) -> Iterator[metrics.Observation]:
        with self._lock:
            sums = list(self._sums.items())
        for key, total in sums:
            yield metrics.Observation(total, dict(key))


# -- logs ---------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, service, logger, message, and the job id, tenant
    and trace id of the work in progress (from the current span and `carried`), the error when any."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        # The time's whole-second part, made once a second (a handler formats under its lock).
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        entry: dict[str, Any] = {
            "time": f"{self._stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        for name, value in carried().items():
            entry[name.removeprefix("render.")] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(service: str, log_format: str = "") -> None:
    """One log format for every process: JSON lines (LOG_FORMAT=json, the default) or text. Neither
    shows the caller's file and line, thread or process, so records do not collect them (the
    logging HOWTO's optimisations: a third of each record's cost on a job's path)."""
    chosen = (log_format or env_str("LOG_FORMAT", "json")).lower()
    if chosen not in ("json", "text"):
        raise SettingsError(f"LOG_FORMAT must be json or text, got {chosen!r}")
    level = env_str("LOG_LEVEL", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"):
        raise SettingsError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    if chosen == "text":
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(JsonFormatter(service))
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


# -- the metrics endpoint -----------------------------------------------------------------------


# How long the metrics endpoint waits for a request on a connection (a scrape sends it at once).
IDLE_TIMEOUT_S = 10.0


@dataclass
class MetricsEndpoint:
    """`/metrics` in the Prometheus text format on a port of its own, and JSON documents beside it
    (`documents`: path → a function returning what to send)."""

    listen: str
    documents: dict[str, Callable[[], Mapping[str, Any]]] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server is not None else 0

    def start(self) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

        documents = self.documents

        class Handler(BaseHTTPRequestHandler):
            # A connection that sends nothing is closed after this long: each connection holds a
            # thread of the process, and without a timeout one idle connection held one for good.
            timeout = IDLE_TIMEOUT_S

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, content_type, status = generate_latest(REGISTRY), CONTENT_TYPE_LATEST, 200
                elif path in documents:
                    body, content_type, status = json.dumps(documents[path]()).encode(), "application/json", 200
                else:
                    body, content_type, status = b"not found\n", "text/plain", 404
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Scrapes are not worth a log line each."""

        host, _, port = self.listen.rpartition(":")
        self._server = ThreadingHTTPServer((host.strip("[]") or "0.0.0.0", int(port)), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# -- configuration ------------------------------------------------------------------------------


# For traces and for metrics: the variable naming the exporters, and the OTLP endpoint of its own.
_EXPORTER_SETTINGS = {
    "TRACES": ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
    "METRICS": ("OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
}


def _exporters(kind: str) -> list[str]:
    """The exporters OTEL_<KIND>_EXPORTER names; OTLP when only an endpoint is given."""
    variable, own_endpoint = _EXPORTER_SETTINGS[kind]
    named = env_str(variable, "")
    if named:
        return [n.strip().lower() for n in named.split(",") if n.strip() and n.strip().lower() != "none"]
    endpoint = env_str("OTEL_EXPORTER_OTLP_ENDPOINT", "") or env_str(own_endpoint, "")
    return ["otlp"] if endpoint else []


def _span_exporter(name: str) -> SpanExporter:
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (otlp, console or none)")


# How long a stopping process waits for its spans and metrics to be exported.
SHUTDOWN_TIMEOUT_S = 3.0


@dataclass
class Telemetry:
    """What configure() set up for a process; shutdown() flushes spans and stops the endpoint."""

    service: str
    metrics: MetricsEndpoint | None = None
    providers: list[Any] = field(default_factory=list)

    def shutdown(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
        """Stops the endpoint and flushes what the providers hold, for at most `timeout_s`: an OTLP
        collector that is down or hangs holds each exporter's last export for its own timeout and
        retries (about 10 s each, ~30 s for a gateway with spans pending), which a stopping process
        must not wait out past its drain (the pod's grace period ends in SIGKILL). Whatever has not
        been flushed by then is dropped (the process exits with os._exit, its threads with it)."""
        if self.metrics is not None:
            self.metrics.stop()

        def flush() -> None:
            for provider in self.providers:
                with contextlib.suppress(Exception):
                    provider.shutdown()

        flushing = threading.Thread(target=flush, name="telemetry-shutdown", daemon=True)
        flushing.start()
        flushing.join(timeout_s)
        if flushing.is_alive():
            log.warning(
                "telemetry not flushed within %g s (is the OTLP collector down?); the rest is dropped", timeout_s
            )


def configure(service: str, documents: Mapping[str, Callable[[], Mapping[str, Any]]] | None = None) -> Telemetry:
    """Sets up logs, traces and metrics for one process of the stack from the environment
    (OTEL_SERVICE_NAME overrides the service name, `render-<service>` by default)."""
    configure_logging(service)
    if env_str("OTEL_SDK_DISABLED", "false").lower() == "true":
        return Telemetry(service)
    name = env_str("OTEL_SERVICE_NAME", f"render-{service}")
    resource = Resource.create({"service.name": name, "service.namespace": "render-pipeline"})
    done = Telemetry(service)
    exporters = _exporters("TRACES")
    if exporters:
        provider = TracerProvider(resource=resource)
        for exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(_span_exporter(exporter)))
        install_tracer_provider(provider)
        done.providers.append(provider)
    readers: list[MetricReader] = []
    listen = env_str("METRICS_LISTEN", "")
    if listen and listen.lower() != "off":
        listen = env_listen("METRICS_LISTEN", "")
    if listen and listen.lower() != "off":
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        readers.append(PrometheusMetricReader())
        done.metrics = MetricsEndpoint(listen, dict(documents or {}))
    if "otlp" in _exporters("METRICS"):
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    if readers:
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        metrics.set_meter_provider(meter_provider)
        done.providers.append(meter_provider)
    if done.metrics is not None:
        done.metrics.start()
        log.info("metrics on port %d", done.metrics.port)
    return done


def attributes(**values: str | int | float | bool | None) -> dict[str, str | int | float | bool]:
    """Span or metric attributes without the empty ones."""
    return {k: v for k, v in values.items() if v is not None and v != ""}
