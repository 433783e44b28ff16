import math

import cv2
import numpy as np
import pytest

from benchmarks.quality import modes as quality_modes
from devstack import scenes
from renderkit import homography
from renderkit.planes import quad_plane
from renderkit.scale import tiling_from_repeats, tiling_from_sizes
from services.depth import vanishing
from services.depth.plane import fit_metric_plane, plane_homography
from services.depth.vanishing import (
    EXIF_FOCAL_TOLERANCE,
    NoVanishingPoints,
    _draw_pair,
    _orthogonal_pair,
    line_segments,
    plane_from_lines,
)
from tests.quality_scenes import quality_scene


def project(K: np.ndarray, R: np.ndarray, t: np.ndarray, points: np.ndarray) -> np.ndarray:
    cam = (R @ points.T).T + t
    pix = (K @ cam.T).T
    return pix[:, :2] / pix[:, 2:]


def turned_camera(
    focal: float, size: tuple[int, int], pitch_deg: float, yaw_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """A camera's intrinsics (principal point at the centre) and the rotation of a floor's axes into
    its frame: pitched down and turned (columns: the floor's x, its normal, its z)."""
    w, h = size
    K = np.array([[focal, 0, w / 2], [0, focal, h / 2], [0, 0, 1]])
    pitch, yaw = math.radians(pitch_deg), math.radians(yaw_deg)
    Rx = np.array([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]])
    Ry = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    return K, Rx @ Ry


def rectangle_view(width_m: float, depth_m: float, focal: float, size: tuple[int, int] = (1600, 1200)) -> np.ndarray:
    """A floor rectangle seen by a camera pitched down and turned, in pixels."""
    K, R = turned_camera(focal, size, 35, 20)
    corners = np.array([[0, 0, 0], [width_m, 0, 0], [width_m, depth_m, 0], [0, depth_m, 0]], float)
    corners -= [width_m / 2, depth_m / 2, 0]
    return project(K, R, np.array([0.0, 0.0, 6.0]), corners)


def test_quad_homography_maps_unit_square_to_corners() -> None:
    quad = np.array([[100, 100], [500, 120], [520, 400], [90, 380]], float)
    H = homography.quad_homography(quad)
    mapped = (H @ np.c_[homography.UNIT_SQUARE, np.ones(4)].T).T
    np.testing.assert_allclose(mapped[:, :2] / mapped[:, 2:], quad, atol=1e-6)


@pytest.mark.parametrize(
    "quad, message",
    [
        ([[0, 0], [100, 100], [100, 0], [0, 100]], "convex"),
        ([[0, 0], [2, 0], [2, 2], [0, 2]], "too small"),
        ([[0, 0], [1, 0], [1, 1]], "four"),
    ],
)
def test_bad_quads_are_explained(quad: list[list[float]], message: str) -> None:
    problem = homography.quad_problem(np.array(quad, float))
    assert problem is not None and message in problem


def test_focal_and_aspect_recovered_from_a_rectangle_in_perspective() -> None:
    quad = rectangle_view(4.0, 2.5, focal=1400.0)
    H = homography.quad_homography(quad)
    focal = homography.focal_from_rectangle(H, 1600, 1200)
    assert focal is not None
    assert focal == pytest.approx(1400.0, rel=1e-3)
    assert homography.rectangle_aspect(H, focal, 1600, 1200) == pytest.approx(4.0 / 2.5, rel=1e-3)
    assert homography.edge_orthogonality(H, focal, 1600, 1200) < 1e-6


@pytest.mark.parametrize("focal", [1e300, 1e-300])
def test_a_focal_length_no_camera_has_is_a_geometry_error_not_a_crash(focal: float) -> None:
    """The gateway refuses such focal lengths for the photo; the plane's arithmetic under- or
    overflows with them (a division by zero, a NaN aspect) and says so in its own error."""
    quad = rectangle_view(4.0, 3.0, 1400.0)
    with pytest.raises(homography.GeometryError):
        quad_plane(quad, 1600, 1200, given_focal=focal, distance_m=1.5)
    assert quad_plane(quad, 1600, 1200, given_focal=1400.0).aspect_ratio == pytest.approx(4.0 / 3.0, rel=1e-3)


def test_fronto_parallel_view_leaves_focal_undetermined() -> None:
    quad = np.array([[100, 100], [500, 100], [500, 300], [100, 300]], float)
    assert homography.focal_from_rectangle(homography.quad_homography(quad), 800, 600) is None


def test_repeats_along_the_longer_side_keep_the_swatch_square() -> None:
    tiling = tiling_from_repeats(24, plane_aspect=2.0, swatch_aspect=1.0)
    assert tiling.repeats_u == 24 and tiling.repeats_v == pytest.approx(12) and tiling.source == "repeats"
    tall = tiling_from_repeats(10, plane_aspect=0.5, swatch_aspect=1.0)
    assert tall.repeats_u == pytest.approx(5) and tall.repeats_v == 10


def test_repeats_from_physical_sizes() -> None:
    tiling = tiling_from_sizes(4.0, 3.0, 0.5, 0.25)
    assert (tiling.repeats_u, tiling.repeats_v, tiling.source) == (8.0, 12.0, "swatch_size")


def test_singular_homography_is_refused() -> None:
    with pytest.raises(homography.GeometryError):
        homography.from_list([0.0] * 9)


# Vanishing lines: a tiled floor seen by a known camera.
TILES = scenes.tile_texture(128, tiles=1)


def tiled_floor(view: scenes.View) -> tuple[scenes.KnownScene, np.ndarray]:
    scene = scenes.camera_scene(view, TILES, TILES, size=(640, 480), supersample=2)
    return scene, (scene.visible_surface * 255).astype(np.uint8)


def angle_between(a: np.ndarray, b: np.ndarray) -> float:
    return math.degrees(math.acos(min(1.0, abs(float(a @ b)) / float(np.linalg.norm(a) * np.linalg.norm(b)))))


def test_the_plane_and_focal_length_come_from_the_tiles_vanishing_points() -> None:
    scene, mask = tiled_floor(scenes.View(60, 35, 20))
    found = plane_from_lines(scene.photo, mask, default_focal=homography.default_focal(640, 480) * 1.5)
    assert found.focal_from_lines
    assert found.focal == pytest.approx(scene.focal, rel=0.02)
    assert angle_between(found.normal, scene.normal) < 0.5
    # The texture's u axis follows the floor's edge that runs nearer the photo's horizontal.
    assert angle_between(found.axis, scene.edge_axes[0]) < 0.5
    assert 0.5 < found.confidence <= 1.0


def test_head_on_lines_leave_the_focal_length_to_a_given_one() -> None:
    scene, mask = tiled_floor(scenes.View(45, 30, 0))  # the rows are parallel in the photo
    assumed = plane_from_lines(scene.photo, mask, default_focal=homography.default_focal(640, 480))
    assert not assumed.focal_from_lines
    given = plane_from_lines(scene.photo, mask, default_focal=1.0, given_focal=scene.focal)
    assert given.focal == scene.focal
    assert angle_between(given.normal, scene.normal) < 0.5
    assert angle_between(assumed.normal, scene.normal) > 3  # what the wrong focal length costs


def test_a_surface_without_straight_lines_is_refused() -> None:
    photo = np.full((240, 320, 3), 128, np.uint8)
    mask = np.zeros((240, 320), np.uint8)
    mask[120:, :] = 255
    with pytest.raises(NoVanishingPoints, match="straight lines"):
        plane_from_lines(photo, mask, default_focal=300.0)


def test_the_plane_square_is_anchored_under_the_masks_centroid() -> None:
    scene, mask = tiled_floor(scenes.View(60, 35, 20))
    H, side = plane_homography(scene.normal, scene.focal, 640, 480, mask, axis=scene.edge_axes[0])
    corner = H @ np.array([0.0, 0.0, 1.0])
    ys, xs = np.nonzero(mask > 127)
    assert corner[:2] / corner[2] == pytest.approx([xs.mean(), ys.mean()], abs=1e-6)
    assert side > 0


def test_a_metric_plane_gives_the_rectangles_size() -> None:
    scene, _ = tiled_floor(scenes.View(60, 35, 20))
    H = homography.quad_homography(scene.quad)
    width_m = homography.rectangle_width(H, scene.focal, 640, 480) * scenes.CAMERA_HEIGHT_M
    assert width_m == pytest.approx(scenes.FLOOR_M[0], rel=1e-6)


def test_a_metric_plane_is_fitted_through_objects_standing_on_it() -> None:
    width, height, focal = 320, 240, 300.0
    normal = np.array([0.0, math.cos(math.radians(40)), math.sin(math.radians(40))])
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    along = normal[1] * (ys - height / 2) / focal + normal[0] * (xs - width / 2) / focal + normal[2]
    depth = np.where(along > 0.05, 1.4 / np.maximum(along, 0.05), 50.0).astype(np.float32)
    depth *= 1 + np.random.default_rng(0).normal(0, 0.005, depth.shape).astype(np.float32)  # 0.5 % noise
    depth[150:200, 100:180] *= 0.8  # a box standing on the floor, nearer than the floor behind it
    mask = np.zeros((height, width), np.uint8)
    mask[130:, :] = 255
    small = cv2.resize(depth, (160, 120), interpolation=cv2.INTER_AREA)  # a model's coarser output
    plane = fit_metric_plane(small, mask, focal, width, height)
    assert angle_between(plane.normal, normal) < 1.0
    assert plane.distance == pytest.approx(1.4, rel=0.02)
    assert 0.6 < plane.inlier_fraction < 0.97  # the box is left out


def test_edges_of_objects_in_front_of_the_surface_are_not_its_lines() -> None:
    photo = np.full((240, 320, 3), 170, np.uint8)
    cv2.rectangle(photo, (120, 100), (200, 160), (40, 40, 40), -1)  # a dark object in front
    cv2.line(photo, (10, 220), (310, 200), (60, 60, 60), 2)  # a joint on the surface itself
    mask = np.full((240, 320), 255, np.uint8)
    mask[100:161, 120:201] = 0  # the client's mask leaves the object out
    segments = line_segments(photo, mask)
    assert len(segments) >= 1
    midpoints = (segments[:, :2] + segments[:, 2:]) / 2
    assert np.all(midpoints[:, 1] > 190)  # only the joint: none of the object's outline


def test_a_known_camera_holds_the_two_line_directions_at_a_right_angle() -> None:
    """A grazing floor turned by 5°: its rows run nearly parallel in the photo, so their vanishing
    point is far and its distance badly fixed. Fitted on their own, the two directions tilt the
    plane by most of a degree; refitted as one right angle with the focal length known, the rows
    keep only their angle in the photo and the plane comes within a tenth of a degree."""
    scene, mask = tiled_floor(scenes.View(60, 15, 5))
    found = plane_from_lines(scene.photo, mask, default_focal=1.0, given_focal=scene.focal)
    assert angle_between(found.normal, scene.normal) < 0.3
    assert angle_between(found.axis, scene.edge_axes[0]) < 0.3


def test_directions_that_are_not_perpendicular_are_left_as_measured() -> None:
    """Herringbone joints meet at 45° in the plane: no right angle is imposed on them."""
    focal, centre = 1.0, np.array([0.5, 0.375])
    K = np.array([[focal, 0, centre[0]], [0, focal, centre[1]], [0, 0, 1]])
    tilt = math.radians(50)
    along = np.array([1.0, 0.0, 0.0])
    diagonal = np.array([math.cos(math.radians(45)), math.sin(math.radians(45)) * math.sin(tilt), math.cos(tilt)])
    segments = np.zeros((0, 4))
    no_segments = np.zeros(0, bool)
    assert _orthogonal_pair(K @ along, no_segments, K @ diagonal, no_segments, segments, 1.0, centre, focal) is None


def test_lines_found_on_a_reduced_copy_land_on_the_photos_pixels() -> None:
    """A 2048 px photo's lines are found on a 1024 px copy; mapped back, an edge between columns
    1023 and 1024 (at x = 1023.5 with pixel centres on integers) stays within a quarter pixel."""
    photo = np.full((1536, 2048, 3), 200, np.uint8)
    photo[:, :1024] = 50
    mask = np.full((1536, 2048), 255, np.uint8)
    segments = line_segments(photo, mask)
    assert len(segments) == 1
    assert segments[0, [0, 2]] == pytest.approx([1023.5, 1023.5], abs=0.3)


def test_the_strong_line_direction_is_paired_with_its_cross_joints_not_with_strays() -> None:
    """A plank floor: many long edges, few short cross joints, and a handful of stray segments a
    few degrees off the edges. Pairing the strays with the joints (their lengths balance) tilted
    the plane by 2°; the edges with the joints put it within half a degree."""
    planks = scenes.plank_texture(256, seed=7)
    scene = scenes.camera_scene(scenes.View(45, 25, -15), planks, planks, size=(1024, 768), supersample=4)
    mask = (scene.visible_surface * 255).astype(np.uint8)
    found = plane_from_lines(scene.photo, mask, default_focal=1.0, given_focal=scene.focal)
    assert angle_between(found.normal, scene.normal) < 0.5


def running_bond(size: int = 256, rows: int = 8, seed: int = 5) -> np.ndarray:
    """Bricks twice as wide as a half swatch, each row shifted by half a brick: the vertical joints
    are each one short row high."""
    rng = np.random.default_rng(seed)
    texture = np.zeros((size, size, 3), np.uint8)
    h, w = size // rows, size // 2
    for row in range(rows):
        for column in range(-1, 3):
            x0 = column * w + (w // 2) * (row % 2)
            tone = int(rng.integers(150, 200))
            cv2.rectangle(
                texture, (x0 + 2, row * h + 2), (x0 + w - 2, row * h + h - 2), (tone, tone - 10, tone - 30), -1
            )
    return texture


@pytest.mark.parametrize("view", [scenes.View(60, -5, 30, "facade"), scenes.View(60, 5, -35, "facade")])
def test_a_walls_short_vertical_joints_and_its_sides_give_its_plane(view: scenes.View) -> None:
    """A brick wall turned from the camera: its courses are long lines, its vertical joints a few
    pixels each, and its two sides run along the mask's pixelated outline. Before, the sides were
    taken for the edges of something in front, the joints were too short to count, and the floor's
    plane came out instead (87° off); with the camera known, the direction at a right angle to the
    courses is found from every segment's vote."""
    bricks = running_bond()
    scene = scenes.camera_scene(view, bricks, bricks, size=(1024, 768), supersample=2)
    mask = (scene.visible_surface * 255).astype(np.uint8)
    found = plane_from_lines(scene.photo, mask, default_focal=1.0, given_focal=scene.focal)
    assert angle_between(found.normal, scene.normal) < 0.5


@pytest.mark.parametrize("name", ["wall, subway tiles", "facade, old brick"])
def test_without_a_focal_length_the_lines_settle_the_default_and_find_the_plane(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """make quality's wall and facade with their EXIF stripped. Before, without the camera, the
    wall's short vertical joints were not searched for (a pair of strays made a plane 41° off) and
    the facade's one line direction could not be crossed by the building's verticals (refused);
    the default focal length, taken as known within 40 % and settled by the lines, finds both.
    (The new material, which the plane does not see, is planks here: make quality's come from
    scikit-image, which only `make quality` installs.)"""
    scene = quality_scene(name, monkeypatch)
    found = plane_from_lines(
        scene.photo, quality_modes.user_mask(scene), default_focal=homography.default_focal(scene.width, scene.height)
    )
    assert angle_between(found.normal, scene.normal) < 1.5
    assert found.focal == pytest.approx(scene.focal, rel=0.05) and found.focal_from_lines


def test_an_exif_focal_length_moves_only_where_the_lines_tell_focal_lengths_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An EXIF focal length is known to within EXIF_FOCAL_TOLERANCE. make quality's old brick
    facade has an exact one (its 30 mm needs no rounding), and its lines cannot tell focal lengths
    apart (the verticals' vanishing point is far off): before, their noise still moved the value
    by 0.16 %, which the metric scale turned into 0.4 px of drift at the median pixel and 3.8 dB.
    A floor in perspective, whose two finite vanishing points do fix it, still settles a value
    rounded 1.5 % off to within 0.1 %."""
    scene = quality_scene("facade, old brick", monkeypatch)
    found = plane_from_lines(
        scene.photo,
        quality_modes.user_mask(scene),
        default_focal=1.0,
        given_focal=scene.exif_focal,
        focal_tolerance=EXIF_FOCAL_TOLERANCE,
    )
    assert found.focal == scene.exif_focal
    assert angle_between(found.normal, scene.normal) < 0.3

    floor, mask = tiled_floor(scenes.View(60, 35, 20))
    rounded = floor.focal * 1.015
    settled = plane_from_lines(
        floor.photo, mask, default_focal=1.0, given_focal=rounded, focal_tolerance=EXIF_FOCAL_TOLERANCE
    )
    assert settled.focal == pytest.approx(floor.focal, rel=0.001)


def test_one_line_direction_and_a_few_strays_are_refused_not_made_a_plane() -> None:
    """Courses converging to one vanishing point and sixty scattered short strokes: no second
    direction, so no plane (counted as one, a few strays aligned by chance gave a plane 72° off)."""
    rng = np.random.default_rng(3)
    photo = np.full((600, 800, 3), 170, np.uint8)
    vanishing = np.array([2400.0, 250.0])
    for y in np.linspace(60, 560, 40):
        start = np.array([20.0, y])
        end = start + (vanishing - start) * 0.3
        cv2.line(photo, (int(start[0]), int(start[1])), (int(end[0]), int(end[1])), (90, 90, 90), 2)
    for _ in range(60):
        x, y, angle = rng.uniform(50, 750), rng.uniform(50, 550), rng.uniform(0, math.pi)
        cv2.line(
            photo, (int(x), int(y)), (int(x + 14 * math.cos(angle)), int(y + 14 * math.sin(angle))), (60, 60, 60), 1
        )
    mask = np.full((600, 800), 255, np.uint8)
    with pytest.raises(NoVanishingPoints):
        plane_from_lines(photo, mask, default_focal=1.0, given_focal=700.0)


def test_a_plain_floors_few_lines_are_refused_not_made_a_plane() -> None:
    """A plain concrete-like floor: its only lines are a wall's foot, a sun patch's edges (a
    parallelogram, not the room's axes) and a table's jagged shadow. Lines that merely cross near
    one another made a plane 82° off; it is refused instead (a quad or a depth model gives it)."""
    from benchmarks import segmentation_scenes as rooms

    room = rooms.Room(
        rooms.carpet((175, 170, 162), seed=17),
        rooms.paint((185, 180, 172)),
        boxes=rooms.furniture("all"),
        skirting=None,
        sun=(-0.5, 1.5, 1.2, 1.8),
    )
    camera = rooms.Camera(62, 34, -12, size=(1024, 768))
    photo, floor, _ = rooms.render(room, camera, rooms.FLOOR, seed=8)
    focal = 0.5 * 1024 / math.tan(math.radians(62) / 2)
    with pytest.raises(NoVanishingPoints) as refused:
        plane_from_lines(photo, (floor * 255).astype(np.uint8), default_focal=1.0, given_focal=focal, surface="floor")
    # Refused for its lines, not for a tilt: the message does not blame the camera's level.
    assert "held level" not in str(refused.value)


@pytest.mark.parametrize("surface", ["", "floor", "wall"])
def test_a_floor_upright_in_the_photo_keeps_its_plane_by_any_name(surface: str) -> None:
    scene, mask = tiled_floor(scenes.View(60, 35, 20))
    found = plane_from_lines(scene.photo, mask, default_focal=1.0, given_focal=scene.focal, surface=surface)
    assert angle_between(found.normal, scene.normal) < 0.5


def test_a_plane_tilted_as_no_level_camera_sees_a_floor_is_refused_for_a_floor() -> None:
    """The tiled floor's photo turned a quarter: its plane is a wall's (the normal along the photo's
    x). Named a floor or a ceiling, no hand-held camera's roll makes it one, and it is refused
    rather than given; unnamed or named a wall, it is found as before."""
    scene, mask = tiled_floor(scenes.View(60, 35, 20))
    photo, turned = np.ascontiguousarray(np.rot90(scene.photo)), np.ascontiguousarray(np.rot90(mask))
    for surface in ("", "wall"):
        found = plane_from_lines(photo, turned, default_focal=1.0, given_focal=scene.focal, surface=surface)
        # np.rot90 turns the photo anticlockwise: the camera's (x, y) become (y, -x).
        assert angle_between(found.normal, np.array([scene.normal[1], -scene.normal[0], scene.normal[2]])) < 0.5
    for surface in ("floor", "ceiling"):
        with pytest.raises(NoVanishingPoints, match=f"a {surface} seen by a camera held level"):
            plane_from_lines(photo, turned, default_focal=1.0, given_focal=scene.focal, surface=surface)
        with pytest.raises(NoVanishingPoints):  # without a focal length too
            plane_from_lines(photo, turned, default_focal=homography.default_focal(480, 640), surface=surface)


def test_a_floor_seen_from_above_is_not_judged_by_its_roll() -> None:
    """Tiles photographed from above (a camera pitched down 70°) with the phone turned a quarter:
    the roll means nothing there, and the plane is found, named a floor or not."""
    scene, mask = tiled_floor(scenes.View(60, 70, 20))
    photo, turned = np.ascontiguousarray(np.rot90(scene.photo)), np.ascontiguousarray(np.rot90(mask))
    truth = np.array([scene.normal[1], -scene.normal[0], scene.normal[2]])
    for surface in ("", "floor"):
        found = plane_from_lines(photo, turned, default_focal=1.0, given_focal=scene.focal, surface=surface)
        assert angle_between(found.normal, truth) < 0.5


def test_a_facade_with_only_its_courses_takes_its_verticals_from_the_rest_of_the_photo() -> None:
    """Courses and no visible vertical joints, the mask well inside the facade's sides: on the
    surface the lines run in one direction only. With the camera known, the direction at a right
    angle to them comes from the whole photo's lines (here the facade's sides, outside the mask);
    without it, the same from the default focal length, which the lines then settle (the plane
    within a few degrees instead of none)."""
    courses = np.full((256, 256, 3), 170, np.uint8)
    for y in range(0, 256, 32):
        cv2.rectangle(courses, (0, y), (255, y + 3), (90, 90, 90), -1)
    scene = scenes.camera_scene(scenes.View(60, -5, 30, "facade"), courses, courses, size=(1024, 768), supersample=2)
    inner = cv2.erode(scene.visible_surface.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=60)
    mask = inner * 255
    found = plane_from_lines(scene.photo, mask, default_focal=1.0, given_focal=scene.focal)
    assert angle_between(found.normal, scene.normal) < 0.5
    assert found.confidence <= 0.5  # one direction from elsewhere: half the usual confidence
    unknown = plane_from_lines(scene.photo, mask, default_focal=homography.default_focal(1024, 768))
    assert angle_between(unknown.normal, scene.normal) < 3.0 and unknown.confidence <= 0.5


def test_ransac_pairs_are_drawn_as_numpys_choice_draws_them() -> None:
    """_draw_pair stands in for rng.choice(n, 2, replace=False, p=weights) in the vanishing points'
    RANSAC: from the same seed it must draw the same pairs and use the same random numbers, or the
    planes would change with it. Few, uneven weights make both uniforms often fall on one index,
    so the redraw is exercised too."""
    redraws = 0
    for seed in range(60):
        count = 2 + seed % 9
        weights = np.random.default_rng(1000 + seed).random(count) ** 3
        weights /= weights.sum()
        cdf = np.cumsum(weights)
        cdf /= cdf[-1]
        theirs, ours, peek = (np.random.default_rng(seed) for _ in range(3))
        for _ in range(100):
            first, second = np.searchsorted(cdf, peek.random(2), side="right")
            if first == second:
                redraws += 1
                peek.random(1)
            assert _draw_pair(ours, cdf, weights) == tuple(theirs.choice(count, 2, replace=False, p=weights))
        assert theirs.bit_generator.state == ours.bit_generator.state == peek.bit_generator.state
    assert redraws > 100


def gravel_floor(pitch_deg: float, yaw_deg: float, seed: int, focal: float = 550.0) -> tuple[np.ndarray, np.ndarray]:
    """A photo (640 x 480) filled by a gravel floor, 1.5 m below a camera of known focal length
    and no line anywhere: blurred noise at three scales, a metre a repeat; and the floor's normal
    in camera coordinates."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (256, 256)).astype(np.float32)
    grit = np.zeros_like(noise)
    for k, (sigma, weight) in enumerate(((1.0, 0.5), (2.5, 1.0), (6.0, 1.0))):
        grit += weight * cv2.GaussianBlur(np.roll(noise, 7 * k, 0), (0, 0), sigma)
    grey = np.clip(130 + 35 * (grit - grit.mean()) / grit.std(), 0, 255).astype(np.uint8)
    tex = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    p, y = math.radians(pitch_deg), math.radians(yaw_deg)
    Rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    look = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)
    Rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    R = Rx @ look @ Rz
    K = np.array([[focal, 0, 320], [0, focal, 240], [0, 0, 1]])
    to_floor = np.linalg.inv(K @ np.column_stack([R[:, 0], R[:, 1], -R @ np.array([0, 0, 1.5])]))
    ys, xs = np.mgrid[0:480, 0:640].astype(np.float64)
    w = to_floor[2, 0] * xs + to_floor[2, 1] * ys + to_floor[2, 2]
    u = (to_floor[0, 0] * xs + to_floor[0, 1] * ys + to_floor[0, 2]) / w
    v = (to_floor[1, 0] * xs + to_floor[1, 1] * ys + to_floor[1, 2]) / w
    maps = [(np.mod(c, 1.0) * 256).astype(np.float32) for c in (u, v)]
    return cv2.remap(tex, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP), R @ np.array([0, 0, 1.0])


def test_a_floor_without_lines_is_refused_rather_than_given_the_texture_edges_plane() -> None:
    """Gravel's own short edges, seen at an angle, run nearly parallel and met in made-up
    vanishing points: this view's plane came out 18° off, given without a word (a reviewer's
    scenes: 14-41°). Each direction now needs long segments of its own. Not every such view is
    caught (docs/architecture.md, Known limits)."""
    photo, normal = gravel_floor(70, 25, seed=2)
    mask = np.full((480, 640), 255, np.uint8)
    with pytest.raises(NoVanishingPoints):
        plane_from_lines(photo, mask, default_focal=1.0, given_focal=550.0)
    assert normal[1] < 0  # the floor faces the camera (the view is a floor's)


@pytest.mark.parametrize("pattern", ["running bond", "small tiles"])
def test_short_cross_joints_seen_between_furniture_still_give_the_plane(pattern: str) -> None:
    """Running bond's and small tiles' cross joints are all short; with a mask of no long straight
    side (a floor between furniture) a rule that asked long segments of both directions refused
    planes found within a degree (a review of that rule): the stronger direction's suffice."""
    texture = running_bond() if pattern == "running bond" else scenes.tile_texture(256, tiles=8)
    scene = scenes.camera_scene(scenes.View(60, 35, 20), texture, texture, size=(1024, 768), supersample=2)
    mask = (scene.visible_surface * 255).astype(np.uint8)
    ys, xs = np.nonzero(mask)
    between = np.zeros_like(mask)
    cv2.ellipse(between, (int(xs.mean()), int(ys.mean())), (200, 150), 0, 0, 360, (255,), -1)
    found = plane_from_lines(scene.photo, mask & between, default_focal=1.0, given_focal=scene.focal)
    assert angle_between(found.normal, scene.normal) < 1.5


def _drawn_family(photo: np.ndarray, vanishing: np.ndarray, starts: np.ndarray, length: float, shade: int) -> None:
    """Segments of a length from each start towards a vanishing point (homogeneous)."""
    for x, y in starts:
        d = vanishing[:2] / vanishing[2] - (x, y)
        d = d / np.linalg.norm(d)
        end = (int(x + d[0] * length), int(y + d[1] * length))
        cv2.line(photo, (int(x), int(y)), end, (shade, shade, shade), 2, cv2.LINE_AA)


def test_with_a_known_camera_a_pair_at_a_right_angle_goes_before_a_stronger_family_off_the_horizon() -> None:
    """A clicks review's wood floor: the floor's edge against the wall and a sun patch's edges were
    merged into one family whose point lay off the floor's horizon, and it outscored the planks'
    few cross joints: the plane came out 8-9 degrees off. With the focal length known, the pair at
    a right angle (the planks and their joints) is taken before any other."""
    f, width, height = 800.0, 1024, 768
    K, R = turned_camera(
        f, (width, height), 40, 20
    )  # the floor's x (along the planks), y (its normal) and z (across) in the camera's frame
    along, normal, across = R[:, 0], R[:, 1], R[:, 2]
    photo = np.full((height, width, 3), 128, np.uint8)
    rng = np.random.default_rng(3)

    def starts(n: int) -> np.ndarray:
        return np.column_stack([rng.uniform(100, 900, n), rng.uniform(400, 740, n)])

    _drawn_family(photo, K @ along, starts(14), 260, 40)  # the planks' long edges
    _drawn_family(photo, K @ across, starts(6), 110, 40)  # their few cross joints
    horizon = K @ (along + across)
    merged = np.array([*(horizon[:2] / horizon[2] + [0.0, 150.0]), 1.0])  # 150 px under the horizon
    _drawn_family(photo, merged, starts(10), 240, 230)
    mask = np.zeros((height, width), np.uint8)
    mask[380:] = 255
    found = plane_from_lines(photo, mask, default_focal=1.0, given_focal=f)
    assert angle_between(found.normal, normal) < 1.0  # 4.1 degrees before


@pytest.mark.parametrize(("apart", "given"), [(20.0, False), (60.0, True), (90.0, True)])
def test_with_a_known_camera_two_families_close_together_are_one_direction_fanned_not_a_plane(
    apart: float, given: bool
) -> None:
    """A real photo of bricks laid as a floor carries its own perspective: its joints fan out and
    split into families a few tens of degrees apart (judge40's F15: 22°, a plane 19° off). With the
    camera known, two directions that close are refused; rhombi's (60°) and tiles' keep their plane."""
    f, width, height = 800.0, 1024, 768
    K, R = turned_camera(f, (width, height), 40, 10)
    normal = R[:, 1]
    turned = math.radians(apart)
    first = R[:, 0]
    second = math.cos(turned) * R[:, 0] + math.sin(turned) * R[:, 2]
    photo = np.full((height, width, 3), 128, np.uint8)
    rng = np.random.default_rng(5)

    def starts(n: int) -> np.ndarray:
        return np.column_stack([rng.uniform(100, 900, n), rng.uniform(420, 740, n)])

    _drawn_family(photo, K @ first, starts(14), 220, 40)
    _drawn_family(photo, K @ second, starts(12), 220, 40)
    mask = np.zeros((height, width), np.uint8)
    mask[400:] = 255
    if not given:
        with pytest.raises(NoVanishingPoints):
            plane_from_lines(photo, mask, default_focal=1.0, given_focal=f)
        return
    found = plane_from_lines(photo, mask, default_focal=1.0, given_focal=f)
    assert angle_between(found.normal, normal) < 1.0


@pytest.mark.parametrize("seed", [1, 2])
def test_a_wall_whose_tiles_each_fan_to_their_own_point_is_not_a_plane(seed: int) -> None:
    """A texture photo carrying its own perspective, tiled on a wall seen head-on (the held-out
    rooms' brick photo, 49° off): each tile's joints fan to their own point below the photo, and two
    tiles' fans, each on its own part of the wall and running the same way in the photo, made a
    plane 60° off. They are one direction turning across the wall, not a pattern's two."""
    f, width, height = 800.0, 1024, 768
    photo = np.full((height, width, 3), 128, np.uint8)
    rng = np.random.default_rng(seed)
    for left in (140.0, 393.0, 647.0):  # three tiles side by side, each fanning to its own point
        starts = np.column_stack([rng.uniform(left + 10, left + 243, 14), rng.uniform(120, 300, 14)])
        _drawn_family(photo, np.array([left + 127, 850.0, 1.0]), starts, 300, 40)
    mask = np.zeros((height, width), np.uint8)
    mask[90:680, 110:920] = 255
    with pytest.raises(NoVanishingPoints):
        plane_from_lines(photo, mask, default_focal=1.0, given_focal=f, surface="wall")  # 60° off before


def test_families_run_one_way_only_side_by_side_and_the_same_way_in_the_photo() -> None:
    """vanishing._one_way: two families of near-vertical segments side by side are one direction;
    the same two interleaved, one between the other's lines (a table top's front and back edges with
    its veins between them), or crossing, are not."""
    rng = np.random.default_rng(4)

    def family(left: float, right: float, lean: float, n: int = 12) -> np.ndarray:
        x, y = rng.uniform(left, right, n), rng.uniform(100, 300, n)
        return np.column_stack([x, y, x + 150 * math.sin(lean), y + 150 * math.cos(lean)])

    def one_way(first: np.ndarray, second: np.ndarray) -> bool:
        segments = np.vstack([first, second])
        lengths = np.hypot(segments[:, 2] - segments[:, 0], segments[:, 3] - segments[:, 1])
        in1 = np.arange(len(segments)) < len(first)
        return vanishing._one_way(segments, lengths, in1, ~in1)

    lean = math.radians(4.0)
    assert one_way(family(100, 300, lean), family(600, 800, -lean))
    assert not one_way(family(100, 800, lean), family(100, 800, -lean))
    assert not one_way(family(100, 800, lean), family(400, 500, -lean))
    assert not one_way(family(100, 300, lean), family(600, 800, math.radians(60.0)))


@pytest.mark.parametrize("turn", [70.0, 80.0])
@pytest.mark.parametrize("given", [True, False])
def test_a_floor_seen_at_a_grazing_angle_keeps_its_plane_though_its_directions_run_one_way(
    turn: float, given: bool
) -> None:
    """A floor seen from 15 cm, a rug across it: its near joints run one way, its far planks the
    other, and both run near the floor's horizon in the photo, as every direction on a plane seen
    at a grazing angle does: the same way in the photo and side by side, but along the line through
    their two points, not across it as a photo's fanned tiles do (refused before, 0.5-1.4° now)."""
    f, width, height = 800.0, 1024, 768
    K, R = turned_camera(f, (width, height), 0, 0)
    t = R @ np.array([0.0, 0.15, 0.0])  # the camera 15 cm above the floor
    photo = np.full((height, width, 3), 128, np.uint8)
    mask = np.zeros((height, width), np.uint8)
    rng = np.random.default_rng(2)
    a = math.radians(turn)
    for (x0, x1, z0, z1), direction, length in (
        ((-2.0, 2.0, 1.0, 2.5), np.array([math.cos(a), 0.0, math.sin(a)]), 0.3),  # the near joints
        ((-3.0, 3.0, 3.5, 12.0), np.array([-math.sin(a), 0.0, math.cos(a)]), 0.6),  # the far planks
    ):
        corners = np.array([[x0, 0, z0], [x1, 0, z0], [x1, 0, z1], [x0, 0, z1]], float)
        cv2.fillConvexPoly(mask, np.round(project(K, R, t, corners)).astype(np.int32), (255,))
        starts = np.column_stack([rng.uniform(x0, x1, 25), np.zeros(25), rng.uniform(z0, z1, 25)])
        for p, q in zip(project(K, R, t, starts), project(K, R, t, starts + length * direction), strict=True):
            cv2.line(photo, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), (40, 40, 40), 2, cv2.LINE_AA)
    found = plane_from_lines(
        photo, mask, default_focal=1.0 if given else f, given_focal=f if given else None, surface="floor"
    )
    assert angle_between(found.normal, R[:, 1]) < 2.0


@pytest.mark.parametrize("verticals", [3, 5])
def test_with_a_known_camera_edges_standing_on_a_rhombic_floor_do_not_make_a_right_angle_with_it(
    verticals: int,
) -> None:
    """The vertical is at a right angle to every floor direction: a few legs or a door frame paired
    with one of a rhombic floor's directions (60 degrees apart) took the wall's plane, 86-89 degrees
    off (the diff's review). A right-angle pair loses its place when one of its directions is the
    normal of a stronger pair."""
    f, width, height = 800.0, 1024, 768
    K, R = turned_camera(f, (width, height), 40, 20)
    x, normal, z = R[:, 0], R[:, 1], R[:, 2]
    half = math.radians(30)
    d1, d2 = math.cos(half) * x + math.sin(half) * z, math.cos(half) * x - math.sin(half) * z
    rng = np.random.default_rng(3)
    photo = np.full((height, width, 3), 128, np.uint8)

    def starts(n: int) -> np.ndarray:
        return np.column_stack([rng.uniform(100, 900, n), rng.uniform(420, 740, n)])

    _drawn_family(photo, K @ d1, starts(12), 260, 40)
    _drawn_family(photo, K @ d2, starts(12), 260, 40)
    _drawn_family(photo, K @ normal, starts(verticals), 120, 220)  # up from the floor
    mask = np.zeros((height, width), np.uint8)
    mask[380:] = 255
    found = plane_from_lines(photo, mask, default_focal=1.0, given_focal=f)
    assert angle_between(found.normal, normal) < 1.0


@pytest.mark.parametrize("seed", [1, 9, 12])
def test_with_a_known_camera_a_wall_bordered_by_a_rhombic_floors_joints_keeps_its_own_plane(seed: int) -> None:
    """A wall below eye level (a kitchen island's front) whose base borders a rhombic floor: the
    floor's joints in the band around the wall's mask outscore the wall's own lines, and both floor
    directions are at a right angle to the wall's verticals. Only a stronger pair whose lines lie on
    the surface itself takes a right-angle pair's place: else the wall got the floor's plane, 87-90
    degrees off."""
    f, width, height = 800.0, 1024, 768
    K, R = turned_camera(f, (width, height), 25, 20)
    x, up, z = R[:, 0], R[:, 1], R[:, 2]
    half = math.radians(30)
    d1, d2 = math.cos(half) * x + math.sin(half) * z, math.cos(half) * x - math.sin(half) * z
    rng = np.random.default_rng(seed)
    photo = np.full((height, width, 3), 128, np.uint8)

    def starts(n: int, y0: float, y1: float) -> np.ndarray:
        return np.column_stack([rng.uniform(150, 850, n), rng.uniform(y0, y1, n)])

    _drawn_family(photo, K @ x, starts(8, 250, 520), 220, 40)  # the wall's horizontal joints
    _drawn_family(photo, K @ up, starts(6, 380, 520), 120, 40)  # its vertical joints
    mask = np.zeros((height, width), np.uint8)
    mask[230:560, 120:900] = 255
    for direction in (d1, d2):  # the floor's joints along the wall's base, on the floor
        for cx, cy in starts(40, 568, 572):
            v = K @ direction
            d = v[:2] / v[2] - (cx, cy)
            d = d / np.linalg.norm(d) * 20
            ends = (int(cx - d[0]), int(cy - d[1])), (int(cx + d[0]), int(cy + d[1]))
            cv2.line(photo, *ends, (220,) * 3, 2, cv2.LINE_AA)
    found = plane_from_lines(photo, mask, default_focal=1.0, given_focal=f)
    assert angle_between(found.normal, z) < 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_with_a_known_camera_a_hexagonal_floor_keeps_its_plane_against_a_right_angle_searched_for(seed: int) -> None:
    """A hexagonal floor's three directions, 60 degrees apart, make no right angle; a few fragments
    where its joints cross settled at a right angle to one of them (perpendicular_points), and that
    pair went before the floor's own directions: 46-74 degrees off. Only pairs of directions the
    lines found on their own go first."""
    f, width, height = 800.0, 1024, 768
    K, R = turned_camera(f, (width, height), 40, 20)
    x, normal, z = R[:, 0], R[:, 1], R[:, 2]
    rng = np.random.default_rng(seed)
    photo = np.full((height, width, 3), 128, np.uint8)
    for angle in (0, 60, 120):
        a = math.radians(angle)
        starts = np.column_stack([rng.uniform(100, 900, 8), rng.uniform(420, 740, 8)])
        _drawn_family(photo, K @ (math.cos(a) * x + math.sin(a) * z), starts, 180, 40)
    mask = np.zeros((height, width), np.uint8)
    mask[380:] = 255
    found = plane_from_lines(photo, mask, default_focal=1.0, given_focal=f)
    assert angle_between(found.normal, normal) < 1.0


@pytest.mark.parametrize("view", [scenes.View(60, -5, 30, "facade"), scenes.View(60, 5, -35, "facade")])
def test_a_walls_joints_are_fitted_as_whole_lines_not_as_their_pieces(view: scenes.View) -> None:
    """The brick wall above: each course is found as dozens of short pieces, whose angles alone
    put the plane 0.14° and 0.35° off (enough to move a fine material by a pixel across the
    wall); the pieces of each course joined into one line put it within 0.08°."""
    bricks = running_bond()
    scene = scenes.camera_scene(view, bricks, bricks, size=(1024, 768), supersample=2)
    mask = (scene.visible_surface * 255).astype(np.uint8)
    found = plane_from_lines(scene.photo, mask, default_focal=1.0, given_focal=scene.focal)
    assert angle_between(found.normal, scene.normal) < 0.08


def test_an_exif_values_rounding_is_half_a_millimetre_of_its_35mm_equivalent() -> None:
    """FocalLengthIn35mmFilm is whole millimetres: a 13 mm ultra-wide's value may be 3.8 % off, a
    70 mm tele's 0.7 %; the bound is read back from the focal length in pixels by the diagonal."""
    width, height = 1024, 768
    per_mm = math.hypot(width, height) / 43.2666
    assert vanishing._exif_rounding(13 * per_mm, width, height) == pytest.approx(0.5 / 13, rel=1e-3)
    assert vanishing._exif_rounding(70 * per_mm, height, width) == pytest.approx(0.5 / 70, rel=1e-3)


def square_on_floor(posts: int, posts_seen_at: float = 1.0) -> tuple[np.ndarray, np.ndarray, float]:
    """A tiled floor seen nearly square-on (turned 4°: its cross joints' vanishing point ~14 focal
    lengths away, which hardly fixes the focal length) by a 13 mm-equivalent camera pitched 30°
    down, with `posts` upright edges standing on it (table legs, a room's corners; drawn as a camera
    of posts_seen_at times the focal length would see them: other than 1, strays): the photo, the
    floor's mask and the focal length."""
    f, width, height = 396.0, 1024, 768
    K, R = turned_camera(f, (width, height), 30, 4)
    along, normal, across = R[:, 2], R[:, 1], R[:, 0]
    photo = np.full((height, width, 3), 150, np.uint8)
    rng = np.random.default_rng(7)

    def starts(n: int, top: float = 420) -> np.ndarray:
        return np.column_stack([rng.uniform(60, 960, n), rng.uniform(top, 740, n)])

    _drawn_family(photo, K @ along, starts(16), 200, 60)  # the rows running away
    _drawn_family(photo, K @ across, starts(16), 220, 60)  # the joints across
    seen_by = np.diag([posts_seen_at, posts_seen_at, 1.0]) @ (K - np.diag([0.0, 0.0, 1.0])) + np.diag([0.0, 0.0, 1.0])
    seen_by[:2, 2] = K[:2, 2]
    _drawn_family(photo, seen_by @ -normal, starts(posts, 300), 260, 30)  # upright edges, towards the zenith
    mask = np.zeros((height, width), np.uint8)
    mask[400:] = 255
    return photo, mask, f


def settled_focal(photo: np.ndarray, mask: np.ndarray, given: float) -> float:
    """The focal length the lines settle a rounded EXIF value to, on a floor."""
    found = plane_from_lines(photo, mask, 1.0, given_focal=given, focal_tolerance=EXIF_FOCAL_TOLERANCE, surface="floor")
    return found.focal


def test_upright_edges_settle_a_rounded_exif_value_that_a_square_on_floor_cannot() -> None:
    """judge40's F3: a 13.4 mm lens written 13, a wood floor seen 5° from square-on, the EXIF value
    kept (the cross joints' far vanishing point cannot tell focal lengths 3 % apart) and the texture
    laid 1.2 cm off (18.3 dB). The upright edges' vanishing point, at a right angle to both of the
    floor's directions, fixes it with the rows' near one, within the millimetre's rounding."""
    photo, mask, f = square_on_floor(posts=0)
    rounded = f * 13 / 13.4
    alone = settled_focal(photo, mask, rounded)
    assert abs(alone / f - 1) > 0.02
    photo, mask, f = square_on_floor(posts=12)
    found = settled_focal(photo, mask, rounded)
    # The drawn lines' own rounding biases the pair (3.3 % short alone); the uprights halve it.
    assert abs(found / f - 1) < 0.5 * abs(alone / f - 1)
    assert abs(found / rounded - 1) <= vanishing._exif_rounding(rounded, 1024, 768)


def test_upright_edges_that_settle_past_the_rounding_are_strays_and_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """make quality's subway wall: a few segments towards the wall's centre, read as its depth
    direction, pulled an exact 26 mm value to the edge of its rounding (the plane 0.05 -> 0.48°).
    Edges whose own best focal length lies past the rounding (here drawn as a camera 9 % longer
    would see them) disagree with the EXIF value: the floor's own lines settle it, as without them
    (with them, it moved 1.5 %)."""
    photo, mask, f = square_on_floor(posts=12, posts_seen_at=1.09)
    found = settled_focal(photo, mask, f)
    monkeypatch.setattr(vanishing._Third, "along", classmethod(lambda cls, *args: None))
    assert found == settled_focal(photo, mask, f)


@pytest.mark.parametrize(("strays", "turned"), [(2, 90.0), (3, 90.0)])
def test_with_a_known_camera_a_handful_of_strays_is_no_facades_second_direction(strays: int, turned: float) -> None:
    """A wide-angle facade's courses, a few stray edges on it at a right angle to them (not its
    verticals), the building's verticals beside it and the street's receding lines below it, all
    outside the mask's band. The strays (2-5 segments in the variations, in or out as the mask's edge
    moved by a pixel) made pairs 75-80° off; the verticals are taken from the rest of the photo, the street's level
    lines not, for a surface named a facade."""
    f, width, height = 420.0, 1024, 768
    K, R = turned_camera(f, (width, height), -6, 30)  # looking up 6°: the facade's horizontal, up, normal
    along, up, normal = R[:, 0], R[:, 1], R[:, 2]
    across = math.cos(math.radians(50)) * up + math.sin(math.radians(50)) * normal
    stray = math.cos(math.radians(turned)) * along + math.sin(math.radians(turned)) * across
    photo = np.full((height, width, 3), 150, np.uint8)
    rng = np.random.default_rng(4)
    _drawn_family(photo, K @ along, np.column_stack([rng.uniform(200, 500, 24), rng.uniform(520, 640, 24)]), 300, 60)
    _drawn_family(
        photo,
        K @ stray,
        np.column_stack([rng.uniform(300, 700, strays), rng.uniform(540, 560, strays)]),
        70 + 10 * strays,
        60,
    )
    sides = np.column_stack([np.r_[rng.uniform(40, 110, 6), rng.uniform(920, 990, 6)], rng.uniform(150, 250, 12)])
    _drawn_family(photo, K @ up, sides, 300, 60)
    _drawn_family(photo, K @ normal, np.column_stack([rng.uniform(250, 700, 8), rng.uniform(715, 760, 8)]), 150, 60)
    mask = np.zeros((height, width), np.uint8)
    mask[500:670, 150:880] = 255
    found = plane_from_lines(photo, mask, default_focal=1.0, given_focal=f, surface="facade")
    assert angle_between(found.normal, normal) < 1.0


def _noisy_family(
    rng: np.random.Generator, K: np.ndarray, R: np.ndarray, direction: np.ndarray, count: int, noise: float
) -> np.ndarray:
    """Segments (pixels) along a direction from points of a floor (R's columns: its x, normal, z)
    5 m in front of the camera, their ends moved by Gaussian noise of `noise` pixels."""
    spread = rng.uniform(-1.5, 1.5, (count, 2))
    starts = np.array([0.0, 0.0, 5.0]) + spread[:, :1] * R[:, 0] + spread[:, 1:] * R[:, 2]
    rows = []
    for start in starts:
        ends = np.array([start, start + 0.8 * direction])
        pixels = (K @ ends.T).T
        rows.append((pixels[:, :2] / pixels[:, 2:]).ravel())
    return np.array(rows) + rng.normal(0, noise, (count, 4))


def _family_geometry(segments: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A family's first endpoints, midpoints and lengths, as vanishing._refine_ml takes them."""
    p1, _, _, length, mid = vanishing.segment_geometry(segments, scale)
    return p1, mid, length


def test_a_hexagonal_floors_plane_is_fitted_through_all_three_directions_on_its_horizon() -> None:
    """With the camera known, a hexagonal floor's pair of directions (60° apart, no right angle to
    hold them) gives its plane within ~1°; the third direction on the same horizon, fitted with
    them, narrows it (on segmentation_heldout-rendered hexagon floors 1.2-2.0° became 0.3-0.7°),
    and a direction off the plane (upright edges) is left out of the fit."""
    f, width, height = 800.0, 1024, 768
    K, R = turned_camera(f, (width, height), 30, 20)
    x, normal, z = R[:, 0], R[:, 1], R[:, 2]
    scale, centre = float(width), np.array([0.5, 0.375])
    scaled = np.diag([1 / scale, 1 / scale, 1.0]) @ K
    blank = np.full((height, width, 3), 128, np.uint8)  # no edges: the segments stay as given
    errors: dict[str, list[float]] = {"pair": [], "three": [], "upright": []}
    for seed in range(6):
        rng = np.random.default_rng(seed)
        directions = [np.cos(a) * x + np.sin(a) * z for a in np.radians([0, 60, 120])]
        families = [_noisy_family(rng, K, R, d, 12, 0.6) for d in directions]
        upright = _noisy_family(rng, K, R, normal, 12, 0.6)
        segments = np.concatenate([*families, upright])
        member = np.repeat(np.arange(4), 12)
        ins = [member == k for k in range(4)]
        # The pair's points slightly off (as RANSAC leaves them); the fit starts from the pair's plane.
        v1, v2, v3, v4 = (scaled @ d for d in (*directions, normal))
        pair = (v1, ins[0], v2, ins[1])
        start = np.cross(directions[0], directions[1])
        # The pair alone is left as found: its points fitted on their own segments.
        assert vanishing._horizon_fit(pair, [], segments, blank, scale, centre, f / scale, start) is None
        found = [
            vanishing._refine_ml(v, *_family_geometry(segments[k], scale)) for v, k in ((v1, ins[0]), (v2, ins[1]))
        ]
        d1, d2 = (np.linalg.solve(scaled, v) for v in found)
        errors["pair"].append(angle_between(np.cross(d1, d2), normal))
        for name, points in (("three", [(v3, ins[2])]), ("upright", [(v3, ins[2]), (v4, ins[3])])):
            fitted = vanishing._horizon_fit(pair, points, segments, blank, scale, centre, f / scale, start)
            assert fitted is not None
            d1, d2 = (np.linalg.solve(scaled, v) for v in fitted)
            errors[name].append(angle_between(np.cross(d1, d2), normal))
    by_pair, by_three, with_upright = (float(np.mean(errors[k])) for k in ("pair", "three", "upright"))
    assert by_three < 0.7 * by_pair
    assert with_upright == pytest.approx(by_three, abs=1e-6)


@pytest.mark.parametrize(("seed", "yaw"), [(2, 1.0), (2, 3.0), (3, 3.0)])
def test_with_a_known_camera_a_right_pair_whose_one_point_lies_far_is_still_squared(seed: int, yaw: float) -> None:
    """A floor's two right-angled families, one of short, ragged segments nearly parallel in the
    photo (its vanishing point far off): its measured angle strays several degrees from a right one,
    and only the refit as a right angle places the plane. A pair refitted square only within 5° of
    one (a change measured and not kept, docs/quality.md) left these planes 9-13° off."""
    f, width, height = 800.0, 1024, 768
    K, R = turned_camera(f, (width, height), 40, yaw)
    photo = np.full((height, width, 3), 128, np.uint8)
    rng = np.random.default_rng(seed)

    def family(direction: np.ndarray, count: int, length: float, jitter_deg: float) -> None:
        v = K @ direction
        for x, y in np.column_stack([rng.uniform(100, 900, count), rng.uniform(420, 740, count)]):
            d = v[:2] / v[2] - (x, y)
            d = d / np.linalg.norm(d)
            t = math.radians(rng.normal(0, jitter_deg))
            d = np.array([d[0] * math.cos(t) - d[1] * math.sin(t), d[0] * math.sin(t) + d[1] * math.cos(t)])
            end = (int(x + d[0] * length), int(y + d[1] * length))
            cv2.line(photo, (int(x), int(y)), end, (40, 40, 40), 2, cv2.LINE_AA)

    family(R[:, 0], 10, 60, 1.2)  # nearly parallel in the photo: a far vanishing point
    family(R[:, 2], 14, 120, 0.6)
    mask = np.zeros((height, width), np.uint8)
    mask[400:] = 255
    found = plane_from_lines(photo, mask, default_focal=1.0, given_focal=f)
    assert angle_between(found.normal, R[:, 1]) < 2.0
