"""Appearance pooled at the surface's own scale: what tells a patterned surface from a plain one
beside it when clicks alone say where it is.

In lighting-invariant features a large, plain part of a pattern (a carpet's beige square, a tile's
smooth inside near the camera) looks like a plain surface beside it (a wall of the same grey), and
which one a fixed neighbourhood sees depends on how large the pattern appears in the photo, which
perspective changes across the surface. On the plane the pattern is the same size everywhere.
So, from a first mask, the plane is found from the lines (the depth stage's vanishing points, on a
reduced copy), and every pixel's chroma, its spread and the texture's energy are averaged over a
window of one fixed size on that plane (POOL_SHARE of the surface's extent, a few tiles or motifs):
few pixels near the horizon, many near the camera. Pooled so, a tiled floor, a carpet or a
checkerboard is uniform everywhere (its joints, motif and squares are inside every window) and a
plain wall beside it is not: smoother, and without the pattern's spread of colour. Pixels past the
plane's horizon cannot be on it.

Measured on `make quality`'s scenes and the segmentation benchmark (docs/quality.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from renderkit import homography
from services.depth.vanishing import EXIF_FOCAL_TOLERANCE, plane_from_lines
from services.segmentation.superpixels import Superpixels

# The lines are looked for on a copy at most this large (a finer one found the same windows).
PLANE_SIDE = 640
# The pooling window's radius (the Gaussian's sigma) on the plane, as a share of the square root of
# the first mask's area there. 0.05-0.12 measured alike; 0.16 began to merge a floor with its walls.
POOL_SHARE = 0.08
# The pooled features' scales: mean chroma (2), the chroma's spread, log texture energy.
SCALES = np.array([0.06, 0.06, 0.06, 0.3])
# Texture energy below this is the sensor's noise: the log of pooled energy is taken above it.
ENERGY_FLOOR = np.float32(0.005)
# ... and above this a pixel's energy counts as this much: a light's hard edge (a sun patch's, a
# log step of 0.8) would otherwise raise a whole window's texture, as much as a pattern. Plain
# walls measure ~0.006, tiles 0.015-0.02 with their joints; 0.05-0.07 measured alike, 0.03 lost
# a tiled wall, 0.1 a sunlit floor's sun patch.
ENERGY_CAP = np.float32(0.06)
# The octave radii (working pixels) pooled at: the first is the pixel itself; larger ones are
# blurred on a copy reduced to an eighth of their radius a pixel (a quarter moved one scene's IoU
# from 0.78 to 0.61; an eighth measured as the full blur, at a quarter of its cost).
_RADII = [0.5 * 2.0**k for k in range(10)]


@dataclass(frozen=True)
class ScaledAppearance:
    """Per superpixel: the pooled features in scale units, and whether it lies past the horizon."""

    descriptors: np.ndarray  # (count, 4)
    off_plane: np.ndarray  # (count,) bool


def to_plane(photo_bgr: np.ndarray, mask: np.ndarray, focal_px: float = 0.0) -> np.ndarray | None:
    """The map (3 x 3) from the photo's pixels to metric coordinates on the masked surface's plane,
    up to scale, from the lines on and around it; None where the lines fix no plane. `mask` may be
    at any size (it is resized to the reduced copy)."""
    height, width = photo_bgr.shape[:2]
    scale = min(1.0, PLANE_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(photo_bgr, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else photo_bgr
    small_mask = cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR)
    try:
        found = plane_from_lines(
            small,
            small_mask,
            homography.default_focal(*size),
            given_focal=focal_px * scale or None,
            focal_tolerance=EXIF_FOCAL_TOLERANCE if focal_px else 0.0,
        )
    except ValueError:  # too few lines, or none that fix a plane
        return None
    # A pixel's ray r = K^-1 p meets the plane n.X = 1 at X = r / (n.r): in an orthonormal basis of
    # the plane (e1, e2) its coordinates are (e1.r, e2.r) / (n.r).
    n = np.asarray(found.normal, np.float64)
    n = n / np.linalg.norm(n)
    e1 = np.cross(n, [0.0, 1.0, 0.0] if abs(n[1]) < 0.9 else [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    K = np.array([[found.focal, 0, size[0] / 2], [0, found.focal, size[1] / 2], [0, 0, 1]])
    to_small = np.diag([scale, scale, 1.0])
    return np.asarray(np.stack([e1, e2, n]) @ np.linalg.inv(K) @ to_small)


# The map to a plane facing the camera (the photo's own pixels, up to scale): where the lines of an
# upright surface fix no plane, it is seen square-on (the caller decides).
FACING = np.eye(3)


def scaled_appearance(
    chroma: np.ndarray,
    energy: np.ndarray,
    graph: Superpixels,
    working_scale: float,
    plane: np.ndarray,
    surface: np.ndarray,
    clipped: np.ndarray,
) -> ScaledAppearance | None:
    """The features pooled over a fixed window on the plane (see the module's docstring), per
    superpixel. chroma (h, w, 2) and energy (h, w) are at the working size, `working_scale` times
    the photo's; surface (bool, working size) is the first mask. Its overexposed pixels (a sun
    patch on the floor: no colour or texture of their own) are left out of every window; those off
    it (a bright wall, the sky) count with the colour they are set apart by. None when the first
    mask is not on the plane."""
    rows, cols = energy.shape
    ys, xs = np.mgrid[0:rows, 0:cols].astype(np.float64)
    xs, ys = (xs + 0.5) / working_scale - 0.5, (ys + 0.5) / working_scale - 0.5  # in the photo
    depth = plane[2, 0] * xs + plane[2, 1] * ys + plane[2, 2]
    if not surface.any():
        return None
    depth *= np.sign(np.median(depth[surface]))  # the surface's side of the horizon is positive
    on_plane = depth > 1e-12
    # The plane's area under a working pixel (|det| / w^3 per photo pixel), and the window's size.
    area = abs(float(np.linalg.det(plane))) / np.maximum(depth, 1e-12) ** 3 / working_scale**2
    inside = surface & on_plane
    if not inside.any():
        return None
    window = POOL_SHARE * math.sqrt(float(area[inside].sum()))
    radius = np.where(on_plane, window / np.sqrt(area), _RADII[0])
    energy = np.minimum(energy, ENERGY_CAP)
    features = np.dstack([chroma, chroma * chroma, energy]).astype(np.float32)
    pooled = _pooled(features, (on_plane & ~(clipped & surface)).astype(np.float32), radius)
    mean = pooled[..., :2]
    spread = np.sqrt(np.maximum(pooled[..., 2:4] - mean * mean, 0).sum(axis=2))
    log_energy = _level_with_scale(np.log(pooled[..., 4] + ENERGY_FLOOR), np.log(area), inside)
    per_pixel = np.dstack([mean, spread, log_energy]) / SCALES.astype(np.float32)
    descriptors = np.stack([graph.mean(per_pixel[..., k]) for k in range(per_pixel.shape[2])], axis=1)
    return ScaledAppearance(descriptors, graph.mean((~on_plane).astype(np.float32)) > 0.5)


# A pattern's edges are a pixel or two wide in the photo whatever its size on the plane, so further
# off, where more of them fall in each pixel, the texture energy measured per pixel rises: a window
# the same size on the plane reads a rougher surface there (scratch checker and hexagon floors: far
# rows 0.6-0.9 log rougher than the near ones, and the second walk left them out as unlike the
# clicks). Step edges' energy rises at most as the square root of the plane's area a pixel covers
# (this bound); fitted on those floors' first masks, 0.17-0.29. A steeper rise is no pattern's
# edges but another surface in the first mask (segmentation_rooms' glossy slate, whose first mask
# held walls and reflections: 0.67, and levelled by 0.5 it lost 0.09 IoU), and is left.
SCALE_TREND_MAX = 0.5


def _level_with_scale(log_energy: np.ndarray, log_area: np.ndarray, surface: np.ndarray) -> np.ndarray:
    """The pooled log texture energy with its rise along the plane's scale on the first mask
    removed (least squares in the log of the plane's area per pixel; a rise of at most
    SCALE_TREND_MAX only), about the mask's median scale and within its range of scales. A fall is
    left: a pattern blurred below a pixel far off is smoother there, as the walls beyond it are.
    `surface` (bool) is the first mask on the plane."""
    x, y = log_area[surface].astype(np.float64), log_energy[surface].astype(np.float64)
    spread = float(np.var(x)) if x.size > 1 else 0.0
    if spread <= 1e-9:
        return log_energy
    trend = float(np.mean((x - x.mean()) * (y - y.mean())) / spread)
    if not 0.0 < trend <= SCALE_TREND_MAX:
        return log_energy
    # Not carried past the mask's own scales: beyond its far edge (the walls, past the horizon) the
    # plane's area per pixel grows without bound.
    scales = np.clip(log_area, x.min(), x.max()) - np.median(x)
    levelled = log_energy - np.float32(trend) * scales.astype(np.float32)
    return np.asarray(levelled, np.float32)


def _pooled(features: np.ndarray, weights: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Each pixel's features averaged over a Gaussian of its own radius (weighted; interpolated in
    log radius between blurs of octave radii)."""
    rows, cols = weights.shape
    wanted = float(radius.max())
    levels = [features]  # a pixel's own (a window with no usable pixel gets them too)
    weighted = np.dstack([features * weights[..., None], weights])  # blurred at every octave
    for sigma in _RADII[1:]:
        if sigma > 2 * wanted:
            break
        reduce = int(max(1, sigma // 8))
        both = weighted
        if reduce > 1:
            both = _resized(both, (max(1, cols // reduce), max(1, rows // reduce)), cv2.INTER_AREA)
        both = cv2.GaussianBlur(both, (0, 0), sigma / reduce)
        if reduce > 1:
            both = _resized(both, (cols, rows), cv2.INTER_LINEAR)
        total = both[..., -1:]
        levels.append(np.where(total > 1e-3, both[..., :-1] / np.maximum(total, np.float32(1e-6)), features))
    position = np.clip(np.log2(np.maximum(radius, _RADII[0]) / _RADII[0]), 0, len(levels) - 1)
    below = np.minimum(np.floor(position).astype(np.int64), len(levels) - 1)
    above = np.minimum(below + 1, len(levels) - 1)
    share = (position - below)[..., None].astype(np.float32)
    stack = np.stack(levels)
    iy, ix = np.mgrid[0:rows, 0:cols]
    return np.asarray(stack[below, iy, ix] * (1 - share) + stack[above, iy, ix] * share)


def _resized(image: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    """cv2.resize of any number of channels (it takes at most four at a time)."""
    parts = [cv2.resize(image[..., k : k + 4], size, interpolation=interpolation) for k in range(0, image.shape[2], 4)]
    return np.dstack([p.reshape(size[1], size[0], -1) for p in parts])
