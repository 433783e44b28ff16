"""A quad whose view leaves the focal length to rounding or to the clicks' error (one pair of its
edges parallel to the photo) does not override the EXIF's."""

import numpy as np
import pytest

from renderkit.planes import quad_plane
from tests.unit.test_surface_axes import EAST, NORTH, UP, F, H, W, image_of, rotation


@pytest.mark.parametrize(
    ("yaw", "pitch", "roll", "origin", "s", "t"),
    [
        (-55.0, 0.0, 5.0, np.array([-2.6, 1.0, 0.6]), NORTH, UP),  # a wall, the camera level and rolled
        (-15.0, 0.0, 20.0, np.array([-2.6, 1.0, 0.6]), NORTH, UP),
        (0.0, -30.0, 20.0, np.array([-1.6, 1.0, -1.5]), EAST, NORTH),  # a floor seen square-on, rolled
    ],
)
def test_a_quad_that_hardly_fixes_the_focal_length_leaves_the_exifs(
    yaw: float, pitch: float, roll: float, origin: np.ndarray, s: np.ndarray, t: np.ndarray
) -> None:
    """Exact corners of a 1.8 x 1.2 m rectangle whose verticals (or cross edges) are parallel to the
    photo: the rectangle does not fix the focal length (float32 rounding made up 846 px, 312 px or
    661 px for this 731 px lens), so the EXIF's stays and the rectangle's aspect comes out right."""
    R = rotation(yaw, pitch, roll)
    C = np.array([0.0, 0.0, 1.5]) if pitch == 0.0 else np.array([0.0, -1.5, 1.5])
    if pitch:
        origin = origin + np.array([0.0, 0.0, 1.5])
    corners = [origin + a * s + b * t for a, b in ((0, 1.2), (1.8, 1.2), (1.8, 0), (0, 0))]
    quad = np.array([image_of(R, C, X) for X in corners])
    plane = quad_plane(quad, W, H, exif_focal=F)
    assert (plane.focal_source, plane.focal_length_px) == ("exif", F)
    assert plane.aspect_ratio == pytest.approx(1.5, rel=1e-4)
    rng = np.random.default_rng(0)
    errors = [
        abs(quad_plane(quad + rng.normal(0, 1.0, quad.shape), W, H, exif_focal=F).aspect_ratio / 1.5 - 1)
        for _ in range(40)
    ]
    assert float(np.percentile(errors, 90)) < 0.03  # a click's error: 17-53 % at the 90th percentile before


def test_a_quad_seen_in_perspective_still_fixes_the_focal_length() -> None:
    R = rotation(30.0, -30.0)
    C = np.array([0.0, -1.5, 1.5])
    origin = np.array([-0.6, 1.0, 0.0])
    corners = [origin + a * EAST + b * NORTH for a, b in ((0, 1.2), (1.5, 1.2), (1.5, 0), (0, 0))]
    quad = np.array([image_of(R, C, X) for X in corners])
    plane = quad_plane(quad, W, H, exif_focal=F * 1.03)
    assert plane.focal_source == "rectangle"
    assert plane.focal_length_px == pytest.approx(F, rel=1e-3)


def test_a_quad_given_anticlockwise_lays_the_material_unmirrored_along_its_first_edge() -> None:
    """The same rectangle's corners given the other way round (0, 3, 2, 1): the material was
    mirrored (a camera sees a surface's face, never its back) and rotation_degrees turned it
    clockwise. u still follows the first edge; v runs from corner 3 towards 0."""
    clockwise = np.array([[416.0, 533.0], [1184.0, 533.0], [1576.0, 1050.0], [24.0, 1050.0]])
    anticlockwise = clockwise[[0, 3, 2, 1]]

    def jacobian(plane: object) -> np.ndarray:
        M = np.array(plane.homography.m).reshape(3, 3)  # type: ignore[attr-defined]
        u, v = 0.5, 0.5
        p = M @ np.array([u, v, 1.0])
        du, dv = M @ np.array([1e-4, 0, 0]), M @ np.array([0, 1e-4, 0])
        x = p[:2] / p[2]
        return np.stack([((p + du)[:2] / (p + du)[2] - x), ((p + dv)[:2] / (p + dv)[2] - x)], axis=1) / 1e-4

    for quad in (clockwise, anticlockwise):
        plane = quad_plane(quad, 1600, 1200)
        assert np.linalg.det(jacobian(plane)) > 0, quad  # not mirrored on the photo (its y axis down)
        M = np.array(plane.homography.m).reshape(3, 3)

        def at(u: float, v: float, M: np.ndarray = M) -> np.ndarray:
            p = M @ np.array([u, v, 1.0])
            return p[:2] / p[2]

        # u follows the first edge: from corner 0 (the square's (0, 0), or (0, 1) when v is turned)
        # to corner 1.
        start = 0.0 if np.allclose(at(0, 0), quad[0], atol=1e-6) else 1.0
        assert np.allclose(at(0, start), quad[0], atol=1e-6) and np.allclose(at(1, start), quad[1], atol=1e-6)
    assert quad_plane(anticlockwise, 1600, 1200).aspect_ratio == pytest.approx(
        1 / quad_plane(clockwise, 1600, 1200).aspect_ratio, rel=1e-6
    )  # the same rectangle, its first edge the other side
