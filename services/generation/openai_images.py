"""Refinement through the OpenAI images edit endpoint: edit inside the mask, keep the rest."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import openai

from render.imaging.v1 import imaging_pb2
from renderkit import imaging

# The sizes gpt-image-1 edits at (dall-e-2 takes only the square one).
_SIZES = {"square": (1024, 1024), "landscape": (1536, 1024), "portrait": (1024, 1536)}


class ContentPolicyError(RuntimeError):
    """The provider refused the prompt or image."""


class ProviderError(RuntimeError):
    """The provider failed or returned something unusable."""


@dataclass(frozen=True)
class EditResult:
    """The refined image at the input's size."""

    image: np.ndarray
    model: str


def edit_size(width: int, height: int, model: str) -> tuple[int, int]:
    """The provider size closest in shape to the image."""
    if model.startswith("dall-e"):
        return _SIZES["square"]
    ratio = width / height
    if ratio > 1.25:
        return _SIZES["landscape"]
    if ratio < 0.8:
        return _SIZES["portrait"]
    return _SIZES["square"]


def edit_mask_png(mask: np.ndarray, size: tuple[int, int]) -> bytes:
    """The provider's mask convention: transparent (alpha 0) where the model may paint."""
    small = cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR)
    rgba = np.zeros((size[1], size[0], 4), np.uint8)
    rgba[..., 3] = np.where(small > 127, 0, 255).astype(np.uint8)
    return imaging.encode_mask(rgba)


def refine_with_openai(
    client: openai.OpenAI, model: str, image: np.ndarray, mask: np.ndarray, prompt: str
) -> EditResult:
    """Edits the image inside the mask and blends the edit back at full resolution, inside the mask only."""
    height, width = image.shape[:2]
    size = edit_size(width, height, model)
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    image_png, _ = imaging.encode(resized, imaging_pb2.FORMAT_PNG)
    # DALL-E answers with a URL unless asked for base64; the gpt-image models always send base64.
    response_format: Literal["b64_json"] | openai.Omit = "b64_json" if model.startswith("dall-e") else openai.omit
    try:
        response = client.images.edit(
            model=model,
            image=("image.png", image_png, "image/png"),
            mask=("mask.png", edit_mask_png(mask, size), "image/png"),
            prompt=prompt,
            n=1,
            size=f"{size[0]}x{size[1]}",
            response_format=response_format,
        )  # type: ignore[arg-type]
    except openai.BadRequestError as exc:
        if getattr(exc, "code", None) == "content_policy_violation":
            raise ContentPolicyError("the image provider refused this content") from exc
        raise ProviderError(f"the image provider rejected the request: {exc.message}") from exc
    except openai.APIError as exc:
        raise ProviderError(f"the image provider failed: {exc.message}") from exc
    if not response.data or not response.data[0].b64_json:
        raise ProviderError("the image provider returned no image")
    try:
        edited = imaging.decode_bgr(base64.b64decode(response.data[0].b64_json))
    except (ValueError, imaging.ImageError) as exc:
        raise ProviderError("the image provider returned an image that cannot be decoded") from exc
    edited = cv2.resize(edited, (width, height), interpolation=cv2.INTER_CUBIC)
    alpha = (cv2.GaussianBlur(mask, (0, 0), 1.0).astype(np.float32) / 255.0)[..., None]
    blended = image + (edited.astype(np.float32) - image) * alpha
    return EditResult(np.clip(blended + 0.5, 0, 255).astype(np.uint8), model)
