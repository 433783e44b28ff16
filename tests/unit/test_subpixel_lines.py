"""Segments re-fitted to the photo's edges (services.depth.subpixel), and what that does to a plane."""

import math

import cv2
import numpy as np
import pytest

from benchmarks.quality import modes as quality_modes
from services.depth.subpixel import refine_segments
from services.depth.vanishing import plane_from_lines
from tests.quality_scenes import quality_scene

SIZE = 240


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    srgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * np.power(linear, 1 / 2.4) - 0.055)
    return np.clip(srgb * 255 + 0.5, 0, 255).astype(np.uint8)


def edge_photo(offset: float, angle_deg: float, blur: float, thin: float = 0.0, seed: int = 0) -> np.ndarray:
    """A dark-to-light step across the line through the photo's centre at angle_deg from the x axis,
    shifted `offset` pixels along its normal, rendered in linear light (8 x 8 supersampled), blurred
    by a Gaussian of `blur` pixels as a lens would, then sRGB with a little noise. With `thin`, a
    light band that wide instead of a step (a mortar joint: two edges of opposite polarity)."""
    factor = 8
    n = SIZE * factor
    coords = (np.arange(n) + 0.5) / factor - 0.5
    xs, ys = np.meshgrid(coords, coords)
    a = math.radians(angle_deg)
    across = -(xs - SIZE / 2) * math.sin(a) + (ys - SIZE / 2) * math.cos(a) - offset
    light = (across > 0) if not thin else (across > 0) & (across < thin)
    fine = np.where(light, 0.6, 0.05).astype(np.float32)
    linear = cv2.resize(fine, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    if blur:
        linear = cv2.GaussianBlur(linear, (0, 0), blur)
    grey = linear_to_srgb(linear).astype(np.float32)
    grey += np.random.default_rng(seed).normal(0, 1.5, grey.shape)
    return cv2.cvtColor(np.clip(grey, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def segment_on(offset: float, angle_deg: float, half_length: float = 80.0) -> np.ndarray:
    """A segment along the line of edge_photo(offset, angle_deg), in pixel coordinates."""
    a = math.radians(angle_deg)
    along, normal = np.array([math.cos(a), math.sin(a)]), np.array([-math.sin(a), math.cos(a)])
    middle = np.array([SIZE / 2, SIZE / 2]) + offset * normal
    return np.concatenate([middle - half_length * along, middle + half_length * along])


def distance_to_line(segment: np.ndarray, offset: float, angle_deg: float) -> float:
    """The largest distance of the segment's ends from the edge's true line."""
    a = math.radians(angle_deg)
    normal = np.array([-math.sin(a), math.cos(a)])
    centre = np.array([SIZE / 2, SIZE / 2])
    return max(abs(float((segment[k : k + 2] - centre) @ normal) - offset) for k in (0, 2))


@pytest.mark.parametrize(("angle", "blur"), [(3.0, 0.8), (37.0, 1.2), (88.0, 0.6)])
def test_a_segment_off_its_edge_is_moved_onto_it(angle: float, blur: float) -> None:
    """A detected segment 0.8 px off the edge and turned 0.4° lands within 0.06 px of it."""
    truth = 0.3
    photo = edge_photo(truth, angle, blur)
    detected = segment_on(truth + 0.8, angle + 0.4)
    assert distance_to_line(detected, truth, angle) > 1.0
    refined = refine_segments(photo, detected[None, :])[0]
    assert distance_to_line(refined, truth, angle) < 0.06


def test_an_edge_is_placed_in_linear_light_not_in_srgb() -> None:
    """A soft edge (a lens's blur of 2.5 px) is symmetric in light but not in sRGB, whose steepest
    place lies towards the dark side: the refined segment stays on the light's middle."""
    photo = edge_photo(0.0, 10.0, 2.5)
    refined = refine_segments(photo, segment_on(0.0, 10.0)[None, :])[0]
    assert distance_to_line(refined, 0.0, 10.0) < 0.1
    grey = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY).astype(np.float32)
    column = np.gradient(grey[:, SIZE // 2 + 30])  # steepest place in sRGB, near the edge
    assert abs(np.argmax(column) - (SIZE / 2 + 30 * math.tan(math.radians(10)))) >= 0.5


def test_a_thin_joints_segment_keeps_to_its_own_side() -> None:
    """A light joint 2 px wide has two edges of opposite polarity 2 px apart: a segment on either
    stays on its own side (the polarity it was detected with). Blurred together, the two slopes
    push each other's steepest place outwards by a few tenths of a pixel, the joint's middle
    stays."""
    photo = edge_photo(0.0, 5.0, 0.7, thin=2.0)
    lower = refine_segments(photo, segment_on(0.6, 5.0)[None, :])[0]
    upper = refine_segments(photo, segment_on(1.4, 5.0)[None, :])[0]
    assert distance_to_line(lower, 0.0, 5.0) < 0.5
    assert distance_to_line(upper, 2.0, 5.0) < 0.5
    middle = (lower + upper) / 2
    assert distance_to_line(middle, 1.0, 5.0) < 0.1


def test_a_segment_without_an_edge_under_it_is_left_as_detected() -> None:
    """Flat, noisy grey: no edge to move to, so the segment stays where it was."""
    photo = np.clip(np.random.default_rng(1).normal(120, 2, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    detected = segment_on(0.0, 20.0)
    refined = refine_segments(photo, detected[None, :])[0]
    assert np.abs(refined - detected).max() <= 2.5  # never beyond the profile's reach
    empty = refine_segments(photo, np.zeros((0, 4)))
    assert empty.shape == (0, 4)


def test_the_stone_claddings_plane_comes_from_its_joints_placed_on_the_photo(monkeypatch: pytest.MonkeyPatch) -> None:
    """make quality's stone cladding, seen looking up 14° with its courses nearly parallel: the
    detector's segments put the far vanishing point, and so the plane, 1.6° off with the camera
    known; placed on the photo's edges in linear light, within 0.2°."""
    scene = quality_scene("facade, stone cladding", monkeypatch)
    found = plane_from_lines(scene.photo, quality_modes.user_mask(scene), default_focal=1.0, given_focal=scene.focal)
    cosine = abs(float(found.normal @ scene.normal)) / float(
        np.linalg.norm(found.normal) * np.linalg.norm(scene.normal)
    )
    assert math.degrees(math.acos(min(1.0, cosine))) < 0.2


def test_a_panoramas_segments_are_refined_in_parts_cv2_can_read() -> None:
    """A photo 34,000 px wide (the gateway takes sides up to 65,500 px): segments at either end are
    refined in parts under cv2.remap's 32,767 px, and one segment longer than that stays as it was."""
    width, height = 34_000, 120
    row = np.full((height, width), 40, np.uint8)
    row[61:, :] = 200  # an edge between rows 60 and 61: at y = 60.5
    photo = cv2.cvtColor(row, cv2.COLOR_GRAY2BGR)
    segments = np.array([[100.0, 61.3, 400.0, 61.3], [33_500.0, 59.8, 33_900.0, 59.8], [50.0, 61.0, 33_950.0, 61.0]])
    refined = refine_segments(photo, segments)
    assert np.allclose(refined[:2, [1, 3]], 60.5, atol=0.05)
    assert np.array_equal(refined[2], segments[2])
