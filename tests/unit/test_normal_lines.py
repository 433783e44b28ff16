"""A quad seen square-on fixes no focal length; the photo's lines at a right angle to it (a floor's
upright edges) do, and without clear such lines the assumed value stays."""

import pytest

from renderkit.planes import quad_plane
from services.depth.normal_lines import focal_from_normal_lines
from tests.square_on import square_on_floor


@pytest.mark.parametrize(("fov", "pitch"), [(70.0, 35.0), (50.0, 30.0), (60.0, 20.0)])
def test_upright_edges_give_a_square_on_quads_focal_length(fov: float, pitch: float) -> None:
    floor = square_on_floor(fov, pitch)
    assert quad_plane(floor.quad, 1024, 768).focal_source == "assumed"
    assert focal_from_normal_lines(floor.photo, floor.quad) == pytest.approx(floor.focal, rel=0.005)


@pytest.mark.parametrize("boxes", [0, 1])
def test_without_three_upright_lines_the_focal_length_is_left_open(boxes: int) -> None:
    """The floor's own joints say nothing of it; one box's two upright edges are too few to trust."""
    floor = square_on_floor(boxes=boxes)
    assert focal_from_normal_lines(floor.photo, floor.quad) is None


def test_the_lines_focal_length_comes_after_the_exifs_and_shapes_the_rectangle() -> None:
    floor = square_on_floor()
    lines = focal_from_normal_lines(floor.photo, floor.quad)
    assert lines is not None
    plane = quad_plane(floor.quad, 1024, 768, lines_focal=lines)
    assert (plane.focal_source, plane.focal_length_px) == ("lines", lines)
    assert plane.aspect_ratio == pytest.approx(floor.aspect, rel=0.005)
    assumed = quad_plane(floor.quad, 1024, 768)
    assert abs(assumed.aspect_ratio / floor.aspect - 1) > 0.05  # what the 60 degree guess made of it
    assert quad_plane(floor.quad, 1024, 768, exif_focal=700.0, lines_focal=lines).focal_source == "exif"
