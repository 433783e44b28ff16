"""The generator's failure rules, with the real `openai` client against local servers speaking the
OpenAI images API (seeds 000, 001 and 003)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from services.common.stage import StageSettings
from services.generation.generator import (
    BudgetExceeded,
    ContentPolicyError,
    Generator,
    Outcome,
    QualityCheckFailed,
    Unavailable,
)
from services.generation.openai_images import OpenAIProvider
from services.generation.providers import Cost, ImageTask, PriceTable, ProviderImage, ProviderTimeout
from services.generation.quality import edit_problem
from services.generation.reliability import CircuitBreaker, RetryPolicy
from services.generation.server import GenerationServicer, GenerationSettings
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
    allow_private_urls: bool = True,  # the fakes' image URLs are on loopback
) -> Generator:
    providers = [
        OpenAIProvider(
            "sk-test", base_url=fake.base_url, model="gpt-image-1", name=name, allow_private_urls=allow_private_urls
        )
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


def test_a_refused_request_shows_openais_error_code_but_not_its_account_details(fakes: Fakes) -> None:
    primary, _ = fakes
    said = "Billing hard limit has been reached for organization org-SECRET42 (project proj_INTERNAL9)."
    primary.push(Reply("error", 400, "billing_hard_limit_reached", message=said))
    with pytest.raises(Unavailable) as info:
        run(generator(primary))
    shown = [str(info.value), *(attempt.detail for attempt in info.value.attempts)]
    assert any("HTTP 400 (billing_hard_limit_reached)" in text for text in shown), shown
    assert not any("SECRET42" in text or "Billing" in text for text in shown), shown


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


@pytest.mark.parametrize(("quality", "sent"), [("standard", "medium"), ("hd", "high")])
def test_an_edit_sends_the_quality_it_was_priced_at(fakes: Fakes, quality: str, sent: str) -> None:
    """Left out, a gpt-image model picks its own ("auto"), so a standard edit estimated (and
    budget-checked) at medium's 1056 output tokens could be billed high's 4160."""
    primary, _ = fakes
    texture = textured_image(256, 256, seed=3)
    mask = np.zeros((256, 256), np.uint8)
    mask[64:192, 64:192] = 255
    task = ImageTask(kind="edit", prompt="Add a marble vein", image=texture, mask=mask, quality=quality)
    run(generator(primary), task)
    references = ImageTask(kind="generate", prompt="A kitchen", quality=quality, references=(texture,))
    run(generator(primary), references)
    assert [r["path"] for r in primary.requests] == ["/v1/images/edits"] * 2
    assert [r["fields"].get("quality") for r in primary.requests] == [sent, sent]  # type: ignore[union-attr, attr-defined]


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


def servicer_settings(primary: FakeOpenAI) -> GenerationSettings:
    """A generation stage's settings with the fake OpenAI as its provider."""
    return GenerationSettings(
        stage=StageSettings("127.0.0.1:0", "", 1.0),
        openai_api_key="sk-test",
        openai_base_url=primary.base_url,
        openai_model="gpt-image-1",
        openai_timeout_s=10,
        openai_max_retries=2,
    )


def test_a_cancelled_half_open_trial_releases_the_breaker(fakes: Fakes) -> None:
    primary, backup = fakes
    clock = Clock()
    gen = generator(primary, backup, clock=clock, threshold=1)
    servicer = GenerationServicer(servicer_settings(primary), gen, PriceTable())
    primary.push(Reply("error", 500), Reply("slow", delay_s=2.0))

    async def scenario() -> tuple[str, Outcome]:
        await gen.run(TASK, PLENTY)  # the 500 opens the breaker
        clock.now += 61
        trial = asyncio.create_task(gen.run(TASK, PLENTY))
        while len(primary.requests) < 2:
            await asyncio.sleep(0.02)
        # While the one trial is out, the provider is not available (health, capabilities).
        busy = await servicer.availability(gen.providers[0])
        trial.cancel()  # the job cancelled, or the stage call's deadline
        with pytest.raises(asyncio.CancelledError):
            await trial
        after = await gen.run(TASK, PLENTY)
        await gen.close()
        return busy, after

    busy, after = asyncio.run(scenario())
    assert "trial" in busy
    assert outcomes(after) == ["ok"] and after.provider == "openai"
    assert gen.breakers["openai"].state == "closed"


def test_a_half_open_trial_answered_with_invalid_json_opens_the_breaker_again(fakes: Fakes) -> None:
    primary, backup = fakes
    clock = Clock()
    gen = generator(primary, backup, clock=clock, threshold=1)
    primary.push(Reply("error", 500), Reply("raw", body=b'{"created": 0, "data": [{"b64_json": "AAAA'))

    async def scenario() -> list[Outcome]:
        results = [await gen.run(TASK, PLENTY)]
        clock.now += 61
        results.append(await gen.run(TASK, PLENTY))  # the trial: invalid JSON
        assert gen.breakers["openai"].state == "open"
        clock.now += 61
        results.append(await gen.run(TASK, PLENTY))  # the next trial goes through
        await gen.close()
        return results

    results = asyncio.run(scenario())
    assert [outcomes(r) for r in results] == [["error", "ok"], ["malformed", "ok"], ["ok"]]
    assert results[-1].provider == "openai" and gen.breakers["openai"].opened_total == 2


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"created": 0, "data": [{"b64_json": "AAAA', "application/json"),
        (b"<html><body>502 Bad Gateway from a proxy</body></html>", "text/html"),
        (json.dumps({"created": 0, "data": "oops"}).encode(), "application/json"),
        (json.dumps({"created": 0, "data": [{"b64_json": 12345}]}).encode(), "application/json"),
        (json.dumps({"created": 0}).encode(), "application/json"),
        (b"[" * 100000, "application/json"),
    ],
    ids=["invalid-json", "html", "data-not-a-list", "numeric-b64", "no-data", "deeply-nested"],
)
def test_a_malformed_answer_fails_over_and_counts_against_the_provider(
    fakes: Fakes, body: bytes, content_type: str
) -> None:
    primary, backup = fakes
    primary.push(Reply("raw", body=body, content_type=content_type))
    gen = generator(primary, backup)
    result = run(gen)
    assert outcomes(result) == ["malformed", "ok"] and result.provider == "openai-backup"
    assert gen.breakers["openai"].consecutive_failures == 1


class _BrokenProvider(OpenAIProvider):
    """A provider whose client fails in a way nobody typed."""

    async def run(self, task: ImageTask, timeout_s: float) -> ProviderImage:
        raise LookupError("internal detail at /srv/provider.py")


def test_an_unexpected_exception_is_that_providers_failure_not_the_stages(fakes: Fakes) -> None:
    primary, backup = fakes
    broken = _BrokenProvider("sk-test", base_url=primary.base_url, name="openai")
    good = OpenAIProvider("sk-test", base_url=backup.base_url, name="openai-backup")
    gen = Generator([broken, good], breaker=lambda: CircuitBreaker(5, 60.0, Clock()))
    result = run(gen)
    assert outcomes(result) == ["error", "ok"] and result.provider == "openai-backup"
    assert "internal detail" not in result.attempts[0].detail
    assert gen.breakers["openai"].consecutive_failures == 1


def test_a_trickled_answer_times_out_on_the_whole_call(fakes: Fakes) -> None:
    primary, backup = fakes
    primary.default = Reply(byte_every_s=0.1)  # never silent for a second, never done
    started = time.monotonic()

    async def go() -> Outcome:
        gen = generator(primary, backup, timeout_s=1.0)
        try:
            return await asyncio.wait_for(gen.run(TASK, PLENTY), 30)
        finally:
            await gen.close()

    result = asyncio.run(go())
    assert outcomes(result) == ["timeout", "timeout", "ok"] and result.provider == "openai-backup"
    assert time.monotonic() - started < 15


def test_an_image_url_on_a_private_address_is_refused_unless_allowed(fakes: Fakes) -> None:
    primary, backup = fakes
    primary.push(Reply("url"))
    result = run(generator(primary, backup, allow_private_urls=False))
    assert outcomes(result) == ["malformed", "ok"] and result.provider == "openai-backup"
    detail = result.attempts[0].detail
    assert "loopback" in detail and "urlopen" not in detail and "Errno" not in detail


def test_a_slow_image_url_neither_blocks_the_event_loop_nor_outlasts_the_call(fakes: Fakes) -> None:
    primary, _ = fakes
    primary.push(Reply("url", size="8x8", byte_every_s=0.05))  # about 12 s for the whole file
    provider = OpenAIProvider("sk-test", base_url=primary.base_url, allow_private_urls=True)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    async def go() -> float:
        beside = asyncio.create_task(ticker())
        started = time.monotonic()
        try:
            with pytest.raises(ProviderTimeout):
                await provider.run(TASK, 1.0)
            return time.monotonic() - started
        finally:
            beside.cancel()
            await provider.close()

    took = asyncio.run(go())
    assert took < 5 and ticks >= 10  # the loop kept running other work while the image came


def test_a_retry_after_over_the_longest_wait_fails_over_at_once(fakes: Fakes) -> None:
    primary, backup = fakes
    primary.push(Reply("error", 429, "rate_limit_exceeded", headers=(("Retry-After", "3600"),)))
    waits: list[float] = []
    result = run(generator(primary, backup, waits=waits))
    assert waits == [] and outcomes(result) == ["rate_limited", "ok"] and result.provider == "openai-backup"
    assert "3600 s" in result.attempts[0].detail


def test_a_retry_after_that_is_not_a_number_is_ignored(fakes: Fakes) -> None:
    primary, _ = fakes
    primary.push(Reply("error", 429, "rate_limit_exceeded", headers=(("retry-after-ms", "nan"),)))
    waits: list[float] = []
    result = run(generator(primary, waits=waits))
    assert outcomes(result) == ["rate_limited", "ok"] and 0.25 <= waits[0] <= 0.5  # the backoff's own wait
    assert "nan" not in result.attempts[0].detail


def test_an_exhausted_quota_fails_over_at_once_without_waiting(fakes: Fakes) -> None:
    """OpenAI's 429 for an account out of credit (type and code insufficient_quota) is no rate
    limit: retrying after a backoff only fails again."""
    primary, backup = fakes
    primary.default = Reply("error", 429, "insufficient_quota", message="You exceeded your current quota")
    waits: list[float] = []
    result = run(generator(primary, backup, waits=waits))
    assert outcomes(result) == ["error", "ok"] and result.provider == "openai-backup"
    assert waits == [] and len(primary.requests) == 1
    assert result.attempts[0].detail == "HTTP 429 (insufficient_quota)"


def test_an_image_far_from_the_shape_asked_for_is_malformed(fakes: Fakes) -> None:
    primary, backup = fakes
    primary.push(Reply(size="4000x300"))
    result = run(generator(primary, backup))
    assert outcomes(result) == ["malformed", "ok"] and result.provider == "openai-backup"
    assert "4000x300" in result.attempts[0].detail
    primary.push(Reply(size="1024x1000"))  # a close size is an answer
    close = run(generator(primary))
    assert outcomes(close) == ["ok"] and close.image is not None and close.image.shape == (1000, 1024, 3)


def test_a_provider_reporting_more_than_the_budget_is_counted_at_the_budget(fakes: Fakes) -> None:
    primary, _ = fakes
    primary.push(Reply(tokens=10_000_000))
    budget = Cost(10000, 20.0)
    result = run(generator(primary), budget=budget)
    assert result.cost == budget  # what the job reports, and is billed, never passes its budget
    assert outcomes(result) == ["ok"] and "10000000 tokens" in result.attempts[0].detail


def test_an_output_the_stage_cannot_encode_is_refused_before_the_provider_is_paid(fakes: Fakes) -> None:
    """An unknown format was refused only by the encoder, after the provider had been paid; an
    enlargement of any size allocated what it asked for."""
    from google.rpc import error_details_pb2

    from render.generation.v1 import generation_service_pb2 as gen_pb
    from render.imaging.v1 import imaging_pb2
    from renderkit.errors import status_details, unpack_detail

    primary, _ = fakes
    servicer = GenerationServicer(servicer_settings(primary), generator(primary), PriceTable())
    refused: list[tuple[str, set[str]]] = []

    class Context:
        async def abort(self, code: object, message: str, trailing_metadata: Any = ()) -> None:
            bad = unpack_detail(status_details(trailing_metadata), error_details_pb2.BadRequest)
            refused.append((getattr(code, "name", ""), {v.field for v in bad.field_violations} if bad else set()))  # type: ignore[attr-defined]
            raise RuntimeError("aborted")

    outputs = [
        imaging_pb2.OutputSpec(format=99),  # type: ignore[arg-type]
        imaging_pb2.OutputSpec(renditions=[imaging_pb2.Rendition(name="u", max_side=50_000, upscale=True)]),
    ]
    for output in outputs:
        request = gen_pb.GenerateRequest(
            prompt="a kitchen",
            width=1024,
            height=1024,
            output=output,
            budget=gen_pb.Budget(max_tokens=10**6, max_cents=1e6),
        )
        with pytest.raises(RuntimeError, match="aborted"):
            asyncio.run(servicer.Generate(request, Context()))  # type: ignore[arg-type]
    assert refused == [("INVALID_ARGUMENT", {"output.format"}), ("INVALID_ARGUMENT", {"output.renditions[0].max_side"})]
    assert not primary.requests


class _Loading(OpenAIProvider):
    """A provider that reports itself not serving for its first `unready` questions (a Triton
    model loading again after a restart)."""

    unready = 3

    async def ready(self) -> bool:
        self.unready -= 1
        return self.unready < 0

    async def coming_back(self) -> bool:
        return True


def test_a_provider_loading_again_is_waited_for_not_failed_over_at_once(fakes: Fakes) -> None:
    """A Triton restart of ~10 s failed every generation job in it at once, as "no configured
    image provider can do this" (found by a review): nothing is spent yet, so the run waits."""
    waits: list[float] = []
    gen = generator(fakes[0], waits=waits)
    gen.providers[0] = _Loading("sk-test", base_url=fakes[0].base_url, model="gpt-image-1", name="openai")
    outcome = run(gen)
    assert outcome.image is not None and waits[:3] == [0.5, 0.5, 0.5]


def test_a_provider_that_stays_unready_fails_saying_it_is_not_serving(fakes: Fakes) -> None:
    gen = generator(fakes[0])
    gen.providers[0] = _Loading("sk-test", base_url=fakes[0].base_url, model="gpt-image-1", name="openai")
    gen.providers[0].unready = 10**9  # type: ignore[attr-defined]
    started = time.monotonic()
    with pytest.raises(Unavailable, match="serving now; retry later"):
        run(gen, deadline=time.monotonic() + gen.call_timeout_floor_s + 0.3)  # the wait within the call's time
    assert time.monotonic() - started < 5


def test_a_reference_image_is_sent_in_its_own_proportions(fakes: Fakes) -> None:
    """A 1:4 plank swatch for a landscape room stays 1:4 (it was stretched to the room's 3:2)."""
    primary, _ = fakes
    plank = textured_image(400, 1600)
    task = ImageTask(
        kind="generate", prompt="A room with these oak planks", width=1792, height=1024, references=(plank,)
    )
    run(generator(primary), task)
    request = primary.requests[0]
    assert request["path"] == "/v1/images/edits" and request["images"] == 1
    assert request["fields"]["size"] == "1536x1024"  # type: ignore[index]
    assert request["image_shapes"] == [(1536, 384)]  # (height, width): the long side the size's, the shape kept
