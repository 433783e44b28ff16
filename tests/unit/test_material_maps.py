"""Normal and roughness maps derived from a swatch."""

from __future__ import annotations

import cv2
import numpy as np

from devstack import scenes
from render.imaging.v1.imaging_pb2 import FORMAT_PNG
from renderkit import imaging
from renderkit.material_maps import height_field, material_map_images, normal_map, roughness_map


def decode_normals(encoded: np.ndarray) -> np.ndarray:
    """BGR-encoded normals back to (x, y, z) unit vectors."""
    bgr = encoded.astype(np.float32) / 255.0 * 2.0 - 1.0
    return bgr[..., ::-1]


def test_a_flat_swatch_has_straight_up_normals_and_even_roughness() -> None:
    flat = np.full((64, 64, 3), 140, np.uint8)
    normals = decode_normals(normal_map(flat))
    np.testing.assert_allclose(normals[..., 2], 1.0, atol=0.01)
    assert np.ptp(roughness_map(flat)) <= 1


def test_normals_lean_away_from_rising_height() -> None:
    # A 512 px swatch (REFERENCE_SIDE) brightening from 40 to 220 over its middle 64 columns.
    row = np.interp(np.arange(512), [224, 288], [40, 220]).astype(np.float32)
    ramp = np.tile(row[None, :, None], (64, 1, 3)).astype(np.uint8)
    ramp = np.tile(ramp, (8, 1, 1))
    normals = decode_normals(normal_map(ramp))[:, 232:280]  # inside the ramp
    assert (normals[..., 0] < -0.01).all()  # brighter (higher) to the right: every normal leans left
    assert normals[..., 0].mean() < -0.05
    assert np.abs(normals[..., 1]).max() < 0.02
    lengths = np.linalg.norm(normals, axis=2)
    np.testing.assert_allclose(lengths, 1.0, atol=0.02)


def test_maps_tile_without_seams() -> None:
    # The swatch's own edge is a grout joint's, so the maps' step there is a real one: instead, a map
    # of the swatch shifted round is the map shifted round (what a seam would break).
    tiles = scenes.tile_texture(128)
    for make in (normal_map, roughness_map):
        shifted = make(np.roll(tiles, (37, 53), (0, 1))).astype(int)
        assert np.abs(shifted - np.roll(make(tiles), (37, 53), (0, 1))).max() <= 1


def test_grout_lines_are_rougher_and_lower() -> None:
    tiles = scenes.tile_texture(128, tiles=2)
    rough = roughness_map(tiles).astype(int)
    assert rough[30:34, 1:5].mean() > rough[30:34, 30:34].mean()  # grout column vs tile face


def test_a_plain_swatchs_noise_stays_flat() -> None:
    rng = np.random.default_rng(0)
    plain = np.clip(np.full((256, 256, 3), 150.0) + rng.normal(0, 1, (256, 256, 3)), 0, 255).astype(np.uint8)
    tilt = np.degrees(np.arccos(np.clip(decode_normals(normal_map(plain))[..., 2], -1, 1)))
    assert tilt.mean() < 1.0  # a grey level of noise is no relief
    assert roughness_map(plain).mean() < 0.6 * 255  # nor texture


def test_the_relief_does_not_depend_on_the_swatchs_pixel_count() -> None:
    tiles = scenes.tile_texture(512, tiles=4)
    half = cv2.resize(tiles, (256, 256), interpolation=cv2.INTER_AREA)
    tilts = [np.degrees(np.arccos(np.clip(decode_normals(normal_map(s))[..., 2], -1, 1))).mean() for s in (tiles, half)]
    assert 0.7 < tilts[0] / tilts[1] < 1.4


def test_a_slivers_maps_do_not_wrap_its_short_side_into_a_large_one() -> None:
    """The blur's reach grows with the longer side: an 8 px by 20,000 px swatch was wrapped into
    ~320 rows before its blur (an 8 x 65,500 one took 30 s and 850 MB); along a side no longer than
    the blur is wide, the side's mean is what the blur gives."""
    import tracemalloc

    sliver = np.random.default_rng(3).integers(0, 255, (8, 20_000, 3), np.uint8)
    tracemalloc.start()
    try:
        height = height_field(sliver)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert height.shape == (8, 20_000) and np.isfinite(height).all()
    assert np.ptp(height, axis=0).max() < 1e-6  # the short side is its mean
    assert peak < 8 * 20_000 * 4 * 12  # a dozen of its own float copies; the wrap took ~40


def dark_tiles_cut_out() -> tuple[np.ndarray, np.ndarray]:
    """A 512 px swatch of dark slate tiles (sRGB 60) whose 12 px joints are transparent (a cut-out),
    filled with the default light grout as the projection decodes it, and its alpha."""
    alpha = np.full((512, 512), 255, np.uint8)
    for edge in (0, 256):  # joints centred on the tiles' edges, wrapping round the swatch's
        rows = np.arange(edge - 6, edge + 6) % 512
        alpha[rows, :] = 0
        alpha[:, rows] = 0
    rgba = np.dstack([np.full((512, 512, 3), 60, np.uint8), alpha])
    swatch, transparent, decoded_alpha = imaging.decode_swatch_layers(imaging.encode(rgba, FORMAT_PNG)[0])
    assert transparent > 0 and decoded_alpha is not None
    np.testing.assert_array_equal(decoded_alpha, alpha)
    return swatch, decoded_alpha


def test_a_cut_out_swatchs_joints_lie_lower_than_its_tiles_whatever_the_grout() -> None:
    swatch, alpha = dark_tiles_cut_out()  # light grout between dark tiles: a ridge by luminance alone
    height = height_field(swatch, alpha)
    assert height[256, 128] < height[128, 128] - 0.1  # the joint's middle below the tile's
    normals = decode_normals(normal_map(swatch, alpha=alpha))
    # Crossing the joint at row 256 down the swatch: above it the surface falls towards the image's
    # bottom (a normal facing down, y < 0 in the OpenGL convention), below it rises again.
    assert normals[244:249, 100:150, 1].mean() < -0.05
    assert normals[263:268, 100:150, 1].mean() > 0.05
    names = [image.name for image in material_map_images(swatch, alpha)]
    assert names == ["normal", "roughness"]


def cut_out(rgb: np.ndarray, feather: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 512 px swatch of 256 px tiles whose 12 px joints are transparent (anti-aliased over
    `feather` px), decoded over the default light grout, and its alpha."""
    distance = np.abs(((np.arange(512) + 128) % 256) - 128).astype(np.float32)  # to the nearest joint line
    edge = np.clip((distance - 6) / feather, 0, 1) if feather else (distance >= 6).astype(np.float32)
    alpha = np.round(np.minimum(edge[:, None], edge[None, :]) * 255).astype(np.uint8)
    swatch, _, decoded = imaging.decode_swatch_layers(imaging.encode(np.dstack([rgb, alpha]), FORMAT_PNG)[0])
    assert decoded is not None
    return swatch, decoded


def test_a_cut_out_chequers_joints_lie_below_its_dark_tiles_too() -> None:
    rgb = np.full((512, 512, 3), 235, np.uint8)
    rgb[:256, :256] = rgb[256:, 256:] = 20  # black tiles among white ones
    swatch, alpha = cut_out(rgb)
    height = height_field(swatch, alpha)
    assert height[128, 256] < height[128, 128] - 0.1  # the joint beside a black tile, below it
    assert height[128, 256] < height[128, 384] - 0.1  # and below the white one
    normals = decode_normals(normal_map(swatch, alpha=alpha))
    assert normals[100:150, 248:252, 0].mean() > 0.05  # the black tile's side falls into the joint (+x)


def test_a_cut_outs_anti_aliased_edges_do_not_stand_above_its_tiles() -> None:
    swatch, alpha = cut_out(np.full((512, 512, 3), 60, np.uint8), feather=6)
    height = height_field(swatch, alpha)
    across = height[128, 256:300]  # from the joint's middle into the tile
    assert across.max() <= height[128, 300] + 1e-3  # no lip along the edge
    assert np.all(np.diff(across) >= -1e-4)  # rising out of the joint all the way
