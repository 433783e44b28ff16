"""The generator: one image task over a failover list of providers, by the seeds' rules.

- content policy: the job fails with content_policy; no retry and no other provider;
- rate limits: exponential backoff with jitter, honouring Retry-After, then the next provider;
- timeout: one retry, then the next provider;
- 5xx, unreachable or malformed answers: the next provider at once; so is any exception a provider
  raises that is not one of its typed failures (it is logged, and counts as that provider's failure);
- each provider sits behind a circuit breaker; an open breaker skips it; every call tells its breaker
  how it ended, a cancelled one included (neutral: the caller went away, the provider said nothing),
  so a half-open breaker's one trial is always released;
- every output passes the quality check, with one retry (billed attempts count toward the budget);
- before every call the estimate is checked against what is left of the budget: over it, the task
  fails with budget_exceeded before anything is spent; a provider that reports spending more than
  was left is counted at what was left (its attempt's detail says what it reported), so the cost
  reported, and billed, never passes the budget.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from opentelemetry.trace import SpanKind

from renderkit import telemetry
from services.generation.providers import (
    ContentRefused,
    Cost,
    ImageTask,
    Provider,
    ProviderFailure,
    ProviderImage,
    ProviderTimeout,
    RateLimited,
)
from services.generation.quality import quality_problem
from services.generation.reliability import CircuitBreaker, RetryPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    provider: str
    outcome: str
    detail: str = ""


@dataclass
class Outcome:
    """What a task produced, or (on a dry run) would have cost."""

    provider: str
    model: str
    image: np.ndarray | None
    revised_prompt: str = ""
    cost: Cost = field(default_factory=Cost)
    estimate: Cost = field(default_factory=Cost)
    attempts: list[Attempt] = field(default_factory=list)


class GenerationError(Exception):
    """A task failed; `reason` is the job error code's name."""

    reason = "PROVIDER_UNAVAILABLE"

    def __init__(self, message: str, attempts: Sequence[Attempt] = (), cost: Cost | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = list(attempts)
        self.cost = cost or Cost()


class ContentPolicyError(GenerationError):
    reason = "CONTENT_POLICY"


class BudgetExceeded(GenerationError):
    reason = "BUDGET_EXCEEDED"


class QualityCheckFailed(GenerationError):
    reason = "QUALITY_CHECK_FAILED"


class Unavailable(GenerationError):
    reason = "PROVIDER_UNAVAILABLE"


# How long a run waits for a provider that can do its task but is not serving (a Triton restart
# takes ~10 s), polling this often; it leaves at least call_timeout_floor_s of the call's time.
NOT_SERVING_WAIT_S = 30.0
NOT_SERVING_POLL_S = 0.5


class Generator:
    """Runs tasks over providers in failover order, each behind its breaker."""

    call_timeout_floor_s = 5.0

    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        policy: RetryPolicy | None = None,
        breaker: Callable[[], CircuitBreaker] = CircuitBreaker,
        call_timeout_s: float = 120.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_event: Callable[[str, str], None] = lambda provider, outcome: None,
    ) -> None:
        self.providers = list(providers)
        self.policy = policy or RetryPolicy()
        self.breakers = {p.name: breaker() for p in self.providers}
        self.call_timeout_s = call_timeout_s
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.on_event = on_event

    async def close(self) -> None:
        for provider in self.providers:
            await provider.close()

    async def _eligible(self, task: ImageTask) -> list[Provider]:
        """Providers that can do the task and are serving (a Triton model may not be loaded)."""
        able = [p for p in self.providers if task.kind == "generate" or p.can_edit]
        return [p for p in able if await p.ready()]

    async def dry_run(self, task: ImageTask, budget: Cost) -> Outcome:
        """The provider that would be called first, and its estimate; BudgetExceeded when over.

        The first serving provider whose breaker lets a call through (else the first serving one); the
        providers after the one chosen are not asked whether they serve (a dry run stays cheap)."""
        first_ready: Provider | None = None
        chosen: Provider | None = None
        for provider in self.providers:
            if not (task.kind == "generate" or provider.can_edit) or not await provider.ready():
                continue
            first_ready = first_ready or provider
            if self.breakers[provider.name].accepting:
                chosen = provider
                break
        chosen = chosen or first_ready
        if chosen is None:
            raise Unavailable("no configured image provider can do this")
        estimate = chosen.estimate(task)
        if not estimate.within(budget):
            raise BudgetExceeded(over_budget(estimate, budget))
        return Outcome(provider=chosen.name, model=chosen.model, image=None, estimate=estimate)

    async def run(
        self,
        task: ImageTask,
        budget: Cost,
        *,
        deadline: float | None = None,
        check: Callable[[np.ndarray], str | None] = quality_problem,
    ) -> Outcome:
        """Runs the task; every output must pass `check` (the quality check by default)."""
        attempts: list[Attempt] = []
        spent = Cost()
        first_estimate: Cost | None = None
        quality_failed = ""
        candidates = await self._eligible(task)
        able = [p for p in self.providers if task.kind == "generate" or p.can_edit]
        # One that can do it but is not serving now (Triton restarting, its model loading again) is
        # usually back within seconds: wait for it, within the call's time, rather than fail a job
        # on which nothing was spent yet (the gateway never repeats a generation call). One that is
        # absent (a model never deployed) is not waited for.
        returning = [p for p in able if await p.coming_back()] if not candidates else []
        waited_until = time.monotonic() + NOT_SERVING_WAIT_S
        if deadline is not None:
            waited_until = min(waited_until, deadline - self.call_timeout_floor_s)
        while not candidates and returning and time.monotonic() + NOT_SERVING_POLL_S < waited_until:
            await self.sleep(NOT_SERVING_POLL_S)
            candidates = await self._eligible(task)
        if not candidates:
            raise Unavailable(
                "no image provider that can do this is serving now; retry later"
                if returning
                else "no configured image provider can do this"
            )

        def note(provider: str, outcome: str, detail: str = "") -> None:
            attempts.append(Attempt(provider, outcome, detail))
            self.on_event(provider, outcome)
            log.info("provider %s: %s %s", provider, outcome, detail)

        for provider in candidates:
            name = provider.name
            breaker = self.breakers[name]
            rate_retries = timeouts = quality_retries = 0
            while True:
                estimate = provider.estimate(task)
                if first_estimate is None:
                    first_estimate = estimate
                if not (spent + estimate).within(budget):
                    raise BudgetExceeded(over_budget(spent + estimate, budget), attempts, spent)
                if not breaker.allow():
                    why = "its breaker is open" if breaker.state == "open" else "its breaker's one trial is under way"
                    note(name, "circuit_open", f"the provider failed repeatedly; {why}")
                    break
                left = self.call_timeout_s
                if deadline is not None:
                    left = min(left, deadline - time.monotonic())
                if left <= 0.5:
                    raise Unavailable("no time was left for the image provider", attempts, spent)
                try:
                    answer = await self._call(provider, breaker, task, left)
                except ContentRefused as exc:
                    note(name, "content_policy", str(exc))
                    raise ContentPolicyError(str(exc), attempts, spent) from None
                except RateLimited as exc:
                    rate_retries += 1
                    if rate_retries > self.policy.rate_limit_retries:
                        note(name, exc.outcome, f"{exc.detail}; gave up after {rate_retries - 1} retries")
                        break
                    if self.policy.too_long(exc.retry_after_s):
                        asked = f"{exc.retry_after_s:.0f} s"
                        note(name, exc.outcome, f"{exc.detail}; the provider asks for {asked}, over the longest wait")
                        break
                    wait = self.policy.backoff(rate_retries, exc.retry_after_s, self.rng)
                    if deadline is not None and time.monotonic() + wait >= deadline - 0.5:
                        note(name, exc.outcome, f"{exc.detail}; the wait ({wait:.1f} s) exceeds the time left")
                        break
                    note(name, exc.outcome, f"{exc.detail}; retrying in {wait:.2f} s")
                    await self.sleep(wait)
                    continue
                except ProviderTimeout as exc:
                    timeouts += 1
                    note(name, exc.outcome, exc.detail)
                    if timeouts <= self.policy.timeout_retries:
                        continue
                    break
                except ProviderFailure as exc:
                    note(name, exc.outcome, exc.detail)
                    break
                reported = answer.cost if answer.cost is not None else provider.actual_cost(task, answer.tokens)
                cost = reported.at_most(budget - spent)
                spent = spent + cost
                overspent = ""
                if cost != reported:
                    overspent = (
                        f"the provider reported {reported.tokens} tokens, {reported.cents:.2f} cents, more than "
                        f"the job's budget had left; counted as {cost.tokens} tokens, {cost.cents:.2f} cents"
                    )
                    log.warning("provider %s: %s", name, overspent)
                # Off the event loop: an edit's check resizes the answer to the texture's size.
                problem = await asyncio.to_thread(check, answer.image)
                if problem:
                    quality_failed = problem
                    note(name, "quality_check_failed", "; ".join(filter(None, (problem, overspent))))
                    quality_retries += 1
                    if quality_retries <= self.policy.quality_retries:
                        continue
                    break
                note(name, "ok", overspent)
                return Outcome(
                    provider=name,
                    model=answer.model,
                    image=answer.image,
                    revised_prompt=answer.revised_prompt,
                    cost=spent,
                    estimate=first_estimate,
                    attempts=attempts,
                )
        if quality_failed and attempts and attempts[-1].outcome == "quality_check_failed":
            message = f"the generated image failed the quality check: {quality_failed}"
            raise QualityCheckFailed(message, attempts, spent)
        summary = "; ".join(
            f"{a.provider}: {a.outcome}" + (f" ({a.detail})" if a.detail else "") for a in attempts[-4:]
        )
        raise Unavailable(f"no image provider could make the image ({summary})", attempts, spent)

    async def _call(self, provider: Provider, breaker: CircuitBreaker, task: ImageTask, left: float) -> ProviderImage:
        """One call, whose outcome its breaker always hears: success, failure (a failure that
        counts, or any exception that is not a typed failure: it becomes ProviderFailure, so the
        next provider is tried) or neutral (a rate limit, a refusal, the caller cancelling)."""
        try:
            with telemetry.tracer().start_as_current_span(
                f"provider {provider.name}",
                kind=SpanKind.CLIENT,
                attributes={telemetry.PROVIDER: provider.name, "render.task": task.kind},
            ):
                answer = await provider.run(task, left)
        except ContentRefused:
            breaker.neutral()
            raise
        except ProviderFailure as exc:
            if exc.counts:
                breaker.failure()
            else:
                breaker.neutral()
            raise
        except Exception as exc:
            breaker.failure()
            log.exception("provider %s failed unexpectedly", provider.name)
            raise ProviderFailure("the provider's answer could not be handled (the log has the detail)") from exc
        except BaseException:
            breaker.neutral()  # cancelled (the job, or the stage call's deadline): no verdict
            raise
        breaker.success()
        return answer


def over_budget(estimate: Cost, budget: Cost) -> str:
    return (
        f"the job's budget ({budget.tokens} tokens, {budget.cents:.2f} cents) does not cover the next image "
        f"(estimated {estimate.tokens} tokens, {estimate.cents:.2f} cents in all)"
    )
