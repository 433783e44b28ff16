"""Uploaded assets: checking and storing an upload, finding a job's assets, deleting expired files.

A browser uploads a photo once and renders it with several swatches: each job names the photo by
its asset id (`ImageSource.asset_id`) and the gateway hands the dispatcher the asset's storage
key, as it does for inline images. An asset a job refers to is kept at least as long as the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Sequence

from gateway.ledger import AssetBeingSwept, Ledger, LedgerUnavailable, StoredAsset
from gateway.ledger.jobs import now_ms
from gateway.validation import Limits, Violation, check_image
from renderkit import imaging
from renderkit.storage import Storage, StorageError

log = logging.getLogger(__name__)

ASSETS_PREFIX = "assets/"
MAX_NAME_CHARS = 200
SWEEP_RETRY_MS = 60_000  # an expired asset whose file could not be deleted is tried again after
# A sweep's claim of an expired asset lasts this long: well past a delete's storage retries
# (STORAGE_RETRY_SECONDS, 30 s); a sweeper stopped meanwhile leaves it due again after it.
SWEEP_LEASE_MS = 5 * 60 * 1000
# An admitted upload is not swept for this long: past its probe and its write's storage retries.
UPLOAD_HOLD_MS = 10 * 60 * 1000
# An expired asset that a job still queued or running named is kept this long, then its jobs are
# read again: a job may wait past the asset's time (a backlog, dispatchers down, its tenant at its
# concurrency) and must find the file when it runs.
JOB_HOLD_MS = 60 * 60 * 1000
# A job the set names that does not exist yet holds the asset this long after its submit named it:
# the submit may still be writing its inline images or recording it (past its retries). Later, it
# was refused, a repeat of an earlier one, or expired long ago.
SUBMIT_HOLD_MS = 10 * 60 * 1000
# An asset every job names (a logo, a house swatch) never expires, so no sweep reads its set of
# jobs: a submit that brings the set to a multiple of this strikes off the jobs that ended. The set
# stays within the jobs not ended plus this, and each prune's reads are spread over as many submits.
PRUNE_JOBS_EVERY = 64
# How long an upload of an asset being swept waits for the delete to end (then UNAVAILABLE).
SWEEP_WAIT_S = 35.0
SWEPT_RETRY_S = 10.0  # the retry an upload still waiting after SWEEP_WAIT_S is told at most
SWEEP_POLL_S = 0.1


class AssetRefused(ValueError):
    """An upload that cannot be stored, with the violations naming its fields."""

    def __init__(self, violations: list[Violation]) -> None:
        super().__init__("; ".join(f"{f}: {d}" for f, d in violations))
        self.violations = violations


# Uploads being written and recorded, their callers maybe gone (AssetStore.upload).
_STORING: set[asyncio.Future[StoredAsset]] = set()
# How long a stopping gateway waits for them (finish_storing) before it closes Redis: within the
# pod's termination grace (45 s) after its preStop (5 s) and the drain's other steps.
STORING_WAIT_S = 15.0


async def finish_storing(timeout_s: float = STORING_WAIT_S) -> None:
    """Waits for the uploads still being written and recorded: a gateway that stops closes Redis and
    then its loop, which cancels what is left, while a write (a thread) lands anyway, with nothing
    in the ledger naming its file (a drain hook, after the calls have ended)."""
    pending = [store for store in _STORING if not store.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout_s)


# An upload of an asset recorded already is written again when the asset would expire within this.
REWRITE_WITHIN_MS = 10 * 60 * 1000


def asset_id_of(data: bytes) -> str:
    """An asset's id: a digest of its bytes (the same image uploaded again is the same asset)."""
    return "as_" + hashlib.sha256(data).hexdigest()[:40]


def image_info(asset: StoredAsset) -> imaging.ImageInfo:
    """What the asset's header said when it was uploaded (validation uses it like a probe)."""
    return imaging.ImageInfo(
        content_type=asset.content_type,
        width=asset.width,
        height=asset.height,
        orientation=asset.orientation,
        has_alpha=asset.has_alpha,
    )


class AssetStore:
    """Uploads, lookups and the expiry sweep of a tenant's assets."""

    def __init__(
        self, ledger: Ledger, storage: Storage, limits: Limits, retention_s: float, quota: int, job_retention_s: float
    ) -> None:
        self.ledger = ledger
        self.storage = storage
        self.limits = limits
        self.retention_ms = int(retention_s * 1000)
        self.job_retention_ms = int(job_retention_s * 1000)
        self.quota = quota
        self.sweep_retry_ms = SWEEP_RETRY_MS
        self.sweep_lease_ms = SWEEP_LEASE_MS
        self.job_hold_ms = JOB_HOLD_MS
        self.submit_hold_ms = SUBMIT_HOLD_MS

    def _stored(self, key: str) -> bool:
        try:
            self.storage.stat(key)
        except StorageError:
            return False
        return True

    def check(self, data: bytes, name: str) -> imaging.ImageInfo:
        """The upload's header, or AssetRefused naming what is wrong (runs off the event loop)."""
        violations: list[Violation] = []
        if len(name) > MAX_NAME_CHARS:
            violations.append(("name", f"at most {MAX_NAME_CHARS} characters"))
        if not data:
            violations.append(("data", "is required: the encoded image"))
        elif len(data) > self.limits.max_image_bytes:
            violations.append(("data", f"is {len(data):,} bytes, more than {self.limits.max_image_bytes:,}"))
        if violations:
            raise AssetRefused(violations)
        found, info = check_image(data, "data", self.limits, 1)
        if found or info is None:
            raise AssetRefused(found)
        return info

    async def upload(self, tenant: str, data: bytes, name: str) -> StoredAsset:
        """Checks, stores and records an upload; RateLimited or AssetQuotaExceeded when over the
        tenant's limits, found before the file is written (every upload counts against the rate,
        the same bytes again too), AssetRefused for a bad image. An asset recorded already is not
        written again."""
        if len(data) > self.limits.max_image_bytes:  # before hashing it: nothing of it is read
            raise AssetRefused([("data", f"is {len(data):,} bytes, more than {self.limits.max_image_bytes:,}")])
        asset_id = await asyncio.to_thread(asset_id_of, data)
        key = f"{ASSETS_PREFIX}{tenant}/{asset_id}"
        # Counted against the rate before the image is probed or written.
        kept_until = await self._admit(tenant, asset_id)
        info = await asyncio.to_thread(self.check, data, name)
        # The write and its record finish together even when the caller gives up meanwhile (its
        # deadline, a closed browser tab): cancelled between them, the file landed (a thread cannot
        # be stopped) with nothing in the ledger naming it, and no sweep ever deleted it.
        store = asyncio.ensure_future(self._store(tenant, asset_id, key, kept_until, data, name, info))
        _STORING.add(store)
        store.add_done_callback(_STORING.discard)
        return await asyncio.shield(store)

    async def _admit(self, tenant: str, asset_id: str) -> int:
        """admit_asset, waiting while a sweep deletes the asset's expired file (written now, the
        file would be deleted under the new record); AssetBeingSwept past SWEEP_WAIT_S."""
        deadline = asyncio.get_running_loop().time() + SWEEP_WAIT_S
        while True:
            now = now_ms()
            try:
                return await self.ledger.admit_asset(tenant, asset_id, now, self.quota, now + UPLOAD_HOLD_MS)
            except AssetBeingSwept as exc:
                if asyncio.get_running_loop().time() + SWEEP_POLL_S > deadline:
                    raise
                await asyncio.sleep(min(SWEEP_POLL_S, exc.retry_after_s))

    async def _store(
        self, tenant: str, asset_id: str, key: str, kept_until: int, data: bytes, name: str, info: imaging.ImageInfo
    ) -> StoredAsset:
        """Writes an admitted upload's file (when needed) and records the asset."""
        # Its file is written unless the asset is recorded, stays for a while (one about to expire
        # may be swept meanwhile) and its file is there (a sweep that raced an upload may have
        # taken it).
        if kept_until < now_ms() + REWRITE_WITHIN_MS or not await asyncio.to_thread(self._stored, key):
            await asyncio.to_thread(self.storage.put, key, data, info.content_type)
        asset = StoredAsset(
            asset_id=asset_id,
            tenant=tenant,
            storage_key=key,
            name=name,
            content_type=info.content_type,
            width=info.width,
            height=info.height,
            orientation=info.orientation,
            has_alpha=info.has_alpha,
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        now = now_ms()
        try:
            return await self.ledger.record_asset(asset, now, now + self.retention_ms, self.quota)
        except Exception:
            # Refused (or the ledger is away): the file goes unless an earlier upload recorded it.
            if not await self.ledger.assets(tenant, [asset_id], 0):
                with contextlib.suppress(StorageError):
                    await asyncio.to_thread(self.storage.delete, key)
            raise

    async def for_job(self, tenant: str, asset_ids: Sequence[str], job_id: str) -> dict[str, StoredAsset]:
        """The tenant's assets among the ids for the job submitted now (its id drawn already), each
        kept at least for its retention, and past that until the job has ended (sweep)."""
        now = now_ms()
        found = await self.ledger.assets(tenant, asset_ids, now + self.job_retention_ms, job_id, now)
        for asset in found.values():
            if asset.jobs and asset.jobs % PRUNE_JOBS_EVERY == 0:
                await self._prune_jobs(tenant, asset.asset_id)
        return found

    async def _prune_jobs(self, tenant: str, asset_id: str) -> None:
        """Strikes the jobs that no longer hold a live asset off its set (a failure waits for the next)."""
        try:
            await self.ledger.drop_asset_jobs(tenant, asset_id, await self._ended_jobs(tenant, asset_id))
        except LedgerUnavailable:
            log.warning("asset %s/%s: its ended jobs stay in its set until a later submit", tenant, asset_id)

    async def sweep(self) -> int:
        """Deletes the files of expired assets; returns how many. One that a job still queued or
        running named is kept another job_hold_ms. Each is claimed before its delete and struck off
        after it, one at a time: a sweep stopped between the two (its gateway stopping, Redis away)
        leaves one claim, due again when its lease ends."""
        deleted = 0
        for tenant, asset_id in await self.ledger.due_assets(now_ms()):
            ended = await self._ended_jobs(tenant, asset_id)
            now = now_ms()
            lease_end = now + self.sweep_lease_ms
            claim = await self.ledger.claim_sweep(tenant, asset_id, now, lease_end, now + self.job_hold_ms, ended)
            if claim is None:
                continue  # kept longer, held by a job, being uploaded again, or another gateway's
            try:
                await asyncio.to_thread(self.storage.delete, f"{ASSETS_PREFIX}{tenant}/{asset_id}")
            except StorageError:
                log.warning("an expired asset's file could not be deleted; it is tried again later")
                await self.ledger.end_sweep(tenant, asset_id, claim, lease_end, now_ms() + self.sweep_retry_ms)
                continue
            await self.ledger.end_sweep(tenant, asset_id, claim, lease_end)
            deleted += 1
        return deleted

    async def _ended_jobs(self, tenant: str, asset_id: str) -> list[str]:
        """The jobs of the asset's set that no longer hold it: ended, or gone (expired after their
        end, or never recorded and named longer ago than SUBMIT_HOLD_MS). Read before the claim; a
        job ending after its read holds the asset until the next look, one JOB_HOLD_MS later."""
        named = await self.ledger.asset_jobs(tenant, asset_id)
        if not named:
            return []
        states = await self.ledger.states(list(named))
        recent = now_ms() - self.submit_hold_ms
        return [
            job_id
            for (job_id, submitted), state in zip(named.items(), states, strict=True)
            if (state.terminal if state is not None else submitted < recent)
        ]

    async def sweep_forever(self, interval_s: float = 60.0) -> None:
        """The sweep, every interval_s, until cancelled; a failed round is tried again next time."""
        while True:
            try:
                if count := await self.sweep():
                    log.info("deleted %d expired assets", count)
            except Exception:
                log.warning("the asset sweep failed; trying again later", exc_info=True)
            await asyncio.sleep(interval_s)
