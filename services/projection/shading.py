"""The light of the original surface, as a multiplicative shading field in linear light.

The photo's luminance on the surface is albedo times light. A mask-normalised blur of its log
removes the old material's pattern and keeps the light's falloff and shadows; dividing by the
surface's median level makes the swatch appear as photographed where the light is typical.

The field is smooth (sigma is tens of pixels at 4K), so after the per-pixel log it is estimated on
a copy reduced by up to 8x (area averages) and enlarged once at the end.
"""

from __future__ import annotations

import cv2
import numpy as np

from renderkit.imaging import srgb_to_linear

_LUMA_BGR = np.array([0.0722, 0.7152, 0.2126], np.float32)
# A block whose mean log light is this far from its neighbourhood's (a factor of e^0.5 = 1.65) is an
# object standing on the surface or a strong pattern of the old material, not light.
_OUTLIER_LOG = np.float32(0.5)
_FOREIGN_LOG = np.float32(1.0)
_EPS = np.float32(1e-3)


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
    shading = np.clip(np.exp(smooth - np.float32(reference)), 0.03, 4.0).astype(np.float32)
    return cv2.resize(shading, (width, height), interpolation=cv2.INTER_LINEAR)
