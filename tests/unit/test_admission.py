"""A stage's requests admitted by the memory they need: in order, never more than the allowance
at once (a larger one alone), a cancelled waiter gone from the queue, and the allowance read from
STAGE_MEMORY_MB or the container's limit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from devstack import scenes
from render.imaging.v1 import imaging_pb2
from render.projection.v1 import projection_service_pb2 as pb
from renderkit import budget, homography, imaging
from renderkit.settings import SettingsError
from services.common.admission import MemoryGate, allowance_bytes
from services.projection.server import ProjectionServicer
from tests.unit.test_projection_service import FakeContext

MB = 2**20


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_requests_run_together_while_they_fit_and_in_order_after() -> None:
    async def body() -> list[str]:
        gate = MemoryGate(100 * MB)
        order: list[str] = []
        release = {name: asyncio.Event() for name in "abcd"}

        async def request(name: str, need: int) -> None:
            async with gate.admitted(need * MB):
                order.append(name)
                assert gate.in_use <= 100 * MB
                await release[name].wait()

        tasks = [asyncio.create_task(request(n, need)) for n, need in (("a", 60), ("b", 30), ("c", 50), ("d", 5))]
        await settle()
        # a and b fit together; c does not, and d (which would fit) waits behind it: no starving c.
        assert order == ["a", "b"] and gate.waiting == 2 and gate.in_use == 90 * MB
        release["a"].set()
        await settle()
        assert order == ["a", "b", "c", "d"] and gate.in_use == 85 * MB
        for event in release.values():
            event.set()
        await asyncio.gather(*tasks)
        assert gate.in_use == 0 and gate.waiting == 0
        return order

    asyncio.run(body())


def test_a_request_larger_than_the_allowance_runs_alone() -> None:
    async def body() -> None:
        gate = MemoryGate(100 * MB)
        running: list[str] = []
        done = asyncio.Event()

        async def request(name: str, need: int, hold: asyncio.Event | None = None) -> None:
            async with gate.admitted(need * MB):
                running.append(name)
                if hold is not None:
                    await hold.wait()
                running.remove(name)

        small = asyncio.create_task(request("small", 10, done))
        await settle()
        huge = asyncio.create_task(request("huge", 500))
        await settle()
        assert running == ["small"] and gate.waiting == 1  # waits for the small one, not for ever
        done.set()
        await asyncio.gather(small, huge)
        assert gate.in_use == 0

    asyncio.run(body())


def test_a_caller_that_gives_up_while_waiting_leaves_the_queue() -> None:
    async def body() -> None:
        gate = MemoryGate(100 * MB)
        hold = asyncio.Event()

        async def request(need: int, wait: asyncio.Event | None = None) -> None:
            async with gate.admitted(need * MB):
                if wait is not None:
                    await wait.wait()

        first = asyncio.create_task(request(80, hold))
        await settle()
        with pytest.raises(TimeoutError):  # the call's deadline, as gRPC cancels a handler
            async with asyncio.timeout(0.05):
                await request(50)
        assert gate.waiting == 0
        later = asyncio.create_task(request(20))  # fits beside the first: nothing stale blocks it
        await asyncio.wait_for(later, 1)
        hold.set()
        await first
        assert gate.in_use == 0

    asyncio.run(body())


def test_the_allowance_is_the_setting_else_a_share_of_what_the_containers_limit_leaves(tmp_path: Path) -> None:
    limit = tmp_path / "memory.max"
    assert allowance_bytes({"STAGE_MEMORY_MB": "3072"}, limit) == 3072 * MB
    assert allowance_bytes({}, tmp_path / "absent") is None
    limit.write_text("max\n")
    assert allowance_bytes({}, limit) is None
    limit.write_text(f"{3 * 1024 * MB}\n")
    assert allowance_bytes({}, limit, resident=1024 * MB) == int(2048 * MB * 0.9)
    with pytest.raises(SettingsError, match="leaves no room"):
        allowance_bytes({}, limit, resident=3 * 1024 * MB)
    with pytest.raises(SettingsError, match="STAGE_MEMORY_MB"):
        allowance_bytes({"STAGE_MEMORY_MB": "lots"}, limit)


def test_the_projection_runs_what_does_not_fit_beside_another_after_it() -> None:
    """Two 320x240 swaps against an allowance that holds one: the second waits, both succeed."""
    scene = scenes.room_scene(320, 240)
    request = pb.ProjectRequest(
        photo=imaging.encode(scene.photo)[0],
        swatch=imaging.encode(scenes.plank_texture(64))[0],
        mask_png=imaging.encode_mask(scene.floor_mask),
        homography=imaging_pb2.Homography(m=homography.to_list(scene.homography)),
        repeats_u=4,
        repeats_v=4,
        output=imaging_pb2.OutputSpec(format=imaging_pb2.FORMAT_PNG),
    )
    one = budget.projection_bytes(320 * 240, 64 * 64, False)
    gate = MemoryGate(one + one // 2)
    servicer = ProjectionServicer(gate=gate)

    async def body() -> list[pb.ProjectResponse]:
        calls = [asyncio.create_task(servicer.Project(request, FakeContext())) for _ in range(2)]  # type: ignore[arg-type]
        await settle()
        assert gate.waiting == 1 and gate.in_use == one
        return list(await asyncio.gather(*calls))

    answers = asyncio.run(body())
    assert all(answer.images for answer in answers) and gate.in_use == 0


def test_a_caller_that_gives_up_while_its_work_runs_holds_the_allowance_until_the_work_ends() -> None:
    """gRPC cancels a handler at its caller's deadline, but the worker thread rendering for it
    runs on with its memory: the gate gave the share back at once and let the next request in
    beside it (found by a review of this change)."""
    import threading
    import time

    async def body() -> None:
        gate = MemoryGate(100 * MB)
        running = 0
        most = 0
        release = threading.Event()

        def render() -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            release.wait(5)
            time.sleep(0.05)
            running -= 1

        first = asyncio.create_task(gate.run(80 * MB, asyncio.to_thread(render)))
        await asyncio.sleep(0.05)
        first.cancel()  # the caller's deadline (gRPC has answered it; the handler ends with the work)
        second = asyncio.create_task(gate.run(80 * MB, asyncio.to_thread(render)))
        await asyncio.sleep(0.05)
        assert gate.waiting == 1 and running == 1  # the first's render still holds its share
        release.set()
        await second
        with pytest.raises(asyncio.CancelledError):
            await first
        assert most == 1 and gate.in_use == 0

    asyncio.run(body())


def test_work_whose_caller_gives_up_while_it_waits_never_starts() -> None:
    async def body() -> None:
        gate = MemoryGate(100 * MB)
        started: list[str] = []

        async def work(name: str, hold: asyncio.Event | None = None) -> None:
            started.append(name)
            if hold is not None:
                await hold.wait()

        hold = asyncio.Event()
        first = asyncio.create_task(gate.run(80 * MB, work("first", hold)))
        await settle()
        waiting = asyncio.create_task(gate.run(50 * MB, work("second")))
        await settle()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        hold.set()
        await first
        assert started == ["first"] and gate.in_use == 0 and gate.waiting == 0

    asyncio.run(body())
