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
from services.projection.layouts import Layout, swatch_texels

STRAIGHT = Layout()

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


def _footprint(T: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A pixel's footprint in texels from the projective map's Jacobian: the squared lengths of its
    major and minor axes and the major axis as a vector (dx, dy stacked on the last axis)."""
    w = T[2, 0] * xs + T[2, 1] * ys + T[2, 2]
    inv_w = np.float32(1.0) / np.maximum(w, np.float32(1e-9))
    px = (T[0, 0] * xs + T[0, 1] * ys + T[0, 2]) * inv_w
    py = (T[1, 0] * xs + T[1, 1] * ys + T[1, 2]) * inv_w
    ax, ay = (T[0, 0] - px * T[2, 0]) * inv_w, (T[1, 0] - py * T[2, 0]) * inv_w  # along image x
    bx, by = (T[0, 1] - px * T[2, 1]) * inv_w, (T[1, 1] - py * T[2, 1]) * inv_w  # along image y
    a2, b2 = ax * ax + ay * ay, bx * bx + by * by
    a_major = a2 >= b2
    major = np.stack([np.where(a_major, ax, bx), np.where(a_major, ay, by)], axis=-1).astype(np.float32)
    return np.maximum(a2, b2), np.minimum(a2, b2), major


# The footprint varies smoothly across the image, so it is evaluated on a grid this much coarser.
LOD_STEP = 4
# Probes along the footprint's major axis: each covers 1/PROBES of it, so the mip level can be
# that much finer (sharp receding surfaces) without aliasing along the major axis.
PROBES = 2


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
    T32 = T.astype(np.float32)
    xs = np.arange(x0, x0 + width, dtype=np.float32)[None, :]
    ys = np.arange(y0, y0 + height, dtype=np.float32)[:, None]
    w = T32[2, 0] * xs + T32[2, 1] * ys + T32[2, 2]
    valid = w > 1e-9
    inv_w = np.float32(1.0) / np.maximum(w, np.float32(1e-9))
    px = (T32[0, 0] * xs + T32[0, 1] * ys + T32[0, 2]) * inv_w
    py = (T32[1, 0] * xs + T32[1, 1] * ys + T32[1, 2]) * inv_w
    # The coarse grid: one sample per LOD_STEP x LOD_STEP block, the blocks aligned to the photo's
    # pixel grid (x0, and y0 up to a multiple of LOD_STEP), with a block of margin on every side, so
    # that enlarging by exactly LOD_STEP interpolates every pixel between its true neighbours and a
    # rectangle sampled in strips matches one sampled whole.
    pad = LOD_STEP
    cols = -(-(width + 2 * pad) // LOD_STEP)
    rows = -(-(height + 2 * pad) // LOD_STEP)
    centre = np.float32((LOD_STEP - 1) / 2 - pad)
    gx = (np.arange(cols, dtype=np.float32) * LOD_STEP + np.float32(x0) + centre)[None, :]
    gy = (np.arange(rows, dtype=np.float32) * LOD_STEP + np.float32(y0) + centre)[:, None]
    major2, minor2, major = _footprint(T32, gx, gy)

    def fine(field: np.ndarray) -> np.ndarray:
        big = cv2.resize(field, (cols * LOD_STEP, rows * LOD_STEP), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(big[pad : pad + height, pad : pad + width])

    per_probe = np.maximum(minor2, major2 / np.float32(probes * probes))
    lod = fine(np.asarray(0.5 * np.log2(np.maximum(per_probe, np.float32(1e-12))), np.float32))
    # Probes spread over the part of the major axis beyond one texel: none when magnifying.
    length = np.sqrt(major2)
    spread = (np.maximum(length - 1.0, 0.0) / np.maximum(length, np.float32(1e-6)) / probes).astype(np.float32)
    step = fine(major * spread[..., None])
    np.clip(lod, 0.0, atlas.levels - 1, out=lod)
    level0 = lod.astype(np.uint8)
    level1 = np.minimum(level0 + 1, atlas.levels - 1).astype(np.uint8)
    weight1 = lod - level0

    def table(values: np.ndarray, shift: float) -> np.ndarray:
        lut = np.zeros((1, 256), np.float32)
        lut[0, : values.size] = values + shift
        return lut

    # Per-pixel level parameters through cv2.LUT: far faster than numpy gathers.
    levels = []
    for level in (level0, level1):
        levels.append(
            (
                cv2.LUT(level, table(atlas.scale_x, 0)),
                cv2.LUT(level, table(atlas.offset_x, -0.5)),
                cv2.LUT(level, table(atlas.scale_y, 0)),
                cv2.LUT(level, table(atlas.offset_y, -0.5)),
            )
        )

    def probe(qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
        u, v = swatch_texels(qx, qy, layout, atlas.width, atlas.height)
        samples = [
            cv2.remap(atlas.atlas, u * sx + ox, v * sy + oy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            for sx, ox, sy, oy in levels
        ]
        return cv2.blendLinear(samples[0], samples[1], np.float32(1.0) - weight1, weight1)

    colour: np.ndarray | None = None
    for k in range(probes):
        offset = np.float32((k + 0.5) / probes - 0.5)  # probe centres spread evenly along the major axis
        sample = probe(px + offset * probes * step[..., 0], py + offset * probes * step[..., 1])
        colour = sample if colour is None else colour + sample
    assert colour is not None
    return colour * np.float32(1.0 / probes), valid
