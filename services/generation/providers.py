"""What every image provider offers the generator: one task in, one image out, typed failures."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

TaskKind = Literal["generate", "edit"]


@dataclass(frozen=True)
class ImageTask:
    """One image to make. Edits carry the image and a mask (255 where the model may paint)."""

    kind: TaskKind
    prompt: str
    width: int = 1024
    height: int = 1024
    quality: str = "hd"  # "standard" or "hd"
    seed: int = 42
    image: np.ndarray | None = None
    mask: np.ndarray | None = None
    references: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class Cost:
    """Provider tokens and US cents."""

    tokens: int = 0
    cents: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.tokens + other.tokens, self.cents + other.cents)

    def __sub__(self, other: Cost) -> Cost:
        return Cost(self.tokens - other.tokens, self.cents - other.cents)

    def at_most(self, limit: Cost) -> Cost:
        """This cost with each part capped at the limit's (and never below zero)."""
        return Cost(max(min(self.tokens, limit.tokens), 0), max(min(self.cents, limit.cents), 0.0))

    def within(self, budget: Cost) -> bool:
        return self.tokens <= budget.tokens and self.cents <= budget.cents + 1e-9


@dataclass(frozen=True)
class TokenUsage:
    """What a token-billed call used, by kind (OpenAI's `usage`: input text and image tokens, and
    output tokens), each billed at its own rate."""

    text_tokens: int
    image_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class ProviderImage:
    """A provider's answer: the image at the provider's size and what it says it used."""

    image: np.ndarray
    model: str
    revised_prompt: str = ""
    tokens: int | None = None  # the provider's own count, when it reports one
    # What the call cost, priced from the provider's own usage by kind (None: actual_cost prices it).
    cost: Cost | None = None


class ContentRefused(Exception):
    """The provider refused the prompt or image (never retried, never sent elsewhere)."""


class ProviderFailure(Exception):
    """The call failed. `counts` says whether it speaks against the provider's health."""

    outcome = "error"

    def __init__(self, detail: str, *, counts: bool = True) -> None:
        super().__init__(detail)
        self.detail = detail
        self.counts = counts


class RateLimited(ProviderFailure):
    """HTTP 429; `retry_after_s` is what the provider asked for, if anything."""

    outcome = "rate_limited"

    def __init__(self, detail: str, retry_after_s: float | None) -> None:
        super().__init__(detail, counts=False)
        self.retry_after_s = retry_after_s


class ProviderTimeout(ProviderFailure):
    """The provider did not answer in time."""

    outcome = "timeout"


class MalformedOutput(ProviderFailure):
    """The provider answered with something that is not an image."""

    outcome = "malformed"


class Provider(Protocol):
    """An image provider."""

    name: str
    model: str
    can_edit: bool

    async def ready(self) -> bool: ...

    async def coming_back(self) -> bool:
        """Whether a provider that is not serving now is expected back within seconds (Triton
        restarting, its model loading again), rather than absent (a model never deployed)."""
        ...

    async def run(self, task: ImageTask, timeout_s: float) -> ProviderImage: ...

    def estimate(self, task: ImageTask) -> Cost: ...

    def actual_cost(self, task: ImageTask, tokens: int | None) -> Cost: ...

    async def close(self) -> None: ...


# US cents per image by quality and size, and the output tokens models that count tokens bill
# (OpenAI's published prices; gpt-image-1 bills tokens: 0.0005 c per text input token, 0.001 c per
# image input token, 0.004 c per output token). Override with GENERATION_PRICE_TABLE (JSON, same shape).
DEFAULT_PRICES: dict[str, dict[str, object]] = {
    "openai:gpt-image-1": {
        "tokens": {
            "standard": {"1024x1024": 1056, "1536x1024": 1584, "1024x1536": 1584},
            "hd": {"1024x1024": 4160, "1536x1024": 6240, "1024x1536": 6240},
        },
        "cents_per_output_token": 0.004,
        "cents_per_text_token": 0.0005,
        "cents_per_image_token": 0.001,
        "image_input_tokens": 600,
    },
    "openai:dall-e-3": {
        "cents": {
            "standard": {"1024x1024": 4.0, "1792x1024": 8.0, "1024x1792": 8.0},
            "hd": {"1024x1024": 8.0, "1792x1024": 12.0, "1024x1792": 12.0},
        }
    },
    "openai:dall-e-2": {"cents": {"standard": {"1024x1024": 2.0}, "hd": {"1024x1024": 2.0}}},
    # GPU time of one image on the diffusion model, as the operator prices it.
    "triton:diffusion": {"cents": {"standard": {"*": 0.2}, "hd": {"*": 0.4}}},
}


@dataclass
class PriceTable:
    """Prices per provider and model; an unknown model is priced like the provider's most expensive."""

    entries: dict[str, dict[str, object]] = field(default_factory=lambda: dict(DEFAULT_PRICES))

    @classmethod
    def load(cls, path: str) -> PriceTable:
        table = cls()
        if path:
            table.entries.update(json.loads(Path(path).read_text()))
        return table

    def _entry(self, provider: str, model: str) -> dict[str, object]:
        key = f"{provider}:{model}"
        if key in self.entries:
            return self.entries[key]
        same = [v for k, v in self.entries.items() if k.startswith(f"{provider}:")]
        if not same:
            raise KeyError(f"no price for {key}")
        return max(same, key=lambda e: self._max_cents(e))

    def _max_cents(self, entry: dict[str, object]) -> float:
        cents = entry.get("cents")
        if isinstance(cents, dict):
            return max(float(v) for by_size in cents.values() for v in by_size.values())
        return 1e9  # token-billed: dearest

    def estimate(self, provider: str, model: str, task: ImageTask, size: str) -> Cost:
        """What one call will cost at most: output tokens from the table, prompt and input images
        estimated (four characters a token)."""
        entry = self._entry(provider, model)
        quality = task.quality if task.quality in ("standard", "hd") else "hd"
        if "tokens" in entry:
            by_size = entry["tokens"][quality]  # type: ignore[index]
            output = int(by_size.get(size) or max(by_size.values()))
            text = math.ceil(len(task.prompt) / 4)
            images = (len(task.references) + (1 if task.image is not None else 0)) * int(entry["image_input_tokens"])  # type: ignore[call-overload]
            cents = (
                output * float(entry["cents_per_output_token"])  # type: ignore[arg-type]
                + text * float(entry["cents_per_text_token"])  # type: ignore[arg-type]
                + images * float(entry["cents_per_image_token"])  # type: ignore[arg-type]
            )
            return Cost(output + text + images, round(cents, 4))
        by_size = entry["cents"][quality]  # type: ignore[index]
        cents = by_size.get(size, by_size.get("*", max(by_size.values())))
        return Cost(0, float(cents))

    def priced(self, provider: str, model: str, usage: TokenUsage, tokens: int | None = None) -> Cost | None:
        """What a token-billed call cost from the usage it reported, each kind of token at its own
        rate (None for a model billed per image). `tokens` is the provider's total, when it sent one."""
        entry = self._entry(provider, model)
        if "tokens" not in entry:
            return None
        cents = (
            usage.output_tokens * float(entry["cents_per_output_token"])  # type: ignore[arg-type]
            + usage.text_tokens * float(entry["cents_per_text_token"])  # type: ignore[arg-type]
            + usage.image_tokens * float(entry["cents_per_image_token"])  # type: ignore[arg-type]
        )
        total = tokens if tokens is not None else usage.text_tokens + usage.image_tokens + usage.output_tokens
        return Cost(total, round(cents, 4))

    def actual(self, provider: str, model: str, task: ImageTask, size: str, tokens: int | None) -> Cost:
        """What a call cost: the provider's token count when it reports one (its cents scaled from the
        estimate's: used only when the provider gave no usage by kind, see `priced`), else the estimate."""
        estimate = self.estimate(provider, model, task, size)
        entry = self._entry(provider, model)
        if tokens is None or "tokens" not in entry:
            return estimate
        return Cost(tokens, round(estimate.cents * tokens / max(estimate.tokens, 1), 4))
