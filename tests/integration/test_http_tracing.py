"""The gateway's HTTP port with tracing on: a call over Connect runs through the OpenTelemetry
server interceptor (the gRPC port's chain) and joins the caller's trace, as a gRPC call does."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from google.protobuf import json_format
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from benchmarks.submit_load import dry_run_request
from gateway.ledger import keys
from gateway.server import Gateway
from gateway.settings import GatewaySettings
from renderkit import telemetry
from tests.conftest import gateway_settings
from tests.credentials import key_for

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def traced_call(
    db: str,
    start_gateway: Callable[[GatewaySettings], Gateway],
    settings: GatewaySettings,
    method: str,
    body: bytes,
) -> urllib.request.Request:
    """A Connect call of the RenderService's `method` (JSON `body`) carrying TRACE_ID, with a key of
    its own, to a gateway started on the emptied database `db` with its HTTP port open."""
    redis.Redis.from_url(db).flushdb()
    gateway = start_gateway(replace(settings, http=replace(settings.http, listen="127.0.0.1:0")))
    return urllib.request.Request(
        f"http://127.0.0.1:{gateway.http_port}/render.v1.RenderService/{method}",
        data=body,
        headers={
            "content-type": "application/json",
            "authorization": f"Bearer {key_for(db, 'http-tracing')}",
            "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01",
        },
    )


def test_a_connect_call_is_traced_and_answered(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "_tracer_provider", provider)  # the gateway built next traces
    db = redis_url + "/28"
    settings = gateway_settings(db, tmp_path / "storage", stages)
    request = traced_call(db, start_gateway, settings, "GetJob", json.dumps({"jobId": "0" * 32}).encode())
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=10)
    # The job does not exist: NOT_FOUND, as on the gRPC port (not INTERNAL from the tracing).
    assert json.loads(answer.value.read())["code"] == "not_found"
    spans = [s for s in exporter.get_finished_spans() if s.name == "/render.v1.RenderService/GetJob"]
    assert len(spans) == 1 and format(spans[0].context.trace_id, "032x") == TRACE_ID


@pytest.mark.parametrize("tracing", [True, False], ids=["tracing on", "tracing off"])
def test_a_submit_stores_its_trace_only_where_the_gateway_traces(
    tracing: bool,
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A job keeps its submit's trace context (work on any replica joins the caller's trace) when
    the gateway traces; a gateway that does not stores none, whatever the caller sent (the submit
    asks OpenTelemetry for the current span only when tracing is on)."""
    provider = TracerProvider() if tracing else None
    monkeypatch.setattr(telemetry, "_tracer_provider", provider)
    db = redis_url + "/28"
    settings = gateway_settings(db, tmp_path / "storage", stages, dispatch=False)
    body = json_format.MessageToJson(dry_run_request()).encode()
    request = traced_call(db, start_gateway, settings, "SubmitRender", body)
    with urllib.request.urlopen(request, timeout=10) as answer:
        job_id = json.loads(answer.read())["job"]["id"]
    stored = redis.Redis.from_url(db).hget(keys.job(job_id), "trace") or b""
    if tracing:
        assert TRACE_ID in json.loads(stored)["traceparent"]
    else:
        assert stored == b""
