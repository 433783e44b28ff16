"""Tile layouts: where in the swatch each point of the laid surface falls.

Coordinates are level-0 texels of the swatch, unwrapped (a straight layout repeats the swatch
every width x height texels). Each layout maps them to wrapped texels inside the swatch.

Herringbone: planks of n x 1 (n = length / width) in two orientations. With the plank width as
unit, horizontal planks H = [0, n) x [0, 1) and vertical planks V = [n, n + 1) x [1 - n, 1),
translated by the lattice a (1, 1) + b (n, -n), cover the plane exactly once (for any n >= 1; a
unit test counts coverage). Each H butts its end against the side of the next V, giving the
zigzag along (1, 1); the pattern is turned 45 degrees so that the zigzag runs along u.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HERRINGBONE_MIN_RATIO = 2.0
HERRINGBONE_MAX_RATIO = 12.0


@dataclass(frozen=True)
class Layout:
    """How copies of the swatch are laid: straight, staggered rows (row_offset > 0) or herringbone;
    tile_aspect is a copy's physical height over its width where that is not the swatch image's
    own (0: the image's own)."""

    row_offset: float = 0.0
    herringbone: bool = False
    tile_aspect: float = 0.0

    def stretch(self, width: int, height: int) -> float:
        """Texels of the swatch's height per texel of its width on the surface (1: square texels)."""
        return (height / width) / self.tile_aspect if self.tile_aspect else 1.0


def wrap(q: np.ndarray, period: float) -> np.ndarray:
    """q modulo period, without np.mod (several times slower)."""
    return np.asarray(q - np.floor(q * np.float32(1.0 / period)) * np.float32(period), dtype=np.float32)


def swatch_texels(
    qx: np.ndarray, qy: np.ndarray, layout: Layout, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Unwrapped texel coordinates to texels inside the width x height swatch."""
    if layout.herringbone:
        return herringbone_texels(qx, qy, width, height, layout.stretch(width, height))
    if layout.row_offset:
        row = np.floor(qy * np.float32(1.0 / height))
        odd = row - np.float32(2.0) * np.floor(row * np.float32(0.5))
        qx = qx + odd * np.float32(layout.row_offset * width)
    return wrap(qx, width), wrap(qy, height)


def plank_ratio(width: int, height: int) -> float:
    """A herringbone plank's length over its width for a swatch of this size."""
    return min(HERRINGBONE_MAX_RATIO, max(HERRINGBONE_MIN_RATIO, width / height))


def herringbone_texels(
    qx: np.ndarray, qy: np.ndarray, width: int, height: int, stretch: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Herringbone: the swatch (or, for a squarer swatch, a band of it, and for a longer one, a
    length of it, that changes from plank to plank) is one plank, its grain along the plank. With
    a stretch (texels of height per texel of width on the surface, Layout.stretch), the planks are
    laid where texels are square, then stretched back into the swatch: they stay at right angles."""
    if stretch != 1.0:
        u, v = herringbone_texels(qx, qy * np.float32(1.0 / stretch), width, height / stretch)  # type: ignore[arg-type]
        return u, np.clip(v * np.float32(stretch), 0, height - 1e-3).astype(np.float32)
    n = plank_ratio(width, height)
    # Texels. A swatch longer than HERRINGBONE_MAX_RATIO keeps its height as the plank's width (its
    # planks are cut shorter from it): a plank width of width / n would reach past its last row.
    plank_w = min(width / n, height)
    c = np.float32(math.sqrt(0.5) / plank_w)
    # Pattern coordinates (plank widths), turned so that the (1, 1) staircase runs along u.
    px = (qx - qy) * c
    py = (qx + qy) * c
    a0 = np.floor((px + py) * np.float32(0.5))
    b0 = np.floor((px - py) * np.float32(0.5 / n))
    along = np.zeros_like(px)
    across = np.zeros_like(px)
    plank = np.zeros_like(px)  # a number per plank, for the band it shows
    # The plank covering a point has its lattice origin at (a0 + da, b0) with -ceil(n/2) <= da <= 0,
    # or at (a0, b0 + 1).
    candidates = [(da, 0) for da in range(-math.ceil(n / 2), 1)] + [(0, 1)]
    for da, db in candidates:
        a = a0 + np.float32(da)
        b = b0 + np.float32(db)
        x = px - a - b * np.float32(n)
        y = py - a + b * np.float32(n)
        horizontal = (x >= 0) & (x < n) & (y >= 0) & (y < 1)
        vertical = (x >= n) & (x < n + 1) & (y >= 1 - n) & (y < 1)
        along = np.where(horizontal, x, np.where(vertical, y - np.float32(1 - n), along))
        across = np.where(horizontal, y, np.where(vertical, x - np.float32(n), across))
        plank = np.where(horizontal | vertical, a * np.float32(2) + b * np.float32(7919) + vertical, plank)
    u = along * np.float32(plank_w)
    v = across * np.float32(plank_w)
    spare = height - plank_w
    if spare > 0.5:
        # A squarer swatch than the plank: each plank shows its own band of it.
        shift = np.sin(plank * np.float32(12.9898)) * np.float32(43758.5453)
        v = v + (shift - np.floor(shift)) * np.float32(spare)
    spare_length = width - n * plank_w
    if spare_length > 0.5:
        # A longer swatch than the plank: each plank shows its own length of it.
        shift = np.sin(plank * np.float32(78.233)) * np.float32(43758.5453)
        u = u + (shift - np.floor(shift)) * np.float32(spare_length)
    return np.clip(u, 0, width - 1e-3).astype(np.float32), np.clip(v, 0, height - 1e-3).astype(np.float32)
