"""A surface without lines of its own (a plain floor, a painted wall) takes its plane from the
room's verticals (door frames, furniture's sides, the room's corners) and horizontal lines, with
the camera's focal length known; without clear evidence (too few verticals, none a level camera
sees, no surface named, the surface past the horizon) the lines' refusal stands."""

import math

import cv2
import numpy as np
import pytest

from render.depth.v1 import depth_service_pb2 as depth_pb
from renderkit import imaging
from services.depth import server
from services.depth.room_lines import ROOM_SOURCE, room_correction, room_plane
from services.depth.server import lines_plane
from services.depth.vanishing import LinePlane, NoVanishingPoints
from tests.unit.test_surface_axes import EAST, NORTH, UP, F, H, W, image_of, rotation

CAMERA = np.array([0.3, 0.0, 1.5])
PAINT = 170  # the floor's and the walls' one colour: their junctions do not show
X0, X1, BACK, CEILING = -2.6, 2.6, 6.5, 2.7

# Upright edges standing in the room (x, y, from z, to z): a door's frame in the back wall, a
# cabinet's two front edges against it, a window's sides in the left wall, a shelf's sides on the
# right wall.
DOOR = [(-1.6, BACK, 0.0, 2.1), (-0.7, BACK, 0.0, 2.1)]
CABINET = [(1.2, 5.6, 0.0, 0.9), (2.2, 5.6, 0.0, 0.9)]
WINDOW = [(X0, 3.0, 0.9, 2.2), (X0, 4.2, 0.9, 2.2)]
SHELF = [(X1, 2.5, 1.0, 1.8), (X1, 3.3, 1.0, 1.8)]
# Level edges: the door's lintel, the cabinet's top front edge, the window's sill and head and
# the shelf's top and bottom.
LEVEL = [
    ((-1.6, BACK, 2.1), (-0.7, BACK, 2.1)),
    ((1.2, 5.6, 0.9), (2.2, 5.6, 0.9)),
    ((X0, 3.0, 0.9), (X0, 4.2, 0.9)),
    ((X0, 3.0, 2.2), (X0, 4.2, 2.2)),
    ((X1, 2.5, 1.0), (X1, 3.3, 1.0)),
    ((X1, 2.5, 1.8), (X1, 3.3, 1.8)),
]


def degrees_between(a: np.ndarray, b: np.ndarray) -> float:
    return math.degrees(math.acos(min(1.0, abs(float(a @ b)) / float(np.linalg.norm(a) * np.linalg.norm(b)))))


def room_photo(R: np.ndarray, uprights: list[tuple[float, float, float, float]]) -> np.ndarray:
    """A room of one paint (floor and walls alike) with the given upright edges and the level
    ones drawn dark, seen by a camera at CAMERA turned by R; faint noise."""
    photo = np.full((H, W, 3), PAINT, np.uint8)
    edges = [((x, y, z0), (x, y, z1)) for x, y, z0, z1 in uprights] + LEVEL
    for a, b in edges:
        ends = [np.array(p, float) for p in (a, b)]
        if min(float((R @ (e - CAMERA))[2]) for e in ends) <= 0.1:
            continue
        p, q = (image_of(R, CAMERA, e) for e in ends)
        cv2.line(
            photo,
            tuple(np.round(p * 16).astype(int)),
            tuple(np.round(q * 16).astype(int)),
            (60, 60, 60),
            3,
            cv2.LINE_AA,
            4,
        )
    noise = np.random.default_rng(3).normal(0, 2, photo.shape)
    return np.clip(photo + noise, 0, 255).astype(np.uint8)


def polygon(R: np.ndarray, corners: list[tuple[float, float, float]]) -> np.ndarray:
    return imaging.polygon_mask(np.array([image_of(R, CAMERA, np.array(c, float)) for c in corners]), W, H)


def floor_mask(R: np.ndarray) -> np.ndarray:
    """The floor from 1.5 m in front of the camera to the back wall: its outline the junctions."""
    return polygon(R, [(X0, BACK, 0.0), (X1, BACK, 0.0), (X1, 1.5, 0.0), (X0, 1.5, 0.0)])


def right_wall_mask(R: np.ndarray) -> np.ndarray:
    return polygon(R, [(X1, 2.0, 0.0), (X1, BACK, 0.0), (X1, BACK, CEILING), (X1, 2.0, CEILING)])


def request(surface: str, focal: float = F) -> depth_pb.EstimatePlaneRequest:
    return depth_pb.EstimatePlaneRequest(width=W, height=H, exif_focal_length_px=focal, surface=surface)


ALL = DOOR + CABINET + WINDOW + SHELF


@pytest.mark.parametrize(("yaw", "pitch", "roll"), [(10.0, 25.0, 0.0), (-15.0, 35.0, 4.0), (5.0, 12.0, -3.0)])
def test_a_plain_floor_takes_its_normal_from_the_rooms_verticals(yaw: float, pitch: float, roll: float) -> None:
    R = rotation(yaw, -pitch, roll)
    photo, mask = room_photo(R, ALL), floor_mask(R)
    found = room_plane(photo, mask, F, "floor")
    assert found is not None
    assert degrees_between(found.normal, R @ UP) < 0.5
    assert float(found.normal @ (R @ -UP)) > 0  # facing the camera, as every plane n.X = 1 in front


def test_the_depth_stage_says_the_plane_came_from_the_rooms_verticals() -> None:
    R = rotation(10.0, -25.0)
    photo, mask = room_photo(R, ALL), floor_mask(R)
    reply = lines_plane(photo, mask, request("floor"))
    assert (reply.source, reply.focal_source) == (ROOM_SOURCE, "exif")


def test_a_painted_wall_takes_its_plane_from_the_verticals_and_the_level_lines_on_it() -> None:
    R = rotation(40.0, -5.0, 2.0)
    photo = room_photo(R, ALL)
    mask = right_wall_mask(R)
    found = room_plane(photo, mask, F, "wall")
    assert found is not None
    assert degrees_between(found.normal, R @ EAST) < 0.5


def test_two_verticals_are_no_evidence() -> None:
    R = rotation(10.0, -25.0)
    photo, mask = room_photo(R, DOOR), floor_mask(R)
    assert room_plane(photo, mask, F, "floor") is None
    with pytest.raises(NoVanishingPoints):
        lines_plane(photo, mask, request("floor"))


def test_without_a_focal_length_or_a_surfaces_name_the_refusal_stands() -> None:
    R = rotation(10.0, -25.0)
    photo, mask = room_photo(R, ALL), floor_mask(R)
    assert room_plane(photo, mask, 0.0, "floor") is None
    assert room_plane(photo, mask, F, "") is None
    with pytest.raises(NoVanishingPoints):
        lines_plane(photo, mask, request("floor", focal=0.0))


def test_a_floor_named_a_ceiling_is_past_its_horizon_and_refused() -> None:
    R = rotation(10.0, -25.0)
    photo, mask = room_photo(R, ALL), floor_mask(R)
    assert room_plane(photo, mask, F, "ceiling") is None


def test_verticals_leaning_as_no_hand_held_camera_sees_them_are_not_the_rooms() -> None:
    R = rotation(10.0, -25.0, 35.0)  # rolled 35°: the "verticals" may be anything
    photo, mask = room_photo(R, ALL), floor_mask(R)
    assert room_plane(photo, mask, F, "floor") is None


def test_lines_running_across_the_floor_are_not_taken_for_its_verticals() -> None:
    # Edges lying on the floor, running away from the camera (a rug's sides, a sun patch's),
    # converge near the photo's up at the horizon: a floor below that "vertical"'s horizon would be
    # above the camera, so they cannot be the room's vertical.
    R = rotation(0.0, -30.0)
    photo = np.full((H, W, 3), PAINT, np.uint8)
    for x in (-1.5, -0.8, 0.4, 1.2):
        p, q = (image_of(R, CAMERA, np.array([x, y, 0.0])) for y in (2.0, 5.0))
        cv2.line(photo, tuple(np.round(p).astype(int)), tuple(np.round(q).astype(int)), (60, 60, 60), 3, cv2.LINE_AA)
    assert room_plane(photo, floor_mask(R), F, "floor") is None


def turned(v: np.ndarray, about: np.ndarray, degrees: float) -> np.ndarray:
    """v turned by `degrees` about the unit axis `about` (Rodrigues)."""
    a, t = about / np.linalg.norm(about), math.radians(degrees)
    return v * math.cos(t) + np.cross(a, v) * math.sin(t) + a * float(a @ v) * (1 - math.cos(t))


def lines_plane_of(normal: np.ndarray) -> LinePlane:
    """A plane as the lines would give it: only its normal matters to the room's check."""
    axis = np.cross(normal, [0.0, 0.0, 1.0])
    return LinePlane(normal, axis / np.linalg.norm(axis), F, False, 0.3, 20)


@pytest.mark.parametrize(("off", "corrected"), [(1.5, False), (12.0, True), (80.0, True)])
def test_a_floors_plane_from_lines_is_checked_against_the_rooms_vertical(off: float, corrected: bool) -> None:
    # A plain floor's stray lines made planes 13-88° off; right ones were within 2° of the room's.
    R = rotation(10.0, -25.0)
    photo, mask = room_photo(R, ALL), floor_mask(R)
    found = room_correction(lines_plane_of(turned(R @ UP, R @ EAST, off)), photo, mask, F, "floor")
    assert (found is not None) == corrected
    if found is not None:
        assert degrees_between(found.normal, R @ UP) < 0.5


def test_a_walls_plane_from_lines_must_hold_the_rooms_vertical() -> None:
    # Only the vertical is checked: a wall turned about it is the lines' to tell.
    R = rotation(40.0, -5.0, 2.0)
    photo, mask = room_photo(R, ALL), right_wall_mask(R)
    assert room_correction(lines_plane_of(turned(R @ EAST, R @ UP, 10.0)), photo, mask, F, "wall") is None
    found = room_correction(lines_plane_of(turned(R @ EAST, R @ NORTH, 10.0)), photo, mask, F, "wall")
    assert found is not None
    assert degrees_between(found.normal, R @ EAST) < 0.5


@pytest.mark.parametrize(("off", "source"), [(1.0, "vanishing_lines"), (30.0, ROOM_SOURCE)])
def test_the_depth_stage_says_when_the_rooms_verticals_overruled_the_lines(
    monkeypatch: pytest.MonkeyPatch, off: float, source: str
) -> None:
    R = rotation(10.0, -25.0)
    photo, mask = room_photo(R, ALL), floor_mask(R)
    monkeypatch.setattr(server, "plane_from_lines", lambda *_, **__: lines_plane_of(turned(R @ UP, R @ EAST, off)))
    assert lines_plane(photo, mask, request("floor")).source == source


def test_lines_lying_on_the_floor_are_not_its_verticals() -> None:
    # Joints on a wood floor, nearly parallel, met below the photo where a vertical would: they lie
    # well inside the floor's mask, and a floor holds no vertical line.
    R = rotation(0.0, -30.0)
    photo = np.full((H, W, 3), PAINT, np.uint8)
    mask = floor_mask(R)
    below = np.array([W / 2 + 60.0, H + 900.0])
    for x in (250.0, 450.0, 600.0, 800.0):
        top = np.array([x, 250.0])
        end = top + 220.0 * (below - top) / np.linalg.norm(below - top)
        start, stop = (tuple(np.round(p).astype(int)) for p in (top, end))
        cv2.line(photo, start, stop, (60, 60, 60), 3, cv2.LINE_AA)
    assert room_plane(photo, mask, F, "floor") is None


def test_a_surface_too_small_for_the_rooms_plane_keeps_the_lines_refusal() -> None:
    """A one-pixel floor in a room with verticals: the room's plane is found, but spans no texture
    square on a single pixel; the lines' refusal (FAILED_PRECONDITION at the stage) stands, not the
    homography's InputError, which the stage's edge answered as an internal error."""
    R = rotation(10.0, -25.0)
    mask = np.zeros((H, W), np.uint8)
    mask[H // 2 + 100, W // 2] = 255
    with pytest.raises(NoVanishingPoints):
        lines_plane(room_photo(R, ALL), mask, request("floor"))
