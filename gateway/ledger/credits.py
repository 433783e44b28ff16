"""Tenants' credits: a balance, the credits unfinished jobs hold reserved, and an append-only log of
every movement (grant, reserve, refund) whose amounts sum to the balance.

The submit script reserves a job's price with the job (not enough: nothing is created); the
transition that ends the job settles it (the charge stays, the rest is refunded). Both are the
single scripts that create and end a job, so a job is charged once and refunded at most once, across
retries, takeovers and killed dispatchers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from gateway.ledger import keys
from gateway.ledger.base import LedgerBase
from gateway.ledger.events import cursor_key


@dataclass(frozen=True)
class CreditEntry:
    """One movement of a tenant's credits."""

    entry_id: str  # the log's stream id: its time and order
    kind: str  # "grant", "reserve" or "refund"
    amount: int  # signed: what the movement added to the balance
    balance: int  # the balance after it
    job_id: str = ""
    note: str = ""

    @property
    def time_ms(self) -> int:
        return int(self.entry_id.split("-", 1)[0])


def _entry(entry_id: bytes, fields: dict[bytes, bytes]) -> CreditEntry:
    def text(name: str) -> str:
        return fields.get(name.encode(), b"").decode()

    return CreditEntry(
        entry_id=entry_id.decode(),
        kind=text("kind"),
        amount=int(text("amount") or 0),
        balance=int(text("balance") or 0),
        job_id=text("job"),
        note=text("note"),
    )


# How long a grant's operation is remembered: its own retries (a day), and a caller's idempotency key
# (a week: a payment provider retries its notices for days).
GRANT_RETRY_TTL_S = 86_400
GRANT_KEY_TTL_S = 7 * 86_400


@dataclass(frozen=True)
class Grant:
    """What a grant did: its log entry (the first grant's, for a repeat) and the balance now."""

    entry: CreditEntry
    balance: int
    repeated: bool = False  # a repeat of an earlier grant with the same key: nothing was added
    conflict: bool = False  # the key was used for another grant: nothing was added


class Credits(LedgerBase):
    """Reading and granting credits."""

    async def grant(self, tenant: str, amount: int, note: str, key: str = "", fingerprint: str = "") -> Grant:
        """Adds credits to a tenant's balance once per grant: its retries here, and with a caller's
        idempotency `key`, its repeats within GRANT_KEY_TTL_S, add nothing again (a repeat whose
        `fingerprint`, the caller's amount and note, differs is refused: Grant.conflict)."""
        # One id for the retries of this grant; with a caller's key, the key (a tenant name holds no
        # ':', so neither tenants' keys nor the random ids meet).
        op = keys.grant(f"{tenant}:{key}" if key else uuid.uuid4().hex[:16])
        ttl_s = GRANT_KEY_TTL_S if key else GRANT_RETRY_TTL_S
        reply: Any = await self._script(
            "grant",
            keys=[keys.credits_balance(tenant), keys.credits_log(tenant), op],
            # This call's id: a retry of it whose first try landed (its reply lost) is this grant,
            # not a repeat of an earlier one (it was answered deduplicated, and not logged).
            args=[amount, note, fingerprint or str(amount), ttl_s, uuid.uuid4().hex[:16]],
        )
        entry_id, balance, repeat = reply[0].decode(), int(reply[1]), int(reply[2])
        return Grant(CreditEntry(entry_id, "grant", amount, balance, note=note), balance, repeat == 1, repeat == 2)

    async def balance(self, tenant: str) -> tuple[int, int]:
        """A tenant's balance and the credits its unfinished jobs hold reserved."""
        values: Any = await self._retry(
            lambda: self.redis.mget([keys.credits_balance(tenant), keys.credits_reserved(tenant)])
        )
        return int(values[0] or 0), int(values[1] or 0)

    async def credit_entries(self, tenant: str, count: int, before: str = "") -> tuple[list[CreditEntry], str]:
        """A page of a tenant's credit log, newest first, and the id to continue before ("" at the end)."""
        if before and cursor_key(before) == (0, 0):
            return [], ""  # nothing comes before the least id, and Redis refuses "(0-0" as a bound
        top = f"({before}" if before else "+"
        rows: Any = await self._retry(
            lambda: self.redis.xrevrange(keys.credits_log(tenant), max=top, min="-", count=count + 1)
        )
        entries = [_entry(entry_id, fields) for entry_id, fields in rows]
        if len(entries) > count:
            return entries[:count], entries[count - 1].entry_id
        return entries, ""

    async def all_credit_entries(self, tenant: str) -> list[CreditEntry]:
        """Every entry of a tenant's credit log, oldest first (audits and tests)."""
        rows: Any = await self._retry(lambda: self.redis.xrange(keys.credits_log(tenant)))
        return [_entry(entry_id, fields) for entry_id, fields in rows]
