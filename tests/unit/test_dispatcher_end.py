"""A job's end as its dispatcher records it: the watchers its notice wakes come before the job's
own bookkeeping."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from gateway import dispatcher as dispatcher_module
from gateway.context import JobFailure
from gateway.dispatcher import Dispatcher
from render.v1 import render_service_pb2 as pb


@pytest.mark.parametrize("fails", [False, True])
def test_the_watchers_woken_with_a_jobs_end_run_before_its_bookkeeping(
    monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    """The end's notice reaches the gateway with the end script's reply, and whichever the loop
    hands on first, the job's own bookkeeping after it (the settlement's count, then its log line,
    metrics and span) must not hold the watchers' sends: a watch woken as the end is recorded runs
    first."""
    order: list[str] = []

    class Ledger:
        async def succeed(self, *args: Any, **kwargs: Any) -> None:
            asyncio.get_running_loop().call_soon(order.append, "watcher")  # as the end's notice wakes a watch

        fail = succeed

    monkeypatch.setattr(dispatcher_module, "count_settlement", lambda *args: order.append("bookkeeping"))
    dispatcher: Any = Dispatcher.__new__(Dispatcher)
    dispatcher.ledger, dispatcher.consumer = Ledger(), "here"
    dispatcher.settings = SimpleNamespace(prices=None)
    stored: Any = SimpleNamespace(credits_reserved=0, inputs={}, job=pb.Job(attempt=1))

    class Context:
        total_steps, wrote_work = 3, False

        async def unwritten(self) -> list[Any]:
            return []

    async def plan(ctx: Any) -> pb.JobResult:
        if fails:
            raise JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, "no")
        return pb.JobResult()

    ended = asyncio.run(dispatcher._run_plan("job", stored, Context(), plan))
    assert ended[0] == ("failed" if fails else "succeeded")
    assert order == ["watcher", "bookkeeping"]
