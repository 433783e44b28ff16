"""The whole projection: sample, shade, blend into the photo inside the soft mask.

Past the shading field (estimated over the whole surface) every pixel is independent, so the surface
is cut into strips of rows sampled, shaded and blended on a small thread pool: OpenCV and numpy
release the GIL. Sampling needs only the swatch, the mask and the plane, so it starts before the
photo is decoded (Sampling), and the light is estimated from the photo while it runs (composite).
Strips are small (STRIP_PIXELS): their temporaries stay in the processor's cache and are a fixed
amount of memory whatever the photo's size, which the per-request memory budget counts on. Each
strip samples only the columns its part of the mask covers, and takes only its rows of the light.

After sampling, one cv2.multiply applies the shading and makes linear light uint16 (saturating
where the light exceeds white, the clip sRGB needs anyway), and a 65,536-entry table takes it back
to sRGB; the soft mask's edge alone is mixed with the photo.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

import cv2
import numpy as np

from renderkit.errors import InputError
from renderkit.shared_work import WORKERS, SharedWork, helpers
from services.projection.layouts import Layout
from services.projection.light_colour import LightColour
from services.projection.shading import Shading, estimate_shading
from services.projection.texture import (
    FRACTIONS,
    LOD_STEP,
    STRAIGHT,
    MipAtlas,
    build_mip_atlas,
    finest_blend,
    on_plane,
    sample_linear,
    texel_transform,
)

_POOL = ThreadPoolExecutor(WORKERS, thread_name_prefix="projection")
# The strips are sampled on one thread fewer than that: the calling thread meanwhile decodes the
# photo and estimates its light, the longest chain of work before the blends, so it should not
# share its core with a third thread; once the light is known it samples what is left beside them.
_SAMPLERS = helpers("projection-sample")
# Pixels per strip, at most: each strip's fixed work (its calls, the sampler's margin of blocks, the
# feather's and the light's margins of rows) is spread over ~64 rows of a 4K surface; strips of
# half this took 1.02-1.08x the time on every 4K floor scene of benchmarks.projection
# (docs/benchmarks.md). Each thread's strip needs ~50 bytes of temporaries a pixel, so a smaller
# photo gets strips of 1/_STRIP_SHARE of its pixels (down to half this): its peak memory a photo
# pixel does not grow.
_STRIP_PIXELS = 1 << 18
_STRIP_SHARE = 32
# The feather: the mask's edge softened by a Gaussian of this sigma, which reaches this many pixels.
_FEATHER_SIGMA = 0.8
_FEATHER_REACH = 4
# Linear light on its way to sRGB: uint16, this is 1.0.
_LINEAR_ONE = 65535


def _srgb_table() -> np.ndarray:
    linear = np.arange(_LINEAR_ONE + 1, dtype=np.float64) / _LINEAR_ONE
    srgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.clip(srgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


_LINEAR_TO_SRGB = _srgb_table()


class Sampling:
    """The material being sampled into the surface's box on the samplers, started before the photo
    is needed (sampling reads only the swatch, the mask and the plane): the photo's decode, the
    light's estimate, and the intrinsic model where one is deployed, overlap it. `finish` completes
    it (on the calling thread too); `cancel` drops it."""

    def __init__(
        self,
        swatch: np.ndarray,
        mask: np.ndarray,
        H: np.ndarray,
        repeats_u: float,
        repeats_v: float,
        rotation_degrees: float = 0.0,
        layout: Layout = STRAIGHT,
    ) -> None:
        self.mask = mask
        height, width = mask.shape
        x, y, w, h = cv2.boundingRect(mask)
        self.T = texel_transform(
            H, repeats_u, repeats_v, rotation_degrees, swatch.shape[1], swatch.shape[0], layout.tile_aspect
        )
        self.box: tuple[int, int, int, int] | None = None  # None: an empty mask, nothing to sample
        self.edges: list[tuple[int, int]] = []
        self.sampled = np.empty((0, 0, 3), np.uint16)
        self._work: SharedWork[tuple[int, int] | None] = SharedWork(_SAMPLERS, _sample_strip, [])
        if w == 0 or h == 0:
            return
        # The feather reaches a few pixels beyond the mask.
        x0, y0 = max(0, x - _FEATHER_REACH), max(0, y - _FEATHER_REACH)
        w, h = min(width, x + w + _FEATHER_REACH) - x0, min(height, y + h + _FEATHER_REACH) - y0
        self.box = x, y, w, h = x0, y0, w, h
        # A homography's sign is arbitrary: the surface is on the side of the plane's horizon
        # where most of its mask is (every 8th row and column of it; a mean would let a stray
        # patch far past the horizon outweigh the surface), so the map is turned to put it there.
        ys, xs = np.nonzero(mask[y : y + h : 8, x : x + w : 8])
        if ys.size:
            depth = self.T[2, 0] * (x + 8 * xs) + self.T[2, 1] * (y + 8 * ys) + self.T[2, 2]
            behind = float(np.median(depth)) < 0
        else:
            behind = self.T[2, 0] * (x + w / 2) + self.T[2, 1] * (y + h / 2) + self.T[2, 2] < 0
        if behind:
            self.T = -self.T
        atlas_made = _POOL.submit(build_mip_atlas, swatch, FRACTIONS, finest_blend(self.T, x, y, w, h), _POOL)
        # Strip edges on multiples of the sampler's blocks, so strips sample exactly as one pass.
        strip = min(_STRIP_PIXELS, max(_STRIP_PIXELS // 2, height * width // _STRIP_SHARE))
        rows = max(LOD_STEP, strip // max(1, w) // LOD_STEP * LOD_STEP)
        self.edges = [(top, min(h, top + rows)) for top in range(0, h, rows)]
        # The sampled colour waits here (linear light, uint16: 6 bytes a pixel) for the light.
        self.sampled = np.empty((h, w, 3), np.uint16)
        self._work = SharedWork(
            _SAMPLERS,
            _sample_strip,
            [(self.sampled, mask, atlas_made, self.T, layout, x, y, top, bottom) for top, bottom in self.edges],
        )

    @property
    def spans(self) -> list[Future[tuple[int, int] | None]]:
        """The strips' calls on the samplers."""
        return self._work.futures

    def finish(self) -> list[tuple[int, int] | None]:
        """Each strip's columns (see _sample_strip), once all are sampled: the strips no sampler
        has started are sampled here, from the last (the samplers take them from the first)."""
        return self._work.results()

    def cancel(self) -> None:
        """Drops the sampling: strips not started are cancelled, running ones finish first."""
        self._work.cancel()


def composite(
    photo: np.ndarray,
    sampling: Sampling,
    *,
    out: np.ndarray | None = None,
    shading: Shading | None = None,
    on_shading: Callable[[Shading], None] | None = None,
) -> np.ndarray:
    """The photo with the sampled material lit and blended in (uint8 BGR, the photo's size).

    The result is written into `out` when given (it may be the photo itself: each pixel is read
    before it is written), else into a copy of the photo. The material is lit by `shading`, by
    default the best estimate of the photo's light on the surface (shading.estimate_shading),
    made here while the strips are still being sampled; on_shading is called with the estimate
    used (its method says which ran).
    """
    mask, T = sampling.mask, sampling.T
    if mask.shape != photo.shape[:2]:
        sampling.cancel()
        raise InputError("mask_png: must be the size of the photo")
    if out is None:
        out = photo.copy()
    elif out is not photo:
        np.copyto(out, photo)
    if sampling.box is None:
        return out
    x, y, _, _ = sampling.box
    try:
        if shading is None:
            shading = estimate_shading(photo, mask, T)
        if on_shading is not None:
            on_shading(shading)
        spans = sampling.finish()
    except BaseException:
        sampling.cancel()
        raise
    blends = [
        _POOL.submit(_blend_strip, out, photo, shading, sampling.sampled, mask, T, x, y, top, bottom, span)
        for (top, bottom), span in zip(sampling.edges, spans, strict=True)
    ]
    wait(blends)  # a strip that fails is reported once no other is still writing into out
    for blend in blends:
        blend.result()
    return out


def project_material(
    photo: np.ndarray,
    swatch: np.ndarray,
    mask: np.ndarray,
    H: np.ndarray,
    repeats_u: float,
    repeats_v: float,
    rotation_degrees: float = 0.0,
    layout: Layout = STRAIGHT,
    *,
    out: np.ndarray | None = None,
    shading: Shading | None = None,
    on_shading: Callable[[Shading], None] | None = None,
) -> np.ndarray:
    """The photo with the masked surface re-covered by the swatch (uint8 BGR, the photo's size):
    Sampling then composite, for a caller that has the photo already (see composite)."""
    sampling = Sampling(swatch, mask, H, repeats_u, repeats_v, rotation_degrees, layout)
    return composite(photo, sampling, out=out, shading=shading, on_shading=on_shading)


def _feather(mask: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
    """The soft mask over the rectangle (x, y, w, h): the mask blurred as if whole (the blur is
    taken over the rectangle and a margin beyond it where the mask has one)."""
    height, width = mask.shape
    top, left = max(0, y - 2 * _FEATHER_REACH), max(0, x - 2 * _FEATHER_REACH)
    bottom, right = min(height, y + h + 2 * _FEATHER_REACH), min(width, x + w + 2 * _FEATHER_REACH)
    blurred = cv2.GaussianBlur(mask[top:bottom, left:right], (0, 0), _FEATHER_SIGMA)
    return blurred[y - top : y - top + h, x - left : x - left + w]


def _sample_strip(
    sampled: np.ndarray,
    mask: np.ndarray,
    atlas_made: Future[MipAtlas],
    T: np.ndarray,
    layout: Layout,
    x: int,
    y: int,
    top: int,
    bottom: int,
) -> tuple[int, int] | None:
    """Samples rows top to bottom of the surface's box (from x, y) into sampled, in the columns
    the soft mask reaches there (the mask's and the feather's reach), from a multiple of LOD_STEP
    (the sampler's blocks): returns them as (first column, count), None when there are none."""
    h, w = sampled.shape[:2]
    reach = _FEATHER_REACH
    rows = mask[max(0, y + top - reach) : y + min(h, bottom + reach), x : x + w]
    left, _, cols, _ = cv2.boundingRect(rows)
    if cols == 0:
        return None
    start = max(0, left - reach) // LOD_STEP * LOD_STEP
    cols = min(w, left + cols + reach) - start
    out = sampled[top:bottom, start : start + cols]
    sample_linear(atlas_made.result(), T, x + start, y + top, cols, bottom - top, layout, out=out, scale=_LINEAR_ONE)
    return start, cols


def _blend_strip(
    out: np.ndarray,
    photo: np.ndarray,
    shading: Shading,
    sampled: np.ndarray,
    mask: np.ndarray,
    T: np.ndarray,
    x: int,
    y: int,
    top: int,
    bottom: int,
    span: tuple[int, int] | None,
) -> None:
    """Lights the sampled rows top to bottom of the surface's box and blends them into out."""
    if span is None:
        return
    start, cols = span
    h = bottom - top
    x, y = x + start, y + top
    material = _lit(sampled[top:bottom, start : start + cols], shading.region(x, y, cols, h), shading.colour)
    target, under = out[y : y + h, x : x + cols], photo[y : y + h, x : x + cols]
    valid = on_plane(T, x, y, cols, h)
    if valid is not None:  # the plane's horizon crosses the strip: the feather is cut along it
        alpha = np.where(valid, _feather(mask, x, y, cols, h), np.uint8(0))
        _blend_into(target, material, under, alpha)
        return
    covered, edges = _column_runs(mask, x, y, cols, h)
    for left, right in covered:
        np.copyto(target[:, left:right], material[:, left:right])
    # The feather and the mix over the columns the mask's edge reaches only (a 4K floor's strip is
    # ~3,700 columns, its slanted sides' ~150-300); as one blend of the whole strip would choose.
    alphas = [_feather(mask, x + left, y, right - left, h) for left, right in edges]
    partials = [cv2.inRange(alpha, 1, 254) for alpha in alphas]  # type: ignore[call-overload]
    at_once = sum(cv2.countNonZero(partial) for partial in partials) > _EDGE_SHARE * h * cols
    for (left, right), alpha, partial in zip(edges, alphas, partials, strict=True):
        part = np.s_[:, left:right]
        _mix_into(target[part], material[part], under[part], alpha, partial, at_once)


# Columns of a strip whose feather is 255 in every row (the mask covers them and REACH columns
# either side, over the strip's rows and REACH beyond) are the material alone; where it is 0 in
# every row, the photo alone. The feather's Gaussian (sigma 0.8) reaches 3 pixels.
def _column_runs(
    mask: np.ndarray, x: int, y: int, w: int, h: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The rectangle's (x, y, w, h) runs of columns (first, end; from x) that the soft mask covers
    wholly, and those it reaches only in part (the rest it does not reach at all)."""
    height, width = mask.shape
    reach = _FEATHER_REACH
    left, right = max(0, x - reach), min(width, x + w + reach)
    rows = mask[max(0, y - reach) : min(height, y + h + reach), left:right]
    # Each column's least and greatest over the rows, then over the columns within reach of it.
    least, most = rows.min(axis=0), rows.max(axis=0)
    kernel = np.ones((1, 2 * reach + 1), np.uint8)
    least = cv2.erode(least[None, :], kernel, borderType=cv2.BORDER_REPLICATE)[0, x - left : x - left + w]
    most = cv2.dilate(most[None, :], kernel, borderType=cv2.BORDER_REPLICATE)[0, x - left : x - left + w]
    kind = np.where(least == 255, 2, np.where(most == 0, 0, 1)).astype(np.int8)
    # Where the kind changes: the runs' bounds.
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(kind)) + 1, [w]))
    covered, edges = [], []
    for first, end in itertools.pairwise(bounds):
        if kind[first] == 2:
            covered.append((int(first), int(end)))
        elif kind[first] == 1:
            edges.append((int(first), int(end)))
    return covered, edges


# Pixels' colours lit and taken back to sRGB at a time (_lit): their indices into the table
# (8 bytes each, which np.take makes of any other integer) are written and read in the cache.
_SRGB_CHUNK = 1 << 16


def _lit(sampled: np.ndarray, shade: np.ndarray, colour: LightColour | None = None) -> np.ndarray:
    """The sampled colour (linear light, uint16, _LINEAR_ONE is white) times the shading, in sRGB
    (uint8): one saturating cv2.multiply, then the 65,536-entry table, a few rows at a time. np.take
    first copies its indices to intp, which over a whole 4K strip is a pass of 8 bytes an element
    out to memory and back; in chunks the lighting and the table took 0.8 of the time. A coloured
    light (a sun patch's, light_colour) makes the grey shade per-channel first."""
    height = sampled.shape[0]
    rows = max(1, _SRGB_CHUNK // max(1, sampled[0].size))
    out = np.empty(sampled.shape, np.uint8)
    index = np.empty((min(rows, height), *sampled.shape[1:]), np.intp)
    for top in range(0, height, rows):
        chunk = shade[top : top + rows]
        shade_bgr = cv2.cvtColor(chunk, cv2.COLOR_GRAY2BGR) if colour is None else colour.lit(chunk)
        linear = cv2.multiply(sampled[top : top + rows], shade_bgr, dtype=cv2.CV_16U)
        part = index[: linear.shape[0]]
        np.copyto(part, linear)
        # mode="wrap" skips take's bounds check (a uint16 is always inside the table): ~15 % quicker.
        np.take(_LINEAR_TO_SRGB, part, mode="wrap", out=out[top : top + rows])
    return out


# Above this share of partly covered pixels, the whole strip is blended at once.
_EDGE_SHARE = 0.05


def _blend_into(out: np.ndarray, material: np.ndarray, photo: np.ndarray, alpha: np.ndarray) -> None:
    """out = material where alpha is 255, the photo where it is 0, and the mix between (rounded);
    out already holds the photo (or is it)."""
    partial = cv2.inRange(alpha, 1, 254)  # type: ignore[call-overload]
    _mix_into(out, material, photo, alpha, partial, cv2.countNonZero(partial) > _EDGE_SHARE * alpha.size)


def _mix_into(
    out: np.ndarray, material: np.ndarray, photo: np.ndarray, alpha: np.ndarray, partial: np.ndarray, at_once: bool
) -> None:
    """_blend_into's mix, its partly covered pixels given (`partial`, 255 there): the whole
    rectangle blended at once, or, a soft mask being mostly one or the other, its partly covered
    pixels alone mixed."""
    if at_once:
        mixed = cv2.blendLinear(material, photo, alpha.astype(np.float32), (255 - alpha).astype(np.float32))
        np.copyto(out, mixed)
        return
    # Where alpha is 255 (cv2.compare takes a scalar for an array as an array of one pixel, and
    # refuses a photo of one pixel).
    whole = cv2.threshold(alpha, 254, 255, cv2.THRESH_BINARY)[1]
    cv2.copyTo(material, whole, out)  # type: ignore[call-overload]
    points = cv2.findNonZero(partial)
    if points is not None:
        xs, ys = points.reshape(-1, 2).T
        a = alpha[ys, xs].astype(np.float32)[:, None] * np.float32(1.0 / 255.0)
        mix = material[ys, xs] * a + photo[ys, xs] * (np.float32(1.0) - a)
        out[ys, xs] = (mix + np.float32(0.5)).astype(np.uint8)
