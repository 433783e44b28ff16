"""Robust per-key means, for a surface's elements and a pattern's phases."""

from __future__ import annotations

import numpy as np


def robust_means(values: np.ndarray, keys: np.ndarray, bins: int) -> np.ndarray:
    """Per-key robust means (float64): the mean, then the mean of the values within twice the mean
    absolute deviation of it (a light's edge, or an object, crossing a minority of a key's values:
    an element's cells in elements.py, a pattern's phase in shading._periodic_part)."""
    count = np.maximum(np.bincount(keys, minlength=bins), 1)
    means = np.bincount(keys, values, bins) / count
    spread = np.bincount(keys, np.abs(values - means[keys]), bins) / count
    near = np.abs(values - means[keys]) < 2.0 * spread[keys] + 1e-3
    kept = np.maximum(np.bincount(keys[near], minlength=bins), 1)
    return np.asarray(np.bincount(keys[near], values[near], bins) / kept)
