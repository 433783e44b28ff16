"""A job's steps as its plan announces them, over a real Redis: recorded before the job waits for
anything (a stage call past a few milliseconds, storage) or ends, and several in one ledger round
trip when nothing was waited for between them; and its stage calls' repeats when a stage stops under them."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from devstack.launcher import ROOT, free_port
from gateway.context import STEPS_HELD_S, JobContext, JobFailure, write_outputs
from gateway.ledger import Ledger, LedgerUnavailable, NotOwner
from gateway.ledger import keys as keys_module
from gateway.ledger.connection import connect
from gateway.stages import StageClients
from gateway.validation import Limits
from render.depth.v1 import depth_service_pb2 as depth_pb
from render.imaging.v1 import imaging_pb2
from render.v1 import render_service_pb2 as pb
from renderkit.fetch import FetchPolicy
from renderkit.storage.local import LocalStorage
from tests.integration.test_ledger import claim, new_job, run


class CountingLedger(Ledger):
    """The ledger, counting its transition.lua calls (each one round trip)."""

    transitions = 0

    async def _script(self, name: str, keys: list[Any], args: list[Any]) -> Any:
        if name == "transition":
            self.transitions += 1
        return await super()._script(name, keys, args)


class Connected:
    """Stage clients whose channels are always connected (the calls here are made directly)."""

    def connected(self, stage: str) -> bool:
        return True


def job_context(ledger: Ledger, job_id: str, tmp_path: Path) -> JobContext:
    """A run of the job by w1 for the acme tenant, 4 steps; its stages are called directly."""
    return JobContext(
        job_id=job_id,
        owner="w1",
        tenant="acme",
        request=pb.SubmitRenderRequest(),
        inputs={},
        ledger=ledger,
        storage=LocalStorage(tmp_path),
        stages=cast(StageClients, Connected()),
        fetch_policy=FetchPolicy(),
        limits=Limits(),
        default_stage_timeout_s=5.0,
        deadline=asyncio.get_running_loop().time() + 30,
        total_steps=4,
    )


async def messages(ledger: Ledger, job_id: str) -> list[str]:
    return [e.message for e in (await ledger.read_events({job_id: "0"})).get(job_id, [])]


@contextlib.asynccontextmanager
async def claimed_job(redis_url: str, tmp_path: Path) -> AsyncIterator[tuple[CountingLedger, str, JobContext]]:
    """A counting ledger on a flushed database, a job in it taken by w1, and w1's context of it;
    the database flushed and the connections closed after."""
    client = connect(redis_url + "/3")
    await client.flushdb()
    ledger = CountingLedger(client)
    try:
        job_id = (await ledger.submit(new_job())).job_id
        assert await claim(ledger, job_id, "w1") == 1
        yield ledger, job_id, job_context(ledger, job_id, tmp_path)
    finally:
        await ledger.aclose()
        await client.flushdb()
        await client.aclose()


def test_steps_are_recorded_before_the_job_waits_and_together_when_nothing_came_between(
    redis_url: str, tmp_path: Path
) -> None:
    async def body() -> None:
        async with claimed_job(redis_url, tmp_path) as (ledger, job_id, ctx):
            first = ledger.transitions
            await ctx.step(1, pb.STAGE_SEGMENTATION, "outlining")
            await ctx.step(2, pb.STAGE_DEPTH, "estimating geometry", "depth")
            seen: list[str] = []

            async def stage(timeout: float) -> depth_pb.EstimatePlaneResponse:
                seen.extend(await messages(ledger, job_id))
                return depth_pb.EstimatePlaneResponse(source="quad")

            # A call that may be charged waits for the steps' write (which checks the job is still
            # this dispatcher's): both steps, in one transition, before the stage is asked.
            plane = await ctx.call(pb.STAGE_DEPTH, "depth", depth_pb.EstimatePlaneResponse, stage, may_charge=True)
            assert plane.source == "quad"
            assert seen == ["Queued", "Starting", "Step 1/4: outlining", "Step 2/4: estimating geometry"]
            assert ledger.transitions - first == 1
            steps = seen[2:]

            # A free call answered within STEPS_HELD_S leaves the steps to the next write (here
            # one whose answer is not checkpointed: a checkpoint's write has them written first).
            await ctx.detail(2, pb.STAGE_DEPTH, "the plane from the quad")
            await ctx.call(pb.STAGE_DEPTH, "depth again", depth_pb.EstimatePlaneResponse, stage, checkpoint=False)
            assert (await messages(ledger, job_id))[2:] == steps
            assert ledger.transitions - first == 1

            # A free call that takes longer runs beside the write: the steps are in when it answers.
            async def slow_stage(timeout: float) -> depth_pb.EstimatePlaneResponse:
                await asyncio.sleep(STEPS_HELD_S * 5)
                return depth_pb.EstimatePlaneResponse(source="quad")

            await ctx.step(3, pb.STAGE_PROJECTION, "projecting", "projection")
            await ctx.call(pb.STAGE_PROJECTION, "projection", depth_pb.EstimatePlaneResponse, slow_stage)
            written = [*steps, "Step 2/4: the plane from the quad", "Step 3/4: projecting"]
            assert (await messages(ledger, job_id))[2:] == written
            assert ledger.transitions - first == 2

            await ctx.step(4, pb.STAGE_OUTPUT, "writing outputs")
            assert await write_outputs(ctx, []) == []  # nothing to store: nothing waited for
            await ctx.call(pb.STAGE_OUTPUT, "quick", depth_pb.EstimatePlaneResponse, stage, checkpoint=False)
            assert (await messages(ledger, job_id))[2:] == written
            await ledger.succeed(job_id, "w1", pb.JobResult(), 4, before=await ctx.unwritten())
            assert ledger.transitions - first == 3
            assert (await messages(ledger, job_id))[2:] == [*written, "Step 4/4: writing outputs", "Done"]

            # Outputs to store are waited for: the step announcing them is written first.
            second = (await ledger.submit(new_job())).job_id
            assert await claim(ledger, second, "w1") == 1
            ctx.job_id = second
            await ctx.step(4, pb.STAGE_OUTPUT, "writing outputs")
            image = imaging_pb2.EncodedImage(name="full", data=b"\xff\xd8\xff", content_type="image/jpeg")
            stored = await write_outputs(ctx, [image])
            assert [o.name for o in stored] == ["full"]
            assert (await messages(ledger, second))[-1] == "Step 4/4: writing outputs"
            assert await ctx.unwritten() == []
            # So is an input's read from storage.
            ctx.storage.put("uploads/photo.jpg", b"\xff\xd8\xff", "image/jpeg")
            ctx.inputs = {"material_swap.photo": "uploads/photo.jpg"}
            await ctx.step(1, pb.STAGE_SEGMENTATION, "reading the photo")
            photo = await ctx.image_input("material_swap.photo", pb.ImageSource(), 1)
            assert photo == b"\xff\xd8\xff"
            assert (await messages(ledger, second))[-1] == "Step 1/4: reading the photo"

            # A job cancelled meanwhile: a free call's answer is not taken, the write's refusal is.
            third = (await ledger.submit(new_job())).job_id
            assert await claim(ledger, third, "w1") == 1
            ctx.job_id = third
            assert await ledger.cancel(third)
            await ctx.step(3, pb.STAGE_PROJECTION, "projecting", "projection")
            with pytest.raises(NotOwner):
                await ctx.call(pb.STAGE_PROJECTION, "projection1", depth_pb.EstimatePlaneResponse, slow_stage)

    asyncio.run(body())


class GatedLedger(Ledger):
    """The ledger, its step writes held until the test lets them go, or failing as told."""

    gate: asyncio.Event | None = None
    failure: BaseException | None = None

    async def record_progress(self, job_id: str, owner: str, *steps: Any) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        await super().record_progress(job_id, owner, *steps)


def test_a_call_that_may_be_charged_waits_for_a_step_write_already_under_way_and_its_refusal(
    redis_url: str, tmp_path: Path
) -> None:
    """A flush finding its steps taken by a write still under way (a concurrent call's) waits for
    that write, and a refused write is the answer of every later flush: a call that may be charged
    never starts before the check that the job is still this dispatcher's. A free call that fails
    while the ledger cannot be reached reports its own failure."""

    async def body() -> None:
        client = connect(redis_url + "/3")
        await client.flushdb()
        ledger = GatedLedger(client)
        try:
            job_id = (await ledger.submit(new_job())).job_id
            assert await claim(ledger, job_id, "w1") == 1
            ctx = job_context(ledger, job_id, tmp_path)
            called: list[list[str]] = []

            async def paid(timeout: float) -> depth_pb.EstimatePlaneResponse:
                called.append(await messages(ledger, job_id))
                return depth_pb.EstimatePlaneResponse()

            ledger.gate = asyncio.Event()
            await ctx.step(1, pb.STAGE_DEPTH, "estimating geometry")
            under_way = asyncio.ensure_future(ctx.flush())  # a concurrent call's write, held
            await asyncio.sleep(0.05)
            charged = asyncio.ensure_future(
                ctx.call(pb.STAGE_DEPTH, "charged", depth_pb.EstimatePlaneResponse, paid, may_charge=True)
            )
            await asyncio.sleep(0.05)
            assert called == []  # it waits for the write under way
            ledger.gate.set()
            await asyncio.gather(under_way, charged)
            assert called == [["Queued", "Starting", "Step 1/4: estimating geometry"]]

            # The job is taken over; the write that finds out is refused, and so is the next one.
            ledger.failure = NotOwner("taken over")
            await ctx.step(2, pb.STAGE_DEPTH, "estimating it again")
            with pytest.raises(NotOwner):
                await ctx.flush()
            ledger.failure = None
            with pytest.raises(NotOwner):
                await ctx.call(pb.STAGE_DEPTH, "again", depth_pb.EstimatePlaneResponse, paid, may_charge=True)
            assert len(called) == 1

            # A free call failing while the ledger is away: the call's own failure is reported.
            ctx._refused = None
            ledger.failure = LedgerUnavailable()

            async def failing(timeout: float) -> depth_pb.EstimatePlaneResponse:
                raise JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, "the plane cannot be found")

            await ctx.step(3, pb.STAGE_DEPTH, "estimating geometry")
            with pytest.raises(JobFailure):
                await ctx.call(pb.STAGE_DEPTH, "depth", depth_pb.EstimatePlaneResponse, failing)
        finally:
            await ledger.aclose()
            await client.flushdb()
            await client.aclose()

    asyncio.run(body())


async def batch_run(ledger: Ledger, tmp_path: Path, rooms: int) -> JobContext:
    """A batch of dry-run rooms, taken by w1: its run's context."""
    from render_client.client import room_batch_request, room_render

    batch_id = (await ledger.submit(new_job())).job_id
    assert await claim(ledger, batch_id, "w1") == 1
    ctx = job_context(ledger, batch_id, tmp_path)
    ctx.request.CopyFrom(room_batch_request([room_render(f"room {i}", dry_run=True) for i in range(rooms)]))
    return ctx


async def state_of(ledger: Ledger, job_id: str | None) -> int:
    assert job_id is not None
    stored = await ledger.get(job_id)
    assert stored is not None
    return stored.job.state


def test_a_room_submitted_as_its_batch_is_cancelled_is_cancelled_too(redis_url: str, tmp_path: Path) -> None:
    """A batch cancelled between a room's submit and its recording as the batch's child: that room
    would render, unbilled, where no cancel of the batch reaches it. It is cancelled at once."""
    from gateway.batch import submit_child

    async def body(ledger: Ledger) -> None:
        ctx = await batch_run(ledger, tmp_path, 1)
        assert await ledger.cancel(ctx.job_id)  # the cancel lands while the batch submits its room
        with pytest.raises(NotOwner):
            await submit_child(ctx, 0)
        room = await ledger.job_for_key("acme", f"batch/{ctx.job_id}/0")
        assert await state_of(ledger, room) == pb.JOB_STATE_CANCELLED

    run(body, redis_url)


def test_a_batch_taken_over_keeps_the_room_its_first_run_submitted(redis_url: str, tmp_path: Path) -> None:
    """NotOwner from recording a room can also mean the batch was taken over: its new run records
    the same room (the idempotency key gives it the same job), so the room is not cancelled. And
    a batch cancelled while its room was not yet recorded cancels that room too."""
    from gateway.batch import cancel_children, submit_child
    from gateway.ledger import NewJob, keys

    async def body(ledger: Ledger) -> None:
        ctx = await batch_run(ledger, tmp_path, 2)
        await ledger.redis.hset(keys.job(ctx.job_id), "owner", "w2")  # another dispatcher has it now
        with pytest.raises(NotOwner):
            await submit_child(ctx, 0)
        kept = await ledger.job_for_key("acme", f"batch/{ctx.job_id}/0")
        assert await state_of(ledger, kept) == pb.JOB_STATE_QUEUED

        # A room submitted, then the batch cancelled before the room was recorded.
        await ledger.redis.hset(keys.job(ctx.job_id), "owner", "w1")
        unrecorded = NewJob("room-1", "acme", "room_render", b"", {}, "f", "", "", f"batch/{ctx.job_id}/1", 3)
        await ledger.submit(unrecorded, rate_limited=False)
        assert await ledger.cancel(ctx.job_id)
        await cancel_children(ctx)
        for room in (kept, "room-1"):
            assert await state_of(ledger, room) == pb.JOB_STATE_CANCELLED, room

    run(body, redis_url)


def test_cancelling_a_batch_whose_dispatcher_died_mid_submit_cancels_the_room_it_submitted(
    redis_url: str, tmp_path: Path
) -> None:
    """The batch's dispatcher killed between submitting a room and recording it: the client's
    CancelJob cancelled only the rooms recorded, and the batch, ended, never ran again to find the
    other, which then rendered unbilled (a review found it). CancelJob finds it by its key too."""
    from gateway.auth.principal import Principal, Scope, set_principal
    from gateway.batch import child_key
    from gateway.ledger import NewJob
    from gateway.pricing import PriceTable
    from gateway.servicer import RenderServicer
    from render_client.client import room_batch_request, room_render

    class Links:
        def fill_job(self, job: pb.Job) -> pb.Job:
            return job

        async def fill_job_async(self, job: pb.Job) -> pb.Job:
            return job

    async def body(ledger: Ledger) -> None:
        ctx = await batch_run(ledger, tmp_path, 2)
        request = room_batch_request([room_render("kitchen", room_id=f"r{i}") for i in (0, 1)])
        await ledger.redis.hset(keys_module.job(ctx.job_id), mapping={"kind": "room_batch", "total_steps": 2})
        await ledger.redis.hset(keys_module.job(ctx.job_id), "request", request.SerializeToString())
        rooms = [
            NewJob(f"room-{i}", "acme", "room_render", b"", {}, "f", "", "", child_key(ctx.job_id, i), 3)
            for i in (0, 1)
        ]
        for room in rooms:
            await ledger.submit(room, rate_limited=False)
        await ledger.add_child(ctx.job_id, "w1", 0, "room-0")  # room 1's record never made: kill -9
        servicer = RenderServicer(ledger, None, None, None, PriceTable(), assets=None, links=Links())  # type: ignore[arg-type]
        set_principal(Principal(tenant="acme", subject="key:x", scopes=frozenset({Scope.RENDER})))
        await servicer.CancelJob(pb.CancelJobRequest(job_id=ctx.job_id), None)  # type: ignore[arg-type]
        for job_id in (ctx.job_id, "room-0", "room-1"):
            assert await state_of(ledger, job_id) == pb.JOB_STATE_CANCELLED, job_id
        report = (await ledger.get(ctx.job_id)).job.result.batch  # type: ignore[union-attr]
        assert [(c.job_id, c.state) for c in report.children] == [(f"room-{i}", pb.JOB_STATE_CANCELLED) for i in (0, 1)]

    run(body, redis_url)


# A depth stage that dies (as a crash or the kernel's OOM killer ends it) 0.3 s into a request of
# width 666, and answers any other after `width` ms; the test starts it again each time it stops.
_CRASHING_STAGE = """
import asyncio, os, sys
import grpc
from render.depth.v1 import depth_service_pb2 as pb, depth_service_pb2_grpc as pb_grpc

class Depth(pb_grpc.DepthServiceServicer):
    async def EstimatePlane(self, request, context):
        if request.width == 666:
            await asyncio.sleep(0.3)
            os._exit(1)
        await asyncio.sleep(request.width / 1000)  # an innocent call takes a while
        return pb.EstimatePlaneResponse(source="quad")

async def main():
    server = grpc.aio.server()
    pb_grpc.add_DepthServiceServicer_to_server(Depth(), server)
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    await server.start()
    print("serving", flush=True)
    await server.wait_for_termination()

asyncio.run(main())
"""


@contextlib.contextmanager
def crashing_stage() -> Iterator[tuple[str, list[float]]]:
    """The stage above on a free port, started again whenever it stops; yields its address and the
    times it was started."""
    port = free_port()
    starts: list[float] = []
    stop = threading.Event()
    current: list[subprocess.Popen[bytes]] = []

    def supervise() -> None:
        while not stop.is_set():
            process = subprocess.Popen(
                [sys.executable, "-c", _CRASHING_STAGE, str(port)], stdout=subprocess.PIPE, cwd=ROOT
            )
            current[:] = [process]
            assert process.stdout is not None
            process.stdout.readline()
            starts.append(time.monotonic())
            while process.poll() is None and not stop.is_set():
                time.sleep(0.05)
            if process.poll() is None:
                process.kill()
                process.wait()

    supervisor = threading.Thread(target=supervise, daemon=True)
    supervisor.start()
    try:
        while not starts:
            time.sleep(0.05)
        yield f"127.0.0.1:{port}", starts
    finally:
        stop.set()
        supervisor.join(10)
        for process in current:
            if process.poll() is None:
                process.kill()


def test_a_request_that_stops_its_stage_fails_its_job_instead_of_stopping_it_again(
    redis_url: str, tmp_path: Path
) -> None:
    """A stage that dies under a call is asked again (a restart, a deploy, another request's doing);
    one that dies under the same job's call sent alone, twice, was killed by the request itself,
    which would otherwise take it down again and again, under every other job, until this one's
    budget ran out. A job whose call was in flight beside it when it stopped the stage is not failed
    with it."""

    with crashing_stage() as (address, starts):

        async def body() -> None:
            client = connect(redis_url + "/3")
            await client.flushdb()
            ledger = Ledger(client)
            stages = StageClients.connect(address, address, address, address)
            try:
                job_id = (await ledger.submit(new_job())).job_id
                assert await claim(ledger, job_id, "w1") == 1
                ctx = job_context(ledger, job_id, tmp_path)
                ctx.stages = stages

                def plane(width: int) -> Callable[[float], Awaitable[depth_pb.EstimatePlaneResponse]]:
                    request = depth_pb.EstimatePlaneRequest(width=width, height=100)
                    return lambda t: stages.depth.EstimatePlane(request, timeout=t)

                answer = await ctx.call(pb.STAGE_DEPTH, "depth", depth_pb.EstimatePlaneResponse, plane(10))
                assert answer.source == "quad"
                other = job_context(ledger, job_id, tmp_path)  # another job's call, beside the poison
                other.stages = stages
                poisoned, innocent = await asyncio.gather(
                    ctx.call(pb.STAGE_DEPTH, "poison", depth_pb.EstimatePlaneResponse, plane(666)),
                    other.call(pb.STAGE_DEPTH, "innocent", depth_pb.EstimatePlaneResponse, plane(800)),
                    return_exceptions=True,
                )
                assert isinstance(innocent, depth_pb.EstimatePlaneResponse), innocent
                assert isinstance(poisoned, JobFailure) and poisoned.code == pb.ERROR_CODE_PIPELINE_ERROR
                assert poisoned.message == (
                    "the depth stage stopped 3 times while it worked on this job, 2 of them with this job's "
                    "call sent alone; it was not asked again"
                )
                # The stage serves the next request, one that does not stop it.
                answer = await ctx.call(pb.STAGE_DEPTH, "after", depth_pb.EstimatePlaneResponse, plane(10))
                assert answer.source == "quad"
            finally:
                await stages.close()
                await client.aclose()

        asyncio.run(body())
        assert len(starts) == 4  # the first start, and one after each of the three stops


def test_a_quick_checkpointed_call_has_its_steps_written_beside_it(redis_url: str, tmp_path: Path) -> None:
    # Its checkpoint's write flushes the steps right after it anyway: held for STEPS_HELD_S, they
    # would save no write and only be taken out from beside the call (a Redis write and fsync
    # more on the job's path for each quick call: a plane from a quad, a mask given).
    async def body() -> None:
        async with claimed_job(redis_url, tmp_path) as (ledger, _, ctx):
            first = ledger.transitions
            await ctx.step(2, pb.STAGE_DEPTH, "estimating geometry", "depth")
            written_during_call: list[int] = []

            async def stage(timeout: float) -> depth_pb.EstimatePlaneResponse:
                await asyncio.sleep(0.005)
                written_during_call.append(ledger.transitions - first)
                return depth_pb.EstimatePlaneResponse(source="quad")

            await ctx.call(pb.STAGE_DEPTH, "depth", depth_pb.EstimatePlaneResponse, stage)
            assert ledger.transitions - first == 1
            assert written_during_call == [1]

    asyncio.run(body())


def test_a_free_call_cancelled_stops_at_once_before_its_steps_write_and_lets_a_started_write_finish(
    redis_url: str, tmp_path: Path
) -> None:
    """A job cancelled (a drain, a shutdown) during a free call: within STEPS_HELD_S the call stops
    and nothing is written; once the steps' write has begun beside it, the call stops and the write
    still lands before the cancel reaches the job."""

    async def body() -> None:
        async with claimed_job(redis_url, tmp_path) as (ledger, job_id, ctx):
            stopped: list[str] = []

            async def endless(timeout: float) -> depth_pb.EstimatePlaneResponse:
                try:
                    await asyncio.sleep(3600)
                finally:
                    stopped.append("call")
                raise AssertionError("never answers")

            first = ledger.transitions
            await ctx.step(1, pb.STAGE_DEPTH, "estimating geometry")
            call = asyncio.ensure_future(
                ctx.call(pb.STAGE_DEPTH, "depth", depth_pb.EstimatePlaneResponse, endless, checkpoint=False)
            )
            await asyncio.sleep(STEPS_HELD_S / 4)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert stopped == ["call"]
            assert ledger.transitions == first
            await asyncio.sleep(STEPS_HELD_S * 3)  # the hold's timer was cancelled with the call
            assert ledger.transitions == first
            assert (await messages(ledger, job_id))[2:] == []

            call = asyncio.ensure_future(
                ctx.call(pb.STAGE_DEPTH, "depth", depth_pb.EstimatePlaneResponse, endless, checkpoint=False)
            )
            await asyncio.sleep(STEPS_HELD_S * 5)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert stopped == ["call", "call"]
            assert ledger.transitions == first + 1
            assert (await messages(ledger, job_id))[2:] == ["Step 1/4: estimating geometry"]

    asyncio.run(body())
