"""The light on the original surface, as a multiplicative shading field in linear light.

The photo's luminance on the surface is albedo times light, and only the light may carry over to
the new material: its falloff, soft and hard shadows, sun patches with their sharp edges and
highlights, but not the old material's pattern (joints, tiles' and blocks' tones, grain, a
carpet's motif). Two estimates:

- texture_space (the default): the surface rectified through its plane onto a grid in its own
  metric coordinates (where the old pattern is stationary: every tile the same size), at most
  RASTER_SIDE cells a side, sampled from a pyramid so nothing aliases. There, in log luminance:
  the pattern's period is found from the autocorrelation and its per-phase median (the periodic
  motif: a carpet's, grout) subtracted; a median removes what is left of thin joints and grain
  (lines, where a light's edge is a step; narrower beside the light's edges, so that a window
  bar's narrow shadow keeps its depth); then a bilateral filter two tiles wide but blind to
  steps over ~0.3 (a third brighter) averages the tiles' and blocks' own tones away while the
  light's hard edges, several times brighter or darker, stay sharp (on a plain surface, with no
  tones to average, the filter is shorter, so it keeps the light's own curves). Elements longer
  than its reach (planks, laid in courses) keep their tones through it: those are found from the
  courses' joints and, where their tones spread as a laid material's do, taken out and the light
  filtered again (elements.py). The result is normalised to
  the surface's typical light (the median over the photo's pixels, objects standing on the
  surface left out) and warped back to the photo. Near the camera a cell spans several pixels, so
  the light's hard edges come back spread; they are sharpened against the photo (light_edges).
- blur: a mask-normalised, outlier-robust blur of the log in the photo's frame (what this stage
  did before; kept as the fallback when the plane cannot be rectified).
- intrinsic: a model's decomposition (renderkit.triton.INTRINSIC, served by Triton where one is
  deployed): its shading enlarged to the photo and normalised the same way (from_model).

The field is grey. Where the classical estimates find a sharp-edged bright light (a sun patch)
whose colour ratio to the shade agrees all along its edge, that colour is carried too
(light_colour); nowhere else, so that an old surface's own colour fade is never read as light.

Measured on make quality's scenes (docs/quality.md), which is where the constants come from.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np

from renderkit.imaging import srgb_to_linear
from services.projection import elements, light_edges
from services.projection.bilateral import bilateral
from services.projection.light_colour import LightColour, dyed, locus_offset, patch_colour
from services.projection.robust import robust_means

# The light relative to the surface's typical light, at most (a sun patch in a dim room, a lamp's
# hot spot or a sheen can be well over 4 times it).
_MAX_LIGHT = 32.0
_LUMA_BGR = np.array([0.0722, 0.7152, 0.2126], np.float32)
# A block whose mean log light is this far from its neighbourhood's (a factor of e^0.5 = 1.65) is an
# object standing on the surface or a strong pattern of the old material, not light.
_OUTLIER_LOG = np.float32(0.5)
_FOREIGN_LOG = np.float32(1.0)
_EPS = np.float32(1e-3)

AUTO = "auto"
TEXTURE_SPACE = "texture_space"  # rectified onto the plane; pattern and tones removed there
BLUR = "blur"  # a robust blur of the photo's light, in the photo's frame
METHODS = (AUTO, TEXTURE_SPACE, BLUR)
INTRINSIC = "intrinsic"  # a Triton model's decomposition (from_model), not computed here


def shading_field(photo_bgr: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """The shading (float32, 1 is the surface's median light) over a photo region and its mask."""
    height, width = mask.shape
    factor = int(min(8, max(1, sigma // 3)))
    small = (max(1, width // factor), max(1, height // factor))
    luminance = cv2.transform(srgb_to_linear(photo_bgr), _LUMA_BGR.reshape(1, 3))
    weight = mask.astype(np.float32) * np.float32(1.0 / 255.0)
    log_l = np.log(luminance + np.float32(1e-4))
    # Per block: the surface's share and its mean log light.
    share = cv2.resize(weight, small, interpolation=cv2.INTER_AREA)
    block = cv2.resize(log_l * weight, small, interpolation=cv2.INTER_AREA) / np.maximum(share, _EPS)
    s = sigma / factor

    def normalised_blur(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        total = cv2.GaussianBlur(weights, (0, 0), s)
        return cv2.GaussianBlur(values * weights, (0, 0), s) / np.maximum(total, _EPS), total

    smooth, _ = normalised_blur(block, share)
    # A second pass without the pixels far from the local light level, which would otherwise
    # darken (or brighten) their surroundings. The test is per pixel: a block straddling an
    # object's edge would pass it on average.
    near = np.abs(log_l - cv2.resize(smooth, (width, height), interpolation=cv2.INTER_LINEAR)) < _OUTLIER_LOG
    kept = weight * near
    kept_share = cv2.resize(kept, small, interpolation=cv2.INTER_AREA)
    kept_block = cv2.resize(log_l * kept, small, interpolation=cv2.INTER_AREA) / np.maximum(kept_share, _EPS)
    robust, support = normalised_blur(kept_block, kept_share)
    smooth = np.where(support > _EPS, robust, smooth)
    # The reference level: the median light over the surface's blocks of mostly inliers, leaving out those more
    # than a factor of e from the surface's median. A large object standing on the surface passes
    # the local test (its own neighbourhood is dark too) and would pull the level down, brightening
    # the whole swatch; light falloff and shadows stay well inside that factor.
    inside = share > 0.5
    typical = inside & (kept_share > 0.5 * share)
    if typical.any():
        typical &= np.abs(kept_block - np.float32(np.median(kept_block[typical]))) < _FOREIGN_LOG
    if not typical.any():
        typical = inside
    reference = float(np.median(smooth[typical])) if typical.any() else 0.0
    shading = np.clip(np.exp(smooth - np.float32(reference)), 0.03, _MAX_LIGHT).astype(np.float32)
    return cv2.resize(shading, (width, height), interpolation=cv2.INTER_LINEAR)


# ---- texture_space

# The rectified grid's longer side at most (cells); finer where the photo is finer than that.
RASTER_SIDE = 512
# The bilateral filter: its reach (grid cells, about two tiles of 0.45 m at 1 cm a cell) and the
# log-luminance step it will not smooth across (e^0.28: a third brighter), measured best over
# 16-32 cells and 0.25-0.4 on make quality's scenes.
_SPATIAL = 24.0
_RANGE = np.float32(0.28)
# A wide reach also flattens the light's own curves: a lamp's hotspot on a plain floor kept half its
# height. So where the old surface is plain, the reach is shorter: down to _SPATIAL_PLAIN where the
# detail the wide filter leaves (its robust deviation, log luminance, on the grid reduced by
# _REACH_REDUCTION) is at most _PLAIN_DETAIL, _SPATIAL from _PATTERN_DETAIL up, geometrically
# between (measured on make quality's scenes with their old surfaces and with plain ones:
# 0.015-0.044 plain, 0.054-0.094 patterned).
_SPATIAL_PLAIN = 6.0
_PLAIN_DETAIL = 0.03
_PATTERN_DETAIL = 0.05
_REACH_REDUCTION = 4
# A periodic pattern counts when its autocorrelation at the period is at least this (of 1 at lag 0)
# and stands this far above the value at half the period (the central lobe's decay is no period).
_PERIOD_STRENGTH = 0.25
_PERIOD_CONTRAST = 0.1
# ... and when, learnt on half the surface, it explains this share of the other half's detail.
_PERIOD_EXPLAINS = 0.3
# Objects standing on the surface (inside a quad's outline) are left out of the reference level:
# grid cells whose albedo (log luminance over a wide blur) is this far below or above the typical.
# Above, far: direct sun beside skylight is often 5-10 times brighter, and at 1.2 (3.3 times) the
# panes of a sun patch 8 times brighter were left out as objects, the shade alone made the
# typical light, and every estimate came out 8-19 % too bright.
_FOREIGN_BELOW = np.float32(0.7)
_FOREIGN_ABOVE = np.float32(2.2)
# ... but a cell taken for dark whose light is within this of the surface's typical (a factor of
# e^0.5 = 1.65) is the surface in shade beside a bright patch (_reference).
_NEAR_TYPICAL = np.float32(0.5)
# ... and a cell read as the surface is an object after all where, against a blur of what is surely
# the surface, it is dark and its light is this far below the typical (a factor of e: _reference).
_OBJECT_LIGHT = np.float32(1.0)
# ... and so are cells whose colour differs from the surface's as a dye's, not a light's, does
# (_dyed_cells). The colour is read on every k-th pixel, at most _COLOUR_READ a side, then averaged
# over the surface's pixels to at most _COLOUR_SIDE: the objects that move the typical light cover
# a good share of the surface, and a 4K photo then costs what a 1 MP one does (~1-3 ms; reading
# 512 a side cost 3 times that and changed no estimate by over 0.03 dB on judge40's scenes).
_COLOUR_READ = 256
_COLOUR_SIDE = 128
# ... and so are cells whose colour lies across the lights' locus (light_colour.locus_offset) this
# far from the surface's typical place on it: no light moves it so far (blackbody colours from
# 2700 K to 10,000 K lie within 0.13), a pale sofa before a sage wall stood 0.17-0.25 off it (at
# 0.1, 11 % of a held-out walnut floor's own cells were left out as well, at 0.15 2.5 %).
_OFF_LOCUS = np.float32(0.15)
# ... unless the colour fades off the locus around them, as a coloured light's does over its reach:
# then most of the cells _STEP_NEAR to _STEP_FAR cells from them (past an object's outline,
# which mixes its colour in a cell or two) are still half as far off (_RAMP_SHARE). A pale sofa
# before a sage wall (a scratch room, seed 11): 0.13 of that band; green light bounced off a wall
# beside a white floor: 0.9-1.0 (left out as an object, it cost such scratch rooms 1.2-2.8 dB, a
# green lamp on a white wall beside daylight 6.7, a yellow-green blind's sun 4.5-5.0).
_STEP_NEAR = 1
_STEP_FAR = 3
_RAMP_SHARE = 0.5  # between the two (not tuned further)
# ... but only where none of a cell's pixels has a channel at this (of 255) or over: a clipped
# channel takes a sun patch's colour towards white, off the locus (a warm patch three times the
# light on a lavender wall was left out as an object, the estimate 7 % too bright).
_CLIPPED = 250
# A pixel counts in the surface's colour where the mask (uint8, of 255) is at least this: on the
# mask's feathered outline a pixel mixes in what lies beyond it.
_WHOLLY = 250
# A surface with thin lines at the grid's scale: its 3 x 3 and 5 x 5 medians differ by this much
# on average (log; make quality's old brick 0.12, the carpet 0.06, the rest at most 0.03:
# _without_joints).
_THIN_LINES = 0.05
_LEVELS = 6
# A mask's pixels whose footprint on the plane is this many times the surface's nearest (its 10th
# percentile) are off it, towards the horizon (a grazing floor's farthest are ~9 times on our scenes).
_FARTHEST = 40.0
# The linear luminance on 16 bits in one table and one cvtColor: each channel made linear and
# weighted by its Rec. 709 weight over the one cvtColor's BGR2GRAY gives it (Rec. 601), so that
# BGR2GRAY sums them to the linear luminance times _LUMINANCE16_ONE (G's weight grows most, so its
# white is 65535). The grey of the encoded colour made linear instead (what this did before) is
# off by up to 11 % between colours of one luminance: a wall painted in a fade read as a light's
# gradient (a reviewer's scene, quad mode 33.3 dB; 37.5 with this).
_OVER_601 = _LUMA_BGR / np.array([0.114, 0.587, 0.299], np.float32)
_LUMINANCE16_ONE = float(65535 / _OVER_601.max())
_LINEAR16_WEIGHTED = np.ascontiguousarray(
    np.round(srgb_to_linear(np.arange(256, dtype=np.uint8))[:, None] * _LUMINANCE16_ONE * _OVER_601)
    .astype(np.uint16)
    .reshape(1, 256, 3)
)
_PER_LUMINANCE16 = np.float32(1 / _LUMINANCE16_ONE)


class _Unsuitable(Exception):
    """The surface cannot be rectified (too small, or its plane degenerate in this view)."""


def _apply(M: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = M[2, 0] * xs + M[2, 1] * ys + M[2, 2]
    return (M[0, 0] * xs + M[0, 1] * ys + M[0, 2]) / w, (M[1, 0] * xs + M[1, 1] * ys + M[1, 2]) / w


def _axes(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """A grid's column and row indices as a float32 row and column, which broadcast to the grid
    (rather than two full index arrays)."""
    return np.arange(cols, dtype=np.float32)[None, :], np.arange(rows, dtype=np.float32)[:, None]


def _area(M: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The area the map makes of the unit square at each point (xs, ys its corner): |det| of its
    Jacobian at the square's centre, which for a homography is |det M| / w³."""
    w = M[2, 0] * (xs + 0.5) + M[2, 1] * (ys + 0.5) + M[2, 2]
    return np.asarray(abs(float(np.linalg.det(M))) / np.abs(w * w * w))


def _normalised_blur(values: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of values over their weights; wide ones on a copy reduced to about sigma / 3
    per cell (area averages) and enlarged back, which costs a fraction and changes nothing visible."""
    rows, cols = values.shape
    reduce = int(max(1, min(8, sigma // 3)))
    # The weighted values and the weights as planes of their own: interleaving them (one image of
    # two channels) cost more than the second call of each step saves.
    total, weight = values * weights, weights
    if reduce > 1:
        small = (max(1, cols // reduce), max(1, rows // reduce))
        total, weight = (cv2.resize(plane, small, interpolation=cv2.INTER_AREA) for plane in (total, weight))
    total, weight = (cv2.GaussianBlur(plane, (0, 0), sigma / reduce) for plane in (total, weight))
    if reduce > 1:
        total, weight = (cv2.resize(plane, (cols, rows), interpolation=cv2.INTER_LINEAR) for plane in (total, weight))
    return np.asarray(total / np.maximum(weight, _EPS))


def _halved(image: np.ndarray) -> np.ndarray:
    """The image's (uint8 or uint16, one channel) 2 x 2 block means, rounded, (w + 1) // 2 by
    (h + 1) // 2 (an odd side's last row or column repeated): pixel j covers the image's 2j and
    2j + 1 exactly. OpenCV averages exact halvings ~10 times faster than INTER_AREA at the
    fractional ratio an odd side would give it. An odd last column is averaged on its own, as
    OpenCV's exact halving rounds a repeated column ((2a + 2b + 2) >> 2), rather than the image
    copied with it repeated (half the time of a 4K photo's band)."""
    height, width = image.shape
    if height % 2:
        image = cv2.copyMakeBorder(image, 0, 1, 0, 0, cv2.BORDER_REPLICATE)
    rows, even = image.shape[0] // 2, width - width % 2
    out = np.empty((rows, (width + 1) // 2), image.dtype)
    if even:
        cv2.resize(image[:, :even], (even // 2, rows), dst=out[:, : even // 2], interpolation=cv2.INTER_AREA)
    if width % 2:
        last = image[:, even].astype(np.uint32)
        out[:, even // 2] = (last[0::2] + last[1::2] + 1) >> 1
    return out


# Rows of the photo made linear at a time before halving: the full-size 16-bit luminance is never
# held at once (at 4K it would be 16 MB beside the photo while the material is being sampled). A
# 4K band's three 16-bit channels (1.4 MB at 64 rows) stay in the cache between the table and the
# grey: 256 rows (5.7 MB) took 1.08x the time on the 4K room (31 alternating calls).
_BAND_ROWS = 64


def _luminance_and_weight(photo_bgr: np.ndarray, weight: np.ndarray, factor: int) -> np.ndarray:
    """The photo's linear luminance at 1/factor of its size (1 or 2) and the surface's weight
    (the mask at that size, 0-1), as the two channels of one float32 image, written in place.

    The linear luminance of each pixel (_linear_luminance16); halved, its 2 x 2 blocks' means
    (_linear_halved)."""
    both = np.empty((*weight.shape, 2), np.float32)
    np.multiply(weight, np.float32(1 / 255), out=both[..., 1], dtype=np.float32)
    if factor == 1:
        np.multiply(_linear_luminance16(photo_bgr), _PER_LUMINANCE16, out=both[..., 0], dtype=np.float32)
        return both
    for top in range(0, photo_bgr.shape[0], _BAND_ROWS):  # _BAND_ROWS is even: bands halve exactly
        half = _linear_halved(photo_bgr[top : top + _BAND_ROWS])
        np.multiply(half, _PER_LUMINANCE16, out=both[top // 2 : top // 2 + half.shape[0], :, 0], dtype=np.float32)
    return both


def _linear_luminance16(photo_bgr: np.ndarray) -> np.ndarray:
    """The photo's linear luminance (uint16, _LUMINANCE16_ONE is white)."""
    return np.asarray(cv2.cvtColor(cv2.LUT(photo_bgr, _LINEAR16_WEIGHTED), cv2.COLOR_BGR2GRAY))


def _linear_halved(photo_bgr: np.ndarray) -> np.ndarray:
    """The photo's linear luminance (uint16, _LUMINANCE16_ONE is white) in 2 x 2 blocks (_halved):
    each pixel made linear first, then averaged. The mean of the encoded colours made linear is
    darker wherever a block's pixels differ (the sRGB curve is convex): a fine grain read as a
    shade 3-14 % darker than a plain patch of the same luminance, and only past 1.5 MP."""
    return _halved(_linear_luminance16(photo_bgr))


def _texture_space(photo_bgr: np.ndarray, mask: np.ndarray, to_plane: np.ndarray) -> tuple[np.ndarray, bool]:
    """The texture_space estimate over a photo region (see the module's docstring), and whether it
    is at half the region's pixels (Shading.halved)."""
    height, width = mask.shape
    # Linear light, halved for large regions (a grid cell then still spans a pixel or more of it),
    # and for regions wider or taller than cv2.remap reads (_Grid.sample): a panorama's thin strip.
    factor = 2 if width * height > 1_500_000 or max(width, height) >= _MAX_REMAP_SOURCE else 1
    weight = _halved(mask) if factor > 1 else mask
    grid = _Grid.fit(to_plane, weight, factor)
    sampled, valid = grid.sample(_pyramid(_luminance_and_weight(photo_bgr, weight, factor)))
    if not valid.any():  # a mask of thin lines or scattered pixels: no cell is mostly surface
        raise _Unsuitable("no surface in the grid")
    log_l: np.ndarray = np.log(sampled + np.float32(1e-4))
    weights = valid.astype(np.float32)
    log_l = np.where(valid, log_l, _normalised_blur(log_l, weights, 8.0))
    # The old pattern's periodic part first, thin lines and all: a median before it would break
    # a motif's lines and edges unevenly (the cells fall on them at every offset), and what it
    # leaves of them no longer repeats (make quality's carpet: light 30.7 -> 31.1 dB).
    log_l = log_l - _periodic_part(log_l, valid)
    wide = np.asarray(cv2.medianBlur(log_l, 5))
    laid = elements.find(log_l, wide, valid)
    log_l = _without_joints(log_l, valid, wide)
    reach, steps = _reach(log_l, weights), _hard_steps(log_l)
    light = bilateral(log_l, weights, reach, _RANGE, border=True, apart=steps)
    # Elements longer than the filter's reach (planks) keep their tones through it: where they spread
    # as a laid material's do, they are taken out and the light filtered again (elements.py).
    # (Tall elements' tones are read across their joints, but not beside the light's hard steps.)
    own = None
    if laid is not None:
        own = elements.tones(log_l, light, laid, reach, _dilated(steps, 1))
    if own is not None:
        log_l = log_l - own
        light = bilateral(log_l, weights, reach, _RANGE, border=True, apart=steps)
    # The typical light, objects standing on the surface left out.
    reference = _reference(log_l, light, valid, grid.pixel_area, _dyed_cells(photo_bgr, mask, grid))
    shading = np.clip(np.exp(light - np.float32(reference)), 0.03, _MAX_LIGHT).astype(np.float32)
    # Back onto the photo: warped at the sampled images' size (a cell spans a pixel or more of it),
    # then enlarged where it is used, which costs a third of warping at full size.
    if factor == 1:
        to_region = grid.to_image
        size = (width, height)
    else:
        to_region = np.array([[0.5, 0.0, -0.25], [0.0, 0.5, -0.25], [0.0, 0.0, 1.0]]) @ grid.to_image
        size = ((width + 1) // 2, (height + 1) // 2)
    warped = np.asarray(
        cv2.warpPerspective(shading, to_region, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    )
    # The grid spreads the light's hard edges over the cells near the camera: they are taken
    # sharp from the photo (light_edges).
    light_edges.sharpen(warped, partial(_luminance_of, photo_bgr, factor), weight)
    return warped, factor > 1


def _reference(
    log_l: np.ndarray, light: np.ndarray, valid: np.ndarray, pixel_area: np.ndarray, dyes: np.ndarray
) -> float:
    """The surface's typical light (log): the median of the light over the photo's pixels of the
    surface (each cell weighs the pixels it covers), objects standing on it left out.

    Objects of a dye's colour against the surface's (`dyes`, _dyed_cells: a blue counter before a
    lavender wall, a red rug on slate) are left out first. Their luminance alone can pass for the
    surface's shade or sun, and where they covered a third of a quad they moved every estimate by
    7-15 % (judge40's W4 and F15). They are kept where they are most of the surface (then the
    surface's own colour is in doubt), or where leaving them out moves the typical light past
    _NEAR_TYPICAL: to another level of the light (a sun patch's, read as a dye)."""
    everything = _typical_light(log_l, light, valid, valid, pixel_area)
    surface = valid & ~dyes
    if np.array_equal(surface, valid) or float(pixel_area[surface].sum()) <= 0.5 * float(pixel_area[valid].sum()):
        return everything
    without = _typical_light(log_l, light, valid, surface, pixel_area)
    return without if abs(without - everything) < _NEAR_TYPICAL else everything


def _typical_light(
    log_l: np.ndarray, light: np.ndarray, valid: np.ndarray, surface: np.ndarray, pixel_area: np.ndarray
) -> float:
    """The median light over the surface's cells (of the valid ones), objects told by their albedo
    left out.

    An object is told by its albedo (the log luminance over a wide blur) far below or above the
    surface's typical. Beside a sun patch that blur is lifted by the patch, and the surface's own
    shade there reads as dark as an object (on make quality's subway wall 8 % of the grid's cells,
    which raised the reference by 4 %): so a cell taken for dark is kept where its light is near
    the typical found without it. An object's light is its own dark level, far from it."""
    albedo = log_l - _normalised_blur(log_l, valid.astype(np.float32), 3 * _SPATIAL)
    typical = float(np.median(albedo[valid]))
    not_bright = surface & (albedo < typical + _FOREIGN_ABOVE)
    usual = not_bright & (albedo > typical - _FOREIGN_BELOW)
    first = _weighted_median(light[usual], pixel_area[usual])
    usual |= not_bright & (np.abs(light - np.float32(first)) < _NEAR_TYPICAL)
    reference = _weighted_median(light[usual], pixel_area[usual])
    if not (surface & ~usual).any():
        return reference
    # A large object (a sofa over a third of a quad) darkens the wide blur over itself too, so most
    # of it read as the surface and pulled the typical down. Once something has been left out, the
    # blur is taken again over what is surely the surface (lit no darker than a factor of e under
    # the typical), and the cells it then finds dark whose light is as far below the typical (an
    # object's own dark level, not the surface's shade) are left out as well.
    surely = usual & (light > np.float32(reference) - _OBJECT_LIGHT)
    again = log_l - _normalised_blur(log_l, surely.astype(np.float32), 3 * _SPATIAL)
    objects = usual & (again < typical - _FOREIGN_BELOW) & (light < np.float32(reference) - _OBJECT_LIGHT)
    if not objects.any() or objects.sum() == usual.sum():
        return reference
    without = _weighted_median(light[usual & ~objects], pixel_area[usual & ~objects])
    # An object only ever pulled the typical down by a part of a level: a move past _NEAR_TYPICAL
    # is the median crossing to another level of the light (a large cast shadow left out beside a
    # sun patch made the sun the typical light, every estimate 8 times too dark).
    return without if without - reference < _NEAR_TYPICAL else reference


def _stepped(off: np.ndarray, across: np.ndarray, read: np.ndarray) -> np.ndarray:
    """The cells off the lights' locus (`off`; `across`: each cell's distance across it from the
    surface's place) where their colour steps there from the surface's, as objects' do; none where
    it fades: a coloured light's falls off over its reach, so the cells around its patch are still
    well off the locus (green light bounced off a wall, a green lamp or blind beside daylight),
    while an object's outline mixes its colour in one cell or two and the surface's lies beyond.
    All of them or none: a carpet under a lamp and the sun stood off in 300 small groups, and
    keeping some of them lost 2.7 dB of make quality's carpet."""
    band = _dilated(off, _STEP_FAR) & ~_dilated(off, _STEP_NEAR) & read
    if not band.any():  # they fill the read cells: left out as before
        return off
    fading = float(np.mean(across[band] > np.float32(0.5 * _OFF_LOCUS)))
    return off if fading <= _RAMP_SHARE else np.zeros_like(off)


def _dilated(cells: np.ndarray, reach: int) -> np.ndarray:
    """The cells within `reach` cells of the given ones (squares)."""
    return np.asarray(cv2.dilate(cells.view(np.uint8), np.ones((2 * reach + 1, 2 * reach + 1), np.uint8))) > 0


def _dyed_cells(photo_bgr: np.ndarray, mask: np.ndarray, grid: _Grid) -> np.ndarray:
    """The grid's cells whose colour differs from the surface's typical colour as a dye's does, not
    as a light's (light_colour.dyed): lights differ along blue-red and by at most _MAX_COLOUR, so a
    warm sun patch or a skylit shade is not a dye, while a green plant, a red or a deeply blue box
    is. The typical colour is the median over the surface's pixels, again without the dyes. Nor
    does a light move a colour across the blackbody's locus (light_colour.locus_offset): a pale
    sofa before a sage wall, whose red and blue both rose against green by 0.1-0.15, too little for
    `dyed`, stands _OFF_LOCUS or more off the wall's place on it (a quarter of a held-out room's
    quad, read as light, lifted the typical light 16 %)."""
    height, width = mask.shape
    # Every k-th pixel (the whole 4K photo made linear and reduced took ~90 ms; the average below
    # takes out the noise).
    stride = max(1, math.ceil(max(height, width) / _COLOUR_READ))
    wholly = (mask[::stride, ::stride] >= _WHOLLY).astype(np.float32)
    read_pixels = np.ascontiguousarray(photo_bgr[::stride, ::stride])
    linear = srgb_to_linear(read_pixels) * wholly[..., None]
    side = _reduced_size(width, height, _COLOUR_SIDE)
    share = cv2.resize(wholly, side, interpolation=cv2.INTER_AREA)
    clipped = cv2.resize((read_pixels.max(axis=2) >= _CLIPPED) * wholly, side, interpolation=cv2.INTER_AREA) > 0
    colour = np.maximum(cv2.resize(linear, side, interpolation=cv2.INTER_AREA), _EPS)
    chroma = np.log(colour) - np.log(np.maximum(colour @ _LUMA_BGR, _EPS))[..., None]
    offset = locus_offset(chroma)
    read = share >= 0.5
    dyes = np.zeros_like(read)
    if read.any():
        surface = read
        for _ in range(2):
            typical = [_weighted_median(chroma[..., c][surface], share[surface]) for c in range(3)]
            dyes = read & dyed(chroma - np.array(typical, np.float32))
            # Clipped cells' colours are not read across the locus, nor make its typical place; nor
            # are a dye's outline's, which mix its colour with the surface's (left out too, on a
            # green object's outline, they moved the typical light 3 %).
            unclipped = surface & ~clipped
            if unclipped.any():
                place = _weighted_median(offset[unclipped], share[unclipped])
                outline = _dilated(dyes, 1)
                across = np.abs(offset - np.float32(place))
                dyes |= _stepped(read & ~clipped & ~outline & (across > _OFF_LOCUS), across, read)
            if not (read & ~dyes).any():
                break
            surface = read & ~dyes
    # Onto the grid: its cells to the reduced image's pixels (pixel centres on both sides).
    sx, sy = side[0] / width, side[1] / height
    to_side = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]]) @ grid.to_image
    rows, cols = grid.shape
    flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    return np.asarray(cv2.warpPerspective(dyes.view(np.uint8), to_side, (cols, rows), flags=flags)) > 0


def _reduced_size(width: int, height: int, side: int) -> tuple[int, int]:
    """An image's size reduced to at most `side` pixels on its longer side (never enlarged)."""
    scale = min(1.0, side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


# cv2.remap reads images of fewer columns and rows than this (SHRT_MAX); halved, every photo
# (decode_limits.MAX_SIDE, 65,500) fits.
_MAX_REMAP_SOURCE = 32_767

_SQUARE5 = np.ones((5, 5), np.uint8)


def _without_joints(log_l: np.ndarray, valid: np.ndarray, wide: np.ndarray | None = None) -> np.ndarray:
    """The grid with its thin joints and grain taken out (lines, where a light's edge is a step):
    a 5 x 5 median, but a 3 x 3 one on and beside the light's hard edges. The 5 x 5 also flattens
    a narrow feature of the light: at the bottom of a window bar's shadow a few cells wide it takes
    the value a cell or two up its sides (make quality's walls: 10-25 % too shallow). Where the
    surface has strong thin lines at the grid's scale (mortar; the two medians then differ by
    over _THIN_LINES on average), the 3 x 3 would keep them beside the edges, and the 5 x 5 is
    kept everywhere. `wide` is the 5 x 5 median when the caller has it already."""
    if wide is None:
        wide = np.asarray(cv2.medianBlur(log_l, 5))
    narrow = np.asarray(cv2.medianBlur(log_l, 3))
    if not valid.any() or float(np.mean(np.abs(narrow - wide)[valid])) > _THIN_LINES:
        return wide
    near = _dilated(light_edges.hard_edges(wide)[0], 1)
    return np.where(near, narrow, wide)


def _hard_steps(log_l: np.ndarray) -> np.ndarray:
    """The grid's cells on the slope of one of the light's hard steps (a sun patch's or a cast
    shadow's edge), by light_edges' test (light_edges.hard_edges). The bilateral filter leaves them
    out of the other cells' means: within its range of both levels, a penumbra drew a sun patch's
    inside 3-6 % darker and the shade beside it brighter (make quality's floors and walls;
    docs/quality.md)."""
    return light_edges.hard_edges(log_l)[0]


def _without_lines(grey: np.ndarray) -> np.ndarray:
    """The image closed then opened by a 5 x 5 square: dark lines and spots (joints, their
    crossings) and then light ones (mortar) up to 4 px wide are gone, while a step (the light's edge)
    stays where it is, even beside a joint that runs along it (where a median sides with the
    darker two of its three parts)."""
    return cv2.morphologyEx(cv2.morphologyEx(grey, cv2.MORPH_CLOSE, _SQUARE5), cv2.MORPH_OPEN, _SQUARE5)


def _luminance_of(photo_bgr: np.ndarray, factor: int, rows: slice, cols: slice) -> np.ndarray:
    """The log of the photo's linear luminance at 1/factor of its size (1 or 2), its thin lines
    taken out (_without_lines), for rows and columns at that size (light_edges.Luminance). The
    lines are taken out before the log, on 16 bits, where OpenCV's morphology is fast: the log is
    monotonic, so the result is the same."""
    if factor == 1:
        grey = _linear_luminance16(photo_bgr[rows, cols])
    else:
        grey = _linear_halved(photo_bgr[2 * rows.start : 2 * rows.stop, 2 * cols.start : 2 * cols.stop])
    return np.asarray(cv2.log(np.multiply(np.maximum(_without_lines(grey), 7), _PER_LUMINANCE16, dtype=np.float32)))


def _reach(log_l: np.ndarray, weights: np.ndarray) -> float:
    """The bilateral filter's reach for a surface (see _SPATIAL_PLAIN), from the detail the widest
    reach leaves on it: the old material's tones, which are tiles or blocks wide, so a grid reduced
    by _REACH_REDUCTION tells them as well as the full one at a sixteenth of the work."""
    rows, cols = log_l.shape
    small = (cols // _REACH_REDUCTION, rows // _REACH_REDUCTION)
    if min(small) < 8:
        return _SPATIAL
    both = cv2.resize(np.dstack([log_l * weights, weights]), small, interpolation=cv2.INTER_AREA)
    inside = both[..., 1] > 0.5
    if np.count_nonzero(inside) < 64:
        return _SPATIAL
    reduced = both[..., 0] / np.maximum(both[..., 1], _EPS)
    light = bilateral(reduced, inside.astype(np.float32), _SPATIAL / _REACH_REDUCTION, _RANGE)
    values = (reduced - light)[inside]
    deviation = 1.4826 * float(np.median(np.abs(values - np.median(values))))
    share = min(1.0, max(0.0, (deviation - _PLAIN_DETAIL) / (_PATTERN_DETAIL - _PLAIN_DETAIL)))
    return _SPATIAL_PLAIN * (_SPATIAL / _SPATIAL_PLAIN) ** share


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The weighted median, to 1/2048 of the values' range (a histogram's, not a sort's cost)."""
    if values.size == 0:
        raise _Unsuitable("no surface in the grid")
    lo, hi = float(values.min()), float(values.max())
    bins = 2048
    index = np.minimum(((values - lo) * (bins / max(hi - lo, 1e-6))).astype(np.int64), bins - 1)
    cumulative = np.cumsum(np.bincount(index, weights, bins))
    k = int(np.searchsorted(cumulative, cumulative[-1] / 2))
    return lo + (k + 0.5) * (hi - lo) / bins


@dataclass(frozen=True)
class _Grid:
    """The rectified grid: cell (j, i) is the plane point origin + (j + 0.5, i + 0.5) * cell."""

    shape: tuple[int, int]  # rows, columns
    to_image: np.ndarray  # grid cells to region pixels (full resolution)
    factor: int  # the sampled images' pixels are this many region pixels
    pixel_area: np.ndarray  # region pixels per cell

    @staticmethod
    def fit(to_plane: np.ndarray, weight: np.ndarray, factor: int) -> _Grid:
        stride = max(1, int(math.sqrt(weight.size / 80_000)))  # about 80,000 pixels looked at
        ys, xs = np.nonzero(weight[::stride, ::stride] > 127)
        if xs.size * stride * stride < 64:
            raise _Unsuitable("too small a surface")
        px = (xs.astype(np.float64) * stride + 0.5) * factor - 0.5
        py = (ys.astype(np.float64) * stride + 0.5) * factor - 0.5
        depth = to_plane[2, 0] * px + to_plane[2, 1] * py + to_plane[2, 2]
        if np.mean(depth * np.sign(np.median(depth)) > 0) < 0.99:
            raise _Unsuitable("the mask reaches past the plane's horizon")
        u, v = _apply(to_plane, px, py)
        cell_area = _area(to_plane, px, py)  # plane units per region pixel, squared
        if not (np.all(np.isfinite(u)) and np.all(np.isfinite(v)) and np.all(np.isfinite(cell_area))):
            raise _Unsuitable("the plane is degenerate")
        # Near the horizon one pixel spans a vast stretch of the plane: such pixels (in a mask that
        # strays off the surface) would stretch the grid over nothing, so they are left out of it.
        typical = float(np.percentile(cell_area, 10))
        near = cell_area <= _FARTHEST**2 * typical
        u, v = u[near], v[near]
        # u and v are copies by now, which the percentiles may reorder.
        (u_lo, u_hi), (v_lo, v_hi) = (np.percentile(w, (0.2, 99.8), overwrite_input=True) for w in (u, v))
        lo, hi = np.array([u_lo, v_lo]), np.array([u_hi, v_hi])
        extent = hi - lo
        cell = max(math.sqrt(typical), float(extent.max()) / RASTER_SIDE)
        if not cell > 0:
            raise _Unsuitable("the plane is degenerate")
        cols = math.ceil(extent[0] / cell) + 2
        rows = math.ceil(extent[1] / cell) + 2
        if min(rows, cols) < 8 or max(rows, cols) > 4 * RASTER_SIDE:
            raise _Unsuitable("the surface is too thin to rectify")
        cols, rows = cols + cols % 2, rows + rows % 2  # even sides for the DFT sizes
        origin = lo - cell
        S = np.array([[cell, 0, origin[0] + 0.5 * cell], [0, cell, origin[1] + 0.5 * cell], [0, 0, 1]])
        to_image = np.linalg.inv(to_plane) @ S
        gx, gy = _axes(rows, cols)
        return _Grid((rows, cols), to_image, factor, _area(to_image, gx, gy).astype(np.float32))

    def sample(self, levels: Iterator[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The luminance and the surface's weight (two channels at 1/factor of the region),
        resampled onto the grid from their Gaussian pyramid (`_pyramid`: each cell from the level
        whose pixels are its size); and which cells are on the surface."""
        rows, cols = self.shape
        X, Y = _apply(self.to_image.astype(np.float32), *_axes(rows, cols))
        lod = np.clip(0.5 * np.log2(np.maximum(self.pixel_area, 1e-9)) - math.log2(self.factor), 0, _LEVELS - 1)
        lod = lod.astype(np.float32)
        out = np.zeros((rows, cols, 2), np.float32)
        coarsest = float(lod.max())
        for k in range(_LEVELS):
            if k >= coarsest + 1:
                break
            level = next(levels, None)
            if level is None:
                break
            # A level serves the cells within one level of its own: a band of the grid where the
            # view recedes (only that band's bounding box is resampled from it).
            near = np.abs(lod - np.float32(k)) < 1
            in_rows, in_cols = np.flatnonzero(near.any(axis=1)), np.flatnonzero(near.any(axis=0))
            if in_rows.size == 0:
                continue
            band = np.s_[in_rows[0] : in_rows[-1] + 1, in_cols[0] : in_cols[-1] + 1]
            share = np.maximum(1 - np.abs(lod[band] - np.float32(k)), 0)
            # The image's pixel x (its pixels centred on integers) is the level's x / 2^k.
            mx = ((X[band] + 0.5) * np.float32(1 / self.factor) - np.float32(0.5)) * np.float32(1 / 2**k)
            my = ((Y[band] + 0.5) * np.float32(1 / self.factor) - np.float32(0.5)) * np.float32(1 / 2**k)
            sampled = np.asarray(cv2.remap(level, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT))
            for channel in range(2):  # a channel at a time: numpy broadcasts over two ~3x slower
                np.multiply(sampled[..., channel], share, out=sampled[..., channel])
            out[band] += sampled
        return np.ascontiguousarray(out[..., 0]), out[..., 1] > 0.5


def _pyramid(image: np.ndarray) -> Iterator[np.ndarray]:
    """The image's Gaussian pyramid, finest first, each level made when asked for from the one
    before, which is then let go (the finest, at a 4K region's half size 16 MB, is not held while
    the coarser ones are sampled); it ends below two pixels."""
    level = image
    del image
    while True:
        yield level
        if min(level.shape[:2]) < 2:
            return
        level = cv2.pyrDown(level)


def _periodic_part(log_l: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The old pattern's periodic part: the median of each phase of its lattice (zeros when the
    pattern has no clear period)."""
    weights = valid.astype(np.float32)
    detail = np.where(valid, log_l - _normalised_blur(log_l, weights, 24.0), 0).astype(np.float32)
    rows, cols = log_l.shape
    # The lattice from the autocorrelation at half size (a quarter of the work; its periods are
    # refined to a fraction of a cell all the same), in full-size cells.
    half = (max(1, cols // 2), max(1, rows // 2))
    basis = _lattice(
        cv2.resize(detail, half, interpolation=cv2.INTER_AREA), cv2.resize(weights, half, interpolation=cv2.INTER_AREA)
    )
    if basis is not None:
        basis = basis * np.array([[cols / half[0]], [rows / half[1]]])
    # A pattern repeats many times over the surface; a "period" as long as a quarter of it is the
    # light's structure (a window's panes cast twice) or chance.
    if basis is None or max(float(np.hypot(*basis[:, k])) for k in range(2)) > min(rows, cols) / 4:
        return np.zeros_like(log_l)
    n1, n2 = (int(np.clip(round(float(np.hypot(*basis[:, k]))), 6, 64)) for k in range(2))
    inverse = np.linalg.inv(basis)
    gy, gx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    alpha = inverse[0, 0] * gx + inverse[0, 1] * gy
    beta = inverse[1, 0] * gx + inverse[1, 1] * gy
    phase = (np.floor((alpha - np.floor(alpha)) * n1).astype(np.int64) % n1) * n2 + (
        np.floor((beta - np.floor(beta)) * n2).astype(np.int64) % n2
    )
    # The pattern must predict itself: learnt on half the surface (alternate 32-cell blocks), it
    # must explain a good share of the other half's detail, which a light's structure would not.
    block = (gy.astype(np.int64) // 32 + gx.astype(np.int64) // 32) % 2 == 0
    learnt = robust_means(detail[valid & block], phase[valid & block], n1 * n2).astype(np.float32)
    held = valid & ~block
    residual = detail[held] - learnt[phase[held]]
    if held.sum() < 100 or float(np.var(residual)) > (1 - _PERIOD_EXPLAINS) * float(np.var(detail[held])):
        return np.zeros_like(log_l)
    part = robust_means(detail[valid], phase[valid], n1 * n2).astype(np.float32)[phase]
    return np.asarray(part - np.median(part[valid]), np.float32)


def _lattice(detail: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    """The two shortest vectors (columns, grid cells, to a sub-cell) of the pattern's lattice, from
    the autocorrelation of its detail, or None when the pattern is not clearly periodic."""
    rows, cols = detail.shape
    # The lags looked at, -ly to ly and -lx to lx. The transform's autocorrelation is circular
    # (lag -k at size - k): padded to rows + ly, no lag up to ly wraps round onto the image.
    ly, lx = rows // 2, cols // 2
    size = (cv2.getOptimalDFTSize(rows + ly), cv2.getOptimalDFTSize(cols + lx))
    lags_y, lags_x = np.arange(-ly, ly + 1) % size[0], np.arange(-lx, lx + 1) % size[1]

    def autocorrelation(image: np.ndarray) -> np.ndarray:
        padded = np.zeros(size, np.float32)
        padded[:rows, :cols] = image
        # The real input's spectrum kept packed (CCS, half the complex one): 0.7 of the time.
        spectrum = cv2.dft(padded, nonzeroRows=rows)
        power = cv2.mulSpectrums(spectrum, spectrum, 0, conjB=True)
        return cv2.idft(power, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE).take(lags_y, 0).take(lags_x, 1)

    # Normalised by the mask's own overlap, so lags that overlap little are not favoured.
    overlap = autocorrelation(weights)
    window = autocorrelation(detail) / np.maximum(overlap, 0.25 * float(weights.sum()))
    window /= max(float(window[ly, lx]), 1e-12)
    lag_y, lag_x = np.mgrid[-ly : ly + 1, -lx : lx + 1]
    candidates = window.copy()
    candidates[(lag_y**2 + lag_x**2 < 16) | (lag_y < 0) | ((lag_y == 0) & (lag_x < 0))] = -1
    peaks = (candidates >= cv2.dilate(candidates, np.ones((3, 3), np.uint8))) & (candidates > _PERIOD_STRENGTH)
    iy, ix = np.nonzero(peaks)
    vectors = np.stack([lag_x[iy, ix], lag_y[iy, ix]], 1).astype(np.float64)
    strength = candidates[iy, ix]
    half = window[ly + np.rint(vectors[:, 1] / 2).astype(int), lx + np.rint(vectors[:, 0] / 2).astype(int)]
    keep = strength > half + _PERIOD_CONTRAST
    vectors, strength = vectors[keep], strength[keep]
    if len(vectors) < 2:
        return None
    order = np.argsort(-(strength - 0.002 * np.hypot(vectors[:, 0], vectors[:, 1])))
    first, second = vectors[order[0]], None
    for k in order[1:]:
        if abs(first[0] * vectors[k, 1] - first[1] * vectors[k, 0]) > 2.0 * float(np.hypot(*first)):
            second = vectors[k]
            break
    if second is None:
        return None
    for _ in range(10):  # Gauss's reduction: the shortest basis of the same lattice
        if second @ second < first @ first:
            first, second = second, first
        m = round(float(first @ second) / float(first @ first))
        if m == 0:
            break
        second = second - m * first

    def refined(vector: np.ndarray) -> np.ndarray:
        """To a sub-cell: the peak near the vector's largest multiple in the window, divided."""
        multiple = 1
        while abs((multiple + 1) * vector[0]) < lx - 3 and abs((multiple + 1) * vector[1]) < ly - 3:
            multiple += 1
        y0, x0 = (round(c) for c in (ly + multiple * vector[1], lx + multiple * vector[0]))
        patch = window[y0 - 2 : y0 + 3, x0 - 2 : x0 + 3]
        if patch.shape != (5, 5):
            return vector
        dy, dx = np.unravel_index(int(np.argmax(patch)), patch.shape)
        y0, x0 = y0 + int(dy) - 2, x0 + int(dx) - 2
        if not (1 <= y0 < window.shape[0] - 1 and 1 <= x0 < window.shape[1] - 1):
            return vector

        def offset(before: float, centre: float, after: float) -> float:
            """The parabola's peak through three samples, within half a cell (0 if not a peak)."""
            curvature = before - 2 * centre + after
            return 0.0 if curvature > -1e-6 else float(np.clip(0.5 * (before - after) / curvature, -0.5, 0.5))

        c = float(window[y0, x0])
        ox = offset(float(window[y0, x0 - 1]), c, float(window[y0, x0 + 1]))
        oy = offset(float(window[y0 - 1, x0]), c, float(window[y0 + 1, x0]))
        return np.array([x0 - lx + ox, y0 - ly + oy]) / multiple

    return np.stack([refined(first), refined(second)], 1)


@dataclass(frozen=True)
class Shading:
    """A shading estimate over a box of the photo: the field (float32, 1 is the surface's typical
    light) for the pixels (x, y, width, height), and which estimate made it.

    With `halved`, the field holds every 2 x 2 block of the box's pixels (its sides rounded up) and
    is enlarged bilinearly as regions are asked for: a 4K surface's light is then 8 MB instead of
    33 MB, and no full-size copy of it is ever made (the composite asks strip by strip)."""

    field: np.ndarray
    box: tuple[int, int, int, int]
    method: str
    halved: bool = False
    # The colour of a sharp-edged bright light and of the shade beside it (light_colour), or None
    # for a grey light.
    colour: LightColour | None = None

    def region(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        """The field over another box of the photo (1 where the estimate has no value)."""
        bx, by, bw, bh = self.box
        if bx <= x and by <= y and x + width <= bx + bw and y + height <= by + bh:  # inside the box
            return self._part(y - by, y - by + height, x - bx, x - bx + width)
        out = np.ones((height, width), np.float32)
        x0, y0 = max(x, bx), max(y, by)
        x1, y1 = min(x + width, bx + bw), min(y + height, by + bh)
        if x1 > x0 and y1 > y0:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = self._part(y0 - by, y1 - by, x0 - bx, x1 - bx)
        return out

    def _part(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        """Rows top to bottom and columns left to right of the box's pixels. A halved field is
        enlarged from an even row and column, with a texel of margin, at exactly twice its size:
        every pixel is what enlarging the whole field gives it."""
        if not self.halved:
            return self.field[top:bottom, left:right]
        rows, cols = self.field.shape
        r0, c0 = max(0, top // 2 - 1), max(0, left // 2 - 1)
        r1, c1 = min(rows, -(-bottom // 2) + 1), min(cols, -(-right // 2) + 1)
        part = cv2.resize(self.field[r0:r1, c0:c1], (2 * (c1 - c0), 2 * (r1 - r0)), interpolation=cv2.INTER_LINEAR)
        return part[top - 2 * r0 : bottom - 2 * r0, left - 2 * c0 : right - 2 * c0]


# A margin around the mask's bounding box: the composite's feather reaches a few pixels beyond it.
_MARGIN = 4


def _box_of(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The box (x, y, width, height) an estimate covers: the mask's bounding box and the margin,
    within the photo; None for an empty mask."""
    height, width = mask.shape
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return None
    x0, y0 = max(0, x - _MARGIN), max(0, y - _MARGIN)
    return x0, y0, min(width, x + w + _MARGIN) - x0, min(height, y + h + _MARGIN) - y0


def estimate_shading(photo_bgr: np.ndarray, mask: np.ndarray, to_plane: np.ndarray, method: str = AUTO) -> Shading:
    """The light on the masked surface of a photo (uint8 BGR, its uint8 mask).

    to_plane maps photo pixels to the surface's own coordinates, equal in both directions up to a
    scale (the composite's texel_transform: the swatch's texels). method 'auto' is texture_space,
    which falls back to blur where the surface cannot be rectified; Shading.method says which ran.
    """
    if method not in METHODS:
        raise ValueError(f"unknown shading estimate {method!r}")
    height, width = mask.shape
    box = _box_of(mask)
    if box is None:
        return Shading(np.ones((0, 0), np.float32), (0, 0, 0, 0), BLUR)
    x0, y0, w, h = box
    photo_box, mask_box = photo_bgr[y0 : y0 + h, x0 : x0 + w], mask[y0 : y0 + h, x0 : x0 + w]
    if method != BLUR:
        shift = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
        try:
            field, halved = _texture_space(photo_box, mask_box, to_plane @ shift)
            return Shading(field, box, TEXTURE_SPACE, halved, patch_colour(photo_box, mask_box, field))
        except (_Unsuitable, np.linalg.LinAlgError):
            pass
    sigma = max(1.5, 0.006 * max(width, height))
    field = shading_field(photo_box, mask_box, sigma)
    return Shading(field, box, BLUR, colour=patch_colour(photo_box, mask_box, field))


def from_model(model_shading: np.ndarray, mask: np.ndarray, photo_bgr: np.ndarray | None = None) -> Shading:
    """An intrinsic model's shading (H' x W', linear light at any scale, for the whole photo at any
    size) as the estimate over the mask's box: enlarged bilinearly to the photo's pixels and
    normalised to the surface's typical light (the median over the mask), clipped as the others.
    With the photo, where a model's pixel is wider than light_edges.REACH photo pixels (a 512 px
    model for a photo over 2048 px), the light's hard edges, which the enlargement spreads over
    that width, are sharpened against the photo as the texture-space estimate's are. Enlarged
    less, they are left as they are: with the true light reduced to 512 x 512 as the model's,
    sharpening gained 0.65-0.97 dB on make quality's two 12 MP scenes (8 times enlarged) and lost
    up to 0.64 dB on its 1-1.4 MP ones (2-3 times)."""
    height, width = mask.shape
    box = _box_of(mask)
    if box is None:
        return Shading(np.ones((0, 0), np.float32), (0, 0, 0, 0), INTRINSIC)
    x0, y0, w, h = box
    source = np.ascontiguousarray(model_shading, np.float32)
    sy, sx = source.shape[0] / height, source.shape[1] / width
    # Box pixel (i, j) is photo pixel (x0 + i, y0 + j), whose centre falls at this point of the
    # model's grid (pixel centres on both sides).
    to_source = np.array([[sx, 0.0, (x0 + 0.5) * sx - 0.5], [0.0, sy, (y0 + 0.5) * sy - 0.5]])
    field = cv2.warpAffine(
        source,
        to_source,
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    surface = field[mask[y0 : y0 + h, x0 : x0 + w] > 127]
    typical = float(np.median(surface)) if surface.size else 0.0
    if not (math.isfinite(typical) and typical > 0):
        raise ValueError("the intrinsic model's shading is not positive on the surface")
    scaled = np.clip(np.nan_to_num(field / np.float32(typical), nan=1.0), 0.03, _MAX_LIGHT).astype(np.float32)
    if photo_bgr is not None and max(1 / sx, 1 / sy) > light_edges.REACH:
        box_of = np.s_[y0 : y0 + h, x0 : x0 + w]
        light_edges.sharpen(scaled, partial(_luminance_of, photo_bgr[box_of], 1), mask[box_of])
    return Shading(scaled, box, INTRINSIC)
