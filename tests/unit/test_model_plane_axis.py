"""The depth model's plane (no line directions) lays a wall's material along the wall's horizontal
when the camera is held level, wherever on the wall the surface is (a backsplash or wainscot below
eye level, a band above it), not along the photo's row through the mask's centroid."""

import math

import numpy as np
import pytest

from renderkit import imaging
from services.depth.plane import plane_homography
from tests.unit.test_surface_axes import EAST, UP, F, H, K, W, image_of, rotation


@pytest.mark.parametrize("yaw", [-45.0, -20.0, 0.0, 20.0, 45.0])
@pytest.mark.parametrize("x", [1.6, -1.6])
@pytest.mark.parametrize("band", [(0.0, 1.0), (1.6, 2.7), (0.0, 2.7)])
@pytest.mark.parametrize("pitch", [0.0, -8.0])
def test_the_depth_models_plane_keeps_a_walls_material_level(
    yaw: float, x: float, band: tuple[float, float], pitch: float
) -> None:
    R = rotation(yaw, pitch, 0.0)
    C = np.array([0.0, 0.0, 1.5])
    corners = [np.array([x, y, z]) for y, z in ((1.0, band[1]), (6.0, band[1]), (6.0, band[0]), (1.0, band[0]))]
    mask = imaging.polygon_mask(np.array([image_of(R, C, X) for X in corners]), W, H)
    if (mask > 127).mean() < 0.02:
        pytest.skip("the wall is out of the view")
    normal = R @ (EAST if x > 0 else -EAST)
    ys, xs = np.nonzero(mask > 127)
    if normal @ (np.linalg.inv(K) @ np.array([xs.mean(), ys.mean(), 1.0])) < 0:
        normal = -normal
    Hm, _ = plane_homography(normal, F, W, H, mask)
    M = np.linalg.inv(K) @ Hm
    u = R.T @ (M[:, 0] / np.linalg.norm(M[:, 0]))  # the texture's u axis in the world
    tilt = math.degrees(math.asin(min(1.0, abs(float(u @ UP)))))
    # A wall exactly along the view with the camera pitched: x says nothing, and nothing else knows
    # which way is up (no gravity): the camera's level plane slopes by the pitch there.
    allowed = 1.0 + (abs(pitch) if yaw == 0.0 else 0.0)
    assert tilt < allowed, f"the material's rows slope {tilt:.1f} degrees on the wall"
