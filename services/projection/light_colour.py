"""The colour of a sharp-edged bright light on the surface: a sun patch beside shade, a window's
patch, a lamp's pool with a hard edge.

The shading estimate is grey. A smooth change of the old surface's own colour (a paint fade, a
floor faded by the window's sun) cannot be told from a smooth change of the light's colour in one
photo (docs/quality.md, "The light's colour"), but across a sharp edge of the light the old
surface is the same on both sides: the ratio of the photo's colour just inside the edge to just
outside it is the ratio of the two lights' colours. Only that ratio is read here, and only where
the grey estimate has such an edge and the ratio agrees all along it (an albedo edge, a rug's
border or a print has ratios that change along it); anywhere else the light stays grey.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from renderkit.imaging import srgb_to_linear

_LUMA_BGR = np.array([0.0722, 0.7152, 0.2126], np.float32)

# The edge is looked for on every k-th pixel of the box, k such that this many pixels are left on
# its longer side: enough for a thin band on each side of a patch's edge, and a few ms at 4K.
_SIDE = 512
# A light's edge: the grey field's log level changes by at least this much across _ACROSS pixels
# on each side of a pixel of that grid (e^0.5 = 1.65 times: a sun patch is 2.5-10 times the light
# beside it, the tiles' tones the estimate leaves are a log step of at most ~0.3).
_STEP = np.float32(0.5)
_ACROSS = 2
# Each side's sample is this many grid pixels from the edge along its normal: past the edge's
# slope (a penumbra of a pixel or two), near enough that the same old surface is under both.
_BAND = 4
# The colour between the two levels is looked up in this many steps (a uint8 table).
_STEPS = 255
# The colour of the light over most of the surface (white, _anchored) holds this share of the log
# step from its level towards the other light's: a lamp's pool or the window's falloff, brighter
# than the shade but no patch, keeps the shade's colour; and where the patch is most of the surface
# (a lamp-lit floor with a box's shadow), its falloff away from the lamp, darker than the patch at
# the shadow's edge but no shadow, keeps the patch's: it took the shadow's blue below the edge's
# middle level (the held-out terrazzo room 26.88 dB, 35.46 so; seven lamp-lit scratch rooms
# +1.6-9.9 dB, none lost; docs/quality.md).
_KNEE = 0.5
# Samples whose channels clip (or are near black) have lost their colour.
_CLIP = 250
_DARK = 8
# The edge is read in blocks of a _BLOCKS x _BLOCKS grid over the box; a block counts with this
# many pairs of samples across the edge, and the colour with at least _MIN_BLOCKS blocks and
# _MIN_PAIRS pairs in all, whose halves (top and bottom, left and right) agree within _AGREE
# (log chroma; a print's hue turning along its border moves it ~0.4).
_BLOCKS = 6
_BLOCK_PAIRS = 60
_MIN_BLOCKS = 3
_MIN_PAIRS = 400
_AGREE = 0.08
# And each block's ratio, projected on the whole edge's, at least this share of it.
_ALONG = 0.5
# Below this (log chroma), the two lights are the same colour: the estimate stays grey.
_MIN_COLOUR = 0.03
# Lights' colours differ along the blue-red axis (daylight, sun, sky and lamps lie near the
# blackbody's locus): between a warm lamp and blue sky the green channel's log chroma moves ~0.09,
# between sun and skylight ~0.04. A ratio moving it further is a dye (a red rug's border read as
# a light's edge moved it 0.9), as is one beyond _MAX_COLOUR in any channel: a sun patch's
# light is the shade's plus the sun's, which dilutes their ratio (0.2-0.6 measured on warm suns,
# lamps' pools and a blue patch on amber light), while cream and slate-blue stripes taken for
# light edges moved blue 0.9-1.1 and red 0.5-0.7.
_MAX_GREEN = 0.15
_MAX_COLOUR = 0.8
# Lights' colours lie near the blackbody's locus, along which red and blue move against green in
# opposite ways: from 6500 K to 3000 K the log of red over green rises 0.73 and that of blue over
# green falls 1.17. Mixes of two lights (sun and skylight, a lamp and daylight) lie between them.
# The locus bends; across a line of this slope (log blue over green per log red over green,
# locus_offset) sRGB's blackbody colours from 2700 K to 10,000 K lie within 0.13 of one another,
# from 5000 K to 10,000 K within 0.03.
_LOCUS_SLOPE = 1.44


@dataclass(frozen=True)
class LightColour:
    """Two lights' colours (per-channel multipliers of luminance 1, BGR) at two levels of the grey
    field: the shade's colour up to shade_level, the patch's from patch_level, and between them
    the colour follows the grey light's log level (so it changes where, and as sharply as, the
    light does)."""

    shade_level: float
    patch_level: float
    shade: np.ndarray
    patch: np.ndarray

    def lit(self, shade: np.ndarray) -> np.ndarray:
        """The grey shading (float32, rows x cols) as per-channel shading (rows x cols x 3)."""
        low, high = self.shade_level, self.patch_level
        # The level's place between the two in _STEPS steps (clipped at both ends), each step's
        # colour from a table: at 4K, powers of the level took 1.3-2 times as long, an affine
        # transform to three channels 2 times.
        # cv2.max and cv2.min take a float for a scalar (their stubs do not say so); np.clip took
        # twice as long.
        if shade.size == 1:
            # OpenCV takes a one-pixel array for a scalar: cv2.max gave it back 4 x 1, and cv2.min
            # then refused it (a strip's last chunk of one row in a one-pixel-wide box).
            within = np.clip(shade, np.float32(low), np.float32(high))
        else:
            within = cv2.min(cv2.max(shade, low), high)  # type: ignore[call-overload]
        step = cv2.convertScaleAbs(within, alpha=_STEPS / (high - low), beta=-_STEPS * low / (high - low))
        colour = cv2.LUT(cv2.cvtColor(step, cv2.COLOR_GRAY2BGR), self.table)
        return cv2.multiply(colour, cv2.cvtColor(shade, cv2.COLOR_GRAY2BGR))

    @cached_property
    def table(self) -> np.ndarray:
        """The colour at each of the _STEPS + 1 steps from shade_level to patch_level (float32,
        256 x 1 x 3), following the light's log level."""
        levels = self.shade_level + (self.patch_level - self.shade_level) * np.arange(_STEPS + 1) / _STEPS
        t = np.log(levels / self.shade_level) / math.log(self.patch_level / self.shade_level)
        log_colour = np.log(self.shade) + t[:, None] * np.log(self.patch / self.shade)
        return np.exp(log_colour).astype(np.float32).reshape(_STEPS + 1, 1, 3)


def patch_colour(photo_bgr: np.ndarray, mask: np.ndarray, field: np.ndarray) -> LightColour | None:
    """The colour of a sharp-edged bright light on the masked surface of a photo region (uint8 BGR,
    its mask) whose grey shading is field (any size: resampled to the region's grid); None where
    no such edge is seen or its colour ratio changes along it."""
    stride = max(1, math.ceil(max(mask.shape) / _SIDE))
    photo = np.ascontiguousarray(photo_bgr[::stride, ::stride])
    surface = mask[::stride, ::stride] > 127
    rows, cols = surface.shape
    level = np.log(np.maximum(cv2.resize(field, (cols, rows), interpolation=cv2.INTER_AREA), 1e-3))
    usable = surface & (cv2.inRange(photo, np.full(3, _DARK + 1, np.uint8), np.full(3, _CLIP - 1, np.uint8)) > 0)
    pairs = _pairs_across_edges(level, usable)
    if pairs is None:
        return None
    inside, outside = pairs
    # Only the pairs' pixels' log chroma (a few thousand), not the whole grid's.
    ratio = _log_chroma(photo[inside]) - _log_chroma(photo[outside])
    colour = _agreed_ratio(ratio, inside, (rows, cols))
    if colour is None or float(np.abs(colour).max()) < _MIN_COLOUR:
        return None
    shade_level, patch_level = float(np.median(level[outside])), float(np.median(level[inside]))
    in_patch = float(np.mean(level[surface] > (shade_level + patch_level) / 2))
    step = _KNEE * (patch_level - shade_level)
    if in_patch < 0.5:
        shade_level += step
    else:
        patch_level -= step
    return _anchored(colour, math.exp(shade_level), math.exp(patch_level), in_patch)


def _log_chroma(pixels_bgr: np.ndarray) -> np.ndarray:
    """Each pixel's linear channels over its linear luminance, in log (uint8 BGR, n x 3 -> n x 3)."""
    linear = np.maximum(srgb_to_linear(pixels_bgr), 1e-4)
    return np.asarray(np.log(linear) - np.log(linear @ _LUMA_BGR)[..., None], np.float32)


def _pairs_across_edges(
    level: np.ndarray, usable: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
    """For each pixel on a hard step of the grey light, the pixel _BAND along its normal on the
    bright side and the one on the dark side (each as (row indices, column indices)), both usable
    and each on its own level (the step's full size between them); None for fewer than _MIN_PAIRS."""
    rows, cols = level.shape
    gx = np.zeros_like(level)
    gy = np.zeros_like(level)
    gx[:, _ACROSS:-_ACROSS] = level[:, 2 * _ACROSS :] - level[:, : -2 * _ACROSS]
    gy[_ACROSS:-_ACROSS, :] = level[2 * _ACROSS :, :] - level[: -2 * _ACROSS, :]
    size = np.hypot(gx, gy)
    ys, xs = np.nonzero((size >= _STEP) & usable)
    if ys.size < _MIN_PAIRS:
        return None
    nx, ny = gx[ys, xs] / size[ys, xs], gy[ys, xs] / size[ys, xs]
    iy, ix = np.rint(ys + _BAND * ny).astype(np.intp), np.rint(xs + _BAND * nx).astype(np.intp)
    oy, ox = np.rint(ys - _BAND * ny).astype(np.intp), np.rint(xs - _BAND * nx).astype(np.intp)
    inside_grid = (iy >= 0) & (iy < rows) & (ix >= 0) & (ix < cols) & (oy >= 0) & (oy < rows) & (ox >= 0) & (ox < cols)
    iy, ix, oy, ox = iy[inside_grid], ix[inside_grid], oy[inside_grid], ox[inside_grid]
    kept = usable[iy, ix] & usable[oy, ox] & (level[iy, ix] - level[oy, ox] >= _STEP)
    if np.count_nonzero(kept) < _MIN_PAIRS:
        return None
    return (iy[kept], ix[kept]), (oy[kept], ox[kept])


def _agreed_ratio(ratio: np.ndarray, where: tuple[np.ndarray, np.ndarray], shape: tuple[int, int]) -> np.ndarray | None:
    """The median log chroma ratio across the edge (3,), where it agrees along the edge; None where
    too little edge is seen or its halves disagree (an albedo edge: its ratio changes along it).
    Blocks of the edge with a dye's ratio are an object's border (a sofa's, a rug's that the grey
    light took for a step) and are left out first."""
    blocks = _undyed_blocks(ratio, where, shape)
    if blocks is None:
        return None
    kept, medians = blocks
    ratio, rows, cols = ratio[kept], where[0][kept], where[1][kept]
    # Halves rather than the blocks themselves: a block sees a few tiles along the edge, and
    # their own tints (a log chroma of ~0.06) moved a block's median up to 0.2.
    for coordinate in (rows, cols):
        middle = np.median(coordinate)
        before, after = ratio[coordinate <= middle], ratio[coordinate > middle]
        if len(after) == 0 or float(np.abs(np.median(before, axis=0) - np.median(after, axis=0)).max()) > _AGREE:
            return None
    overall = np.median(ratio, axis=0)
    # Each block's ratio must point the overall's way: where two other lights meet along part of
    # the edge (a lamp's side of a sun patch), its blocks turned the other way.
    along = np.array(medians) @ overall / max(float(overall @ overall), 1e-12)
    if float(along.min()) < _ALONG:
        return None
    return np.asarray(overall, np.float32)


def _undyed_blocks(
    ratio: np.ndarray, where: tuple[np.ndarray, np.ndarray], shape: tuple[int, int]
) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """Which pairs lie in blocks of the edge (_BLOCKS x _BLOCKS over the box, each with
    _BLOCK_PAIRS pairs) whose ratio is not a dye's, and those blocks' median ratios; None unless
    _MIN_BLOCKS such blocks hold at least half of the pairs and _MIN_PAIRS."""
    rows, cols = shape
    block = (where[0] * _BLOCKS // rows) * _BLOCKS + where[1] * _BLOCKS // cols
    kept, medians = np.zeros(len(ratio), bool), []
    for index in np.unique(block):
        members = block == index
        median = np.median(ratio[members], axis=0)
        if np.count_nonzero(members) >= _BLOCK_PAIRS and not dyed(median):
            kept |= members
            medians.append(median)
    if len(medians) < _MIN_BLOCKS or np.count_nonzero(kept) < max(_MIN_PAIRS, len(ratio) / 2):
        return None
    return kept, medians


def dyed(ratio: np.ndarray) -> np.ndarray:
    """Whether log chroma ratios (BGR, in the last axis) are beyond two lights' (a dye's): across an
    edge, or between a part of a surface and the rest of it (shading._dyed_cells)."""
    return np.asarray((np.abs(ratio).max(axis=-1) > _MAX_COLOUR) | (np.abs(ratio[..., 1]) > _MAX_GREEN))


def locus_offset(chroma: np.ndarray) -> np.ndarray:
    """A colour's place across the lights' locus (log chroma, BGR in the last axis): red and blue
    against green, at right angles to the line that lights' colours follow (_LOCUS_SLOPE). A change
    of the light moves a surface's colour along that line and barely across it; an object of
    another colour can stand off it (a pale sofa before a sage wall: 0.17-0.25 across, where the
    green of `dyed` moved 0.03-0.05)."""
    red, blue = chroma[..., 2] - chroma[..., 1], chroma[..., 0] - chroma[..., 1]
    return np.asarray((_LOCUS_SLOPE * red + blue) * (1.0 / math.hypot(1.0, _LOCUS_SLOPE)), np.float32)


def _anchored(ratio: np.ndarray, shade_level: float, patch_level: float, in_patch: float) -> LightColour:
    """The two lights' colours from the patch's log chroma over the shade's: the light over most of
    the surface is white (the camera's white balance takes the typical light for white, as the
    grey field takes it for 1)."""
    patch = np.exp(ratio if in_patch < 0.5 else np.zeros(3, np.float32))
    shade = np.exp(np.zeros(3, np.float32) if in_patch < 0.5 else -ratio)
    return LightColour(
        shade_level,
        patch_level,
        np.asarray(shade / float(shade @ _LUMA_BGR), np.float32),
        np.asarray(patch / float(patch @ _LUMA_BGR), np.float32),
    )
