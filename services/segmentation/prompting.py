"""Masks from clicks and boxes by a prompt segmentation model on Triton (the Segment Anything family:
renderkit.triton.PROMPT_ENCODER and PROMPT_DECODER): the photo encoded once, the prompts decoded
into candidate masks, the one the model expects to be best upsampled and its edge refined against
the photo."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np

from renderkit.triton import (
    PROMPT_DECODER,
    PROMPT_ENCODER,
    PROMPT_SIDE,
    ModelOutputError,
    TritonModels,
    prompt_points,
    to_prompt_pixel_values,
)
from services.segmentation.interactive import refine_edges

MODELS = (PROMPT_ENCODER.name, PROMPT_DECODER.name)


async def prompted_mask(
    triton: TritonModels,
    photo_bgr: np.ndarray,
    box: tuple[float, float, float, float] | None,
    positives: np.ndarray,
    negatives: np.ndarray,
) -> tuple[np.ndarray, float]:
    """The surface the prompts select (a soft uint8 mask at the photo's size) and the IoU the model
    expects of it. TritonError when either model fails."""
    pixel_values, scale = await asyncio.to_thread(to_prompt_pixel_values, photo_bgr)
    encoded = await triton.infer(PROMPT_ENCODER, {"pixel_values": pixel_values})
    coords, labels = prompt_points(positives, negatives, box, scale)
    decoded = await triton.infer(
        PROMPT_DECODER,
        {"image_embeddings": encoded["image_embeddings"], "point_coords": coords, "point_labels": labels},
    )
    return await asyncio.to_thread(
        mask_from_logits, photo_bgr, decoded["mask_logits"][0], decoded["iou_scores"][0], scale
    )


def mask_from_logits(
    photo_bgr: np.ndarray, logits: np.ndarray, scores: np.ndarray, scale: float
) -> tuple[np.ndarray, float]:
    """The best-scored candidate of (K, s, s) logits over the encoder's padded square, cropped to the
    photo, upsampled (bilinear, in logit space: a smooth edge) and refined against the photo. A
    candidate that selects nothing on the photo is no answer to a prompt: ModelOutputError when
    every one is (or when the model gives another number of scores than of masks)."""
    if scores.shape != (logits.shape[0],):
        raise ModelOutputError(f"the prompt decoder gave {scores.shape} scores for {logits.shape[0]} masks")
    height, width = photo_bgr.shape[:2]
    side = logits.shape[-1]
    per_pixel = side / PROMPT_SIDE * scale  # logit cells per photo pixel
    crop = np.s_[:, : max(1, round(height * per_pixel)), : max(1, round(width * per_pixel))]
    selects = (logits[crop] > 0).any(axis=(1, 2))
    if not selects.any():
        raise ModelOutputError("the prompt decoder's every mask selects nothing on the photo")
    best = int(np.argmax(np.where(selects, scores, -np.inf)))
    valid = logits[crop][best]
    full = cv2.resize(valid.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    mask = np.where(full > 0, 255, 0).astype(np.uint8)
    return refine_edges(photo_bgr, mask, radius=max(2, round(0.5 / per_pixel))), float(scores[best])
