"""Dispatch: taking jobs fairly across tenants within their concurrency, renewing their leases, and
putting back the jobs whose dispatcher died.

A dispatcher takes one job per free slot (take.lua: the queued tenant with the lowest virtual time
among those under their concurrency; the job gets a slot that lasts a lease). While it works it
renews the lease; a lease that runs out (the dispatcher died, or lost Redis) is found by any
dispatcher's reaper and the job goes back to the front of its tenant's queue, its owner cleared, so
another dispatcher resumes it from its checkpoints and the old one's writes are refused.
"""

from __future__ import annotations

import secrets
from typing import Any

from gateway.ledger import keys
from gateway.ledger.base import LedgerBase, as_dict
from gateway.ledger.jobs import StoredJob, now_ms, stored_job

# How many queued tenants one look of a take reads, lowest virtual time first (a take looks up to
# ten times, parking the tenants at their concurrency: take.lua), and how many parked tenants a take
# that found no work looks through.
_TENANTS_PER_TAKE = 200
_REQUEUE_BATCH = 50
# A waiting dispatcher looks again every second (dispatcher._IDLE_LOOK_S); one not heard of for
# this long is gone, and no longer makes the scripts publish work notices.
_WAITING_FORGOTTEN_MS = 10_000


class Taken(tuple[str, int, str]):
    """A taken job: (job id, attempt, kind); whether the take emptied the queue with the dispatcher
    noted as waiting (it should wait for a work notice rather than look again); and the job and its
    checkpoints as the take left them (stored None: not read, or the job has expired), so that
    starting it reads nothing more."""

    drained: bool
    stored: StoredJob | None
    checkpoints: dict[str, bytes]
    announced: bool  # its start's event is written (its submit started it): the run writes no start

    def __new__(
        cls,
        fields: tuple[str, int, str],
        drained: bool = False,
        stored: StoredJob | None = None,
        checkpoints: dict[str, bytes] | None = None,
        *,
        announced: bool = False,
    ) -> Taken:
        taken = super().__new__(cls, fields)
        taken.drained = drained
        taken.stored = stored
        taken.checkpoints = checkpoints or {}
        taken.announced = announced
        return taken

    def unread(self) -> Taken:
        """The same job without what the take read (its run reads the job and checkpoints again)."""
        return Taken((self[0], self[1], self[2]), self.drained)


class WorkQueue(LedgerBase):
    """The dispatchers' side of the ledger."""

    async def take(
        self, owner: str, lease_s: float, detached_kinds: frozenset[str], *, slot_free: bool = False
    ) -> Taken | None:
        """The next job for this dispatcher, its attempt number and its kind, now RUNNING and owned
        by it; None when no tenant may run another job now. Detached kinds take no concurrency slot
        (a batch only waits for its rooms, which take theirs). slot_free: the dispatcher has another
        slot free after this one; if this take empties the queue it is then noted as waiting for
        work at once (Taken.drained), instead of by a take that would find nothing."""
        take_key = keys.take(secrets.token_hex(8))  # one id for the retries of this take
        kinds = "," + ",".join(sorted(detached_kinds)) + ","
        reply: Any = await self._script(
            "take",
            keys=keys.TAKE_KEYS,
            args=[
                owner,
                now_ms(),
                int(lease_s * 1000),
                self.defaults.concurrency,
                repr(self.defaults.weight),
                take_key,
                keys.QUEUE_TEMPLATE,
                keys.TENANT_RUNNING_TEMPLATE,
                keys.TENANT_LIMITS_TEMPLATE,
                keys.JOB_TEMPLATE,
                kinds,
                _TENANTS_PER_TAKE,
                _WAITING_FORGOTTEN_MS,
                "1" if slot_free else "0",
                keys.CHECKPOINTS_TEMPLATE,
            ],
        )
        if not reply:
            return None
        job = {k.decode(): v for k, v in as_dict(reply[4]).items()}
        checkpoints = {k.decode(): bytes(v) for k, v in as_dict(reply[5]).items()}
        return Taken(
            (reply[0].decode(), int(reply[1]), reply[2].decode()),
            int(reply[3]) == 1,
            stored_job(job) if job else None,
            checkpoints,
        )

    async def renew(self, owner: str, job_id: str, lease_s: float) -> bool:
        """Extends a running job's lease; False (nothing renewed) when the dispatcher no longer owns
        it: it ended, or its lease ran out (its slot may already run another job of its tenant)."""
        renewed = await self._script(
            "renew",
            keys=[keys.job(job_id), keys.RUNNING],
            args=[job_id, owner, int(lease_s * 1000), keys.TENANT_RUNNING_TEMPLATE],
        )
        return bool(renewed)

    async def requeue_expired(self) -> int:
        """Puts the jobs whose lease ran out back at the front of their tenants' queues; how many."""
        return int(await self._requeue("", ""))

    async def hand_back(self, owner: str, job_id: str) -> bool:
        """Puts a running job this dispatcher owns back at the front of its queue (it is stopping),
        so another dispatcher resumes it without waiting for the lease to run out."""
        return bool(await self._requeue(job_id, owner))

    async def _requeue(self, job_id: str, owner: str) -> Any:
        return await self._script(
            "requeue",
            keys=[keys.RUNNING, keys.QUEUED_TENANTS, keys.QUEUE_CLOCK, keys.WAITING_DISPATCHERS, keys.PARKED_TENANTS],
            args=[
                _REQUEUE_BATCH,
                keys.QUEUE_TEMPLATE,
                keys.TENANT_RUNNING_TEMPLATE,
                keys.JOB_TEMPLATE,
                keys.WORK_CHANNEL,
                job_id,
                owner,
            ],
        )
