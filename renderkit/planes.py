"""The plane of a quad: exact arithmetic on its four corners, the photo's size and the hints.

The depth stage answers it for a request with a quad, and the gateway computes it itself for a
swap given one (~0.05 ms, where the call to the stage cost ~1.4 ms of the swap), as it draws a
quad's mask itself instead of calling segmentation.
"""

from __future__ import annotations

import math

import numpy as np

from render.depth.v1 import depth_service_pb2 as pb
from render.imaging.v1 import imaging_pb2
from renderkit import homography

# How far the rectangle's focal length may move when a corner moves by a click's error (a pixel of a
# 1024 px photo) for the view to count as fixing it: a rectangle with one pair of edges (nearly)
# parallel to the photo (a wall seen with the camera level, a floor seen square-on) leaves the focal
# length to rounding (cv2's float32 homography) or to the clicks' sub-pixel error, which gave 312 px
# for a 731 px lens (a plane 17° off), or medians of 5-11 % (tails of 50 %) in the rectangle's
# aspect where the EXIF's value gave 1.5 %.
_CORNER_ERROR = 1.0 / 1024
_FOCAL_SPREAD = 0.04
# Without an EXIF value the fallback is the assumed 60 degree field of view, itself ~15 % off for a
# phone's main camera and 2x off for its ultra-wide one: the rectangle's value gives way to it only
# where a click's error moves it by more than this (a pair of edges parallel to the photo), not where
# it moves it 5-20 % (a small rug, a floor's rectangle seen 10-30 degrees off square).
_ASSUMED_SPREAD = 0.25


def _settled_by_corners(quad: np.ndarray, focal: float, width: int, height: int, spread: float = _FOCAL_SPREAD) -> bool:
    """Whether the rectangle's focal length stays within `spread` of `focal` when any corner moves
    by _CORNER_ERROR of the photo's longer side (at least a pixel) along either axis."""
    step = max(1.0, _CORNER_ERROR * max(width, height))
    for corner in range(4):
        for axis in range(2):
            for sign in (-1.0, 1.0):
                moved = np.array(quad, np.float64)
                moved[corner, axis] += sign * step
                try:
                    other = homography.focal_from_rectangle(homography.quad_homography(moved), width, height)
                except homography.GeometryError:
                    return False
                if other is None or abs(other / focal - 1.0) > spread:
                    return False
    return True


# The unit square's v reversed: (u, v) -> (u, 1 - v), which keeps the square on itself.
_FLIP_V = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 1.0], [0.0, 0.0, 1.0]])


def _anticlockwise(quad: np.ndarray) -> bool:
    """Whether the corners go anticlockwise as seen on the photo (its y axis points down)."""
    q = np.asarray(quad, np.float64)
    return float(np.sum(q[:, 0] * np.roll(q[:, 1], -1) - np.roll(q[:, 0], -1) * q[:, 1])) < 0


def quad_plane(
    quad: np.ndarray,
    width: int,
    height: int,
    given_focal: float = 0.0,
    distance_m: float = 0.0,
    exif_focal: float = 0.0,
) -> pb.EstimatePlaneResponse:
    """The exact plane of a quad; the focal length (for the rectangle's aspect) is the one given, else
    the one the rectangle fixes when the view does (exact for this photo, even a cropped one), else
    the EXIF's, else assumed. With the plane's distance the rectangle's size in metres follows too.

    Raises homography.GeometryError when the arithmetic cannot place the rectangle: a focal length
    far from any camera's for this photo (the gateway refuses those) overflows or underflows it."""
    H = homography.quad_homography(quad)
    if _anticlockwise(quad):
        # Corners given the other way round: the unit square's v runs from corner 3 towards 0, so
        # that u still follows the first edge and the material is not mirrored (a camera sees a
        # surface's face, never its back), and rotation_degrees turns it counter-clockwise as seen.
        H = H @ _FLIP_V
    found = homography.focal_from_rectangle(H, width, height)
    spread = _FOCAL_SPREAD if exif_focal else _ASSUMED_SPREAD
    if found is not None and not _settled_by_corners(quad, found, width, height, spread):
        found = None  # the view hardly fixes it: the EXIF's (or the assumed) value is the better guess
    focal = given_focal or found or exif_focal or homography.default_focal(width, height)
    aspect = homography.rectangle_aspect(H, focal, width, height)
    unit_width = homography.rectangle_width(H, focal, width, height)
    if not (math.isfinite(aspect) and aspect > 0 and math.isfinite(unit_width) and unit_width > 0):
        raise homography.GeometryError("the quad's rectangle cannot be measured with this focal length")
    return pb.EstimatePlaneResponse(
        homography=imaging_pb2.Homography(m=homography.to_list(H)),
        confidence=1.0,
        source="quad",
        aspect_ratio=aspect,
        focal_length_px=focal,
        focal_source=("hint" if given_focal else "rectangle" if found else "exif" if exif_focal else "assumed"),
        meters_per_unit=unit_width * distance_m,
        distance_source="given" if distance_m else "",
    )
