"""The whole projection: sample, shade, blend into the photo inside the soft mask.

Past the shading field (a blur over the whole surface) every pixel is independent, so the surface
is cut into horizontal strips sampled, shaded and blended on a small thread pool: numpy and OpenCV
release the GIL, and the per-pixel numpy arithmetic would otherwise use one core of the machine.
Strips are also bounded in size, so the sampler's temporaries stay a fixed amount of memory
instead of growing with the photo (what the per-request memory budget counts on).
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from renderkit.imaging import linear_to_srgb
from services.projection.layouts import Layout
from services.projection.shading import shading_field
from services.projection.texture import (
    LOD_STEP,
    STRAIGHT,
    MipAtlas,
    build_mip_atlas,
    sample_surface,
    texel_transform,
)

_WORKERS = max(1, min(4, os.cpu_count() or 1))
_POOL = ThreadPoolExecutor(_WORKERS, thread_name_prefix="projection")
# Below this many pixels per strip the split costs more than it saves (measured: at 1024 x 1024 two
# strips were slower than one, at 3840 x 2160 1.65x faster; see docs/benchmarks.md).
_MIN_STRIP_PIXELS = 1_000_000
# The pixels of all strips sampled at once, whatever the surface's size (see project_material).
_IN_FLIGHT_PIXELS = 2_000_000


def project_material(
    photo: np.ndarray,
    swatch: np.ndarray,
    mask: np.ndarray,
    H: np.ndarray,
    repeats_u: float,
    repeats_v: float,
    rotation_degrees: float = 0.0,
    layout: Layout = STRAIGHT,
) -> np.ndarray:
    """The photo with the masked surface re-covered by the swatch (uint8 BGR, the photo's size)."""
    height, width = photo.shape[:2]
    feather = cv2.GaussianBlur(mask, (0, 0), 0.8)
    x, y, w, h = cv2.boundingRect(feather)
    out = photo.copy()
    if w == 0 or h == 0:
        return out
    atlas = build_mip_atlas(swatch)
    T = texel_transform(H, repeats_u, repeats_v, rotation_degrees, swatch.shape[1], swatch.shape[0])
    sigma = max(1.5, 0.006 * max(width, height))
    shading = shading_field(photo[y : y + h, x : x + w], mask[y : y + h, x : x + w], sigma)
    # Enough strips to use the workers, and small enough that the strips in flight hold a bounded
    # working set: sampling keeps ~110 bytes of temporaries per pixel, so a whole 4K surface in
    # flight at once peaked at 140 bytes per photo pixel, in strips of 1 MP at 43 (no slower).
    strips = max(1, min(_WORKERS, (w * h) // _MIN_STRIP_PIXELS), -(-(w * h) * _WORKERS // _IN_FLIGHT_PIXELS))
    strips = min(strips, max(1, h // LOD_STEP))  # a strip is at least one block of rows
    # Strip edges on multiples of the sampler's blocks, so strips sample exactly as one pass.
    bounds = (np.linspace(0, h, strips + 1) / LOD_STEP).round().astype(int) * LOD_STEP
    bounds[-1] = h

    def strip(top: int, bottom: int) -> None:
        _blend_strip(out, photo, feather, shading, atlas, T, layout, x, y + top, w, bottom - top, top)

    if strips == 1:
        strip(0, h)
    else:
        # map keeps at most _WORKERS strips running; the rest wait their turn in the pool's queue.
        edges = [(int(top), int(bottom)) for top, bottom in itertools.pairwise(bounds) if bottom > top]
        for _ in _POOL.map(lambda pair: strip(*pair), edges):
            pass
    return out


def _blend_strip(
    out: np.ndarray,
    photo: np.ndarray,
    feather: np.ndarray,
    shading: np.ndarray,
    atlas: MipAtlas,
    T: np.ndarray,
    layout: Layout,
    x: int,
    y: int,
    w: int,
    h: int,
    shading_row: int,
) -> None:
    """Samples, shades and blends the pixel rectangle (x, y, w, h) into out."""
    colour, valid = sample_surface(atlas, T, x, y, w, h, layout)
    colour *= shading[shading_row : shading_row + h, :, None]
    material = linear_to_srgb(colour)
    alpha = feather[y : y + h, x : x + w].astype(np.float32) * np.float32(1.0 / 255.0)
    alpha[~valid] = 0.0
    roi_photo = photo[y : y + h, x : x + w]
    out[y : y + h, x : x + w] = cv2.blendLinear(material, roi_photo, alpha, np.float32(1.0) - alpha)
