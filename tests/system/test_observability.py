"""One material swap followed through the whole stack as processes: its trace across every hop
(gateway → segmentation, depth, projection → Triton, and its webhook) arriving at an OTLP receiver,
the metrics on each process's Prometheus endpoint, the signed webhook its end sends (verified with
the `standardwebhooks` library) and JSON log lines carrying its job id and trace id."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.launcher import Ports, Stack
from render.v1 import render_service_pb2 as pb
from render_client.client import RenderClient, material_swap_request
from renderkit import imaging
from tests.integration.test_triton_models import floor_photo
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.outputs import register_storage
from tests.webhook_receiver import Hook, Receiver, webhook_receiver


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def hooks() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def traced_stack(receiver: OtlpReceiver, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack with Triton serving the tiny models, every process exporting spans to the receiver,
    the gateway allowed to post webhooks to loopback."""
    data = tmp_path_factory.mktemp("traced-stack")
    env = {**receiver.env(), "ALLOW_PRIVATE_URLS": "1"}
    with Stack(data_dir=data, ports=Ports.free(), models_dir=models_dir, env=env) as running:
        register_storage(running.storage_dir)
        yield running


@dataclass(frozen=True)
class Swap:
    job: pb.Job
    hook: Hook
    secret: str  # the tenant's webhook secret


@pytest.fixture(scope="module")
def swap(traced_stack: Stack, hooks: Receiver) -> Swap:
    """A swap that runs both models (the segmentation model finds the floor, the depth model its
    plane) with a webhook for its end."""
    request = material_swap_request(imaging.encode(floor_photo())[0], imaging.encode(floor_photo(32, 32))[0])
    request.material_swap.surface = pb.SURFACE_FLOOR
    hook = hooks.hook("swap")
    request.webhook.url = hook.url
    with RenderClient(traced_stack.gateway_address, api_key=traced_stack.api_key) as client:
        secret = client.stub.RotateWebhookSecret(pb.RotateWebhookSecretRequest(), metadata=client.metadata).secret
        done = client.wait(client.submit(request).job.id, timeout=90)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    return Swap(done, hook, secret)


def one(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    found = [s for s in spans if s.service == service and s.name == name]
    assert len(found) == 1, f"{service} {name}: {len(found)} spans"
    return found[0]


def test_the_trace_of_a_swap_spans_every_hop(swap: Swap, receiver: OtlpReceiver) -> None:
    def complete(spans: list[ReceivedSpan]) -> bool:
        mine = [s for s in spans if s.attributes.get("render.job_id") == swap.job.id]
        names = {(s.service, s.name) for s in mine}
        return {
            ("render-segmentation", "triton segmentation"),
            ("render-depth", "triton depth"),
            ("render-projection", "triton intrinsic"),
            ("render-gateway", "storage write"),
            ("render-gateway", "webhook job.completed"),
            # Each process exports its spans in its own batches: the projection's server span
            # could still be on its way when the gateway's later ones had arrived.
            ("render-segmentation", "/render.segmentation.v1.SegmentationService/Segment"),
            ("render-depth", "/render.depth.v1.DepthService/EstimatePlane"),
            ("render-projection", "/render.projection.v1.ProjectionService/Project"),
        } <= names

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
    assert parent(job) is submit and job.attributes["render.job_id"] == swap.job.id
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
        assert server.attributes["render.job_id"] == swap.job.id and server.attributes["render.tenant"] == "dev"
    for stage, model in (("segmentation", "segmentation"), ("depth", "depth"), ("projection", "intrinsic")):
        inference = one(trace, f"render-{stage}", f"triton {model}")
        assert parent(inference).service == f"render-{stage}" and inference.attributes["render.model"] == model
    assert parent(one(trace, "render-gateway", "storage write")) is job
    # The webhook's delivery joins the trace too (from the ledger's record, after the job's end), and
    # its request carried the trace's context to the receiver.
    hook = one(trace, "render-gateway", "webhook job.completed")
    assert parent(hook) is submit and hook.attributes["render.job_id"] == swap.job.id
    assert hook.attributes["render.webhook.result"] == "success" and hook.attributes["http.response.status_code"] == 200
    (arrived,) = swap.hook.delivered()
    assert arrived.headers["traceparent"].split("-")[1:3] == [hook.trace_id, hook.span_id]
    assert not [s for s in trace if s.error]


def test_the_end_of_the_swap_arrives_as_a_signed_webhook(swap: Swap) -> None:
    (arrived,) = swap.hook.wait_for(lambda got: len(got) >= 1)
    body = arrived.verify(swap.secret)  # by the standardwebhooks library: the tenant's secret signed it
    assert body["type"] == "job.completed" and arrived.answer == "ok"
    assert body["data"]["job_id"] == swap.job.id and body["data"]["state"] == "succeeded"
    assert body["data"]["kind"] == "material_swap"


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode()


def test_each_process_serves_metrics_and_the_gateway_its_queue(swap: Swap, traced_stack: Stack) -> None:
    ports = traced_stack.ports
    gateway = scrape(f"http://127.0.0.1:{ports.gateway_metrics}/metrics")
    assert sample(gateway, "render_jobs_ended_total", kind="material_swap", state="succeeded") >= 1
    assert sample(gateway, "render_job_duration_seconds_count", kind="material_swap", state="succeeded") >= 1
    assert sample(gateway, "render_stage_duration_seconds_count", stage="projection", outcome="ok") >= 1
    assert sample(gateway, "render_credits_moved_total", movement="charge") >= 10
    # The webhook's attempt is counted once its answer is in (a moment after the receiver has it).
    deadline = time.monotonic() + 10
    while not sample(gateway, "render_webhook_attempts_total", event="job.completed", result="success"):
        assert time.monotonic() < deadline, "the webhook's attempt was not counted"
        time.sleep(0.2)
        gateway = scrape(f"http://127.0.0.1:{ports.gateway_metrics}/metrics")
    assert sample(gateway, "render_webhook_attempts_total", event="job.completed", result="success") == 1
    assert sample(gateway, "render_webhook_attempt_duration_seconds_count", result="success") == 1
    queue = json.loads(scrape(f"http://127.0.0.1:{ports.gateway_metrics}/queue"))
    assert {"queued", "running", "waiting_tenants"} <= set(queue) and queue["queued"] == 0
    generation = scrape(f"http://127.0.0.1:{ports.generation_metrics}/metrics")
    assert "render_generation_breaker_state" in generation  # a gauge per provider (none is configured here)
    for stage in ("segmentation", "depth", "projection"):
        scraped = scrape(f"http://127.0.0.1:{getattr(ports, stage + '_metrics')}/metrics")
        assert sample(scraped, "render_rpc_server_duration_seconds_count", outcome="ok") >= 1, stage
        if stage != "depth":  # the stages that admit requests by memory report what waits
            assert "render_stage_memory_waiting" in scraped and "render_stage_memory_admitted" in scraped, stage
    for stage, model in (("segmentation", "segmentation"), ("depth", "depth"), ("projection", "intrinsic")):
        scraped = scrape(f"http://127.0.0.1:{getattr(ports, stage + '_metrics')}/metrics")
        assert sample(scraped, "render_triton_inference_duration_seconds_count", model=model, outcome="ok") >= 1


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`, in the Prometheus text format."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_log_lines_of_the_job_carry_its_id_tenant_and_trace(
    swap: Swap, traced_stack: Stack, receiver: OtlpReceiver
) -> None:
    trace_ids = {s.trace_id for s in receiver.spans if s.attributes.get("render.job_id") == swap.job.id}
    lines = [
        json.loads(line)
        for line in (traced_stack.data_dir / "logs" / "gateway.log").read_text().splitlines()
        if line.startswith("{")
    ]
    mine = [line for line in lines if line.get("job_id") == swap.job.id]
    assert mine, "no log line of the job"
    assert all(line["tenant"] == "dev" and line["trace_id"] in trace_ids for line in mine)
    assert all({"time", "level", "service", "logger", "message"} <= set(line) for line in lines)
