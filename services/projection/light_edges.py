"""The light's hard edges sharpened against the photo itself.

The texture-space estimate (shading.py) is made on a grid of at most RASTER_SIDE cells a side,
sampled from a pyramid so that nothing aliases, and warped back: near the camera a cell spans
several pixels, so a sun patch's or a window bar's edge, sharp in the photo, comes back spread
over 5-10 pixels. On make quality's scenes the pixels within 3 of the light's edges (3-14 % of
the surface) held 12-57 % of the estimate's squared error.

Along such an edge the photo has what the grid lost: its luminance there is the light's step
times an albedo that does not step with it. So within REACH pixels of every hard edge of the
estimate, the light is taken from the photo: its log luminance with thin lines (joints, their
crossings, light mortar) taken out by a closing and an opening, which keep a step where it is,
less the albedo beside the band (the photo over the estimate, averaged over the surface just
outside it, or a little further out where the band fills that window), kept between the
estimate's levels either side of the edge or not far beyond them (LEVEL_MARGIN: the grid makes a
narrow shadow shallower than the photo shows it). That is only right where the old surface is
smooth beside the light's step; where its own pattern has strong edges (a carpet's motif), the
photo's edges in the band are its pattern's as much as the light's. So each pixel's correction is
weighted by how far the edge's height stands above the surface's roughness around it (the
albedo's mean deviation from its average, beside the band): in full at RATIO_FULL times it, none
under RATIO_NONE.

The work is done in blocks of 128 rows by 512 columns, and only where a block has such an edge: a
photo without hard light edges costs a pass of 3 x 3 minimum and maximum, and one with them a few
MB of working arrays at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

# A hard edge of the light: its log changes by EDGE_STEP between a pixel's 3 x 3 neighbours and by
# EDGE_HEIGHT within the band's window (a sun patch's edge is ~1, spread by the grid over up to ~8
# pixels; a tile's tone 0.05-0.3, a lamp's falloff far less steep).
EDGE_STEP = np.float32(0.15)
EDGE_HEIGHT = np.float32(0.6)
_STEP_RATIO = np.float32(np.exp(EDGE_STEP))
# The band around each edge that is taken from the photo, in the field's pixels either side: the
# grid's spread of an edge near the camera.
REACH = 4
# How far (log) the light taken from the photo may go beyond the field's levels either side of an
# edge. The grid flattens a narrow feature of the light: a window bar's shadow 4-8 cells wide inside
# a sun patch comes back 10-25 % too shallow (its cells' own blur and the median that takes out
# joints), and held to the field's levels it stayed so. make quality's walls gained 0.2-0.3 dB
# from 0.1 up, the same from 0.25 to 1.0, and no scene lost: 0.25 keeps a stain at an edge from
# darkening the light by more than a fifth.
LEVEL_MARGIN = np.float32(0.25)
# The albedo beside the band: an average over the surface outside it, a stack blur (a tent of
# tents, at a constant cost whatever its width) about this many of the field's pixels wide.
_FILL = 17
# The surface's roughness there: the albedo's mean deviation from that average, over this width
# (sigma ~12.6 px: wide enough to see a motif's contrast beyond a band that follows its edges).
_ROUGH = 61
# Both averages are smooth fields, made at a quarter of the field's size (make quality's figures
# the same as at full size, within 0.03 dB, for a fraction of the work).
_REDUCE = 4
# The edge's height (its window's max - min log) over that roughness: no correction under NONE,
# in full from FULL.
RATIO_NONE = 14.0
RATIO_FULL = 28.0
# The field is worked on in blocks (a few MB of working arrays at a time, whatever its size).
_STRIP_ROWS = 128
_BLOCK_COLS = 512
# Rows and columns of context around a block: the band, the albedo's average and the closing and
# opening's reach (the roughness, a guard, is taken over what the block's context holds).
_MARGIN = REACH + _FILL // 2 + 4
_EPS = np.float32(1e-3)
_SQUARE3 = np.ones((3, 3), np.uint8)
_BAND = np.ones((2 * REACH + 1, 2 * REACH + 1), np.uint8)

# The log of the photo's linear luminance at the field's resolution, its thin lines (joints, grain)
# taken out (float32), for rows and columns of it.
Luminance = Callable[[slice, slice], np.ndarray]


def sharpen(field: np.ndarray, luminance: Luminance, mask: np.ndarray) -> None:
    """Sharpens the shading field's hard edges in place against the photo (module docstring).

    field: float32, the shading (linear, positive) over a box of the photo; mask: uint8 of the same
    size, the surface (over 127); luminance(rows, cols) gives the photo's log luminance there, its
    thin lines taken out."""
    rows, cols = field.shape
    # A block reads the pixels around it as they were: a strip's changes are written once the next
    # strip has read them (the margins are far narrower than a strip).
    pending: list[_Change] = []
    for top in range(0, rows, _STRIP_ROWS):
        bottom = min(rows, top + _STRIP_ROWS)
        changes = [
            _block(field, luminance, mask, top, bottom, left, min(cols, left + _BLOCK_COLS))
            for left in range(0, cols, _BLOCK_COLS)
        ]
        for change in pending:
            change.write(field)
        pending = [change for change in changes if change is not None]
    for change in pending:
        change.write(field)


@dataclass(frozen=True)
class _Change:
    """New values for some pixels of a box of the field."""

    top: int
    left: int
    values: np.ndarray
    changed: np.ndarray

    def write(self, field: np.ndarray) -> None:
        rows, cols = self.values.shape
        np.copyto(field[self.top : self.top + rows, self.left : self.left + cols], self.values, where=self.changed)


def _block(
    field: np.ndarray, luminance: Luminance, mask: np.ndarray, top: int, bottom: int, left: int, right: int
) -> _Change | None:
    """The sharpened field over a block of rows top to bottom and columns left to right (see
    sharpen), or None where nothing changes."""
    rows, cols = field.shape
    # Whether an edge may reach the block: a step of the field itself, as a ratio (no log of the
    # whole block; most blocks have none).
    r0, r1 = max(0, top - REACH - 1), min(rows, bottom + REACH + 1)
    s0, s1 = max(0, left - REACH - 1), min(cols, right + REACH + 1)
    part = field[r0:r1, s0:s1]
    steps = (cv2.dilate(part, _SQUARE3) > cv2.erode(part, _SQUARE3) * _STEP_RATIO) & (mask[r0:r1, s0:s1] > 127)
    if not steps.any():
        return None
    # The block with a margin for context.
    y0, y1 = max(0, top - _MARGIN), min(rows, bottom + _MARGIN)
    c0, c1 = max(0, left - _MARGIN), min(cols, right + _MARGIN)
    log_s = cv2.log(field[y0:y1, c0:c1])
    surface = mask[y0:y1, c0:c1] > 127
    seeds, lowest, highest = hard_edges(log_s)
    seeds &= surface
    band = (cv2.dilate(seeds.view(np.uint8), _BAND) > 0) & surface
    inner = np.s_[top - y0 : bottom - y0, left - c0 : right - c0]  # only the block's own pixels are written
    if not band[inner].any():
        return None
    # The albedo: the photo (without its thin lines) over the light, averaged beside the band.
    photo = luminance(slice(y0, y1), slice(c0, c1))
    albedo = photo - log_s
    beside = (surface & ~band).astype(np.float32)
    average, cover = _weighted_average(albedo * beside, beside, _FILL)
    # Where the band fills that average's whole window (the edges of narrow shadows side by side,
    # a window's bars), the albedo is averaged over the roughness's wider window instead.
    bare = cover <= _EPS
    if bare.any():
        wide, wide_cover = _weighted_average(albedo * beside, beside, _ROUGH)
        average = np.where(bare, wide, average)
        cover = np.where(bare, wide_cover, cover)
    # The surface's roughness: the albedo's mean deviation from that average, beside the band (the
    # blur's rounding can dip below zero).
    rough, _ = _weighted_average(np.abs(albedo - average) * beside, beside, _ROUGH)
    rough = np.maximum(rough, 0)
    del beside
    ratio = (highest - lowest) / (rough + _EPS)
    share = np.clip((ratio - RATIO_NONE) / (RATIO_FULL - RATIO_NONE), 0, 1)
    share *= band & (cover > _EPS)
    share = share[inner]
    changed = share > 0
    if not changed.any():
        return None
    # The light at an edge lies between the levels either side of it, give or take LEVEL_MARGIN:
    # what is left of the old pattern (a stain, a joint wider than the closing) cannot take it far
    # beyond them.
    light = np.clip(photo[inner] - average[inner], lowest[inner] - LEVEL_MARGIN, highest[inner] + LEVEL_MARGIN)
    sharpened = log_s[inner] + share * (light - log_s[inner])
    return _Change(top, left, np.clip(cv2.exp(sharpened), 0.03, 32.0), changed)


def hard_edges(log_field: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where a log light field (float32) has a hard edge: a step over EDGE_STEP between 3 x 3
    neighbours and over EDGE_HEIGHT within the band's window (2 REACH + 1 a side); and that
    window's lowest and highest levels."""
    lowest, highest = cv2.erode(log_field, _BAND), cv2.dilate(log_field, _BAND)
    step = cv2.dilate(log_field, _SQUARE3) - cv2.erode(log_field, _SQUARE3)
    return (step > EDGE_STEP) & (highest - lowest > EDGE_HEIGHT), lowest, highest


def _weighted_average(values: np.ndarray, weights: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth field: the weighted average of values (weighted already) over a stack blur `size`
    pixels wide, and the weights' own blur; made on copies reduced _REDUCE times, and enlarged
    back."""
    rows, cols = values.shape
    small = (max(1, -(-cols // _REDUCE)), max(1, -(-rows // _REDUCE)))
    reach = (size // _REDUCE | 1,) * 2
    total = cv2.stackBlur(cv2.resize(values, small, interpolation=cv2.INTER_AREA), reach)
    weight = cv2.stackBlur(cv2.resize(weights, small, interpolation=cv2.INTER_AREA), reach)
    total = cv2.resize(total, (cols, rows), interpolation=cv2.INTER_LINEAR)
    weight = cv2.resize(weight, (cols, rows), interpolation=cv2.INTER_LINEAR)
    return total / np.maximum(weight, _EPS), np.asarray(weight)
