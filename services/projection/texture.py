"""Filtered texture sampling through a homography, from a mip atlas of fractional levels.

The swatch's mip levels are made in linear light (a distant pattern averages to the light it
reflects). Each octave is then cut into FRACTIONS blends of a level with the next one enlarged to
its size, so the blend between two levels that trilinear filtering does per pixel is done once
per swatch: a pixel needs one bilinear lookup per probe, in the blend whose level of detail is
nearest its footprint's, instead of two and a per-pixel blend. That keeps fine patterns from
aliasing into moire where the surface recedes.

The atlas stays in float32 linear light: bilinear interpolation in sRGB (an 8-bit atlas) darkens
the mix of a dark joint and a light plank, which cost up to 0.5 dB against the quality scenes'
ground truth. In strips that keep the maps in cache, a float32 cv2.remap costs about what a
uint8 one and its table back to linear do.

The per-pixel maps are made from a grid 4x coarser (the projective map, the footprint and the
probes' positions vary smoothly across the image): enlarged by interpolation, wrapped into the
swatch (tiling, staggered rows, herringbone) and placed in the level's part of the atlas.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import cv2
import numpy as np

from renderkit.errors import InputError
from renderkit.imaging import srgb_to_linear
from renderkit.shared_work import SharedWork
from services.projection.layouts import Layout, herringbone_texels

STRAIGHT = Layout()

# Blends per octave: a pixel's level of detail is rounded to a quarter octave, fine enough that no
# step in sharpness shows (eight measured the same as four on the quality scenes; two, 0.15 dB
# less). Each blend is ~12 bytes a swatch texel, so the atlas is ~5x the swatch's float size.
FRACTIONS = 4
# The level of detail is chosen this much sharper than the footprint's length. A lookup in a mip
# level blurs more than the pixel's own box does (the level's box and the bilinear tent add up
# to about twice the variance), so the footprint's level over-blurs: a quarter octave sharper
# gained 0.15-1.4 dB on every quality scene and still averages a grazing checkerboard to grey.
LOD_BIAS = -0.25
_PAD = 2
# Atlas coordinates are int16 in OpenCV's fixed-point maps.
_MAX_ATLAS_SIDE = 32_000
# The most columns or rows one cv2.remap writes (fewer than 32,767), a multiple of LOD_STEP.
_MAX_REMAP_SIDE = 32_000
# The footprint varies smoothly across the image, so it is evaluated on a grid this much coarser.
LOD_STEP = 4
# Probes along the footprint's major axis: each covers 1/PROBES of it, so the mip level can be
# that much finer (sharp receding surfaces) without aliasing along the major axis.
PROBES = 2
# The finest octave's blends are made in this many bands of rows, shared among the threads.
_ATLAS_BANDS = 8
# The sampler looks up the level of detail at the centres of LOD_STEP-pixel blocks, with a block of
# margin beyond a strip and its last block reaching past it: all within this many pixels of it.
_GRID_REACH = 2 * LOD_STEP
# Kept below the least level of detail found (in octaves): a blend coarser than a pixel needs
# would blur it, so the blends built reach a little finer.
_LOD_MARGIN = 0.05
# The most the level of detail's change to a grid neighbour takes off it (octaves).
_STEP_CAP = 0.25


@dataclass(frozen=True)
class MipAtlas:
    """A swatch's fractional mip levels packed into one float32 linear-light image.

    Level j (0 .. levels - 1) is the blend at level of detail j / fractions; a point (u, v) of the
    swatch in [0, 1) maps to atlas coordinates (u, v) * size[j] + origin[j] (pixel centres at
    integers, as cv2.remap samples).
    """

    atlas: np.ndarray  # float32 BGR, linear light
    width: int  # the swatch (level 0)
    height: int
    size: np.ndarray  # (levels, 2) float32: texels across and down
    origin: np.ndarray  # (levels, 2) float32
    fractions: int

    @property
    def levels(self) -> int:
        return int(self.size.shape[0])

    @property
    def max_lod(self) -> float:
        """The level of detail of the coarsest level (1x1 texel or one texel high)."""
        return (self.levels - 1) / self.fractions


def build_mip_atlas(
    swatch_bgr: np.ndarray, fractions: int = FRACTIONS, first: int = 0, pool: ThreadPoolExecutor | None = None
) -> MipAtlas:
    """Builds the atlas of a uint8 BGR swatch, from blend `first` on (finest_blend: a surface
    whose every pixel covers several texels never needs the swatch's full resolution, nor the
    blends of an octave finer than its pixels' footprints; finer blends are looked up in the
    finest one built). With a pool, its threads share the work with this one."""
    sizes = [(swatch_bgr.shape[1], swatch_bgr.shape[0])]
    while min(sizes[-1]) > 1:
        w, h = sizes[-1]
        sizes.append((max(1, (w + 1) // 2), max(1, (h + 1) // 2)))
    coarsest = len(sizes) - 1
    blends = [sizes[j // fractions] for j in range(coarsest * fractions + 1)]
    first = min(max(0, first), len(blends) - 1)
    # The octave of the finest blend built, and how many of its blends are not built. Its level is
    # made in that blend's place (every blend before `first` has it), so the level is held there
    # until its own blends are made; the last of them, `first`, is made over it.
    finest, skipped = divmod(first, fractions)
    # Every blend's place first, so each level and blend is made in its place: besides the atlas,
    # only the enlargements of the next levels are held in float.
    places, atlas_w, atlas_h = _pack([(w + 2 * _PAD, h + 2 * _PAD) for w, h in blends[first:]])
    places = [places[0]] * first + places
    atlas = np.empty((atlas_h, atlas_w, 3), np.float32)

    def inner(j: int) -> np.ndarray:
        (x, y), (w, h) = places[j], blends[j]
        return atlas[y + _PAD : y + _PAD + h, x + _PAD : x + _PAD + w]

    # Each octave's level: the finest from the swatch (in bands of rows, so that the first touch of
    # the atlas's pages, the kernel's work and a third of the build for a large swatch, is shared
    # too), each coarser one from the one before it.
    if finest == 0:
        _share(pool, [partial(srgb_to_linear, swatch_bgr[rows], inner(0)[rows]) for rows in _bands(sizes[0][1])])
    else:
        level = srgb_to_linear(swatch_bgr)
        for k in range(finest):  # halved as many times as in a whole atlas: the same texels
            level = cv2.resize(level, sizes[k + 1], interpolation=cv2.INTER_AREA)
        np.copyto(inner(first), level)
        del level
    for k in range(finest + 1, coarsest + 1):
        cv2.resize(inner((k - 1) * fractions), sizes[k], dst=inner(k * fractions), interpolation=cv2.INTER_AREA)

    def enlarged(k: int) -> np.ndarray:
        # The next level enlarged to this one's texels: a bilinear lookup in a blend of the two is
        # then nearly the trilinear blend of a lookup in each (bicubic: a bilinear enlargement
        # blurs the coarser level once more, 0.2 dB less on the quality scenes).
        return cv2.resize(inner((k + 1) * fractions), sizes[k], interpolation=cv2.INTER_CUBIC)

    def blend(k: int, i: int, coarser: np.ndarray, rows: slice = slice(None)) -> None:
        t = i / fractions
        out = inner(k * fractions + i)[rows]
        cv2.addWeighted(inner(k * fractions)[rows], 1.0 - t, coarser[rows], t, 0.0, dst=out)
        cv2.threshold(out, 0.0, 0.0, cv2.THRESH_TOZERO, dst=out)  # bicubic enlargement overshoots below black

    def octave(k: int) -> None:
        coarser = enlarged(k)
        for i in range(1, fractions):
            blend(k, i, coarser)

    def finest_blends(coarser: np.ndarray, rows: slice) -> None:
        # From the coarsest blend down: the finest one built may be made over its level.
        for i in reversed(range(max(1, skipped), fractions)):
            blend(finest, i, coarser, rows)

    # The finest octave is three quarters of the work: its enlargement is made beside the coarser
    # octaves, then its blends in bands of rows.
    if finest < coarsest:
        coarser_octaves = [partial(octave, k) for k in range(finest + 1, coarsest)]
        coarser = _share(pool, [partial(enlarged, finest), *coarser_octaves])[0]
        _share(pool, [partial(finest_blends, coarser, band) for band in _bands(sizes[finest][1])])
        del coarser
    for j in range(first, len(blends)):
        _wrap_border(atlas, places[j], blends[j])
    size = np.array(blends[first : first + 1] * first + blends[first:], np.float32)
    # Texel i of a level covers [i, i + 1) of its width; cv2.remap puts pixel centres at integers.
    origin = np.array(places, np.float32) + np.float32(_PAD - 0.5)
    return MipAtlas(atlas, sizes[0][0], sizes[0][1], size, origin, fractions)


def _bands(height: int) -> list[slice]:
    """_ATLAS_BANDS bands of rows (fewer for a short level) covering height rows."""
    step = max(1, -(-height // _ATLAS_BANDS))
    return [slice(top, top + step) for top in range(0, height, step)]


def _share(pool: ThreadPoolExecutor | None, parts: Sequence[Callable[[], Any]]) -> list[Any]:
    """The parts' results, run on the pool and this thread together (here alone without a pool)."""
    if pool is None:
        return [part() for part in parts]
    return SharedWork(pool, _call, [(part,) for part in parts]).results()


def _call(part: Callable[[], Any]) -> Any:
    return part()


def _wrap_border(atlas: np.ndarray, place: tuple[int, int], size: tuple[int, int]) -> None:
    """Fills the border around the blend at place from its opposite edges: bilinear lookups at the
    swatch's edges reach the opposite edge (levels of one texel wrap onto themselves)."""
    x, y = place
    w, h = size
    rows = np.arange(-_PAD, h + _PAD) % h
    cols = np.arange(-_PAD, w + _PAD) % w
    block = atlas[y : y + h + 2 * _PAD, x : x + w + 2 * _PAD]
    inner = block[_PAD : _PAD + h, _PAD : _PAD + w]
    for edge in (slice(0, _PAD), slice(h + _PAD, h + 2 * _PAD)):
        block[edge, _PAD : _PAD + w] = inner[rows[edge]]
    for edge in (slice(0, _PAD), slice(w + _PAD, w + 2 * _PAD)):
        block[:, edge] = block[:, _PAD + cols[edge]]


def _pack(boxes: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], int, int]:
    """Packs boxes given tallest first: their corners and the atlas's width and height. The first
    row holds the boxes as tall as the first (a level's blends), with room beside them for none,
    one or two of the next size (when an octave's finer blends are not built, its one or two
    blends would otherwise leave the next octave's in rows half empty); whichever of the three
    widths packs into the least area."""
    tallest = boxes[0][1]
    row = sum(w for w, h in boxes if h == tallest)
    beside = next((w for w, h in boxes if h < tallest), 0)
    widths = sorted({min(_MAX_ATLAS_SIDE, row + k * beside) for k in range(3)})
    packings = [(width, *_skyline(boxes, width)) for width in widths if max(w for w, _ in boxes) <= width]
    if not packings:
        raise InputError("swatch: too large to sample")
    width, places, height = min(packings, key=lambda packing: packing[0] * packing[2])
    if height > _MAX_ATLAS_SIDE:
        raise InputError("swatch: too large to sample")
    return places, width, height


def _skyline(boxes: list[tuple[int, int]], width: int) -> tuple[list[tuple[int, int]], int]:
    """Bottom-left skyline packing into rows `width` wide: each box goes where its top is highest
    (the least y), the leftmost such place; the corners and the height used. The skyline is
    (x, y, w) segments across the width, the y where each stretch of columns is free from."""
    skyline = [(0, 0, width)]
    places = []
    for w, h in boxes:
        best: tuple[int, int, int] | None = None  # (y, x, segment index)
        for i, (x, _, _) in enumerate(skyline):
            if x + w > width:
                break
            y, j, reach = 0, i, x
            while reach < x + w:  # the highest segment under the box
                y = max(y, skyline[j][1])
                reach = skyline[j][0] + skyline[j][2]
                j += 1
            if best is None or y < best[0]:
                best = (y, x, i)
        assert best is not None  # a box no wider than the width fits at the first segment
        y, x, i = best
        places.append((x, y))
        # The box's columns now free from y + h; segments under it shortened or removed.
        kept = [segment for segment in skyline if segment[0] + segment[2] <= x]
        after = []
        for sx, sy, sw in skyline:
            if sx + sw > x + w:
                start = max(sx, x + w)
                after.append((start, sy, sx + sw - start))
        skyline = [*kept, (x, y + h, w), *after]
    return places, max(y + h for (_, y), (_, h) in zip(places, boxes, strict=True))


def texel_transform(
    H: np.ndarray,
    repeats_u: float,
    repeats_v: float,
    rotation_degrees: float,
    swatch_w: int,
    swatch_h: int,
    tile_aspect: float = 0.0,
) -> np.ndarray:
    """The 3x3 map from image pixels to unwrapped level-0 texel coordinates of the swatch.

    Tiles keep the swatch's proportions, or tile_aspect (a tile's physical height over its width)
    where given; rotation turns the material about the surface's origin, in physical units.
    """
    aspect = tile_aspect or swatch_h / swatch_w
    theta = math.radians(rotation_degrees)
    R = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    # Physical coordinates in tile widths, rotated, then scaled to texels (a tile is swatch_w texels
    # wide and `aspect` tile widths, swatch_h texels, tall).
    A = np.diag([swatch_w, swatch_h / aspect]) @ R @ np.diag([repeats_u, repeats_v * aspect])
    M = np.eye(3)
    M[:2, :2] = A
    return np.asarray(M @ np.linalg.inv(H), dtype=np.float64)


def _footprint(T: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, ...]:
    """Texel coordinates of pixel centres and their footprints, from the projective map's Jacobian:
    px, py, the squared lengths of the footprint's major and minor axes and the major axis (dx, dy)."""
    w = T[2, 0] * xs + T[2, 1] * ys + T[2, 2]
    inv_w = 1.0 / np.maximum(w, 1e-9)
    px = (T[0, 0] * xs + T[0, 1] * ys + T[0, 2]) * inv_w
    py = (T[1, 0] * xs + T[1, 1] * ys + T[1, 2]) * inv_w
    ax, ay = (T[0, 0] - px * T[2, 0]) * inv_w, (T[1, 0] - py * T[2, 0]) * inv_w  # along image x
    bx, by = (T[0, 1] - px * T[2, 1]) * inv_w, (T[1, 1] - py * T[2, 1]) * inv_w  # along image y
    a2, b2 = ax * ax + ay * ay, bx * bx + by * by
    a_major = a2 >= b2
    return (
        px,
        py,
        np.maximum(a2, b2),
        np.minimum(a2, b2),
        np.where(a_major, ax, bx),
        np.where(a_major, ay, by),
    )


def finest_blend(
    T: np.ndarray, x0: int, y0: int, width: int, height: int, probes: int = PROBES, fractions: int = FRACTIONS
) -> int:
    """The finest blend of the atlas that sampling the rectangle looks up: the least level of
    detail over a grid of every 16th pixel, reaching _GRID_REACH pixels beyond the rectangle (the
    sampler's blocks and their margin do), less how much it changes between the grid's
    neighbours, up to a quarter octave (between two of them it stays within that of theirs; near
    the plane's horizon, where it climbs steeply, the cap keeps a steep neighbour from asking for
    the finest blends)."""
    reach = _GRID_REACH
    xs = np.append(np.arange(x0 - reach, x0 + width + reach, 16), x0 + width - 1 + reach)[None, :]
    ys = np.append(np.arange(y0 - reach, y0 + height + reach, 16), y0 + height - 1 + reach)[:, None]
    _, _, major2, minor2, _, _ = _footprint(T, xs, ys)
    lod = 0.5 * np.log2(np.maximum(np.maximum(minor2, major2 / (probes * probes)), 1e-12)) + LOD_BIAS
    # Each point's largest change to a neighbour: the one above, below, left or right of it.
    step = np.zeros_like(lod)
    down, across = np.abs(np.diff(lod, axis=0)), np.abs(np.diff(lod, axis=1))
    for part, change in ((step[1:], down), (step[:-1], down), (step[:, 1:], across), (step[:, :-1], across)):
        np.maximum(part, change, out=part)
    least = float(np.min(lod - np.minimum(step, _STEP_CAP))) - _LOD_MARGIN
    return max(0, math.floor(least * fractions + 0.5))


def sample_surface(
    atlas: MipAtlas,
    T: np.ndarray,
    x0: int,
    y0: int,
    width: int,
    height: int,
    layout: Layout = STRAIGHT,
    probes: int = PROBES,
) -> tuple[np.ndarray, np.ndarray]:
    """Samples the texture for the pixel rectangle (x0, y0, width, height), anisotropically.

    Returns the linear-light colour (float32 HxWx3) and a validity mask (pixels beyond the
    plane's horizon are invalid). The layout says where each point falls in the swatch.
    """
    valid = on_plane(T, x0, y0, width, height)
    return sample_linear(atlas, T, x0, y0, width, height, layout, probes), (
        np.ones((height, width), bool) if valid is None else valid
    )


def sample_linear(
    atlas: MipAtlas,
    T: np.ndarray,
    x0: int,
    y0: int,
    width: int,
    height: int,
    layout: Layout = STRAIGHT,
    probes: int = PROBES,
    *,
    out: np.ndarray | None = None,
    scale: float = 1.0,
) -> np.ndarray:
    """The linear-light colour (float32 HxWx3) of the pixel rectangle (x0, y0, width, height),
    sampled anisotropically; pixels beyond the plane's horizon get some colour (see on_plane).
    With `out` (HxWx3, float32 or uint16), scale times the colour is written there instead
    (rounded and saturated for uint16).

    A pixel's colour depends only on its own position, so any split of a region into rectangles
    whose left edges are a multiple of LOD_STEP columns apart, and tops a multiple of LOD_STEP rows
    apart, samples exactly what the region sampled whole does.
    """
    if width > _MAX_REMAP_SIDE or height > _MAX_REMAP_SIDE:
        # cv2.remap takes fewer than 32,767 columns and rows (its maps are int16): a wider surface (a
        # panorama's floor) is sampled in rectangles of at most that, which samples the same.
        if out is None:
            out, scale = np.empty((height, width, 3), np.float32), 1.0
        for top in range(0, height, _MAX_REMAP_SIDE):
            for left in range(0, width, _MAX_REMAP_SIDE):
                rows, cols = min(_MAX_REMAP_SIDE, height - top), min(_MAX_REMAP_SIDE, width - left)
                part = out[top : top + rows, left : left + cols]
                sample_linear(atlas, T, x0 + left, y0 + top, cols, rows, layout, probes, out=part, scale=scale)
        return out
    # The coarse grid: one sample per LOD_STEP x LOD_STEP block, the blocks aligned to the photo's
    # pixel grid (x0, and y0 up to a multiple of LOD_STEP), with a block of margin on every side, so
    # that enlarging by exactly LOD_STEP interpolates every pixel between its true neighbours.
    pad = LOD_STEP
    cols = -(-(width + 2 * pad) // LOD_STEP)
    rows = -(-(height + 2 * pad) // LOD_STEP)
    centre = (LOD_STEP - 1) / 2 - pad
    gx = (np.arange(cols) * LOD_STEP + x0 + centre)[None, :]
    gy = (np.arange(rows) * LOD_STEP + y0 + centre)[:, None]
    px, py, major2, minor2, major_x, major_y = _footprint(T, gx, gy)
    per_probe = np.maximum(minor2, major2 / (probes * probes))
    lod = np.clip(0.5 * np.log2(np.maximum(per_probe, 1e-12)) + LOD_BIAS, 0.0, atlas.max_lod)
    # Probes spread over the part of the major axis beyond one texel: none when magnifying.
    length = np.sqrt(major2)
    spread = np.maximum(length - 1.0, 0.0) / np.maximum(length, 1e-6) / probes
    if not spread.any():
        probes = 1  # magnified everywhere (a swatch coarser than the photo): the probes coincide
    # One blend for both probes (staggering their roundings measured no better).
    level = np.clip(np.floor(lod * atlas.fractions + 0.5), 0, atlas.levels - 1).astype(np.intp)
    grid = (cols * LOD_STEP, rows * LOD_STEP)
    crop = (slice(pad, pad + height), slice(pad, pad + width))

    def fine(field: np.ndarray, interpolation: int) -> np.ndarray:
        return cv2.resize(field.astype(np.float32), grid, interpolation=interpolation)[crop]

    # The blend's size and place in the atlas, constant over each block of pixels (a block's
    # nearest grid point is its own: the same in every strip).
    size_x, size_y, origin_x, origin_y = (
        fine(table[level], cv2.INTER_NEAREST_EXACT)
        for table in (atlas.size[:, 0], atlas.size[:, 1], atlas.origin[:, 0], atlas.origin[:, 1])
    )
    colour: np.ndarray | None = None
    for k in range(probes):
        offset = ((k + 0.5) / probes - 0.5) * probes  # probe centres spread evenly along the major axis
        # In swatch widths and heights: wrapping is then the fractional part.
        u = fine((px + offset * spread * major_x) * (1.0 / atlas.width), cv2.INTER_LINEAR)
        v = fine((py + offset * spread * major_y) * (1.0 / atlas.height), cv2.INTER_LINEAR)
        u, v = _wrap(u, v, layout, atlas.width, atlas.height)
        cv2.multiply(u, size_x, dst=u)
        cv2.add(u, origin_x, dst=u)
        cv2.multiply(v, size_y, dst=v)
        cv2.add(v, origin_y, dst=v)
        # cv2.remap makes the maps fixed point (1/32 texel) block by block as it goes.
        linear = cv2.remap(atlas.atlas, u, v, cv2.INTER_LINEAR)
        # The running mean of the probes; the last one's goes straight into out.
        if colour is None:
            colour = linear
        elif k + 1 < probes or out is None:
            cv2.addWeighted(colour, k / (k + 1), linear, 1 / (k + 1), 0.0, dst=colour)
        else:
            depth = cv2.CV_16U if out.dtype == np.uint16 else cv2.CV_32F
            return cv2.addWeighted(colour, scale * k / (k + 1), linear, scale / (k + 1), 0.0, dst=out, dtype=depth)
    assert colour is not None
    if out is None:
        return colour
    depth = cv2.CV_16U if out.dtype == np.uint16 else cv2.CV_32F
    return cv2.addWeighted(colour, scale, colour, 0.0, 0.0, dst=out, dtype=depth)


def _wrap(u: np.ndarray, v: np.ndarray, layout: Layout, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Unwrapped swatch coordinates (in swatch widths and heights) to [0, 1] inside the swatch, as
    the layout lays copies of it (new contiguous arrays)."""
    if layout.herringbone:
        stretch = layout.stretch(width, height)
        tu, tv = herringbone_texels(u * np.float32(width), v * np.float32(height), width, height, stretch)
        return tu * np.float32(1.0 / width), tv * np.float32(1.0 / height)
    row = np.floor(v)
    if layout.row_offset:
        odd = row - np.float32(2.0) * np.floor(row * np.float32(0.5))
        u = u + odd * np.float32(layout.row_offset)
    column = np.floor(u)
    return np.subtract(u, column, out=column), np.subtract(v, row, out=row)


def on_plane(T: np.ndarray, x0: int, y0: int, width: int, height: int) -> np.ndarray | None:
    """Which pixels of the rectangle are in front of the camera on the plane; None when all are
    (the plane's depth is linear in the pixel, so checking the corners settles most rectangles)."""
    corners = [(x, y) for x in (x0, x0 + width - 1) for y in (y0, y0 + height - 1)]
    if all(T[2, 0] * x + T[2, 1] * y + T[2, 2] > 1e-9 for x, y in corners):
        return None
    xs = np.arange(x0, x0 + width, dtype=np.float64)[None, :]
    ys = np.arange(y0, y0 + height, dtype=np.float64)[:, None]
    return np.asarray(T[2, 0] * xs + T[2, 1] * ys + T[2, 2] > 1e-9)
