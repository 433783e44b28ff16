"""Tenants' limits: request rate (with a burst), running jobs (concurrency), unfinished jobs (queue
quota) and the weight of their share of the dispatchers. Defaults come from the gateway's settings;
an admin may set any of them per tenant (tenant:{t}:limits). The scripts enforce them atomically:
rate and quota in the submit, concurrency and weight in the take."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from gateway.ledger import keys
from gateway.ledger.base import LedgerBase
from gateway.ledger.tenants import TenantLimits, TenantUsage

# Field names as the scripts read them from tenant:{t}:limits.
STORED_NAMES = {
    "rate_per_s": "rate",
    "burst": "burst",
    "concurrency": "concurrency",
    "queue_quota": "queue_quota",
    "weight": "weight",
}


class TenantPolicies(LedgerBase):
    """Reading and setting tenants' limits."""

    async def tenant_limits(self, tenant: str) -> tuple[TenantLimits, set[str]]:
        """A tenant's effective limits and which of them an admin set (the rest are defaults)."""
        raw: Any = await self._retry(lambda: self.redis.hgetall(keys.tenant_limits(tenant)))
        stored = {k.decode(): v.decode() for k, v in raw.items()}
        values: dict[str, Any] = {}
        for field in fields(TenantLimits):
            text = stored.get(STORED_NAMES[field.name])
            if text is not None:
                values[field.name] = float(text) if field.type in ("float", float) else int(float(text))
        return replace(self.defaults, **values), set(values)

    async def set_tenant_limits(self, tenant: str, changes: dict[str, float | int | None]) -> TenantLimits:
        """Sets (a value) or clears (None: back to the default) some of a tenant's limits."""

        async def write() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                for name, value in changes.items():
                    if value is None:
                        pipe.hdel(keys.tenant_limits(tenant), STORED_NAMES[name])
                    else:
                        pipe.hset(keys.tenant_limits(tenant), STORED_NAMES[name], repr(value))
                await pipe.execute()

        await self._retry(write)
        # Parked at its old concurrency, it may have room now (a take parks it again if not).
        await self._script(
            "unpark",
            keys=[keys.PARKED_TENANTS, keys.QUEUED_TENANTS, keys.WAITING_DISPATCHERS],
            args=[tenant, keys.WORK_CHANNEL],
        )
        return (await self.tenant_limits(tenant))[0]

    async def tenant_usage(self, tenant: str) -> TenantUsage:
        """A tenant's unfinished jobs as its queue quota counts them (a batch with its rooms' places),
        the jobs in its queue and its running ones (the slots a take counts, a lease that ran out
        included until a reaper puts its job back)."""

        async def read() -> Any:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.scard(keys.tenant_active(tenant))
                pipe.llen(keys.queue(tenant))
                pipe.zcard(keys.tenant_running(tenant))
                return await pipe.execute()

        unfinished, queued, running = await self._retry(read)
        return TenantUsage(unfinished=int(unfinished), running=int(running), queued=int(queued))
