"""Masks from semantic class maps, alone or fused with a hinted outline (polygon masks are
renderkit.imaging.polygon_mask)."""

from __future__ import annotations

import cv2
import numpy as np

# ADE20K class indices (0-based, as SegFormer and most exports number them) per surface.
ADE20K_SURFACE_CLASSES: dict[str, tuple[int, ...]] = {
    "floor": (3,),  # floor
    "wall": (0,),  # wall
    "ceiling": (5,),  # ceiling
    "facade": (1, 25),  # building, house
}


def surface_probability(logits: np.ndarray, surface: str) -> np.ndarray:
    """The per-pixel probability (0..1) that a pixel belongs to the surface, from (C, h, w) logits."""
    classes = ADE20K_SURFACE_CLASSES[surface]
    shifted = logits - logits.max(axis=0, keepdims=True)
    exp = np.exp(shifted, dtype=np.float32)
    return np.asarray(exp[list(classes)].sum(axis=0) / exp.sum(axis=0), dtype=np.float32)


def probability_to_mask(probability: np.ndarray, width: int, height: int) -> np.ndarray:
    """A model's low-resolution probability map as a full-size uint8 soft mask."""
    resized = cv2.resize(probability, (width, height), interpolation=cv2.INTER_LINEAR)
    # A steep ramp around 0.5 keeps edges soft but removes the model's low-confidence haze.
    ramp = np.clip((resized - 0.35) / 0.3, 0.0, 1.0)
    return np.asarray(np.round(ramp * 255), dtype=np.uint8)


# Beyond this share of the outline the model is more likely wrong about the surface than right
# about objects in front of it: the outline is kept whole.
MAX_EXCLUDED = 0.6


def exclude_occluders(outline: np.ndarray, probability: np.ndarray) -> tuple[np.ndarray, float]:
    """The outline (a hinted quad or polygon) less what the model sees standing in front of the
    surface (furniture, people, plants: other classes), and the share of the outline left out.

    The outline says where the surface is; the model says what covers it. Where the model rejects
    most of the outline it is the model that is wrong, and the outline is kept whole.
    """
    height, width = outline.shape
    keep = probability_to_mask(probability, width, height)
    fused = ((outline.astype(np.uint16) * keep.astype(np.uint16) + 127) // 255).astype(np.uint8)
    total = float(outline.sum())
    excluded = 1.0 - float(fused.sum()) / total if total else 0.0
    if excluded > MAX_EXCLUDED:
        return outline, 0.0
    return fused, max(0.0, excluded)
