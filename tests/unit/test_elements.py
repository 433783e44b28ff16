"""A laid material's elements on the rectified grid, and their tones taken out of the light.

A synthetic plank floor seen head-on (so the grid is the photo's pixels): courses 24 px high of
planks 150-400 px long, each its own tone, with long grain and thin dark joints, under a window's
falloff and a sun patch. The planks are longer than the light's filter reaches, so without the
elements' tones the estimate keeps each plank's tone as a streak; the tests check the elements
are the planks, that their tones come out, and that nothing is taken out where the tones do not
spread as a laid material's do or where there are no courses.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from services.projection import elements, joint_tones
from services.projection import shading as shading_module
from services.projection.bilateral import bilateral
from services.projection.shading import estimate_shading
from tests.unit.test_projection_shading import HEIGHT, WIDTH, copied, light, photograph

COURSE = 24


def planks(rng: np.random.Generator, tone_sd: float = 0.12) -> tuple[np.ndarray, np.ndarray]:
    """Linear albedo (H x W) of planks along the rows, and each pixel's plank (-1 on joints)."""
    albedo = np.empty((HEIGHT, WIDTH), np.float32)
    which = np.full((HEIGHT, WIDTH), -1, np.int32)
    # Grain: streaks long along the planks, fine across them.
    noise = np.asarray(cv2.GaussianBlur(rng.normal(0, 1, (HEIGHT, WIDTH)).astype(np.float32), (0, 0), 40, sigmaY=0.8))
    grain = noise * np.float32(0.06 / max(float(noise.std()), 1e-6))
    count = 0
    for top in range(0, HEIGHT, COURSE):
        x = -int(rng.uniform(0, 400))
        while x < WIDTH:
            length = int(rng.uniform(150, 400))
            left, right = max(0, x), min(WIDTH, x + length)
            if right > left:
                tone = float(np.clip(rng.normal(1.0, tone_sd), 0.5, 1.6))
                albedo[top : top + COURSE, left:right] = 0.35 * tone
                which[top : top + COURSE, left:right] = count
                count += 1
            x += length
            if 0 <= x < WIDTH:  # the plank's end joint
                albedo[top : top + COURSE, x : x + 2] = 0.08
                which[top : top + COURSE, x : x + 2] = -1
        albedo[top : top + 2] = 0.08  # the joint between courses
        which[top : top + 2] = -1
    return (albedo * np.exp(grain)).astype(np.float32), which


@pytest.fixture(scope="module")
def plank_floor() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    albedo, which = planks(np.random.default_rng(11))
    lit, _ = light()
    return photograph(albedo, lit), albedo, lit, which


def grid_of(photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The log luminance as the estimate's grid holds it head-on (a cell a pixel) and its median."""
    linear = shading_module._linear_luminance16(photo) * shading_module._PER_LUMINANCE16
    log_l = np.log(linear + np.float32(1e-4)).astype(np.float32)
    return log_l, np.asarray(cv2.medianBlur(log_l, 5))


def test_the_elements_found_are_the_planks(plank_floor: tuple[np.ndarray, ...]) -> None:
    photo, _, _, which = plank_floor
    log_l, wide = grid_of(photo)
    found = elements.find(log_l, wide, np.ones(log_l.shape, bool))
    assert found is not None
    labels = found.labels
    # Each element lies within one plank.
    purity = []
    for label in range(1, found.lengths.size):
        planks_here = which[labels == label]
        planks_here = planks_here[planks_here >= 0]
        if planks_here.size:
            purity.append(np.bincount(planks_here).max() / planks_here.size)
    assert len(purity) >= 0.8 * (which.max() + 1)
    assert np.median(purity) == 1.0
    assert np.mean(np.array(purity) > 0.95) > 0.9
    # And its length along the course is the plank's, as far as the photo shows it.
    long_ones = found.lengths[1:][found.lengths[1:] >= 100]
    assert long_ones.size > 0.5 * (found.lengths.size - 1)


def test_the_planks_tones_come_out_of_the_light(
    plank_floor: tuple[np.ndarray, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    photo, albedo, lit, which = plank_floor
    mask = np.full((HEIGHT, WIDTH), 255, np.uint8)
    inner = np.zeros((HEIGHT, WIDTH), bool)
    inner[8:-8, 8:-8] = True
    on_planks = inner & (which >= 0)
    with_tones = estimate_shading(photo, mask, np.eye(3)).region(0, 0, WIDTH, HEIGHT)
    monkeypatch.setattr(elements, "find", lambda *_: None)  # the estimate as it was before them
    before = estimate_shading(photo, mask, np.eye(3)).region(0, 0, WIDTH, HEIGHT)
    # Without the elements the planks' tones stay in the light; with them, less of them (what is
    # left is mostly the grain, and the planks cut short by the photo's edges).
    assert copied(before, lit, albedo, on_planks) > 0.3
    assert copied(with_tones, lit, albedo, on_planks) < 0.7 * copied(before, lit, albedo, on_planks)

    def error(field: np.ndarray) -> float:
        e = np.log(field / lit)[on_planks]
        return float(np.sqrt(np.mean((e - e.mean()) ** 2)))

    assert error(with_tones) < 0.85 * error(before)


def test_tones_that_do_not_spread_are_left_in(plank_floor: tuple[np.ndarray, ...]) -> None:
    albedo, _ = planks(np.random.default_rng(11), tone_sd=0.01)
    lit, _ = light()
    log_l, wide = grid_of(photograph(albedo, lit))
    valid = np.ones(log_l.shape, bool)
    found = elements.find(log_l, wide, valid)
    assert found is not None  # the courses are there, the tones are not
    weights = valid.astype(np.float32)
    smoothed = bilateral(wide, weights, 24.0, shading_module._RANGE, border=True)
    assert elements.tones(wide, smoothed, found, 24.0) is None
    # The same planks with their tones: taken out.
    log_l, wide = grid_of(plank_floor[0])
    found = elements.find(log_l, wide, valid)
    assert found is not None
    smoothed = bilateral(wide, weights, 24.0, shading_module._RANGE, border=True)
    own = elements.tones(wide, smoothed, found, 24.0)
    assert own is not None
    which = plank_floor[3]
    tone = np.log(plank_floor[1])
    on = which >= 0
    assert np.corrcoef(own[on], tone[on])[0, 1] > 0.7


def test_offsets_that_neighbouring_planks_share_are_the_lights(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planks of one tone (a spread of 0.5 %) whose offsets against the light follow a soft shadow
    the filter's light missed (a dip 0.15 deep, about three reaches wide, read plank by plank): they
    spread as a laid material's tones do, but neighbouring planks share them, and nothing is taken
    out. The same dip over planks with their tones: the tones still come out."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    dip = (-0.15 * np.exp(-((rows - HEIGHT / 2) ** 2 + (cols - WIDTH / 2) ** 2) / (2 * 70.0**2))).astype(np.float32)
    valid = np.ones((HEIGHT, WIDTH), bool)

    def tones_of(tone_sd: float) -> tuple[np.ndarray | None, np.ndarray]:
        albedo, which = planks(np.random.default_rng(11), tone_sd)
        log_l, wide = grid_of(photograph(albedo, light()[0]))
        found = elements.find(log_l, wide, valid)
        assert found is not None
        smoothed = bilateral(wide, valid.astype(np.float32), 24.0, shading_module._RANGE, border=True)
        return elements.tones(wide + dip, smoothed, found, 24.0), np.where(which >= 0, np.log(albedo), np.nan)

    assert tones_of(0.005)[0] is None
    own, tone = tones_of(0.12)
    assert own is not None
    on = np.isfinite(tone)
    assert np.corrcoef(own[on], tone[on])[0, 1] > 0.7
    # Without the rule the shadow's offsets were taken out as the one-tone planks' tones.
    monkeypatch.setattr(elements, "shared_part", lambda offsets, *_: np.zeros_like(offsets))
    assert tones_of(0.005)[0] is not None


def test_elements_shorter_than_two_reaches_are_left_to_the_filter(plank_floor: tuple[np.ndarray, ...]) -> None:
    log_l, wide = grid_of(plank_floor[0])
    valid = np.ones(log_l.shape, bool)
    found = elements.find(log_l, wide, valid)
    assert found is not None
    smoothed = bilateral(wide, valid.astype(np.float32), 24.0, shading_module._RANGE, border=True)
    # A reach of 250 cells: no plank is two reaches long.
    assert elements.tones(wide, smoothed, found, 250.0) is None
    # 170 cells: three planks are, too few to tell how the tones spread; 150: eight are.
    assert np.count_nonzero(found.lengths >= 2 * 170.0) == 3
    assert elements.tones(wide, smoothed, found, 170.0) is None
    assert elements.tones(wide, smoothed, found, 150.0) is not None


@pytest.mark.parametrize("surface", ["noise", "tiles"])
def test_no_courses_no_elements(surface: str) -> None:
    rng = np.random.default_rng(5)
    if surface == "noise":
        log_l = rng.normal(-1.0, 0.1, (HEIGHT, WIDTH)).astype(np.float32)
    else:  # square tiles: courses both ways, their period under the shortest course
        y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
        log_l = np.where((y % 6 < 1) | (x % 6 < 1), np.float32(-2.0), np.float32(-1.0)).astype(np.float32)
    assert elements.find(log_l, np.asarray(cv2.medianBlur(log_l, 5)), np.ones(log_l.shape, bool)) is None


@pytest.mark.parametrize(
    ("shape", "found"), [((8, 8), False), ((20, 300), False), ((33, 33), False), ((300, 20), True)]
)
def test_courses_need_room_for_four_of_them(shape: tuple[int, int], found: bool) -> None:
    """Lines every 9 rows: courses where the grid has rows for four of them (a profile shorter than
    the detrending box once failed to broadcast), none otherwise."""
    rng = np.random.default_rng(2)
    log_l = rng.normal(-1.0, 0.1, shape).astype(np.float32)
    log_l[::9] -= 0.5
    laid = elements.find(log_l, np.asarray(cv2.medianBlur(log_l, 5)), np.ones(shape, bool))
    assert (laid is not None) == found


def ashlar(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Linear albedo (H x W) of ashlar along the rows: courses 16-41 px high at random (no period),
    blocks 40-110 px long (under two of the filter's reaches), tones 13 % apart, light mortar 2 px,
    grain; each pixel's block (-1 on joints) and the rows of the joints between courses."""
    albedo = np.full((HEIGHT, WIDTH), 0.6, np.float32)  # the mortar
    which = np.full((HEIGHT, WIDTH), -1, np.int32)
    beds: list[int] = []
    count, top = 0, -int(rng.uniform(0, 20))
    while top < HEIGHT:
        height = int(rng.integers(16, 42))
        x = -int(rng.uniform(0, 100))
        while x < WIDTH:
            length = int(rng.uniform(40, 110))
            rows, cols = slice(max(0, top + 2), max(0, top + height)), slice(max(0, x + 2), max(0, x + length))
            albedo[rows, cols] = 0.35 * float(np.exp(rng.normal(0, 0.13)))
            which[rows, cols] = count
            count += 1
            x += length
        beds.append(top)
        top += height
    noise = np.asarray(cv2.GaussianBlur(rng.normal(0, 1, (HEIGHT, WIDTH)).astype(np.float32), (0, 0), 1.5))
    return (albedo * np.exp(noise * np.float32(0.05 / float(noise.std())))).astype(np.float32), which, beds


def test_ashlars_courses_are_found_as_lines_and_its_blocks_tones_come_out(monkeypatch: pytest.MonkeyPatch) -> None:
    albedo, which, _ = ashlar(np.random.default_rng(4))
    lit, _ = light()
    photo = photograph(albedo, lit)
    log_l, wide = grid_of(photo)
    found = elements.find(log_l, wide, np.ones(log_l.shape, bool))
    assert found is not None and found.irregular
    purity = []
    for label in range(1, found.lengths.size):
        blocks_here = which[found.labels == label]
        blocks_here = blocks_here[blocks_here >= 0]
        purity.append(np.bincount(blocks_here).max() / blocks_here.size)
    assert len(purity) >= 0.5 * (which.max() + 1)  # blocks cut by the photo's edges, or merged
    assert np.median(purity) == 1.0
    mask = np.full((HEIGHT, WIDTH), 255, np.uint8)
    on_blocks = np.zeros((HEIGHT, WIDTH), bool)
    on_blocks[8:-8, 8:-8] = True
    on_blocks &= which >= 0
    with_tones = estimate_shading(photo, mask, np.eye(3)).region(0, 0, WIDTH, HEIGHT)
    monkeypatch.setattr(elements, "_irregular", lambda *_: None)  # the estimate without them
    before = estimate_shading(photo, mask, np.eye(3)).region(0, 0, WIDTH, HEIGHT)
    # The filter's range keeps the most strongly off blocks (here 45 % of the tones): a third less.
    assert copied(with_tones, lit, albedo, on_blocks) < 0.75 * copied(before, lit, albedo, on_blocks)

    def error(field: np.ndarray) -> float:
        e = np.log(field / lit)[on_blocks]
        return float(np.sqrt(np.mean((e - e.mean()) ** 2)))

    assert error(with_tones) < 0.9 * error(before)


def test_a_light_edge_along_the_courses_is_no_course_line() -> None:
    """A sun patch whose edges run along the rows, across the courses: its edges are steps, which the
    median keeps, so the rows between courses (where no element lies) are all mortar."""
    albedo, _, beds = ashlar(np.random.default_rng(5))
    y = np.mgrid[0:HEIGHT, 0:WIDTH][0]
    edges = (100, 250)
    lit = np.where((y > edges[0]) & (y < edges[1]), np.float32(1.6), np.float32(1.0)).astype(np.float32)
    log_l, wide = grid_of(photograph(albedo, lit))
    found = elements.find(log_l, wide, np.ones(log_l.shape, bool))
    assert found is not None and found.irregular
    labelled = np.flatnonzero((found.labels > 0).any(axis=1))
    between = [row for row in range(labelled[0], labelled[-1]) if not (found.labels[row] > 0).any()]
    assert all(min(abs(row - bed) for bed in beds) <= 3 for row in between)
    lines = [row for row in between if row - 1 not in between]
    assert len(lines) >= len([bed for bed in beds if 40 <= bed <= HEIGHT - 40]) - 1  # all but one


def rubble(rng: np.random.Generator) -> np.ndarray:
    """Linear albedo (H x W) of random rubble: stones around seeds about 35 px apart (a jittered
    grid), each its own tone, light joints 2 px wide where two stones meet."""
    corners = np.mgrid[0:HEIGHT:35, 0:WIDTH:35].reshape(2, -1).T
    seeds = (corners + rng.uniform(0, 35, corners.shape)).astype(np.float32)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    distance = np.hypot(y[..., None] - seeds[:, 0], x[..., None] - seeds[:, 1])
    nearest = np.sort(distance, axis=-1)[..., :2]
    tone = np.exp(rng.normal(0, 0.14, seeds.shape[0])).astype(np.float32)[np.argmin(distance, axis=-1)]
    return np.where(nearest[..., 1] - nearest[..., 0] < 2.0, np.float32(0.6), 0.35 * tone).astype(np.float32)


def test_random_rubble_has_no_courses() -> None:
    """Its joints run every way: no line runs the width."""
    log_l, wide = grid_of(photograph(rubble(np.random.default_rng(6)), light()[0]))
    assert elements.find(log_l, wide, np.ones(log_l.shape, bool)) is None


def test_the_narrow_shadows_of_a_blind_take_nothing_out_of_a_plain_wall(monkeypatch: pytest.MonkeyPatch) -> None:
    """Five slats' narrow shadows along the rows (2 px, thin as mortar), unevenly apart, are lines
    across the width as mortar is; but the wall between them has no tones to take out, and its
    light is as before."""
    rng = np.random.default_rng(6)
    y = np.mgrid[0:HEIGHT, 0:WIDTH][0]
    albedo = (np.float32(0.5) * np.exp(rng.normal(0, 0.02, (HEIGHT, WIDTH)))).astype(np.float32)
    slats = np.zeros((HEIGHT, WIDTH), bool)
    for row in (60, 95, 150, 190, 260):
        slats |= (y == row) | (y == row + 1)
    lit = np.where(slats, np.float32(0.6), np.float32(1.0)) * light()[0]
    photo = photograph(albedo, lit)
    log_l, wide = grid_of(photo)
    lines = elements.find(log_l, wide, np.ones(log_l.shape, bool))
    assert lines is not None and lines.irregular
    mask = np.full((HEIGHT, WIDTH), 255, np.uint8)
    found = estimate_shading(photo, mask, np.eye(3)).region(0, 0, WIDTH, HEIGHT)
    monkeypatch.setattr(elements, "_irregular", lambda *_: None)
    np.testing.assert_array_equal(found, estimate_shading(photo, mask, np.eye(3)).region(0, 0, WIDTH, HEIGHT))


@pytest.mark.parametrize("sun", [1.6, 2.0])
def test_the_mullions_of_a_sun_patch_are_no_courses(sun: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sun patch over most of a plain wall's width, crossed by a window's mullion shadows (6 px,
    wider than the median's window) unevenly apart: they run the width as mortar does, and the
    patch's edges cut them into "blocks" whose offsets are the filter's error beside the edges. They
    are not taken for ashlar's courses, and the light is as without the rule."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    albedo = (np.float32(0.5) * np.exp(rng.normal(0, 0.02, (HEIGHT, WIDTH)))).astype(np.float32)
    patch = (x >= 40) & (x < 440) & (y >= 20) & (y < 340)
    bars = np.zeros((HEIGHT, WIDTH), bool)
    for row in (50, 95, 125, 180, 230, 265, 310):
        bars |= np.abs(y - row) < 3
    lit = np.where(patch & ~bars, np.float32(sun), np.float32(1.0)) * light()[0]
    photo = photograph(albedo, lit)
    log_l, wide = grid_of(photo)
    assert elements.find(log_l, wide, np.ones(log_l.shape, bool)) is None
    mask = np.full((HEIGHT, WIDTH), 255, np.uint8)
    found = estimate_shading(photo, mask, np.eye(3)).region(0, 0, WIDTH, HEIGHT)
    monkeypatch.setattr(elements, "_irregular", lambda *_: None)
    np.testing.assert_array_equal(found, estimate_shading(photo, mask, np.eye(3)).region(0, 0, WIDTH, HEIGHT))


def test_tiles_larger_than_the_reach_have_their_tones_read_from_their_joints() -> None:
    # Square tiles 96 cells a side (four reaches), each its own tone, thin dark joints, under the
    # window's falloff and sun patch: the filter's light follows each tile's tone, so the grid less
    # that light shows little of it; the steps across the joints show it whole.
    rng = np.random.default_rng(3)
    side = 96
    tone = np.exp(rng.normal(0.0, 0.07, (HEIGHT // side + 1, WIDTH // side + 1))).astype(np.float32)
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    albedo = 0.35 * tone[rows // side, cols // side]
    joint = (rows % side < 2) | (cols % side < 2)
    albedo = np.where(joint, np.float32(0.08), albedo).astype(np.float32)
    lit, _ = light()
    log_l, wide = grid_of(photograph(albedo, lit))
    valid = np.ones(log_l.shape, bool)
    found = elements.find(log_l, wide, valid)
    assert found is not None and not found.irregular
    smoothed = bilateral(wide, valid.astype(np.float32), 24.0, shading_module._RANGE, border=True)
    own = elements.tones(wide, smoothed, found, 24.0)
    assert own is not None
    on = ~joint & (found.labels > 0)
    truth = np.log(albedo)[on] - np.median(np.log(albedo)[on])
    assert np.corrcoef(own[on], truth)[0, 1] > 0.8
    # Most of each tile's tone, not the share the filter's light left in the grid.
    assert np.polyfit(truth, own[on], 1)[0] > 0.6


def tile_labels(rows: int, cols: int, side: int, joint: int) -> np.ndarray:
    """Labels of square tiles `side` cells apart with joints `joint` cells wide (0), from 1."""
    r, c = np.mgrid[0:rows, 0:cols]
    on_joint = (r % side < joint) | (c % side < joint)
    return np.where(on_joint, 0, 1 + (r // side) * (cols // side + 1) + c // side).astype(np.int32)


def test_the_steps_across_the_joints_are_the_tiles_own_less_their_neighbours() -> None:
    # Tiles with known tones over a light ramp: a step across a joint is the difference of the two
    # tiles' tones (plus the ramp's few cells between the bands), whichever way the joint runs.
    labels = tile_labels(200, 240, 40, 3)
    count = int(labels.max()) + 1
    tone = np.random.default_rng(5).normal(0.0, 0.1, count)
    residual = (tone[labels] + np.linspace(0, 0.02, 240)[None, :]).astype(np.float32)
    used = np.bincount(labels.ravel(), minlength=count) > 0
    used[0] = False
    lower, upper, steps, lines = joint_tones._joint_steps(residual, labels, used, np.zeros(labels.shape, bool))
    assert lower.size > 40 and np.all(lower < upper)
    np.testing.assert_allclose(steps, tone[upper] - tone[lower], atol=0.002)
    # Every pair of neighbours is crossed by as many lines as the tiles are wide.
    assert np.all(lines >= 36)


def test_the_anchored_least_squares_is_the_dense_normal_equations_solution() -> None:
    rng = np.random.default_rng(8)
    n = 60
    lo = rng.integers(0, n, 300)
    hi = (lo + rng.integers(1, n, 300)) % n
    weights, steps, anchor = rng.uniform(0.5, 3.0, 300), rng.normal(0, 0.1, 300), rng.normal(0, 0.05, n)
    normal = np.diag(np.full(n, 0.4))
    for a, b, w in zip(lo, hi, weights, strict=True):
        normal[[a, b], [a, b]] += w
        normal[a, b] -= w
        normal[b, a] -= w
    rhs = 0.4 * anchor + np.bincount(hi, weights * steps, n) - np.bincount(lo, weights * steps, n)
    found = joint_tones._anchored_solve(lo, hi, weights, steps, 0.4, anchor, np.zeros(n))
    np.testing.assert_allclose(found, np.linalg.solve(normal, rhs), atol=1e-4)


def test_a_mosaic_of_thousands_of_tiles_has_its_tones_read_from_its_joints() -> None:
    # 3,000 tiles 9 cells a side: the least squares over them takes a sum over the joints a step, not
    # a matrix of the elements squared (72 MB here, and its solve the cube).
    labels = tile_labels(540, 540, 9, 2)
    count = int(labels.max()) + 1
    tone = np.random.default_rng(6).normal(0.0, 0.08, count)
    residual = tone[labels].astype(np.float32)
    used = np.bincount(labels.ravel(), minlength=count) >= 30
    used[0] = False
    # Anchored to the quarter of each tone that a filter's light leaves in the grid.
    hard = np.zeros(labels.shape, bool)
    offsets, linked, _ = joint_tones._joint_offsets(residual, labels, used, hard, 0.25 * tone)
    assert np.count_nonzero(linked) > 3000
    found, truth = offsets[linked], tone[linked]
    assert np.corrcoef(found, truth)[0, 1] > 0.99
    assert np.polyfit(truth, found, 1)[0] > 0.9
