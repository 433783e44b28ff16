"""A floor seen square-on (no yaw: its rows parallel in the photo) with boxes standing on it, drawn
by a pinhole camera: its quad fixes no focal length, the boxes' upright edges do."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

_CAMERA_HEIGHT_M = 1.5
_TILE_M = 0.5


@dataclass(frozen=True)
class SquareOnFloor:
    """The photo (BGR), the quad (a 2 x 3 m rectangle of the floor, first edge across the view),
    the true focal length (pixels) and the rectangle's aspect (first edge over second)."""

    photo: np.ndarray
    quad: np.ndarray
    focal: float
    aspect: float


def square_on_floor(
    fov_deg: float = 70.0, pitch_deg: float = 35.0, size: tuple[int, int] = (1024, 768), boxes: int = 3
) -> SquareOnFloor:
    """The floor's tile joints, and `boxes` boxes' edges (0: none), drawn dark on a grey photo."""
    width, height = size
    f = 0.5 * width / math.tan(math.radians(fov_deg / 2))
    pitch = math.radians(pitch_deg)
    forward = np.array([0.0, math.cos(pitch), -math.sin(pitch)])
    right = np.array([1.0, 0.0, 0.0])
    R = np.stack([right, np.cross(forward, right), forward])  # world (z up) to camera (y down)
    eye = np.array([0.0, 0.0, _CAMERA_HEIGHT_M])

    def project(points: np.ndarray) -> np.ndarray:
        camera = (np.asarray(points, np.float64) - eye) @ R.T
        return camera[:, :2] / camera[:, 2:] * f + [width / 2, height / 2]

    photo = np.full((height, width, 3), 150, np.uint8)
    edges = []
    for x in np.arange(-3.0, 3.01, _TILE_M):  # joints running away from the camera
        edges.append(((x, 1.2, 0.0), (x, 8.0, 0.0)))
    for y in np.arange(1.5, 8.01, _TILE_M):  # joints across the view
        edges.append(((-3.0, y, 0.0), (3.0, y, 0.0)))
    for k in range(boxes):  # upright boxes: their vertical and top edges
        x0, y0, tall = -1.6 + 1.3 * k, 3.0 + 0.7 * k, 0.6 + 0.25 * k
        corners = [(x0, y0), (x0 + 0.5, y0), (x0 + 0.5, y0 + 0.4), (x0, y0 + 0.4)]
        for (a, b), (c, d) in zip(corners, corners[1:] + corners[:1], strict=True):
            edges.append(((a, b, tall), (c, d, tall)))
        for a, b in corners[:2]:
            edges.append(((a, b, 0.0), (a, b, tall)))
    for start, end in edges:
        (x1, y1), (x2, y2) = project(np.array([start, end]))
        cv2.line(
            photo, (round(x1 * 16), round(y1 * 16)), (round(x2 * 16), round(y2 * 16)), (60, 60, 60), 2, cv2.LINE_AA, 4
        )
    noise = np.random.default_rng(0).normal(0.0, 2.0, photo.shape)
    photo = np.clip(photo + noise, 0, 255).astype(np.uint8)
    quad = project(np.array([(-1.0, 2.0, 0.0), (1.0, 2.0, 0.0), (1.0, 5.0, 0.0), (-1.0, 5.0, 0.0)]))
    return SquareOnFloor(photo, quad, f, 2.0 / 3.0)
