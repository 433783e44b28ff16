"""make quality: swaps of generated scenes with a known camera, measured against ground truth.

Each scene is a floor rectangle of known size seen by a camera of known field of view, pitch and
yaw, covered by an old material under a known light, with a dark occluder standing on it. The
ground truth is the same view with the new material, rendered by supersampling. For each hint
mode the pipeline's stage functions run in this process and are scored in-surface (the visible
floor, the occluder excluded): PSNR and SSIM of the swap, the plane's angle error (normal from the
quad with the focal length the geometry stage finds or assumes), and the scale error (the
rectangle's aspect ratio, which sets the default tiling). Modes that need a depth or segmentation
model are reported as not measurable: none can be downloaded here.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import cv2
import numpy as np

from renderkit import scenes
from renderkit.homography import default_focal, focal_from_rectangle, quad_homography, rectangle_aspect
from renderkit.imaging import linear_to_srgb, srgb_to_linear
from services.depth.server import quad_plane
from services.projection.composite import project_material
from services.segmentation.interactive import grabcut_mask
from services.segmentation.masks import polygon_mask

WIDTH, HEIGHT = 1024, 768
FLOOR_M = (4.0, 5.0)
SWATCH_M = 0.5


@dataclass(frozen=True)
class View:
    """A camera looking at the floor."""

    fov_deg: float
    pitch_deg: float  # downwards from horizontal; small values graze the floor
    yaw_deg: float


VIEWS = [
    View(60, 35, 0),
    View(60, 35, 20),
    View(45, 25, -15),
    View(75, 45, 10),
    View(60, 15, 5),
    View(50, 12, -25),
    # Head-on views leave the focal length undetermined: the 60 degree default is then wrong.
    View(45, 30, 0),
    View(80, 40, 0),
]


@dataclass(frozen=True)
class KnownScene:
    photo: np.ndarray
    truth: np.ndarray
    quad: np.ndarray
    visible_floor: np.ndarray  # bool, the floor minus the occluder
    occluder: np.ndarray  # bool
    focal: float
    normal: np.ndarray  # the floor's normal in camera coordinates


def camera_scene(view: View, old: np.ndarray, new: np.ndarray) -> KnownScene:
    focal = 0.5 * WIDTH / math.tan(math.radians(view.fov_deg) / 2)
    K = np.array([[focal, 0, WIDTH / 2], [0, focal, HEIGHT / 2], [0, 0, 1]])
    p, y = math.radians(view.pitch_deg), math.radians(view.yaw_deg)
    # World: floor on z = 0, camera 1.6 m up looking along +y, pitched down, turned by yaw.
    Rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    look = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)  # world (x, y, z) -> camera (x, -z, y)
    Rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    R = Rx @ look @ Rz
    centre = np.array([0.0, 0.0, 1.6])
    w, d = FLOOR_M
    near = 1.6 / math.tan(p + math.radians(view.fov_deg) * HEIGHT / WIDTH / 2) + 0.3
    corners = np.array([[-w / 2, near + d, 0], [w / 2, near + d, 0], [w / 2, near, 0], [-w / 2, near, 0]])
    cam = (R @ (corners - centre).T).T
    quad = (K @ cam.T).T
    quad = quad[:, :2] / quad[:, 2:]
    H = quad_homography(quad)
    light = scenes.light_field(WIDTH, HEIGHT)
    floor_mask = polygon_mask(quad, WIDTH, HEIGHT) > 127
    light = light / float(np.median(light[floor_mask]))
    repeats = (w / SWATCH_M, d / SWATCH_M)
    wall = srgb_to_linear(np.full((HEIGHT, WIDTH, 3), (185, 210, 222), np.uint8)) * light[..., None]
    before = np.where(
        floor_mask[..., None], scenes.sample_supersampled(old, H, repeats, WIDTH, HEIGHT) * light[..., None], wall
    )
    after = np.where(
        floor_mask[..., None], scenes.sample_supersampled(new, H, repeats, WIDTH, HEIGHT) * light[..., None], wall
    )
    occluder = np.zeros((HEIGHT, WIDTH), bool)
    cx, cy = np.mean(quad[2:, 0]) * 0.5 + WIDTH * 0.25, np.mean(quad[:, 1]) + 0.15 * HEIGHT
    occluder[int(cy - 0.08 * HEIGHT) : int(cy + 0.05 * HEIGHT), int(cx - 0.1 * WIDTH) : int(cx + 0.1 * WIDTH)] = True
    dark = srgb_to_linear(np.array([[[45, 50, 75]]], np.uint8))
    before[occluder] = dark
    after[occluder] = dark
    normal = R @ np.array([0.0, 0.0, 1.0])
    return KnownScene(
        photo=linear_to_srgb(before),
        truth=linear_to_srgb(after),
        quad=quad,
        visible_floor=floor_mask & ~occluder,
        occluder=occluder,
        focal=focal,
        normal=normal,
    )


def ssim(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """Mean SSIM (Gaussian window, sigma 1.5) of the grey images over a region."""
    x = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY).astype(np.float64)
    y = cv2.cvtColor(b, cv2.COLOR_BGR2GRAY).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s[region].mean())


def plane_errors(scene: KnownScene) -> tuple[float, float]:
    """(angle error in degrees, relative aspect error) of the geometry stage's estimate from the quad."""
    H = quad_homography(scene.quad)
    focal = focal_from_rectangle(H, WIDTH, HEIGHT) or default_focal(WIDTH, HEIGHT)
    K_inv = np.linalg.inv(np.array([[focal, 0, WIDTH / 2], [0, focal, HEIGHT / 2], [0, 0, 1]]))
    normal = np.cross(K_inv @ H[:, 0], K_inv @ H[:, 1])
    normal /= np.linalg.norm(normal)
    angle = math.degrees(math.acos(min(1.0, abs(float(normal @ scene.normal)))))
    aspect = rectangle_aspect(H, focal, WIDTH, HEIGHT)
    return angle, abs(aspect / (FLOOR_M[0] / FLOOR_M[1]) - 1)


def swap(scene: KnownScene, new: np.ndarray, mask: np.ndarray) -> np.ndarray:
    plane = quad_plane(scene.quad, WIDTH, HEIGHT)
    H = np.array(plane.homography.m).reshape(3, 3)
    return project_material(scene.photo, new, mask, H, FLOOR_M[0] / SWATCH_M, FLOOR_M[1] / SWATCH_M)


def main() -> None:
    old, new = scenes.carpet_texture(256), scenes.plank_texture(256)
    rows: dict[str, list[tuple[float, float]]] = {"quad": [], "mask only": [], "points + quad": [], "model": []}
    angles, scale_errors = [], []
    print(f"{'view':<22} {'quad PSNR/SSIM':>16} {'points+quad PSNR/SSIM':>22} {'plane err':>10} {'aspect err':>11}")
    for view in VIEWS:
        scene = camera_scene(view, old, new)
        inner = cv2.erode(scene.visible_floor.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        quad_mask = polygon_mask(scene.quad, WIDTH, HEIGHT)
        quad_out = swap(scene, new, quad_mask)
        rows["quad"].append((scenes.psnr(quad_out, scene.truth, inner), ssim(quad_out, scene.truth, inner)))
        ys, xs = np.nonzero(scene.visible_floor)
        box = (float(xs.min()) - 10, float(ys.min()) - 10, float(xs.max()) + 10, float(ys.max()) + 10)
        occ_y, occ_x = np.nonzero(scene.occluder)
        positives = np.array([[xs.min() + 40, ys.max() - 10], [xs.max() - 40, ys.max() - 10]], float)
        negatives = np.array([[occ_x.mean(), occ_y.mean()]])
        points_mask = grabcut_mask(scene.photo, box, positives, negatives)
        points_out = swap(scene, new, points_mask)
        rows["points + quad"].append(
            (scenes.psnr(points_out, scene.truth, inner), ssim(points_out, scene.truth, inner))
        )
        angle, aspect_error = plane_errors(scene)
        angles.append(angle)
        scale_errors.append(aspect_error)
        q, pq = rows["quad"][-1], rows["points + quad"][-1]
        print(
            f"fov {view.fov_deg:>2.0f} pitch {view.pitch_deg:>2.0f} yaw {view.yaw_deg:>3.0f}   "
            f"{q[0]:6.1f} dB / {q[1]:.3f}   {pq[0]:10.1f} dB / {pq[1]:.3f}   {angle:7.2f}°   {aspect_error:9.1%}"
        )
    print()
    print(f"{'mode':<14} {'median PSNR':>12} {'median SSIM':>12} {'target':>12}")
    targets = {"quad": "≥ 35 dB", "mask only": "≥ 28 dB", "points + quad": "", "model": ""}
    for mode, values in rows.items():
        if not values:
            print(f"{mode:<14} {'n/a':>12} {'n/a':>12} {targets[mode]:>12}   (needs a depth/segmentation model)")
            continue
        print(
            f"{mode:<14} {statistics.median(v[0] for v in values):>9.2f} dB "
            f"{statistics.median(v[1] for v in values):>12.3f} {targets[mode]:>12}"
        )
    print(
        f"\nplane angle error from the quad: median {statistics.median(angles):.2f}° (target ≤ 3°), "
        f"max {max(angles):.2f}°"
    )
    print(
        f"aspect (scale) error of the default tiling: median {statistics.median(scale_errors):.1%}, "
        f"max {max(scale_errors):.1%}"
    )


if __name__ == "__main__":
    main()
