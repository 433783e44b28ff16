"""The check every provider output passes (seed 003): not blank, not near-uniform, not black, and
not a perceptual-hash copy of its input."""

from __future__ import annotations

import cv2
import numpy as np

# A DCT pHash differing in at most this many of 64 bits is the same picture.
DUPLICATE_BITS = 4
_MIN_STD = 4.0  # grey levels; a real render or texture varies far more
_BLACK_P99 = 24.0


def phash(image: np.ndarray) -> int:
    """The 64-bit DCT perceptual hash of an image (BGR or grey)."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()[1:]  # without the DC term
    bits = low > np.median(low)
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def quality_problem(image: np.ndarray, originals: list[np.ndarray] | None = None) -> str | None:
    """Why an output is unusable, or None when it passes."""
    small = cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
    if np.percentile(small, 99) < _BLACK_P99:
        return "the image is black"
    if float(small.reshape(-1, small.shape[-1] if small.ndim == 3 else 1).std(axis=0).max()) < _MIN_STD:
        return "the image is blank or near-uniform"
    digest = phash(image)
    for original in originals or []:
        if hamming(digest, phash(original)) <= DUPLICATE_BITS:
            return "the image is a copy of the input"
    return None


def edit_problem(original: np.ndarray, mask: np.ndarray, output: np.ndarray) -> str | None:
    """The quality check of an edit: the output passes quality_problem, and inside the mask's box it
    is not a copy of the original (a provider that hands the input back has not edited anything)."""
    problem = quality_problem(output)
    if problem:
        return problem
    height, width = original.shape[:2]
    resized = cv2.resize(output, (width, height), interpolation=cv2.INTER_AREA)
    ys, xs = np.nonzero(mask > 127)
    if len(xs) == 0:
        return None
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    before, after = original[box], resized[box]
    same_hash = hamming(phash(before), phash(after)) <= DUPLICATE_BITS
    if same_hash and float(np.abs(before.astype(np.int16) - after.astype(np.int16)).mean()) < 3.0:
        return "the image is a copy of the input"
    return None
