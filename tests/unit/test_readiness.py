"""Readiness's waits end when their task is cancelled, even as what they wait for happens."""

from __future__ import annotations

import asyncio

from grpc_health.v1._async import HealthServicer

from renderkit.edge.health import Dependency, Readiness


async def _down() -> bool:
    return False


def test_a_cancel_arriving_as_the_state_changes_ends_wait_serving() -> None:
    """Python 3.11's asyncio.wait_for returns instead of raising when its task is cancelled just
    after the awaited event fired, and wait_serving's loop then waited on (30 s here) for a
    server nobody waits for any more."""

    async def scenario() -> str:
        readiness = Readiness(HealthServicer(), ["svc"], [Dependency("redis", _down)])
        waiting = asyncio.create_task(readiness.wait_serving(30))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await readiness.check()  # still down: the state changed, the wait goes round again
        for turn in range(3):
            await asyncio.sleep(0)
            if turn == 0:
                waiting.cancel()
        try:
            async with asyncio.timeout(2):
                await waiting
        except asyncio.CancelledError:
            return "cancelled"
        except TimeoutError:
            return "still waiting"
        return "returned"

    assert asyncio.run(scenario()) == "cancelled"


def test_a_probe_past_its_timeout_counts_as_down() -> None:
    async def slow() -> bool:
        await asyncio.sleep(1.0)
        return True

    async def scenario() -> bool:
        readiness = Readiness(HealthServicer(), ["svc"], [Dependency("triton", slow)], probe_timeout_s=0.1)
        return await readiness.check()

    assert asyncio.run(scenario()) is False
