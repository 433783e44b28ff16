"""What a tenant may do and holds: its limits, and the errors a submit over them raises."""

from __future__ import annotations

import math
from dataclasses import dataclass

# The least request rate a tenant may have (one submit a day): a slower one would make the submit
# script's intervals and expiries too large for Redis.
MIN_RATE_PER_S = 1 / 86400


class LimitError(RuntimeError):
    """A submit over one of the tenant's limits."""


@dataclass(frozen=True)
class TenantLimits:
    """A tenant's limits (0 for rate or quota: none)."""

    rate_per_s: float = 10.0  # submits per second, on average
    burst: int = 20  # submits at once, above the rate
    concurrency: int = 2  # running jobs at once
    queue_quota: int = 200  # unfinished (queued or running) jobs
    weight: float = 1.0  # share of the dispatchers, against other tenants' weights

    def problems(self) -> list[tuple[str, str]]:
        """What is wrong with these values, by field."""
        out = []
        if not (self.rate_per_s == 0 or MIN_RATE_PER_S <= self.rate_per_s <= 100000):  # NaN fails both
            out.append(("rate_per_s", "must be 0 (no limit) or between 1/86400 (one a day) and 100000"))
        if not 1 <= self.burst <= 100000:
            out.append(("burst", "must be between 1 and 100000"))
        if not 1 <= self.concurrency <= 10000:
            out.append(("concurrency", "must be between 1 and 10000"))
        if not 0 <= self.queue_quota <= 10_000_000:
            out.append(("queue_quota", "must be between 0 (no limit) and 10000000"))
        if not (math.isfinite(self.weight) and 0.01 <= self.weight <= 1000):
            out.append(("weight", "must be between 0.01 and 1000"))
        return out


class RateLimited(LimitError):
    """The tenant is over its request rate; `retry_after_s` says when a submit will be accepted."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"retry in {retry_after_s:.2f} s")
        self.retry_after_s = retry_after_s


class QuotaExceeded(LimitError):
    """The tenant has as many unfinished jobs as its quota allows."""

    def __init__(self, quota: int) -> None:
        super().__init__(f"{quota} unfinished jobs")
        self.quota = quota


@dataclass(frozen=True)
class TenantUsage:
    """What a tenant holds now."""

    unfinished: int
    queued: int
    running: int


class InsufficientCredits(LimitError):
    """The tenant's balance does not cover the job's price: nothing was created."""

    def __init__(self, balance: int, price: int) -> None:
        super().__init__(f"the price is {price} credits; the balance is {balance}")
        self.balance = balance
        self.price = price
