"""A plane from a depth model's map: a robust fit (relative inverse depth, or metric depth), then a
homography onto the surface.

For a plane n.X = d seen through intrinsics K, inverse depth is affine in pixel coordinates:
1/Z = (n . K^-1 p) / d. So fitting disparity = a x + b y + c over the surface's pixels gives the
plane's normal n ~ K^T (a, b, c), up to the depth model's unknown scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from renderkit import homography, imaging
from renderkit.errors import InputError

_MAX_SAMPLES = 20000


@dataclass(frozen=True)
class PlaneFit:
    """The plane's normal in camera coordinates, the homography onto the masked surface, the square's
    side (in units of the plane's distance from the camera), and the fit's quality."""

    normal: np.ndarray
    homography: np.ndarray
    side: float
    confidence: float
    inlier_fraction: float


def fit_affine_disparity(disparity: np.ndarray, mask: np.ndarray, seed: int = 0) -> tuple[np.ndarray, float, float]:
    """Fits disparity ~ a x + b y + c over mask > 127 with iterative outlier trimming.

    Coordinates are those of the disparity map. Returns ((a, b, c), inlier fraction, R^2 on inliers).
    """
    ys, xs = np.nonzero(mask > 127)
    if xs.size < 50:
        raise InputError("the surface is too small to fit a plane")
    if xs.size > _MAX_SAMPLES:
        pick = np.random.default_rng(seed).choice(xs.size, _MAX_SAMPLES, replace=False)
        xs, ys = xs[pick], ys[pick]
    d = disparity[ys, xs].astype(np.float64)
    if float(np.ptp(d)) <= 1e-9 * max(1.0, float(np.abs(d).max())):
        # A constant answer has no slope to fit (its R^2 came out 1, a full confidence in nothing).
        raise ValueError("the depth model's disparity is constant over the surface")
    A = np.stack([xs, ys, np.ones_like(xs)], axis=1).astype(np.float64)
    inliers = np.ones(d.size, bool)
    coeffs = np.zeros(3)
    for _ in range(4):
        coeffs, *_ = np.linalg.lstsq(A[inliers], d[inliers], rcond=None)
        residual = np.abs(A @ coeffs - d)
        scale = 1.4826 * np.median(residual[inliers]) + 1e-9
        inliers = residual < 3.0 * scale
    fitted = A[inliers] @ coeffs
    total = float(np.var(d[inliers])) + 1e-12
    r2 = max(0.0, 1.0 - float(np.mean((fitted - d[inliers]) ** 2)) / total)
    return coeffs, float(inliers.mean()), r2


# Below this |x projected onto the plane| (a plane within ~17 degrees of facing the camera's x
# axis), the projection is left to rounding and roll: the plane's line in the camera's level plane.
_ALONG_THE_VIEW = 0.3


def plane_homography(
    normal: np.ndarray, focal: float, width: int, height: int, mask: np.ndarray, axis: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """The homography from the unit square onto the plane patch that covers the mask's pixels, and
    the square's side in units of the plane's distance from the camera (metres per unit, once that
    distance is known in metres).

    The square's u axis runs along `axis` (an in-plane direction, e.g. of the surface's lines), by
    default along the camera's x axis projected onto the plane (a wall's horizontal when the camera
    is not rolled), or for a plane seen nearly along x (a wall along the view) its line in the
    camera's level plane, pointing to the photo's right where the mask's centroid is (the
    projection alone pointed away from the camera on a wall seen at a grazing angle: upside down).
    """
    K = homography.camera_matrix(focal, width, height)
    n = normal / np.linalg.norm(normal)
    # The mask's centroid, and a sample of its pixels (every step-th in row-major order).
    # (cv2.threshold: cv2.compare takes the scalar for an array of one pixel and refuses a 1 x 1 mask)
    moments = cv2.moments(cv2.threshold(mask, 127, 255, cv2.THRESH_BINARY)[1], binaryImage=True)
    count = round(moments["m00"])
    if count == 0:
        raise InputError("the plane does not cover the surface")
    centre = np.array([moments["m10"] / count, moments["m01"] / count, 1.0])
    ray = np.linalg.inv(K) @ centre
    if axis is None:
        # The plane's direction nearest the camera's x axis: with the camera not rolled, x is level,
        # so on a wall that is the wall's horizontal wherever the surface lies (the photo's row
        # through the centroid slopes down a wall below eye level, and up one above it). A plane
        # nearly facing x (a wall along the view) leaves it to rounding: there, the plane's line
        # through the camera's level (y = 0) plane. Turned to run rightwards in the photo.
        e1 = np.array([1.0, 0.0, 0.0]) - n[0] * n
        if np.linalg.norm(e1) < _ALONG_THE_VIEW:
            e1 = np.cross(n, np.array([0.0, 1.0, 0.0]))
        if e1[0] - ray[0] * e1[2] < 0:
            e1 = -e1
    else:
        e1 = np.asarray(axis, np.float64)
    e1 = e1 - (e1 @ n) * n
    if np.linalg.norm(e1) < 1e-6:
        e1 = np.array([0.0, 1.0, 0.0]) - n[1] * n
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    origin = ray / (n @ ray)  # the plane n.X = 1 where the centre ray meets it
    G = K @ np.stack([e1, e2, origin], axis=1)
    ys, xs = imaging.mask_pixels(mask, step=count // _MAX_SAMPLES + 1 if count > _MAX_SAMPLES else 1)
    pixels = np.stack([xs, ys], axis=1).astype(np.float64).reshape(-1, 1, 2)
    plane_xy = cv2.perspectiveTransform(pixels, np.linalg.inv(G)).reshape(-1, 2)
    lo = np.percentile(plane_xy, 2, axis=0)
    hi = np.percentile(plane_xy, 98, axis=0)
    side = float(max(hi - lo))
    if not np.isfinite(side) or side <= 0:
        raise InputError("the plane does not cover the surface")
    # A square as wide as the surface's extent in the plane, its corner (0, 0) on the point under
    # the mask's centroid: the texture's origin (a tile corner) is anchored there whatever the
    # scale, so a slightly wrong plane misplaces the pattern least where most of the surface is.
    # The texture wraps, so the square need not cover the surface.
    S = np.array([[side, 0, 0], [0, side, 0], [0, 0, 1]], dtype=np.float64)
    H = G @ S
    return H / H[2, 2], side


def fit_plane(disparity: np.ndarray, mask: np.ndarray, focal: float, width: int, height: int) -> PlaneFit:
    """Fits the plane of the masked surface from a disparity map of any resolution."""
    small_mask = cv2.resize(mask, (disparity.shape[1], disparity.shape[0]), interpolation=cv2.INTER_NEAREST)
    (a, b, c), inlier_fraction, r2 = fit_affine_disparity(disparity, small_mask)
    # Back to full-resolution pixel coordinates.
    sx, sy = disparity.shape[1] / width, disparity.shape[0] / height
    a, b = a * sx, b * sy
    normal = np.array([focal * a, focal * b, width / 2 * a + height / 2 * b + c])
    if normal[2] < 0:
        normal = -normal
    H, side = plane_homography(normal, focal, width, height, mask)
    return PlaneFit(
        normal=normal / np.linalg.norm(normal),
        homography=H,
        side=side,
        confidence=float(np.clip(inlier_fraction * r2, 0.0, 1.0)),
        inlier_fraction=inlier_fraction,
    )


@dataclass(frozen=True)
class MetricPlane:
    """A plane n.X = distance (metres, camera coordinates) fitted to metric depth."""

    normal: np.ndarray
    distance: float
    confidence: float
    inlier_fraction: float


def fit_metric_plane(depth: np.ndarray, mask: np.ndarray, focal: float, width: int, height: int) -> MetricPlane:
    """Fits the masked surface's plane to a metric depth map of any resolution (depth along the
    optical axis in metres): the surface's pixels back-projected, then a total-least-squares plane
    refitted without outliers (objects standing on it, depth noise)."""
    dh, dw = depth.shape
    small_mask = cv2.resize(mask, (dw, dh), interpolation=cv2.INTER_NEAREST) > 127
    ys, xs = np.nonzero(small_mask & np.isfinite(depth) & (depth > 0))
    if xs.size < 50:
        raise InputError("the surface is too small to fit a plane")
    if xs.size > _MAX_SAMPLES:
        pick = np.random.default_rng(0).choice(xs.size, _MAX_SAMPLES, replace=False)
        xs, ys = xs[pick], ys[pick]
    z = depth[ys, xs].astype(np.float64)
    # Depth-map pixel centres in photo pixels, then rays through the photo's intrinsics.
    px = (xs + 0.5) * width / dw - 0.5
    py = (ys + 0.5) * height / dh - 0.5
    points = np.stack([(px - width / 2) / focal * z, (py - height / 2) / focal * z, z], axis=1)
    inliers = np.ones(len(points), bool)
    normal, centre = np.array([0.0, 0.0, 1.0]), points.mean(axis=0)
    for _ in range(4):
        centre = points[inliers].mean(axis=0)
        _, _, vt = np.linalg.svd(points[inliers] - centre, full_matrices=False)
        normal = vt[2]
        residual = np.abs((points - centre) @ normal)
        scale = 1.4826 * np.median(residual[inliers]) + 1e-9
        inliers = residual < 3.0 * scale
    distance = float(normal @ centre)
    if distance < 0:
        normal, distance = -normal, -distance
    if distance <= 1e-6:
        raise InputError("the fitted plane passes through the camera")
    rms = float(np.sqrt(np.mean(((points[inliers] - centre) @ normal) ** 2)))
    fraction = float(inliers.mean())
    confidence = fraction * float(np.clip(1.0 - rms / (0.05 * distance), 0.0, 1.0))
    return MetricPlane(normal=normal, distance=distance, confidence=confidence, inlier_fraction=fraction)
