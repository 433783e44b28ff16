"""The bundled sample keeps its promises: the quad is the known floor rectangle at its true scale, the
mask leaves the furniture out, the sun patch is brighter than the floor around it, the old floor has
a texture of its own, and every render is the same."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from devstack import sample_room, scenes
from gateway.validation import Limits, validate_submit
from render.v1 import render_service_pb2 as pb
from render_client.client import material_swap_request
from renderkit import homography

WIDTH, HEIGHT = 800, 533


@pytest.fixture(scope="module")
def room() -> sample_room.SampleRoom:
    return sample_room.sample_room(WIDTH, HEIGHT)


def local_std(image: np.ndarray, size: int = 7) -> np.ndarray:
    """The standard deviation of the grey level over each pixel's size x size neighbourhood."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    mean = cv2.blur(grey, (size, size))
    return np.asarray(np.sqrt(np.maximum(cv2.blur(grey * grey, (size, size)) - mean * mean, 0)))


def shrunk(region: np.ndarray, pixels: int) -> np.ndarray:
    """A bool region eroded by `pixels` (away from its edges)."""
    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    return np.asarray(cv2.erode(region.astype(np.uint8), kernel) > 0)


def grown(region: np.ndarray, pixels: int) -> np.ndarray:
    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    return np.asarray(cv2.dilate(region.astype(np.uint8), kernel) > 0)


def test_the_quad_is_the_known_floor_rectangle_at_its_true_size(room: sample_room.SampleRoom) -> None:
    camera = room.camera
    corners = room.quad_floor_m
    assert np.allclose(corners[:, 2], 0.0)  # on the floor
    # Each quad corner's ray, traced back from the pixel, meets the floor at the known corner.
    K_inv = np.linalg.inv(camera.K)
    for (u, v), corner in zip(room.quad, corners, strict=True):
        ray = camera.rotation.T @ (K_inv @ np.array([u, v, 1.0]))
        hit = camera.position + ray * (-camera.position[2] / ray[2])
        assert hit == pytest.approx(corner, abs=1e-6)
    # What the depth stage derives from the quad, the focal length and the camera's height is the
    # rectangle's real size: the swatch_size then places the planks at scale.
    H = homography.quad_homography(room.quad)
    width_m = homography.rectangle_width(H, room.focal_length_px, WIDTH, HEIGHT) * room.camera_height_m
    aspect = homography.rectangle_aspect(H, room.focal_length_px, WIDTH, HEIGHT)
    edge_u = np.linalg.norm(corners[1] - corners[0])
    edge_v = np.linalg.norm(corners[3] - corners[0])
    assert width_m == pytest.approx(edge_u, rel=1e-6)
    assert aspect == pytest.approx(edge_u / edge_v, rel=1e-6)
    assert room.camera_height_m == camera.position[2]
    # The corners are points of the visible floor, inside the photo.
    for u, v in np.round(room.quad).astype(int):
        assert room.mask[v, u] == 255


def test_the_mask_is_the_visible_floor_without_the_furniture(room: sample_room.SampleRoom) -> None:
    furniture = room.furniture
    assert furniture.mean() > 0.08  # a sofa, a sideboard, a table and a plant are in view
    assert (room.mask[shrunk(furniture, 2)] == 0).all()
    assert (room.mask[shrunk(room.floor, 2)] == 255).all()
    assert 0.25 < (room.mask > 127).mean() < 0.6
    # The table's legs are thin, and still left out: the mask has holes inside the floor's outline.
    outline = np.zeros_like(room.mask)
    contours, _ = cv2.findContours((room.mask > 127).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(outline, contours, -1, (255,), -1)
    holes = (outline == 255) & (room.mask <= 127)
    assert (holes & furniture).sum() > 0.01 * WIDTH * HEIGHT


def test_the_sun_patch_is_brighter_than_the_floor_around_it(room: sample_room.SampleRoom) -> None:
    grey = cv2.cvtColor(room.photo, cv2.COLOR_BGR2GRAY).astype(np.float32)
    sun = shrunk(room.sun, 2)
    around = grown(room.sun, 20) & ~grown(room.sun, 5) & shrunk(room.mask > 127, 3)
    assert sun.sum() > 0.01 * WIDTH * HEIGHT and around.sum() > 0.01 * WIDTH * HEIGHT
    assert grey[sun].mean() > 1.25 * grey[around].mean()
    assert np.mean(grey[sun] >= 254) < 0.05  # bright, not clipped


def test_the_old_floor_has_a_worn_texture_of_its_own(room: sample_room.SampleRoom) -> None:
    # Grout joints, stains and scuffs: the floor varies locally well beyond the sensor noise that is
    # all the plain walls show.
    spread = local_std(room.photo)
    floor = shrunk(room.mask > 127, 4) & ~grown(room.sun, 6)
    walls = shrunk(~room.floor & ~room.furniture, 4)
    assert np.median(spread[floor]) > 2 * np.median(spread[walls])
    assert np.percentile(spread[floor], 90) > 6


def test_the_sample_renders_the_same_every_time() -> None:
    first, second = sample_room.sample_room(320, 213), sample_room.sample_room(320, 213)
    assert first.photo_jpeg == second.photo_jpeg
    assert np.array_equal(first.mask, second.mask)
    assert np.array_equal(first.swatch, second.swatch)
    assert scenes.sample_room is sample_room.sample_room


def test_the_sample_files_make_a_valid_request_at_real_scale(room: sample_room.SampleRoom, tmp_path: Path) -> None:
    files = sample_room.write_sample_files(tmp_path, room)
    manifest = json.loads(files.manifest.read_text())
    assert manifest["swatch_size_meters"] == {"width": 1.2, "height": 0.8}
    assert manifest["plane_distance_meters"] == room.camera_height_m
    assert set(manifest["swatches"]) == {"oak", "walnut", "tile"}
    mask = cv2.imread(str(files.mask), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(mask, room.mask)
    for path in files.swatches.values():  # each shows 1.2 m x 0.8 m: a 3:2 image
        swatch = cv2.imread(str(path))
        assert swatch.shape[1] * 2 == swatch.shape[0] * 3
    # The demo's request, as demo.py builds it.
    request = material_swap_request(
        files.photo,
        files.swatches["oak"],
        variant_swatches=[files.swatches["walnut"], files.swatches["tile"]],
        quad=[(x, y) for x, y in manifest["quad"]],
        mask=files.mask,
        swatch_size=(manifest["swatch_size_meters"]["width"], manifest["swatch_size_meters"]["height"]),
        plane_distance_meters=manifest["plane_distance_meters"],
        focal_length_px=manifest["focal_length_px"],
    )
    swap = request.material_swap
    assert swap.options.real_world_scale.WhichOneof("scale") == "swatch_size"
    assert (swap.hints.plane_distance_meters, len(swap.hints.quad), len(swap.variant_swatches)) == (1.5, 4, 2)
    assert swap.mask.data == files.mask.read_bytes()
    assert validate_submit(request, Limits()) == []


def test_repeats_and_a_swatch_size_do_not_go_together() -> None:
    with pytest.raises(ValueError, match="repeats or swatch_size"):
        material_swap_request(b"photo", b"swatch", repeats=4, swatch_size=(1.2, 0.8))
    request = material_swap_request(b"photo", b"swatch", repeats=4)
    assert request.material_swap.options.real_world_scale.repeats == 4
    assert request.material_swap.surface == pb.SURFACE_UNSPECIFIED
