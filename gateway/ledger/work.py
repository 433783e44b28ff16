"""The work stream: a consumer group that dispatchers read, renew and acknowledge.

An entry stays pending while its dispatcher renews it; a dispatcher that dies stops renewing, and
after the lease another one reclaims the entry (XAUTOCLAIM) and resumes the job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from gateway.ledger import keys
from gateway.ledger.base import LedgerBase
from gateway.ledger.connection import MAX_BLOCK_MS


class WorkQueue(LedgerBase):
    """The dispatchers' side of the ledger."""

    async def ensure_group(self) -> None:
        """Creates the work stream's consumer group if it does not exist."""

        async def create() -> None:
            try:
                await self.redis.xgroup_create(keys.WORK_STREAM, keys.WORK_GROUP, id="0", mkstream=True)
            except aioredis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

        await self._retry(create)

    async def _group_read(self, read: Callable[[], Awaitable[Any]]) -> Any:
        """A read of the consumer group; None when Redis lost the group (restarted without its
        AOF, or flushed): the group is made again and the next read finds it."""
        try:
            return await read()
        except aioredis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
        await self.ensure_group()
        return None

    async def read_work(self, consumer: str, block_ms: int, count: int = 1) -> list[tuple[str, str]]:
        """New (entry id, job id) pairs for a dispatcher, waiting up to block_ms for one."""
        reply: Any = await self._retry(
            lambda: self._group_read(
                lambda: self.redis.xreadgroup(
                    keys.WORK_GROUP, consumer, {keys.WORK_STREAM: ">"}, count=count, block=min(block_ms, MAX_BLOCK_MS)
                )
            )
        )
        return [(eid.decode(), f[b"job_id"].decode()) for _, entries in reply or [] for eid, f in entries]

    async def reclaim_work(
        self, consumer: str, min_idle_ms: int, count: int = 1, start: str = "0-0"
    ) -> tuple[list[tuple[str, str]], str]:
        """Entries another dispatcher took but stopped renewing (it died), now this consumer's, and
        where the next scan continues (the pending list is scanned a page at a time; "0-0" again
        once it reached the end)."""
        reply: Any = await self._retry(
            lambda: self._group_read(
                lambda: self.redis.xautoclaim(
                    keys.WORK_STREAM, keys.WORK_GROUP, consumer, min_idle_ms, start_id=start, count=count
                )
            )
        )
        if reply is None:
            return [], "0-0"
        # Redis 6.2 answers [next, entries]; Redis 7 adds a list of deleted ids.
        following = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        return [(eid.decode(), f[b"job_id"].decode()) for eid, f in reply[1] if f], following

    async def renew(self, consumer: str, entry_id: str, job_id: str) -> bool:
        """Resets an entry's idle time so it is not reclaimed while its dispatcher works on it; False
        (and nothing renewed) when the dispatcher no longer owns the running job."""
        renewed = await self._retry(
            lambda: self.scripts["renew"](
                keys=[keys.WORK_STREAM, keys.job(job_id)], args=[keys.WORK_GROUP, consumer, entry_id]
            )
        )
        return bool(renewed)

    async def finish_work(self, entry_id: str) -> None:
        """Acknowledges and deletes a work entry."""

        async def finish() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xack(keys.WORK_STREAM, keys.WORK_GROUP, entry_id)
                pipe.xdel(keys.WORK_STREAM, entry_id)
                await pipe.execute()

        await self._retry(finish)
