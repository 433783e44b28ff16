"""The light's hard edges, spread by the rectified grid, are taken sharp from the photo, and only
where the old surface beside them is smooth enough to tell the light's step from its own.

Each test gives light_edges.sharpen what the texture-space estimate gives it: a shading field whose
sun-patch edge is spread over several pixels (as cells several pixels wide leave it near the
camera), the photo of the surface under the true, sharp light, and the mask.
"""

from __future__ import annotations

from functools import partial

import cv2
import numpy as np
import pytest

from renderkit.imaging import linear_to_srgb
from services.projection import light_edges
from services.projection import shading as shading_module
from services.projection.shading import TEXTURE_SPACE, _halved, _luminance_of, estimate_shading
from tests import edge_profiles

WIDTH, HEIGHT = 400, 300


def sun_light() -> np.ndarray:
    """A falloff times a sun patch 2.5 times brighter, its left edge the line x = 140 + y / 3."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    falloff = 0.6 + 0.4 * np.exp(-(((x - 80) / 300) ** 2 + ((y - 100) / 260) ** 2))
    sun = (x > 140 + y / 3) & (x < 330) & (y > 40) & (y < 260)
    return (falloff * np.where(sun, np.float32(2.5), np.float32(1.0))).astype(np.float32)


def worn_tiles(rng: np.random.Generator, size: int = 36) -> np.ndarray:
    """Linear albedo: tiles each its own tone (7 % either way), 2 px dark joints."""
    tone = rng.uniform(0.93, 1.07, (HEIGHT // size + 1, WIDTH // size + 1)).astype(np.float32)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    albedo = 0.4 * tone[y // size, x // size]
    return np.where((y % size < 2) | (x % size < 2), np.float32(0.1), albedo).astype(np.float32)


def diamonds(period: int = 30) -> np.ndarray:
    """Linear albedo: a carpet's two-tone motif, light diamonds on a dark field."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    s, t = (x + y) / period, (x - y) / period
    inner = np.minimum(np.abs(s - np.round(s)), np.abs(t - np.round(t))) > 0.2
    return np.where(inner, np.float32(0.5), np.float32(0.1)).astype(np.float32)


def photo_of(albedo: np.ndarray, light: np.ndarray) -> np.ndarray:
    radiance = np.clip(albedo * light * np.float32(0.8), 0, 1)
    return cv2.cvtColor(linear_to_srgb(radiance), cv2.COLOR_GRAY2BGR)


def spread(light: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """The light as the grid returns it near the camera: its log blurred over a few pixels."""
    return np.exp(cv2.GaussianBlur(np.log(light), (0, 0), sigma)).astype(np.float32)


def sharpened(field: np.ndarray, photo: np.ndarray) -> np.ndarray:
    out = field.copy()
    light_edges.sharpen(out, partial(_luminance_of, photo, 1), np.full(field.shape, 255, np.uint8))
    return out


def rise(field: np.ndarray, rows: range = range(70, 240, 5)) -> float:
    """Pixels from 10 % to 90 % of the step across the patch's left edge, the median over rows."""
    return edge_profiles.rise(field, rows, lambda y: 140 + y // 3, 4)


def near_edges(light: np.ndarray) -> np.ndarray:
    step = cv2.morphologyEx(np.log(light), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    band = cv2.dilate((step > 0.3).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    band[:8], band[-8:], band[:, :8], band[:, -8:] = False, False, False, False
    return band


def rms_log_error(field: np.ndarray, light: np.ndarray, region: np.ndarray) -> float:
    error = np.log(field / light)[region]
    return float(np.sqrt(np.mean((error - np.median(error)) ** 2)))


def test_a_spread_sun_edge_on_worn_tiles_comes_back_sharp() -> None:
    light = sun_light()
    photo = photo_of(worn_tiles(np.random.default_rng(5)), light)
    field = spread(light)
    out = sharpened(field, photo)
    assert rise(field) >= 6
    assert rise(out) <= 3
    band = near_edges(light)
    # Along the edges the estimate now errs a fraction of what it did; the tiles' tones (7 %) and
    # the photo's 8 bits are what is left.
    assert rms_log_error(out, light, band) < 0.4 * rms_log_error(field, light, band)
    # Beyond the spread edges' reach nothing changed.
    far = ~cv2.dilate(band.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    assert np.array_equal(out[far], field[far])


def test_a_stain_at_the_edge_does_not_take_the_light_far_beyond_its_levels() -> None:
    """Dark spots wider than the closing (stains, 9 px; a quarter of the albedo) on the sunlit side,
    right at the edge: the light there stays between the shadow's level and the sun's, give or take
    LEVEL_MARGIN."""
    light = sun_light()
    albedo = worn_tiles(np.random.default_rng(9))
    for y in range(60, 240, 30):
        edge = 140 + y // 3
        albedo[y : y + 9, edge + 1 : edge + 10] *= np.float32(0.25)
    photo = photo_of(albedo, light)
    field = spread(light)
    out = sharpened(field, photo)
    window = np.ones((2 * light_edges.REACH + 1,) * 2, np.uint8)
    margin = light_edges.LEVEL_MARGIN + 1e-5
    assert np.all(np.log(out) >= cv2.erode(np.log(field), window) - margin)
    assert np.all(np.log(out) <= cv2.dilate(np.log(field), window) + margin)


def test_a_narrow_shadow_spread_shallow_comes_back_at_its_depth() -> None:
    """A window bar's shadow inside the sun patch, 8 px wide: spread like the patch's edges, it is a
    quarter too shallow; the photo has its depth, and the light taken from it may go below the
    spread field's levels (by up to LEVEL_MARGIN) to reach it."""
    light = sun_light()
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    bar = (x > 230 + y / 3) & (x < 238 + y / 3) & (y > 70) & (y < 240)
    light = np.where(bar, light / np.float32(2.5), light).astype(np.float32)
    photo = photo_of(worn_tiles(np.random.default_rng(5)), light)
    field = spread(light)
    out = sharpened(field, photo)
    core = cv2.erode(bar.view(np.uint8), np.ones((1, 3), np.uint8)).astype(bool)
    assert float(np.median(np.log(field[core] / light[core]))) > 0.2
    assert abs(float(np.median(np.log(out[core] / light[core])))) < 0.05


def test_the_shadows_of_a_windows_bars_side_by_side_come_back_at_their_depth() -> None:
    """Four bars' shadows 8 px wide every 16 px: their bands fill the albedo's usual window, so the
    albedo is averaged over a wider one, and the shadows come back at their depth (held to the
    spread field where the usual window was empty, they stayed a tenth too shallow)."""
    light = sun_light()
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    bars = np.zeros(light.shape, bool)
    for start in (200, 216, 232, 248):
        bars |= (x > start + y / 3) & (x < start + 8 + y / 3) & (y > 70) & (y < 240)
    light = np.where(bars, light / np.float32(2.5), light).astype(np.float32)
    photo = photo_of(worn_tiles(np.random.default_rng(5)), light)
    field = spread(light, 2.0)
    out = sharpened(field, photo)
    core = cv2.erode(bars.view(np.uint8), np.ones((1, 3), np.uint8)).astype(bool)
    assert float(np.median(np.log(field[core] / light[core]))) > 0.1
    assert abs(float(np.median(np.log(out[core] / light[core])))) < 0.03


def test_a_strong_motif_beside_the_edge_is_not_taken_for_light() -> None:
    """A carpet's motif steps by 1.6 in log, more than the sun: the photo's edges in the band are
    the motif's as much as the light's, so the spread edge is left as it was."""
    light = sun_light()
    photo = photo_of(diamonds(), light)
    field = spread(light)
    out = sharpened(field, photo)
    assert np.array_equal(out, field)


def test_a_field_without_hard_edges_is_not_touched() -> None:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    smooth = (0.6 + 0.5 * np.exp(-(((x - 200) / 90) ** 2 + ((y - 150) / 90) ** 2))).astype(np.float32)
    photo = photo_of(worn_tiles(np.random.default_rng(6)), smooth)
    out = sharpened(smooth, photo)
    assert np.array_equal(out, smooth)


def test_only_the_surface_is_sharpened() -> None:
    """Off the mask (an object standing on the surface, the photo beyond it) neither the photo nor
    the field's edges count."""
    light = sun_light()
    photo = photo_of(worn_tiles(np.random.default_rng(7)), light)
    field = spread(light)
    mask = np.full(field.shape, 255, np.uint8)
    mask[:, 200:] = 0  # the edge's lower part (x = 140 + y / 3 passes x = 200 at y = 180) is off it
    out = field.copy()
    light_edges.sharpen(out, partial(_luminance_of, photo, 1), mask)
    assert np.array_equal(out[:, 200:], field[:, 200:])
    assert rise(field, range(60, 130, 5)) >= 6
    assert rise(out, range(60, 130, 5)) <= 3


def test_the_photos_luminance_is_read_where_the_field_lies() -> None:
    """What light_edges reads of the photo, for any rows and columns of the field, is the photo's
    log luminance at the field's own resolution: at the photo's pixels, or a halved field's 2 x 2
    blocks (an odd side's last block from its one row or column), as the estimate samples it."""
    y, x = np.mgrid[0:301, 0:403].astype(np.float32)
    # Rising along both axes: a closing and an opening leave it as it is (inside), and a part read
    # a pixel off would differ by a level of its 8 bits somewhere.
    ramp = 0.01 * np.exp(x / 120.0 + y / 200.0)
    photo = cv2.cvtColor(linear_to_srgb(np.minimum(ramp, 1).astype(np.float32)), cv2.COLOR_GRAY2BGR)
    weight = np.full(ramp.shape, 255, np.uint8)
    for factor in (1, 2):
        sampled = shading_module._luminance_and_weight(photo, _halved(weight) if factor == 2 else weight, factor)
        whole = np.log(sampled[..., 0])
        rows, cols = whole.shape
        parts = (
            (slice(0, rows), slice(0, cols)),
            (slice(37, 101), slice(cols - 60, cols)),
            (slice(rows - 9, rows), slice(5, 17)),
        )
        for r, c in parts:
            part = _luminance_of(photo, factor, r, c)
            assert part.shape == whole[r, c].shape
            # (At a part's own borders the closing and opening see only one side of the ramp.)
            inside = np.s_[3:-3, 3:-3]
            np.testing.assert_allclose(part[inside], whole[r, c][inside], atol=1e-5)


def test_the_estimate_sharpens_its_own_field_at_full_and_half_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The texture-space estimate hands light_edges its own field, the mask at that size and the
    photo read at that size: for a photo region read whole and for one read halved (over 1.5 MP)."""
    seen: list[tuple[tuple[int, ...], ...]] = []
    original = light_edges.sharpen

    def spy(field: np.ndarray, luminance: light_edges.Luminance, mask: np.ndarray) -> None:
        seen.append((field.shape, mask.shape, luminance(slice(0, field.shape[0]), slice(0, field.shape[1])).shape))
        original(field, luminance, mask)

    monkeypatch.setattr(light_edges, "sharpen", spy)
    for width, height, halved in ((400, 300, False), (1601, 1001, True)):
        x = np.arange(width, dtype=np.float32)[None, :] * np.ones((height, 1), np.float32)
        light = (0.6 + 0.4 * np.exp(-(((x - width / 3) / width) ** 2))) * np.where(x > width / 2, 2.5, 1.0)
        photo = photo_of(np.full((height, width), 0.4, np.float32), light.astype(np.float32))
        mask = np.full((height, width), 255, np.uint8)
        shading = estimate_shading(photo, mask, np.eye(3))
        assert shading.method == TEXTURE_SPACE and shading.halved == halved
        field_shape, mask_shape, read_shape = seen.pop()
        assert field_shape == shading.field.shape == mask_shape == read_shape
