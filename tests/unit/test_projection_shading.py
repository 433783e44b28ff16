"""The shading estimate carries the light and not the old material's pattern.

A synthetic surface of worn tiles (each its own tone, dark joints) or of a two-tone carpet motif,
under a smooth falloff and a hard-edged patch of sun, seen head-on or in perspective: the estimate
must follow the light (high correlation), not the albedo (low correlation), and keep the sun's
edge sharp. The old blur estimate fails the same checks, which is what they are for.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from renderkit.imaging import linear_to_srgb, srgb_to_linear
from services.projection import bilateral as bilateral_module
from services.projection import shading as shading_module
from services.projection.shading import (
    BLUR,
    INTRINSIC,
    TEXTURE_SPACE,
    Shading,
    _halved,
    _hard_steps,
    _lattice,
    _reference,
    _without_joints,
    estimate_shading,
    from_model,
)
from tests import edge_profiles

WIDTH, HEIGHT = 480, 360


def tiles(rng: np.random.Generator, size: int = 40) -> np.ndarray:
    """Linear albedo (H x W): tiles of `size` px, each its own tone (worn: 15 % either way), 2 px
    dark joints."""
    rows, cols = HEIGHT // size + 1, WIDTH // size + 1
    tone = rng.uniform(0.85, 1.15, (rows, cols)).astype(np.float32)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    albedo = 0.45 * tone[y // size, x // size]
    joints = (y % size < 2) | (x % size < 2)
    return np.where(joints, np.float32(0.12), albedo).astype(np.float32)


def carpet(period: int = 28) -> np.ndarray:
    """Linear albedo: a two-tone diamond motif (a dark field, light diamonds)."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    s, t = (x + y) / period, (x - y) / period
    inner = np.minimum(np.abs(s - np.round(s)), np.abs(t - np.round(t))) > 0.2
    return np.where(inner, np.float32(0.5), np.float32(0.12)).astype(np.float32)


def light() -> tuple[np.ndarray, np.ndarray]:
    """A window's falloff times a sun patch 2.5 times brighter with straight hard edges, and the
    patch's mask."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    falloff = 0.5 + 0.6 * np.exp(-(((x - 60) / 260) ** 2 + ((y - 120) / 300) ** 2))
    slant = x - 0.5 * y
    sun = (slant > 150) & (slant < 300) & (y > 90) & (y < 300)
    return (falloff * np.where(sun, np.float32(2.5), np.float32(1.0))).astype(np.float32), sun


def photograph(albedo: np.ndarray, lit: np.ndarray, warp: np.ndarray | None = None) -> np.ndarray:
    """The surface's photo (uint8 BGR), seen through a homography from the surface to the photo."""
    radiance = albedo * lit
    if warp is not None:
        radiance = cv2.warpPerspective(radiance, warp, (WIDTH, HEIGHT), flags=cv2.INTER_AREA)
    return cv2.cvtColor(linear_to_srgb(np.clip(radiance, 0, 1)), cv2.COLOR_GRAY2BGR)


def correlation(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    return float(np.corrcoef(np.log(a[region]), np.log(b[region]))[0, 1])


def copied(field: np.ndarray, lit: np.ndarray, albedo: np.ndarray, region: np.ndarray) -> float:
    """How much of the albedo's pattern the estimate carries: the slope of its error (in log)
    against the albedo (in log); 1 copies the pattern whole, 0 not at all."""
    error, pattern = np.log(field / lit)[region], np.log(albedo)[region]
    return float(np.polyfit(pattern - pattern.mean(), error - error.mean(), 1)[0])


def estimate(photo: np.ndarray, mask: np.ndarray, to_plane: np.ndarray, method: str) -> np.ndarray:
    shading = estimate_shading(photo, mask, to_plane, method)
    return shading.region(0, 0, WIDTH, HEIGHT)


@pytest.fixture(scope="module")
def tiled_floor() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    albedo = tiles(np.random.default_rng(3))
    lit, sun = light()
    return photograph(albedo, lit), albedo, lit, sun


def test_the_estimate_follows_the_light_not_the_tiles(
    tiled_floor: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    photo, albedo, lit, _ = tiled_floor
    mask = np.full((HEIGHT, WIDTH), 255, np.uint8)
    inner = np.zeros((HEIGHT, WIDTH), bool)
    inner[8:-8, 8:-8] = True
    shading = estimate_shading(photo, mask, np.eye(3))
    assert shading.method == TEXTURE_SPACE
    field = shading.region(0, 0, WIDTH, HEIGHT)
    # Away from the joints, where the tiles' tones are the pattern.
    tiles_only = inner & (albedo > 0.2)
    assert correlation(field, lit, inner) > 0.98
    assert copied(field, lit, albedo, tiles_only) < 0.4
    # The blur this replaced copies the tiles' tones nearly whole.
    blurred = estimate(photo, mask, np.eye(3), BLUR)
    assert copied(blurred, lit, albedo, tiles_only) > 0.8
    assert correlation(blurred, lit, inner) < correlation(field, lit, inner)


def test_the_sun_patch_keeps_a_sharp_edge(tiled_floor: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
    photo = tiled_floor[0]
    mask = np.full((HEIGHT, WIDTH), 255, np.uint8)

    def rise(field: np.ndarray) -> float:
        """Pixels from 10 % to 90 % of the step across the patch's left edge (x = 150 + y / 2),
        the median over rows away from the tiles' joints."""
        return edge_profiles.rise(field, range(120, 280, 7), lambda y: 150 + y // 2, 5)

    sharp = rise(estimate(photo, mask, np.eye(3), TEXTURE_SPACE))
    assert sharp <= 4.0
    assert rise(estimate(photo, mask, np.eye(3), BLUR)) > sharp + 2


def test_a_sun_patch_far_brighter_than_the_shade_keeps_its_strength() -> None:
    """Direct sun beside skylight is often 5 to 10 times brighter: the estimate was clipped at 4
    times the typical light, so an 8 times brighter patch came out half as bright (found on
    scenes another reviewer made: a sun patch 8x lost 8 dB, a lamp's hot spot vanished)."""
    albedo = tiles(np.random.default_rng(5))
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    sun = (x > 200) & (x < 330) & (y > 110) & (y < 250)
    lit = np.where(sun, np.float32(0.8), np.float32(0.1)).astype(np.float32)
    mask = np.full((HEIGHT, WIDTH), 255, np.uint8)
    field = estimate(photograph(albedo, lit), mask, np.eye(3), TEXTURE_SPACE)
    inside = cv2.erode(sun.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    outside = cv2.erode((~sun).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    ratio = float(np.median(field[inside]) / np.median(field[outside]))
    assert ratio == pytest.approx(8.0, rel=0.15)


def lined_carpet(period: int = 28, line: float = 1.6) -> np.ndarray:
    """Linear albedo: the carpet's motif with a light border line along the lattice's lines, a
    pixel or two wide either side (as make quality's carpet has)."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    s, t = (x + y) / period, (x - y) / period
    to_line = np.minimum(np.abs(s - np.round(s)), np.abs(t - np.round(t))) * np.float32(period / np.sqrt(2))
    return np.where(to_line < line, np.float32(0.7), carpet(period)).astype(np.float32)


def in_perspective(albedo: np.ndarray, lit: np.ndarray, method: str) -> np.ndarray:
    """The surface seen receding (its far edge narrower and higher), its light estimated, and
    brought back to the surface's own frame."""
    quad = np.array([[60, 40], [420, 40], [480, 360], [0, 360]], np.float32)
    square = np.array([[0, 0], [WIDTH, 0], [WIDTH, HEIGHT], [0, HEIGHT]], np.float32)
    warp = cv2.getPerspectiveTransform(square, quad)
    photo = photograph(albedo, lit, warp)
    mask = cv2.warpPerspective(np.full((HEIGHT, WIDTH), 255, np.uint8), warp, (WIDTH, HEIGHT))
    mask = cv2.erode(mask, np.ones((5, 5), np.uint8))
    to_plane = np.linalg.inv(warp)
    field = estimate(photo, mask, to_plane, method)
    return np.asarray(cv2.warpPerspective(field, to_plane, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR))


INNER = np.zeros((HEIGHT, WIDTH), bool)
INNER[20:-20, 20:-20] = True


def test_a_periodic_motif_is_left_out_in_perspective() -> None:
    """A carpet's two-tone diamonds seen in perspective: the estimate is rectified through the
    plane, finds the motif's period and drops it."""
    albedo = carpet()
    lit, _ = light()
    flat = in_perspective(albedo, lit, TEXTURE_SPACE)
    assert correlation(flat, lit, INNER) > 0.9
    motif = copied(flat, lit, albedo, INNER)
    assert abs(motif) < 0.1
    blurred = in_perspective(albedo, lit, BLUR)
    assert copied(blurred, lit, albedo, INNER) > 0.3


def test_a_motifs_thin_lines_are_left_out_with_it() -> None:
    """The motif with light border lines: they go with the periodic part, found before the median
    that takes out thin lines. Were the median first, it would break the lines unevenly (cells
    fall on them at every offset) and what it left would not repeat: the estimate then carried a
    tenth of the motif (0.11 in log, rms, away from the sun's edges)."""
    albedo = lined_carpet()
    lit, sun = light()
    flat = in_perspective(albedo, lit, TEXTURE_SPACE)
    sun_edges = cv2.morphologyEx(sun.view(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    away = INNER & ~cv2.dilate(sun_edges, np.ones((15, 15), np.uint8)).astype(bool)
    error = np.log(flat[away] / lit[away])
    assert float(np.sqrt(np.mean((error - np.median(error)) ** 2))) < 0.07
    assert abs(copied(flat, lit, albedo, away)) < 0.05


def lamp() -> np.ndarray:
    """A lamp's hotspot: three times the light at its centre as at the photo's sides."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    return (0.5 + 1.0 * np.exp(-((x - 240) ** 2 + (y - 180) ** 2) / (2 * 45.0**2))).astype(np.float32)


def test_a_plain_surface_keeps_a_lamps_hotspot_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A filter wide enough to average tiles' tones away also flattens the light's own curves:
    on a plain surface the reach is short and the hotspot keeps its height, on tiles it stays wide
    and the tiles' tones stay out."""
    lit = lamp()
    full = np.full((HEIGHT, WIDTH), 255, np.uint8)
    plain = (0.45 * (1 + 0.02 * np.random.default_rng(5).standard_normal((HEIGHT, WIDTH)))).astype(np.float32)

    def height_kept(albedo: np.ndarray) -> float:
        field = estimate(photograph(albedo, lit), full, np.eye(3), TEXTURE_SPACE)
        return float(np.log(field[180, 240] / field[180, 20]) / np.log(lit[180, 240] / lit[180, 20]))

    assert height_kept(plain) > 0.95
    albedo = tiles(np.random.default_rng(3))
    inner = np.zeros((HEIGHT, WIDTH), bool)
    inner[8:-8, 8:-8] = True
    field = estimate(photograph(albedo, lit), full, np.eye(3), TEXTURE_SPACE)
    assert copied(field, lit, albedo, inner & (albedo > 0.2)) < 0.4
    # The wide reach everywhere, as before: the plain surface's hotspot loses a seventh of its height.
    monkeypatch.setattr(shading_module, "_SPATIAL_PLAIN", shading_module._SPATIAL)
    assert height_kept(plain) < 0.9


def test_the_typical_light_counts_the_shade_beside_a_sun_patch_and_leaves_out_an_object() -> None:
    """_reference on a grid: the light a ramp across the surface, a sun patch four times brighter
    at its left border, a dark object standing at the right. The typical light is the median of
    the surface's light, the object's left out. The wide blur that finds objects is lifted beside
    the patch, where the shade then reads as dark as an object: leaving it out too raised the
    typical by 0.022 (and keeping the object lowers it by 0.016)."""
    rows, cols = 300, 400
    y, x = np.mgrid[0:rows, 0:cols]
    light = (0.4 * (x / cols - 0.5)).astype(np.float32)
    sun = (x >= 16) & (x < 176) & (y >= 20) & (y < 240)
    light[sun] += 1.4
    thing = (x >= 300) & (x < 380) & (y >= 200)
    light[thing] = -2.0
    log_l = light + np.random.default_rng(1).normal(0, 0.05, light.shape).astype(np.float32)
    everywhere = np.ones((rows, cols), bool)
    typical = _reference(log_l, light, everywhere, np.ones((rows, cols), np.float32), ~everywhere)
    assert typical == pytest.approx(float(np.median(light[~thing])), abs=0.005)


def test_the_typical_light_leaves_out_an_object_covering_a_third_of_the_surface() -> None:
    """A dark object standing on the surface over a third of a quad (a sofa): the wide blur that
    tells objects is dark over it too, so most of its cells read as the surface and pulled the
    typical light down (every estimate 7 % too bright on a reviewer's scene)."""
    rows, cols = 300, 400
    y, x = np.mgrid[0:rows, 0:cols]
    light = (0.4 * (x / cols - 0.5)).astype(np.float32)
    thing = (x >= 200) & (y < 220)  # 37 % of the cells, its own shading a ramp
    light[thing] = (-1.8 + 0.6 * (y[thing] / 220)).astype(np.float32)
    log_l = light + np.random.default_rng(3).normal(0, 0.05, light.shape).astype(np.float32)
    everywhere = np.ones((rows, cols), bool)
    typical = _reference(log_l, light, everywhere, np.ones((rows, cols), np.float32), ~everywhere)
    assert typical == pytest.approx(float(np.median(light[~thing])), abs=0.01)


def test_the_typical_light_counts_a_large_sun_patch_eight_times_brighter() -> None:
    """The sun's cells, far brighter than the wide blur around them, were left out as a bright
    object: the typical light was the shade's alone and every estimate 19 % too bright (another
    reviewer's scene, a sun patch 8x over a fifth of the floor). Left out, here, 8 % too bright."""
    rows, cols = 300, 400
    x = np.mgrid[0:rows, 0:cols][1]
    light = (0.4 * (x / cols - 0.5)).astype(np.float32)
    sun = np.zeros((rows, cols), bool)  # a window's panes, each a few times the object blur's reach
    for left in (20, 196):
        for top in (20, 196):
            sun[top : top + 80, left : left + 80] = True
    light[sun] += np.float32(np.log(8.0))
    log_l = light + np.random.default_rng(2).normal(0, 0.05, light.shape).astype(np.float32)
    everywhere = np.ones((rows, cols), bool)
    typical = _reference(log_l, light, everywhere, np.ones((rows, cols), np.float32), ~everywhere)
    assert typical == pytest.approx(float(np.median(light)), abs=0.02)


def test_the_hard_steps_are_the_lights_edges_and_not_the_tiles_tones(
    tiled_floor: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """_hard_steps, which the bilateral filter leaves apart: on the tiles' log albedo under the
    sun patch, spread as the grid spreads it, it takes the patch's edges (its slope) and not the
    steps between the tiles' tones (the joints' crossings, which the grid's median keeps, it
    takes too: left out of the means, they are no loss); and the estimate hands the filter what it
    finds."""
    _, albedo, lit, sun = tiled_floor
    spread = cv2.GaussianBlur(np.log(lit), (0, 0), 2.0)
    tones = cv2.medianBlur(np.log(albedo), 5)  # the grid's median takes the joints out first
    steps = _hard_steps((spread + tones).astype(np.float32))
    square9 = np.ones((9, 9), np.uint8)
    edge = cv2.dilate(sun.astype(np.uint8), square9) > cv2.erode(sun.astype(np.uint8), square9)
    # A tone's step within the 9 x 9 window of the patch's edge passes the test's height too.
    beside = cv2.dilate(edge.astype(np.uint8), square9) > 0
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    crossings = (np.abs((x + 20) % 40 - 20) <= 8) & (np.abs((y + 20) % 40 - 20) <= 8)  # tiles of 40 px
    inner = (x >= 4) & (x < WIDTH - 4) & (y >= 4) & (y < HEIGHT - 4)  # the median keeps the border's joints
    assert steps[edge].mean() > 0.5
    assert not steps[inner & ~crossings & ~beside].any()
    assert steps[~edge].mean() < 0.06
    handed = []

    def spy(*args: object, **kwargs: object) -> np.ndarray:
        handed.append(kwargs.get("apart"))
        return np.asarray(bilateral_module.bilateral(*args, **kwargs))  # type: ignore[arg-type]

    monkeypatch.setattr(shading_module, "bilateral", spy)
    estimate_shading(tiled_floor[0], np.full((HEIGHT, WIDTH), 255, np.uint8), np.eye(3))
    assert any(isinstance(apart, np.ndarray) and apart.any() for apart in handed)


def barred_sun_patch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A grid's log light: a sun patch (1.2 above the shade) crossed by a window bar's shadow 5
    cells wide, spread by a cell's blur, with grain; the light alone, the grid, and the bottom of
    the bar's shadow (its middle column, away from the patch's ends)."""
    rows, cols = 120, 160
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    patch = (x > 40) & (x < 130) & (y > 20) & (y < 100)
    bar = (np.abs(x - 85) < 2.5) & patch
    light = cv2.GaussianBlur(np.where(patch & ~bar, np.float32(1.2), np.float32(0.0)), (0, 0), 1.0)
    grain = np.random.default_rng(1).normal(0, 0.03, light.shape).astype(np.float32)
    return light, (light + grain).astype(np.float32), (x == 85) & (y > 30) & (y < 90)


def test_a_narrow_shadow_keeps_its_depth_through_the_median() -> None:
    """The 5 x 5 median that takes out joints and grain lifts the bottom of a narrow shadow (it takes
    the value a cell or two up its sides); beside the light's edges the 3 x 3 one is used, which
    lifts it less (here 0.047 against 0.079). Away from the edges the grain goes as before."""
    light, log_l, bottom = barred_sun_patch()
    out = _without_joints(log_l, np.ones(log_l.shape, bool))
    wide = cv2.medianBlur(log_l, 5)
    assert float(np.mean((wide - light)[bottom])) > 0.07
    assert float(np.mean((out - light)[bottom])) < 0.055
    away = np.zeros(log_l.shape, bool)
    away[:, :30] = True
    assert np.array_equal(out[away], wide[away])


def test_a_surface_with_strong_thin_lines_keeps_the_wide_median_everywhere() -> None:
    """Mortar lines two cells wide, half a unit of log brighter: the 3 x 3 median would keep them
    beside the light's edges, where they would be taken for its structure, so the 5 x 5 is used
    everywhere."""
    _, log_l, _ = barred_sun_patch()
    rows = np.arange(log_l.shape[0])[:, None]
    mortar = (log_l + np.where(rows % 8 < 2, np.float32(0.5), np.float32(0.0))).astype(np.float32)
    out = _without_joints(mortar, np.ones(mortar.shape, bool))
    assert np.array_equal(out, cv2.medianBlur(mortar, 5))
    assert not np.array_equal(_without_joints(log_l, np.ones(log_l.shape, bool)), cv2.medianBlur(log_l, 5))


def test_a_plane_that_cannot_be_rectified_falls_back_to_the_blur() -> None:
    photo = np.full((HEIGHT, WIDTH, 3), 120, np.uint8)
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[100:104, 100:110] = 255  # a sliver: too little surface to rectify
    shading = estimate_shading(photo, mask, np.eye(3))
    assert shading.method == BLUR
    assert shading.region(100, 100, 10, 4).shape == (4, 10)


def test_a_mask_of_scattered_pixels_falls_back_to_the_blur() -> None:
    """A dithered mask (every other pixel) leaves no grid cell mostly surface: the texture-space
    estimate had nothing to filter and raised an IndexError, an internal error for a legal request."""
    photo = np.full((HEIGHT, WIDTH, 3), 120, np.uint8)
    dithered = np.zeros((HEIGHT, WIDTH), np.uint8)
    dithered[100:300:2, 100:300:2] = 255
    shading = estimate_shading(photo, dithered, np.eye(3))
    assert shading.method == BLUR
    assert np.isfinite(shading.region(100, 100, 200, 200)).all()


def test_linear_srgb_round_trip_is_what_the_photos_use() -> None:
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert np.abs(linear_to_srgb(srgb_to_linear(grey)).astype(int) - grey).max() <= 1


def test_a_models_shading_is_enlarged_over_the_mask_and_normalised_to_its_typical_light() -> None:
    """from_model: an intrinsic model's output (here 64 x 48 for a 320 x 240 photo, at an arbitrary
    scale) becomes the field over the mask's box, 1 at the surface's median, its light where the
    model put it."""
    small = np.full((48, 64), 7.0, np.float32)
    small[:, 40:] = 14.0  # twice the light on the right, from photo column 200 on
    mask = np.zeros((240, 320), np.uint8)
    mask[100:220, 20:300] = 255
    shading = from_model(small, mask)
    assert shading.method == INTRINSIC
    x, y, w, h = shading.box
    assert (x, y, x + w, y + h) == (16, 96, 304, 224)  # the mask's box and the composite's margin
    field = shading.region(0, 0, 320, 240)
    assert field[150, 60] == pytest.approx(1.0) and field[150, 280] == pytest.approx(2.0)
    assert field[150, 197] == pytest.approx(1.0) and field[150, 203] == pytest.approx(2.0)  # edge stays put
    assert field[10, 10] == 1.0  # outside the box: no estimate
    with pytest.raises(ValueError, match="not positive"):
        from_model(np.zeros((48, 64), np.float32), mask)


def test_a_models_spread_edges_are_sharpened_against_the_photo(
    tiled_floor: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """A model's shading at an eighth of the photo's size, enlarged, spreads the sun's edge over
    several pixels; given the photo, from_model takes the edge sharp from it, as the texture-space
    estimate does. At half the photo's size the enlargement spreads the edge less than the
    sharpening would gain, and the photo changes nothing."""
    photo, _, lit, _ = tiled_floor
    small = cv2.resize(lit, (WIDTH // 8, HEIGHT // 8), interpolation=cv2.INTER_AREA)
    mask = np.full((HEIGHT, WIDTH), 255, np.uint8)

    def rise(shading: Shading) -> float:
        """Pixels from 10 % to 90 % of the step across the patch's left edge (x = 150 + y / 2)."""
        field = shading.region(0, 0, WIDTH, HEIGHT)
        return edge_profiles.rise(field, range(120, 280, 7), lambda y: 150 + y // 2, 5)

    spread = from_model(small, mask)
    sharp = from_model(small, mask, photo)
    assert sharp.method == INTRINSIC
    assert rise(spread) >= 6
    assert rise(sharp) <= 3
    half = cv2.resize(lit, (WIDTH // 2, HEIGHT // 2), interpolation=cv2.INTER_AREA)
    assert np.array_equal(from_model(half, mask, photo).field, from_model(half, mask).field)


@pytest.mark.parametrize("box", [(7, 5, 301, 203), (0, 0, 300, 200)])
def test_a_halved_field_enlarges_any_region_as_it_enlarges_whole(box: tuple[int, int, int, int]) -> None:
    x0, y0, w, h = box
    field = np.random.default_rng(3).uniform(0.2, 2.0, ((h + 1) // 2, (w + 1) // 2)).astype(np.float32)
    shading = Shading(field, box, TEXTURE_SPACE, halved=True)
    whole = cv2.resize(field, (2 * field.shape[1], 2 * field.shape[0]), interpolation=cv2.INTER_LINEAR)[:h, :w]
    rng = np.random.default_rng(4)
    for _ in range(40):  # boxes inside, across the edges and at odd and even corners
        x, y = int(rng.integers(x0 - 20, x0 + w)), int(rng.integers(y0 - 20, y0 + h))
        width, height = int(rng.integers(1, 120)), int(rng.integers(1, 60))
        expected = np.ones((height, width), np.float32)
        ix0, iy0 = max(x, x0), max(y, y0)
        ix1, iy1 = min(x + width, x0 + w), min(y + height, y0 + h)
        if ix1 > ix0 and iy1 > iy0:
            expected[iy0 - y : iy1 - y, ix0 - x : ix1 - x] = whole[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
        # OpenCV's vector and scalar loops may round one float's last bit differently.
        np.testing.assert_allclose(shading.region(x, y, width, height), expected, rtol=3e-7, atol=0)
    np.testing.assert_allclose(shading.region(*box), whole, rtol=3e-7, atol=0)


def test_a_colour_fade_of_one_luminance_is_not_light() -> None:
    """A wall painted in a fade from blue to orange, both of the same (linear) luminance, under
    even light: the estimate is flat. The grey of the encoded colour, made linear, differed by
    11 % between the two ends (and weighed the channels by Rec. 601), which the estimate took for a
    light's gradient (a reviewer's scene: quad 33.3 dB, 37.5 with the luminance made linear)."""
    rows, cols = 300, 400
    t = np.linspace(0, 1, cols, dtype=np.float32)[None, :, None]
    blue, orange = np.array([0.60, 0.10, 0.03], np.float32), np.array([0.02, 0.30, 0.60], np.float32)
    luma = np.array([0.0722, 0.7152, 0.2126], np.float32)
    orange *= float(blue @ luma) / float(orange @ luma)
    linear = np.broadcast_to(blue * (1 - t) + orange * t, (rows, cols, 3)).astype(np.float32)
    photo = linear_to_srgb(np.clip(linear, 0, 1))
    for size in ((cols, rows), (4 * cols, 4 * rows)):  # whole, and halved (past 1.5 MP)
        big = cv2.resize(photo, size, interpolation=cv2.INTER_NEAREST)
        whole = np.full(big.shape[:2], 255, np.uint8)
        field = estimate_shading(big, whole, np.eye(3), TEXTURE_SPACE).region(0, 0, *size)
        width = size[0]
        ends = np.log(field[:, width // 20 : width // 7].mean() / field[:, -width // 7 : -width // 20].mean())
        assert abs(ends) < 0.02, size


def test_a_fine_grain_past_the_halving_is_not_read_as_shade() -> None:
    """A wall under even light, its right half a grain of one pixel (fabric, concrete at 4K) of
    the plain half's mean linear luminance: the estimate is flat whether the photo is halved or
    not. Halved from the encoded colours' mean, made linear after, the grain read 14 % darker (the
    sRGB curve is convex), and only past 1.5 MP (the diff's review)."""
    rng = np.random.default_rng(1)
    table = srgb_to_linear(np.arange(256, dtype=np.uint8)).astype(np.float64)
    for rows, cols in ((900, 1200), (1500, 2000)):  # 1.08 MP whole, 3 MP halved
        grain = rng.integers(40, 216, (rows, cols // 2), dtype=np.uint8)
        plain = int(np.argmin(np.abs(table - float(table[grain].mean()))))
        grey = np.concatenate([np.full((rows, cols // 2), plain, np.uint8), grain], axis=1)
        photo = np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
        whole = np.full((rows, cols), 255, np.uint8)
        field = estimate_shading(photo, whole, np.eye(3), TEXTURE_SPACE).region(0, 0, cols, rows)
        left, right = field[:, cols // 20 : cols // 3].mean(), field[:, 2 * cols // 3 : -cols // 20].mean()
        assert right / left == pytest.approx(1.0, abs=0.02), (cols, rows)


def test_a_large_cast_shadow_beside_a_sun_patch_is_not_taken_for_an_object() -> None:
    """A plain floor: 45 % in a sun patch 8 times the shade, 30 % in shade, 25 % in a wall's cast
    shadow 3.3 times darker. The typical light is the shade's. The pass that leaves out large
    objects took the cast shadow for one, and the median crossed onto the sun: every estimate 8
    times too dark (the diff's review)."""
    rows, cols = 300, 400
    x = np.mgrid[0:rows, 0:cols][1]
    light = np.zeros((rows, cols), np.float32)
    light[x >= 220] = np.log(8.0)
    light[x < 100] = -1.2
    log_l = light + np.random.default_rng(3).normal(0, 0.05, light.shape).astype(np.float32)
    everywhere = np.ones((rows, cols), bool)
    assert _reference(log_l, light, everywhere, np.ones((rows, cols), np.float32), ~everywhere) == pytest.approx(
        0.0, abs=0.02
    )


def lavender_wall_under_a_ramp(
    thing_colour: tuple[float, float, float] | None, sun_colour: tuple[float, float, float] | None = None
) -> float:
    """A lavender tiled wall head-on under a falloff across it (1.8 times over its width), with an
    object of a colour (linear BGR, in its own shade) standing before its right third and
    optionally a patch of sun of a colour, three times the light, over its lower left quarter: the
    estimate's median over the wall where no object stands, against the true light's there (1
    is right)."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    lit = np.exp(1.2 * (x / WIDTH - 0.5)).astype(np.float32)
    radiance = tiles(np.random.default_rng(5))[..., None] * np.array([0.95, 0.85, 1.0], np.float32)
    if sun_colour is not None:
        sun = (x < 220) & (y > 140)
        lit[sun] *= 3.0 * float(np.asarray(sun_colour, np.float32) @ LUMA_BGR)
        radiance[sun] *= np.asarray(sun_colour, np.float32) / float(np.asarray(sun_colour, np.float32) @ LUMA_BGR)
    radiance *= lit[..., None]
    thing = (x >= 280) & (y >= 80)  # a third of the wall
    if thing_colour is not None:
        radiance[thing] = 0.8 * np.asarray(thing_colour, np.float32)
    photo = linear_to_srgb(np.clip(radiance, 0, 1))
    whole = np.full((HEIGHT, WIDTH), 255, np.uint8)
    field = estimate_shading(photo, whole, np.eye(3), TEXTURE_SPACE).region(0, 0, WIDTH, HEIGHT)
    wall = ~thing
    return float(np.median(field[wall]) / np.median(lit[wall] / np.median(lit[wall])))


LUMA_BGR = np.array([0.0722, 0.7152, 0.2126], np.float32)


def test_the_typical_light_leaves_out_an_object_of_a_dyes_colour() -> None:
    """A green object before a third of a lavender wall, about as dark against it as the wall's
    shade: its luminance alone passes for the wall's, and the typical light took it in (the
    estimate 17 % too bright on the wall; judge40's W4, a green and a blue counter, 15 %). Its
    colour is no light's (lights differ along blue-red), so it is left out."""
    assert lavender_wall_under_a_ramp((0.05, 0.25, 0.06)) == pytest.approx(1.0, abs=0.02)
    assert lavender_wall_under_a_ramp((0.05, 0.25, 0.06), sun_colour=(0.6, 0.95, 1.2)) == pytest.approx(1.0, abs=0.02)


def test_a_warm_sun_patch_is_not_taken_for_an_object_of_another_colour() -> None:
    """A warm sun patch over a quarter of the wall: its colour is far from the shade's (log chroma
    0.5 in blue) but a light's, so it counts in the typical light as a grey sun's would. (Any
    colour 0.3 from the surface's left out, it was: the estimate 19 % brighter.)"""
    grey = lavender_wall_under_a_ramp(None, sun_colour=(1.0, 1.0, 1.0))
    assert lavender_wall_under_a_ramp(None, sun_colour=(0.6, 0.95, 1.2)) == pytest.approx(grey, rel=0.01)


def test_the_typical_light_leaves_out_an_object_of_a_colour_no_light_gives() -> None:
    """A pale grey object before a third of a lavender wall: its green against the wall's moved
    0.05, no dye's by light_colour.dyed, and its luminance passes for the wall's light, so the
    typical light took it in (the estimate 16 % too bright on the wall; a held-out room's pale sofa
    before a sage wall, 16 %). Its red and blue both stand off the wall's across the lights' locus
    (0.2), where no light moves a colour: it is left out."""
    assert lavender_wall_under_a_ramp((0.25, 0.25, 0.25)) == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("sun_colour", [(0.42, 0.70, 1.0), (1.2, 1.0, 0.85)])
def test_a_patch_of_a_warm_or_a_cool_light_counts_in_the_typical_light(sun_colour: tuple[float, float, float]) -> None:
    """A patch of a lamp's warm light (about 3000 K) or of a cool one, three times the light, over a
    quarter of the wall, its brightest pixels clipped: it counts in the typical light as a grey
    one does. (Its clipped cells, read as off the lights' locus, left it out: 3 % off.)"""
    grey = lavender_wall_under_a_ramp(None, sun_colour=(1.0, 1.0, 1.0))
    assert lavender_wall_under_a_ramp(None, sun_colour=sun_colour) == pytest.approx(grey, rel=0.01)


def lavender_wall_beside_a_coloured_glow(glow_colour: tuple[float, float, float], power: float) -> float:
    """The lavender tiled wall head-on under the falloff across it, and a light of a colour (linear
    BGR) over its left side, `power` times the grey light at its left edge, fading over a third of
    its width (light bounced off a coloured wall, a tinted lamp beside daylight): the estimate's
    median over the wall against the true light's (1 is right)."""
    _, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    grey = np.exp(1.2 * (x / WIDTH - 0.5)).astype(np.float32)
    glow = power * np.exp(-x / (0.3 * WIDTH)).astype(np.float32)
    colour = np.asarray(glow_colour, np.float32) / float(np.asarray(glow_colour, np.float32) @ LUMA_BGR)
    light = grey[..., None] + glow[..., None] * colour
    radiance = tiles(np.random.default_rng(5))[..., None] * np.array([0.95, 0.85, 1.0], np.float32) * light
    photo = linear_to_srgb(np.clip(radiance, 0, 1))
    whole = np.full((HEIGHT, WIDTH), 255, np.uint8)
    field = estimate_shading(photo, whole, np.eye(3), TEXTURE_SPACE).region(0, 0, WIDTH, HEIGHT)
    luminance = light @ LUMA_BGR
    return float(np.median(field) / np.median(luminance / np.median(luminance)))


@pytest.mark.parametrize(("glow_colour", "power"), [((0.35, 1.0, 0.3), 3.0), ((1.0, 0.4, 1.0), 1.5)])
def test_a_coloured_light_fading_across_the_surface_counts_in_the_typical_light(
    glow_colour: tuple[float, float, float], power: float
) -> None:
    """A green or a magenta light over the wall's left side, fading across it: its cells stand off
    the lights' locus as an object's would, but the cells around them are off it too (the light's
    colour fades; an object's steps at its outline), so they count in the typical light. (Left
    out as an object, the estimate was 4 % too bright under the green, 7 % too dark under the
    magenta; a scratch room's green-lit wall lost 6.7 dB.)"""
    assert lavender_wall_beside_a_coloured_glow(glow_colour, power) == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("shape", [(256, 3737), (255, 3737), (256, 3738), (7, 5), (1, 1), (2, 3), (3, 1)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_halving_an_odd_side_repeats_its_last_row_or_column(shape: tuple[int, int], dtype: type) -> None:
    """_halved averages an odd last column on its own: the same values, rounding included, as
    OpenCV's exact halving of the image with that column (and an odd last row) repeated."""
    image: np.ndarray = np.random.default_rng(6).integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)
    height, width = shape
    padded = cv2.copyMakeBorder(image, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)
    expected = cv2.resize(padded, (padded.shape[1] // 2, padded.shape[0] // 2), interpolation=cv2.INTER_AREA)
    assert np.array_equal(_halved(image), expected)


def test_the_lattice_is_read_off_lags_no_longer_than_half_the_surface() -> None:
    """The autocorrelation is padded only as far as the lags looked at (half the grid each way):
    a skewed lattice of blobs under a mask that cuts its corners is found to a fiftieth of a cell,
    as with the pattern's whole autocorrelation (the lags that wrap round lie beyond those)."""
    yy, xx = np.mgrid[0:180, 0:230].astype(np.float64)
    basis = np.array([[9.0, 3.0], [-2.0, 11.0]])  # columns: the lattice's vectors (x, y)
    alpha, beta = np.linalg.solve(basis, np.stack([xx.ravel(), yy.ravel()]))
    phase = np.hypot(alpha - np.round(alpha), beta - np.round(beta)).reshape(xx.shape)
    detail = (np.exp(-((phase / 0.2) ** 2)) - 0.3).astype(np.float32)
    weights = ((xx + yy > 30) & (xx - yy < 200)).astype(np.float32)
    found = _lattice(detail * weights, weights)
    assert found is not None
    vectors = sorted((found[:, k] * (1 if found[1, k] >= 0 else -1)).tolist() for k in range(2))
    expected = sorted((basis[:, k] * (1 if basis[1, k] >= 0 else -1)).tolist() for k in range(2))
    assert np.allclose(vectors, expected, atol=0.02)
