"""One material swap followed through the whole stack as processes: its trace across every hop
(gateway → segmentation, depth, projection → Triton) arriving at an OTLP receiver, the metrics on
each process's Prometheus endpoint, and JSON log lines carrying its job id and trace id."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.launcher import Ports, Stack
from render.v1 import render_service_pb2 as pb
from render_client.client import RenderClient, material_swap_request
from renderkit import imaging
from tests.integration.test_triton_models import floor_photo
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.outputs import register_storage


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def traced_stack(receiver: OtlpReceiver, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack with Triton serving the tiny models, every process exporting spans to the receiver."""
    data = tmp_path_factory.mktemp("traced-stack")
    with Stack(data_dir=data, ports=Ports.free(), models_dir=models_dir, env=receiver.env()) as running:
        register_storage(running.storage_dir)
        yield running


@pytest.fixture(scope="module")
def swap(traced_stack: Stack) -> pb.Job:
    """A swap that runs both models: the segmentation model finds the floor, the depth model its plane."""
    request = material_swap_request(imaging.encode(floor_photo())[0], imaging.encode(floor_photo(32, 32))[0])
    request.material_swap.surface = pb.SURFACE_FLOOR
    with RenderClient(traced_stack.gateway_address, api_key=traced_stack.api_key) as client:
        done = client.wait(client.submit(request).job.id, timeout=90)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    return done


def one(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    found = [s for s in spans if s.service == service and s.name == name]
    assert len(found) == 1, f"{service} {name}: {len(found)} spans"
    return found[0]


def test_the_trace_of_a_swap_spans_every_hop(swap: pb.Job, receiver: OtlpReceiver) -> None:
    def complete(spans: list[ReceivedSpan]) -> bool:
        mine = [s for s in spans if s.attributes.get("render.job_id") == swap.id]
        names = {(s.service, s.name) for s in mine}
        return {("render-segmentation", "triton segmentation"), ("render-depth", "triton depth")} <= names and any(
            s.name == "storage write" for s in mine
        )

    spans = receiver.wait_for(complete)
    submit = one(
        [s for s in spans if s.attributes.get("rpc.method") == "SubmitRender"],
        "render-gateway",
        "/render.v1.RenderService/SubmitRender",
    )
    trace = [s for s in spans if s.trace_id == submit.trace_id]
    by_id = {s.span_id: s for s in trace}

    def parent(span: ReceivedSpan) -> ReceivedSpan:
        assert span.parent_id in by_id, f"{span.service} {span.name} has no parent in the trace"
        return by_id[span.parent_id]

    # The dispatcher's work joins the submit's trace (it ran later, from the ledger's record).
    job = one(trace, "render-gateway", "job material_swap")
    assert parent(job) is submit and job.attributes["render.job_id"] == swap.id
    for stage, method in (
        ("segmentation", "/render.segmentation.v1.SegmentationService/Segment"),
        ("depth", "/render.depth.v1.DepthService/EstimatePlane"),
        ("projection", "/render.projection.v1.ProjectionService/Project"),
    ):
        step = one(trace, "render-gateway", f"stage {stage}")
        assert parent(step) is job and step.attributes["render.stage"] == stage
        client = one(trace, "render-gateway", method)
        server = one(trace, f"render-{stage}", method)
        assert parent(client) is step and parent(server) is client
        # The job's id and tenant reached the stage as baggage.
        assert server.attributes["render.job_id"] == swap.id and server.attributes["render.tenant"] == "dev"
    for model in ("segmentation", "depth"):
        inference = one(trace, f"render-{model}", f"triton {model}")
        assert parent(inference).service == f"render-{model}" and inference.attributes["render.model"] == model
    assert parent(one(trace, "render-gateway", "storage write")) is job
    assert not [s for s in trace if s.error]


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode()


def test_each_process_serves_metrics_and_the_gateway_its_queue(swap: pb.Job, traced_stack: Stack) -> None:
    ports = traced_stack.ports
    gateway = scrape(f"http://127.0.0.1:{ports.gateway_metrics}/metrics")
    assert sample(gateway, "render_jobs_ended_total", kind="material_swap", state="succeeded") >= 1
    assert sample(gateway, "render_job_duration_seconds_count", kind="material_swap", state="succeeded") >= 1
    assert sample(gateway, "render_stage_duration_seconds_count", stage="projection", outcome="ok") >= 1
    assert sample(gateway, "render_credits_moved_total", movement="charge") >= 10
    queue = json.loads(scrape(f"http://127.0.0.1:{ports.gateway_metrics}/queue"))
    assert {"queued", "running", "waiting_tenants"} <= set(queue) and queue["queued"] == 0
    generation = scrape(f"http://127.0.0.1:{ports.generation_metrics}/metrics")
    assert "render_generation_breaker_state" in generation  # a gauge per provider (none is configured here)
    for stage in ("segmentation", "depth", "projection"):
        scraped = scrape(f"http://127.0.0.1:{getattr(ports, stage + '_metrics')}/metrics")
        assert sample(scraped, "render_rpc_server_duration_seconds_count", outcome="ok") >= 1, stage
    for model in ("segmentation", "depth"):
        scraped = scrape(f"http://127.0.0.1:{getattr(ports, model + '_metrics')}/metrics")
        assert sample(scraped, "render_triton_inference_duration_seconds_count", model=model, outcome="ok") >= 1


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`, in the Prometheus text format."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_log_lines_of_the_job_carry_its_id_tenant_and_trace(
    swap: pb.Job, traced_stack: Stack, receiver: OtlpReceiver
) -> None:
    trace_ids = {s.trace_id for s in receiver.spans if s.attributes.get("render.job_id") == swap.id}
    lines = [
        json.loads(line)
        for line in (traced_stack.data_dir / "logs" / "gateway.log").read_text().splitlines()
        if line.startswith("{")
    ]
    mine = [line for line in lines if line.get("job_id") == swap.id]
    assert mine, "no log line of the job"
    assert all(line["tenant"] == "dev" and line["trace_id"] in trace_ids for line in mine)
    assert all({"time", "level", "service", "logger", "message"} <= set(line) for line in lines)
