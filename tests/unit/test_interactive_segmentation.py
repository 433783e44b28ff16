"""Masks from clicks and boxes without a model: illumination-invariant features, a superpixel walk
from the clicks, GrabCut on the features, the edge refined against the photo."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np
import pytest

from devstack import scenes
from renderkit.errors import InputError
from renderkit.homography import quad_homography
from renderkit.imaging import linear_to_srgb, srgb_to_linear
from services.segmentation import surface_scale
from services.segmentation.interactive import (
    REFINE_TILE,
    WORK_SIDE,
    Appearance,
    _disk,
    _patterned,
    guided_filter,
    refine_edges,
    select_surface,
    superpixel_graph,
)
from services.segmentation.junctions import JUNCTION_EDGE, _cut_off_beyond
from services.segmentation.superpixels import slic

W, H = 960, 640


@pytest.fixture(scope="module")
def room() -> tuple[np.ndarray, np.ndarray]:
    """A room photo with a dark sofa standing on the floor, and the visible floor's true mask."""
    scene = scenes.room_scene(W, H)
    photo = scene.photo.copy()
    sofa = (slice(int(0.62 * H), int(0.80 * H)), slice(int(0.38 * W), int(0.62 * W)))
    photo[sofa] = (40, 45, 70)
    truth = scene.floor_mask.copy()
    truth[sofa] = 0
    return photo, truth


def iou(mask: np.ndarray, truth: np.ndarray) -> float:
    a, b = mask > 127, truth > 127
    return float((a & b).sum() / (a | b).sum())


@dataclass(frozen=True)
class TiledFloor:
    """A tiled floor in perspective under a patch of warm sun and a shadow, a wall of nearly the
    same colour behind it, a dark cabinet standing on it; JPEG q90 with sensor noise."""

    photo: np.ndarray
    floor: np.ndarray  # uint8 255 on the visible floor
    joints: np.ndarray  # bool: the joints' pixels on the visible floor
    sun: np.ndarray  # bool: the sunlit part of the visible floor
    cabinet: np.ndarray  # bool: the cabinet's pixels
    positives: np.ndarray
    negatives: np.ndarray
    box: tuple[float, float, float, float]


def _floor_in_perspective(width: int, height: int, tiles: int) -> tuple[np.ndarray, ...]:
    """The photo's pixel coordinates (xs, ys), where they fall on a floor of tiles x tiles units
    receding from the camera (u, v), and which pixels are on it."""
    quad = np.array([[0.24, 0.40], [0.76, 0.40], [1.1, 1.05], [-0.1, 1.05]]) * (width, height)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    Hinv = np.linalg.inv(quad_homography(quad))
    w = Hinv[2, 0] * xs + Hinv[2, 1] * ys + Hinv[2, 2]
    u = (Hinv[0, 0] * xs + Hinv[0, 1] * ys + Hinv[0, 2]) / w * tiles
    v = (Hinv[1, 0] * xs + Hinv[1, 1] * ys + Hinv[1, 2]) / w * tiles
    return xs, ys, u, v, (u > 0) & (u < tiles) & (v > 0) & (v < tiles)


def tiled_floor(
    width: int = 480,
    height: int = 360,
    floor_bgr: tuple[int, int, int] = (165, 188, 200),
    cabinet_bgr: tuple[int, int, int] = (60, 45, 40),
) -> TiledFloor:
    xs, ys, u, v, on_floor = _floor_in_perspective(width, height, 7)
    fu, fv = u - np.floor(u), v - np.floor(v)
    joint = on_floor & ((np.minimum(fu, 1 - fu) < 0.03) | (np.minimum(fv, 1 - fv) < 0.03))
    tone = 0.9 + 0.2 * ((np.floor(u) * 7 + np.floor(v) * 3) % 5) / 4
    floor = srgb_to_linear(np.array([[floor_bgr]], np.uint8))[0, 0] * tone[..., None]
    floor = np.where(joint[..., None], srgb_to_linear(np.array([[[118, 128, 138]]], np.uint8))[0, 0], floor)
    wall = srgb_to_linear(np.array([[[160, 184, 196]]], np.uint8))[0, 0] * np.float32(0.85)
    image = np.where(on_floor[..., None], floor, wall).astype(np.float32)
    cabinet = (xs > 0.62 * width) & (xs < 0.80 * width) & (ys > 0.50 * height) & (ys < 0.72 * height)
    image[cabinet] = srgb_to_linear(np.array([[cabinet_bgr]], np.uint8))[0, 0]
    # Warm sun through a window: a sharp-edged parallelogram 2.2 times brighter; a soft shadow.
    slant = xs - 0.35 * width + 0.5 * (ys - 0.7 * height)
    sun = on_floor & ~cabinet & (np.abs(slant) < 0.09 * width) & (np.abs(ys - 0.72 * height) < 0.12 * height)
    light = np.ones((height, width, 3), np.float32)
    light[sun] *= np.array([1.76, 2.02, 2.2], np.float32)  # BGR: warmer than the room's light
    shadow = 1 - 0.5 * np.exp(-(((xs - 0.22 * width) ** 2 + ((ys - 0.85 * height) * 2) ** 2) / (0.1 * width) ** 2))
    light *= np.where(on_floor, shadow, 1.0)[..., None].astype(np.float32)
    photo = linear_to_srgb(image * light)
    rng = np.random.default_rng(7)
    noisy = np.clip(photo + rng.normal(0, 2.5, photo.shape), 0, 255).astype(np.uint8)
    photo = cv2.imdecode(cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 90])[1], cv2.IMREAD_COLOR)
    visible = on_floor & ~cabinet
    positives = np.array([[0.12, 0.62], [0.55, 0.92], [0.85, 0.88]]) * (width, height)
    negatives = np.array([[0.71, 0.6], [0.5, 0.2]]) * (width, height)
    return TiledFloor(
        photo,
        visible.astype(np.uint8) * 255,
        joint & visible,
        sun,
        cabinet,
        positives,
        negatives,
        (0.0, 0.36 * height, float(width), float(height)),
    )


@pytest.fixture(scope="module")
def tiled() -> TiledFloor:
    return tiled_floor()


def test_clicks_find_the_whole_tiled_floor_with_its_joints_and_its_sunlit_part(tiled: TiledFloor) -> None:
    mask = select_surface(tiled.photo, None, tiled.positives, tiled.negatives)
    assert iou(mask, tiled.floor) > 0.93  # measured 0.935 (0.95 before the walk on the plane; GrabCut: 0.40)
    assert (mask[tiled.sun] > 127).mean() > 0.95  # the sunlit part is floor too (before: 0.00)
    assert (mask[tiled.joints] > 127).mean() > 0.85  # joints stay inside the mask (0.93; before: 0.45)


def test_clicks_alone_leave_out_a_grey_cabinet_the_floor_s_features_cannot_tell_apart() -> None:
    """A mid-grey cabinet with a click on it, on a grey tiled floor: in the lighting-invariant
    features its noise passes for the floor's texture and its chroma for the floor's, so GrabCut
    gave back what the walk from the clicks had left out."""
    floor = tiled_floor(floor_bgr=(150, 152, 155), cabinet_bgr=(70, 72, 75))
    mask = select_surface(floor.photo, None, floor.positives, floor.negatives)
    inside = cv2.erode(floor.cabinet.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert (mask[inside] > 127).mean() < 0.3  # measured 0.13 (before: 0.92)
    assert iou(mask, floor.floor) > 0.96  # measured 0.97 (0.983 before the walk on the plane; 0.922 before that)


def test_a_box_and_clicks_stop_at_the_wall_of_the_same_colour(tiled: TiledFloor) -> None:
    mask = select_surface(tiled.photo, tiled.box, tiled.positives[:2], tiled.negatives[:1])
    assert iou(mask, tiled.floor) > 0.96  # measured 0.99 (before: 0.92, the sunlit part left out)
    wall = tiled.floor == 0
    wall[int(0.42 * 360) :] = False
    assert (mask[wall] > 127).mean() < 0.02


def test_the_mask_is_smooth_at_full_resolution(tiled: TiledFloor) -> None:
    """No staircase from the working resolution: the mask's outline is about as long as the truth's."""
    mask = select_surface(tiled.photo, tiled.box, tiled.positives, tiled.negatives)

    def outline(m: np.ndarray) -> float:
        contours, _ = cv2.findContours((m > 127).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        return sum(cv2.arcLength(c, True) for c in contours)

    assert outline(mask) < 1.15 * outline(tiled.floor)


def test_a_box_and_clicks_select_the_floor_and_leave_the_sofa_out(room: tuple[np.ndarray, np.ndarray]) -> None:
    photo, truth = room
    box = (0.0, 0.45 * H, float(W), float(H))
    mask = select_surface(photo, box, np.array([[0.2 * W, 0.9 * H]]), np.array([[0.5 * W, 0.7 * H]]))
    # Measured 0.81 (GrabCut on chroma-weighted Lab: 0.83): the wall by the window is overexposed
    # and as grey as the carpet, and the box alone gives no reason to leave it out.
    assert iou(mask, truth) > 0.78
    assert mask[int(0.7 * H), int(0.5 * W)] < 64  # the sofa stays in front


def test_a_click_off_a_dark_object_of_the_floors_hue_keeps_all_of_it_out() -> None:
    """A uniform object that looks like the floor in shadow (the same hue, darker): the click on it
    takes all of it out, though the superpixels along its outline carry the outline's gradients."""
    photo = scenes.room_scene(320, 240).photo.copy()
    photo[170:200, 120:200] = (40, 45, 70)
    box = (0.0, 110.0, 320.0, 240.0)
    mask = select_surface(photo, box, np.array([[60.0, 225.0]]), np.array([[160.0, 185.0]]))
    assert (mask[172:198, 122:198] > 127).mean() < 0.02  # before: 0.81 of it was taken for floor
    assert (mask[215:235, 40:80] > 127).all()


def test_clicks_alone_select_the_floor(room: tuple[np.ndarray, np.ndarray]) -> None:
    photo, truth = room
    positives = np.array([[0.2 * W, 0.9 * H], [0.8 * W, 0.9 * H], [0.5 * W, 0.56 * H]])
    negatives = np.array([[0.5 * W, 0.2 * H], [0.5 * W, 0.7 * H]])
    mask = select_surface(photo, None, positives, negatives)
    assert iou(mask, truth) > 0.93  # measured 0.96 (before: 0.63)
    assert mask[int(0.7 * H), int(0.5 * W)] < 64


def motif_floor(
    width: int = 640, height: int = 480, tiles: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A carpet's motif in perspective (navy squares in a beige grid, `tiles` across, under a
    window's falloff) before a light grey wall; the photo, the floor (uint8 255), two clicks on the
    grid's beige lines and one on the wall."""
    _, ys, u, v, on_floor = _floor_in_perspective(width, height, tiles)
    fu, fv = u - np.floor(u), v - np.floor(v)
    square = (np.abs(fu - 0.5) < 0.32) & (np.abs(fv - 0.5) < 0.32)
    navy, beige, wall = (
        srgb_to_linear(np.array([[c]], np.uint8))[0, 0] for c in ((110, 50, 40), (150, 190, 205), (190, 192, 190))
    )
    image = np.where(on_floor[..., None], np.where(square[..., None], navy, beige), wall * np.float32(0.9))
    shade = (1 - 0.35 * ys / height)[..., None]
    photo = linear_to_srgb((image * shade).astype(np.float32))
    noisy = np.clip(photo + np.random.default_rng(3).normal(0, 2.5, photo.shape), 0, 255).astype(np.uint8)
    photo = cv2.imdecode(cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 90])[1], cv2.IMREAD_COLOR)
    line_y, line_x = np.nonzero(on_floor & ~square)
    clicks = [int(np.argmin((line_x - tx * width) ** 2 + (line_y - 0.85 * height) ** 2)) for tx in (0.25, 0.75)]
    positives = np.array([[line_x[k], line_y[k]] for k in clicks], float)
    return photo, on_floor.astype(np.uint8) * 255, positives, np.array([[0.5 * width, 0.15 * height]])


def test_clicks_on_a_motif_s_light_lines_take_its_dark_squares_too() -> None:
    """In the lighting-invariant features a navy square is nothing like the beige lines clicked;
    pooled over a window of one size on the floor's plane, every part of the motif looks alike."""
    photo, floor, positives, negatives = motif_floor()
    mask = select_surface(photo, None, positives, negatives)
    assert iou(mask, floor) > 0.94  # measured 0.965 (0.901 with the invariant features alone)


def test_pooled_on_the_plane_a_tiled_floor_looks_the_same_near_and_far(tiled: TiledFloor) -> None:
    """Near the camera a window on the plane holds a tile's smooth inside and its joints, as far
    away; the wall of nearly the floor's colour beside it is plain."""
    appearance = Appearance(tiled.photo)
    superpixels = superpixel_graph(appearance)
    plane = surface_scale.to_plane(tiled.photo, tiled.floor)
    assert plane is not None
    floor = cv2.resize(tiled.floor, appearance.size, interpolation=cv2.INTER_AREA) > 127
    scaled = surface_scale.scaled_appearance(
        appearance.walk_chroma, appearance.texture[..., 0], superpixels.graph, appearance.scale, plane, floor,
        appearance.clipped,
    )  # fmt: skip
    assert scaled is not None and not scaled.off_plane.any()  # the floor's horizon is above the photo
    labels = superpixels.graph.labels
    rows = np.broadcast_to(np.arange(labels.shape[0])[:, None], labels.shape) / labels.shape[0]
    sun = cv2.resize(tiled.sun.astype(np.uint8), appearance.size, interpolation=cv2.INTER_NEAREST) > 0

    def typical(where: np.ndarray) -> np.ndarray:
        return np.asarray(np.median(scaled.descriptors[labels[where]], axis=0))

    near, far = typical(floor & ~sun & (rows > 0.85)), typical(floor & ~sun & (rows < 0.5))
    wall = typical(~floor & (rows < 0.3))
    assert np.linalg.norm(near - far) < 1.5  # measured 1.09 (scale units)
    assert np.linalg.norm(far - wall) > 3.0  # measured 4.1


def test_pixels_past_the_plane_s_horizon_are_off_it() -> None:
    """A plane whose horizon is the row y = 100: the rows above it are no part of the surface."""
    chroma = np.zeros((150, 200, 2), np.float32)
    energy = np.full((150, 200), 0.01, np.float32)
    graph = slic(np.zeros((150, 200, 3), np.float32), 10)
    plane = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, -100.0]])
    surface = np.zeros((150, 200), bool)
    surface[120:] = True
    scaled = surface_scale.scaled_appearance(chroma, energy, graph, 1.0, plane, surface, np.zeros_like(surface))
    assert scaled is not None
    rows = graph.mean(np.broadcast_to(np.arange(150.0)[:, None], (150, 200)))
    assert scaled.off_plane[rows < 90].all() and not scaled.off_plane[rows > 110].any()


def test_a_large_photo_is_segmented_at_the_working_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cost of a mask does not grow with the photo: GrabCut (most of it) runs twice at most, on
    the working image, whatever the photo's size (its time is reported by benchmarks.segmentation_iou)."""
    photo = cv2.resize(tiled_floor().photo, (1600, 1200), interpolation=cv2.INTER_LINEAR)
    truth = cv2.resize(tiled_floor().floor, (1600, 1200), interpolation=cv2.INTER_NEAREST)
    shapes: list[tuple[int, ...]] = []
    grab_cut = cv2.grabCut

    def spy(image: np.ndarray, *args: Any) -> Any:
        shapes.append(image.shape)
        return grab_cut(image, *args)

    monkeypatch.setattr(cv2, "grabCut", spy)
    positives = np.array([[0.12, 0.62], [0.55, 0.92]]) * (1600, 1200)
    mask = select_surface(photo, None, positives, np.array([[0.71 * 1600, 0.6 * 1200]]))
    assert shapes and len(shapes) <= 2
    assert all(max(shape[:2]) == WORK_SIDE for shape in shapes)
    # Two clicks on an enlarged (soft) photo: the first mask holds 0.43 of the floor; the walk on
    # the plane's scale finds the rest (0.92; 0.43 before it).
    assert iou(mask, truth) > 0.85


def _collapsing(image: np.ndarray, labels: np.ndarray, *args: Any) -> None:
    """GrabCut as it failed on warm floors: nothing but the fixed labels (the clicks' disks) kept."""
    labels[labels == cv2.GC_PR_FGD] = cv2.GC_PR_BGD


def test_a_cut_that_collapses_onto_the_clicks_leaves_the_walk_s_region(
    tiled: TiledFloor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GrabCut's chroma, clipped, set most of a warm beige floor to one value; a Gaussian of the rest
    collapsed onto it and the cut kept the clicks' disks of a walk that had found the floor (judge40's
    F1 and F5: IoU 0.006, 0.004)."""
    monkeypatch.setattr(cv2, "grabCut", _collapsing)
    mask = select_surface(tiled.photo, None, tiled.positives, tiled.negatives)
    assert iou(mask, tiled.floor) > 0.8  # the walks' answers, 0.90; the click disks alone: 0.006


def test_a_box_whose_cut_collapses_leaves_the_surface_to_the_clicks_inside_it(
    tiled: TiledFloor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cv2, "grabCut", _collapsing)
    box = (0.0, 0.5 * tiled.photo.shape[0], float(tiled.photo.shape[1]), float(tiled.photo.shape[0]))
    mask = select_surface(tiled.photo, box, tiled.positives, tiled.negatives)
    inside = np.zeros(tiled.floor.shape, bool)
    inside[int(box[1]) :] = True
    assert iou(mask, np.where(inside, tiled.floor, 0)) > 0.8  # 0.91; the click disks alone: 0.007
    assert not (mask[~inside] > 127).any()


def test_superpixels_follow_edges_and_cover_the_image() -> None:
    image = np.zeros((90, 120, 3), np.float32)
    image[:, 47:] = (200.0, 128.0, 128.0)  # an edge off the 10 px grid
    graph = slic(image, 10)
    assert graph.labels.shape == (90, 120) and graph.labels.max() < graph.count
    straddling = [label for label in np.unique(graph.labels) if len(np.unique(image[graph.labels == label, 0])) > 1]
    assert not straddling
    assert len(graph.first) == len(set(zip(graph.first.tolist(), graph.second.tolist(), strict=True)))
    assert np.all(graph.first < graph.second)


def test_refined_edges_follow_the_photo_better_than_an_upsampled_mask(room: tuple[np.ndarray, np.ndarray]) -> None:
    photo, truth = room
    coarse = cv2.resize(
        cv2.resize(truth, (W // 8, H // 8), interpolation=cv2.INTER_AREA), (W, H), interpolation=cv2.INTER_NEAREST
    )
    refined = refine_edges(photo, coarse, radius=9)
    band = (
        cv2.dilate(cv2.morphologyEx(truth, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)), np.ones((9, 9), np.uint8))
        > 0
    )
    error_coarse = np.abs(coarse.astype(int) - truth)[band].mean()
    error_refined = np.abs(refined.astype(int) - truth)[band].mean()
    assert error_refined < 0.75 * error_coarse


def test_edges_refined_tile_by_tile_are_the_whole_filter_s(room: tuple[np.ndarray, np.ndarray]) -> None:
    """refine_edges filters only the tiles within reach of the edge; the result is the guided
    filter's over the mask's whole box: with the room's floor, with an edge along tile borders and
    the photo's border, and with specks a tile apart."""
    photo, truth = room
    radius = 4
    on_borders = np.zeros((H, W), np.uint8)
    on_borders[REFINE_TILE : 3 * REFINE_TILE, :REFINE_TILE] = 255
    specks = np.zeros((H, W), np.uint8)
    specks[10:13, 10:13] = specks[10:12, 10 + REFINE_TILE + 5 : 12 + REFINE_TILE + 5] = 255
    for mask in (truth, on_borders, specks):
        # The filter over the edge's whole box (its bounding box and twice the filter's reach).
        edge = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        ys, xs = np.nonzero(edge)
        pad = 4 * radius
        y0, y1, x0, x1 = (
            max(0, ys.min() - pad),
            min(H, ys.max() + pad + 1),
            max(0, xs.min() - pad),
            min(W, xs.max() + pad + 1),
        )
        guide = cv2.cvtColor(photo[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY).astype(np.float32) / 255
        whole = np.clip(guided_filter(guide, mask[y0:y1, x0:x1].astype(np.float32) / 255, radius, 1e-4), 0, 1)
        expected = mask.copy()
        expected[y0:y1, x0:x1] = np.round(whole * 255).astype(np.uint8)
        refined = refine_edges(photo, mask, radius=radius)
        assert refined.dtype == np.uint8
        difference = np.abs(refined.astype(int) - expected)
        assert difference.max() <= 1 and np.count_nonzero(difference) <= 0.0005 * mask.size
        assert np.count_nonzero(refined != mask) > 0  # the edge did move


def test_hints_that_select_nothing_are_refused(room: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="no background"):
        select_surface(room[0], (-10.0, -10.0, W + 10.0, H + 10.0), np.zeros((0, 2)), np.zeros((0, 2)))


def test_a_click_far_off_the_photo_paints_nothing() -> None:
    """OpenCV takes int32 centres: a click at 1e15 crashed the stage (the gateway refuses clicks
    off the photo; this is the stage's own guard)."""
    labels = np.zeros((288, 384), np.uint8)
    _disk(labels, np.array([[1e15, 1e15], [-1e9, 10.0], [float("nan"), 5.0]]), 5, 1)
    assert not labels.any()
    _disk(labels, np.array([[386.0, 100.0]]), 5, 1)  # just off the edge: the disk's part on it is drawn
    assert labels[95:106, 380:].any() and labels.sum() < np.pi * 25


@pytest.mark.parametrize("shape", [(1, 4000), (2100, 1), (40, 4000)])
def test_a_photo_too_thin_to_click_on_is_refused_saying_so(shape: tuple[int, int]) -> None:
    """A very thin photo made the texture's resize ask for 0 rows (cv2.error, an internal error) or
    the superpixels miscount (a review found both): clicks and a box need a photo with some height."""
    photo = np.full((*shape, 3), 120, np.uint8)
    with pytest.raises(InputError, match="too small or too narrow"):
        select_surface(photo, None, np.array([[0.0, 0.0]]), np.empty((0, 2)))


def test_a_box_around_the_whole_photo_leaves_it_to_the_clicks() -> None:
    """A floor seen from above fills the frame, and so does the box around it: outside it GrabCut
    had no background to learn, so the request failed without a click off the floor, and with one
    kept what nobody clicked (another reviewer's scenes). The clicks find the surface; the box only
    bounds it."""
    floor = tiled_floor(width=640, height=480)
    crop = np.s_[240:, 124:516]  # where the floor (and the cabinet standing on it) fills the frame
    photo, truth, cabinet = floor.photo[crop], floor.floor[crop], floor.cabinet[crop]
    assert ((truth > 0) | cabinet).mean() > 0.99
    height, width = truth.shape
    positives = np.array([[0.12, 0.5], [0.45, 0.85], [0.4, 0.3]]) * (width, height)
    box = (0.0, 0.0, float(width), float(height))
    for negatives in (np.zeros((0, 2)), np.array([[0.85 * width, 20.0]])):
        mask = select_surface(photo, box, positives, negatives)
        inside = cv2.erode(cabinet.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        assert (mask[inside] > 127).mean() < 0.3, len(negatives)
        assert iou(mask, truth) > 0.9, len(negatives)


@pytest.mark.parametrize("margin", [3, 8])
def test_a_box_drawn_a_little_short_of_the_photo_s_edges_keeps_the_floor_running_out_of_the_frame(
    tiled: TiledFloor, margin: int
) -> None:
    """The floor runs out of the frame at the sides and the bottom; the user's box stops a few pixels
    short of them. That strip of floor was certain background: GrabCut learnt the floor as the rest
    and the mask fell to the clicks' disks (IoU 0.004 on a reviewer's scenes)."""
    height, width = tiled.floor.shape
    box = (float(margin), 0.36 * height, float(width - margin), float(height - margin))
    mask = select_surface(tiled.photo, box, tiled.positives[:2], tiled.negatives[:1])
    assert iou(mask, tiled.floor) > 0.96


def test_a_box_drawn_round_a_rug_just_short_of_the_edge_leaves_the_floor_below_out() -> None:
    """A box side near the border is snapped onto it only where the strip it leaves looks like the
    box's inside: the floor below a rug the box was drawn round took the rug's place otherwise (the
    diff's review: 94 % of that strip in the mask)."""
    rng = np.random.default_rng(0)
    height, width = 600, 800
    photo = cv2.add(
        np.full((height, width, 3), (60, 90, 140), np.uint8), rng.integers(0, 12, (height, width, 3), dtype=np.uint8)
    )
    x0, y0, x1, y1 = int(0.3 * width), int(0.55 * height), int(0.7 * width), int(0.98 * height)
    photo[y0:y1, x0:x1] = (40, 40, 170)
    truth = np.zeros((height, width), np.uint8)
    truth[y0:y1, x0:x1] = 255
    none = np.zeros((0, 2))
    mask = select_surface(photo, (x0, y0, x1, y1), none, none)
    assert iou(mask, truth) > 0.97
    assert (mask[y1:, x0:x1] > 127).mean() < 0.05


def test_a_box_drawn_a_little_short_of_the_edge_of_a_floor_of_light_and_dark_planks_still_reaches_it() -> None:
    """Planks along the photo's bottom edge, light and dark rows (CIELAB 23 apart): the strip below
    the box side is a light plank and the band just inside it a dark one. The strip is compared with
    a few bands running inward, not only the first: else the side was not snapped and the strip
    (2 % of the photo) was left out of the mask (IoU 0.948)."""
    rng = np.random.default_rng(0)
    height, width = 600, 800
    photo = np.full((height, width, 3), (200, 205, 210), np.uint8)
    floor_top, plank = int(0.45 * height), 18
    for i, y in enumerate(range(height, floor_top, -plank)):
        photo[max(floor_top, y - plank) : y] = (95, 140, 185) if i % 2 == 0 else (55, 85, 125)
    noisy = cv2.add(photo, rng.integers(0, 10, photo.shape, dtype=np.uint8))
    truth = np.zeros((height, width), np.uint8)
    truth[floor_top:] = 255
    box = (0.02 * width, floor_top - 2.0, 0.98 * width, 0.98 * height)
    none = np.zeros((0, 2))
    mask = select_surface(np.asarray(noisy, np.uint8), box, none, none)
    assert (mask[int(box[3]) :] > 127).mean() > 0.95
    assert iou(mask, truth) > 0.99


@pytest.mark.parametrize("side", ["top", "left", "bottom"])
def test_a_thin_box_near_the_border_is_not_snapped_onto_it_by_what_lies_beyond_the_box(side: str) -> None:
    """A thin dark shelf 2 % from the border, a plain wall around it: the bands the strip is
    compared with ran past a thin box's far side (top and left) or, in a loose box, reached the
    wall inside it, matched the wall's strip and snapped the side: the strip went into the mask
    (IoU 0.57-0.64)."""
    rng = np.random.default_rng(0)
    height, width = 600, 800
    photo = cv2.add(
        np.full((height, width, 3), (180, 185, 190), np.uint8), rng.integers(0, 12, (height, width, 3), dtype=np.uint8)
    )
    truth = np.zeros((height, width), np.uint8)
    if side == "top":
        x0, y0, x1, y1 = 160, 12, 640, 32
        box = (x0, y0, x1, y1)
    elif side == "left":
        x0, y0, x1, y1 = 16, 120, 36, 480
        box = (x0, y0, x1, y1)
    else:  # a loose box round a shelf near the bottom
        x0, y0, x1, y1 = 160, 562, 640, 582
        box = (x0 - 20, y0 - 20, x1 + 20, y1 + 4)
    photo[y0:y1, x0:x1] = (40, 60, 90)
    truth[y0:y1, x0:x1] = 255
    none = np.zeros((0, 2))
    mask = select_surface(photo, (float(box[0]), float(box[1]), float(box[2]), float(box[3])), none, none)
    assert iou(mask, truth) > 0.9


def clipped_sun_floor(width: int = 640, height: int = 480) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A plain mottled floor in perspective, a pale blue wall behind it, and a patch of sun through a
    window so bright that it clips, crossed by the shadows of the window's bars (JPEG q90, noise).
    The photo, the visible floor (uint8 255) and the sun patch (bool)."""
    _, _, u, v, on_floor = _floor_in_perspective(width, height, 7)
    rng = np.random.default_rng(11)
    mottle = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 12)
    floor = srgb_to_linear(np.array([[[120, 150, 180]]], np.uint8))[0, 0] * (1 + 0.8 * mottle)[..., None]
    wall = srgb_to_linear(np.array([[[200, 190, 175]]], np.uint8))[0, 0]
    image = np.where(on_floor[..., None], floor, wall).astype(np.float32)
    # The window's light on the floor: a parallelogram in floor coordinates, 7 times the room's light
    # (warmer), its two bars' shadows across it.
    slant = u - 0.6 * v
    patch = on_floor & (slant > -1.0) & (slant < 3.4) & (v > 0.6) & (v < 5.4)
    bars = (np.abs(slant - 1.2) < 0.06) | (np.abs(v - 3.0) < 0.06)
    sun = patch & ~bars
    light = np.ones((height, width, 3), np.float32)
    light[sun] *= np.array([5.6, 6.4, 7.0], np.float32)  # BGR
    photo = linear_to_srgb(image * light)
    noisy = np.clip(photo + rng.normal(0, 2.5, photo.shape), 0, 255).astype(np.uint8)
    photo = cv2.imdecode(cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 90])[1], cv2.IMREAD_COLOR)
    return photo, on_floor.astype(np.uint8) * 255, patch


def test_clicks_alone_keep_a_sun_patch_so_bright_it_clips_and_its_bars_shadows() -> None:
    photo, floor, patch = clipped_sun_floor()
    height, width = floor.shape
    positives = np.array([[0.2, 0.85], [0.8, 0.85]]) * (width, height)  # lower left and right, as users click
    mask = select_surface(photo, None, positives, np.zeros((0, 2)))
    assert (photo[patch].max(axis=1) >= 250).mean() > 0.8  # the patch clips
    assert (mask[patch] > 127).mean() > 0.95  # measured 1.00 (before: 0.05, left out: not the floor's colour)
    assert iou(mask, floor) > 0.95  # measured 1.00 (before: 0.68)


def test_clicks_alone_keep_a_clipped_sun_patch_the_frames_bottom_edge_cuts() -> None:
    """The floor runs on below the frame's bottom edge, and so does a sun patch on it: the ring
    around the patch counted the border there as not selected, and the patch was half left out
    (the held-out marble room: 0.75)."""
    photo, floor, patch = clipped_sun_floor()
    rows = np.nonzero(patch.any(axis=1))[0]
    bottom = int(rows.min() + 0.7 * (rows.max() - rows.min()))  # the edge crosses the patch
    photo, floor, patch = photo[:bottom], floor[:bottom], patch[:bottom]
    height, width = floor.shape
    positives = np.array([[0.2, 0.85], [0.8, 0.85]]) * (width, height)
    mask = select_surface(photo, None, positives, np.zeros((0, 2)))
    assert (mask[patch] > 127).mean() > 0.95  # measured 1.00 (before: 0.51)
    assert iou(mask, floor) > 0.95  # measured 1.00 (before: 0.72)


@pytest.mark.parametrize(
    "name",
    [
        "carpet, a building's straight shadow across it, white walls",
        "carpet, a thin strip of its lightness across it, white walls",
    ],
)
def test_clicks_alone_keep_a_sun_patch_that_does_not_clip_and_its_bars_shadows(name: str) -> None:
    """Carpets of benchmarks.segmentation_rooms' hard set (at 512 x 384) with a patch of warm sun that
    does not clip: its chroma is not the carpet's, and the cut left it out with the shadows of the
    window's bars across it (IoU 0.81 and 0.82 before)."""
    from benchmarks import segmentation_rooms
    from benchmarks.quality import modes

    spec = next(s for s in segmentation_rooms.HARD_SPECS if s.name == name)
    room = segmentation_rooms.build(spec, scale=0.5)
    _, positives, negatives = modes.clicks(room)
    mask = select_surface(room.photo, None, positives, negatives, focal_px=room.focal) > 127
    assert (mask & room.visible).sum() / (mask | room.visible).sum() > 0.97  # measured 0.99


def test_an_overexposed_wall_beside_the_floor_is_not_taken_for_a_sun_patch() -> None:
    # A clipped wall (a window's glare) borders the floor along one side only: it stays out.
    tiled = tiled_floor()
    photo, floor = tiled.photo.copy(), tiled.floor
    height, width = floor.shape
    wall = floor == 0
    wall[int(0.3 * height) :] = False
    photo[wall] = 255
    mask = select_surface(photo, None, np.array([[0.2, 0.85], [0.8, 0.85]]) * (width, height), np.zeros((0, 2)))
    assert (mask[wall] > 127).mean() < 0.05


def test_an_overexposed_patch_clicked_off_the_surface_stays_out() -> None:
    # A clipped lamp (or a window) in the middle of the wall the clicks select: it is enclosed by the
    # selection as a sun patch is, but the user clicked it away (it was taken in all the same).
    rng = np.random.default_rng(1)
    photo = np.full((480, 640, 3), (150, 120, 100), np.uint8)
    photo = np.clip(photo + rng.normal(0, 6, photo.shape), 0, 255).astype(np.uint8)
    photo[360:] = (60, 110, 170)  # the floor below the wall
    photo[140:240, 260:380] = 255  # the lamp
    positives = np.array([[100.0, 100.0], [540.0, 300.0]])
    mask = select_surface(photo, None, positives, np.array([[320.0, 190.0]]))
    assert (mask[150:230, 270:370] > 127).mean() < 0.05  # before: 1.00
    assert (mask[20:120, 20:200] > 127).mean() > 0.95


def _wall_with_window() -> tuple[np.ndarray, np.ndarray]:
    """A plain wall above a floor, a window in it whose glass clips, its transom and mullion."""
    rng = np.random.default_rng(1)
    photo = np.full((480, 640, 3), (150, 120, 100), np.uint8)
    photo = np.clip(photo + rng.normal(0, 6, photo.shape), 0, 255).astype(np.uint8)
    photo[360:] = (60, 110, 170)  # the floor below the wall
    window = np.zeros((480, 640), bool)
    window[120:260, 230:410] = True
    photo[window] = 255
    photo[186:194, 230:410] = (235, 235, 235)
    photo[120:260, 316:324] = (235, 235, 235)
    return photo, window


@pytest.mark.parametrize("surface", ["wall", "ceiling"])
def test_clicks_alone_on_a_named_wall_leave_a_window_in_it_out(surface: str) -> None:
    # Nothing clicked away: the window the wall encloses is not the wall (before: 0.94 of it taken,
    # and re-covered with the wall's material).
    photo, _ = _wall_with_window()
    positives = np.array([[100.0, 100.0], [540.0, 300.0]])
    mask = select_surface(photo, None, positives, np.zeros((0, 2)), surface=surface)
    assert (mask[130:250, 240:400] > 127).mean() < 0.05
    assert (mask[20:110, 20:200] > 127).mean() > 0.95


def test_a_box_on_a_named_wall_leaves_the_window_in_it_out() -> None:
    """A box's cut learns the background only outside the box: the clipped glass of a window in the
    wall, with nothing like it outside, was taken in whole (a reviewer's rooms: IoU 0.73-0.76, 0.80-
    0.95 without the window). On a wall the window is taken out; unnamed, the box keeps it."""
    photo, window = _wall_with_window()
    glass = window & (photo == 255).all(axis=2)  # the transom and mullion are not clipped
    box = (10.0, 10.0, 630.0, 350.0)
    positives = np.array([[100.0, 100.0], [540.0, 300.0]])
    named = select_surface(photo, box, positives, np.zeros((0, 2)), surface="wall")
    assert (named[glass] > 127).mean() < 0.05
    assert (named[20:110, 20:200] > 127).mean() > 0.95
    clicked = select_surface(photo, box, np.array([[300.0, 150.0]]), np.zeros((0, 2)), surface="wall")
    assert (clicked[130:180, 240:300] > 127).mean() > 0.9  # a click on the glass keeps it


def test_clicks_alone_on_an_unnamed_surface_still_take_the_clipped_patch_it_encloses() -> None:
    photo, _ = _wall_with_window()
    positives = np.array([[100.0, 100.0], [540.0, 300.0]])
    mask = select_surface(photo, None, positives, np.zeros((0, 2)))
    assert (mask[130:250, 240:400] > 127).mean() > 0.9  # measured 0.94: a sun patch, for all it knows


def test_clicks_alone_on_a_named_floor_keep_below_its_junction_with_a_wall_of_its_colour() -> None:
    """A plain beige floor under beige walls (benchmarks.segmentation_rooms' first room at 512 x 384):
    chroma and texture do not tell them apart and clicks alone took the walls (IoU 0.68). Named as
    a floor, the selection stops at the junction."""
    from benchmarks import segmentation_rooms
    from benchmarks.quality import modes

    room = segmentation_rooms.build(segmentation_rooms.SPECS[0], scale=0.5)
    _, positives, negatives = modes.clicks(room)
    mask = select_surface(room.photo, None, positives, negatives, focal_px=room.focal, surface="floor") > 127
    assert (mask & room.visible).sum() / (mask | room.visible).sum() > 0.95
    # Nothing of the walls above the floor's far edge is taken.
    top = np.nonzero(room.visible.any(axis=1))[0].min()
    assert mask[: max(0, top - 4)].mean() < 0.005


def test_clicks_alone_on_a_named_floor_keep_below_its_junction_with_darker_walls_of_its_colour() -> None:
    """The plain beige room with its walls painted the floor's colour at 0.8 of its albedo: a wall
    gets less light than the floor as well, and the floor just below the junction was far lighter
    than the wall just above it, which the junction's light test refused (IoU 0.68, the walls taken;
    0.997 with darker walls allowed)."""
    from benchmarks import segmentation_rooms
    from benchmarks.quality import modes

    spec = replace(segmentation_rooms.SPECS[0], wall=(0.40, 0.33, 0.24))
    room = segmentation_rooms.build(spec, scale=0.5)
    _, positives, negatives = modes.clicks(room)
    mask = select_surface(room.photo, None, positives, negatives, focal_px=room.focal, surface="floor") > 127
    assert (mask & room.visible).sum() / (mask | room.visible).sum() > 0.95


def test_clicks_alone_low_in_the_photo_keep_a_floor_below_its_junction_unnamed() -> None:
    """The same room with no surface named: clicks in the lower half of the photo are read as a
    floor's, and its walls of the floor's colour are cut off as when it is named (IoU 0.68 before)."""
    from benchmarks import segmentation_rooms
    from benchmarks.quality import modes

    room = segmentation_rooms.build(segmentation_rooms.SPECS[0], scale=0.5)
    _, positives, negatives = modes.clicks(room)
    mask = select_surface(room.photo, None, positives, negatives, focal_px=room.focal) > 127
    assert (mask & room.visible).sum() / (mask | room.visible).sum() > 0.95


def test_clicks_alone_on_a_named_floor_find_its_junction_above_a_sun_patchs_edge() -> None:
    """Worn tiles with the straight edge of a sun patch across them, below walls of their colour:
    the strongest path is that edge (the part beyond it is floor, in other light, and is kept), and
    the junction above it is the next one tried (IoU 0.73 before, the walls taken)."""
    from benchmarks import segmentation_rooms
    from benchmarks.quality import modes

    spec = next(s for s in segmentation_rooms.HARD_SPECS if s.name.startswith("worn tiles, the edge of a sun"))
    room = segmentation_rooms.build(spec, scale=0.5)
    _, positives, negatives = modes.clicks(room)
    mask = select_surface(room.photo, None, positives, negatives, focal_px=room.focal, surface="floor") > 127
    assert (mask & room.visible).sum() / (mask | room.visible).sum() > 0.95


def _heldout_style_room(floor: Any, wall: Any, **camera: Any) -> Any:
    """A room of segmentation_heldout's renderer (not its rooms): a floor of a texture photo under
    plain walls of its tint, nothing in front, three clicks spread on the floor."""
    from benchmarks import segmentation_heldout as heldout

    walls = heldout._alike(wall)
    spec = heldout.Spec("test", floor, walls, heldout.WHITE, "floor", clicks=3, surface="floor", **camera)
    return heldout.build(spec)


def test_clicks_alone_on_a_floor_whose_walk_takes_the_whole_photo_are_cut_at_its_junction() -> None:
    """Grey gravel under walls of its tint, no click off it: the walk took every superpixel (even with
    lightness), and the request failed ("the hints leave no background"). The floor's junction now
    gives the cut its rest."""
    from benchmarks import segmentation_heldout as heldout

    room = _heldout_style_room(
        heldout.photo("gravel", 0.8, (0.4, 0.42, 0.45), 0.8), heldout.paint((0.42, 0.44, 0.47)),
        size=(360, 480), fov=55, pitch=-32, lamps=((3.0, 3.5, 2.0, 1.2, heldout.NEUTRAL),), sky=0.2, seed=137,
    )  # fmt: skip
    mask = select_surface(room.photo, None, room.positives, room.negatives, surface="floor") > 127
    assert (mask & room.visible).sum() / (mask | room.visible).sum() > 0.95  # measured 0.997


def test_clicks_alone_cut_plain_walls_of_a_textured_floor_s_colour_at_a_weak_junction() -> None:
    """Warm gravel under plain walls of its tint: the junction is no step in colour or light, only in
    texture (the walls measured 0.07 of the floor's energy), and its edge fell short of JUNCTION_EDGE,
    so the walls were kept (IoU 0.51). So much smoother, the part beyond is cut at half the edge."""
    from benchmarks import segmentation_heldout as heldout

    room = _heldout_style_room(
        heldout.photo("gravel", 0.7, (0.5, 0.42, 0.32), 0.9), heldout.paint((0.52, 0.44, 0.34)),
        size=(480, 360), window=(1.5, 4.0, 0.8, 2.3), sun=(-0.5, 0.0, 0.7), sun_power=3.0, seed=123, yaw=8,
    )  # fmt: skip
    mask = select_surface(room.photo, None, room.positives, room.negatives, surface="floor") > 127
    assert (mask & room.visible).sum() / (mask | room.visible).sum() > 0.65  # measured 0.685


@pytest.mark.parametrize(("beyond_texture", "cut"), [(0.1, True), (0.4, False)])
def test_a_weak_junction_cuts_off_only_what_is_far_smoother(beyond_texture: float, cut: bool) -> None:
    """A path of half the usual edge strength across the selection: what lies beyond it is cut off as
    walls when it has a tenth of the kept part's texture, not when it has 0.4 of it (a far floor
    whose pattern the photo no longer resolves)."""
    height, width = 60, 80
    selected = np.ones((height, width), bool)
    texture = np.ones((height, width), np.float32)
    texture[:30] = beyond_texture
    edge = np.zeros((height, width), np.float32)
    edge[30] = 0.6 * JUNCTION_EDGE
    path = np.full(width, 30)
    beyond = np.arange(height)[:, None] < path[None, :] - 1
    lightness = np.zeros((height, width), np.float32)
    assert _cut_off_beyond(lightness, texture, selected, edge, path, beyond, like_walls=True) is cut


@pytest.mark.parametrize(("reaching", "cut"), [(40, True), (16, False)])
def test_a_junction_cuts_off_walls_taken_on_one_side_of_the_frame_only(reaching: int, cut: bool) -> None:
    """Smoother walls beyond a strong path, taken with the floor over the left half of the columns only
    (the rest kept out by a sofa or their shade): they rise to the frame's top over all the columns
    they lie in and are cut off, though over half the frame's; a part that reaches the top over 0.4
    of its columns only (a floor beyond a strip, below walls the selection left out) is not."""
    height, width = 60, 80
    selected = np.ones((height, width), bool)
    selected[:30, width // 2 :] = False
    selected[:10, reaching : width // 2] = False
    texture = np.ones((height, width), np.float32)
    texture[:30] = 0.4
    edge = np.zeros((height, width), np.float32)
    edge[30] = 1.05 * JUNCTION_EDGE
    path = np.full(width, 30)
    beyond = np.arange(height)[:, None] < path[None, :] - 1
    lightness = np.zeros((height, width), np.float32)
    assert _cut_off_beyond(lightness, texture, selected, edge, path, beyond, like_walls=True) is cut


def test_a_floor_seen_through_a_doorway_is_not_cut_off_as_walls_taken_on_one_side() -> None:
    """Smoother floor beyond a strong path (a threshold), seen through a doorway in the middle of the
    frame: it reaches the frame's top over all the columns it lies in, but walls taken on one side run
    on to that side of the frame, and a part kept out on both sides of it is not cut off."""
    height, width = 60, 80
    selected = np.ones((height, width), bool)
    selected[:30, :30] = False
    selected[:30, 50:] = False
    texture = np.ones((height, width), np.float32)
    texture[:30] = 0.4
    edge = np.zeros((height, width), np.float32)
    edge[30] = 1.05 * JUNCTION_EDGE
    path = np.full(width, 30)
    beyond = np.arange(height)[:, None] < path[None, :] - 1
    lightness = np.zeros((height, width), np.float32)
    assert not _cut_off_beyond(lightness, texture, selected, edge, path, beyond, like_walls=True)


@pytest.mark.parametrize(
    ("darker", "bluer", "streaked", "cut"),
    [
        (0.3, 0.0, False, True),  # concrete walls over a concrete floor, one light on both
        (0.3, 0.1, False, False),  # the floor beyond a weak sun patch's edge, lit by the sky alone
        (0.1, 0.0, False, False),  # hardly darker: only a smoother part is walls
        (0.3, 0.0, True, False),  # the floor beyond a shadow's edge in one light, further foreshortened
    ],
)
def test_a_junction_cuts_off_walls_as_rough_as_the_floor_where_darker_in_one_light(
    darker: float, bluer: float, streaked: bool, cut: bool
) -> None:
    """A strong path across the selection with a part beyond it as rough as the part kept: it is cut
    off as walls where it is darker by JUNCTION_DIMMER or more, as warm as the floor (concrete walls
    over a concrete floor were kept with it: IoU 0.58-0.73, 0.98-0.99 cut) and its grain turns (walls
    measured 1.12-1.55 of the floor's), not where it is bluer (a floor beyond a sun patch's edge),
    hardly darker, or grained as the floor is beyond a shadow's edge (0.15-0.91)."""
    height, width = 60, 80
    rng = np.random.default_rng(3)
    selected = np.ones((height, width), bool)
    texture = np.ones((height, width), np.float32)
    edge = np.zeros((height, width), np.float32)
    edge[30] = 1.05 * JUNCTION_EDGE
    path = np.full(width, 30)
    beyond = np.arange(height)[:, None] < path[None, :] - 1
    # A floor's grain is foreshortened, blurred down the columns, the more the further it lies; walls'
    # is not.
    grain = rng.normal(0, 0.05, (height, width)).astype(np.float32)
    lightness = cv2.blur(grain, (1, 3))
    lightness[:30] = (cv2.blur(grain, (1, 7)) if streaked else grain)[:30] - darker
    chroma = np.zeros((height, width, 2), np.float32)  # blue and red against the mean
    chroma[:30, :, 0] = bluer / 2
    chroma[:30, :, 1] = -bluer / 2
    assert _cut_off_beyond(lightness, texture, selected, edge, path, beyond, True, chroma) is cut


def _clicks_iou(room: Any, surface: str) -> float:
    """The IoU of the mask clicks alone give on a benchmark room, its surface named as given."""
    from benchmarks.quality import modes

    _, positives, negatives = modes.clicks(room)
    mask = select_surface(room.photo, None, positives, negatives, focal_px=room.focal, surface=surface) > 127
    return float((mask & room.visible).sum() / (mask | room.visible).sum())


@pytest.mark.parametrize(
    "name",
    [
        "carpet, its far half in sun, white walls",  # a light edge across a floor whose far half looks plain
        "carpet, a thin strip of its lightness across it, white walls",  # a strip, the far carpet plain
        "top-down on planks, no wall in the frame",  # plank rows, no junction at all
    ],
)
def test_clicks_alone_on_a_named_floor_do_not_cut_it_along_an_edge_across_it(name: str) -> None:
    """Floors of benchmarks.segmentation_rooms' hard set (at 512 x 384) where the strongest path
    across the selection lies on the floor: cutting there lost 0.30-0.70 of IoU. Named as a floor,
    the mask is no worse than unnamed."""
    from benchmarks import segmentation_rooms

    spec = next(s for s in segmentation_rooms.HARD_SPECS if s.name == name)
    room = segmentation_rooms.build(spec, scale=0.5)
    assert _clicks_iou(room, "floor") >= _clicks_iou(room, "") - 0.01


def test_clicks_alone_on_a_named_floor_running_to_the_frame_top_are_not_cut() -> None:
    """A carpeted hall too large for its walls to be in the frame: the floor runs on to the top,
    its far part plain at the photo's size, and nothing but a sofa stands on it. There is no
    junction to cut at (the strongest path followed the sofa's outline and crossed the open floor
    on noise): named as a floor, the mask lost the far floor (IoU 0.998 -> 0.902 at 512 x 384)."""
    from benchmarks import segmentation_rooms as sr

    spec = sr.Spec(
        "big hall, carpet, the far floor reaching the top", (1024, 768), sr.carpet((0.42, 0.38, 0.34), seed=41),
        wall=(0.8, 0.79, 0.76), room=(24.0, 30.0, 3.0), boxes=sr._sofa(-0.9, 4.0, 1.8, 0.9, (0.3, 0.32, 0.38)),
        camera=(0.0, 0.3, 1.5), pitch=30, yaw=0, seed=41,
    )  # fmt: skip
    room = sr.build(spec, scale=0.5)
    assert _clicks_iou(room, "floor") >= _clicks_iou(room, "") - 0.01


def _wall_room(name: str) -> Any:
    """A room of benchmarks.segmentation_rooms' walls and ceilings at 512 x 384 (384 x 512)."""
    from benchmarks import segmentation_rooms

    return segmentation_rooms.build(
        next(s for s in segmentation_rooms.WALL_SPECS if s.name.startswith(name)), scale=0.5
    )


def _iou_of(room: Any, with_box: bool, monkeypatch: pytest.MonkeyPatch | None = None) -> float:
    """The IoU of the room's surface, named, from its clicks (and its box); with `monkeypatch`, as
    before walls and ceilings were cut at their junctions."""
    from benchmarks.quality import modes
    from services.segmentation import interactive, junctions

    if monkeypatch is not None:
        monkeypatch.setattr(interactive, "JUNCTIONS", {"floor": junctions.JUNCTIONS["floor"]})
        monkeypatch.setattr(interactive, "BOXED_JUNCTIONS", {})
    box, positives, negatives = modes.clicks(room)
    mask = select_surface(
        room.photo, box if with_box else None, positives, negatives, focal_px=room.focal, surface=room.surface
    )
    return iou(mask, room.visible.astype(np.uint8) * 255)


@pytest.mark.parametrize(
    ("name", "least"),
    [
        ("grey wall under a white ceiling", 0.8),  # measured 0.86; 0.69 before, the ceiling taken
        ("warm white wall, a lamp", 0.72),  # 0.76; 0.62 before, ceiling and floor taken, the camera rolled
    ],
)
def test_clicks_alone_on_a_named_wall_keep_it_between_its_junctions(name: str, least: float) -> None:
    """A wall of the ceiling's neutral white (chroma and texture tell them apart no better than a
    floor from walls of its colour): named as a wall, the selection stops at the junction."""
    assert _iou_of(_wall_room(name), with_box=False) > least


def test_clicks_alone_on_a_named_ceiling_keep_above_its_junction_with_the_walls() -> None:
    # measured 0.95; 0.85 before, the walls below it taken
    assert _iou_of(_wall_room("ceiling over cream walls"), with_box=False) > 0.92


def test_clicks_alone_on_a_white_ceiling_over_walls_alike_find_it_by_its_lightness() -> None:
    """Looking up at a ceiling over walls of its neutral white: chroma and texture see one surface,
    the walk left nothing as the rest and the request failed ("no background"). Lightness tells."""
    assert _iou_of(_wall_room("ceiling over grey walls, looking up"), with_box=False) > 0.95


@pytest.mark.parametrize(
    "name", ["grey wall under a white ceiling", "beige wall above a floor of its colour", "warm white wall, a lamp"]
)
def test_a_box_on_a_named_wall_leaves_out_the_strip_of_ceiling_or_floor_across_it(name: str) -> None:
    """GrabCut learns the background only outside the box: the strip of ceiling (of floor) inside it,
    of the wall's colour, was taken (IoU 0.77-0.82 before; 0.97-0.99 measured)."""
    assert _iou_of(_wall_room(name), with_box=True) > 0.95


@pytest.mark.parametrize("with_box", [False, True])
def test_a_named_wall_rising_past_the_frame_s_top_is_not_cut(with_box: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ceiling in view: the strongest path across the wall runs on its light's falloff (an edge of
    0.04, refused), and the mask is what it was without the cut."""
    room = _wall_room("grey wall rising past the frame's top")
    after = _iou_of(room, with_box)
    assert after >= _iou_of(room, with_box, monkeypatch) - 0.01


def _shadowed_wall(gain: float, top: float, fade: float) -> Any:
    """A wall paint (benchmarks.segmentation_rooms' `wall_albedo`) of the grey wall's colour with a
    shelf's shadow across its whole width: `gain` of the light just under the shelf at height `top`
    (metres), fading out over `fade` metres below it."""
    from benchmarks import segmentation_rooms

    base = np.array(segmentation_rooms.WALL_SPECS[0].wall, float)

    def albedo(u: np.ndarray, z: np.ndarray) -> np.ndarray:
        mottle = 1 + 0.05 * segmentation_rooms._fbm(u, z, 0.5, 43) + 0.02 * segmentation_rooms._fbm(u, z, 0.01, 44, 2)
        ramp = np.clip((z - (top - fade)) / fade, 0, 1)
        shade = np.where((z >= top - fade) & (z <= top), 1 + (gain - 1) * ramp, 1.0)
        return base[None] * (mottle * shade)[:, None]

    return albedo


@pytest.mark.parametrize("with_box", [False, True])
@pytest.mark.parametrize("top", [1.0, 1.6])
def test_a_shelf_s_shadow_across_a_named_wall_is_not_taken_for_its_junction(with_box: bool, top: float) -> None:
    """A shadow's straight edge across the whole wall is as strong as the wall's junction with the
    ceiling, and the wall beyond it reaches the frame's top (the box's): the wall above the shadow
    was cut off (IoU 0.32-0.59; 0.69 and 0.82 before junctions were cut, 0.86 and 0.99 with the
    ceiling cut at its junction). The wall beyond the shadow is the wall kept, in light and colour."""
    from dataclasses import replace

    from benchmarks import segmentation_rooms

    spec = replace(segmentation_rooms.WALL_SPECS[0], wall_albedo=_shadowed_wall(0.55, top, 0.25))
    room = segmentation_rooms.build(spec, scale=0.5)
    assert _iou_of(room, with_box) > (0.95 if with_box else 0.8)


def test_clicks_alone_leave_out_a_lighter_warm_rug_of_the_floor_s_pile() -> None:
    """A cream rug on a grey carpet, no sun: lighter by 1.0 log, stepping up over 0.45 at its edge,
    warmer by a sun's shift and of the carpet's pile, it passed for an unclipped sun patch and was
    taken into the floor (IoU 0.79; 1.00 before sun patches were taken)."""
    from benchmarks import segmentation_rooms as rooms
    from benchmarks.quality import modes

    rug = (-1.2, 2.2, 0.8, 3.6)
    spec = rooms.Spec(
        "cream rug on a grey carpet", (1024, 768), rooms.carpet((0.18, 0.18, 0.19), seed=41),
        wall=(0.7, 0.68, 0.64), camera=(0.0, 0.3, 1.5), pitch=28, yaw=-4, skirting=0.0, rug=rug,
        rug_albedo=rooms.carpet((0.55, 0.5, 0.42), seed=44), sun_strength=0.0, seed=41,
    )  # fmt: skip
    room = rooms.build(spec, scale=0.5)
    _, positives, negatives = modes.clicks(room)
    mask = select_surface(room.photo, None, positives, negatives, focal_px=room.focal, surface="floor") > 127
    assert (mask & room.visible).sum() / (mask | room.visible).sum() > 0.97


def test_clicks_alone_keep_the_floor_beyond_a_runner_across_it() -> None:
    """Planks with a runner across the room (benchmarks.segmentation_rooms' hard set at 1024 x 768):
    the cut took the planks beyond the runner, but only the part the clicks are on was kept (IoU
    0.66). The far part lies on the plane a runner's width beyond and looks like the planks just
    before the runner, so it joins; the runner itself stays out."""
    from benchmarks import segmentation_rooms
    from benchmarks.quality import modes

    spec = next(s for s in segmentation_rooms.HARD_SPECS if s.name.startswith("planks, a runner across"))
    room = segmentation_rooms.build(spec)
    _, positives, negatives = modes.clicks(room)
    mask = select_surface(room.photo, None, positives, negatives, focal_px=room.focal, surface="floor") > 127
    assert (mask & room.visible).sum() / (mask | room.visible).sum() > 0.95  # measured 0.975
    runner = ~room.visible & ~room.occluder & (np.arange(room.height)[:, None] > room.height * 0.3)
    assert (mask & runner).sum() < 0.02 * room.visible.sum()


def test_a_part_beyond_a_strip_wider_than_a_runner_or_unlike_the_floor_stays_out() -> None:
    """_with_parts_across_strips on a synthetic floor seen from 1 unit above, looking down at 45°:
    a part of the cut beyond a thin strip joins, one beyond a wide strip or of another colour does
    not."""
    from services.segmentation.interactive import Appearance, _with_parts_across_strips

    rng = np.random.default_rng(3)
    photo = np.clip(rng.normal(120, 12, (288, 384, 3)), 0, 255).astype(np.uint8)
    appearance = Appearance(photo)
    focal = 300.0
    # The plane's map (surface_scale.to_plane's form) for a camera 1 unit above the floor, pitched 45°
    # down: the floor's axes across and ahead, then its normal, applied to each pixel's ray.
    c = s = np.sqrt(0.5)
    intrinsics = np.array([[focal, 0, 192], [0, focal, 144], [0, 0, 1]])
    plane = np.array([[1, 0, 0], [0, -s, c], [0, c, s]]) @ np.linalg.inv(intrinsics)
    clicked = np.zeros((288, 384), np.uint8)
    clicked[200:, :] = 1
    near, far = np.zeros_like(clicked), np.zeros_like(clicked)
    near[150:195, :] = 1  # beyond a 5-row strip: a few centimetres on the plane
    far[40:100, :] = 1  # beyond a 100-row strip: well over a camera's height
    joined = _with_parts_across_strips(appearance, clicked | near, clicked.copy(), plane)
    assert joined[150:195].all()
    apart = _with_parts_across_strips(appearance, clicked | far, clicked.copy(), plane)
    assert not apart[40:100].any()
    tinted = photo.copy()
    tinted[150:195, :, 2] = np.clip(tinted[150:195, :, 2].astype(int) + 60, 0, 255).astype(np.uint8)
    other = _with_parts_across_strips(Appearance(tinted), clicked | near, clicked.copy(), plane)
    assert not other[150:195].any()


def _tiled_panel_on_a_wall_of_its_colour(width: int = 640, height: int = 480) -> tuple[np.ndarray, np.ndarray]:
    """A head-on wall painted beige with a panel of running-bond tiles of the same beige (darker
    joints) on its lower left, over a brown floor: the photo and the panel."""
    rng = np.random.default_rng(3)
    photo = np.broadcast_to(np.array([196, 204, 210], np.float32), (height, width, 3)).copy()
    photo[int(0.85 * height) :] = (70, 95, 120)
    top, bottom, right = int(0.3 * height), int(0.85 * height), int(0.62 * width)
    panel = np.zeros((height, width), bool)
    panel[top:bottom, :right] = True
    rows, cols = np.mgrid[0:height, 0:width]
    course = np.maximum(rows - top, 0) // 18
    shifted = cols + (course % 2) * 20
    joint = ((rows - top) % 18 < 2) | (shifted % 40 < 2)
    tone = rng.normal(0, 4, (height // 18 + 2, width // 40 + 3))[course, shifted // 40]
    photo[panel] += tone[panel, None]
    photo[panel & joint] -= 35
    photo += rng.normal(0, 2, photo.shape)
    return np.clip(photo, 0, 255).astype(np.uint8), panel


def test_clicks_alone_on_a_head_on_tiled_panel_leave_the_wall_of_its_colour_out() -> None:
    photo, panel = _tiled_panel_on_a_wall_of_its_colour()
    positives = np.array([[60.0, 360.0], [340.0, 360.0]])
    mask = select_surface(photo, None, positives, np.zeros((0, 2)), surface="wall")
    assert iou(mask, panel.astype(np.uint8) * 255) > 0.95


def test_a_tiled_panel_is_patterned_and_plain_paint_is_not() -> None:
    # Pooling on a plane facing the camera is for patterns only: on plain paint it blurs the edges.
    photo, panel = _tiled_panel_on_a_wall_of_its_colour()
    appearance = Appearance(photo)
    size = appearance.size
    small_panel = cv2.resize(panel.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    plain = np.zeros_like(small_panel)
    plain[: size[1] // 4, size[0] * 3 // 4 :] = 1
    assert _patterned(appearance, small_panel)
    assert not _patterned(appearance, plain)


def _stone_facade_over_a_street(width: int = 640, height: int = 480) -> tuple[np.ndarray, np.ndarray]:
    """A head-on stone facade (ashlar courses, darker joints) under a pale sky, over a street of
    nearly its colour (a kerb's shadow between): the photo and the facade."""
    rng = np.random.default_rng(4)
    photo = np.broadcast_to(np.array([225, 195, 160], np.float32), (height, width, 3)).copy()
    top, bottom = 110, 400
    rows, cols = np.mgrid[0:height, 0:width]
    facade = np.zeros((height, width), bool)
    facade[top:bottom] = True
    photo[facade] = (150, 165, 180)
    course = np.maximum(rows - top, 0) // 30
    shifted = cols + (course % 2) * 30
    joint = ((rows - top) % 30 < 2) | (shifted % 60 < 2)
    tone = rng.normal(0, 6, (height // 30 + 2, width // 60 + 3))[course, shifted // 60]
    photo[facade] += tone[facade, None]
    photo[facade & joint] -= 40
    photo[bottom : bottom + 3] = (60, 60, 60)
    photo[bottom + 3 :] = (120, 132, 145)
    photo += rng.normal(0, 3, photo.shape)
    return np.clip(photo, 0, 255).astype(np.uint8), facade


@pytest.mark.parametrize("box", [None, (20.0, 90.0, 620.0, 470.0)])
def test_a_facade_is_cut_at_the_street_with_a_box_as_without(box: tuple[float, float, float, float] | None) -> None:
    photo, facade = _stone_facade_over_a_street()
    positives = np.array([[150.0, 300.0], [480.0, 200.0]])
    mask = select_surface(photo, box, positives, np.zeros((0, 2)), surface="facade")
    assert iou(mask, facade.astype(np.uint8) * 255) > 0.85


def _blocks(shape: tuple[int, int], colour: tuple[int, int, int], seed: int, spread: float = 0.12) -> np.ndarray:
    """A surface of 12-pixel blocks whose brightness varies by `spread`, with sensor noise (float BGR)."""
    rng = np.random.default_rng(seed)
    height, width = shape
    gains = np.kron(rng.normal(1.0, spread, (height // 12 + 1, width // 12 + 1, 1)), np.ones((12, 12, 1)))
    return np.array(colour, np.float32) * gains[:height, :width] + rng.normal(0, 4, (height, width, 3))


def test_a_box_and_clicks_leave_out_a_rug_inside_the_box_like_nothing_outside_it() -> None:
    """GrabCut learns the background only outside the box: a rug inside it, unlike the wall above
    the box, was learnt as floor and taken whole. The clicks' walk is sure it is not the floor."""
    photo = _blocks((480, 640), (110, 140, 170), 1)
    photo[:200] = _blocks((200, 640), (200, 200, 195), 2, spread=0.02)
    photo[300:400, 220:420] = _blocks((100, 200), (60, 110, 60), 3)
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    positives = np.array([[100.0, 440.0], [540.0, 440.0]])
    mask = select_surface(photo, (5.0, 195.0, 635.0, 475.0), positives, np.zeros((0, 2)))
    assert (mask[300:400, 220:420] > 127).mean() < 0.05
    floor = np.zeros((480, 640), bool)
    floor[200:] = True
    floor[300:400, 220:420] = False
    assert (mask[floor] > 127).mean() > 0.95


def test_a_box_and_clicks_keep_the_surface_in_a_canopy_s_shade() -> None:
    """Shade darkens the cladding and shifts its chroma a little towards the sky's: it keeps the
    surface's chroma, so the walk's "sure not" does not take it from the cut."""
    photo = _blocks((480, 640), (120, 150, 185), 4)
    shade = np.clip(photo[100:160, 40:600], 0, 255).astype(np.uint8)
    photo[100:160, 40:600] = linear_to_srgb(srgb_to_linear(shade) * np.array([0.43, 0.40, 0.37], np.float32))
    photo[:100] = _blocks((100, 640), (215, 225, 230), 5, spread=0.02)
    photo[420:] = _blocks((60, 640), (90, 90, 90), 6, spread=0.05)
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    positives = np.array([[100.0, 380.0], [540.0, 380.0]])
    mask = select_surface(photo, (5.0, 95.0, 635.0, 425.0), positives, np.zeros((0, 2)))
    assert (mask[100:160, 40:600] > 127).mean() > 0.95
    assert (mask[:95] > 127).mean() < 0.05


def test_a_box_and_clicks_keep_the_floor_beyond_a_runner_across_it() -> None:
    """The walk is sure a pale runner across the box, like the wall above it, is not the floor: as
    probable background it parted the floor, and the far part, away from the clicks, was dropped.
    A piece that borders two large parts of the walk's surface lies across it and stays the cut's
    to decide (measured: the far floor 0.0 without that rule, 1.0 with it)."""
    photo = _blocks((480, 640), (110, 140, 170), 7)
    photo[:150] = _blocks((150, 640), (200, 200, 195), 8, spread=0.02)
    photo[260:300] = _blocks((40, 640), (195, 200, 200), 9, spread=0.02)
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    positives = np.array([[100.0, 420.0], [540.0, 420.0]])
    mask = select_surface(photo, (5.0, 145.0, 635.0, 475.0), positives, np.zeros((0, 2)))
    assert (mask[155:255] > 127).mean() > 0.95


def test_a_box_and_clicks_on_a_motif_s_lines_take_its_squares_too() -> None:
    """The walk on the invariant features is sure the navy squares are not the beige lines clicked:
    a two-colour motif's other colour, in many pieces all over the box, stays the cut's to decide
    (measured 0.988; 0.566 with the walk's "sure not" taken as it is)."""
    photo, floor, positives, negatives = motif_floor(tiles=8)
    ys, xs = np.nonzero(floor)
    box = (float(xs.min()) - 8, float(ys.min()) - 8, float(xs.max()) + 8, float(ys.max()) + 8)
    assert iou(select_surface(photo, box, positives, negatives), floor) > 0.95


def test_pooled_texture_rising_with_the_plane_s_scale_is_levelled_on_the_first_mask() -> None:
    """A pattern's edges are a pixel or two wide whatever its size on the plane, so its texture
    energy per pixel rises further off: pooled, the far rows read as a rougher surface. The rise
    along the plane's scale on the first mask is taken out; a fall (a pattern blurred below a pixel,
    walls smoother beyond it) is left."""
    rows, cols = 150, 200
    chroma = np.zeros((rows, cols, 2), np.float32)
    graph = slic(np.zeros((rows, cols, 3), np.float32), 10)
    plane = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, -60.0]])  # the horizon at y = 60
    surface = np.zeros((rows, cols), bool)
    surface[80:] = True
    depth = np.broadcast_to(np.arange(rows, dtype=np.float32)[:, None] + 0.5 - 60, (rows, cols))
    centre = graph.mean(np.broadcast_to(np.arange(rows, dtype=np.float32)[:, None], (rows, cols)))

    def far_minus_near(energy: np.ndarray) -> float:
        scaled = surface_scale.scaled_appearance(chroma, energy, graph, 1.0, plane, surface, np.zeros_like(surface))
        assert scaled is not None
        texture = scaled.descriptors[:, 3]
        return float(np.median(texture[(centre > 85) & (centre < 95)]) - np.median(texture[centre > 140]))

    # Energy as step edges give it: as the square root of the plane's area a pixel covers, ~ depth^-1.5.
    rising = (0.02 * (90 / np.maximum(depth, 1)) ** 1.5).astype(np.float32)
    assert abs(far_minus_near(rising)) < 0.5  # measured 0.12 (1.44 scale units before)
    falling = (0.02 * (np.maximum(depth, 1) / 90) ** 1.5).astype(np.float32)
    assert far_minus_near(falling) < -1.5  # measured -1.81, as before


def test_clicks_alone_on_one_colour_of_a_checker_take_the_other_colour_too() -> None:
    """Clicks all on the yellow squares of a yellow and grey checker: the first mask is the yellow
    squares alone, whose lines (the joints with the grey, on its edge) fixed no plane, so the walk on
    the plane never ran and the grey squares stayed out (IoU 0.43). The mask's convex hull fixes it."""
    from benchmarks import segmentation_heldout as heldout

    spec = heldout.Spec(
        "test", heldout.checker((0.7, 0.6, 0.15), (0.4, 0.4, 0.42), 0.2), heldout._alike(heldout.WHITE), heldout.WHITE,
        "floor", pitch=-40, camera=(2.2, 0.4, 1.7), boxes=heldout._sofa(0.5, 3.5, 1.8, 0.9, (0.3, 0.3, 0.5)),
        clicks=3, seed=142, surface="floor", size=(960, 720),
    )  # fmt: skip
    room = heldout.build(spec)
    mask = select_surface(room.photo, None, room.positives, room.negatives, surface="floor") > 127
    assert (mask & room.visible).sum() / (mask | room.visible).sum() > 0.9  # measured 0.986
