"""Filtered texture sampling through a homography: a mip atlas sampled trilinearly.

All mip levels of the swatch (in linear light) are packed into one atlas, each with a wrapped
border, so two cv2.remap calls (the two nearest levels) sample every pixel at the level its
footprint needs. That keeps fine patterns from aliasing into moire where the surface recedes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from renderkit.imaging import srgb_to_linear

_PAD = 2


@dataclass(frozen=True)
class MipAtlas:
    """A swatch's mip levels packed into one image with per-level offsets and scales."""

    atlas: np.ndarray  # float32, linear light
    width: int  # level 0
    height: int
    offset_x: np.ndarray  # per level, float32
    offset_y: np.ndarray
    scale_x: np.ndarray
    scale_y: np.ndarray

    @property
    def levels(self) -> int:
        return int(self.offset_x.size)


def build_mip_atlas(swatch_bgr: np.ndarray) -> MipAtlas:
    """Builds the atlas of a uint8 BGR swatch."""
    level = srgb_to_linear(swatch_bgr)
    levels = [level]
    while min(levels[-1].shape[:2]) > 1:
        h, w = levels[-1].shape[:2]
        levels.append(
            cv2.resize(levels[-1], (max(1, (w + 1) // 2), max(1, (h + 1) // 2)), interpolation=cv2.INTER_AREA)
        )
    padded = [cv2.copyMakeBorder(lv, _PAD, _PAD, _PAD, _PAD, cv2.BORDER_WRAP) for lv in levels]
    h0, w0 = levels[0].shape[:2]
    right = padded[1:]
    atlas_w = padded[0].shape[1] + (max(p.shape[1] for p in right) if right else 0)
    atlas_h = max(padded[0].shape[0], sum(p.shape[0] for p in right))
    atlas = np.zeros((atlas_h, atlas_w, 3), np.float32)
    offsets = [(0, 0)]
    atlas[: padded[0].shape[0], : padded[0].shape[1]] = padded[0]
    y = 0
    for p in right:
        x = padded[0].shape[1]
        atlas[y : y + p.shape[0], x : x + p.shape[1]] = p
        offsets.append((x, y))
        y += p.shape[0]
    return MipAtlas(
        atlas=atlas,
        width=w0,
        height=h0,
        offset_x=np.array([o[0] + _PAD for o in offsets], np.float32),
        offset_y=np.array([o[1] + _PAD for o in offsets], np.float32),
        scale_x=np.array([lv.shape[1] / w0 for lv in levels], np.float32),
        scale_y=np.array([lv.shape[0] / h0 for lv in levels], np.float32),
    )


def texel_transform(
    H: np.ndarray, repeats_u: float, repeats_v: float, rotation_degrees: float, swatch_w: int, swatch_h: int
) -> np.ndarray:
    """The 3x3 map from image pixels to unwrapped level-0 texel coordinates of the swatch.

    Tiles keep the swatch's proportions; rotation turns the material about the surface's origin.
    """
    aspect = swatch_h / swatch_w
    theta = math.radians(rotation_degrees)
    R = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    # Physical coordinates in tile widths, rotated, then scaled to texels (a tile is swatch_w texels wide
    # and, keeping the swatch's proportions, swatch_h texels tall).
    A = swatch_w * R @ np.diag([repeats_u, repeats_v * aspect])
    M = np.eye(3)
    M[:2, :2] = A
    return np.asarray(M @ np.linalg.inv(H), dtype=np.float64)


def sample_surface(
    atlas: MipAtlas, T: np.ndarray, x0: int, y0: int, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Samples the texture for the pixel rectangle (x0, y0, width, height).

    Returns the linear-light colour (float32 HxWx3) and a validity mask (pixels beyond the
    plane's horizon are invalid).
    """
    xs = np.arange(x0, x0 + width, dtype=np.float32)[None, :]
    ys = np.arange(y0, y0 + height, dtype=np.float32)[:, None]
    T32 = T.astype(np.float32)
    w = T32[2, 0] * xs + T32[2, 1] * ys + T32[2, 2]
    valid = w > 1e-9
    inv_w = np.where(valid, 1.0 / np.where(valid, w, 1.0), 0.0).astype(np.float32)
    px = (T32[0, 0] * xs + T32[0, 1] * ys + T32[0, 2]) * inv_w
    py = (T32[1, 0] * xs + T32[1, 1] * ys + T32[1, 2]) * inv_w
    # The footprint of one pixel in texels: the Jacobian of the projective map, analytically.
    dpx_dx = (T32[0, 0] - px * T32[2, 0]) * inv_w
    dpx_dy = (T32[0, 1] - px * T32[2, 1]) * inv_w
    dpy_dx = (T32[1, 0] - py * T32[2, 0]) * inv_w
    dpy_dy = (T32[1, 1] - py * T32[2, 1]) * inv_w
    footprint = np.maximum(dpx_dx * dpx_dx + dpy_dx * dpy_dx, dpx_dy * dpx_dy + dpy_dy * dpy_dy)
    lod = 0.5 * np.log2(np.maximum(footprint, 1e-12))
    np.clip(lod, 0.0, atlas.levels - 1, out=lod)
    level0 = lod.astype(np.int32)
    frac = (lod - level0)[..., None]
    level1 = np.minimum(level0 + 1, atlas.levels - 1)
    u = np.mod(px, atlas.width)
    v = np.mod(py, atlas.height)

    def at_level(level: np.ndarray) -> np.ndarray:
        map_x = u * atlas.scale_x[level] - 0.5 + atlas.offset_x[level]
        map_y = v * atlas.scale_y[level] - 0.5 + atlas.offset_y[level]
        return cv2.remap(
            atlas.atlas,
            map_x.astype(np.float32),
            map_y.astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )

    colour = at_level(level0)
    colour += (at_level(level1) - colour) * frac
    return colour, valid
