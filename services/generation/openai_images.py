"""The OpenAI images provider: generate (with reference images through the edit endpoint) and edit.

The client's own retries are off (`max_retries=0`): the generator decides about retries, so it can
honour Retry-After, retry a timeout once, count failures for the breaker and fail over.
"""

from __future__ import annotations

import base64
import urllib.request
from typing import Any

import cv2
import numpy as np
import openai

from render.imaging.v1 import imaging_pb2
from renderkit import imaging
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
)
from services.generation.reliability import retry_after_seconds

# The sizes each model family makes, by shape.
_SIZES = {
    "gpt-image": {"square": (1024, 1024), "landscape": (1536, 1024), "portrait": (1024, 1536)},
    "dall-e-3": {"square": (1024, 1024), "landscape": (1792, 1024), "portrait": (1024, 1792)},
    "dall-e-2": {"square": (1024, 1024), "landscape": (1024, 1024), "portrait": (1024, 1024)},
}
_REFUSAL_CODES = {"content_policy_violation", "moderation_blocked"}
_MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024


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


def edit_mask_png(mask: np.ndarray, size: tuple[int, int]) -> bytes:
    """OpenAI's mask convention: transparent (alpha 0) where the model may paint."""
    small = cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR)
    rgba = np.zeros((size[1], size[0], 4), np.uint8)
    rgba[..., 3] = np.where(small > 127, 0, 255).astype(np.uint8)
    return imaging.encode_mask(rgba)


def _png(image: np.ndarray, size: tuple[int, int]) -> bytes:
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return imaging.encode(resized, imaging_pb2.FORMAT_PNG)[0]


def _quality(task: ImageTask, model: str) -> Any:
    family = _family(model)
    if family == "dall-e-2":
        return openai.omit
    if family == "dall-e-3":
        return "hd" if task.quality == "hd" else "standard"
    return "high" if task.quality == "hd" else "medium"


class OpenAIProvider:
    """OpenAI images through the official client (any server speaking the API, by base_url)."""

    can_edit = True

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "",
        model: str = "gpt-image-1",
        prices: PriceTable | None = None,
        name: str = "openai",
    ) -> None:
        self.name = name
        self.model = model
        self.prices = prices or PriceTable()
        self._client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url or None, max_retries=0)

    async def close(self) -> None:
        await self._client.close()

    async def ready(self) -> bool:
        return True  # configured with a key; its health is the breaker's business

    def _size(self, task: ImageTask) -> tuple[int, int]:
        if task.kind == "edit" and task.image is not None:
            return provider_size(task.image.shape[1], task.image.shape[0], self.model)
        return provider_size(task.width, task.height, self.model)

    def estimate(self, task: ImageTask) -> Cost:
        width, height = self._size(task)
        return self.prices.estimate("openai", self.model, task, f"{width}x{height}")

    def actual_cost(self, task: ImageTask, tokens: int | None) -> Cost:
        width, height = self._size(task)
        return self.prices.actual("openai", self.model, task, f"{width}x{height}", tokens)

    async def run(self, task: ImageTask, timeout_s: float) -> ProviderImage:
        size = self._size(task)
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
        try:
            if task.kind == "edit":
                assert task.image is not None and task.mask is not None
                response = await self._client.images.edit(
                    image=("image.png", _png(task.image, size), "image/png"),
                    mask=("mask.png", edit_mask_png(task.mask, size), "image/png"),
                    **common,
                )
            elif task.references and _family(self.model) == "gpt-image":
                # gpt-image models take reference images through the edit endpoint (no mask: a new image).
                images = [(f"reference-{i}.png", _png(r, size), "image/png") for i, r in enumerate(task.references)]
                response = await self._client.images.edit(image=images, **common)
            else:
                response = await self._client.images.generate(quality=_quality(task, self.model), **common)
        except openai.BadRequestError as exc:
            if getattr(exc, "code", None) in _REFUSAL_CODES:
                raise ContentRefused("the image provider refused this content") from exc
            raise ProviderFailure(f"HTTP 400: {exc.message}", counts=False) from exc
        except openai.RateLimitError as exc:
            raise RateLimited("HTTP 429", retry_after_seconds(dict(exc.response.headers))) from exc
        except openai.APITimeoutError as exc:
            raise ProviderTimeout(f"no answer within {timeout_s:.0f} s") from exc
        except openai.APIStatusError as exc:
            raise ProviderFailure(f"HTTP {exc.status_code}", counts=exc.status_code >= 500) from exc
        except openai.APIConnectionError as exc:
            raise ProviderFailure("the provider could not be reached") from exc
        if not response.data:
            raise MalformedOutput("the answer held no image")
        item = response.data[0]
        if item.b64_json:
            try:
                data = base64.b64decode(item.b64_json, validate=True)
            except ValueError as exc:
                raise MalformedOutput("the image is not valid base64") from exc
        elif item.url:
            data = _download(item.url, timeout_s)
        else:
            raise MalformedOutput("the answer held no image")
        try:
            image = imaging.decode_bgr(data)
        except imaging.ImageError as exc:
            raise MalformedOutput("the image cannot be decoded") from exc
        usage = getattr(response, "usage", None)
        tokens = int(usage.total_tokens) if usage is not None and getattr(usage, "total_tokens", None) else None
        return ProviderImage(image=image, model=self.model, revised_prompt=item.revised_prompt or "", tokens=tokens)


def _download(url: str, timeout_s: float) -> bytes:
    """Fetches a provider's temporary image URL once, so the image is stored by us, not linked."""
    if not url.startswith("https://") and not url.startswith("http://"):
        raise MalformedOutput("the image URL is not http(s)")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # the scheme is checked above
            data = response.read(_MAX_DOWNLOAD_BYTES + 1)
    except OSError as exc:
        raise ProviderFailure(f"the image URL could not be fetched: {exc}") from exc
    if len(data) > _MAX_DOWNLOAD_BYTES:
        raise MalformedOutput("the image behind the URL is too large")
    return data
