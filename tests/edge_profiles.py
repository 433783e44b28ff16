"""How sharp a light's edge is in an estimated field, as the shading tests measure it."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np


def rise(field: np.ndarray, rows: Iterable[int], edge_x: Callable[[int], int], ends: int) -> float:
    """Pixels from 10 % to 90 % of the step across an edge at column edge_x(y), the median over
    the rows: a profile 15 px either side, its levels the means of its first and last `ends`."""
    widths = []
    for y in rows:
        edge = edge_x(y)
        profile = np.log(field[y, edge - 15 : edge + 16])
        lo, hi = profile[:ends].mean(), profile[-ends:].mean()
        frac = (profile - lo) / (hi - lo)
        widths.append(float(np.argmax(frac > 0.9) - np.argmax(frac > 0.1)))
    return float(np.median(widths))
