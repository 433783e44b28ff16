"""How far refinement moved the product inside the mask: colour (CIE76 on smoothed Lab) and texture
(correlation of band-passed luminance). Refinement may harmonise light; it must not repaint the
product."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Drift:
    """Median colour difference in Lab units, and texture similarity from -1 to 1 (1 = unchanged)."""

    color: float
    texture_similarity: float


def _lab(image: np.ndarray) -> np.ndarray:
    smooth = cv2.GaussianBlur(image, (0, 0), 2.0).astype(np.float32) / 255.0
    return cv2.cvtColor(smooth, cv2.COLOR_BGR2Lab)


def _band(image: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return cv2.GaussianBlur(gray, (0, 0), 1.0) - cv2.GaussianBlur(gray, (0, 0), 6.0)


def measure_drift(before: np.ndarray, after: np.ndarray, mask: np.ndarray) -> Drift:
    """Drift of `after` against `before` over the mask's inner pixels (edges excluded)."""
    inner = cv2.erode((mask > 127).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if not inner.any():
        return Drift(0.0, 1.0)
    delta = np.linalg.norm(_lab(before)[inner] - _lab(after)[inner], axis=1)
    a, b = _band(before)[inner], _band(after)[inner]
    a, b = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    similarity = float((a * b).sum() / denominator) if denominator > 1e-6 else 1.0
    return Drift(float(np.median(delta)), similarity)
