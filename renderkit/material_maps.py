"""Normal and roughness maps derived from a swatch photo, tileable like the swatch itself.

The swatch's luminance stands in for height (grout lines and plank joints are darker and lower),
so the normal map comes from its wrapped gradient; roughness rises with fine texture and falls with
brightness (glossy surfaces photograph brighter). Both are estimates from one photo, meant for
real-time previews, not measured material properties.
"""

from __future__ import annotations

import cv2
import numpy as np

from render.imaging.v1 import imaging_pb2
from renderkit import imaging
from renderkit.imaging import srgb_to_linear

_LUMA_BGR = np.array([0.0722, 0.7152, 0.2126], np.float32)
# Slopes are measured per 1/REFERENCE_SIDE of the swatch's longer side, not per pixel, so the same
# material photographed at 1K or at 4K gets the same relief.
REFERENCE_SIDE = 512
# The local deviation of linear luminance that counts as fully detailed (grout edges, deep grain):
# an absolute scale, so a plain swatch's sensor noise stays smooth rather than being stretched to
# the swatch's most detailed.
FULL_DETAIL = 0.08
# How far a cut-out swatch's joints (its transparent parts) lie below its tiles, in the height's
# units (linear luminance): as deep as the sample tile swatch's photographed grout reads (0.58 on
# the tiles, 0.34 in the joints). Its grout fill is a colour, not a depth: a light grout between
# dark tiles would otherwise stand as a ridge.
JOINT_DEPTH = 0.24


def _wrapped(image: np.ndarray, pad: int) -> np.ndarray:
    if pad <= min(image.shape[:2]):
        return cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_WRAP)
    return np.pad(image, ((pad, pad), (pad, pad)) + ((0, 0),) * (image.ndim - 2), mode="wrap")  # a sliver


def _joints_lowered(luminance: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The luminance with a cut-out's transparent parts set JOINT_DEPTH below its darkest tiles
    (half-transparent edges in proportion).

    Below the darkest, not the tiles' mean: a joint beside a tile darker than the mean by more
    than JOINT_DEPTH (black tiles among white ones) stood above it, a ridge again. And a
    half-transparent edge's colour is already part grout: its share of the grout's luminance is
    what is lowered (the grout read from the fully transparent pixels), else a light grout beside
    dark tiles raised a lip along every anti-aliased edge."""
    opacity = alpha.astype(np.float32) * np.float32(1 / 255)
    step = max(1, int(np.sqrt(alpha.size / 1_000_000)))  # a million samples at most for the levels
    sampled_alpha, sampled = alpha[::step, ::step], luminance[::step, ::step]
    tiles = sampled[sampled_alpha == 255]
    if tiles.size == 0:
        covered = float(opacity.sum(dtype=np.float64))
        if covered == 0.0:  # nothing opaque: no tiles to stand above the joints
            return luminance
        tile_level = float((luminance * opacity).sum(dtype=np.float64)) / covered
    else:
        tile_level = float(np.percentile(tiles, 1))
    floor = tile_level - JOINT_DEPTH
    grout = sampled[sampled_alpha == 0]
    if grout.size == 0:  # no fully transparent pixel to read the grout from
        return np.asarray(floor + (luminance - floor) * opacity, np.float32)
    # The composite is grout + (tile - grout) * a: the grout's share (1 - a) goes down to the floor.
    return np.asarray(luminance - (float(np.median(grout)) - floor) * (1 - opacity), np.float32)


def height_field(swatch_bgr: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """Height: the swatch's linear luminance, lightly smoothed across tile edges, its transparent
    parts (`alpha`, a cut-out's joints) JOINT_DEPTH below its tiles. Not stretched to the swatch's
    own range: a plain swatch whose only variation is a grey level of noise stays as flat as it
    looks."""
    luminance = cv2.transform(srgb_to_linear(swatch_bgr), _LUMA_BGR.reshape(1, 3))
    if alpha is not None:
        luminance = _joints_lowered(luminance, alpha)
    sigma = max(1.0, max(swatch_bgr.shape[:2]) / REFERENCE_SIDE)  # the same share of the swatch at any size
    pad = int(np.ceil(4 * sigma))
    kernel = cv2.getGaussianKernel(2 * pad + 1, sigma)
    # Along a side no longer than twice sigma the wrapped blur is that side's mean (within 1 %):
    # taken as such, not by wrapping a sliver 8 px tall into 1,000 rows (seconds, and 100 times the
    # memory the budget counts for it).
    pads: list[int] = []
    kernels: list[np.ndarray] = []
    for axis, n in enumerate(luminance.shape):
        if 2 * sigma >= n:
            luminance = np.repeat(luminance.mean(axis=axis, keepdims=True), n, axis=axis)
            pads.append(0)
            kernels.append(np.ones((1, 1), np.float64))
        else:
            pads.append(pad)
            kernels.append(kernel)
    (py, px), (ky, kx) = pads, kernels
    height, width = luminance.shape
    wrapped = np.pad(luminance, ((py, py), (px, px)), mode="wrap")
    smooth = cv2.sepFilter2D(wrapped, cv2.CV_32F, kx, ky)[py : py + height, px : px + width]
    return np.asarray(smooth, dtype=np.float32)


def normal_map(swatch_bgr: np.ndarray, strength: float = 8.0, alpha: np.ndarray | None = None) -> np.ndarray:
    """A tangent-space normal map (OpenGL convention: +y up) as uint8 BGR (B = z, G = y, R = x);
    `alpha`: the swatch's, whose transparent parts are joints (height_field)."""
    height = height_field(swatch_bgr, alpha)
    padded = _wrapped(height, 1)
    per_pixel = max(swatch_bgr.shape[:2]) / REFERENCE_SIDE / 8.0  # Sobel's weights sum to 8
    dx = cv2.Sobel(padded, cv2.CV_32F, 1, 0, ksize=3)[1:-1, 1:-1] * per_pixel
    dy = cv2.Sobel(padded, cv2.CV_32F, 0, 1, ksize=3)[1:-1, 1:-1] * per_pixel
    nx, ny, nz = -dx * strength, dy * strength, np.ones_like(dx)  # image rows grow downwards, +y is up
    norm = np.sqrt(nx * nx + ny * ny + nz * nz)
    encoded = [(c / norm * 0.5 + 0.5) * 255.0 for c in (nz, ny, nx)]
    return np.clip(np.stack(encoded, axis=2) + 0.5, 0, 255).astype(np.uint8)


def roughness_map(swatch_bgr: np.ndarray) -> np.ndarray:
    """A roughness map (uint8, 255 = fully rough) from local texture energy and brightness."""
    luminance = cv2.transform(srgb_to_linear(swatch_bgr), _LUMA_BGR.reshape(1, 3))
    pad = 8
    wrapped = _wrapped(luminance, pad)
    mean = cv2.blur(wrapped, (9, 9))
    variance = cv2.blur(wrapped * wrapped, (9, 9)) - mean * mean
    detail = np.sqrt(np.maximum(variance, 0))[pad:-pad, pad:-pad]
    detail = np.minimum(detail / FULL_DETAIL, 1.0)
    roughness = 0.55 + 0.35 * detail - 0.25 * (luminance - float(luminance.mean()))
    return np.clip(roughness * 255.0 + 0.5, 0, 255).astype(np.uint8)


def material_map_images(texture_bgr: np.ndarray, alpha: np.ndarray | None = None) -> list[imaging_pb2.EncodedImage]:
    """A texture's normal and roughness maps as lossless PNG renditions named "normal" and
    "roughness"; `alpha`: a cut-out swatch's, its transparent parts joints lower than its tiles."""
    out = []
    normal = normal_map(texture_bgr, alpha=alpha)
    for name, image in (("normal", normal), ("roughness", roughness_map(texture_bgr))):
        data, content_type = imaging.encode(image, imaging_pb2.FORMAT_PNG)
        out.append(
            imaging_pb2.EncodedImage(
                name=name, data=data, content_type=content_type, width=image.shape[1], height=image.shape[0]
            )
        )
    return out
