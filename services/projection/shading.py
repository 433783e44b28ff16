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


def shading_field(photo_bgr: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """The shading (float32, 1 is the surface's median light) over a photo region and its mask."""
    linear = srgb_to_linear(photo_bgr)
    luminance = linear @ _LUMA_BGR
    log_l = np.log(luminance + 1e-4)
    weight = mask.astype(np.float32) / 255.0
    ksize = (0, 0)
    num = cv2.GaussianBlur(log_l * weight, ksize, sigma)
    den = cv2.GaussianBlur(weight, ksize, sigma)
    smooth = num / np.maximum(den, 1e-3)
    inside = mask > 127
    reference = float(np.median(smooth[inside])) if inside.any() else 0.0
    return np.clip(np.exp(smooth - reference), 0.03, 4.0).astype(np.float32)
