"""The texture is laid along the surface's edges where its mask's outline shows them, not along a
diagonal pattern's lines (a diamond carpet, tiles laid on the diagonal); where the outline shows
no edge (the surface fills the frame) or only the edges of what stands on it, the pattern's lines
stay the axis."""

import math

import numpy as np
import pytest

from devstack import scenes
from render.depth.v1 import depth_service_pb2 as depth_pb
from renderkit import imaging
from services.depth.outline import outline_contradicts, outline_runs, surface_axis
from services.depth.server import lines_plane
from services.depth.vanishing import texture_axis
from tests.unit.test_surface_axes import EAST, NORTH, UP, F, H, W, image_of, rotation

CAMERA = np.array([0.3, 0.0, 1.5])


def degrees_between(a: np.ndarray, b: np.ndarray) -> float:
    return math.degrees(math.acos(min(1.0, abs(float(a @ b)) / float(np.linalg.norm(a) * np.linalg.norm(b)))))


def floor_view(yaw: float, pitch: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A room's floor (5.2 x 5 m, from 1.5 m in front of the camera) seen by a level camera: the
    rotation, the floor's mask (its far edges against the walls, its near part cut by the frame)
    and its normal in camera coordinates."""
    R = rotation(yaw, -pitch)
    corners = [np.array([x, y, 0.0]) for x, y in ((-2.6, 6.5), (2.6, 6.5), (2.6, 1.5), (-2.6, 1.5))]
    mask = imaging.polygon_mask(np.array([image_of(R, CAMERA, X) for X in corners]), W, H)
    return R, mask, R @ -UP  # the plane n.X = 1 in front: the floor faces the camera


def centre_ray(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask > 127)
    return np.array([(xs.mean() - W / 2) / F, (ys.mean() - H / 2) / F, 1.0])


@pytest.mark.parametrize(("yaw", "pitch"), [(20.0, 35.0), (-30.0, 40.0), (5.0, 30.0)])
def test_a_floors_edges_turn_a_diagonal_patterns_axis_onto_them(yaw: float, pitch: float) -> None:
    R, mask, normal = floor_view(yaw, pitch)
    diagonal = R @ ((EAST + NORTH) / math.sqrt(2))
    axis = surface_axis(mask, normal, texture_axis(diagonal, np.cross(normal, diagonal), normal, centre_ray(mask)), F)
    edges = texture_axis(R @ EAST, R @ NORTH, normal, centre_ray(mask))
    assert degrees_between(axis, edges) < 0.05
    assert float(axis @ edges) > 0  # and still pointing to the photo's right


def test_a_pattern_along_the_edges_is_kept_as_its_lines_measured_it() -> None:
    R, mask, normal = floor_view(20.0, 35.0)
    # Tiles along the walls, their lines measured 2 degrees off: the lines are the finer measurement.
    turn = math.radians(2.0)
    tiles = R @ (math.cos(turn) * EAST + math.sin(turn) * NORTH)
    assert surface_axis(mask, normal, tiles, F) is tiles


def test_a_surface_filling_the_frame_keeps_its_patterns_axis() -> None:
    R, _, normal = floor_view(20.0, 35.0)
    mask = np.full((H, W), 255, np.uint8)
    diagonal = R @ ((EAST + NORTH) / math.sqrt(2))
    assert len(outline_runs(mask)) == 0
    assert surface_axis(mask, normal, diagonal, F) is diagonal


def test_an_object_standing_askew_on_the_surface_does_not_turn_it() -> None:
    R, _, normal = floor_view(20.0, 35.0)
    mask = np.full((H, W), 255, np.uint8)
    # A sofa turned 30 degrees to the tiles, in the middle of the frame and against its bottom edge.
    for y0, y1 in ((2.5, 3.5), (0.5, 1.4)):
        turn = math.radians(30.0)
        u, v = np.array([math.cos(turn), math.sin(turn), 0.0]), np.array([-math.sin(turn), math.cos(turn), 0.0])
        foot = [np.array([0.3, 0.0, 0.0]) + a * u + b * v for a, b in ((-1, y0), (1, y0), (1, y1), (-1, y1))]
        mask[imaging.polygon_mask(np.array([image_of(R, CAMERA, X) for X in foot]), W, H) > 127] = 0
    tiles = R @ EAST
    assert surface_axis(mask, normal, tiles, F) is tiles


def diamonds(size: int = 256, joint: int = 5) -> np.ndarray:
    """A swatch of a diamond lattice (lines at 45 degrees to its sides) that wraps."""
    i, j = np.mgrid[0:size, 0:size]
    lines = ((i + j) % (size // 2) < joint) | ((i - j) % (size // 2) < joint)
    return np.where(lines[..., None], np.uint8(235), np.array([90, 60, 140], np.uint8)).astype(np.uint8)


def test_a_diamond_carpets_material_is_laid_along_the_floors_edges() -> None:
    scene = scenes.camera_scene(scenes.View(60, 35, 20), diamonds(), diamonds(), size=(640, 480), supersample=2)
    mask = (scene.visible_surface * 255).astype(np.uint8)
    request = depth_pb.EstimatePlaneRequest(
        width=640, height=480, focal_length_px=scene.focal, plane_distance_meters=1.6
    )
    plane = lines_plane(scene.photo, mask, request)
    camera = np.array([[scene.focal, 0, 320], [0, scene.focal, 240], [0, 0, 1.0]])
    u = (np.linalg.inv(camera) @ np.array(plane.homography.m).reshape(3, 3))[:, 0]
    assert degrees_between(u, scene.edge_axes[0]) < 0.5  # 45 degrees before: along the diamonds


def test_turning_a_large_masks_axis_holds_no_copy_of_it_wider_than_a_byte_a_pixel() -> None:
    """The centroid's moments were taken of an int64 copy of the mask: 8 bytes a pixel (a 40 MP
    mask: +358 MB at the depth stage's peak, and ~0.7 s)."""
    import tracemalloc

    import cv2

    R, small, normal = floor_view(20.0, 35.0)
    mask = cv2.resize(small, (W * 5, H * 5), interpolation=cv2.INTER_NEAREST)  # the same view, larger
    diagonal = R @ ((EAST + NORTH) / math.sqrt(2))
    tracemalloc.start()
    try:
        axis = surface_axis(mask, normal, diagonal, F * 5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert axis is not diagonal  # turned onto the edges: the centroid was taken
    assert peak < 2 * mask.size


def tilted(normal: np.ndarray, degrees: float) -> np.ndarray:
    """A normal (camera coordinates) turned about the camera's x axis (its horizon up or down)."""
    t = math.radians(degrees)
    return np.array([[1.0, 0.0, 0.0], [0.0, math.cos(t), -math.sin(t)], [0.0, math.sin(t), math.cos(t)]]) @ normal


@pytest.mark.parametrize(("yaw", "pitch"), [(20.0, 35.0), (-30.0, 40.0), (5.0, 30.0)])
def test_a_plane_that_puts_the_masks_far_edge_at_its_horizon_is_contradicted(yaw: float, pitch: float) -> None:
    """A marble table top's veins gave a plane whose horizon ran along the top's far edge (22-26°
    off): the edge would lie tens of metres away. Planes a few degrees off are not judged."""
    _, mask, normal = floor_view(yaw, pitch)
    runs = outline_runs(mask)
    assert len(runs) >= 3
    for degrees in (0.0, 3.0, -3.0, 8.0):
        assert not outline_contradicts(runs, tilted(normal, degrees), F, W, H)
    assert outline_contradicts(runs, tilted(normal, -16.0), F, W, H)


def test_an_outline_with_no_edges_contradicts_no_plane() -> None:
    _, _, normal = floor_view(20.0, 35.0)
    runs = outline_runs(np.full((H, W), 255, np.uint8))
    assert len(runs) == 0
    assert not outline_contradicts(runs, tilted(normal, -30.0), F, W, H)


@pytest.mark.parametrize(("top", "left", "side"), [(240, 600, 40), (262, 600, 40), (262, 300, 40), (262, 540, 60)])
def test_a_stray_bit_of_the_mask_near_the_horizon_does_not_contradict_the_true_plane(
    top: int, left: int, side: int
) -> None:
    """A blob of the mask apart from the floor, or a leak up a wall (the last: down to the floor),
    puts a short run of the outline just under the true plane's horizon: an edge too short to say
    the plane is wrong (it refused the true plane before the runs' length was counted)."""
    _, mask, normal = floor_view(5.0, 10.0)  # its horizon near row 255, the floor from row 417
    bottom = 420 if side == 60 else top + side
    mask[top:bottom, left : left + side] = 255
    runs = outline_runs(mask)
    assert len(runs)
    assert not outline_contradicts(runs, normal, F, W, H)
