"""The light of the original surface, as a multiplicative shading field in linear light.

The photo's luminance on the surface is albedo times light. A mask-normalised blur of its log
removes the old material's pattern and keeps the light's falloff and shadows; dividing by the
surface's median level makes the swatch appear as photographed where the light is typical.
"""

from __future__ import annotations

import cv2
import numpy as np

from renderkit.imaging import srgb_to_linear

_LUMA_BGR = np.array([0.0722, 0.7152, 0.2126], np.float32)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur; large ones run on a reduced copy (the result is smooth, so nothing is lost)."""
    factor = int(min(8, sigma // 3))
    if factor < 2:
        return cv2.GaussianBlur(image, (0, 0), sigma)
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def shading_field(photo_bgr: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """The shading (float32, 1 is the surface's median light) over a photo region and its mask."""
    luminance = cv2.transform(srgb_to_linear(photo_bgr), _LUMA_BGR.reshape(1, 3))
    log_l = np.log(luminance + np.float32(1e-4))
    weight = mask.astype(np.float32) * np.float32(1.0 / 255.0)
    smooth = _blur(log_l * weight, sigma) / np.maximum(_blur(weight, sigma), np.float32(1e-3))
    # A second pass without pixels far from the local light level (objects standing on the
    # surface, strong pattern of the old material), which would otherwise darken their surroundings.
    inliers = weight * (np.abs(log_l - smooth) < np.float32(0.5))
    smooth = np.where(
        _blur(inliers, sigma) > 1e-3,
        _blur(log_l * inliers, sigma) / np.maximum(_blur(inliers, sigma), np.float32(1e-3)),
        smooth,
    )
    inside = mask > 127
    reference = float(np.median(smooth[inside])) if inside.any() else 0.0
    return np.clip(np.exp(smooth - np.float32(reference)), 0.03, 4.0).astype(np.float32)
