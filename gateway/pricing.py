"""What a job costs in credits: a price per request kind from a price table, and the image
provider's spending converted at a rate. A submit reserves the most the job can cost; its end
settles the actual cost (never above the reservation) and refunds the rest.

A material swap costs its base plus one per variant swatch; refinement, room renders and texture
edits add what the provider may spend (the job's budget, capped by the server's), settled at what it
did spend. A batch reserves every room's price and settles the rooms that rendered, when it ends and
when it is cancelled; one none of whose rooms rendered, the rooms that failed by the caller's fault.
Failures that are not the caller's fault refund everything; a cancel before the job started refunds
everything, a cancel later keeps the base price (a batch's: its rendered rooms').
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from render.v1 import render_service_pb2 as pb

# Errors that are the caller's: the job's base price is kept (with what a provider spent).
CALLERS_FAULT = frozenset(
    {
        pb.ERROR_CODE_VALIDATION_FAILED,
        pb.ERROR_CODE_DOWNLOAD_FAILED,
        pb.ERROR_CODE_CONTENT_POLICY,
        pb.ERROR_CODE_BUDGET_EXCEEDED,
    }
)


@dataclass(frozen=True)
class PriceTable:
    """Credits per request kind, and per US cent a provider spends."""

    material_swap: int = 10
    variant: int = 5
    room_render: int = 2
    texture_edit: int = 2
    credits_per_cent: float = 1.0

    @classmethod
    def load(cls, source: str) -> PriceTable:
        """The defaults, with what a JSON object (a file's path, or the JSON itself) changes."""
        if not source:
            return cls()
        text = source if source.lstrip().startswith(("{", "[")) else Path(source).read_text()
        values = json.loads(text)
        if not isinstance(values, dict):
            raise ValueError("CREDIT_PRICES: must be a JSON object of prices")
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"CREDIT_PRICES: unknown prices {sorted(unknown)}")
        for name, value in values.items():
            # Whole credits (the ledger's scripts count in integers: 2.5 failed every submit) and
            # none negative (a job would reserve less than its base); a rate of credits a cent may
            # be fractional, but not negative nor past what a float holds.
            whole = isinstance(value, int) and not isinstance(value, bool)
            if name == "credits_per_cent":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                    raise ValueError(f"CREDIT_PRICES: credits_per_cent must be a number, 0 or more (got {value!r})")
            elif not whole or value < 0:
                raise ValueError(f"CREDIT_PRICES: {name} must be a whole number of credits, 0 or more (got {value!r})")
        return cls(**values)

    def credits(self, cents: float) -> int:
        """A provider's spending in credits (rounded up: a fraction of a cent costs a credit)."""
        return math.ceil(max(cents, 0.0) * self.credits_per_cent - 1e-9)


@dataclass(frozen=True)
class Price:
    """A job's price: its base, and the most its provider calls may add."""

    base: int
    allowance: int

    @property
    def reserved(self) -> int:
        return self.base + self.allowance


def price_of(request: pb.SubmitRenderRequest, prices: PriceTable, max_cents_per_job: float) -> Price:
    """What a request reserves at submit."""

    def allowance(options: pb.GenerationOptions) -> int:
        if options.dry_run:
            return 0
        budget = options.budget
        cents = min(budget.max_cents, max_cents_per_job) if budget.HasField("max_cents") else max_cents_per_job
        return prices.credits(cents)

    kind = request.WhichOneof("kind")
    if kind == "material_swap":
        swap = request.material_swap
        base = prices.material_swap + prices.variant * len(swap.variant_swatches)
        # The job's provider budget covers every swatch's refinement together.
        return Price(base, prices.credits(max_cents_per_job) if swap.options.enable_refinement else 0)
    if kind == "room_render":
        return Price(prices.room_render, allowance(request.room_render.options))
    if kind == "texture_edit":
        return Price(prices.texture_edit, allowance(request.texture_edit.options))
    if kind == "room_batch":
        batch = request.room_batch
        rooms = [room.options if room.HasField("options") else batch.options for room in batch.rooms]
        return Price(prices.room_render * len(rooms), sum(allowance(o) for o in rooms))
    return Price(0, 0)


def charge_for(result: pb.JobResult, price: Price, spent_cents: float, prices: PriceTable) -> int:
    """What a job that succeeded costs: its base (for a batch, the rooms that rendered) and what its
    providers spent, never more than it reserved."""
    base = price.base
    if result.HasField("batch") and result.batch.total:
        # A room that failed by the caller's fault keeps its base, as alone (and as in a batch
        # none of whose rooms rendered: charge_for_failed_batch).
        at_fault = sum(
            1 for c in result.batch.children if c.state == pb.JOB_STATE_FAILED and c.error.code in CALLERS_FAULT
        )
        base = price.base * (result.batch.succeeded + at_fault) // result.batch.total
        spent_cents = result.batch.cost.cents
    return min(base + prices.credits(spent_cents), price.reserved)


def charge_for_cancelled_batch(rooms: int, rendered: Sequence[pb.Job], price: Price, prices: PriceTable) -> int:
    """What a batch of `rooms` cancelled while it ran costs: the base of the rooms that rendered and
    of those that failed by the caller's fault, and what the rendered rooms' providers spent, as
    its end would have settled them (charge_for); not every room's base."""
    done = [job for job in rendered if job.state == pb.JOB_STATE_SUCCEEDED]
    at_fault = sum(1 for job in rendered if job.state == pb.JOB_STATE_FAILED and job.error.code in CALLERS_FAULT)
    base = price.base * (len(done) + at_fault) // rooms if rooms else 0
    spent_cents = sum(job.result.generation.cost.cents for job in done)
    return min(base + prices.credits(spent_cents), price.reserved)


def charge_for_failed_batch(rooms: int, rooms_at_fault: int, price: Price) -> int:
    """What a batch none of whose rooms rendered costs: the base of each room that failed for the
    caller's reason; nothing for the rooms that failed for another (a provider down)."""
    return min(price.base * rooms_at_fault // rooms if rooms else 0, price.reserved)


def charge_for_failure(code: int, price: Price, spent_cents: float, prices: PriceTable) -> int:
    """What a failed job costs: nothing unless the caller was at fault."""
    if code not in CALLERS_FAULT:
        return 0
    return min(price.base + prices.credits(spent_cents), price.reserved)
