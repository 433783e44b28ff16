"""The uploads of submits whose ledger write failed (gateway.uploads.UnrecordedUploads): deleted once
the ledger says no job was recorded, kept for a job recorded late, and collected again after a
round that failed unexpectedly."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from gateway import folders
from gateway.auth.principal import Principal, Scope, set_principal
from gateway.ledger import Ledger
from gateway.ledger.connection import LedgerUnavailable
from gateway.servicer import RenderServicer
from gateway.uploads import UnrecordedUploads, check_delay_s
from gateway.validation import Limits
from render_client.client import material_swap_request
from renderkit import imaging
from renderkit.storage.local import LocalStorage
from tests.integration.test_ledger import new_job, run

QUAD = [(20, 200), (300, 200), (260, 120), (60, 120)]


def request() -> Any:
    photo = imaging.encode(np.full((240, 320, 3), 120, np.uint8))[0]
    swatch = imaging.encode(np.full((64, 64, 3), 60, np.uint8))[0]
    return material_swap_request(photo, swatch, quad=QUAD)


def test_a_submit_whose_ledger_write_failed_has_its_uploads_deleted_once_no_job_was_recorded(
    redis_url: str, tmp_path: Path
) -> None:
    """A submit whose ledger write failed past its retries kept its uploaded images for good: the
    job might have been recorded with its reply lost. The gateway now asks the ledger once it
    answers, and deletes the uploads of a job it does not have (keeping a recorded job's)."""

    async def body(ledger: Ledger) -> None:
        storage = LocalStorage(tmp_path)
        unrecorded = UnrecordedUploads(ledger, storage, delay_s=0.0)
        servicer = RenderServicer(ledger, storage, Limits(), None, assets=None, links=None, unrecorded=unrecorded)  # type: ignore[arg-type]
        set_principal(Principal("acme", "key:test", frozenset(Scope)))
        recorded_submit = ledger.submit

        async def away(*args: Any, **kwargs: Any) -> Any:
            raise LedgerUnavailable()

        ledger.submit = away  # type: ignore[method-assign]
        with pytest.raises(LedgerUnavailable):
            await servicer.SubmitRender(request(), None)  # type: ignore[arg-type]
        (lost,) = unrecorded.pending()
        assert sorted(p.name for p in (tmp_path / folders.uploads(lost)).rglob("*") if p.is_file())

        async def still_away(job_id: str) -> Any:
            raise LedgerUnavailable()

        recorded_get = ledger.get
        ledger.get = still_away  # type: ignore[method-assign]
        await unrecorded.settle_due()  # Redis still away: nothing is deleted, nothing forgotten
        assert unrecorded.pending() == [lost] and (tmp_path / folders.uploads(lost)).is_dir()
        ledger.get, ledger.submit = recorded_get, recorded_submit  # type: ignore[method-assign]

        kept = new_job()  # a job recorded with its reply lost keeps its uploads
        await ledger.submit(kept)
        storage.put(folders.uploads(kept.job_id) + "photo", b"x", "application/octet-stream")
        unrecorded.note(kept.job_id)
        await unrecorded.settle_due()
        assert unrecorded.pending() == []
        assert not (tmp_path / folders.uploads(lost)).exists()
        assert storage.get(folders.uploads(kept.job_id) + "photo") == b"x"

    run(body, redis_url)


def test_one_unexpected_error_does_not_stop_the_collection(redis_url: str, tmp_path: Path) -> None:
    """A ledger read failing with anything but DependencyUnavailable (here a Redis ACL refusal)
    ended the collection for good; the next round now deletes (as assets.sweep_forever does)."""

    async def body(ledger: Ledger) -> None:
        storage = LocalStorage(tmp_path)
        unrecorded = UnrecordedUploads(ledger, storage, delay_s=0.0, interval_s=0.05)
        real_get = ledger.get
        failures = [
            redis.exceptions.NoPermissionError("NOPERM this user has no permissions to run the 'hgetall' command")
        ]

        async def get(job_id: str) -> Any:
            if failures:
                raise failures.pop()
            return await real_get(job_id)

        ledger.get = get  # type: ignore[method-assign]
        lost = new_job()
        storage.put(folders.uploads(lost.job_id) + "photo", b"x", "application/octet-stream")
        unrecorded.note(lost.job_id)
        task = asyncio.create_task(unrecorded.run())
        await asyncio.sleep(0.5)  # ten rounds: the first fails once, the next ones should delete
        assert not task.done() and unrecorded.pending() == []
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert not (tmp_path / folders.uploads(lost.job_id)).exists()

    run(body, redis_url)


class ShieldingDispatcher:
    """Dispatcher.submit_here's contract: once sent, the submit goes on though its caller left."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any]] = []

    def may_claim(self, kind: str) -> bool:
        return True  # a slot free: the submit goes through submit_here, as a job started here does

    async def submit_here(self, kind: str, submit: Any, held: Any = None) -> Any:
        task = asyncio.ensure_future(submit(None))
        self.tasks.append(task)
        return await asyncio.shield(task)


def test_a_submit_recorded_after_its_caller_left_keeps_its_uploads(redis_url: str, tmp_path: Path) -> None:
    """A submit_here write goes on after its caller left, for the ledger's retry budget
    (REDIS_RETRY_SECONDS has no maximum): the check must come after it, or a recorded job's inputs
    are deleted. Scaled down: the 60 s floor is 1 s, the outage 1.5 s within a 1.5 s budget."""

    async def body(ledger: Ledger) -> None:
        storage = LocalStorage(tmp_path)
        # As create_server makes it (its floor scaled down from 60 s).
        unrecorded = UnrecordedUploads(
            ledger, storage, delay_s=check_delay_s(ledger.retry_s, floor=1.0), interval_s=0.1
        )
        dispatcher = ShieldingDispatcher()
        servicer = RenderServicer(
            ledger,
            storage,
            Limits(),
            None,  # type: ignore[arg-type]
            assets=None,  # type: ignore[arg-type]
            links=None,  # type: ignore[arg-type]
            unrecorded=unrecorded,
            dispatcher=dispatcher,  # type: ignore[arg-type]
        )
        set_principal(Principal("acme", "key:test", frozenset(Scope)))
        real_submit = ledger.submit

        async def submit_after_outage(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(1.5)  # retrying while Redis is away, within the retry budget
            return await real_submit(*args, **kwargs)

        ledger.submit = submit_after_outage  # type: ignore[method-assign]
        collector = asyncio.create_task(unrecorded.run())
        call = asyncio.create_task(servicer.SubmitRender(request(), None))  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        call.cancel()  # the caller leaves (its deadline)
        with pytest.raises(asyncio.CancelledError):
            await call
        (job_id,) = unrecorded.pending()
        await asyncio.gather(*dispatcher.tasks)
        await asyncio.sleep(unrecorded.delay_s)  # past its check
        assert unrecorded.pending() == []  # asked, found recorded, forgotten
        collector.cancel()
        stored = await ledger.get(job_id)
        uploads = tmp_path / folders.uploads(job_id)
        assert stored is not None
        assert uploads.exists(), "a recorded job's uploaded inputs were deleted"

    run(body, redis_url, retry_s=1.5)  # the simulated outage's write lands within it
