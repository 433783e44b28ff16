"""The generator's failure rules, with the real `openai` client against local servers speaking the
OpenAI images API (seeds 000, 001 and 003)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import numpy as np
import pytest

from services.generation.generator import (
    BudgetExceeded,
    ContentPolicyError,
    Generator,
    Outcome,
    QualityCheckFailed,
    Unavailable,
)
from services.generation.openai_images import OpenAIProvider
from services.generation.providers import Cost, ImageTask
from services.generation.quality import edit_problem
from services.generation.reliability import CircuitBreaker, RetryPolicy
from tests.openai_fake import FakeOpenAI, Reply, fake_openai, textured_image

Fakes = tuple[FakeOpenAI, FakeOpenAI]
PLENTY = Cost(100000, 1000.0)
TASK = ImageTask(kind="generate", prompt="A bright kitchen with oak floors", quality="standard")


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    with fake_openai() as primary, fake_openai() as backup:
        yield primary, backup


@pytest.fixture()
def fakes(servers: tuple[FakeOpenAI, FakeOpenAI]) -> tuple[FakeOpenAI, FakeOpenAI]:
    for server in servers:
        server.reset()
        server.requests.clear()
    return servers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def generator(
    *fakes: FakeOpenAI,
    clock: Clock | None = None,
    threshold: int = 5,
    timeout_s: float = 10.0,
    waits: list[float] | None = None,
) -> Generator:
    providers = [
        OpenAIProvider("sk-test", base_url=fake.base_url, model="gpt-image-1", name=name)
        for fake, name in zip(fakes, ("openai", "openai-backup"), strict=False)
    ]

    async def sleep(seconds: float) -> None:
        if waits is not None:
            waits.append(seconds)

    return Generator(
        providers,
        policy=RetryPolicy(rate_limit_retries=2, backoff_base_s=0.5, backoff_max_s=8.0),
        breaker=lambda: CircuitBreaker(threshold, 60.0, clock or Clock()),
        call_timeout_s=timeout_s,
        rng=random.Random(7),
        sleep=sleep,
    )


def run(gen: Generator, task: ImageTask = TASK, budget: Cost = PLENTY, **kwargs: object) -> Outcome:
    async def go() -> Outcome:
        try:
            return await gen.run(task, budget, **kwargs)  # type: ignore[arg-type]
        finally:
            await gen.close()

    return asyncio.run(go())


def outcomes(outcome: Outcome | Exception) -> list[str]:
    return [a.outcome for a in outcome.attempts]  # type: ignore[union-attr]


def test_success_returns_the_image_the_revised_prompt_and_the_reported_tokens(fakes: Fakes) -> None:
    primary, _ = fakes
    result = run(generator(primary))
    assert result.image is not None and result.image.shape == (1024, 1024, 3)
    assert result.revised_prompt.startswith("Revised: A bright kitchen")
    assert result.cost == Cost(1100, result.cost.cents) and result.cost.cents > 0
    assert result.estimate.tokens >= 1056  # the table's output tokens plus the prompt
    assert primary.requests[0]["path"] == "/v1/images/generations"
    assert primary.requests[0]["fields"]["quality"] == "medium"  # type: ignore[index]


def test_rate_limits_back_off_honouring_retry_after(fakes: Fakes) -> None:
    primary, _ = fakes
    primary.push(
        Reply("error", 429, "rate_limit_exceeded", headers=(("retry-after-ms", "250"),)),
        Reply("error", 429, "rate_limit_exceeded", headers=(("Retry-After", "3"),)),
    )
    waits: list[float] = []
    result = run(generator(primary, waits=waits))
    assert outcomes(result) == ["rate_limited", "rate_limited", "ok"]
    assert waits == [0.25, 3.0]


def test_rate_limits_without_retry_after_back_off_exponentially_with_jitter(fakes: Fakes) -> None:
    primary, backup = fakes
    primary.default = Reply("error", 429, "rate_limit_exceeded")
    waits: list[float] = []
    result = run(generator(primary, backup, waits=waits))
    # Two retries (0.25-0.5 s, then 0.5-1 s), then the next provider.
    assert len(waits) == 2 and 0.25 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1.0
    assert outcomes(result) == ["rate_limited", "rate_limited", "rate_limited", "ok"]
    assert result.provider == "openai-backup" and len(primary.requests) == 3


def test_a_server_error_fails_over_to_the_next_provider(fakes: Fakes) -> None:
    primary, backup = fakes
    primary.push(Reply("error", 500))
    result = run(generator(primary, backup))
    assert result.provider == "openai-backup"
    assert outcomes(result) == ["error", "ok"] and "HTTP 500" in result.attempts[0].detail
    assert len(primary.requests) == 1 and len(backup.requests) == 1


def test_a_server_error_with_no_other_provider_is_provider_unavailable(fakes: Fakes) -> None:
    primary, _ = fakes
    primary.push(Reply("error", 503))
    with pytest.raises(Unavailable, match="HTTP 503"):
        run(generator(primary))


def test_a_timeout_is_retried_once(fakes: Fakes) -> None:
    primary, backup = fakes
    primary.push(Reply("slow", delay_s=1.5))
    result = run(generator(primary, backup, timeout_s=0.8))
    assert outcomes(result) == ["timeout", "ok"] and result.provider == "openai"
    primary.push(Reply("slow", delay_s=1.5), Reply("slow", delay_s=1.5))
    result = run(generator(primary, backup, timeout_s=0.8))
    assert outcomes(result) == ["timeout", "timeout", "ok"] and result.provider == "openai-backup"


def test_content_policy_fails_at_once_without_retry_or_failover(fakes: Fakes) -> None:
    primary, backup = fakes
    primary.push(Reply("error", 400, "content_policy_violation"))
    with pytest.raises(ContentPolicyError) as info:
        run(generator(primary, backup))
    assert [a.outcome for a in info.value.attempts] == ["content_policy"]
    assert len(primary.requests) == 1 and not backup.requests


def test_a_malformed_image_counts_against_the_provider_and_fails_over(fakes: Fakes) -> None:
    primary, backup = fakes
    primary.push(Reply("malformed"))
    gen = generator(primary, backup)
    result = run(gen)
    assert outcomes(result) == ["malformed", "ok"] and result.provider == "openai-backup"
    assert gen.breakers["openai"].consecutive_failures == 1


@pytest.mark.parametrize("kind", ["blank", "black"])
def test_blank_or_black_images_are_retried_then_fail_the_quality_check(fakes: Fakes, kind: str) -> None:
    primary, _ = fakes
    primary.push(Reply(kind))
    result = run(generator(primary))
    assert outcomes(result) == ["quality_check_failed", "ok"]
    assert result.cost.tokens == 2200  # the rejected image was billed too
    primary.push(Reply(kind), Reply(kind))
    with pytest.raises(QualityCheckFailed, match=kind):
        run(generator(primary))


def test_an_edit_that_hands_the_input_back_fails_the_quality_check(fakes: Fakes) -> None:
    primary, _ = fakes
    texture = textured_image(256, 256, seed=3)
    mask = np.zeros((256, 256), np.uint8)
    mask[64:192, 64:192] = 255
    task = ImageTask(kind="edit", prompt="Add a marble vein", image=texture, mask=mask)
    primary.push(Reply("echo"), Reply("echo"))
    with pytest.raises(QualityCheckFailed, match="copy of the input"):
        run(generator(primary), task, check=lambda out: edit_problem(texture, mask, out))
    result = run(generator(primary), task, check=lambda out: edit_problem(texture, mask, out))
    assert outcomes(result) == ["ok"]


def test_the_breaker_opens_after_repeated_failures_and_closes_after_a_good_trial(fakes: Fakes) -> None:
    primary, backup = fakes
    clock = Clock()
    gen = generator(primary, backup, clock=clock, threshold=2)
    primary.default = Reply("error", 500)

    async def scenario() -> list[Outcome]:
        results = [await gen.run(TASK, PLENTY) for _ in range(3)]
        assert gen.breakers["openai"].state == "open"
        calls_while_open = len(primary.requests)
        results.append(await gen.run(TASK, PLENTY))  # skipped: no request reaches the provider
        assert len(primary.requests) == calls_while_open
        clock.now += 61  # half-open: one trial goes through
        primary.default = Reply()
        assert gen.breakers["openai"].state == "half_open"
        results.append(await gen.run(TASK, PLENTY))
        await gen.close()
        return results

    results = asyncio.run(scenario())
    assert [outcomes(r) for r in results] == [
        ["error", "ok"],
        ["error", "ok"],
        ["circuit_open", "ok"],
        ["circuit_open", "ok"],
        ["ok"],
    ]
    assert results[-1].provider == "openai"
    assert gen.breakers["openai"].state == "closed" and gen.breakers["openai"].opened_total == 1


def test_a_failed_half_open_trial_opens_the_breaker_again(fakes: Fakes) -> None:
    primary, backup = fakes
    clock = Clock()
    gen = generator(primary, backup, clock=clock, threshold=1)
    primary.default = Reply("error", 500)

    async def scenario() -> list[Outcome]:
        first = await gen.run(TASK, PLENTY)
        clock.now += 61
        trial = await gen.run(TASK, PLENTY)
        await gen.close()
        return [first, trial]

    first, trial = asyncio.run(scenario())
    assert outcomes(first) == ["error", "ok"] and outcomes(trial) == ["error", "ok"]
    assert gen.breakers["openai"].state == "open" and gen.breakers["openai"].opened_total == 2


def test_over_budget_fails_before_any_request(fakes: Fakes) -> None:
    primary, _ = fakes
    with pytest.raises(BudgetExceeded, match="budget"):
        run(generator(primary), budget=Cost(500, 100.0))  # 1056 output tokens do not fit in 500
    with pytest.raises(BudgetExceeded):
        run(generator(primary), budget=Cost(100000, 1.0))  # about 4.2 cents do not fit in 1
    assert not primary.requests


def test_a_dry_run_estimates_without_calling(fakes: Fakes) -> None:
    primary, _ = fakes
    gen = generator(primary)
    outcome = asyncio.run(gen.dry_run(TASK, PLENTY))
    assert outcome.image is None and outcome.provider == "openai" and outcome.estimate.cents > 0
    assert not primary.requests


def test_an_image_given_by_url_is_downloaded_not_linked(fakes: Fakes) -> None:
    primary, _ = fakes
    primary.push(Reply("url"))
    result = run(generator(primary))
    assert result.image is not None and result.image.shape == (1024, 1024, 3)
    assert len(primary.requests) == 1
