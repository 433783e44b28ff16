"""A batch cancelled as its rooms end: charged for the rooms that rendered, listing every room, and
submitting no more rooms once the cancel is under way."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
import pytest
import redis

from gateway.ledger import StoredJob
from gateway.metrics import JOBS_ENDED
from gateway.server import Gateway
from gateway.settings import GatewaySettings
from render.v1 import render_service_pb2 as pb
from render_client.client import room_batch_request, room_render
from renderkit.edge import Edge
from services.generation.server import create_server as create_generation
from tests.conftest import gateway_settings, generation_settings
from tests.credentials import client_for
from tests.openai_fake import FakeOpenAI, Reply


@pytest.fixture
def generating(
    redis_url: str,
    stages: dict[str, str],
    generation_openai: FakeOpenAI,
    start_stage: Callable[[Callable[[], Edge]], Edge],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path: Path,
) -> Callable[[str, float | None], tuple[Gateway, str]]:
    """A gateway on a database of its own (the session's gateways live on) and its Redis URL; its
    generation stage answers each call after 8 s, the first after `first_s` when given."""

    def make(db: str, first_s: float | None = None) -> tuple[Gateway, str]:
        fake = generation_openai
        fake.reset()
        fake.default = Reply("slow", delay_s=8.0)
        if first_s is not None:
            fake.push(Reply("slow", delay_s=first_s))
        generation = start_stage(lambda: create_generation(generation_settings(fake)))
        url = redis_url + db
        redis.Redis.from_url(url).flushdb()
        stage_addresses = {**stages, "generation": f"127.0.0.1:{generation.port}"}
        return start_gateway(gateway_settings(url, tmp_path / "storage", stage_addresses)), url

    return make


@pytest.mark.parametrize("cancel_when", ["Room 0: rendering, Room 1: rendering", "Room 0: done"])
def test_a_room_that_renders_while_its_batch_is_cancelled_is_charged(
    cancel_when: str, generating: Callable[[str, float | None], tuple[Gateway, str]]
) -> None:
    """CancelJob read the rooms for the batch's charge, then ended the batch, then cancelled its
    rooms: a room that rendered in between kept its outputs and was charged nothing (found by a
    review; the window is widened here by a slow end of the batch)."""
    # The first room asked renders 1.5 s after its call; a database per case.
    gateway, url = generating({"Room 0: done": "/32"}.get(cancel_when, "/30"), 1.5)
    ledger = gateway.ledger
    plain_cancel = ledger.cancel

    async def slow_cancel(job_id: str, charge: int | None = None, result: pb.JobResult | None = None) -> bool:
        if (await ledger.kind(job_id)) == "room_batch":
            await asyncio.sleep(1.5)  # a busy Redis, a paused process: the room ends meanwhile
        return await plain_cancel(job_id, charge, result)

    ledger.cancel = slow_cancel  # type: ignore[method-assign]
    rooms = [room_render("kitchen", name=f"Room {i}", room_id=f"r{i}") for i in range(3)]
    with client_for(f"127.0.0.1:{gateway.port}", url, "batch-cancel") as client:
        job = client.submit(room_batch_request(rooms, max_concurrency=2)).job
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and cancel_when not in client.get(job.id).message:
            time.sleep(0.05)
        time.sleep(0.3)
        cancelled = client.cancel(job.id)
        assert cancelled.state == pb.JOB_STATE_CANCELLED
        # Every room it submitted, recorded (the batch's checkpoints) or not.
        time.sleep(0.5)
        rendered = [j for j in client.list(page_size=50).jobs if j.parent_job_id == job.id]
        assert all(j.state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_CANCELLED) for j in rendered), rendered
        done = [j for j in rendered if j.state == pb.JOB_STATE_SUCCEEDED]
        # Each room that rendered (its outputs kept) costs its base (the default 2 a room), and the
        # batch what their providers spent, in credits once (as a batch that ends by itself settles
        # it: pricing.charge_for_cancelled_batch); the others nothing. (Rounded up room by room, two
        # rooms of 4.246 cents each came to a credit more than the batch is charged.)
        owed = 2 * len(done) + math.ceil(sum(j.result.generation.cost.cents for j in done) - 1e-9)
        assert cancelled.credits_charged == owed, (cancelled.credits_charged, [j.result.generation.cost for j in done])
        # The cancelled batch lists its rooms as they ended, the rendered ones with their outputs,
        # as a batch that ends by itself does. (Not a room the batch submitted while its cancel was
        # held up here: that room is cancelled after and shows no job in the report.)
        report = client.get(job.id).result.batch
        assert [c.index for c in report.children] == [0, 1, 2] and report.total == 3
        listed = {c.job_id: c.state for c in report.children if c.job_id}
        assert listed.items() <= {j.id: j.state for j in rendered}.items()
        assert {j.id for j in done} <= set(listed) and report.succeeded == len(done)
        assert done or cancel_when != "Room 0: done"
        assert all(c.outputs for c in report.children if c.state == pb.JOB_STATE_SUCCEEDED)


def test_no_room_is_submitted_once_the_batch_is_being_cancelled(
    generating: Callable[[str, float | None], tuple[Gateway, str]],
) -> None:
    """CancelJob cancels the rooms first: meanwhile the batch's run, its rooms ended, submitted the
    next ones, which dispatchers took and ran until the cancel's second sweep (a review found it;
    the report's read is slowed here, as a busy Redis or a 50-room batch's lookups would)."""
    gateway, url = generating("/31", None)
    ledger = gateway.ledger  # the servicer's (the dispatcher has a copy of its own)
    plain_jobs, plain_cancelling = ledger.jobs, ledger.cancelling
    state = {"cancelling": False}

    async def cancelling(job_id: str, hold_s: float) -> None:
        state["cancelling"] = True
        await plain_cancelling(job_id, hold_s)

    async def slow_jobs(ids: Sequence[str]) -> list[StoredJob | None]:
        if state["cancelling"]:
            await asyncio.sleep(1.0)  # a busy Redis, a 50-room batch's 100 lookups: the report's read is late
        return await plain_jobs(ids)

    ledger.cancelling = cancelling  # type: ignore[method-assign]
    ledger.jobs = slow_jobs  # type: ignore[method-assign, assignment]
    rooms = [room_render("kitchen", name=f"Room {i}", room_id=f"r{i}") for i in range(4)]
    with client_for(f"127.0.0.1:{gateway.port}", url, "batch-cancel-new") as client:
        job = client.submit(room_batch_request(rooms, max_concurrency=1)).job
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "Room 0: rendering" not in client.get(job.id).message:
            time.sleep(0.05)
        cancelled = client.cancel(job.id)
        assert cancelled.state == pb.JOB_STATE_CANCELLED
        time.sleep(0.5)
        submitted = [j for j in client.list(page_size=50).jobs if j.parent_job_id == job.id]
        report = client.get(job.id).result.batch
        # Only room 0 was running when the cancel began: nothing else should have been submitted,
        # and the cancelled batch's report must not list a room in a state that is not an end.
        ended = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)
        assert all(c.state in ended for c in report.children if c.job_id), "the report lists a room not ended"
        assert len(submitted) == 1, f"{len(submitted)} rooms submitted; room 0 alone was when the cancel began"


def test_a_cancel_whose_gateway_died_after_cancelling_the_rooms_is_finished_by_the_run(
    generating: Callable[[str, float | None], tuple[Gateway, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """CancelJob noted the cancel and cancelled the rooms, then its gateway died before cancelling
    the batch: the batch's run waited out the hold, then submitted the rooms not yet submitted and
    rendered them (the batch the caller cancelled succeeded, charged), or, every room cancelled,
    failed as a pipeline error. It should finish the cancel (a review killed the gateway there)."""
    import gateway.servicer

    monkeypatch.setattr(gateway.servicer, "CANCEL_HOLD_S", 1.0)
    gw, url = generating("/47", None)
    ledger = gw.ledger
    plain_cancel = ledger.cancel

    async def dies_before_the_batch(job_id: str, charge: int | None = None, result: pb.JobResult | None = None) -> bool:
        if result is not None and (await ledger.kind(job_id)) == "room_batch":
            raise RuntimeError("the gateway died here")
        return await plain_cancel(job_id, charge, result)

    ledger.cancel = dies_before_the_batch  # type: ignore[method-assign]
    rooms = [room_render("kitchen", name=f"Room {i}", room_id=f"r{i}") for i in range(3)]
    cancelled_batches = (("error_code", ""), ("kind", "room_batch"), ("state", "cancelled"))
    before = dict(JOBS_ENDED._sums).get(cancelled_batches, 0)
    with client_for(f"127.0.0.1:{gw.port}", url, "batch-cancel-died") as client:
        job = client.submit(room_batch_request(rooms, max_concurrency=2)).job
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "Room 1: rendering" not in client.get(job.id).message:
            time.sleep(0.05)
        with pytest.raises(grpc.RpcError) as died:
            client.cancel(job.id)
        assert died.value.code() == grpc.StatusCode.INTERNAL  # type: ignore[attr-defined]
        deadline = time.monotonic() + 15
        ended = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)
        while time.monotonic() < deadline and (batch := client.get(job.id)).state not in ended:
            time.sleep(0.1)
        assert batch.state == pb.JOB_STATE_CANCELLED, (batch.state, batch.error.message)
        assert batch.credits_charged == 0
        submitted = [j for j in client.list(page_size=50).jobs if j.parent_job_id == job.id]
        assert len(submitted) == 2 and all(j.state == pb.JOB_STATE_CANCELLED for j in submitted), submitted
        assert client.cancel(job.id).state == pb.JOB_STATE_CANCELLED
    assert dict(JOBS_ENDED._sums).get(cancelled_batches, 0) - before == 1  # counted by the run that ended it
