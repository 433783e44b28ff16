"""Uploaded assets against a real Redis and a real storage directory: retention, the sweep, quotas,
and jobs keeping the assets they use."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from devstack import scenes
from gateway.assets import AssetRefused, AssetStore
from gateway.ledger import AssetQuotaExceeded, Ledger, NewJob, RateLimited, TenantLimits, connect, keys
from gateway.ledger.jobs import new_job_id
from gateway.validation import Limits
from renderkit import imaging
from renderkit.storage import LocalStorage

DB = "/18"


def image(seed: int) -> bytes:
    return imaging.encode(scenes.plank_texture(64, seed=seed))[0]


def store(
    redis_url: str, root: Path, retention_s: float, quota: int = 100, rate: float = 0.0, job_retention_s: float = 3600
) -> AssetStore:
    redis.Redis.from_url(redis_url + DB).flushdb()
    ledger = Ledger(connect(redis_url + DB), tenant_defaults=TenantLimits(rate_per_s=rate, burst=2))
    return AssetStore(ledger, LocalStorage(root), Limits(), retention_s, quota, job_retention_s=job_retention_s)


def hold_deletes(assets: AssetStore) -> tuple[threading.Event, threading.Event]:
    """Holds the store's deletes: the first event is set when one begins, which waits (10 s at
    most) for the second."""
    deleting, release = threading.Event(), threading.Event()
    delete = assets.storage.delete

    def held(key: str) -> None:
        deleting.set()
        release.wait(10)
        delete(key)

    assets.storage.delete = held  # type: ignore[method-assign]
    return deleting, release


def job_naming(tenant: str, job_id: str, storage_key: str) -> NewJob:
    """A material swap whose photo is an uploaded asset, as the submit records it."""
    return NewJob(
        job_id=job_id,
        tenant=tenant,
        kind="material_swap",
        request=b"req",
        inputs={"material_swap.photo": storage_key},
        fingerprint="f",
        project_id="p1",
        user_id="u1",
        idempotency_key="",
        total_steps=4,
    )


def test_an_expired_asset_is_swept_and_one_kept_longer_is_not(redis_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        assets = store(redis_url, tmp_path, retention_s=0.3)
        old = await assets.upload("t1", image(1), "old.jpg")
        used = await assets.upload("t1", image(2), "used.jpg")
        assert (tmp_path / old.storage_key).exists() and (tmp_path / used.storage_key).exists()
        # A job submitted now keeps the asset it names at least as long as the job itself.
        kept = await assets.for_job("t1", [used.asset_id], "j-used")
        assert kept[used.asset_id].expire_ms > time.time() * 1000 + 3000 * 1000
        await asyncio.sleep(0.5)
        assert await assets.sweep() == 1
        assert not (tmp_path / old.storage_key).exists() and (tmp_path / used.storage_key).exists()
        assert await assets.for_job("t1", [old.asset_id], "j-late") == {}
        assert await assets.sweep() == 0  # nothing twice

    asyncio.run(scenario())


def test_assets_are_per_tenant_deduplicated_and_within_the_quota(redis_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        assets = store(redis_url, tmp_path, retention_s=3600, quota=2)
        first = await assets.upload("t1", image(1), "a.jpg")
        again = await assets.upload("t1", image(1), "a.jpg")
        assert again.asset_id == first.asset_id and again.created_ms == first.created_ms
        await assets.upload("t1", image(2), "b.jpg")
        with pytest.raises(AssetQuotaExceeded):
            await assets.upload("t1", image(3), "c.jpg")
        assert not any(p.name.endswith(image_id(image(3))) for p in tmp_path.rglob("*"))  # refused: not kept
        # Another tenant has its own assets (and quota); the same bytes are its own asset.
        theirs = await assets.upload("t2", image(1), "a.jpg")
        assert theirs.asset_id == first.asset_id and theirs.storage_key != first.storage_key
        assert (await assets.for_job("t2", [first.asset_id], "j-2"))[first.asset_id].storage_key == theirs.storage_key
        assert set(await assets.for_job("t1", [first.asset_id, "as_missing"], "j-1")) == {first.asset_id}
        with pytest.raises(AssetRefused) as bad:  # (t1 is at its quota: that is checked first)
            await assets.upload("t2", b"not an image", "x.jpg")
        assert bad.value.violations[0][0] == "data"

    asyncio.run(scenario())


def image_id(data: bytes) -> str:
    from gateway.assets import asset_id_of

    return asset_id_of(data)


def test_uploads_count_against_the_tenants_request_rate(redis_url: str, tmp_path: Path) -> None:
    """Every upload is a request (the same bytes again too), refused over the rate before its file
    is written; an asset recorded already is not written again."""

    async def scenario() -> None:
        assets = store(redis_url, tmp_path, retention_s=3600, rate=0.5)  # a burst of 2, then one every 2 s
        first = await assets.upload("t1", image(1), "")
        written = (tmp_path / first.storage_key).stat().st_mtime_ns
        await assets.upload("t1", image(1), "again")  # counted, not written again
        assert (tmp_path / first.storage_key).stat().st_mtime_ns == written
        for data in (image(1), image(3)):
            with pytest.raises(RateLimited) as limited:
                await assets.upload("t1", data, "")
            assert 0 < limited.value.retry_after_s <= 2.0
        assert not (tmp_path / f"assets/t1/{image_id(image(3))}").exists()  # refused before its write

    asyncio.run(scenario())


def test_an_asset_whose_file_went_missing_is_written_again(redis_url: str, tmp_path: Path) -> None:
    """A sweep that raced an upload may take a recorded asset's file: uploading the same bytes
    again puts it back."""

    async def scenario() -> None:
        assets = store(redis_url, tmp_path, retention_s=3600)
        first = await assets.upload("t1", image(1), "")
        (tmp_path / first.storage_key).unlink()
        await assets.upload("t1", image(1), "")
        assert (tmp_path / first.storage_key).read_bytes() == image(1)

    asyncio.run(scenario())


def test_an_expired_asset_whose_delete_fails_is_swept_again(redis_url: str, tmp_path: Path) -> None:
    """The sweep claims an expired asset (out of the expiry index) before deleting its file: a
    delete that fails (the storage read-only, or away) puts it back, or the file stays for good."""
    from renderkit.storage import StorageError

    async def scenario() -> None:
        assets = store(redis_url, tmp_path, retention_s=0.3)
        old = await assets.upload("t1", image(1), "old.jpg")
        await asyncio.sleep(0.5)

        def refused(key: str) -> None:
            raise StorageError(f"could not delete {key}: Read-only file system")

        assets.sweep_retry_ms = 0  # due again at once
        assets.storage.delete = refused  # type: ignore[method-assign]  # this store's storage alone
        assert await assets.sweep() == 0
        assert (tmp_path / old.storage_key).exists()
        del assets.storage.delete
        assert await assets.sweep() == 1
        assert not (tmp_path / old.storage_key).exists()

    asyncio.run(scenario())


def test_an_upload_while_a_sweep_deletes_the_expired_copy_keeps_its_file(redis_url: str, tmp_path: Path) -> None:
    """The sweep found an expired asset (its hash gone) and is deleting its file, slowly (GCS): an
    upload of the same bytes meanwhile waits for the delete, then writes the file. It was written
    at once and recorded, and the delete landing after took it: a recorded asset without a file, its
    jobs failing 'the uploaded image is gone'."""

    async def scenario() -> None:
        assets = store(redis_url, tmp_path, retention_s=0.3)
        data = image(1)
        old = await assets.upload("t1", data, "")
        await asyncio.sleep(0.5)
        deleting, release = hold_deletes(assets)
        sweep = asyncio.ensure_future(assets.sweep())
        assert await asyncio.to_thread(deleting.wait, 10)
        upload = asyncio.ensure_future(assets.upload("t1", data, ""))
        await asyncio.sleep(0.3)
        assert not upload.done()  # it waits for the delete
        release.set()
        assert await sweep == 1
        again = await upload
        assert again.asset_id == old.asset_id
        assert (tmp_path / again.storage_key).read_bytes() == data
        assert set(await assets.for_job("t1", [old.asset_id], "j-again")) == {old.asset_id}

    asyncio.run(scenario())


def test_a_sweep_stopped_after_its_claim_leaves_the_asset_to_a_later_sweep(redis_url: str, tmp_path: Path) -> None:
    """A sweep claims one expired asset at a time, for a lease: stopped during its delete (its
    gateway stopping), the assets it had not deleted are deleted by a later sweep. It claimed a
    round's 100 at once (ZREM) and the rest stayed in storage with nothing naming them."""

    async def scenario() -> None:
        assets = store(redis_url, tmp_path, retention_s=0.3)
        stored = [await assets.upload("t1", image(seed), "") for seed in range(3)]
        await asyncio.sleep(0.5)
        deleting, release = hold_deletes(assets)
        assets.sweep_lease_ms = 300
        sweep = asyncio.ensure_future(assets.sweep())
        assert await asyncio.to_thread(deleting.wait, 10)
        sweep.cancel()  # the gateway stops
        with pytest.raises(asyncio.CancelledError):
            await sweep
        release.set()
        del assets.storage.delete
        await asyncio.sleep(0.5)  # the stopped sweep's lease ends
        assert await assets.sweep() >= 2
        assert not any((tmp_path / asset.storage_key).exists() for asset in stored)

    asyncio.run(scenario())


def test_two_sweeps_at_once_delete_each_file_once(redis_url: str, tmp_path: Path) -> None:
    """Gateways sweep at once (every replica runs the sweep): each expired file is deleted by one."""

    async def scenario() -> None:
        assets = store(redis_url, tmp_path, retention_s=0.3)
        for seed in range(6):
            await assets.upload("t1", image(seed), "")
        await asyncio.sleep(0.5)
        counts = await asyncio.gather(assets.sweep(), assets.sweep())
        assert sum(counts) == 6
        assert not list(tmp_path.rglob("as_*"))

    asyncio.run(scenario())


def test_an_expired_asset_a_queued_job_named_is_kept_until_the_job_ends(redis_url: str, tmp_path: Path) -> None:
    """A job may wait in the queue past its asset's time (a backlog, dispatchers down, its tenant at
    its concurrency): the sweep keeps the file while the job has not ended, then deletes it. It was
    kept only until the submit's time plus the job retention, and the job failed 'material_swap.photo:
    the uploaded image is gone' when it ran."""

    async def scenario() -> None:
        assets = store(redis_url, tmp_path, retention_s=0.3, job_retention_s=0.3)
        assets.job_hold_ms = 300  # the jobs are read again this soon
        raw = redis.Redis.from_url(redis_url + DB)
        photo = await assets.upload("t1", image(1), "photo.jpg")
        queued, refused = new_job_id(), new_job_id()
        await assets.for_job("t1", [photo.asset_id], queued)
        await assets.ledger.submit(job_naming("t1", queued, photo.storage_key))
        await assets.for_job("t1", [photo.asset_id], refused)  # read, then refused: never recorded
        await asyncio.sleep(0.5)  # past the asset's time and the job's retention; the job is queued
        assert await assets.sweep() == 0
        assert (tmp_path / photo.storage_key).exists()
        assert raw.pttl(keys.asset_jobs("t1", photo.asset_id)) > 0
        assert (raw.zscore(keys.EXPIRING_ASSETS, f"t1/{photo.asset_id}") or 0) > time.time() * 1000  # looked at later
        # Uploaded again meanwhile and expired again: the queued job still holds it.
        await assets.upload("t1", image(1), "photo.jpg")
        await asyncio.sleep(0.5)
        assert await assets.sweep() == 0
        assert (tmp_path / photo.storage_key).exists()
        # The job ends: the next look strikes it off; the refused submit's job, never recorded, holds
        # the asset for a while (a submit may still be recording it), then no longer.
        await assets.ledger.cancel(queued)
        await asyncio.sleep(0.5)
        assert await assets.sweep() == 0
        assert raw.zrange(keys.asset_jobs("t1", photo.asset_id), 0, -1) == [refused.encode()]
        assets.submit_hold_ms = 0
        await asyncio.sleep(0.5)
        assert await assets.sweep() == 1
        assert not (tmp_path / photo.storage_key).exists()
        assert not raw.exists(keys.asset_jobs("t1", photo.asset_id))  # it goes with the asset
        assert await assets.sweep() == 0

    asyncio.run(scenario())


def test_asset_scripts_retried_after_a_lost_reply_apply_once(redis_url: str, tmp_path: Path) -> None:
    """A submit's read of its assets and a sweep's claim whose replies were lost are sent again: the
    job is noted once, at its first time, and a held asset stays held (not claimed by the retry)."""
    import redis.exceptions

    async def scenario() -> None:
        assets = store(redis_url, tmp_path, retention_s=0.3, job_retention_s=0.3)
        raw = redis.Redis.from_url(redis_url + DB)
        photo = await assets.upload("t1", image(1), "photo.jpg")
        queued = new_job_id()
        await assets.ledger.submit(job_naming("t1", queued, photo.storage_key))
        for name in ("use_assets", "sweep_asset"):
            script = assets.ledger.scripts[name]

            async def losing_first_reply(keys: list[Any], args: list[Any], script: Any = script) -> Any:
                reply = await script(keys=keys, args=args)  # Redis ran it...
                if not lost.get(script):
                    lost[script] = True  # ...and its reply is lost: the ledger retries
                    raise redis.exceptions.ConnectionError("the connection to Redis was lost")
                return reply

            assets.ledger.scripts[name] = losing_first_reply
        lost: dict[Any, bool] = {}
        assert set(await assets.for_job("t1", [photo.asset_id], queued)) == {photo.asset_id}
        noted: Any = raw.zrange(keys.asset_jobs("t1", photo.asset_id), 0, -1, withscores=True)
        await asyncio.sleep(0.5)
        assert await assets.sweep() == 0
        assert (tmp_path / photo.storage_key).exists()
        assert len(lost) == 2
        assert [job_id for job_id, _ in noted] == [queued.encode()]
        assert raw.zrange(keys.asset_jobs("t1", photo.asset_id), 0, -1, withscores=True) == noted

    asyncio.run(scenario())


def test_a_live_assets_set_of_jobs_keeps_only_the_jobs_not_ended(redis_url: str, tmp_path: Path) -> None:
    """An asset every job names (a logo, a house swatch) is kept alive by each submit, so no sweep
    reads its set of jobs: every job ever submitted stayed in it, ended or expired long ago, and
    the sweep that finally came read them all and sent them all in one claim."""

    async def scenario() -> None:
        assets = store(redis_url, tmp_path, retention_s=3600)
        raw = redis.Redis.from_url(redis_url + DB)
        swatch = await assets.upload("t1", image(1), "logo.jpg")
        queued = new_job_id()
        await assets.for_job("t1", [swatch.asset_id], queued)
        await assets.ledger.submit(job_naming("t1", queued, swatch.storage_key))
        for _ in range(300):
            job_id = new_job_id()
            await assets.for_job("t1", [swatch.asset_id], job_id)
            await assets.ledger.submit(job_naming("t1", job_id, swatch.storage_key))
            await assets.ledger.cancel(job_id)
        left = raw.zrange(keys.asset_jobs("t1", swatch.asset_id), 0, -1)
        assert queued.encode() in left  # not ended: it still holds the asset
        assert len(left) <= 64

    asyncio.run(scenario())
