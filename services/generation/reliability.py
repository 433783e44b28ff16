"""Per-provider circuit breakers and the retry delays of rate-limited calls (seeds 000 and 001)."""

from __future__ import annotations

import enum
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from renderkit.fetch import http_date_wait


class BreakerState(enum.StrEnum):
    """A breaker lets calls through when closed, none when open and one trial when half-open."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after `threshold` consecutive failures, stays open `open_s`, then lets one trial through.

    A successful trial closes it; a failed one opens it for another `open_s`. Calls that say nothing
    about the provider's health (a rate limit, a refused prompt, a call cancelled by its caller)
    release the trial without a verdict. Every call let through must end in exactly one of
    success, failure or neutral: a trial never released would refuse every call for good.
    """

    def __init__(self, threshold: int = 5, open_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = max(1, threshold)
        self.open_s = open_s
        self._clock = clock
        self._lock = threading.Lock()
        self._opened_at: float | None = None
        self._trial = False
        self.consecutive_failures = 0
        self.calls_total = 0
        self.failures_total = 0
        self.opened_total = 0

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state()

    def _state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.open_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def accepting(self) -> bool:
        """Whether a call would be let through now: closed, or half-open with its trial free."""
        with self._lock:
            state = self._state()
            return state is BreakerState.CLOSED or (state is BreakerState.HALF_OPEN and not self._trial)

    def allow(self) -> bool:
        """Whether a call may go out now (in half-open, only the one trial)."""
        with self._lock:
            state = self._state()
            if state is BreakerState.OPEN or (state is BreakerState.HALF_OPEN and self._trial):
                return False
            self._trial = state is BreakerState.HALF_OPEN
            self.calls_total += 1
            return True

    def success(self) -> None:
        """The provider answered properly: close."""
        with self._lock:
            self._opened_at = None
            self._trial = False
            self.consecutive_failures = 0

    def failure(self) -> None:
        """The provider failed (5xx, timeout, unreachable, malformed answer)."""
        with self._lock:
            self.failures_total += 1
            self.consecutive_failures += 1
            if self._trial or (self._opened_at is None and self.consecutive_failures >= self.threshold):
                self._opened_at = self._clock()
                self.opened_total += 1
            self._trial = False

    def neutral(self) -> None:
        """The call said nothing about the provider's health; a half-open trial may be tried again."""
        with self._lock:
            self._trial = False


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one provider before failing over to the next."""

    rate_limit_retries: int = 3
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    timeout_retries: int = 1
    quality_retries: int = 1

    def too_long(self, retry_after_s: float | None) -> bool:
        """Whether the provider asks to wait longer than `backoff_max_s`: waiting less would only be
        refused again, and waiting that long holds the job, so the caller fails over at once."""
        return retry_after_s is not None and retry_after_s > self.backoff_max_s

    def backoff(self, retry: int, retry_after_s: float | None, rng: random.Random) -> float:
        """The wait before retry number `retry` (from 1): exactly the provider's Retry-After when it
        sent one (at most `backoff_max_s`: see too_long), else exponential backoff with equal jitter
        (half fixed, half random)."""
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.backoff_max_s)
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (retry - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


def _number(text: str) -> float | None:
    """A header's finite number; None when it is not a number or not finite (nan and inf say nothing)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait a 429 asks for: `retry-after-ms` (OpenAI), else `Retry-After` in seconds or as a date.
    A value that is not a finite number is ignored, as if the header were absent."""
    lowered = {k.lower(): v for k, v in headers.items()}
    milliseconds = _number(lowered.get("retry-after-ms", ""))
    if milliseconds is not None:
        return max(milliseconds / 1000.0, 0.0)
    value = lowered.get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return max(seconds, 0.0)
    return http_date_wait(value, now)
