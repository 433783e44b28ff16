"""The whole projection: sample, shade, blend into the photo inside the soft mask."""

from __future__ import annotations

import cv2
import numpy as np

from renderkit.imaging import linear_to_srgb
from services.projection.layouts import Layout
from services.projection.shading import shading_field
from services.projection.texture import STRAIGHT, build_mip_atlas, sample_surface, texel_transform


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
    colour, valid = sample_surface(atlas, T, x, y, w, h, layout)
    roi_photo = photo[y : y + h, x : x + w]
    roi_mask = feather[y : y + h, x : x + w]
    sigma = max(1.5, 0.006 * max(width, height))
    colour *= shading_field(roi_photo, mask[y : y + h, x : x + w], sigma)[..., None]
    material = linear_to_srgb(colour)
    alpha = roi_mask.astype(np.float32) * np.float32(1.0 / 255.0)
    alpha[~valid] = 0.0
    out[y : y + h, x : x + w] = cv2.blendLinear(material, roi_photo, alpha, np.float32(1.0) - alpha)
    return out
