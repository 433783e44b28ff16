"""Uploaded assets: images a tenant stores once and refers to by id in later jobs.

An asset's id is a digest of its bytes, so uploading the same image again finds the same asset
(and keeps it longer). Each tenant's assets are its own (`asset:{tenant}:{id}`); the file lives in
storage under `assets/{tenant}/{id}` until the sweeper (gateway.assets) deletes expired ones.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.ledger import keys
from gateway.ledger.base import LedgerBase
from gateway.ledger.tenants import RateLimited

# An asset's set of jobs (keys.asset_jobs) outlives its hash, and each hold of the sweep, by this:
# the sweep reads it once the hash has expired, which may be days late when no gateway runs.
ASSET_JOBS_GRACE_MS = 7 * 24 * 3600 * 1000


class AssetQuotaExceeded(Exception):
    """The tenant holds as many assets as its quota allows."""

    def __init__(self, quota: int) -> None:
        super().__init__(f"asset quota {quota}")
        self.quota = quota


class AssetBeingSwept(Exception):
    """A sweep is deleting the expired asset's file: an upload of it waits (retry_after_s at most)."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"asset being swept; retry in {retry_after_s:.3f} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class StoredAsset:
    """An asset as the ledger keeps it."""

    asset_id: str
    tenant: str
    storage_key: str
    name: str
    content_type: str
    width: int
    height: int
    orientation: int
    has_alpha: bool
    size_bytes: int
    sha256: str
    created_ms: int = 0
    expire_ms: int = 0
    jobs: int = 0  # read for a job: how many jobs its set of jobs holds, that one included

    def fields(self) -> list[str | int]:
        """The hash's fields and values (the times are the script's to write)."""
        return [
            "key", self.storage_key,
            "name", self.name,
            "content_type", self.content_type,
            "width", self.width,
            "height", self.height,
            "orientation", self.orientation,
            "alpha", int(self.has_alpha),
            "size", self.size_bytes,
            "sha256", self.sha256,
        ]  # fmt: skip


def _asset(tenant: str, asset_id: str, flat: Sequence[bytes]) -> StoredAsset:
    raw = {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}
    return StoredAsset(
        asset_id=asset_id,
        tenant=tenant,
        storage_key=raw["key"],
        name=raw.get("name", ""),
        content_type=raw.get("content_type", ""),
        width=int(raw.get("width", 0)),
        height=int(raw.get("height", 0)),
        orientation=int(raw.get("orientation", 1)),
        has_alpha=raw.get("alpha") == "1",
        size_bytes=int(raw.get("size", 0)),
        sha256=raw.get("sha256", ""),
        created_ms=int(raw.get("created_ms", 0)),
        expire_ms=int(raw.get("expire_ms", 0)),
        jobs=int(raw.get("jobs", 0)),
    )


class Assets(LedgerBase):
    """Recording, reading and expiring uploaded assets."""

    async def admit_asset(self, tenant: str, asset_id: str, now_ms: int, quota: int, hold_until_ms: int = 0) -> int:
        """Counts an upload against the tenant's request rate (the same asset again too) and checks
        a new one against its asset quota, before its file is written: RateLimited,
        AssetQuotaExceeded, or AssetBeingSwept while a sweep deletes its file. An admitted asset is
        not swept before hold_until_ms (its write's time). When the asset is recorded already,
        until when (ms; 0: it is new)."""
        reply = await self._asset_script(tenant, asset_id, now_ms, hold_until_ms, quota, "admit", [])
        return int(reply[1]) if reply[0] else 0

    async def record_asset(self, asset: StoredAsset, now_ms: int, expire_ms: int, quota: int) -> StoredAsset:
        """Records an asset whose file is written (or keeps an existing one until at least
        expire_ms); AssetQuotaExceeded when a new one no longer fits the tenant's quota (admit_asset
        counted the upload against the rate)."""
        await self._asset_script(asset.tenant, asset.asset_id, now_ms, expire_ms, quota, "record", asset.fields())
        stored = await self.assets(asset.tenant, [asset.asset_id], 0)
        return stored[asset.asset_id]

    async def _asset_script(
        self, tenant: str, asset_id: str, now_ms: int, expire_ms: int, quota: int, step: str, fields: list[str | int]
    ) -> list[str]:
        """asset.lua's step: its answer after the status (created_ms, '' for a new asset admitted,
        and when admitting, expire_ms)."""
        defaults = self.defaults
        reply: Any = await self._script(
            "asset",
            keys=[
                keys.asset(tenant, asset_id),
                keys.tenant_assets(tenant),
                keys.EXPIRING_ASSETS,
                keys.tenant_limits(tenant),
                keys.tenant_rate(tenant),
                keys.counted(tenant, secrets.token_hex(8)),  # a retry carries the same mark: counted once
                keys.asset_sweep(tenant, asset_id),
                keys.asset_jobs(tenant, asset_id),
            ],
            args=[
                asset_id,
                tenant,
                now_ms,
                expire_ms,
                defaults.rate_per_s,
                defaults.burst,
                quota,
                step,
                ASSET_JOBS_GRACE_MS,
                *fields,
            ],
        )
        status, value = reply[0].decode(), reply[1].decode()
        if status == "limited":
            raise RateLimited(int(value) / 1000)
        if status == "quota":
            raise AssetQuotaExceeded(int(value))
        if status == "sweeping":
            raise AssetBeingSwept(int(value) / 1000)
        return [part.decode() for part in reply[1:]]

    async def assets(
        self, tenant: str, asset_ids: Sequence[str], min_expire_ms: int, job_id: str = "", submitted_ms: int = 0
    ) -> dict[str, StoredAsset]:
        """The tenant's assets among the ids (missing ones left out), each kept at least until
        min_expire_ms (0: as they are); with a job_id, the job is noted in each one's set of jobs
        (asset_jobs), which keeps its file past that while the job has not ended."""
        ids = list(dict.fromkeys(asset_ids))
        if not ids:
            return {}
        reply: Any = await self._script(
            "use_assets",
            keys=[
                keys.tenant_assets(tenant),
                keys.EXPIRING_ASSETS,
                *(keys.asset(tenant, i) for i in ids),
                *(keys.asset_jobs(tenant, i) for i in ids),
            ],
            args=[tenant, min_expire_ms, job_id, submitted_ms, ASSET_JOBS_GRACE_MS, *ids],
        )
        return {asset_id: _asset(tenant, asset_id, flat) for asset_id, flat in zip(ids, reply, strict=True) if flat}

    async def asset_jobs(self, tenant: str, asset_id: str) -> dict[str, int]:
        """The jobs that named an asset (those not yet struck off by a sweep), each with when it was
        submitted (ms)."""
        rows: Any = await self._command("ZRANGE", keys.asset_jobs(tenant, asset_id), 0, -1, "WITHSCORES")
        return {rows[i].decode(): int(float(rows[i + 1])) for i in range(0, len(rows), 2)}

    async def drop_asset_jobs(self, tenant: str, asset_id: str, job_ids: Sequence[str]) -> None:
        """Strikes jobs that no longer hold an asset (ended, or gone) off its set of jobs."""
        if job_ids:
            await self._command("ZREM", keys.asset_jobs(tenant, asset_id), *job_ids)

    async def due_assets(self, now_ms: int, count: int = 100) -> list[tuple[str, str]]:
        """Assets due for a sweep (expired, or a claim whose sweeper stopped), as (tenant, id); each
        is claimed (claim_sweep) before its file is deleted."""
        members: Any = await self._retry(
            lambda: self.redis.zrangebyscore(keys.EXPIRING_ASSETS, "-inf", now_ms, start=0, num=count)
        )
        return [(tenant, asset_id) for tenant, _, asset_id in (m.decode().partition("/") for m in members)]

    async def claim_sweep(
        self,
        tenant: str,
        asset_id: str,
        now_ms: int,
        lease_end_ms: int,
        hold_until_ms: int,
        ended: Sequence[str] = (),
    ) -> str | None:
        """The claim's id when this caller is to delete the asset's file (one caller only): it is
        due, has not been kept longer (then it is put back at its expiry), and no job of its set
        (asset_jobs) is left once the `ended` ones (ended, or no longer there) are struck off (then
        it is due again at hold_until_ms); else None. Until lease_end_ms, no upload of it is
        admitted, and it is due again then unless end_sweep says otherwise first."""
        claim = secrets.token_hex(8)  # a retry carries the same id: a claim whose reply was lost is answered
        reply = await self._sweep_script(
            tenant, asset_id, "claim", now_ms, lease_end_ms, 0, claim, hold_until_ms, ASSET_JOBS_GRACE_MS, *ended
        )
        return claim if reply == b"claimed" else None

    async def end_sweep(self, tenant: str, asset_id: str, claim: str, lease_end_ms: int, again_ms: int = 0) -> None:
        """A claimed sweep is over: the file is deleted (again_ms 0), or its delete failed and a
        sweep tries again at again_ms."""
        await self._sweep_script(tenant, asset_id, "end", 0, lease_end_ms, again_ms, claim)

    async def _sweep_script(
        self,
        tenant: str,
        asset_id: str,
        step: str,
        now_ms: int,
        lease_end_ms: int,
        again_ms: int,
        claim: str,
        *held: str | int,
    ) -> Any:
        return await self._script(
            "sweep_asset",
            keys=[
                keys.EXPIRING_ASSETS,
                keys.asset(tenant, asset_id),
                keys.asset_sweep(tenant, asset_id),
                keys.asset_jobs(tenant, asset_id),
            ],
            args=[f"{tenant}/{asset_id}", step, now_ms, lease_end_ms, again_ms, claim, *held],
        )
