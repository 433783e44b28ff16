"""The bilateral grid the light estimate smooths with, and its local-linear fit at the border."""

from __future__ import annotations

import cv2
import numpy as np

from services.projection.bilateral import BORDER_REACH, _layers, _stacked, bilateral

RANGE = np.float32(0.28)


def test_the_bilateral_grid_keeps_a_ramp_and_a_step_sharp() -> None:
    """The slicing (two remaps of the grid's depth layers, linear between them): a slow ramp
    across many range cells comes back as itself away from the borders, and a step larger than the
    range comes back a step (a slice that dropped the depth interpolation, or read the wrong
    layer's cells, misses the ramp by 0.045-0.09)."""
    yy, xx = np.mgrid[0:300, 0:400].astype(np.float32)
    weights = np.ones_like(xx)
    ramp = 0.004 * xx - 0.003 * yy
    smoothed = bilateral(ramp, weights, 24.0, RANGE)
    assert np.abs(smoothed - ramp)[60:-60, 60:-60].max() < 0.02
    step = np.where(xx < 200, 0.0, 1.2).astype(np.float32)
    kept = bilateral(step, weights, 24.0, RANGE)
    assert kept[:, :199].max() < 0.05 and kept[:, 201:].min() > 1.15


def surface_with_a_border() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Light falling towards a wall (log, steeper near it) on a surface that ends 40 cells from
    the grid's left and top, a pattern's tones over it; the weights and the light alone."""
    yy, xx = np.mgrid[0:300, 0:400].astype(np.float32)
    light = (-0.6 * np.exp(-(xx - 40) / 60) - 0.002 * yy).astype(np.float32)
    tones = np.random.default_rng(2).normal(0, 0.05, (300 // 20 + 1, 400 // 20 + 1)).astype(np.float32)
    values = light + tones[yy.astype(int) // 20, xx.astype(int) // 20]
    weights = ((xx >= 40) & (yy >= 40)).astype(np.float32)
    return np.where(weights > 0, values, np.float32(0)), weights, light


def test_at_the_border_the_fit_follows_the_light_where_the_mean_stops_short() -> None:
    values, weights, light = surface_with_a_border()
    mean = bilateral(values, weights, 24.0, RANGE)
    fitted = bilateral(values, weights, 24.0, RANGE, border=True)
    for edge in (np.s_[60:-20, 40:46], np.s_[60:-20, 46:60]):  # along the surface's left border
        assert np.abs(fitted - light)[edge].mean() < 0.4 * np.abs(mean - light)[edge].mean()
    assert np.abs(mean - light)[60:-20, 40:46].mean() > 0.1  # a third of the way to the wall's dark
    # Beyond BORDER_REACH reaches from the border the filter is the mean, to the bit.
    inner = int(40 + BORDER_REACH * 24) + 1
    np.testing.assert_array_equal(fitted[inner:, inner:], mean[inner:, inner:])


def test_without_a_border_the_fit_changes_nothing() -> None:
    values, _, _ = surface_with_a_border()
    everywhere = np.ones_like(values)
    np.testing.assert_array_equal(
        bilateral(values, everywhere, 24.0, RANGE, border=True), bilateral(values, everywhere, 24.0, RANGE)
    )


def test_the_fit_does_not_carry_a_slope_across_a_step_at_the_border() -> None:
    """A dark object at the border beside an even light: the fit on the light's side stays at
    its level (a plane fitted through the step would lean into it)."""
    xx = np.mgrid[0:300, 0:400][1].astype(np.float32)
    values = np.where(xx < 120, np.float32(-2.0), np.float32(0.0))
    values = (values + np.random.default_rng(3).normal(0, 0.03, values.shape)).astype(np.float32)
    weights = (xx >= 40).astype(np.float32)
    fitted = bilateral(values, weights, 24.0, RANGE, border=True)
    assert np.abs(fitted[:, 125:200]).max() < 0.05
    assert np.abs(fitted[:, 45:115] + 2.0).max() < 0.05


def test_a_soft_steps_slope_left_apart_no_longer_drags_the_levels_either_side() -> None:
    """A sun patch of four panes (1.25 in log above the shade, penumbrae 10 cells wide) on tiles'
    tones: the slopes are within range of both levels, so the mean draws the patch's inside down.
    Left apart, they no longer count in other cells' means, and on them the filter is as before."""
    yy, xx = np.mgrid[0:300, 0:400].astype(np.float32)

    def soft(lo: float, hi: float, at: np.ndarray) -> np.ndarray:
        return np.clip((at - lo) / 10 + 0.5, 0, 1) * np.clip((hi - at) / 10 + 0.5, 0, 1)

    sun = np.zeros_like(xx)
    for x0, x1 in ((80, 180), (196, 296)):
        for y0, y1 in ((60, 140), (156, 236)):
            sun = np.maximum(sun, soft(x0, x1, xx) * soft(y0, y1, yy))
    light = (1.25 * sun).astype(np.float32)
    tones = np.random.default_rng(2).normal(0, 0.06, (16, 21)).astype(np.float32)
    values = light + tones[yy.astype(int) // 20, xx.astype(int) // 20]
    weights = np.ones_like(values)
    slope = (sun > 0) & (sun < 1)
    mean = bilateral(values, weights, 24.0, RANGE)
    kept = bilateral(values, weights, 24.0, RANGE, apart=slope)
    inside = cv2.erode((sun == 1).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    assert (mean - light)[inside].mean() < -0.012
    assert abs((kept - light)[inside].mean()) < 0.005
    near = cv2.dilate(slope.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    np.testing.assert_allclose(kept[near], mean[near], rtol=0, atol=1e-6)  # summed in two parts


def test_slivers_and_sparse_weights_give_finite_values() -> None:
    """Grids a few cells wide, weights on a handful of cells, steps apart everywhere or nowhere:
    the fit and the steps never divide nothing into a value (no NaN, nothing beyond the values)."""
    rng = np.random.default_rng(0)
    for shape in ((8, 8), (9, 31), (64, 3), (300, 2)):
        for share in (0.001, 0.02, 0.3, 1.0):
            values = rng.normal(0, 1, shape).astype(np.float32)
            weights = (rng.random(shape) < share).astype(np.float32)
            weights.flat[0] = 1
            for apart in (None, rng.random(shape) < 0.5, np.ones(shape, bool)):
                out = bilateral(values, weights, 6.0, RANGE, border=True, apart=apart)
                assert np.isfinite(out).all()
                assert np.abs(out).max() <= np.abs(values).max() + 1.0


def test_the_grids_layers_and_stacks_are_numpys_own() -> None:
    """The depth layers laid side by side (a transpose moving each cell's channels as one item) and
    the planes stacked as channels (cv2.merge) are, float for float, the numpy expressions they
    replace, for every channel count the filter uses."""
    rng = np.random.default_rng(5)
    for channels in (1, 2, 4, 7):
        grid = rng.normal(size=(9, 11, 6, channels)).astype(np.float32)
        expected = np.ascontiguousarray(grid.transpose(0, 2, 1, 3)).reshape(9, 6 * 11, channels)
        assert np.array_equal(_layers(grid), expected)
        planes = [rng.normal(size=(9, 11, 6)).astype(np.float32) for _ in range(channels)]
        assert np.array_equal(_stacked(planes), np.stack(planes, -1))
