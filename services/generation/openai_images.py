"""The OpenAI images provider: generate (with reference images through the edit endpoint) and edit.

The client's own retries are off (`max_retries=0`): the generator decides about retries, so it can
honour Retry-After, retry a timeout once, count failures for the breaker and fail over.

A call's timeout bounds the whole call on the wall clock, the answer and the download of an image
URL included: the client's own timeout restarts with every byte read, so a provider trickling its
answer never reached it. The answer is read as the API documents it and anything else (not JSON,
no image, a field of the wrong type, an image of the wrong shape) is a malformed answer, never an
exception of some library's own. An image URL is fetched off the event loop by the gateway's
downloader, under the same address rules as a job's input URLs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import openai

from render.imaging.v1 import imaging_pb2
from renderkit import imaging
from renderkit.fetch import DownloadError, FetchPolicy, fetch_async
from services.generation.providers import (
    ContentRefused,
    Cost,
    ImageTask,
    MalformedOutput,
    PriceTable,
    ProviderFailure,
    ProviderImage,
    ProviderTimeout,
    RateLimited,
    TokenUsage,
)
from services.generation.reliability import retry_after_seconds

# The model asked when OPENAI_IMAGE_MODEL is not set. gpt-image-1 was shut down on 2026-10-23 and
# DALL-E 2 and 3 on 2026-05-12 (OpenAI's deprecations page; the SDK's own `model` reference): a
# request naming them is refused. OpenAI's recommended replacement for gpt-image-1; it takes the
# same requests (sizes 1024x1024, 1536x1024, 1024x1536, quality low/medium/high, base64 answers).
DEFAULT_IMAGE_MODEL = "gpt-image-2.5-sunburst"

# The sizes each model family makes, by shape.
_SIZES = {
    "gpt-image": {"square": (1024, 1024), "landscape": (1536, 1024), "portrait": (1024, 1536)},
    "dall-e-3": {"square": (1024, 1024), "landscape": (1792, 1024), "portrait": (1024, 1792)},
    "dall-e-2": {"square": (1024, 1024), "landscape": (1024, 1024), "portrait": (1024, 1024)},
}
_REFUSAL_CODES = {"content_policy_violation", "moderation_blocked"}
# A 429 whose error type or code says the account has no credit left (or hit its spend limit), not
# that it is sending too fast: waiting does not help, so the next provider is tried at once.
_QUOTA_ERRORS = {
    "insufficient_quota",
    "credit_balance_exhausted",
    "organization_spend_limit_exceeded",
    "project_spend_limit_exceeded",
    "organization_usage_limit_exceeded",
}
# An error code OpenAI attaches to a 400 ("invalid_value", "billing_hard_limit_reached"): shown to the
# caller; the provider's message (its account, organisation, model and links) goes to the log only.
_ERROR_CODE = re.compile(r"[a-z0-9_]{1,64}")
log = logging.getLogger(__name__)
_MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
# How far an image's aspect ratio may be from the size asked for (providers round sizes, they do
# not change an image's shape).
ASPECT_TOLERANCE = 1.1


def _family(model: str) -> str:
    if model.startswith("dall-e-3"):
        return "dall-e-3"
    if model.startswith("dall-e"):
        return "dall-e-2"
    return "gpt-image"


def provider_size(width: int, height: int, model: str) -> tuple[int, int]:
    """The model's size closest in shape to the wanted one."""
    sizes = _SIZES[_family(model)]
    ratio = width / max(height, 1)
    if ratio > 1.25:
        return sizes["landscape"]
    if ratio < 0.8:
        return sizes["portrait"]
    return sizes["square"]


def task_size(task: ImageTask, model: str) -> tuple[int, int]:
    """The size a task is asked of the model at: an edit's closest to its image's shape, a
    generation's closest to the size wanted."""
    if task.kind == "edit" and task.image is not None:
        return provider_size(task.image.shape[1], task.image.shape[0], model)
    return provider_size(task.width, task.height, model)


def edit_mask_png(mask: np.ndarray, size: tuple[int, int]) -> bytes:
    """OpenAI's mask convention: transparent (alpha 0) where the model may paint."""
    small = cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR)
    rgba = np.zeros((size[1], size[0], 4), np.uint8)
    rgba[..., 3] = np.where(small > 127, 0, 255).astype(np.uint8)
    return imaging.encode_mask(rgba)


def _png(image: np.ndarray, size: tuple[int, int]) -> bytes:
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return imaging.encode(resized, imaging_pb2.FORMAT_PNG)[0]


def _reference_png(image: np.ndarray, size: tuple[int, int]) -> bytes:
    """A reference image in its own proportions (a plank swatch stays a plank): the API takes
    reference images of any size, and only an edit's image must match its mask. A side longer than
    the size asked for is scaled down to it; a smaller image is sent as it is."""
    height, width = image.shape[:2]
    scale = min(1.0, max(size) / max(width, height, 1))
    if scale < 1.0:
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, target, interpolation=cv2.INTER_AREA)
    return imaging.encode(image, imaging_pb2.FORMAT_PNG)[0]


def _quality(task: ImageTask, model: str) -> Any:
    family = _family(model)
    if family == "dall-e-2":
        return openai.omit
    if family == "dall-e-3":
        return "hd" if task.quality == "hd" else "standard"
    return "high" if task.quality == "hd" else "medium"


def _edit_quality(task: ImageTask, model: str) -> Any:
    """The edit endpoint's quality: a gpt-image model's as for a generation; DALL-E 2 (the other
    model the endpoint takes) has one quality, so none is sent."""
    return _quality(task, model) if _family(model) == "gpt-image" else openai.omit


class OpenAIProvider:
    """OpenAI images through the official client (any server speaking the API, by base_url)."""

    can_edit = True

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "",
        model: str = DEFAULT_IMAGE_MODEL,
        prices: PriceTable | None = None,
        name: str = "openai",
        allow_private_urls: bool = False,
    ) -> None:
        self.name = name
        self.model = model
        self.prices = prices or PriceTable()
        # Whether an image URL may point to a loopback or private address (tests, local providers).
        self.allow_private_urls = allow_private_urls
        self._client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url or None, max_retries=0)

    async def close(self) -> None:
        await self._client.close()

    async def ready(self) -> bool:
        return True  # configured with a key; its health is the breaker's business

    async def coming_back(self) -> bool:
        return False  # always ready

    def _size(self, task: ImageTask) -> tuple[int, int]:
        return task_size(task, self.model)

    def estimate(self, task: ImageTask) -> Cost:
        width, height = self._size(task)
        return self.prices.estimate("openai", self.model, task, f"{width}x{height}")

    def actual_cost(self, task: ImageTask, tokens: int | None) -> Cost:
        width, height = self._size(task)
        return self.prices.actual("openai", self.model, task, f"{width}x{height}", tokens)

    async def run(self, task: ImageTask, timeout_s: float) -> ProviderImage:
        """One call within `timeout_s` in all (ProviderTimeout past it), its image decoded and checked."""
        size = self._size(task)
        deadline = time.monotonic() + timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                answer = parse_answer(await self._request(task, size, timeout_s))
                if answer.url:
                    data = await self._download(answer.url, deadline)
                    image = await asyncio.to_thread(_decode, data)
                else:
                    image = await asyncio.to_thread(_decode_base64, answer.b64_json)
        except TimeoutError as exc:
            raise ProviderTimeout(f"no answer within {timeout_s:g} s") from exc
        problem = shape_problem(image, size)
        if problem:
            raise MalformedOutput(problem)
        cost = None
        if answer.usage is not None:
            cost = self.prices.priced("openai", self.model, answer.usage, answer.tokens)
        return ProviderImage(
            image=image, model=self.model, revised_prompt=answer.revised_prompt, tokens=answer.tokens, cost=cost
        )

    async def _request(self, task: ImageTask, size: tuple[int, int], timeout_s: float) -> bytes:
        """The answer's body, read as it came (the client's parsing takes anything for an answer)."""
        # DALL-E answers with an expiring URL unless asked for base64; the gpt-image models always send base64.
        response_format: Any = "b64_json" if _family(self.model) != "gpt-image" else openai.omit
        common: dict[str, Any] = {
            "model": self.model,
            "prompt": task.prompt,
            "n": 1,
            "size": f"{size[0]}x{size[1]}",
            "response_format": response_format,
            "timeout": timeout_s,
        }
        images = self._client.images.with_raw_response
        try:
            if task.kind == "edit":
                assert task.image is not None and task.mask is not None
                # The quality asked for is sent, as to a generation: left out, a gpt-image model
                # picks its own ("auto"), billed at up to four times the estimate the budget checked.
                # The uploads are resized and encoded off the event loop (~0.2 s at 12-20 MP).
                image_png, mask_png = await asyncio.to_thread(
                    lambda: (_png(task.image, size), edit_mask_png(task.mask, size))  # type: ignore[arg-type]
                )
                response = await images.edit(
                    image=("image.png", image_png, "image/png"),
                    mask=("mask.png", mask_png, "image/png"),
                    quality=_edit_quality(task, self.model),
                    **common,
                )
            elif task.references and _family(self.model) == "gpt-image":
                # gpt-image models take reference images through the edit endpoint (no mask: a new image).
                pngs = await asyncio.to_thread(
                    lambda: [
                        (f"reference-{i}.png", _reference_png(r, size), "image/png")
                        for i, r in enumerate(task.references)
                    ]
                )
                response = await images.edit(image=pngs, quality=_edit_quality(task, self.model), **common)
            else:
                response = await images.generate(quality=_quality(task, self.model), **common)
        except openai.BadRequestError as exc:
            if getattr(exc, "code", None) in _REFUSAL_CODES:
                raise ContentRefused("the image provider refused this content") from exc
            log.warning("the images API refused the request (HTTP 400): %s", exc.message)
            code = getattr(exc, "code", None)
            shown = f" ({code})" if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else ""
            raise ProviderFailure(f"HTTP 400{shown}", counts=False) from exc
        except openai.RateLimitError as exc:
            if {getattr(exc, "type", None), getattr(exc, "code", None)} & _QUOTA_ERRORS:
                # Every call fails until someone adds credit: it counts against the provider's health.
                raise ProviderFailure("HTTP 429 (insufficient_quota)") from exc
            raise RateLimited("HTTP 429", retry_after_seconds(dict(exc.response.headers))) from exc
        except openai.APITimeoutError as exc:
            raise ProviderTimeout(f"no answer within {timeout_s:g} s") from exc
        except openai.APIStatusError as exc:
            raise ProviderFailure(f"HTTP {exc.status_code}", counts=exc.status_code >= 500) from exc
        except openai.APIConnectionError as exc:
            raise ProviderFailure("the provider could not be reached") from exc
        except openai.APIResponseValidationError as exc:
            raise MalformedOutput("the answer is not the images API's") from exc
        return response.content

    async def _download(self, url: str, deadline: float) -> bytes:
        """Fetches a provider's temporary image URL once, so the image is stored by us, not linked:
        on the downloader's own threads, by the time left, at most _MAX_DOWNLOAD_BYTES, and only
        from globally routable addresses unless the deployment allows private ones."""
        policy = FetchPolicy(
            allow_private=self.allow_private_urls,
            max_bytes=_MAX_DOWNLOAD_BYTES,
            timeout_s=max(deadline - time.monotonic(), 0.001),
        )
        try:
            return await fetch_async(url, policy)
        except DownloadError as exc:
            # The downloader's messages are its own words (no library text, no internal detail).
            if exc.kind == "timeout":
                raise ProviderTimeout("the image URL did not arrive in time") from exc
            if exc.kind in ("address_refused", "invalid_url"):
                raise MalformedOutput(f"the image URL was refused: {exc}") from exc
            raise ProviderFailure(f"the image URL could not be fetched: {exc}") from exc


@dataclass(frozen=True)
class ImageAnswer:
    """What an images API answer holds: the first image (base64 or URL), the revised prompt, the
    tokens the provider counted and those tokens by kind (None when it did not say)."""

    b64_json: str = ""
    url: str = ""
    revised_prompt: str = ""
    tokens: int | None = None
    usage: TokenUsage | None = None


def _count(value: Any) -> int | None:
    """A token count: a whole number, 0 or more (a bool, a float or a negative number is none)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _usage(usage: Any) -> TokenUsage | None:
    """The usage by kind (`input_tokens_details.text_tokens` and `image_tokens`, `output_tokens`),
    each billed at its own rate; None when any of them is missing or not a count."""
    if not isinstance(usage, dict) or not isinstance(usage.get("input_tokens_details"), dict):
        return None
    details = usage["input_tokens_details"]
    text, image, output = (
        _count(details.get("text_tokens")),
        _count(details.get("image_tokens")),
        _count(usage.get("output_tokens")),
    )
    if text is None or image is None or output is None or text + image + output == 0:
        return None
    return TokenUsage(text_tokens=text, image_tokens=image, output_tokens=output)


def parse_answer(body: bytes) -> ImageAnswer:
    """An images API answer's body as the API documents it; MalformedOutput for anything else."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise MalformedOutput("the answer is not JSON") from None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise MalformedOutput("the answer held no image")
    item = data[0]
    b64_json, url = item.get("b64_json"), item.get("url")
    if b64_json is not None and not isinstance(b64_json, str):
        raise MalformedOutput("the answer's b64_json is not a string")
    if url is not None and not isinstance(url, str):
        raise MalformedOutput("the answer's url is not a string")
    if not b64_json and not url:
        raise MalformedOutput("the answer held no image")
    revised = item.get("revised_prompt")
    usage = payload.get("usage")
    tokens = usage.get("total_tokens") if isinstance(usage, dict) else None
    # A count that is not a positive whole number is no count: the call is priced by the table.
    counted = isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 0
    return ImageAnswer(
        b64_json=b64_json or "",
        url="" if b64_json else url or "",
        revised_prompt=revised if isinstance(revised, str) else "",
        tokens=tokens if counted else None,
        usage=_usage(usage),
    )


def shape_problem(image: np.ndarray, size: tuple[int, int]) -> str | None:
    """Why an image cannot stand for the `size` (width, height) asked of the provider: its aspect
    ratio is more than ASPECT_TOLERANCE off. A close size is fine (the image is rendered from it)."""
    height, width = image.shape[:2]
    asked, got = size[0] / size[1], width / max(height, 1)
    if max(asked / got, got / asked) > ASPECT_TOLERANCE:
        return f"the image is {width}x{height}, far from the shape of the {size[0]}x{size[1]} asked for"
    return None


def _decode_base64(text: str) -> np.ndarray:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedOutput("the image is not valid base64") from None
    return _decode(data)


def _decode(data: bytes) -> np.ndarray:
    try:
        return imaging.decode_bgr(data)
    except imaging.ImageError as exc:
        raise MalformedOutput("the image cannot be decoded") from exc
