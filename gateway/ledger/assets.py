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


class AssetQuotaExceeded(Exception):
    """The tenant holds as many assets as its quota allows."""

    def __init__(self, quota: int) -> None:
        super().__init__(f"asset quota {quota}")
        self.quota = quota


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
    )


class Assets(LedgerBase):
    """Recording, reading and expiring uploaded assets."""

    async def admit_asset(self, tenant: str, asset_id: str, now_ms: int, quota: int) -> int:
        """Counts an upload against the tenant's request rate (the same asset again too) and checks
        a new one against its asset quota, before its file is written: RateLimited or
        AssetQuotaExceeded. When the asset is recorded already, until when (ms; 0: it is new)."""
        reply = await self._asset_script(tenant, asset_id, now_ms, 0, quota, "admit", [])
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
            ],
            args=[asset_id, tenant, now_ms, expire_ms, defaults.rate_per_s, defaults.burst, quota, step, *fields],
        )
        status, value = reply[0].decode(), reply[1].decode()
        if status == "limited":
            raise RateLimited(int(value) / 1000)
        if status == "quota":
            raise AssetQuotaExceeded(int(value))
        return [part.decode() for part in reply[1:]]

    async def assets(self, tenant: str, asset_ids: Sequence[str], min_expire_ms: int) -> dict[str, StoredAsset]:
        """The tenant's assets among the ids (missing ones left out), each kept at least until
        min_expire_ms (0: as they are)."""
        ids = list(dict.fromkeys(asset_ids))
        if not ids:
            return {}
        reply: Any = await self._script(
            "use_assets",
            keys=[keys.tenant_assets(tenant), keys.EXPIRING_ASSETS, *(keys.asset(tenant, i) for i in ids)],
            args=[tenant, min_expire_ms, *ids],
        )
        return {asset_id: _asset(tenant, asset_id, flat) for asset_id, flat in zip(ids, reply, strict=True) if flat}

    async def expired_assets(self, now_ms: int, count: int = 100) -> list[tuple[str, str]]:
        """Assets whose time is up, as (tenant, id), each handed to one caller only (the one whose
        removal from the expiry index succeeded), so one sweeper deletes each file."""
        members: Any = await self._retry(
            lambda: self.redis.zrangebyscore(keys.EXPIRING_ASSETS, "-inf", now_ms, start=0, num=count)
        )
        claimed: list[tuple[str, str]] = []
        for member in members:
            removed = await self._remove_expiring(member)
            if removed:
                tenant, _, asset_id = member.decode().partition("/")
                claimed.append((tenant, asset_id))
        return claimed

    async def _remove_expiring(self, member: bytes) -> bool:
        removed: Any = await self._retry(lambda: self.redis.zrem(keys.EXPIRING_ASSETS, member))
        return bool(removed)

    async def sweep_again(self, tenant: str, asset_id: str, at_ms: int) -> None:
        """Puts an expired asset back in the expiry index, due at `at_ms`: its file's delete
        failed (the storage away, or read-only), and a later sweep tries again."""
        await self._retry(lambda: self.redis.zadd(keys.EXPIRING_ASSETS, {f"{tenant}/{asset_id}": float(at_ms)}))

    async def index_asset(self, asset: StoredAsset) -> None:
        """Puts an asset back in the expiry index at its expiry (a sweep that found it kept longer)."""
        scores = {f"{asset.tenant}/{asset.asset_id}": float(asset.expire_ms)}
        await self._retry(lambda: self.redis.zadd(keys.EXPIRING_ASSETS, scores))
