"""Synthetic scenes with known geometry and light: ground truth for tests and benchmarks.

A scene is a room photo whose floor is a known rectangle (its quad and homography are exact) covered
by an old material under a known light field. The ground truth of a swap is the same room with the
new material under the same light, rendered independently of the pipeline by supersampling.

The bundled sample of the demo and the console (a furnished room photo with everything a swap of
its floor needs) is devstack.sample_room.sample_room, re-exported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from devstack.sample_room import SampleRoom as SampleRoom
from devstack.sample_room import sample_room as sample_room
from renderkit.homography import quad_homography
from renderkit.imaging import linear_to_srgb, polygon_mask, srgb_to_linear


@dataclass(frozen=True)
class Scene:
    """A synthetic room photo and what is known about it."""

    photo: np.ndarray  # uint8 BGR
    quad: np.ndarray  # (4, 2) floor rectangle corners in pixels
    homography: np.ndarray
    light: np.ndarray  # float32 light field, 1.0 at the floor's median
    floor_mask: np.ndarray  # uint8, 255 inside the quad (hard edge)
    floor_size_m: tuple[float, float]  # physical width (edge 0-1) and depth (edge 1-2)


def plank_texture(size: int = 512, seed: int = 1) -> np.ndarray:
    """A high-contrast wood-plank swatch (uint8 BGR): tone per plank, grain, dark joints."""
    rng = np.random.default_rng(seed)
    planks = 4
    plank_h = size // planks
    img = np.zeros((size, size, 3), np.float32)
    base = np.array([70, 120, 175], np.float32)  # BGR warm wood
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    for i in range(planks):
        tone = base * rng.uniform(0.65, 1.25)
        grain = 0.12 * np.sin(
            x / size * 2 * np.pi * rng.uniform(3, 9) + rng.uniform(0, 6) + 0.8 * np.sin(y / 7.0 + rng.uniform(0, 6))
        )
        band = slice(i * plank_h, (i + 1) * plank_h)
        img[band] = tone * (1 + grain[band])[..., None]
        img[i * plank_h : i * plank_h + 3] *= 0.35
        joint = int(rng.uniform(0.1, 0.9) * size)
        img[band, joint : joint + 3] *= 0.35
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def tile_texture(size: int = 512, tiles: int = 2, seed: int = 2) -> np.ndarray:
    """A ceramic-tile swatch (uint8 BGR): light tiles with dark grout."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), (200, 205, 215), np.float32)
    step = size // tiles
    for i in range(tiles):
        for j in range(tiles):
            img[i * step : (i + 1) * step, j * step : (j + 1) * step] *= rng.uniform(0.85, 1.05)
    for k in range(tiles):
        img[k * step : k * step + 6] = (70, 70, 75)
        img[:, k * step : k * step + 6] = (70, 70, 75)
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def carpet_texture(size: int = 256, seed: int = 3) -> np.ndarray:
    """A low-contrast plain floor (the 'before' material)."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), (150, 160, 170), np.float32) + rng.normal(0, 4, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def sample_supersampled(
    texture: np.ndarray, H: np.ndarray, repeats: tuple[float, float], width: int, height: int, factor: int = 4
) -> np.ndarray:
    """Ground-truth texturing: each pixel averages factor^2 point samples through the homography (linear light)."""
    tex = srgb_to_linear(texture)
    th, tw = tex.shape[:2]
    Hinv = np.linalg.inv(H)
    acc = np.zeros((height, width, 3), np.float32)
    offsets = (np.arange(factor) + 0.5) / factor
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    for oy in offsets:
        for ox in offsets:
            px, py = xs + ox - 0.5, ys + oy - 0.5
            w = Hinv[2, 0] * px + Hinv[2, 1] * py + Hinv[2, 2]
            u = (Hinv[0, 0] * px + Hinv[0, 1] * py + Hinv[0, 2]) / w
            v = (Hinv[1, 0] * px + Hinv[1, 1] * py + Hinv[1, 2]) / w
            tx = np.mod(u * repeats[0] * tw, tw).astype(np.int64) % tw
            ty = np.mod(v * repeats[1] * th, th).astype(np.int64) % th
            acc += tex[ty, tx]
    return acc / (factor * factor)


def light_field(width: int, height: int, seed: int = 4, sun: bool = False) -> np.ndarray:
    """Light as a linear multiplier: falloff from a window on the left and a soft shadow blob; with
    sun, also a sunlit parallelogram (sun through a window) 60 % brighter, its edges sharp."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    falloff = 0.45 + 0.75 * np.exp(-((x / width - 0.05) ** 2) / 0.25)
    cx, cy, r = 0.62 * width, 0.78 * height, 0.12 * width
    shadow = 1.0 - 0.45 * np.exp(-(((x - cx) ** 2 + ((y - cy) * 1.8) ** 2) / (r * r)))
    light = falloff * shadow
    if sun:
        slant = (x - 0.55 * width) - 0.6 * (y - 0.6 * height)
        across = np.clip(0.5 + (0.12 * width - np.abs(slant)), 0, 1)  # edges antialiased over ~1 px
        along = np.clip(0.5 + (0.18 * height - np.abs(y - 0.72 * height)), 0, 1)
        light = light * (1 + 0.6 * across * along)
    return light.astype(np.float32)


def room_scene(
    width: int = 1024,
    height: int = 768,
    floor_texture: np.ndarray | None = None,
    floor_repeats: tuple[float, float] = (6.0, 6.0),
) -> Scene:
    """A room with walls and a floor rectangle of known geometry under a known light."""
    quad = np.array(
        [
            [0.26 * width, 0.50 * height],
            [0.74 * width, 0.50 * height],
            [0.985 * width, 0.985 * height],
            [0.015 * width, 0.985 * height],
        ],
        np.float64,
    )
    H = quad_homography(quad)
    floor_mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(floor_mask, [np.round(quad).astype(np.int32)], 255)  # type: ignore[call-overload]
    light = light_field(width, height)
    median = float(np.median(light[floor_mask > 127]))
    light = light / median
    texture = floor_texture if floor_texture is not None else carpet_texture()
    floor = sample_supersampled(texture, H, floor_repeats, width, height) * light[..., None]
    wall_linear = srgb_to_linear(np.full((height, width, 3), (190, 215, 225), np.uint8)) * light[..., None]
    y = np.mgrid[0:height, 0:width][0]
    wall_linear *= (0.8 + 0.2 * (y / height))[..., None].astype(np.float32)
    inside = (floor_mask > 127)[..., None]
    photo = linear_to_srgb(np.where(inside, floor, wall_linear))
    # Antialias the floor's edge the way a camera would.
    soft = cv2.GaussianBlur(photo, (0, 0), 0.6)
    edge = cv2.dilate(floor_mask, np.ones((3, 3), np.uint8)) != cv2.erode(floor_mask, np.ones((3, 3), np.uint8))
    photo[edge] = soft[edge]
    return Scene(photo=photo, quad=quad, homography=H, light=light, floor_mask=floor_mask, floor_size_m=(4.0, 5.0))


def ground_truth_swap(scene: Scene, texture: np.ndarray, repeats: tuple[float, float]) -> np.ndarray:
    """The scene's photo with the floor re-covered by a texture under the scene's light (uint8 BGR)."""
    height, width = scene.photo.shape[:2]
    floor = sample_supersampled(texture, scene.homography, repeats, width, height) * scene.light[..., None]
    out = scene.photo.copy()
    inside = scene.floor_mask > 127
    out[inside] = linear_to_srgb(floor)[inside]
    return out


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR in dB of two uint8 images over the pixels where mask is set."""
    diff = a.astype(np.float64)[mask] - b.astype(np.float64)[mask]
    mse = float(np.mean(diff * diff))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# Known-camera scenes (the quality benchmark's and the geometry tests' ground truth): a floor seen
# from standing height, or a building's facade seen from the street.
CAMERA_SIZE = (1024, 768)
FLOOR_M = (4.0, 5.0)  # the floor rectangle's width (corner 0 to 1) and depth (corner 1 to 2)
CAMERA_HEIGHT_M = 1.6
FACADE_M = (8.0, 6.0)  # the facade's width and height
FACADE_DISTANCE_M = 9.0  # from the camera to the facade's plane
TILE_M = 0.5  # the physical size one swatch image covers


@dataclass(frozen=True)
class View:
    """A camera looking at the surface."""

    fov_deg: float
    pitch_deg: float  # downwards from horizontal (negative: upwards); small values graze a floor
    yaw_deg: float
    surface: str = "floor"  # or "facade"


@dataclass(frozen=True)
class KnownScene:
    """A photo of a surface with everything about it known."""

    photo: np.ndarray  # uint8 BGR: the old material
    truth: np.ndarray  # uint8 BGR: the new material through the quad, 1 swatch per TILE_M
    quad: np.ndarray  # the surface rectangle's corners in pixels
    visible_surface: np.ndarray  # bool, the surface minus the occluder
    occluder: np.ndarray  # bool
    light: np.ndarray  # float32 linear light, 1.0 at the surface's median
    focal: float
    normal: np.ndarray  # the surface's normal in camera coordinates
    edge_axes: tuple[
        np.ndarray, np.ndarray
    ]  # the rectangle's edge directions (corner 0 to 1, 1 to 2), camera coordinates
    size_m: tuple[float, float]  # the rectangle's width (corner 0 to 1) and height (corner 1 to 2)
    plane_distance_m: float  # from the camera to the surface's plane


def camera_scene(
    view: View, old: np.ndarray, new: np.ndarray, size: tuple[int, int] = CAMERA_SIZE, supersample: int = 4
) -> KnownScene:
    """A FLOOR_M floor seen from CAMERA_HEIGHT_M (or a FACADE_M facade FACADE_DISTANCE_M away) by a
    camera of known field of view, pitch and yaw, under a window's falloff, a soft shadow and a
    sharp-edged patch of sun, with a dark object in front of it; old and new are the swatches before
    and after (one per TILE_M), rendered by supersampling."""
    width, height = size
    focal = 0.5 * width / math.tan(math.radians(view.fov_deg) / 2)
    K = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    p, y = math.radians(view.pitch_deg), math.radians(view.yaw_deg)
    # World: ground on z = 0, camera CAMERA_HEIGHT_M up looking along +y, pitched, turned by yaw.
    Rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    look = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)  # world (x, y, z) -> camera (x, -z, y)
    Rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    R = Rx @ look @ Rz
    centre = np.array([0.0, 0.0, CAMERA_HEIGHT_M])
    if view.surface == "floor":
        w, d = FLOOR_M
        near = CAMERA_HEIGHT_M / math.tan(p + math.radians(view.fov_deg) * height / width / 2) + 0.3
        corners = np.array([[-w / 2, near + d, 0], [w / 2, near + d, 0], [w / 2, near, 0], [-w / 2, near, 0]])
        up, along_v, size_m, distance = (0.0, 0.0, 1.0), (0.0, -1.0, 0.0), FLOOR_M, CAMERA_HEIGHT_M
    else:  # a facade facing the camera: the plane y = FACADE_DISTANCE_M, its foot on the ground
        w, h = FACADE_M
        f = FACADE_DISTANCE_M
        forward = R.T @ np.array([0.0, 0.0, 1.0])  # the optical axis in world coordinates
        x = forward[0] * f / forward[1]  # the facade is centred where the camera looks
        corners = np.array([[x - w / 2, f, h], [x + w / 2, f, h], [x + w / 2, f, 0], [x - w / 2, f, 0]])
        up, along_v, size_m, distance = (0.0, -1.0, 0.0), (0.0, 0.0, -1.0), FACADE_M, FACADE_DISTANCE_M
    cam = (R @ (corners - centre).T).T
    quad = (K @ cam.T).T
    quad = quad[:, :2] / quad[:, 2:]
    H = quad_homography(quad)
    light = light_field(width, height, sun=True)
    floor_mask = polygon_mask(quad, width, height) > 127
    light = light / float(np.median(light[floor_mask]))
    repeats = (size_m[0] / TILE_M, size_m[1] / TILE_M)
    wall = srgb_to_linear(np.full((height, width, 3), (185, 210, 222), np.uint8)) * light[..., None]
    before = np.where(
        floor_mask[..., None], sample_supersampled(old, H, repeats, width, height, supersample) * light[..., None], wall
    )
    after = np.where(
        floor_mask[..., None], sample_supersampled(new, H, repeats, width, height, supersample) * light[..., None], wall
    )
    occluder = np.zeros((height, width), bool)
    cx, cy = np.mean(quad[2:, 0]) * 0.5 + width * 0.25, np.mean(quad[:, 1]) + 0.15 * height
    occluder[int(cy - 0.08 * height) : int(cy + 0.05 * height), int(cx - 0.1 * width) : int(cx + 0.1 * width)] = True
    dark = srgb_to_linear(np.array([[[45, 50, 75]]], np.uint8))
    before[occluder] = dark
    after[occluder] = dark
    return KnownScene(
        photo=linear_to_srgb(before),
        truth=linear_to_srgb(after),
        quad=quad,
        visible_surface=floor_mask & ~occluder,
        occluder=occluder,
        light=light,
        focal=focal,
        normal=R @ np.array(up),
        edge_axes=(R @ np.array([1.0, 0.0, 0.0]), R @ np.array(along_v)),
        size_m=size_m,
        plane_distance_m=distance,
    )


def rerender_surface(scene: KnownScene, texture: np.ndarray, H: np.ndarray, repeats: tuple[float, float]) -> np.ndarray:
    """The scene's truth with its visible floor re-covered by a texture through another homography
    (the ground truth of a swap whose texture placement follows a convention, not the quad)."""
    height, width = scene.photo.shape[:2]
    floor = linear_to_srgb(sample_supersampled(texture, H, repeats, width, height) * scene.light[..., None])
    out = scene.truth.copy()
    out[scene.visible_surface] = floor[scene.visible_surface]
    return out
