"""The material's orientation on walls seen at a grazing angle, with the camera level or rolled: the
texture's u axis runs rightwards along the photo's horizontal where the surface is seen, so a wall's
material stands upright."""

import math

import numpy as np
import pytest

from renderkit import imaging
from services.depth.plane import plane_homography
from services.depth.vanishing import _plane

W, H = 1024, 768
F = 0.5 * W / math.tan(math.radians(35))
K = np.array([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1.0]])
EAST, NORTH, UP = np.eye(3)


def rotation(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """World (x east, y north, z up) to camera (x right, y down, z forward)."""
    p, y, r = (math.radians(a) for a in (pitch, yaw, roll))
    fwd = np.array([math.sin(y) * math.cos(p), math.cos(y) * math.cos(p), math.sin(p)])
    right0 = np.array([math.cos(y), -math.sin(y), 0.0])
    up0 = np.cross(right0, fwd)
    right = math.cos(r) * right0 + math.sin(r) * up0
    up = -math.sin(r) * right0 + math.cos(r) * up0
    return np.stack([right, -up, fwd])


def image_of(R: np.ndarray, C: np.ndarray, X: np.ndarray) -> np.ndarray:
    p = K @ (R @ (X - C))
    return p[:2] / p[2]


# A wall 2.6 m west of the camera's line (x = -2.6 + 1.0), seen along a corridor; and one east.
CASES = [
    # (yaw, roll, the wall's x, the in-wall direction that runs to the right as seen from the room)
    (-10.0, 12.0, -1.6, NORTH),  # the left wall, the camera rolled: its verticals had the larger x
    (-15.0, 20.0, -1.6, NORTH),
    (10.0, 0.0, -1.6, NORTH),  # the left wall, the camera turned away from it: upside down
    (-10.0, 0.0, 1.6, -NORTH),  # the right wall, the camera turned away from it: upside down
]


def wall_view(yaw: float, roll: float, x: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    R = rotation(yaw, 0.0, roll)
    C = np.array([0.0, 0.0, 1.5])
    corners = [np.array([x, y, z]) for y, z in ((1.0, 2.7), (9.0, 2.7), (9.0, 0.0), (1.0, 0.0))]
    outline = np.array([image_of(R, C, X) for X in corners])
    mask = imaging.polygon_mask(outline, W, H)
    assert (mask > 127).mean() > 0.05
    normal = R @ (EAST if x > 0 else -EAST)
    return R, C, mask, normal


def shown_orientation(Hm: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the texture's u and its v (the swatch's downward) run in the photo at the mask's centroid."""
    ys, xs = np.nonzero(mask > 127)
    centre = np.array([xs.mean(), ys.mean(), 1.0])
    uv = np.linalg.inv(Hm) @ centre
    uv = uv[:2] / uv[2]

    def at(u: float, v: float) -> np.ndarray:
        p = Hm @ np.array([u, v, 1.0])
        return p[:2] / p[2]

    e = 1e-4
    du, dv = at(uv[0] + e, uv[1]) - at(*uv), at(uv[0], uv[1] + e) - at(*uv)
    return du / np.linalg.norm(du), dv / np.linalg.norm(dv)


def assert_upright(Hm: np.ndarray, mask: np.ndarray, R: np.ndarray, right: np.ndarray) -> None:
    du, dv = shown_orientation(Hm, mask)
    assert du[0] > 0.7, f"u runs {du} in the photo"  # rightwards, within 45° of the horizontal
    assert dv[1] > 0.7, f"the swatch's downward runs {dv} in the photo"  # the swatch's top is up
    # ...and in the world: u along the wall's horizontal, the swatch's top up the wall
    ys, xs = np.nonzero(mask > 127)
    ray = np.linalg.inv(K) @ np.array([xs.mean(), ys.mean(), 1.0])
    up_shown = np.array([(R @ UP)[0] - ray[0] * (R @ UP)[2], (R @ UP)[1] - ray[1] * (R @ UP)[2]])
    assert float(-dv @ (up_shown / np.linalg.norm(up_shown))) > math.cos(math.radians(10))


@pytest.mark.parametrize(("yaw", "roll", "x", "right"), CASES)
def test_the_lines_lay_a_grazing_walls_material_upright(yaw: float, roll: float, x: float, right: np.ndarray) -> None:
    R, _, mask, _ = wall_view(yaw, roll, x)
    v_along, v_up = K @ (R @ NORTH), K @ (R @ UP)  # the vanishing points of the wall's two line families
    ys, xs = np.nonzero(mask > 127)
    found = _plane(v_along, v_up, np.array([W / 2, H / 2]), 1.0, W, H, F, F, (xs.mean(), ys.mean()))
    assert found is not None
    Hm, _ = plane_homography(found.normal, F, W, H, mask, axis=found.axis)
    assert_upright(Hm, mask, R, right)
    # the same whichever family comes first
    swapped = _plane(v_up, v_along, np.array([W / 2, H / 2]), 1.0, W, H, F, F, (xs.mean(), ys.mean()))
    assert swapped is not None
    Hm, _ = plane_homography(swapped.normal, F, W, H, mask, axis=swapped.axis)
    assert_upright(Hm, mask, R, right)


@pytest.mark.parametrize(("yaw", "roll", "x", "right"), [c for c in CASES if c[1] == 0.0] + [(0.0, 0.0, 1.6, -NORTH)])
def test_the_depth_models_plane_lays_a_grazing_walls_material_upright(
    yaw: float, roll: float, x: float, right: np.ndarray
) -> None:
    """The depth model's plane has no line directions: u runs along the photo's horizontal there."""
    R, _, mask, normal = wall_view(yaw, roll, x)
    Hm, _ = plane_homography(normal, F, W, H, mask)
    assert_upright(Hm, mask, R, right)
