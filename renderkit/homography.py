"""Plane geometry: homographies from quads, and the rectangle a homography shows.

Texture coordinates (u, v) span the unit square; a homography H maps (u, v, 1) to image pixels.
For a quad, corner 0 is (0, 0), corner 1 is (1, 0), corner 2 is (1, 1) and corner 3 is (0, 1).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

UNIT_SQUARE = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)


class GeometryError(ValueError):
    """The geometry given cannot describe a plane."""


def quad_problem(quad: np.ndarray) -> str | None:
    """Says why four points cannot be the corners of a rectangle seen in perspective, or None."""
    if quad.shape != (4, 2) or not np.all(np.isfinite(quad)):
        return "a quad needs exactly four finite points"
    crosses = []
    for i in range(4):
        a, b, c = quad[i], quad[(i + 1) % 4], quad[(i + 2) % 4]
        crosses.append((b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0]))
    if not (all(c > 0 for c in crosses) or all(c < 0 for c in crosses)):
        return "the quad's corners must go around a convex shape, in order"
    area = 0.5 * abs(sum(quad[i, 0] * quad[(i + 1) % 4, 1] - quad[(i + 1) % 4, 0] * quad[i, 1] for i in range(4)))
    if area < 16.0:
        return "the quad is too small (under 16 square pixels)"
    return None


def quad_homography(quad: np.ndarray) -> np.ndarray:
    """The homography from the unit square to a quad's corners."""
    problem = quad_problem(quad)
    if problem:
        raise GeometryError(problem)
    H = cv2.getPerspectiveTransform(UNIT_SQUARE.astype(np.float32), quad.astype(np.float32))
    return np.asarray(H / H[2, 2], dtype=np.float64)


def default_focal(width: int, height: int) -> float:
    """A focal length for an unknown camera: about a 60 degree horizontal field of view on the longer side."""
    return 0.5 * max(width, height) / math.tan(math.radians(30.0))


def focal_from_rectangle(H: np.ndarray, width: int, height: int) -> float | None:
    """The focal length (pixels) that makes the quad a right-angled rectangle, if the view determines one.

    Assumes square pixels and the principal point at the image centre. A fronto-parallel view
    (or one tilted about a single image axis) leaves the focal length undetermined: None.
    """
    T = np.array([[1, 0, -width / 2], [0, 1, -height / 2], [0, 0, 1]], dtype=np.float64)
    G = T @ H
    h1, h2 = G[:, 0], G[:, 1]
    denom = h1[2] * h2[2]
    if abs(denom) < 1e-12:
        return None
    f2 = -(h1[0] * h2[0] + h1[1] * h2[1]) / denom
    if not np.isfinite(f2) or f2 <= 0:
        return None
    f = math.sqrt(f2)
    diag = math.hypot(width, height)
    return f if 0.2 * diag <= f <= 10 * diag else None


def camera_matrix(focal: float, width: int, height: int) -> np.ndarray:
    """The pinhole camera's intrinsics: square pixels, the principal point at the photo's centre."""
    return np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=np.float64)


def rectangle_aspect(H: np.ndarray, focal: float, width: int, height: int) -> float:
    """The physical width/height ratio of the rectangle the unit square maps to, for a focal length."""
    K_inv = np.linalg.inv(camera_matrix(focal, width, height))
    r1 = K_inv @ H[:, 0]
    r2 = K_inv @ H[:, 1]
    n2 = float(np.linalg.norm(r2))
    if n2 == 0:
        raise GeometryError("degenerate homography")
    return float(np.linalg.norm(r1)) / n2


def rectangle_width(H: np.ndarray, focal: float, width: int, height: int) -> float:
    """The rectangle's first edge (corner 0 to 1) in units of its plane's distance from the camera."""
    K_inv = np.linalg.inv(camera_matrix(focal, width, height))
    M = K_inv @ H  # proportional to [edge_u edge_v corner_0] in camera coordinates
    with np.errstate(over="ignore", invalid="ignore"):  # checked below: an overflow is not finite
        normal = np.cross(M[:, 0], M[:, 1])
        length = float(np.linalg.norm(normal))
    if not (math.isfinite(length) and length > 0):  # a focal length so far off that the edges under- or overflow
        raise GeometryError("the rectangle's plane cannot be found for this focal length")
    distance = abs(float(normal @ M[:, 2])) / length
    if distance == 0:
        raise GeometryError("the plane passes through the camera")
    return float(np.linalg.norm(M[:, 0])) / distance


def edge_orthogonality(H: np.ndarray, focal: float, width: int, height: int) -> float:
    """|cos| of the angle between the rectangle's edges in 3D for a focal length (0 is a right angle)."""
    K_inv = np.linalg.inv(camera_matrix(focal, width, height))
    r1 = K_inv @ H[:, 0]
    r2 = K_inv @ H[:, 1]
    return float(abs(r1 @ r2) / (np.linalg.norm(r1) * np.linalg.norm(r2)))


def to_list(H: np.ndarray) -> list[float]:
    """A homography as nine row-major floats."""
    return [float(x) for x in np.asarray(H, dtype=np.float64).reshape(9)]


def from_list(values: list[float] | tuple[float, ...]) -> np.ndarray:
    """A homography from nine row-major floats, scaled so that its largest value is 1: a homography
    is the same map at any scale, and what uses it compares values with fixed tolerances (the
    singular test here, the plane's horizon), so 1e10 H and 1e-6 H must read as H does."""
    if len(values) != 9:
        raise GeometryError("a homography has nine values")
    H = np.array(values, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(H)):
        raise GeometryError("the homography's values must be finite")
    largest = float(np.abs(H).max())
    if largest == 0.0:
        raise GeometryError("the homography is singular")
    H = H / largest
    if abs(np.linalg.det(H)) < 1e-12:
        raise GeometryError("the homography is singular")
    return H
