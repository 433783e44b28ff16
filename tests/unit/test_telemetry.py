"""renderkit.telemetry with the SDK's in-memory exporter: the job's baggage on every span, a trace
context that survives being stored with a job, JSON log lines that lead to their trace."""

from __future__ import annotations

import datetime
import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from renderkit import telemetry


@pytest.fixture()
def exported(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on for this test only, into memory (the process's own provider is left alone)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(telemetry.BaggageAttributes())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "_tracer_provider", provider)
    yield exporter


def test_a_stored_trace_context_makes_later_work_join_the_trace(exported: InMemorySpanExporter) -> None:
    tracer = telemetry.tracer()
    with tracer.start_as_current_span("submit") as submit:
        stored = telemetry.current_traceparent()
    assert stored and telemetry.current_traceparent() == ""  # nothing recording outside a span
    with (
        telemetry.job_scope("job-1", "acme", telemetry.context_of(stored)),
        tracer.start_as_current_span("job"),
        tracer.start_as_current_span("stage depth"),
    ):
        headers = telemetry.trace_headers()
    spans = {s.name: s for s in exported.get_finished_spans()}
    job, stage = spans["job"], spans["stage depth"]
    assert job.context.trace_id == submit.get_span_context().trace_id
    assert job.parent is not None and job.parent.span_id == submit.get_span_context().span_id
    assert stage.parent is not None and stage.parent.span_id == job.context.span_id
    # The job's id and tenant ride along as baggage and land on every span started under them.
    for span in (job, stage):
        assert span.attributes is not None
        assert (span.attributes[telemetry.JOB_ID], span.attributes[telemetry.TENANT]) == ("job-1", "acme")
    assert headers["traceparent"].split("-")[1] == format(job.context.trace_id, "032x")
    assert telemetry.context_of("not json") is None and telemetry.context_of("") is None


def test_log_lines_are_json_with_the_job_and_its_trace(exported: InMemorySpanExporter) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(telemetry.JsonFormatter("gateway"))
    logger = logging.getLogger("test.telemetry")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.warning("outside any job")
        with telemetry.job_scope("job-7", "acme"), telemetry.tracer().start_as_current_span("job") as span:
            logger.info("step %d of %d", 2, 4)
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("it failed")
    finally:
        logger.removeHandler(handler)
    outside, inside, failed = (json.loads(line) for line in stream.getvalue().splitlines())
    assert outside["message"] == "outside any job" and "job_id" not in outside and "trace_id" not in outside
    assert (inside["job_id"], inside["tenant"], inside["message"], inside["service"]) == (
        "job-7",
        "acme",
        "step 2 of 4",
        "gateway",
    )
    assert inside["trace_id"] == format(span.get_span_context().trace_id, "032x")
    # UTC, as its "Z" says, to the millisecond.
    stamp = datetime.datetime.strptime(inside["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)
    assert abs((datetime.datetime.now(datetime.UTC) - stamp).total_seconds()) < 60
    assert "ValueError: boom" in failed["error"] and failed["level"] == "ERROR"


def test_tracing_is_on_only_with_an_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert telemetry._exporters("TRACES") == []
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    assert telemetry._exporters("TRACES") == ["otlp"]
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert telemetry._exporters("TRACES") == []
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console,otlp")
    assert telemetry._exporters("TRACES") == ["console", "otlp"]
    monkeypatch.setattr(telemetry, "_tracer_provider", None)
    assert telemetry.server_interceptors() == [] and telemetry.client_interceptors() == []
    assert telemetry.trace_headers() == {}


def test_a_tally_reports_its_sums_as_a_cumulative_counter() -> None:
    """What a Prometheus scrape or an OTLP export reads of a Tally: one monotonic, cumulative sum
    per set of attributes, whatever order the attributes were given in."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    tally = telemetry.Tally(provider.get_meter("test"), "render.test.moved", description="moved")
    tally.add(5, {"movement": "reserve", "tenant": "a"})
    tally.add(2, {"tenant": "a", "movement": "reserve"})
    tally.add(1, {"movement": "refund"})
    tally.add(0, {"movement": "refund"})

    def collected() -> dict[tuple[tuple[str, object], ...], float]:
        data = reader.get_metrics_data()
        assert data is not None
        found = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    assert metric.name == "render.test.moved"
                    assert metric.data.is_monotonic  # type: ignore[union-attr]
                    for point in metric.data.data_points:
                        found[tuple(sorted(point.attributes.items()))] = point.value  # type: ignore[union-attr]
        return found

    assert collected() == {(("movement", "reserve"), ("tenant", "a")): 7, (("movement", "refund"),): 1}
    tally.add(3, {"movement": "refund"})
    assert collected()[(("movement", "refund"),)] == 4  # cumulative across collections
    with pytest.raises(ValueError):
        tally.add(-1)
    provider.shutdown()


def test_a_callers_baggage_does_not_name_the_job_where_callers_are_not_trusted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tenant's call carrying `baggage: render.tenant=victim` put the victim's name on the
    gateway's log lines and spans (a review found it). Only job_scope names the job there; a stage,
    whose callers are the gateways, believes the baggage that comes with a call."""
    from opentelemetry import baggage, context

    from renderkit import telemetry

    forged = baggage.set_baggage("render.tenant", "victim", baggage.set_baggage("render.job_id", "theirs"))
    monkeypatch.setattr(telemetry, "_trust_incoming_baggage", False)
    assert telemetry.carried(forged) == {}
    token = context.attach(forged)
    try:
        with telemetry.job_scope("mine", "acme"):
            assert telemetry.carried() == {"render.job_id": "mine", "render.tenant": "acme"}
    finally:
        context.detach(token)
    monkeypatch.setattr(telemetry, "_trust_incoming_baggage", True)
    assert telemetry.carried(forged) == {"render.job_id": "theirs", "render.tenant": "victim"}


def test_a_collector_that_hangs_does_not_hold_the_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process stopping with its OTLP collector down or hung: the providers' shutdown waits out
    each exporter's timeout and retries (~30 s); Telemetry.shutdown gives it SHUTDOWN_TIMEOUT_S."""
    import threading
    import time

    released = threading.Event()

    class HungProvider:
        def shutdown(self) -> None:
            released.wait(30)

    done = telemetry.Telemetry("test", providers=[HungProvider()])
    started = time.monotonic()
    try:
        done.shutdown()
        assert time.monotonic() - started < telemetry.SHUTDOWN_TIMEOUT_S + 1.5
    finally:
        released.set()
