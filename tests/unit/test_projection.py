"""The projection against independently rendered ground truth (supersampled, exact homography)."""

import cv2
import numpy as np
import pytest

from renderkit import scenes
from services.projection.composite import project_material
from services.projection.texture import build_mip_atlas, sample_surface, texel_transform
from services.segmentation.masks import polygon_mask

REPEATS = (8.0, 10.0)


@pytest.fixture(scope="module")
def scene() -> scenes.Scene:
    return scenes.room_scene(768, 512)


@pytest.fixture(scope="module")
def swatch() -> np.ndarray:
    return scenes.plank_texture(256)


def in_surface(scene: scenes.Scene) -> np.ndarray:
    return cv2.erode(scene.floor_mask, np.ones((7, 7), np.uint8)) > 127


def test_swap_matches_ground_truth_inside_the_surface(scene: scenes.Scene, swatch: np.ndarray) -> None:
    mask = polygon_mask(scene.quad, 768, 512)
    out = project_material(scene.photo, swatch, mask, scene.homography, *REPEATS)
    truth = scenes.ground_truth_swap(scene, swatch, REPEATS)
    assert scenes.psnr(out, truth, in_surface(scene)) > 28.0
    outside = scene.floor_mask == 0
    outside &= cv2.dilate(scene.floor_mask, np.ones((9, 9), np.uint8)) == 0
    np.testing.assert_array_equal(out[outside], scene.photo[outside])


@pytest.mark.parametrize("mistake", ["transposed", "repeats", "shifted"])
def test_a_wrong_projection_fails_the_same_threshold(scene: scenes.Scene, swatch: np.ndarray, mistake: str) -> None:
    H = scene.homography.copy()
    repeats = REPEATS
    if mistake == "transposed":
        H[:, [0, 1]] = H[:, [1, 0]]
    elif mistake == "repeats":
        repeats = (REPEATS[0] * 1.3, REPEATS[1])
    else:
        H = np.array([[1, 0, 6], [0, 1, 0], [0, 0, 1]]) @ H
    out = project_material(scene.photo, swatch, polygon_mask(scene.quad, 768, 512), H, *repeats)
    truth = scenes.ground_truth_swap(scene, swatch, REPEATS)
    assert scenes.psnr(out, truth, in_surface(scene)) < 28.0


def test_shading_keeps_the_shadow(scene: scenes.Scene) -> None:
    flat = np.full((64, 64, 3), 160, np.uint8)
    out = project_material(scene.photo, flat, polygon_mask(scene.quad, 768, 512), scene.homography, 4, 4)
    shadow = out[int(0.78 * 512), int(0.62 * 768)].mean()
    lit = out[int(0.78 * 512), int(0.2 * 768)].mean()
    assert shadow < 0.8 * lit


def test_far_away_texture_is_filtered_not_aliased() -> None:
    """A fine checker seen at a grazing angle averages to grey instead of moire."""
    checker = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)
    swatch = cv2.merge([checker] * 3)
    atlas = build_mip_atlas(swatch)
    quad = np.array([[300, 100], [340, 100], [630, 470], [10, 470]], float)
    from renderkit.homography import quad_homography

    T = texel_transform(quad_homography(quad), 40, 400, 0.0, 64, 64)
    colour, valid = sample_surface(atlas, T, 0, 100, 640, 40)
    far = colour[valid][:, 0]
    assert abs(float(far.mean()) - 0.5) < 0.08  # half the texels are white (1.0 linear), half black
    assert float(far.std()) < 0.12
