"""The bilateral filter the texture-space light estimate smooths with (shading.py), through a
bilateral grid, and its local-linear form near the surface's border.

A normalised bilateral filter is a local mean: at a cell, the weighted mean of the values near it
in space and in value. Where the neighbourhood is one-sided it is biased: at the surface's border
(a floor meeting a wall, a wall's end) the light usually falls or rises towards the border, and the
mean of the values inside stops short of the border's own level. On make quality's scenes the
filter applied to the true light alone is off by 0.055-0.069 in log (rms over the grid) on the
tiled floors and the subway wall; the cells within two reaches of the surface's border, a fifth to
a half of the grid, hold a quarter to a half of that (four fifths on the stone cladding), and in
the photo they weigh more, since near the camera a cell covers many pixels. A local-linear fit
(the mean plus a plane's slope, the textbook cure for a local mean's boundary bias) is right
there. Everywhere else it only adds noise: where the values' range cuts a neighbourhood (an object
standing on the surface, a shadow's edge) it extrapolates a pattern's slope across the cut, which
cost the facades up to 0.7 dB. So `bilateral` takes the fit's value at the border and the mean
from BORDER_REACH reaches in, blended linearly between.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import cv2
import numpy as np

_BINOMIAL = np.array([1, 4, 6, 4, 1], np.float32) / np.float32(16)
_ONE = np.ones(1, np.float32)
# The local-linear fit's reach from the surface's border, in the filter's reaches (sigma_space).
BORDER_REACH = 2.0
# The fit's slope is held towards none by this ridge (in squared reaches): a neighbourhood a
# sliver wide at a corner has no slope to speak of across it.
_RIDGE = np.float32(0.1)
_TINY = np.float32(1e-6)
_TILE = 64  # the fit is sliced in tiles of this many cells a side where the border reaches
_SQUARE3 = np.ones((3, 3), np.uint8)


def bilateral(
    values: np.ndarray,
    weights: np.ndarray,
    sigma_space: float,
    sigma_range: np.float32,
    *,
    border: bool = False,
    apart: np.ndarray | None = None,
) -> np.ndarray:
    """A normalised bilateral filter of values (float32, their weights 0 to 1), ranged on the
    values themselves, through a bilateral grid: splatted into cells sigma_space wide and
    sigma_range deep, blurred, and sliced (bilinear in space by a remap of the layers below and
    above each value, linear in range). With `border`, a local-linear fit near where the weights
    end (see the module's docstring). Cells `apart` (a boolean image) are left out of every other
    cell's mean, and within a cell of them the filter is as without it: a soft step's slope,
    within range of both its levels, would otherwise drag each level towards the other."""
    grid = _Grid(values, weights, sigma_space, sigma_range)
    near = None
    if apart is None or not apart.any():
        raw = whole = grid.splat(values, weights)
    else:
        raw = grid.splat(values, np.where(apart, np.float32(0), weights))
        whole = raw + grid.splat(values, weights, np.nonzero(apart))  # type: ignore[arg-type]
        near = cv2.dilate(apart.astype(np.uint8), _SQUARE3) > 0
    sums = grid.blurred(raw)
    mean = grid.sliced(sums)
    out = np.divide(mean[..., 0], np.maximum(mean[..., 1], _TINY))
    if border:
        _fit_at_border(grid, raw, sums, weights, out, sigma_space)
    if near is not None:
        _as_whole(grid, grid.blurred(whole), near, out)
    return out


class _Grid:
    """A bilateral grid over an image of values: cells sigma_space wide and sigma_range deep, two
    cells of margin on every side, and each value's point in it (gx, gy, gz; a cell's centre at
    integers)."""

    def __init__(self, values: np.ndarray, weights: np.ndarray, sigma_space: float, sigma_range: np.float32) -> None:
        rows, cols = values.shape
        lowest, highest = np.percentile(values[weights > 0], (0.5, 99.5), overwrite_input=True)  # reorders a copy
        lo, hi = float(lowest) - float(sigma_range), float(highest) + float(sigma_range)
        self.shape = (math.ceil(rows / sigma_space) + 3, math.ceil(cols / sigma_space) + 3)
        self.depth = math.ceil((hi - lo) / float(sigma_range)) + 3
        self.gy = np.arange(rows, dtype=np.float32) / np.float32(sigma_space) + 1
        self.gx = np.arange(cols, dtype=np.float32) / np.float32(sigma_space) + 1
        self.gz = (np.clip(values, lo, hi) - np.float32(lo)) / sigma_range + 1

    def splat(
        self, values: np.ndarray, weights: np.ndarray, where: tuple[np.ndarray, np.ndarray] | None = None
    ) -> np.ndarray:
        """The weighted values' and the weights' sums in each cell (gh x gw x gd x 2), of all the
        values or of those at the index arrays `where`."""
        (gh, gw), gd = self.shape, self.depth
        if where is None:
            rows, cols = np.rint(self.gy).astype(np.int64)[:, None], np.rint(self.gx).astype(np.int64)[None, :]
            depth, value, weight = self.gz, values, weights
        else:
            rows, cols = np.rint(self.gy[where[0]]).astype(np.int64), np.rint(self.gx[where[1]]).astype(np.int64)
            depth, value, weight = self.gz[where], values[where], weights[where]
        # (row * gw + column) * 2 gd + 2 depth, the rows' and columns' parts scaled before they
        # broadcast to every value (and the depth doubled as a float, exactly): fewer passes.
        cell = (rows * (gw * 2 * gd) + cols * (2 * gd) + (np.rint(depth) * 2).astype(np.int64)).ravel()
        sums = np.bincount(cell, (value * weight).ravel(), gh * gw * 2 * gd)
        sums += np.bincount(cell + 1, weight.ravel(), gh * gw * 2 * gd)
        return sums.astype(np.float32).reshape(gh, gw, gd, 2)

    @staticmethod
    def blurred(grid: np.ndarray) -> np.ndarray:
        """A binomial blur along each axis (a Gaussian of about one cell), zero beyond the grid: in
        space with the grid as an image of gd x channels (OpenCV takes up to 512: a log luminance
        of the linear values' 1e-4 to 1 spans 9.2, under 40 cells at the estimate's range, times at
        most 7 channels), in range as one of gh x gw rows."""
        gh, gw, gd, channels = grid.shape
        flat = cv2.sepFilter2D(
            np.ascontiguousarray(grid).reshape(gh, gw, gd * channels),
            -1,
            _BINOMIAL,
            _BINOMIAL,
            borderType=cv2.BORDER_CONSTANT,
        )
        deep = cv2.sepFilter2D(flat.reshape(gh * gw, gd, channels), -1, _BINOMIAL, _ONE, borderType=cv2.BORDER_CONSTANT)
        return np.asarray(deep).reshape(gh, gw, gd, channels)

    def sliced(self, grid: np.ndarray, box: tuple[slice, slice] = np.s_[:, :]) -> np.ndarray:
        """The grid (gh x gw x gd x 1 to 4 channels) at the points of a box of the values (all of
        them unless given), trilinear: rows x columns x channels. The depth layers lie side by side
        in one image (layer d in columns d * gw to d * gw + gw - 1; a point's columns stay inside
        its layer), so the bilinear part in space is two remaps, one for the layer below the point
        and one above."""
        return self.sliced_layers(_layers(grid), grid.shape, box)

    def sliced_layers(self, layers: np.ndarray, shape: tuple[int, ...], box: tuple[slice, slice]) -> np.ndarray:
        """`sliced` from the grid's layers side by side (_layers)."""
        _, gw, gd, channels = shape
        gz = self.gz[box]
        z0 = np.clip(np.floor(gz), 0, gd - 2).astype(np.float32)
        map_y = np.broadcast_to(self.gy[box[0]][:, None], z0.shape).astype(np.float32)
        map_x = self.gx[box[1]][None, :] + z0 * np.float32(gw)
        below = cv2.remap(layers, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        above = cv2.remap(layers, map_x + np.float32(gw), map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        if channels == 1:
            below, above = below[..., None], above[..., None]
        total = np.subtract(above, below, out=above)  # in place: below + (above - below) * fz
        fz = gz - z0
        for channel in range(channels):  # a channel at a time: numpy broadcasts over a few ~3x slower
            total[..., channel] *= fz
        total += below
        return total


def _as_whole(grid: _Grid, sums: np.ndarray, near: np.ndarray, out: np.ndarray) -> None:
    """out, where `near`, the mean of the whole grid's blurred sums (nothing left apart), sliced
    in tiles, only those `near` reaches; in place."""
    layers = _layers(sums)
    for box in _tiles(near):
        here = near[box]
        mean = grid.sliced_layers(layers, sums.shape, box)
        whole = mean[..., 0] / np.maximum(mean[..., 1], _TINY)
        out[box][here] = whole[here]


def _tiles(where: np.ndarray) -> Iterator[tuple[slice, slice]]:
    """The boxes of _TILE cells a side that hold any of `where`."""
    for top in range(0, where.shape[0], _TILE):
        for left in range(0, where.shape[1], _TILE):
            box = np.s_[top : top + _TILE, left : left + _TILE]
            if where[box].any():
                yield box


def _stacked(planes: list[np.ndarray]) -> np.ndarray:
    """Arrays of one shape (float32) as the channels of one: np.stack(planes, -1), ~3 times
    faster by cv2.merge."""
    shape = planes[0].shape
    return np.asarray(cv2.merge([plane.reshape(-1, 1) for plane in planes])).reshape(*shape, len(planes))


def _layers(grid: np.ndarray) -> np.ndarray:
    """The grid's depth layers side by side in one image (gh x gd * gw x channels). The transpose
    moves a cell's channels as one item: numpy copies it ~10 times faster than float by float."""
    gh, gw, gd, channels = grid.shape
    cells = np.ascontiguousarray(grid, np.float32).view(np.dtype((np.void, 4 * channels)))
    return np.ascontiguousarray(cells.transpose(0, 2, 1, 3)).view(np.float32).reshape(gh, gd * gw, channels)


def _fit_at_border(
    grid: _Grid, raw: np.ndarray, sums: np.ndarray, weights: np.ndarray, out: np.ndarray, sigma_space: float
) -> None:
    """Replaces the local mean `out` by a local-linear fit where the weights end and within
    BORDER_REACH reaches inside, blended linearly to the mean at that distance, in place.

    The fit is made at each grid cell from the moments of its neighbourhood: the grid's raw sums
    times the cells' positions, blurred as the sums are (`raw` and `sums`, from `bilateral`). That
    gives the weighted mean position and value and the slope of value on position, held towards
    none by _RIDGE. Each cell's plane, written c + a x + b y, is sliced weighted by the cell's
    weight, so a point takes its neighbours' planes in the proportion of their data."""
    inside = (weights > 0).astype(np.uint8)
    if inside.all():
        return  # no border: the weights cover every cell
    distance = cv2.distanceTransform(inside, cv2.DIST_L2, 5)
    share = np.float32(1) - distance * np.float32(1 / (BORDER_REACH * sigma_space))
    gh, gw = sums.shape[:2]
    # Positions from the grid's centre, in cells (sigma_space), so that float32 keeps their squares.
    y = (np.arange(gh, dtype=np.float32) - np.float32(gh / 2))[:, None, None]
    x = (np.arange(gw, dtype=np.float32) - np.float32(gw / 2))[None, :, None]
    value, weight = raw[..., 0], raw[..., 1]
    wx, wy = weight * x, weight * y
    moments = _Grid.blurred(_stacked([wx, wy, wx * x, wx * y, wy * y, value * x, value * y]))
    total = np.maximum(sums[..., 1], _TINY)
    mean_v = sums[..., 0] / total
    mean_x, mean_y = moments[..., 0] / total, moments[..., 1] / total
    cxx = moments[..., 2] / total - mean_x * mean_x + _RIDGE
    cxy = moments[..., 3] / total - mean_x * mean_y
    cyy = moments[..., 4] / total - mean_y * mean_y + _RIDGE
    cxv = moments[..., 5] / total - mean_x * mean_v
    cyv = moments[..., 6] / total - mean_y * mean_v
    det = cxx * cyy - cxy * cxy
    a = (cyy * cxv - cxy * cyv) / det
    b = (cxx * cyv - cxy * cxv) / det
    c = mean_v - a * mean_x - b * mean_y
    w = sums[..., 1]
    planes = _stacked([w * c, w * a, w * b, w])
    layers = _layers(planes)
    for box in _tiles(share > 0):  # sliced only where the band reaches
        _blend_planes(grid, layers, planes.shape, box, share[box], out[box])


def _blend_planes(
    grid: _Grid,
    layers: np.ndarray,
    shape: tuple[int, ...],
    box: tuple[slice, slice],
    share: np.ndarray,
    out: np.ndarray,
) -> None:
    """out (a box of the filtered values) blended by share towards the cells' planes (their
    weight-multiplied c, a, b and the weight, as _layers: _fit_at_border), in place."""
    gh, gw = shape[:2]
    sliced = grid.sliced_layers(layers, shape, box)
    px = grid.gx[box[1]][None, :] - np.float32(gw / 2)
    py = grid.gy[box[0]][:, None] - np.float32(gh / 2)
    fitted = sliced[..., 3]
    plane = (sliced[..., 0] + sliced[..., 1] * px + sliced[..., 2] * py) / np.maximum(fitted, _TINY)
    blend = np.where(fitted > _TINY, np.maximum(share, 0), np.float32(0))
    out += blend * (plane - out)
