"""The parts of a selection that the positive clicks are on (interactive.select_surface and the
junctions' cut keep only those)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from services.segmentation.interactive import Appearance

BRIDGE = 5  # pixels at the working size: parts this close count as one


def clicked_parts(appearance: Appearance, selected: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """Only the parts of a selection (uint8, working size) the positive clicks are on; parts a few
    pixels apart count as one (a checkerboard's squares meet only at corners)."""
    sw, sh = appearance.size
    _, components = cv2.connectedComponents(cv2.dilate(selected, np.ones((BRIDGE, BRIDGE), np.uint8)))
    xs = np.clip(np.round(positives[:, 0] * appearance.scale).astype(int), 0, sw - 1)
    ys = np.clip(np.round(positives[:, 1] * appearance.scale).astype(int), 0, sh - 1)
    keep = set(components[ys, xs].tolist()) - {0}
    if keep:
        selected &= np.isin(components, list(keep)).astype(np.uint8)
    return selected
