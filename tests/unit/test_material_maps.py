"""Normal and roughness maps derived from a swatch."""

from __future__ import annotations

import numpy as np

from devstack import scenes
from renderkit.material_maps import normal_map, roughness_map


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
    ramp = np.tile(np.linspace(40, 220, 64, dtype=np.float32)[None, :, None], (64, 1, 3)).astype(np.uint8)
    normals = decode_normals(normal_map(ramp))[:, 8:-8]  # away from the wrap-around seam
    assert (normals[..., 0] < -0.01).all()  # brighter (higher) to the right: every normal leans left
    assert normals[..., 0].mean() < -0.05
    assert np.abs(normals[..., 1]).max() < 0.02
    lengths = np.linalg.norm(normals, axis=2)
    np.testing.assert_allclose(lengths, 1.0, atol=0.02)


def test_maps_tile_without_seams() -> None:
    tiles = scenes.tile_texture(128)
    for image in (normal_map(tiles), roughness_map(tiles)):
        doubled = np.hstack([image, image]).astype(int)
        seam = np.abs(doubled[:, 127] - doubled[:, 128]).mean()
        inside = np.abs(doubled[:, 60] - doubled[:, 61]).mean()
        assert seam <= inside + 12  # crossing the tile edge looks like any neighbouring pair


def test_grout_lines_are_rougher_and_lower() -> None:
    tiles = scenes.tile_texture(128, tiles=2)
    rough = roughness_map(tiles).astype(int)
    assert rough[30:34, 1:5].mean() > rough[30:34, 30:34].mean()  # grout column vs tile face
