"""What the benchmark measures: the swap (in-surface PSNR and SSIM), the shading estimate against
the true shading, masks (IoU), and geometry (the plane's normal and the scale)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from benchmarks.quality.render import srgb_image

# The shading is scored as what it does to a mid-grey material (linear 0.25, sRGB 137): both the
# estimate and the truth light that card and are compared in 8-bit sRGB, like the swap.
GREY_CARD = 0.25


def inner(region: np.ndarray, pixels: int = 2) -> np.ndarray:
    """A region less `pixels` at its edges (where masks are soft and the truth is anti-aliased)."""
    size = 2 * pixels + 1
    return cv2.erode(region.astype(np.uint8), np.ones((size, size), np.uint8)) > 0


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """PSNR in dB of two uint8 images over a region."""
    diff = a.astype(np.float64)[region] - b.astype(np.float64)[region]
    mse = float(np.mean(diff * diff))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """Mean SSIM (Gaussian window, sigma 1.5) of the grey images over a region."""
    x = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY).astype(np.float64)
    y = cv2.cvtColor(b, cv2.COLOR_BGR2GRAY).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(z: np.ndarray) -> np.ndarray:
        return np.asarray(cv2.GaussianBlur(z, (11, 11), 1.5))

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s[region].mean())


def shading_psnr(estimate: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float:
    """PSNR of a grey card lit by the estimated shading (H x W, or H x W x 3) against the same card
    under the true shading (H x W x 3, 1 at the surface's median), over a region."""
    est = estimate if estimate.ndim == 3 else estimate[..., None]
    card = np.float32(GREY_CARD)
    return psnr(srgb_image(np.broadcast_to(est * card, truth.shape)), srgb_image(truth * card), region)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks."""
    union = int(np.count_nonzero(a | b))
    return 1.0 if union == 0 else int(np.count_nonzero(a & b)) / union


def normal_of(H: np.ndarray, focal: float, width: int, height: int) -> np.ndarray:
    """The plane's unit normal (camera coordinates) that a homography from the unit square shows."""
    K_inv = np.linalg.inv(np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]]))
    normal = np.cross(K_inv @ H[:, 0], K_inv @ H[:, 1])
    return np.asarray(normal / np.linalg.norm(normal))


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """The angle between two lines' directions (unsigned), degrees."""
    return math.degrees(math.acos(min(1.0, abs(float(a @ b)))))


def texel_density(to_texel: np.ndarray, at: np.ndarray) -> float:
    """Texels per pixel (square root of the map's Jacobian determinant) at a pixel."""

    def uv(p: np.ndarray) -> np.ndarray:
        q = to_texel @ np.array([p[0], p[1], 1.0])
        return q[:2] / q[2]

    dx, dy = np.array([0.5, 0.0]), np.array([0.0, 0.5])
    J = np.column_stack([uv(at + dx) - uv(at - dx), uv(at + dy) - uv(at - dy)])
    return math.sqrt(abs(float(np.linalg.det(J))))
