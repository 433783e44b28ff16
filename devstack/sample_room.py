"""The bundled sample: a furnished living room photographed by a known camera, and swatches to lay in it.

The room is ray-cast, not drawn: every pixel's ray from a pinhole camera meets the room's box (floor,
walls, ceiling) or a piece of furniture (boxes, cylinders, spheres) first, so occlusion, perspective
and the floor's texture coordinates are exact. Light is a window on the left wall (an area light
sampled at four points), sun through its panes projected onto the floor, ambient bounce, and
occlusion near walls and furniture; the furniture's soft shadows and the sun patch are rasterised
in floor coordinates and looked up through each pixel's floor position. The old floor is worn
ceramic tiles whose grout is box-filtered analytically over each pixel's footprint, so it does not
alias where the floor recedes. A lens blur, vignetting, sensor noise and JPEG finish the photo.

Everything a material swap needs comes with it: the floor's quad (a rectangle on the floor, exact),
the mask of the visible floor (furniture left out), the focal length, the camera's height and the
swatch's physical size.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from renderkit.imaging import linear_to_srgb, srgb_to_linear

# The room in metres: floor z = 0, x to the right, y away from the camera.
ROOM_X = (-2.3, 2.4)  # the left wall (with the window) and the right wall
ROOM_Y_BACK = 5.4  # the back wall
CEILING_M = 2.6
CAMERA_HEIGHT_M = 1.5
CAMERA_POSITION = (0.55, -0.35, CAMERA_HEIGHT_M)
CAMERA_PITCH_DEG = 17.0  # downwards
CAMERA_YAW_DEG = -12.0  # towards the window
HORIZONTAL_FOV_DEG = 72.0
WINDOW_Y = (2.35, 4.05)  # the window on the left wall, along it
WINDOW_Z = (0.85, 2.3)  # and its sill and head
SUN_DIRECTION = (0.58, -0.42, -0.70)  # from the sky into the room (normalised below)
TILE_OLD_M = 0.30  # the old floor's ceramic tiles
GROUT_OLD_M = 0.005
SWATCH_SIZE_M = (1.2, 0.8)  # every bundled swatch shows 1.2 m by 0.8 m of its material
SWATCH_PX_PER_M = 800  # 1.25 mm per swatch pixel: finer than the nearest floor pixel (about 2 mm)
# The rectangle on the floor whose image is the quad: corner 0 near left, 1 far left, 2 far right,
# 3 near right, so the swatch's width (the planks' length) runs away from the camera.
QUAD_X = (-1.55, 1.05)
QUAD_Y = (1.45, 4.6)

_FLOOR, _CEILING, _LEFT, _RIGHT, _BACK = range(5)
_FIRST_OBJECT = 8


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: principal point at the image centre, square pixels, pixel centres on integers."""

    width: int
    height: int
    focal: float
    position: np.ndarray  # (3,) world
    rotation: np.ndarray  # (3, 3) world to camera (x right, y down, z forward)

    @property
    def K(self) -> np.ndarray:
        """The intrinsic matrix."""
        return np.array([[self.focal, 0, self.width / 2], [0, self.focal, self.height / 2], [0, 0, 1]])

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points (N, 3) to pixels (N, 2)."""
        cam = (self.rotation @ (np.asarray(points, np.float64) - self.position).T).T
        pix = (self.K @ cam.T).T
        return np.asarray(pix[:, :2] / pix[:, 2:], np.float64)

    def rays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each pixel's ray direction in world coordinates (three float32 arrays, not normalised)."""
        ys, xs = np.mgrid[0 : self.height, 0 : self.width].astype(np.float32)
        cx = (xs - np.float32(self.width / 2)) / np.float32(self.focal)
        cy = (ys - np.float32(self.height / 2)) / np.float32(self.focal)
        r = self.rotation.astype(np.float32)  # camera to world is its transpose
        return (
            r[0, 0] * cx + r[1, 0] * cy + r[2, 0],
            r[0, 1] * cx + r[1, 1] * cy + r[2, 1],
            r[0, 2] * cx + r[1, 2] * cy + r[2, 2],
        )


def sample_camera(width: int, height: int) -> Camera:
    """The sample's camera at an image size (the field of view stays the same)."""
    focal = 0.5 * width / math.tan(math.radians(HORIZONTAL_FOV_DEG) / 2)
    p, y = math.radians(CAMERA_PITCH_DEG), math.radians(CAMERA_YAW_DEG)
    # The convention of scenes.camera_scene: world (x, y, z) -> camera (x, -z, y), turned, then pitched.
    Rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    look = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)
    Rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    return Camera(width, height, focal, np.array(CAMERA_POSITION, float), Rx @ look @ Rz)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box of furniture."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    colour: tuple[int, int, int]  # sRGB as BGR
    texture: float = 0.0  # fabric or wood noise, as a fraction of the albedo
    occludes: bool = True  # darkens what is near it (legs are too thin to matter)
    raised: bool = False  # stands on legs: its underside hides the ceiling from the floor below
    rounded: float = 0.0  # upholstery: how far in from each edge the padding bulges (metres)


@dataclass(frozen=True)
class Cylinder:
    """A vertical cylinder (a plant pot)."""

    centre: tuple[float, float]
    radius: float
    z: tuple[float, float]
    colour: tuple[int, int, int]
    texture: float = 0.0


@dataclass(frozen=True)
class Sphere:
    """A sphere (a clump of the plant's leaves)."""

    centre: tuple[float, float, float]
    radius: float
    colour: tuple[int, int, int]
    texture: float = 0.35


Primitive = Box | Cylinder | Sphere


def _furniture() -> list[Primitive]:
    """A sofa on short legs against the right wall, a sideboard on legs against the back wall, a
    coffee table on four legs, and a potted plant in the back left corner, all out of the sun's beam."""
    fabric, cushion, legs = (118, 124, 128), (128, 134, 139), (40, 48, 58)
    items: list[Primitive] = [
        # Sofa: base, back, arms, seat and back cushions, facing the window, and a mustard pillow.
        Box((1.45, 1.55, 0.09), (2.35, 3.75, 0.40), fabric, 0.04, raised=True, rounded=0.02),
        Box((2.13, 1.55, 0.40), (2.35, 3.75, 0.86), fabric, 0.04, rounded=0.04),
        Box((1.45, 1.55, 0.40), (2.13, 1.77, 0.63), fabric, 0.04, rounded=0.04),
        Box((1.45, 3.53, 0.40), (2.13, 3.75, 0.63), fabric, 0.04, rounded=0.04),
        Box((1.47, 1.79, 0.40), (2.12, 2.64, 0.51), cushion, 0.05, rounded=0.05),
        Box((1.47, 2.66, 0.40), (2.12, 3.51, 0.51), cushion, 0.05, rounded=0.05),
        Box((1.96, 1.80, 0.51), (2.13, 2.63, 0.80), cushion, 0.05, rounded=0.05),
        Box((1.96, 2.67, 0.51), (2.13, 3.50, 0.80), cushion, 0.05, rounded=0.05),
        Box((1.84, 3.12, 0.51), (1.96, 3.50, 0.83), (60, 150, 196), 0.05, rounded=0.06),
    ]
    for x in (1.48, 2.29):
        for y in (1.58, 3.68):
            items.append(Box((x, y, 0.0), (x + 0.05, y + 0.05, 0.09), legs, occludes=False))
    # Sideboard: a top, a carcass, three doors with handles, on four legs.
    wood, carcass = (70, 96, 128), (52, 70, 94)
    items.append(Box((-0.56, 4.96, 0.72), (1.16, 5.40, 0.75), wood, 0.04))
    items.append(Box((-0.55, 4.99, 0.16), (1.15, 5.40, 0.72), carcass, 0.03, raised=True))
    for i in range(3):
        x0 = -0.55 + i * 1.7 / 3
        items.append(Box((x0 + 0.004, 4.97, 0.165), (x0 + 1.7 / 3 - 0.004, 4.99, 0.715), wood, 0.04))
        items.append(Box((x0 + 0.23, 4.955, 0.62), (x0 + 0.34, 4.97, 0.635), (150, 156, 160), occludes=False))
    for x in (-0.5, 1.06):
        for y in (5.0, 5.32):
            items.append(Box((x, y, 0.0), (x + 0.04, y + 0.04, 0.16), legs, occludes=False))
    # Coffee table: a top on four slim legs, and a book on it.
    items.append(Box((0.25, 2.25, 0.38), (1.15, 2.95, 0.42), (62, 84, 112), 0.05, raised=True))
    for x in (0.29, 1.08):
        for y in (2.29, 2.88):
            items.append(Box((x, y, 0.0), (x + 0.035, y + 0.035, 0.38), (48, 62, 80), occludes=False))
    items.append(Box((0.45, 2.42, 0.42), (0.75, 2.64, 0.45), (70, 150, 185), 0.02))
    # A potted plant in the corner between the window wall and the back wall.
    items.append(Cylinder((-1.85, 4.95), 0.2, (0.0, 0.42), (88, 104, 150), 0.04))
    rng = np.random.default_rng(7)
    for _ in range(90):  # leaves: small clumps in a crown above the pot
        a, r = rng.uniform(0, 2 * math.pi), 0.3 * math.sqrt(rng.uniform())
        z = rng.uniform(0.5, 1.4) - 0.5 * r
        green = (int(rng.uniform(40, 80)), int(rng.uniform(115, 165)), int(rng.uniform(60, 105)))
        items.append(Sphere((-1.85 + r * math.cos(a), 4.95 + r * math.sin(a), z), rng.uniform(0.04, 0.075), green))
    return items


def _sun() -> np.ndarray:
    s = np.array(SUN_DIRECTION, float)
    return np.asarray(s / np.linalg.norm(s), np.float64)


def _window_panes() -> list[tuple[float, float, float, float]]:
    """The glass panes (y0, y1, z0, z1) of the window: a frame and a cross of mullions."""
    frame, bar = 0.07, 0.08
    y0, y1 = WINDOW_Y[0] + frame, WINDOW_Y[1] - frame
    z0, z1 = WINDOW_Z[0] + frame, WINDOW_Z[1] - frame
    ym, zm = (y0 + y1) / 2, z0 + 0.62 * (z1 - z0)
    return [
        (y0, ym - bar / 2, z0, zm - bar / 2),
        (ym + bar / 2, y1, z0, zm - bar / 2),
        (y0, ym - bar / 2, zm + bar / 2, z1),
        (ym + bar / 2, y1, zm + bar / 2, z1),
    ]


# ---- floor maps: light and wear in floor coordinates, looked up through each pixel's floor position


@dataclass(frozen=True)
class FloorMap:
    """A raster over the floor: pixel (i, j) is at x = ROOM_X[0] + (j + 0.5) * step, y = y0 + (i + 0.5) * step."""

    step: float
    y0: float = -1.0

    @property
    def shape(self) -> tuple[int, int]:
        return (
            math.ceil((ROOM_Y_BACK - self.y0) / self.step),
            math.ceil((ROOM_X[1] - ROOM_X[0]) / self.step),
        )

    def to_pixels(self, points: np.ndarray) -> np.ndarray:
        """Floor points (N, 2+) to this map's pixel coordinates (N, 2) as (column, row)."""
        pts = np.asarray(points, np.float64)[:, :2]
        return np.stack([(pts[:, 0] - ROOM_X[0]) / self.step - 0.5, (pts[:, 1] - self.y0) / self.step - 0.5], 1)

    def fill(self, raster: np.ndarray, polygon: np.ndarray, value: float = 1.0) -> None:
        """Fills a floor polygon (N, 2+) with sub-pixel precision."""
        pts = np.round(self.to_pixels(polygon) * 16).astype(np.int32)
        cv2.fillPoly(raster, [pts], (value,), cv2.LINE_AA, shift=4)

    def lookup(self, raster: np.ndarray, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
        """The raster at floor positions (bilinear)."""
        mx = (fx - np.float32(ROOM_X[0])) / np.float32(self.step) - np.float32(0.5)
        my = (fy - np.float32(self.y0)) / np.float32(self.step) - np.float32(0.5)
        return np.asarray(cv2.remap(raster, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))


def _shadow_outline(prim: Primitive, light: np.ndarray, is_direction: bool) -> np.ndarray | None:
    """The floor outline of a primitive's shadow from a point light (or a direction), as the convex
    hull of its bounding box's corners projected onto the floor."""
    lo, hi = _bounds(prim)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    if is_direction:
        ground = corners + light[None, :] * (corners[:, 2:] / -light[2])
    else:
        if np.any(corners[:, 2] >= light[2] - 0.05):
            return None
        ground = light + (corners - light) * (light[2] / (light[2] - corners[:, 2:]))
    hull = cv2.convexHull(ground[:, :2].astype(np.float32))
    return np.asarray(hull.reshape(-1, 2), np.float64)


def _light_maps(furniture: list[Primitive]) -> tuple[FloorMap, np.ndarray, np.ndarray, np.ndarray]:
    """The sun on the floor (0..1, its penumbra), the window light's shadows (0 lit .. 1 shadowed),
    and the light the sun patch bounces back into its surroundings."""
    grid = FloorMap(0.01)
    sun_dir = _sun()
    sun: np.ndarray = np.zeros(grid.shape, np.float32)
    for y0, y1, z0, z1 in _window_panes():
        pane = np.array([[ROOM_X[0], y0, z0], [ROOM_X[0], y1, z0], [ROOM_X[0], y1, z1], [ROOM_X[0], y0, z1]])
        grid.fill(sun, pane + sun_dir[None, :] * (pane[:, 2:] / -sun_dir[2]))
    for prim in furniture:  # the sun is kept off the furniture; any it would reach is shadowed
        outline = _shadow_outline(prim, sun_dir, True)
        if outline is not None:
            grid.fill(sun, outline, 0.0)
    sun = cv2.GaussianBlur(sun, (0, 0), 1.2)  # the sun's disc: a penumbra of a centimetre or two
    window_centre = np.array([ROOM_X[0], sum(WINDOW_Y) / 2, sum(WINDOW_Z) / 2])
    shadow: np.ndarray = np.zeros(grid.shape, np.float32)
    for prim in furniture:
        if isinstance(prim, Box) and not prim.occludes:
            continue
        outline = _shadow_outline(prim, window_centre, False)
        if outline is not None:
            layer = np.zeros(grid.shape, np.float32)
            grid.fill(layer, outline)
            shadow = np.maximum(shadow, layer)
    shadow = cv2.GaussianBlur(shadow, (0, 0), 9.0)  # a window is a large light: soft shadows
    bounce = cv2.GaussianBlur(sun, (0, 0), 45.0)
    return grid, sun, shadow, bounce


def _periodic_noise(shape: tuple[int, int], sigma: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise that tiles in both directions (unit standard deviation);
    sigma is (along rows, along columns) in pixels."""
    h, w = shape
    white = rng.standard_normal(shape, np.float32)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    kernel = np.exp(-2 * math.pi**2 * ((fy * sigma[0]) ** 2 + (fx * sigma[1]) ** 2))
    noise = np.fft.irfft2(np.fft.rfft2(white) * kernel, s=shape)
    return np.asarray((noise - noise.mean()) / (noise.std() + 1e-12), np.float32)


def _floor_wear(rng: np.random.Generator) -> tuple[FloorMap, np.ndarray]:
    """The old floor's wear as a multiplier (3 channels, BGR): soft stains, a lighter traffic path,
    scuffs and a few cracks, at 5 mm per map pixel."""
    grid = FloorMap(0.005)
    h, w = grid.shape
    coarse = rng.standard_normal((h // 40 + 2, w // 40 + 2), np.float32)
    low = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    low = cv2.GaussianBlur(low, (0, 0), 12)
    stains = np.clip((low - 0.45) * 1.6, 0, 1)  # blotches where the noise is high
    wear = np.ones((h, w, 3), np.float32)
    wear *= (1 - 0.14 * stains)[..., None] * np.array([0.97, 0.99, 1.0], np.float32)  # brownish: less blue
    # A path worn lighter and duller from the door (behind the camera) towards the window.
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    fx, fy = ROOM_X[0] + (xs + 0.5) * grid.step, grid.y0 + (ys + 0.5) * grid.step
    path = np.exp(-(((fx - 0.3 + 0.25 * fy) / 0.75) ** 2)) * np.clip(1.2 - fy / 4.0, 0, 1)
    wear *= (1 + 0.06 * path)[..., None]
    marks: np.ndarray = np.zeros((h, w), np.float32)
    for _ in range(260):  # scuffs: short dark arcs
        c = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        length, bend, angle = rng.uniform(6, 30), rng.uniform(-0.8, 0.8), rng.uniform(0, math.pi)
        t = np.linspace(-0.5, 0.5, 8)
        d = np.array([math.cos(angle), math.sin(angle)])
        n = np.array([-d[1], d[0]])
        pts = c + length * (t[:, None] * d + bend * (t[:, None] ** 2 - 0.25) * n)
        cv2.polylines(marks, [np.round(pts * 16).astype(np.int32)], False, (rng.uniform(0.3, 0.8),), 1, cv2.LINE_AA, 4)
    for _ in range(9):  # cracks: jagged lines across a tile
        p = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        pts = [p]
        heading = rng.uniform(0, 2 * math.pi)
        for _ in range(10):
            heading += rng.uniform(-0.6, 0.6)
            p = p + rng.uniform(3, 7) * np.array([math.cos(heading), math.sin(heading)])
            pts.append(p)
        cv2.polylines(marks, [np.round(np.array(pts) * 16).astype(np.int32)], False, (1.0,), 1, cv2.LINE_AA, 4)
    marks = cv2.GaussianBlur(marks, (0, 0), 0.6)
    wear *= (1 - 0.35 * np.clip(marks, 0, 1))[..., None]
    return grid, wear


def _box_filtered_grout(coord: np.ndarray, footprint: np.ndarray, period: float, width: float) -> np.ndarray:
    """The share of each pixel's footprint that falls on grout lines (width wide at the start of
    every period), exactly: the difference of the pattern's integral over the footprint."""

    def integral(x: np.ndarray) -> np.ndarray:
        cells = np.floor(x / np.float32(period))
        return cells * np.float32(width) + np.minimum(x - cells * np.float32(period), np.float32(width))

    half = np.maximum(footprint, np.float32(1e-4)) * np.float32(0.5)
    return (integral(coord + half) - integral(coord - half)) / (2 * half)


def _old_floor_albedo(fx: np.ndarray, fy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Worn beige ceramic tiles with dirty grout (linear BGR albedo) at floor positions."""
    # Each pixel's footprint on the floor, for filtering the grout.
    wx = np.abs(np.diff(fx, axis=1, append=fx[:, -1:])) + np.abs(np.diff(fx, axis=0, append=fx[-1:]))
    wy = np.abs(np.diff(fy, axis=1, append=fy[:, -1:])) + np.abs(np.diff(fy, axis=0, append=fy[-1:]))
    ox, oy = fx - np.float32(ROOM_X[0] + 0.07), fy - np.float32(0.11)
    gx = _box_filtered_grout(ox, wx, TILE_OLD_M, GROUT_OLD_M)
    gy = _box_filtered_grout(oy, wy, TILE_OLD_M, GROUT_OLD_M)
    grout = 1 - (1 - gx) * (1 - gy)
    # Per tile: its own shade and tint, and a faint gradient across it (glaze thickness).
    n = 64
    shade = rng.normal(1.0, 0.045, (n, n)).astype(np.float32)
    tint = rng.normal(0.0, 0.01, (n, n, 3)).astype(np.float32)
    ix = np.mod(np.floor(ox / np.float32(TILE_OLD_M)).astype(np.int32), n)
    iy = np.mod(np.floor(oy / np.float32(TILE_OLD_M)).astype(np.int32), n)
    tile = _linear((150, 178, 192))  # a dated beige
    dirt = _linear((92, 102, 110))
    albedo = tile[None, None, :] * (shade[iy, ix][..., None] * (1 + tint[iy, ix]))
    # Speckle: the tiles' fine mottled glaze, 1.5 mm per texel, tiling every 0.384 m.
    speckle = _periodic_noise((256, 256), (1.2, 1.2), rng) * 0.5 + _periodic_noise((256, 256), (6, 6), rng) * 0.5
    texel = np.float32(1 / 0.0015)
    mottled = cv2.remap(speckle, fx * texel, fy * texel, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    albedo *= (1 + 0.06 * mottled)[..., None]
    albedo = albedo * (1 - grout)[..., None] + dirt[None, None, :] * grout[..., None]
    wear_grid, wear = _floor_wear(rng)
    return np.asarray(albedo * wear_grid.lookup(wear, fx, fy), np.float32)


# ---- ray casting


@dataclass
class _GBuffer:
    """Per pixel: the nearest hit's distance along the ray, what it is, its position and normal."""

    t: np.ndarray
    ident: np.ndarray
    pos: list[np.ndarray]
    normal: list[np.ndarray]


def _cast_room(rays: tuple[np.ndarray, np.ndarray, np.ndarray], origin: np.ndarray) -> _GBuffer:
    """The room's box from the inside: each ray's first wall, floor or ceiling."""
    dx, dy, dz = rays
    big = np.float32(1e9)
    tiny = np.float32(1e-9)

    def towards(plane: float, o: float, d: np.ndarray, positive: bool) -> np.ndarray:
        ok = d > tiny if positive else d < -tiny
        return np.where(ok, (np.float32(plane) - np.float32(o)) / np.where(ok, d, np.float32(1)), big)

    ts = [
        towards(0.0, origin[2], dz, False),
        towards(CEILING_M, origin[2], dz, True),
        towards(ROOM_X[0], origin[0], dx, False),
        towards(ROOM_X[1], origin[0], dx, True),
        towards(ROOM_Y_BACK, origin[1], dy, True),
    ]
    stack = np.stack(ts)
    ident = np.argmin(stack, axis=0).astype(np.int32)
    t = np.min(stack, axis=0)
    pos = [np.float32(origin[i]) + t * d for i, d in enumerate(rays)]
    normals = np.array([[0, 0, 1], [0, 0, -1], [1, 0, 0], [-1, 0, 0], [0, -1, 0]], np.float32)
    normal = [normals[:, i][ident] for i in range(3)]
    return _GBuffer(t, ident, pos, normal)


def _bounds(prim: Primitive) -> tuple[np.ndarray, np.ndarray]:
    """A primitive's bounding box (lowest and highest corner)."""
    if isinstance(prim, Box):
        return np.array(prim.lo), np.array(prim.hi)
    if isinstance(prim, Cylinder):
        (cx, cy), r = prim.centre, prim.radius
        return np.array([cx - r, cy - r, prim.z[0]]), np.array([cx + r, cy + r, prim.z[1]])
    c, r = np.array(prim.centre), prim.radius
    return c - r, c + r


def _window_of(camera: Camera, lo: np.ndarray, hi: np.ndarray, margin: int = 2) -> tuple[slice, slice] | None:
    """The image rectangle that a world box's projection covers (None when off the image)."""
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    pix = camera.project(corners)
    x0, y0 = np.floor(pix.min(0)).astype(int) - margin
    x1, y1 = np.ceil(pix.max(0)).astype(int) + margin
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, camera.width), min(y1, camera.height)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


Normals = tuple[np.ndarray, np.ndarray, np.ndarray]


def _hit(prim: Primitive, o: np.ndarray, d: Normals) -> tuple[np.ndarray, Normals]:
    """Distance along each ray (origin o, directions d) to a primitive (inf where missed) and the
    normal there."""
    if isinstance(prim, Box):
        return _hit_box(prim, o, d)
    if isinstance(prim, Cylinder):
        return _hit_cylinder(prim, o, d)
    return _hit_sphere(prim, o, d)


def _hit_box(box: Box, o: np.ndarray, d: Normals) -> tuple[np.ndarray, Normals]:
    """The slab test: the ray enters the box where it has entered all three slabs."""
    inf = np.float32(np.inf)
    t_near = np.full(d[0].shape, -inf, np.float32)
    t_far = np.full(d[0].shape, inf, np.float32)
    axis = np.zeros(d[0].shape, np.int8)
    sign = np.zeros(d[0].shape, np.float32)
    for i, di in enumerate(d):
        safe = np.where(np.abs(di) < 1e-9, np.float32(1e-9), di)
        t1 = (np.float32(box.lo[i]) - np.float32(o[i])) / safe
        t2 = (np.float32(box.hi[i]) - np.float32(o[i])) / safe
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        later = near > t_near
        axis = np.where(later, np.int8(i), axis)
        sign = np.where(later, -np.sign(safe), sign)
        t_near, t_far = np.maximum(t_near, near), np.minimum(t_far, far)
    t = np.where((t_far >= t_near) & (t_near > 0), t_near, inf)
    nx, ny, nz = (np.where(axis == i, sign, np.float32(0)) for i in range(3))
    return t, (nx, ny, nz)


def _hit_cylinder(cyl: Cylinder, o: np.ndarray, d: Normals) -> tuple[np.ndarray, Normals]:
    """The side (a quadratic in the horizontal plane) or, seen from above, the top."""
    dx, dy, dz = d
    (cx, cy), r = cyl.centre, np.float32(cyl.radius)
    ex, ey = np.float32(o[0] - cx), np.float32(o[1] - cy)
    a = dx * dx + dy * dy
    b = 2 * (dx * ex + dy * ey)
    c = ex * ex + ey * ey - r * r
    disc = b * b - 4 * a * c
    ts = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    zs = np.float32(o[2]) + ts * dz
    side = (disc >= 0) & (ts > 0) & (zs >= cyl.z[0]) & (zs <= cyl.z[1])
    tt = (np.float32(cyl.z[1]) - np.float32(o[2])) / np.where(np.abs(dz) < 1e-9, np.float32(-1e-9), dz)
    qx, qy = ex + tt * dx, ey + tt * dy
    top = (tt > 0) & (qx * qx + qy * qy <= r * r) & ~side
    t = np.where(side, ts, np.where(top, tt, np.float32(np.inf)))
    nx = np.where(side, (ex + ts * dx) / r, np.float32(0))
    ny = np.where(side, (ey + ts * dy) / r, np.float32(0))
    return t, (nx, ny, np.where(side, np.float32(0), np.float32(1)))


def _hit_sphere(sphere: Sphere, o: np.ndarray, d: Normals) -> tuple[np.ndarray, Normals]:
    """The nearer root of the ray's quadratic."""
    dx, dy, dz = d
    ex, ey, ez = (np.float32(o[i] - sphere.centre[i]) for i in range(3))
    r = np.float32(sphere.radius)
    a = dx * dx + dy * dy + dz * dz
    b = 2 * (dx * ex + dy * ey + dz * ez)
    c = ex * ex + ey * ey + ez * ez - r * r
    disc = b * b - 4 * a * c
    ts = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    t = np.where((disc >= 0) & (ts > 0), ts, np.float32(np.inf))
    return t, ((ex + ts * dx) / r, (ey + ts * dy) / r, (ez + ts * dz) / r)


def _cast_furniture(g: _GBuffer, camera: Camera, rays: tuple[np.ndarray, ...], furniture: list[Primitive]) -> None:
    """Each piece of furniture drawn over the room where it is nearer (a z-buffer)."""
    o = camera.position
    for k, prim in enumerate(furniture):
        lo, hi = _bounds(prim)
        window = _window_of(camera, lo, hi)
        if window is None:
            continue
        d = (rays[0][window], rays[1][window], rays[2][window])
        t, normal = _hit(prim, o, d)
        nearer = t < g.t[window]
        g.t[window] = np.where(nearer, t, g.t[window])
        g.ident[window] = np.where(nearer, _FIRST_OBJECT + k, g.ident[window])
        for i in range(3):
            g.pos[i][window] = np.where(nearer, np.float32(o[i]) + t * d[i], g.pos[i][window])
            g.normal[i][window] = np.where(nearer, normal[i], g.normal[i][window])


def _distance_to_box(pos: list[np.ndarray], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    squared = sum(
        np.maximum(np.maximum(np.float32(lo[i]) - p, p - np.float32(hi[i])), 0) ** 2 for i, p in enumerate(pos)
    )
    return np.sqrt(np.asarray(squared, np.float32))


# ---- shading


def _linear(bgr: tuple[int, int, int]) -> np.ndarray:
    """An sRGB colour (BGR) in linear light."""
    return np.asarray(srgb_to_linear(np.array([[bgr]], np.uint8))[0, 0], np.float32)


def _wall_albedo(g: _GBuffer, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Walls, skirting, window frame and a picture (linear BGR), and where the window's glass is."""
    h, w = g.t.shape
    x, y, z = g.pos
    ident = g.ident
    albedo = np.empty((h, w, 3), np.float32)
    albedo[:] = _linear((208, 220, 226))  # a warm white
    albedo[ident == _BACK] = _linear((188, 200, 196))  # a soft greige on the back wall
    albedo[ident == _CEILING] = _linear((236, 238, 240))
    # The skirting: 9 cm of white painted board, its top edge a thin shadowed line.
    low = (z < 0.1) & (ident >= _LEFT) & (ident <= _BACK)
    zl = z[low]
    skirting = albedo[low]
    skirting[zl < 0.09] = _linear((232, 236, 238))
    skirting[zl >= 0.09] *= 0.55
    skirting[(zl >= 0.085) & (zl < 0.09)] *= 0.8
    albedo[low] = skirting
    # The window: a white frame, mullions, the glass, and the reveal's shadow around it.
    glass = np.zeros((h, w), bool)
    view = _window_of(
        camera,
        np.array([ROOM_X[0], WINDOW_Y[0] - 0.05, WINDOW_Z[0] - 0.05]),
        np.array([ROOM_X[0], WINDOW_Y[1] + 0.05, WINDOW_Z[1] + 0.05]),
    )
    if view is not None:
        wy, wz, on_wall = y[view], z[view], ident[view] == _LEFT
        part = albedo[view]
        inside = on_wall & (wy > WINDOW_Y[0]) & (wy < WINDOW_Y[1]) & (wz > WINDOW_Z[0]) & (wz < WINDOW_Z[1])
        part[inside] = _linear((240, 242, 243))
        reveal = on_wall & ~inside & (wy > WINDOW_Y[0] - 0.012) & (wy < WINDOW_Y[1] + 0.012)
        reveal &= (wz > WINDOW_Z[0] - 0.03) & (wz < WINDOW_Z[1] + 0.012)
        part[reveal] *= 0.7
        panes = np.zeros(wy.shape, bool)
        for y0, y1, z0, z1 in _window_panes():
            panes |= inside & (wy > y0) & (wy < y1) & (wz > z0) & (wz < z1)
        glass[view] = panes
    # A framed print on the back wall, above the sideboard.
    px0, px1, pz0, pz1 = -0.2, 0.75, 1.15, 1.85
    view = _window_of(camera, np.array([px0, ROOM_Y_BACK, pz0]), np.array([px1, ROOM_Y_BACK, pz1]))
    if view is not None:
        vx, vz, part = x[view], z[view], albedo[view]
        on_pic = (ident[view] == _BACK) & (vx > px0) & (vx < px1) & (vz > pz0) & (vz < pz1)
        part[on_pic] = _linear((40, 44, 48))
        mat = on_pic & (vx > px0 + 0.025) & (vx < px1 - 0.025) & (vz > pz0 + 0.025) & (vz < pz1 - 0.025)
        part[mat] = _linear((235, 238, 240))
        art = np.full((140, 180, 3), (214, 226, 232), np.uint8)
        cv2.circle(art, (62, 70), 38, (92, 132, 196), -1, cv2.LINE_AA)
        cv2.rectangle(art, (96, 28), (150, 112), (120, 106, 70), -1, cv2.LINE_AA)
        cv2.ellipse(art, (110, 92), (44, 16), -20, 0, 360, (70, 90, 60), -1, cv2.LINE_AA)
        inner = mat & (vx > px0 + 0.12) & (vx < px1 - 0.12) & (vz > pz0 + 0.12) & (vz < pz1 - 0.12)
        u = (vx[inner] - (px0 + 0.12)) / (px1 - px0 - 0.24) * 179
        v = (pz1 - 0.12 - vz[inner]) / (pz1 - pz0 - 0.24) * 139
        part[inner] = srgb_to_linear(art)[np.clip(v, 0, 139).astype(int), np.clip(u, 0, 179).astype(int)]
    return albedo, glass


def _irradiance(g: _GBuffer, furniture: list[Primitive], camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """The light reaching each point (ambient bounce, the window as an area light, occlusion near
    walls and furniture), and the floor's sunlight (both linear, before albedo)."""
    x, y, z = g.pos
    nx, ny, nz = g.normal
    ident = g.ident
    # The window as four point lights over its area, facing into the room (+x).
    light = np.zeros(x.shape, np.float32)
    area = (WINDOW_Y[1] - WINDOW_Y[0]) * (WINDOW_Z[1] - WINDOW_Z[0]) / 4
    for fy in (0.25, 0.75):
        for fz in (0.25, 0.75):
            wy = WINDOW_Y[0] + fy * (WINDOW_Y[1] - WINDOW_Y[0])
            wz = WINDOW_Z[0] + fz * (WINDOW_Z[1] - WINDOW_Z[0])
            vx, vy, vz = np.float32(ROOM_X[0]) - x, np.float32(wy) - y, np.float32(wz) - z
            d2 = np.maximum(vx * vx + vy * vy + vz * vz, np.float32(0.05))
            inv = 1 / np.sqrt(d2)
            cos_p = np.maximum((nx * vx + ny * vy + nz * vz) * inv, 0)
            cos_w = np.maximum(-vx * inv, 0)
            light += np.float32(area / math.pi) * cos_p * cos_w / d2
    # Bounce light: dimmer far from the window and on surfaces facing away from it.
    distance = np.abs(x - np.float32(ROOM_X[0]))
    ambient = np.float32(0.2) * (1 + 0.5 * np.exp(-distance / np.float32(1.6))) * (1 - 0.12 * nx)
    ambient += np.where(nz < -0.5, np.float32(-0.04), np.float32(0))  # the ceiling gets the least
    # Occlusion where surfaces meet: the room's corners and edges.
    ao = np.ones(x.shape, np.float32)
    planes = [
        (z, _FLOOR),
        (np.float32(CEILING_M) - z, _CEILING),
        (x - np.float32(ROOM_X[0]), _LEFT),
        (np.float32(ROOM_X[1]) - x, _RIGHT),
        (np.float32(ROOM_Y_BACK) - y, _BACK),
    ]
    for dist, plane in planes:
        ao *= np.where(
            ident == plane, np.float32(1), 1 - np.float32(0.3) * np.exp(-np.maximum(dist, 0) / np.float32(0.12))
        )
    # Occlusion near furniture, on everything but the piece itself.
    floor = ident == _FLOOR
    for k, prim in enumerate(furniture):
        if isinstance(prim, Box) and not prim.occludes:
            reach, strength = 0.05, 0.45
        elif isinstance(prim, Sphere):  # leaves: light comes through between them
            reach, strength = 0.05, 0.25
        else:
            reach, strength = 0.12, 0.5
        lo, hi = _bounds(prim)
        window = _window_of(camera, lo - 3 * reach, hi + 3 * reach)
        if window is not None:
            d = _distance_to_box([p[window] for p in g.pos], lo, hi)
            own = ident[window] == _FIRST_OBJECT + k
            ao[window] *= np.where(own, np.float32(1), 1 - np.float32(strength) * np.exp(-d / np.float32(reach)))
        # What stands on legs hides the ceiling and walls from the floor beneath it.
        if isinstance(prim, Box) and prim.raised:
            lift = prim.lo[2]
            window = _window_of(camera, np.array([lo[0] - 3 * lift, lo[1] - 3 * lift, 0.0]), hi + 3 * lift)
            if window is not None:
                hidden = _underside_view_factor(x[window], y[window], prim.lo, prim.hi)
                ao[window] *= np.where(floor[window], 1 - np.float32(0.85) * hidden, np.float32(1))
    grid, sun, shadow, bounce = _light_maps(furniture)
    window_shadow = np.where(floor, grid.lookup(shadow, x, y), np.float32(0))
    sun_on_floor = np.where(floor, grid.lookup(sun, x, y), np.float32(0))
    bounced = np.where(floor, grid.lookup(bounce, x, y), np.float32(0))
    # The sun patch lights the floor around it too (the bounce to other surfaces is left out).
    total = (ambient + light * (1 - np.float32(0.8) * window_shadow) + np.float32(0.35) * bounced) * ao
    return total, sun_on_floor * np.float32(-_sun()[2])


def _underside_view_factor(x: np.ndarray, y: np.ndarray, lo: tuple[float, ...], hi: tuple[float, ...]) -> np.ndarray:
    """The share of the sky a floor point loses to a box's underside: the view factor from a small
    floor patch to the parallel rectangle lo..hi at height lo[2], by superposing corner rectangles."""
    h = np.float32(lo[2])

    def corner(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        a, b = np.abs(u) / h, np.abs(v) / h
        ra, rb = np.sqrt(1 + a * a), np.sqrt(1 + b * b)
        f = (a / ra * np.arctan(b / ra) + b / rb * np.arctan(a / rb)) / np.float32(2 * math.pi)
        return np.sign(u) * np.sign(v) * f

    x0, x1 = np.float32(lo[0]) - x, np.float32(hi[0]) - x
    y0, y1 = np.float32(lo[1]) - y, np.float32(hi[1]) - y
    return np.clip(corner(x1, y1) - corner(x0, y1) - corner(x1, y0) + corner(x0, y0), 0, 1)


@dataclass(frozen=True)
class SampleRoom:
    """The bundled sample: a room photo and everything a material swap of its floor needs."""

    photo: np.ndarray  # uint8 BGR, as decoded from photo_jpeg
    photo_jpeg: bytes  # the photo as a camera would store it (JPEG, quality 90)
    mask: np.ndarray  # uint8: 255 on the visible floor, 0 on walls and furniture, soft at edges
    swatch: np.ndarray  # uint8 BGR: oak planks, SWATCH_SIZE_M of floor
    swatch_size_m: tuple[float, float]
    quad: np.ndarray  # (4, 2) pixels: the floor rectangle quad_floor_m in the photo
    quad_floor_m: np.ndarray  # (4, 3) its corners in the room (metres, floor z = 0)
    focal_length_px: float
    camera_height_m: float
    camera: Camera
    floor: np.ndarray = field(repr=False)  # bool: the floor as seen (hard edges)
    furniture: np.ndarray = field(repr=False)  # bool: furniture pixels
    sun: np.ndarray = field(repr=False)  # bool: visible floor in full sun

    @property
    def quad_points(self) -> list[tuple[float, float]]:
        """The quad as a list of (x, y) points, as requests take it."""
        return [(float(x), float(y)) for x, y in self.quad]


def _quad_corners(camera: Camera) -> np.ndarray:
    """QUAD_X by QUAD_Y on the floor, its near edge moved back until the corners are in the photo
    (a photo wider than 3:2 sees less of the floor near the camera)."""
    (x0, x1), (y0, y1) = QUAD_X, QUAD_Y
    margin = 0.01 * camera.height
    while True:
        corners = np.array([[x0, y0, 0.0], [x0, y1, 0.0], [x1, y1, 0.0], [x1, y0, 0.0]])
        pix = camera.project(corners)
        inside = (pix >= margin).all() and (pix[:, 0] <= camera.width - margin).all()
        if (inside and (pix[:, 1] <= camera.height - margin).all()) or y0 >= y1 - 1.0:
            return corners
        y0 += 0.05


def sample_room(width: int = 1600, height: int = 1066, seed: int = 11) -> SampleRoom:
    """The bundled sample at an image size (landscape; the view keeps its 72 degree field of view)."""
    rng = np.random.default_rng(seed)
    camera = sample_camera(width, height)
    rays = camera.rays()
    furniture = _furniture()
    g = _cast_room(rays, camera.position)
    _cast_furniture(g, camera, rays, furniture)
    ident = g.ident
    floor = ident == _FLOOR
    furniture_px = ident >= _FIRST_OBJECT

    albedo, glass = _wall_albedo(g, camera)
    rows, cols = np.nonzero(floor)
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    # The floor plane's positions over the floor's bounding box (furniture pixels included, so the
    # footprint differences stay smooth up to the furniture's edges).
    dz = rays[2][y0:y1, x0:x1]
    t_floor = np.float32(-camera.position[2]) / np.minimum(dz, np.float32(-1e-6))
    ffx = np.float32(camera.position[0]) + t_floor * rays[0][y0:y1, x0:x1]
    ffy = np.float32(camera.position[1]) + t_floor * rays[1][y0:y1, x0:x1]
    floor_albedo = _old_floor_albedo(ffx, ffy, rng)
    sub = floor[y0:y1, x0:x1]
    albedo[y0:y1, x0:x1][sub] = floor_albedo[sub]
    for k, prim in enumerate(furniture):
        window = _window_of(camera, *_bounds(prim))
        if window is None:
            continue
        own = ident[window] == _FIRST_OBJECT + k
        shade = 1 + prim.texture * rng.standard_normal(int(own.sum()), np.float32)
        if isinstance(prim, Box) and prim.rounded:
            # Upholstery bulges: darker towards the edges of each face (the nearest face is the
            # one hit, the second nearest gives the distance to its edge).
            p = np.stack([g.pos[i][window][own] for i in range(3)])
            faces = np.concatenate(
                [p - np.array(prim.lo, np.float32)[:, None], np.array(prim.hi, np.float32)[:, None] - p]
            )
            edge = np.partition(faces, 1, axis=0)[1]
            shade *= 1 - np.float32(0.35) * np.exp(-np.maximum(edge, 0) / np.float32(prim.rounded))
        albedo[window][own] = _linear(prim.colour)[None, :] * shade[:, None]
    light, sunlight = _irradiance(g, furniture, camera)
    # Exposed as a phone would: the floor's typical light shows its colour as it is (0.75), and the
    # sun is 1.4 times as strong there, so its patch is bright but not clipped.
    typical = float(np.median(light[floor]))
    sunlight *= np.float32(1.4 * typical / -_sun()[2])
    radiance = albedo * ((light + sunlight) * np.float32(0.75 / typical))[..., None]
    # Through the glass: a bright, overexposed garden.
    sky = np.array([1.0, 0.97, 0.92], np.float32) * np.float32(4.0)
    z = g.pos[2]
    garden = (z - np.float32(WINDOW_Z[0])) / np.float32(WINDOW_Z[1] - WINDOW_Z[0])
    outside = sky[None, :] * np.clip(0.55 + 0.9 * garden[glass], 0.4, 1.0)[:, None]
    outside *= np.array([0.8, 1.0, 0.85], np.float32)[None, :] ** np.clip(1.2 - 1.6 * garden[glass], 0, 1)[:, None]
    radiance[glass] = outside

    developed = _camera_response(radiance, ident, rng)
    photo_jpeg = cv2.imencode(".jpg", developed, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    photo = cv2.imdecode(np.frombuffer(photo_jpeg, np.uint8), cv2.IMREAD_COLOR)

    corners = _quad_corners(camera)
    sun_mask = floor & (sunlight > 0.9 * float(sunlight.max()))
    return SampleRoom(
        photo=photo,
        photo_jpeg=photo_jpeg,
        mask=_soft_mask(floor),
        swatch=plank_swatch("oak"),
        swatch_size_m=SWATCH_SIZE_M,
        quad=camera.project(corners),
        quad_floor_m=corners,
        focal_length_px=camera.focal,
        camera_height_m=CAMERA_HEIGHT_M,
        camera=camera,
        floor=floor,
        furniture=furniture_px,
        sun=sun_mask,
    )


def _soft_mask(floor: np.ndarray) -> np.ndarray:
    """The floor's mask with its edges softened over about a pixel, as a matte would be."""
    hard = floor.astype(np.uint8) * 255
    soft = cv2.GaussianBlur(hard, (0, 0), 0.7)
    edge = cv2.dilate(hard, np.ones((3, 3), np.uint8)) != cv2.erode(hard, np.ones((3, 3), np.uint8))
    return np.where(edge, soft, hard)


def _camera_response(radiance: np.ndarray, ident: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What a phone camera makes of the (exposed) light: antialiased edges, lens blur, vignetting, a
    soft shoulder for highlights, sRGB, sensor noise (uint8 BGR)."""
    h, w = ident.shape
    # Edges of things are drawn hard by the ray casting; a camera integrates over each pixel.
    labels = ident.astype(np.uint8)
    edge = cv2.dilate(labels, np.ones((3, 3), np.uint8)) != cv2.erode(labels, np.ones((3, 3), np.uint8))
    np.copyto(radiance, cv2.GaussianBlur(radiance, (0, 0), 0.8), where=edge[..., None])
    radiance = cv2.GaussianBlur(radiance, (0, 0), 0.55)
    xs = (np.arange(w, dtype=np.float32) - np.float32(w / 2)) ** 2
    ys = (np.arange(h, dtype=np.float32) - np.float32(h / 2)) ** 2
    vignette = 1 - np.float32(0.28) * (ys[:, None] + xs[None, :]) / np.float32((w / 2) ** 2 + (h / 2) ** 2)
    radiance = radiance * vignette[..., None]
    # A soft shoulder above 0.8 instead of a hard clip (highlights roll off as on a phone).
    knee = np.float32(0.8)
    over = np.maximum(radiance - knee, 0)
    radiance = np.minimum(radiance, knee) + over / (1 + over / np.float32(0.2))
    srgb = linear_to_srgb(np.ascontiguousarray(radiance, np.float32)).astype(np.float32)
    # Noise that is stronger in the shadows; the chroma noise blotchier (demosaicing, denoising).
    noise = rng.standard_normal((h, w, 1), np.float32) * np.float32(2.0)
    noise = noise + 0.9 * cv2.resize(
        rng.standard_normal((h // 2, w // 2, 3), np.float32), (w, h), interpolation=cv2.INTER_LINEAR
    )
    srgb += noise * (np.float32(1.3) - srgb * np.float32(1 / 255))
    return np.clip(srgb + 0.5, 0, 255).astype(np.uint8)


# ---- swatches


@dataclass(frozen=True)
class Wood:
    """How a plank swatch looks."""

    colour: tuple[int, int, int]  # sRGB as BGR
    planks: int  # rows across the swatch's height
    contrast: float  # of the growth rings
    tone_spread: float  # plank-to-plank variation (log)
    streaks: float  # light and dark streaks along the planks


WOODS = {
    "oak": Wood((112, 160, 202), 5, 0.2, 0.06, 0.07),
    "walnut": Wood((58, 84, 114), 4, 0.28, 0.1, 0.12),
}
SWATCH_NAMES = ("oak", "walnut", "tile")


def plank_swatch(kind: str = "oak", seed: int = 5) -> np.ndarray:
    """A plank swatch (uint8 BGR) showing SWATCH_SIZE_M of floor at SWATCH_PX_PER_M: rows of planks
    with staggered end joints, each plank its own tone and grain, seamless in both directions.

    A plank is a board sawn from a log: its growth rings are where the sawing plane cuts cylinders
    around the log's axis, so they run along the plank and close into arches where the plane
    nears the axis."""
    wood = WOODS[kind]
    rng = np.random.default_rng(seed + (0 if kind == "oak" else 100))
    w, h = round(SWATCH_SIZE_M[0] * SWATCH_PX_PER_M), round(SWATCH_SIZE_M[1] * SWATCH_PX_PER_M)
    row_h = h // wood.planks
    tall = (h, w)  # noise fields that tile; each plank reads its own band of rows
    wander = _periodic_noise(tall, (12, 220), rng)
    streaks = _periodic_noise(tall, (5, 260), rng)
    fibres = _periodic_noise(tall, (0.7, 30), rng)
    pores = _periodic_noise(tall, (0.5, 2.5), rng)
    base = _linear(wood.colour)
    out = np.empty((h, w, 3), np.float32)
    xs = np.arange(w, dtype=np.float32)
    previous: list[float] = []
    last_shift = 1e9
    for row in range(wood.planks):
        top = row * row_h
        bottom = h if row == wood.planks - 1 else top + row_h
        y_local = np.arange(bottom - top, dtype=np.float32)[:, None]
        count = int(rng.integers(1, 3))
        # Laid as a fitter would: no end joint within 0.2 m of one in the row before, and no
        # staircase (the same shift from row to row).
        while True:
            first = rng.uniform(0, w)
            joints = sorted((first + i * w / count + rng.uniform(-0.12, 0.12) * w) % w for i in range(count))
            gaps = [abs(_wrapped(a - b, w)) for a in joints for b in previous]
            shift = _wrapped(joints[0] - previous[0], w) if previous else 0.0
            if min(gaps, default=w) > 0.2 * SWATCH_PX_PER_M and abs(shift - last_shift) > 0.15 * SWATCH_PX_PER_M:
                break
        previous, last_shift = joints, shift
        # Which plank each column belongs to, going round the swatch's width (the last plank of a
        # row continues at its start, so the swatch tiles).
        piece = np.searchsorted(np.array(joints), xs, side="right") % count
        for p in range(count):
            cols = piece == p
            start = joints[p - 1] if p > 0 else joints[-1]
            x_local = np.mod(xs[cols] - np.float32(start), np.float32(w))[None, :]
            band = (np.arange(top, bottom) + int(rng.integers(0, h))) % tall[0]
            # The sawing plane's distance from the log's axis along the plank, and the axis's
            # position across it.
            # Flat-sawn boards (the axis inside the board) show arches, rift-sawn ones straight lines.
            flat = rng.uniform() < 0.45
            axis_y = rng.uniform(0.25, 0.75) * row_h if flat else rng.uniform(-2.0, 3.0) * row_h
            # The plane leaves the axis slowly along the board (the arches' tips point that way).
            along = x_local - x_local.min() if rng.uniform() < 0.5 else x_local.max() - x_local
            depth = np.float32(rng.uniform(4, 20)) + np.float32(rng.uniform(0.03, 0.07)) * along
            radius = np.sqrt((y_local - np.float32(axis_y)) ** 2 + depth**2)
            radius = radius + 3 * wander[band][:, cols]
            spacing = rng.uniform(5.0, 8.0)
            rings = (0.5 + 0.5 * np.cos(2 * np.pi * radius / spacing)) ** 5  # thin dark late-wood bands
            value = (
                1
                - wood.contrast * rings
                + wood.streaks * streaks[band][:, cols]
                + 0.05 * fibres[band][:, cols]
                - 0.12 * np.clip(pores[band][:, cols] - 1.8, 0, None)
            )
            tone = float(np.exp(rng.normal(0, wood.tone_spread)))
            warmth = np.array([1 - rng.uniform(0, 0.07), 1.0, 1 + rng.uniform(0, 0.04)], np.float32)
            out[top:bottom, cols] = base * np.float32(tone) * warmth * value[..., None].astype(np.float32)
        for j in joints:  # end joints: a dark hairline
            out[top:bottom, int(j) % w] *= 0.5
            out[top:bottom, int(j + 1) % w] *= 0.75
        out[top] *= 0.5  # the long joint above each row, its bevel catching the light below it
        out[top + 1] *= 0.75
        out[top + 2] *= 1.05
    return linear_to_srgb(np.clip(out, 0, 1))


def _wrapped(offset: float, period: float) -> float:
    """An offset taken round a period, into [-period / 2, period / 2)."""
    return (offset + period / 2) % period - period / 2


def tile_swatch(seed: int = 9) -> np.ndarray:
    """A light porcelain tile swatch (uint8 BGR): SWATCH_SIZE_M as 3 x 2 tiles of 0.4 m with pale grout."""
    rng = np.random.default_rng(seed)
    w, h = round(SWATCH_SIZE_M[0] * SWATCH_PX_PER_M), round(SWATCH_SIZE_M[1] * SWATCH_PX_PER_M)
    tile = 0.4 * SWATCH_PX_PER_M
    clouds = 0.6 * _periodic_noise((h, w), (40, 40), rng) + 0.4 * _periodic_noise((h, w), (3, 3), rng)
    base = _linear((188, 200, 208))  # a pale warm grey
    out = base[None, None, :] * (1 + 0.025 * clouds)[..., None]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ix, iy = np.floor(xs / tile).astype(int), np.floor(ys / tile).astype(int)
    shades = rng.normal(1.0, 0.015, (4, 4)).astype(np.float32)
    out *= shades[iy, ix][..., None]
    grout = (np.mod(xs, tile) < 3) | (np.mod(ys, tile) < 3)
    out[grout] = _linear((150, 158, 164))
    return linear_to_srgb(np.ascontiguousarray(out, np.float32))


def sample_swatch(name: str) -> np.ndarray:
    """One of the bundled swatches by name (SWATCH_NAMES), each showing SWATCH_SIZE_M of material."""
    return tile_swatch() if name == "tile" else plank_swatch(name)


@dataclass(frozen=True)
class SampleFiles:
    """Where write_sample_files put the sample, its manifest (sample.json), and the sample itself."""

    photo: Path
    mask: Path
    swatches: dict[str, Path]  # by name, "oak" first
    manifest: Path
    room: SampleRoom


def write_sample_files(directory: Path, room: SampleRoom | None = None) -> SampleFiles:
    """Writes the sample (by default sample_room() at 1600 x 1066) for a console or a demo:
    photo.jpg, mask.png, swatch-<name>.jpg for every bundled swatch, and sample.json (the quad,
    focal length, camera height and swatch size a material swap needs, and the files' names)."""
    directory.mkdir(parents=True, exist_ok=True)
    room = room or sample_room()
    photo, mask = directory / "photo.jpg", directory / "mask.png"
    photo.write_bytes(room.photo_jpeg)
    cv2.imwrite(str(mask), room.mask)
    swatches: dict[str, Path] = {}
    for name in SWATCH_NAMES:
        image = room.swatch if name == "oak" else sample_swatch(name)
        swatches[name] = directory / f"swatch-{name}.jpg"
        cv2.imwrite(str(swatches[name]), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    manifest = directory / "sample.json"
    manifest.write_text(
        json.dumps(
            {
                "photo": photo.name,
                "mask": mask.name,
                "swatches": {name: path.name for name, path in swatches.items()},
                "swatch_size_meters": {"width": room.swatch_size_m[0], "height": room.swatch_size_m[1]},
                "quad": room.quad_points,
                "focal_length_px": room.focal_length_px,
                "plane_distance_meters": room.camera_height_m,
                "surface": "floor",
            },
            indent=2,
        )
        + "\n"
    )
    return SampleFiles(photo, mask, swatches, manifest, room)
