"""Masks from clicks and boxes: GrabCut on a reduced copy, then the edge refined at full resolution.

GrabCut costs ~2.6 s on a 1024² image here, so it runs with its longer side at WORK_SIDE; a
guided filter (He et al.) with the full-resolution photo as guide then snaps the upsampled mask's
edge to the image's own edges (skirting boards, door frames) instead of blocky steps.
"""

from __future__ import annotations

import cv2
import numpy as np

WORK_SIDE = 384
GRABCUT_ITERATIONS = 4


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Edge-preserving smoothing of source (float32 0..1) steered by a grey guide (float32 0..1)."""
    size = (2 * radius + 1, 2 * radius + 1)

    def mean(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = mean(guide), mean(source)
    cov_ip = mean(guide * source) - mean_i * mean_p
    var_i = mean(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + np.float32(eps))
    b = mean_p - a * mean_i
    return np.asarray(mean(a) * guide + mean(b), dtype=np.float32)


def refine_edges(photo_bgr: np.ndarray, mask: np.ndarray, radius: int | None = None, eps: float = 1e-4) -> np.ndarray:
    """A soft uint8 mask whose edge follows the photo's edges, computed only around the mask's border."""
    height, width = mask.shape
    radius = radius or max(2, round(max(width, height) / 400))
    edge = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    if not edge.any():
        return mask
    ys, xs = np.nonzero(edge)
    pad = 4 * radius
    x0, x1 = max(0, xs.min() - pad), min(width, xs.max() + pad + 1)
    y0, y1 = max(0, ys.min() - pad), min(height, ys.max() + pad + 1)
    guide = cv2.cvtColor(photo_bgr[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY).astype(np.float32) * np.float32(1 / 255)
    source = mask[y0:y1, x0:x1].astype(np.float32) * np.float32(1 / 255)
    refined = np.clip(guided_filter(guide, source, radius, eps), 0.0, 1.0)
    out = mask.copy()
    out[y0:y1, x0:x1] = np.round(refined * 255).astype(np.uint8)
    return out


def chroma_weighted(image_bgr: np.ndarray) -> np.ndarray:
    """The image in Lab with lightness damped and chroma boosted: light falloff and soft shadows
    change a surface's lightness far more than its colour, so GrabCut's colour models then
    separate materials rather than lit from shaded areas."""
    lab = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2LAB).astype(np.float32)
    lab[..., 0] *= 0.35
    lab[..., 1:] = (lab[..., 1:] - 128.0) * 3.0 + 128.0
    return np.clip(lab, 0, 255).astype(np.uint8)


def _disk(mask: np.ndarray, points: np.ndarray, radius: int, value: int) -> None:
    for x, y in points:
        cv2.circle(mask, (round(x), round(y)), radius, (value,), -1)


def grabcut_mask(
    photo_bgr: np.ndarray,
    box: tuple[float, float, float, float] | None,
    positives: np.ndarray,
    negatives: np.ndarray,
    prior: np.ndarray | None = None,
) -> np.ndarray:
    """The surface selected by a box and/or clicks, as a soft uint8 mask at the photo's size.

    prior (any resolution, 0..1) is a segmentation model's probability of the surface: it seeds
    GrabCut's probable labels, and the clicks and the box override it where they disagree.
    """
    height, width = photo_bgr.shape[:2]
    scale = min(1.0, WORK_SIDE / max(width, height))
    small = cv2.resize(
        photo_bgr, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
    )
    sh, sw = small.shape[:2]
    radius = max(2, round(0.02 * max(sw, sh)))
    if prior is None:
        labels = np.full((sh, sw), cv2.GC_PR_BGD, np.uint8)
        inside_box = cv2.GC_PR_FGD
    else:
        likely = cv2.resize(prior.astype(np.float32), (sw, sh), interpolation=cv2.INTER_LINEAR) > 0.5
        labels = np.where(likely, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
        inside_box = -1  # the model's labels stand inside the box
    if box is not None:
        x0, y0, x1, y1 = (round(v * scale) for v in box)
        window = (slice(max(0, y0), min(sh, y1)), slice(max(0, x0), min(sw, x1)))
        outside = np.full((sh, sw), True)
        outside[window] = False
        labels[outside] = cv2.GC_BGD
        if inside_box >= 0:
            labels[window] = inside_box
    _disk(labels, positives * scale, radius, cv2.GC_FGD)
    _disk(labels, negatives * scale, radius, cv2.GC_BGD)
    if not ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).any():
        raise ValueError("the hints select nothing inside the photo")
    if not ((labels == cv2.GC_BGD) | (labels == cv2.GC_PR_BGD)).any():
        raise ValueError("the hints leave no background to contrast the surface with")
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0x5EED)  # GrabCut's k-means start draws from OpenCV's RNG: same hints, same mask
    # The stubs do not allow rect=None, which GC_INIT_WITH_MASK takes.
    cv2.grabCut(  # type: ignore[call-overload]
        chroma_weighted(small), labels, None, background, foreground, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_MASK
    )
    selected = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.uint8)
    if len(positives):
        # Keep only the regions the clicks are on: GrabCut may also pick look-alike patches elsewhere.
        _, components = cv2.connectedComponents(selected)
        keep = {
            int(components[min(sh - 1, max(0, round(y * scale))), min(sw - 1, max(0, round(x * scale)))])
            for x, y in positives
        }
        keep.discard(0)
        if keep:
            selected = np.isin(components, list(keep)).astype(np.uint8)
    full = cv2.resize(selected * 255, (width, height), interpolation=cv2.INTER_LINEAR)
    # The guided filter's window spans the upsampling step, so it can move the edge that far.
    return refine_edges(photo_bgr, np.where(full > 127, 255, 0).astype(np.uint8), radius=int(np.ceil(1 / scale)) + 1)
