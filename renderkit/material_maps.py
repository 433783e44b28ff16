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


def _wrapped(image: np.ndarray, pad: int) -> np.ndarray:
    return cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_WRAP)


def height_field(swatch_bgr: np.ndarray) -> np.ndarray:
    """Relative height in [0, 1] from the swatch's luminance, lightly smoothed across tile edges."""
    luminance = cv2.transform(srgb_to_linear(swatch_bgr), _LUMA_BGR.reshape(1, 3))
    pad = 4
    smooth = cv2.GaussianBlur(_wrapped(luminance, pad), (0, 0), 1.0)[pad:-pad, pad:-pad]
    low, high = float(smooth.min()), float(smooth.max())
    return np.asarray((smooth - low) / max(high - low, 1e-6), dtype=np.float32)


def normal_map(swatch_bgr: np.ndarray, strength: float = 4.0) -> np.ndarray:
    """A tangent-space normal map (OpenGL convention: +y up) as uint8 BGR (B = z, G = y, R = x)."""
    height = height_field(swatch_bgr)
    padded = _wrapped(height, 1)
    dx = cv2.Sobel(padded, cv2.CV_32F, 1, 0, ksize=3)[1:-1, 1:-1] / 8.0
    dy = cv2.Sobel(padded, cv2.CV_32F, 0, 1, ksize=3)[1:-1, 1:-1] / 8.0
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
    detail = detail / max(float(detail.max()), 1e-6)
    roughness = 0.55 + 0.35 * detail - 0.25 * (luminance - float(luminance.mean()))
    return np.clip(roughness * 255.0 + 0.5, 0, 255).astype(np.uint8)


def material_map_images(texture_bgr: np.ndarray) -> list[imaging_pb2.EncodedImage]:
    """A texture's normal and roughness maps as lossless PNG renditions named "normal" and "roughness"."""
    out = []
    for name, image in (("normal", normal_map(texture_bgr)), ("roughness", roughness_map(texture_bgr))):
        data, content_type = imaging.encode(image, imaging_pb2.FORMAT_PNG)
        out.append(
            imaging_pb2.EncodedImage(
                name=name, data=data, content_type=content_type, width=image.shape[1], height=image.shape[0]
            )
        )
    return out
