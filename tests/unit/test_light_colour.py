"""The colour of a sharp-edged bright light (services/projection/light_colour.py): read across the
edge of a sun patch, and nowhere else (an old surface's colour fade, an albedo edge, a rug)."""

from __future__ import annotations

import numpy as np

from renderkit.imaging import linear_to_srgb, srgb_to_linear
from services.projection.light_colour import LightColour, dyed, locus_offset, patch_colour

_LUMA = np.array([0.0722, 0.7152, 0.2126], np.float32)
_ROWS, _COLS = 480, 640
_SKY = np.array([1.0, 0.86, 0.72], np.float32)  # BGR
_SUN = np.array([0.62, 0.85, 1.0], np.float32)
_PATCH = np.s_[140:340, 200:460]


def _tinted_tiles(seed: int, tile: int = 24) -> np.ndarray:
    """An old floor's albedo (linear BGR): tiles with their own tints and tones, dark joints."""
    rng = np.random.default_rng(seed)
    tints = 0.15 * np.exp(rng.normal(0, 0.06, (_ROWS // tile + 1, _COLS // tile + 1, 3)))
    albedo = np.repeat(np.repeat(tints, tile, 0), tile, 1)[:_ROWS, :_COLS].astype(np.float32)
    albedo[::tile] *= 0.4
    albedo[:, ::tile] *= 0.4
    return albedo


def _photo(albedo: np.ndarray, light: np.ndarray) -> np.ndarray:
    return np.asarray(linear_to_srgb(np.clip(albedo * light, 0, 1)))


def _sun_patch(shade: np.ndarray, sun: np.ndarray, level: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """The light (linear BGR) of a sharp-edged sun patch beside shade, and its grey field (the
    light's luminance, 1 in the shade)."""
    light = np.broadcast_to(0.5 * shade, (_ROWS, _COLS, 3)).copy()
    light[_PATCH] += level * sun
    grey = light @ _LUMA
    return light, (grey / grey[0, 0]).astype(np.float32)


def _surface() -> np.ndarray:
    return np.full((_ROWS, _COLS), 255, np.uint8)


def test_a_warm_sun_patch_on_tinted_tiles_gives_its_colour_against_the_shade() -> None:
    light, field = _sun_patch(_SKY, _SUN)
    colour = patch_colour(_photo(_tinted_tiles(1), light), _surface(), field)
    assert colour is not None
    shade, patch = light[0, 0], light[_PATCH][0, 0]
    ratio = patch / shade
    assert np.allclose(colour.shade, 1, atol=1e-3)  # the shade covers most of the floor: white
    assert np.allclose(colour.patch, ratio / (ratio @ _LUMA), rtol=0.04)  # the sun's over the sky's
    lit = colour.lit(field)
    assert np.allclose(lit[_PATCH][0, 0] / field[_PATCH][0, 0], colour.patch, rtol=0.01)
    assert np.allclose(lit[0, 0] / field[0, 0], colour.shade, rtol=0.01)


def test_a_colour_fade_without_a_light_edge_gives_grey() -> None:
    along = np.linspace(0, 1, _COLS, dtype=np.float32)[None, :, None]
    blue, orange = np.array([1.0, 0.78, 0.55], np.float32), np.array([0.35, 0.62, 1.0], np.float32)
    albedo = 0.3 * ((1 - along) * blue + along * orange) * np.ones((_ROWS, 1, 1), np.float32)
    falloff = np.linspace(1.6, 0.6, _ROWS, dtype=np.float32)[:, None, None]  # a window's soft falloff
    light = np.broadcast_to(falloff, (_ROWS, _COLS, 3))
    field = np.ascontiguousarray(light[..., 0] / light[0, 0, 0])
    assert patch_colour(_photo(albedo, light), _surface(), field) is None


def test_a_white_sun_patch_on_a_colour_fade_gives_grey() -> None:
    along = np.linspace(0, 1, _COLS, dtype=np.float32)[None, :, None]
    albedo = _tinted_tiles(2) * np.exp(0.4 * (along - 0.5) * np.array([-1.0, 0.0, 1.0], np.float32))
    white = np.ones(3, np.float32)
    light, field = _sun_patch(white, white)
    assert patch_colour(_photo(albedo, light), _surface(), field) is None


def test_an_albedo_edge_whose_colour_changes_along_it_gives_grey() -> None:
    # A print brighter than the floor, its hue turning along its border, taken by the grey
    # estimate for a light's step: across the border the ratio is the print's, not one light's.
    albedo = _tinted_tiles(3)
    hue = np.linspace(0, 2 * np.pi, _COLS, dtype=np.float32)[None, :, None]
    print_tint = np.exp(0.3 * np.cos(hue + np.array([0.0, 2.1, 4.2], np.float32)))
    albedo[_PATCH] *= 2.5 * print_tint[:, 200:460]
    light = np.ones((_ROWS, _COLS, 3), np.float32)
    field = np.ones((_ROWS, _COLS), np.float32)
    field[_PATCH] = 2.5
    assert patch_colour(_photo(albedo, light), _surface(), field) is None


def test_a_rugs_border_taken_for_a_light_edge_gives_grey() -> None:
    albedo = _tinted_tiles(4)
    albedo[_PATCH] = np.array([0.05, 0.05, 0.4], np.float32)  # a red rug, darker than the floor
    light = np.ones((_ROWS, _COLS, 3), np.float32)
    field = np.ones((_ROWS, _COLS), np.float32)
    field[_PATCH] = 0.4
    assert patch_colour(_photo(albedo, light), _surface(), field) is None


def test_wide_stripes_of_two_dyes_taken_for_light_edges_give_grey() -> None:
    # A cream and slate-blue striped wall under white light: the grey field keeps the stripes'
    # step, and the dyes' ratio (~0.9 in log chroma, along blue-red) agrees all along every edge.
    albedo = np.empty((_ROWS, _COLS, 3), np.float32)
    stripe = (np.arange(_COLS) // 80) % 2 == 0
    albedo[:, stripe] = np.array([0.38, 0.58, 0.79], np.float32)  # cream (BGR)
    albedo[:, ~stripe] = np.array([0.30, 0.19, 0.13], np.float32)  # slate blue
    field = albedo @ _LUMA
    field = (field / field.max()).astype(np.float32)
    assert patch_colour(_photo(albedo * 0.9, np.ones_like(albedo)), _surface(), field) is None


def test_the_colour_follows_the_light_level_between_shade_and_patch() -> None:
    colour = LightColour(1.0, 4.0, np.ones(3, np.float32), np.array([0.7, 0.95, 1.25], np.float32))
    shade = np.array([[0.5, 1.0, 2.0, 4.0, 8.0]], np.float32)
    per_channel = colour.lit(shade) / shade[..., None]
    assert np.allclose(per_channel[0, :2], 1, atol=0.01)  # at or below the shade's level
    assert np.allclose(per_channel[0, 3:], colour.patch, rtol=0.01)  # at or above the patch's
    halfway = np.sqrt(colour.patch)  # half the log level: half the log colour
    assert np.allclose(per_channel[0, 2], halfway, rtol=0.02)


def test_the_response_says_when_a_patch_colour_was_carried() -> None:
    from services.projection import server
    from services.projection.shading import Shading

    field = np.ones((4, 4), np.float32)
    grey = Shading(field, (0, 0, 4, 4), "texture_space")
    colour = LightColour(1.0, 3.0, np.ones(3, np.float32), np.array([0.7, 0.95, 1.25], np.float32))
    coloured = Shading(field, (0, 0, 4, 4), "blur", colour=colour)
    assert server.light_of([grey]) == ("texture_space", False)
    assert server.light_of([coloured]) == ("blur", True)
    assert server.light_of([]) == ("", False)


def test_a_coloured_light_lights_a_single_pixel() -> None:
    """A one-pixel chunk of the grey shade (the last row of a strip one pixel wide): OpenCV took
    it for a scalar, and lit raised."""
    colour = LightColour(1.0, 4.0, np.ones(3, np.float32), np.array([0.7, 0.95, 1.25], np.float32))
    for level in (0.5, 2.0, 8.0):
        shade = np.full((1, 1), level, np.float32)
        wide = np.full((1, 3), level, np.float32)
        assert np.allclose(colour.lit(shade), colour.lit(wide)[:, :1])


def test_a_lamp_lit_floors_falloff_beside_a_cast_shadow_keeps_the_lamps_colour() -> None:
    # A warm lamp over most of the floor, falling off away from it (top to bottom, to a fifth),
    # and a box's hard shadow near the lamp lit by the blue sky alone. The lamp's light is white
    # (most of the floor); its falloff, darker than the lit side of the shadow's edge but far
    # brighter than the shadow, is no shadow and keeps it. It took the sky's blue below the
    # edge's middle level (a held-out room's lit floor, 26.9 dB; 35.5 so).
    rows = np.arange(_ROWS, dtype=np.float32)[:, None, None]
    light = np.broadcast_to(0.3 * _SKY + 3.0 * np.exp(-rows / 300) * _SUN, (_ROWS, _COLS, 3)).copy()
    shadow = np.s_[40:160, 380:560]
    light[shadow] = 0.3 * _SKY
    grey = light @ _LUMA
    field = (grey / np.median(grey)).astype(np.float32)
    colour = patch_colour(_photo(_tinted_tiles(4), 0.8 * light), _surface(), field)
    assert colour is not None
    assert np.allclose(colour.patch, 1, atol=1e-3)  # the lamp lights most of the floor: white
    lit = colour.lit(field) / field[..., None]
    assert np.allclose(lit[_ROWS - 1, 100], 1, atol=0.02)  # the falloff's far end: the lamp's colour
    sky = light[shadow][0, 0] / light[100, 370]  # the shadow: the sky's colour over the lit side's
    assert np.allclose(lit[shadow][0, 0], sky / (sky @ _LUMA), rtol=0.05)


def _log_chroma(srgb: tuple[int, int, int]) -> np.ndarray:
    """An sRGB colour's (R, G, B) log chroma, BGR: its linear channels over its luminance."""
    linear = srgb_to_linear(np.array([[srgb[::-1]]], np.uint8))[0, 0].astype(np.float64)
    return np.log(linear) - np.log(float(linear @ _LUMA.astype(np.float64)))


def test_lights_move_a_colour_along_the_locus_and_a_dye_across_it() -> None:
    """Blackbody lights from 2700 K to 10,000 K (sRGB's colours of them) on a sage wall keep it
    within 0.13 of one place across the lights' locus; a pale sofa before the wall, under the same
    light, stands over 0.15 off that place, though its colour against the wall's is no dye's by
    `dyed` (its green moved 0.05)."""
    lights = [(255, 169, 87), (255, 180, 107), (255, 209, 163), (255, 228, 206), (255, 249, 253), (201, 218, 255)]
    sage, sofa = np.log([0.40, 0.50, 0.42]), np.log([0.66, 0.72, 0.75])  # linear BGR albedos
    places = [float(locus_offset(_log_chroma(light) + sage)) for light in lights]
    assert max(places) - min(places) < 0.135
    for light in lights:
        wall, before = _log_chroma(light) + sage, _log_chroma(light) + sofa
        assert not dyed(before - np.log(np.exp(before) @ _LUMA) - (wall - np.log(np.exp(wall) @ _LUMA)))
        assert abs(float(locus_offset(before)) - float(locus_offset(wall))) > 0.15
