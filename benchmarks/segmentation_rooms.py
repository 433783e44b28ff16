"""Mask IoU from clicks on an independent set of rooms (numpy and OpenCV only, not the quality
benchmark's renderer nor benchmarks.segmentation_scenes').

    python -m benchmarks.segmentation_rooms [--rooms 0,4,6] [--scale 1.0]

Each room is a box room (floor z = 0, four walls, a ceiling) seen through a pinhole camera, with
furniture standing on the floor (axis-aligned boxes: sofas, cabinets, ottomans, tables on thin legs,
a floor lamp), a window in the left wall giving skylight and a sharp sun patch with the window
bars' and the furniture's shadows, a warm lamp, contact shadows, glossy reflections (slate),
vignetting, sensor noise and JPEG q90, rendered at twice the size and reduced. Floors: plain, worn
tiles, planks, a patterned rug, slate; the walls are near the floor's colour. The truth is exact:
the visible floor (or rug) and the objects standing in front of it.

Both modes make the calls the quality benchmark's modes make (benchmarks.quality.modes
`points_only`, `box_points`): its click recipe, the camera's focal length as the EXIF would give it.
Reported per room: the IoU of the mask (> 127) with the visible surface and the CPU seconds per
mask; then the medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

import cv2
import numpy as np

from benchmarks.quality import modes
from benchmarks.segmentation_iou import MODES, MaskScore, mask_iou
from renderkit.errors import InputError
from services.segmentation.interactive import select_surface

Vec = tuple[float, float, float]
Albedo = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (u, v) metres on the surface -> (N, 3) linear RGB
# Projects points (N, 3) to 2-D coordinates in which a ray meets a box only inside the box's corners' hull.
Projector = Callable[[np.ndarray], np.ndarray]

FLOOR, CEILING, BOXES = 0, 5, 10  # hit kinds: the floor, walls 1-4, the ceiling, box i is BOXES + i


# ---------------------------------------------------------------- textures (albedo, linear RGB)


def _hash(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """A per-cell pseudo-random number in [0, 1)."""
    h = (ix.astype(np.int64) * 73856093) ^ (iy.astype(np.int64) * 19349663) ^ (seed * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    return ((h ^ (h >> 16)) & 0xFFFFFF).astype(np.float64) / float(0x1000000)


def _value_noise(u: np.ndarray, v: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Smooth value noise in [0, 1) at `scale` metres a cell."""
    x, y = u / scale, v / scale
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    a, b = _hash(x0, y0, seed), _hash(x0 + 1, y0, seed)
    c, d = _hash(x0, y0 + 1, seed), _hash(x0 + 1, y0 + 1, seed)
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _fbm(u: np.ndarray, v: np.ndarray, scale: float, seed: int, octaves: int = 4) -> np.ndarray:
    """Octaves of value noise, about -0.5..0.5."""
    total, amp, norm = np.zeros(np.shape(u)), 1.0, 0.0
    for k in range(octaves):
        total = total + amp * _value_noise(u, v, scale / 2**k, seed + 17 * k)
        norm += amp
        amp *= 0.5
    return total / norm - 0.5


def plain(colour: Vec, mottle: float = 0.08, seed: int = 0) -> Albedo:
    """A plain surface (paint, concrete) with a soft mottle."""
    base = np.array(colour, float)

    def albedo(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        m = 1 + mottle * 2 * _fbm(u, v, 0.8, seed) + 0.03 * _fbm(u, v, 0.02, seed + 5, 2)
        return base[None, :] * m[:, None]

    return albedo


def tiles(
    colour: Vec,
    grout: Vec,
    size: float = 0.4,
    joint: float = 0.006,
    tint: float = 0.08,
    wear: float = 0.15,
    seed: int = 0,
) -> Albedo:
    """Square tiles, each of its own tone and hue, worn, with joints of grout."""
    base, joints = np.array(colour, float), np.array(grout, float)

    def albedo(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        iu, iv = np.floor(u / size), np.floor(v / size)
        fu, fv = u / size - iu, v / size - iv
        j = joint / size
        in_joint = (fu < j) | (fu > 1 - j) | (fv < j) | (fv > 1 - j)
        t = 1 + tint * 2 * (_hash(iu, iv, seed) - 0.5)
        shift = 0.3 * tint * (_hash(iu, iv, seed + 1) - 0.5)
        hue = np.stack([1 + shift, np.ones_like(u), 1 - shift], 1)
        worn = 1 + wear * 2 * _fbm(u, v, 0.25, seed + 2) + 0.04 * _fbm(u, v, 0.01, seed + 3, 2)
        a = base[None] * (t * worn)[:, None] * hue
        grouted = joints[None] * (1 + 0.1 * _fbm(u, v, 0.05, seed + 4))[:, None]
        return np.where(in_joint[:, None], grouted, a)

    return albedo


def planks(colour: Vec, width: float = 0.16, length: float = 1.4, tone: float = 0.18, seed: int = 0) -> Albedo:
    """Wooden planks along u, staggered, each of its own tone, with grain and dark seams."""
    base = np.array(colour, float)

    def albedo(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        iv = np.floor(v / width)
        shift = _hash(iv, iv * 0 + 7, seed) * length
        iu = np.floor((u + shift) / length)
        fv = v / width - iv
        fu = (u + shift) / length - iu
        seam = (fv < 0.025) | (fu < 0.004)
        t = 1 + tone * 2 * (_hash(iu, iv, seed + 1) - 0.5)
        wave = np.sin(2 * np.pi * (v * 90 + 3 * _fbm(u * 0.2, v, 0.1, seed + 2)))
        grain = 1 + 0.12 * wave * (0.5 + _fbm(u, v, 0.3, seed + 3))
        a = base[None] * (t * grain)[:, None]
        return np.where(seam[:, None], a * 0.55, a)

    return albedo


def carpet(colour: Vec, pile: float = 0.22, seed: int = 0) -> Albedo:
    """A cut-pile carpet: tufts a few millimetres across, a faint cloud: its texture fades into a
    plain colour with distance."""
    base = np.array(colour, float)

    def albedo(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        m = 1 + pile * 2 * _fbm(u, v, 0.008, seed, 2) + 0.04 * _fbm(u, v, 0.7, seed + 1)
        return base[None, :] * m[:, None]

    return albedo


def speckled(colour: Vec, speckle: float = 0.16, seed: int = 0) -> Albedo:
    """Fine concrete or terrazzo: millimetre speckle on a faint mottle."""
    base = np.array(colour, float)

    def albedo(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        grain = _hash(np.floor(u / 0.004), np.floor(v / 0.004), seed) - 0.5
        m = 1 + speckle * 2 * grain + 0.05 * _fbm(u, v, 0.6, seed + 1)
        return base[None, :] * m[:, None]

    return albedo


def with_strips(floor: Albedo, at: tuple[float, ...], width: float, colour: Vec) -> Albedo:
    """A floor crossed (along x) by strips starting at depths `at` (door thresholds)."""
    strip = np.array(colour, float)

    def albedo(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        a = floor(u, v)
        on = np.zeros(len(u), bool)
        for y in at:
            on |= (v > y) & (v < y + width)
        a[on] = strip[None] * (1 + 0.05 * _fbm(u[on], v[on], 0.05, 11))[:, None]
        return a

    return albedo


def rug(field: Vec, motif: Vec, border: Vec, rect: tuple[float, float, float, float], seed: int = 0) -> Albedo:
    """A rug's pattern in the rug's own coordinates: a border band, a lattice of diamonds."""
    f, m, b = (np.array(c, float) for c in (field, motif, border))
    x0, y0, x1, y1 = rect

    def albedo(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        edge = np.minimum(np.minimum(u - x0, x1 - u), np.minimum(v - y0, y1 - v))
        a = np.repeat(f[None], len(u), 0)
        pu, pv = ((u - x0) / 0.25) % 1 - 0.5, ((v - y0) / 0.25) % 1 - 0.5
        diamond = np.abs(pu) + np.abs(pv) < 0.28
        ring = np.abs(np.abs(pu) + np.abs(pv) - 0.42) < 0.04
        a = np.where(diamond[:, None], m[None], a)
        a = np.where(ring[:, None], b[None] * 1.1, a)
        a = np.where(((edge < 0.16) & (edge > 0.05))[:, None], b[None], a)
        a = np.where(((edge < 0.04) & (edge > 0.02))[:, None], m[None], a)
        pile = 1 + 0.1 * _fbm(u, v, 0.01, seed, 2) + 0.06 * _fbm(u, v, 0.4, seed + 1)
        return a * pile[:, None]

    return albedo


# ---------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Box:
    """An axis-aligned box (metres): furniture or a part of it."""

    lo: Vec
    hi: Vec
    colour: Vec
    name: str = "box"


@dataclass(frozen=True)
class Spec:
    """A room, its light and the camera that sees it."""

    name: str
    size: tuple[int, int]  # (width, height) px
    floor: Albedo
    wall: Vec
    room: Vec = (5.0, 6.0, 2.6)  # width (x, centred on 0), depth (y, from -0.5), height
    camera: Vec = (0.0, 0.4, 1.5)
    pitch: float = 35.0  # degrees down
    yaw: float = 0.0
    roll: float = 0.0
    fov: float = 62.0  # horizontal, degrees, of the longer side
    boxes: tuple[Box, ...] = ()
    rug: tuple[float, float, float, float] | None = None  # (x0, y0, x1, y1) on the floor
    rug_albedo: Albedo | None = None
    target: str = "floor"  # or "rug", "wall" (the left one, x = -width / 2), "ceiling"
    window: tuple[float, float, float, float] = (1.2, 3.2, 0.8, 2.2)  # left wall: y0, y1, z0, z1
    sun: Vec = (0.55, 0.35, -0.55)  # the direction the sunlight travels
    sun_strength: float = 2.0
    sky: float = 1.0
    lamp: tuple[float, float, float, float] | None = None  # (x, y, z, strength)
    gloss: float = 0.0
    skirting: float = 0.08  # metres of white skirting board
    seed: int = 0
    wall_albedo: Albedo | None = None  # (u along the wall, height) -> linear RGB, instead of `wall`'s paint
    # A straight light edge across the floor (a shadow's or a sun patch's): the floor's light is
    # multiplied by `gain` where a x + b y > c, ramping over `soft` metres: (a, b, c, gain, soft).
    floor_light: tuple[float, float, float, float, float] | None = None
    supersample: int = 2  # rays per pixel along each axis (fine textures need more)


def _ray_box(o: np.ndarray, d: np.ndarray, lo: Vec, hi: Vec) -> tuple[np.ndarray, np.ndarray]:
    """Entry distance along rays (inf for a miss) and the axis (0..2) of the face entered (slabs)."""
    n = len(d)
    enter, leave = np.full(n, -np.inf), np.full(n, np.inf)
    axis = np.zeros(n, np.int64)
    for k in range(3):
        dk = d[:, k]
        inv = 1.0 / np.where(np.abs(dk) < 1e-12, 1e-12, dk)
        t1, t2 = (lo[k] - o[:, k]) * inv, (hi[k] - o[:, k]) * inv
        near = np.minimum(t1, t2)
        later = near > enter
        axis = np.where(later, k, axis)
        enter = np.where(later, near, enter)
        leave = np.minimum(leave, np.maximum(t1, t2))
    hit = (leave >= np.maximum(enter, 1e-6)) & (enter > 1e-6)
    return np.where(hit, enter, np.inf), axis


def _corners(box: Box) -> np.ndarray:
    return np.array(
        [(x, y, z) for x in (box.lo[0], box.hi[0]) for y in (box.lo[1], box.hi[1]) for z in (box.lo[2], box.hi[2])]
    )


def _candidates(box: Box, project: Projector | None, at: np.ndarray | None) -> np.ndarray | slice:
    """The rays that may meet the box: those whose projected point `at` lies within the projected
    corners' bounds (every ray when there is no projection)."""
    if project is None or at is None:
        return slice(None)
    hull = project(_corners(box))
    if not np.isfinite(hull).all():
        return slice(None)
    low, high = hull.min(0) - 1e-6, hull.max(0) + 1e-6
    return np.flatnonzero((at[:, 0] >= low[0]) & (at[:, 0] <= high[0]) & (at[:, 1] >= low[1]) & (at[:, 1] <= high[1]))


def _trace(
    spec: Spec, o: np.ndarray, d: np.ndarray, skip_floor: bool = False, project: Projector | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nearest hit: distance, kind (FLOOR, walls 1-4, CEILING, BOXES + i) and normal. With
    `project` (the rays share `o`), each box is tested only on the rays its projection covers."""
    width, depth, height = spec.room
    n = len(d)
    best = np.full(n, np.inf)
    kind = np.full(n, -1)
    normal = np.zeros((n, 3))
    planes = [
        (2, 0.0, (0, 0, 1), FLOOR),
        (0, -width / 2, (1, 0, 0), 1),
        (0, width / 2, (-1, 0, 0), 2),
        (1, depth, (0, -1, 0), 3),
        (1, -0.5, (0, 1, 0), 4),
        (2, height, (0, 0, -1), CEILING),
    ]
    with np.errstate(divide="ignore", invalid="ignore"):
        for across, at, towards, k in planes:
            if skip_floor and k == FLOOR:
                continue
            t = (at - o[:, across]) / d[:, across]
            ok = (t > 1e-6) & (t < best)
            best = np.where(ok, t, best)
            kind = np.where(ok, k, kind)
            normal[ok] = towards
    # A ray's projected point: where it passes one unit along it (any point of the ray will do).
    seen = project(o + d) if project is not None else None
    for i, box in enumerate(spec.boxes):
        rays = _candidates(box, project, seen)
        t, axis = _ray_box(o if len(o) == 1 else o[rays], d[rays], box.lo, box.hi)
        ok = t < best[rays]
        chosen = np.arange(n)[rays][ok]
        best[chosen] = t[ok]
        kind[chosen] = BOXES + i
        facing = np.zeros((len(chosen), 3))
        facing[np.arange(len(chosen)), axis[ok]] = -np.sign(d[chosen, axis[ok]])
        normal[chosen] = facing
    return best, kind, normal


def _shadowed(spec: Spec, p: np.ndarray, light: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Whether rays from p along `light` (one unit direction) meet a box before `limit`."""
    # Parallel rays meet a box only where their points, projected along the light, fall on its
    # projection: two axes across the light.
    across = np.linalg.svd(light[None])[2][1:]

    def project(points: np.ndarray) -> np.ndarray:
        return points @ across.T

    seen = project(p)
    blocked = np.zeros(len(p), bool)
    for box in spec.boxes:
        rays = _candidates(box, project, seen)
        t, _ = _ray_box(p[rays], np.broadcast_to(light, p[rays].shape), box.lo, box.hi)
        blocked[np.arange(len(p))[rays][t < limit[rays]]] = True
    return blocked


def _albedo(spec: Spec, p: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """The reflectance (linear RGB) where each ray landed."""
    out = np.zeros((len(p), 3))
    floor = kind == FLOOR
    if floor.any():
        a = spec.floor(p[floor, 0], p[floor, 1])
        if spec.rug is not None and spec.rug_albedo is not None:
            x0, y0, x1, y1 = spec.rug
            on = (p[floor, 0] > x0) & (p[floor, 0] < x1) & (p[floor, 1] > y0) & (p[floor, 1] < y1)
            if on.any():
                a[on] = spec.rug_albedo(p[floor, 0][on], p[floor, 1][on])
        out[floor] = a
    walls = (kind >= 1) & (kind <= 4)
    if walls.any():
        u = np.where(kind[walls] <= 2, p[walls, 1], p[walls, 0])
        z = p[walls, 2]
        m = 1 + 0.05 * _fbm(u, z, 0.5, spec.seed + 40) + 0.02 * _fbm(u, z, 0.01, spec.seed + 41, 2)
        a = np.array(spec.wall, float)[None] * m[:, None]
        if spec.wall_albedo is not None:
            a = spec.wall_albedo(u, z)
        skirt = z < spec.skirting
        a[skirt] = np.array([0.8, 0.8, 0.78]) * (1 + 0.02 * _fbm(u[skirt], z[skirt], 0.05, 3))[:, None]
        out[walls] = a
    out[kind == CEILING] = np.array([0.85, 0.85, 0.84])
    for i, box in enumerate(spec.boxes):
        sel = kind == BOXES + i
        if sel.any():
            m = 1 + 0.06 * _fbm(p[sel, 0] + p[sel, 2], p[sel, 1] + p[sel, 2], 0.05, spec.seed + i)
            out[sel] = np.array(box.colour, float)[None] * m[:, None]
    return out


def _irradiance(spec: Spec, p: np.ndarray, normal: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """The light arriving (linear RGB): the room's bounce, the window's skylight, the sun through
    the window (its bars and the furniture casting shadows), the lamp; contact shadows."""
    width = spec.room[0]
    y0, y1, z0, z1 = spec.window
    sky_colour = np.array([0.92, 0.98, 1.08])
    px, py, pz = p[:, 0], p[:, 1], p[:, 2]
    nx, ny, nz = normal[:, 0], normal[:, 1], normal[:, 2]
    e = np.zeros((len(p), 3)) + 0.35 * spec.sky * sky_colour[None] * np.array([1.0, 0.97, 0.93])[None]
    # The window's skylight, from a few points on the window.
    sky = np.zeros(len(p))
    for wy in np.linspace(y0, y1, 3):
        for wz in np.linspace(z0, z1, 2):
            vx, vy, vz = -width / 2 - px, wy - py, wz - pz
            r2 = vx * vx + vy * vy + vz * vz + 0.3
            r = np.sqrt(r2)
            cos = np.maximum((nx * vx + ny * vy + nz * vz) / r, 0) * np.maximum(vx / r, 0)
            sky += cos / r2
    e += (spec.sky * 0.9) * sky[:, None] * sky_colour[None]
    # The sun through the window (its bars cast shadows), blocked by the furniture.
    to_sun = -np.array(spec.sun, float) / np.linalg.norm(spec.sun)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-width / 2 - px) / to_sun[0]
    qy, qz = py + t * to_sun[1], pz + t * to_sun[2]
    inside = (t > 0) & (qy > y0) & (qy < y1) & (qz > z0) & (qz < z1)
    bars_y = np.abs(((qy - y0) / ((y1 - y0) / 3)) % 1 - 0.5) > 0.47
    bars_z = np.abs(((qz - z0) / ((z1 - z0) / 2)) % 1 - 0.5) > 0.46
    lit = inside & ~bars_y & ~bars_z & (kind != 1)
    if lit.any():
        at = np.flatnonzero(lit)
        lit[at[_shadowed(spec, p[at] + 1e-4 * normal[at], to_sun, t[at])]] = False
    cos = np.maximum(nx * to_sun[0] + ny * to_sun[1] + nz * to_sun[2], 0)
    e += spec.sun_strength * (lit * cos)[:, None] * np.array([1.08, 0.98, 0.84])[None]
    # The lamp (warm, inverse square).
    if spec.lamp is not None:
        lx, ly, lz, strength = spec.lamp
        vx, vy, vz = lx - px, ly - py, lz - pz
        r2 = vx * vx + vy * vy + vz * vz
        cos = np.maximum((nx * vx + ny * vy + nz * vz) / np.sqrt(r2), 0)
        e += strength * (cos / np.maximum(r2, 0.05))[:, None] * np.array([1.1, 0.85, 0.55])[None]
    # Contact shadows: the floor darkens near each box's footprint, the walls near the floor.
    ao = np.ones(len(p))
    fl = kind == FLOOR
    fx, fy = px[fl], py[fl]
    for box in spec.boxes:
        if box.lo[2] > 0.02:
            continue
        dx = np.maximum(np.maximum(box.lo[0] - fx, fx - box.hi[0]), 0)
        dy = np.maximum(np.maximum(box.lo[1] - fy, fy - box.hi[1]), 0)
        ao[fl] *= 1 - 0.45 * np.exp(-np.hypot(dx, dy) / 0.07)
    wl = (kind >= 1) & (kind <= 4)
    ao[wl] *= 1 - 0.25 * np.exp(-pz[wl] / 0.1)
    if spec.floor_light is not None:
        a, b, c, gain, soft = spec.floor_light
        ramp = np.clip((a * fx + b * fy - c) / max(soft, 1e-6) + 0.5, 0, 1)
        ao[fl] *= 1 + (gain - 1) * ramp
    return e * ao[:, None]


def _camera(spec: Spec, width: int, height: int) -> tuple[np.ndarray, float, Projector]:
    """Unit rays per pixel (row by row), the focal length in pixels, and the pinhole projection."""
    f = 0.5 * max(width, height) / np.tan(np.radians(spec.fov) / 2)
    pitch, yaw, roll = np.radians([spec.pitch, spec.yaw, spec.roll])
    forward = np.array([np.sin(yaw) * np.cos(pitch), np.cos(yaw) * np.cos(pitch), -np.sin(pitch)])
    right = np.cross(forward, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c, s = np.cos(roll), np.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    d = forward[None, None] * f + right[None, None] * (xs[..., None] + 0.5 - width / 2)
    d = (d + down[None, None] * (ys[..., None] + 0.5 - height / 2)).reshape(-1, 3)
    origin = np.array(spec.camera, float)

    def project(points: np.ndarray) -> np.ndarray:
        rel = points - origin
        ahead = rel @ forward
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = np.stack([rel @ right, rel @ down], 1) / ahead[:, None]
        return np.where((ahead > 1e-6)[:, None], uv, np.inf)

    return d / np.linalg.norm(d, axis=1)[:, None], f, project


@dataclass(frozen=True)
class Room:
    """A rendered room: the photo, its truth and what the clicks are chosen from."""

    name: str
    photo: np.ndarray  # BGR uint8, after JPEG
    visible: np.ndarray  # bool: the surface as seen
    occluder: np.ndarray  # bool: the objects in front of the surface
    focal: float  # pixels, as the photo's EXIF would give it
    surface: str  # the kind of surface a request would name

    @property
    def width(self) -> int:
        return int(self.photo.shape[1])

    @property
    def height(self) -> int:
        return int(self.photo.shape[0])


CHUNK = 400_000  # rays at a time


def build(spec: Spec, supersample: int = 0, scale: float = 1.0) -> Room:
    """The room rendered at `scale` times its size (supersampled), developed as a camera would."""
    width, height = max(8, round(spec.size[0] * scale)), max(8, round(spec.size[1] * scale))
    supersample = supersample or spec.supersample
    sw, sh = width * supersample, height * supersample
    d, focal, project = _camera(spec, sw, sh)
    o = np.array(spec.camera, float)[None]
    radiance = np.zeros((len(d), 3))
    target = np.zeros(len(d), bool)
    behind = np.zeros(len(d), bool)
    x0, y0, x1, y1 = spec.rug if spec.rug is not None else (0.0, 0.0, -1.0, -1.0)
    room_w, room_d, _ = spec.room
    for start in range(0, len(d), CHUNK):
        rays = d[start : start + CHUNK]
        t, kind, normal = _trace(spec, o, rays, project=project)
        p = o + t[:, None] * rays
        rad = _albedo(spec, p, kind) * _irradiance(spec, p, normal, kind)
        fl = kind == FLOOR
        if spec.gloss > 0 and fl.any():
            mirrored = rays[fl].copy()
            mirrored[:, 2] *= -1
            rt, rk, rn = _trace(spec, p[fl] + 1e-4 * np.array([0, 0, 1.0]), mirrored, skip_floor=True)
            rp = p[fl] + rt[:, None] * mirrored
            reflected = _albedo(spec, rp, rk) * _irradiance(spec, rp, rn, rk)
            fresnel = 0.04 + 0.96 * (1 - np.abs(rays[fl, 2])) ** 5
            rad[fl] = rad[fl] * (1 - fresnel[:, None]) + spec.gloss * fresnel[:, None] * reflected
        radiance[start : start + CHUNK] = rad
        on_rug = fl & (p[:, 0] > x0) & (p[:, 0] < x1) & (p[:, 1] > y0) & (p[:, 1] < y1)
        if spec.target in PLANES:
            target[start : start + CHUNK] = kind == PLANES[spec.target]
            behind[start : start + CHUNK] = _towards_plane(spec, o, rays) & (kind >= BOXES)
            continue
        target[start : start + CHUNK] = on_rug if spec.target == "rug" else fl & ~on_rug
        # What stands in front of the surface: a box hit where the ray goes on to the target.
        with np.errstate(divide="ignore", invalid="ignore"):
            tf = -o[0, 2] / rays[:, 2]
        pf = o + tf[:, None] * rays
        on_floor = (tf > 0) & (np.abs(pf[:, 0]) < room_w / 2) & (pf[:, 1] > -0.5) & (pf[:, 1] < room_d)
        if spec.target == "rug":
            on_floor &= (pf[:, 0] > x0) & (pf[:, 0] < x1) & (pf[:, 1] > y0) & (pf[:, 1] < y1)
        behind[start : start + CHUNK] = on_floor & (kind >= BOXES)
    img = radiance.reshape(sh, sw, 3).astype(np.float32)
    if spec.gloss > 0:  # a glossy floor blurs what it reflects a little
        img = cv2.GaussianBlur(img, (0, 0), 0.8 * supersample) * 0.3 + img * 0.7
    img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA).astype(np.float64)
    cover = cv2.resize(target.reshape(sh, sw).astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
    occluded = cv2.resize(behind.reshape(sh, sw).astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
    return Room(spec.name, _develop(img, spec.seed), cover > 0.5, occluded > 0.5, focal / supersample,
                spec.target if spec.target in PLANES else "floor")  # fmt: skip


# Targets that are a whole plane of the room, by name (a request names the surface so) and hit kind.
PLANES = {"wall": 1, "ceiling": CEILING}


def _towards_plane(spec: Spec, o: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """Whether each ray, going on through whatever it hit, would meet the target plane inside the room."""
    width, depth, height = spec.room
    axis, at = (0, -width / 2) if spec.target == "wall" else (2, height)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (at - o[0, axis]) / rays[:, axis]
    p = o + t[:, None] * rays
    inside = (np.abs(p[:, 0]) <= width / 2 + 1e-6) & (p[:, 1] > -0.5) & (p[:, 1] < depth)
    return (t > 0) & inside & (p[:, 2] >= -1e-6) & (p[:, 2] <= height + 1e-6)


def _develop(img: np.ndarray, seed: int) -> np.ndarray:
    """Linear RGB as a camera leaves it: white balance on the whole frame (grey world, half way),
    exposure, vignetting, sensor noise, sRGB, JPEG q90 (BGR uint8)."""
    height, width = img.shape[:2]
    mean = img.reshape(-1, 3).mean(0)
    img = img * (mean.mean() / mean) ** 0.5
    img = img / np.percentile(img.mean(2), 70) * 0.32
    yy, xx = np.mgrid[0:height, 0:width]
    r2 = ((xx - width / 2) ** 2 + (yy - height / 2) ** 2) / ((width / 2) ** 2 + (height / 2) ** 2)
    img = img * (1 - 0.35 * r2)[..., None]
    rng = np.random.default_rng(seed)
    img = np.clip(img + rng.normal(0, 1, img.shape) * np.sqrt(0.00004 + 0.0006 * np.maximum(img, 0)), 0, 1)
    srgb = np.where(img <= 0.0031308, 12.92 * img, 1.055 * np.power(img, 1 / 2.4) - 0.055)
    rgb8 = np.clip(np.round(srgb * 255), 0, 255).astype(np.uint8)
    _, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(rgb8[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)


# ---------------------------------------------------------------- the rooms


def _sofa(x0: float, y0: float, w: float, d: float, colour: Vec) -> tuple[Box, ...]:
    return (
        Box((x0, y0, 0.0), (x0 + w, y0 + d, 0.42), colour, "sofa seat"),
        Box((x0, y0 + d - 0.2, 0.0), (x0 + w, y0 + d, 0.85), colour, "sofa back"),
    )


def _table(
    x0: float, y0: float, w: float, d: float, colour: Vec, h: float = 0.72, leg: float = 0.04
) -> tuple[Box, ...]:
    legs = tuple(
        Box((lx, ly, 0.0), (lx + leg, ly + leg, h - 0.04), colour, "leg")
        for lx in (x0, x0 + w - leg)
        for ly in (y0, y0 + d - leg)
    )
    return (Box((x0, y0, h - 0.04), (x0 + w, y0 + d, h), colour, "table top"), *legs)


def _lamp(x: float, y: float, shade: Vec = (0.95, 0.9, 0.8)) -> tuple[Box, ...]:
    dark = (0.2, 0.2, 0.2)
    return (
        Box((x - 0.15, y - 0.15, 0.0), (x + 0.15, y + 0.15, 0.03), dark, "lamp base"),
        Box((x - 0.015, y - 0.015, 0.03), (x + 0.015, y + 0.015, 1.3), dark, "lamp pole"),
        Box((x - 0.2, y - 0.2, 1.3), (x + 0.2, y + 0.2, 1.6), shade, "lamp shade"),
    )


def _rug_of(rect: tuple[float, float, float, float], field: Vec, motif: Vec, border: Vec, seed: int) -> Albedo:
    return rug(field, motif, border, rect, seed)


RUG_ON_PLANKS = (-1.5, 1.8, 1.5, 4.4)
RUG_ON_TILES = (-0.6, 2.0, 1.2, 3.6)

SPECS = (
    Spec("plain beige floor, beige walls, sun, sofa", (1024, 768), plain((0.50, 0.41, 0.30), 0.06, 1),
         wall=(0.55, 0.45, 0.33), camera=(0.3, 0.3, 1.55), pitch=24, yaw=-6,
         boxes=_sofa(0.2, 4.2, 2.0, 0.9, (0.25, 0.3, 0.38)) + _lamp(1.9, 4.8),
         lamp=(1.9, 4.8, 1.45, 0.25), skirting=0.0, seed=1),
    Spec("worn beige tiles, cream wall, cabinet, table, portrait", (768, 1024),
         tiles((0.55, 0.46, 0.34), (0.45, 0.40, 0.33), 0.45, seed=2), wall=(0.58, 0.49, 0.37),
         camera=(0.0, 0.3, 1.6), pitch=30, yaw=8, fov=65,
         boxes=(Box((1.2, 3.6, 0.0), (2.3, 4.1, 0.9), (0.35, 0.22, 0.14), "cabinet"),
                *_table(-1.2, 2.6, 1.1, 0.7, (0.3, 0.2, 0.12))),
         sun=(0.6, 0.2, -0.6), seed=2),
    Spec("oak planks, tan walls, sun, ottoman", (1280, 720), planks((0.45, 0.30, 0.17), seed=3),
         wall=(0.50, 0.37, 0.24), camera=(-0.3, 0.2, 1.45), pitch=22, yaw=10, fov=68, roll=1.2,
         boxes=(Box((0.4, 3.0, 0.0), (1.1, 3.6, 0.42), (0.55, 0.5, 0.45), "ottoman"),
                Box((1.6, 4.6, 0.0), (2.45, 5.2, 1.1), (0.62, 0.6, 0.56), "cabinet")),
         sun=(0.5, 0.45, -0.5), sun_strength=2.5, seed=3),
    Spec("patterned rug (target) on planks, sofa", (1024, 768), planks((0.40, 0.27, 0.15), seed=4),
         wall=(0.55, 0.45, 0.35), camera=(0.0, 0.3, 1.5), pitch=28, yaw=-4,
         boxes=_sofa(-1.1, 4.5, 2.2, 0.9, (0.5, 0.45, 0.38)) + _table(-0.4, 3.1, 0.9, 0.5, (0.25, 0.16, 0.1), h=0.45),
         rug=RUG_ON_PLANKS,
         rug_albedo=_rug_of(RUG_ON_PLANKS, (0.55, 0.12, 0.10), (0.75, 0.62, 0.40), (0.12, 0.14, 0.30), 4),
         target="rug", seed=4),
    Spec("tiles with a rug on them (rug excluded), portrait", (768, 1024),
         tiles((0.60, 0.58, 0.54), (0.4, 0.4, 0.4), 0.5, tint=0.05, wear=0.08, seed=5), wall=(0.62, 0.60, 0.56),
         camera=(0.2, 0.3, 1.6), pitch=32, yaw=0, fov=60,
         boxes=(Box((-1.6, 3.8, 0.0), (-0.7, 4.4, 0.8), (0.2, 0.2, 0.22), "cabinet"),),
         rug=RUG_ON_TILES,
         rug_albedo=_rug_of(RUG_ON_TILES, (0.45, 0.42, 0.36), (0.2, 0.25, 0.35), (0.6, 0.55, 0.45), 5),
         lamp=(1.5, 3.0, 1.5, 0.2), seed=5),
    Spec("glossy slate reflecting the room, grey walls", (1024, 768),
         tiles((0.10, 0.11, 0.12), (0.35, 0.34, 0.32), 0.6, joint=0.004, tint=0.15, wear=0.1, seed=6),
         wall=(0.30, 0.31, 0.33), camera=(0.0, 0.3, 1.5), pitch=22, yaw=5, gloss=0.9,
         boxes=(Box((0.8, 4.0, 0.0), (1.9, 4.5, 0.9), (0.8, 0.78, 0.74), "white cabinet"), *_lamp(-1.6, 4.6)),
         lamp=(-1.6, 4.6, 1.45, 0.3), seed=6),
    Spec("grazing plain grey floor, grey walls, sun", (1024, 768), plain((0.38, 0.37, 0.35), 0.1, 7),
         wall=(0.42, 0.41, 0.39), camera=(0.4, 0.3, 0.75), pitch=12, yaw=-5, fov=66,
         boxes=(Box((-1.5, 3.5, 0.0), (-0.6, 4.1, 0.5), (0.3, 0.2, 0.15), "ottoman"),
                Box((0.9, 4.9, 0.0), (2.2, 5.5, 0.8), (0.45, 0.43, 0.4), "cabinet")),
         sun=(0.55, 0.3, -0.45), sun_strength=2.5, seed=7),
    Spec("concrete, strong sun and shadows, lamp, portrait", (768, 1024), plain((0.42, 0.40, 0.37), 0.14, 8),
         wall=(0.47, 0.45, 0.42), camera=(0.0, 0.3, 1.6), pitch=30, yaw=6, fov=58, skirting=0.0,
         boxes=_table(-0.6, 2.8, 1.2, 0.8, (0.15, 0.12, 0.1)) + _lamp(1.6, 4.5),
         lamp=(1.6, 4.5, 1.45, 0.35), sun=(0.5, 0.4, -0.6), sun_strength=6.0, seed=8),
    Spec("worn tiles, bright clipping sun, sofa", (1024, 768),
         tiles((0.58, 0.50, 0.40), (0.5, 0.45, 0.38), 0.35, seed=9),
         wall=(0.6, 0.52, 0.42), camera=(-0.2, 0.3, 1.5), pitch=25, yaw=-10,
         boxes=_sofa(-1.9, 4.2, 2.0, 0.9, (0.35, 0.4, 0.3)), sun=(0.5, 0.3, -0.6), sun_strength=6.0, seed=9),
    Spec("dark planks, brown walls, table on legs, portrait", (768, 1024), planks((0.22, 0.13, 0.07), 0.12, seed=10),
         wall=(0.30, 0.2, 0.12), camera=(0.3, 0.3, 1.5), pitch=28, yaw=-8, fov=60,
         boxes=(*_table(-0.8, 2.6, 1.4, 0.8, (0.5, 0.45, 0.4)),
                Box((1.2, 4.6, 0.0), (2.4, 5.2, 1.9), (0.7, 0.68, 0.63), "wardrobe")),
         lamp=(-1.5, 4.5, 1.7, 0.25), sun_strength=1.5, seed=10),
)  # fmt: skip

# Floors on which a cut across the selection, above the clicks, is easily wrong: fine textures whose
# far half is plain at the photo's size, straight light edges, a runner, thresholds, no wall at all,
# walls tiled like the floor, a rolled camera (where the junction is slanted).
RUNNER = (-2.2, 2.7, 2.2, 3.3)
HARD_SPECS = (
    Spec("carpet, walls of its colour, no skirting", (1024, 768), carpet((0.42, 0.38, 0.34), seed=21),
         wall=(0.45, 0.41, 0.36), camera=(0.2, 0.3, 1.5), pitch=26, yaw=-5, skirting=0.0,
         boxes=_sofa(-1.6, 4.4, 2.0, 0.9, (0.3, 0.32, 0.36)), supersample=4, seed=21),
    Spec("fine concrete, walls of its colour, portrait", (768, 1024), speckled((0.40, 0.39, 0.37), seed=22),
         wall=(0.43, 0.42, 0.40), camera=(0.0, 0.3, 1.6), pitch=30, yaw=6, fov=60, skirting=0.0,
         boxes=(Box((1.0, 4.2, 0.0), (2.2, 4.8, 0.8), (0.25, 0.22, 0.2), "cabinet"),),
         sun_strength=3.0, supersample=4, seed=22),
    Spec("small mosaic, cream walls", (1024, 768),
         tiles((0.62, 0.60, 0.55), (0.5, 0.5, 0.48), 0.025, joint=0.0015, tint=0.12, wear=0.05, seed=23),
         wall=(0.64, 0.61, 0.55), camera=(-0.2, 0.3, 1.5), pitch=27, yaw=4, skirting=0.0,
         boxes=(*_table(0.3, 3.0, 1.2, 0.7, (0.35, 0.25, 0.15)),), supersample=4, seed=23),
    Spec("plain floor, a building's straight shadow across it", (1024, 768), plain((0.46, 0.42, 0.36), 0.06, 24),
         wall=(0.49, 0.45, 0.38), camera=(0.3, 0.3, 1.5), pitch=25, yaw=-4, skirting=0.0,
         boxes=(Box((1.3, 4.6, 0.0), (2.3, 5.1, 0.9), (0.3, 0.22, 0.15), "cabinet"),),
         floor_light=(0.1, 1.0, 3.0, 0.45, 0.04), seed=24),
    Spec("worn tiles, the edge of a sun patch across them", (1024, 768),
         tiles((0.55, 0.47, 0.36), (0.46, 0.41, 0.34), 0.4, seed=25), wall=(0.57, 0.49, 0.38),
         camera=(0.0, 0.3, 1.5), pitch=26, yaw=3, skirting=0.0,
         boxes=_sofa(-2.2, 4.5, 1.8, 0.9, (0.3, 0.35, 0.4)),
         floor_light=(0.0, -1.0, -2.6, 2.3, 0.03), seed=25),
    Spec("planks, a runner across the width (runner excluded)", (1024, 768), planks((0.42, 0.29, 0.16), seed=26),
         wall=(0.80, 0.78, 0.74), camera=(0.0, 0.3, 1.5), pitch=27, yaw=-3,
         boxes=(Box((1.2, 4.6, 0.0), (2.3, 5.2, 1.0), (0.5, 0.5, 0.48), "cabinet"),),
         rug=RUNNER, rug_albedo=_rug_of(RUNNER, (0.18, 0.22, 0.35), (0.7, 0.6, 0.4), (0.5, 0.15, 0.1), 26), seed=26),
    Spec("hallway, skirting boards, door thresholds", (768, 1024),
         with_strips(planks((0.45, 0.32, 0.19), seed=27), (2.4, 4.9), 0.09, (0.62, 0.58, 0.5)),
         wall=(0.75, 0.72, 0.66), room=(1.8, 9.0, 2.5), camera=(0.0, -0.2, 1.6), pitch=22, yaw=2, fov=60,
         skirting=0.12, window=(5.5, 6.5, 0.9, 2.1), sun=(0.6, 0.1, -0.5), seed=27),
    Spec("top-down on planks, no wall in the frame", (1024, 768), planks((0.47, 0.33, 0.2), seed=28),
         wall=(0.7, 0.68, 0.64), camera=(0.0, 1.5, 1.5), pitch=80, yaw=0,
         boxes=(Box((0.35, 2.3, 0.0), (1.2, 2.9, 0.45), (0.3, 0.3, 0.32), "ottoman"),), seed=28),
    Spec("top-down on worn tiles, no wall in the frame, portrait", (768, 1024),
         tiles((0.58, 0.52, 0.44), (0.45, 0.42, 0.38), 0.3, seed=29), wall=(0.7, 0.68, 0.64),
         camera=(0.0, 1.5, 1.5), pitch=72, yaw=0, fov=60, seed=29),
    Spec("tiled floor, walls tiled alike", (1024, 768), tiles((0.7, 0.7, 0.68), (0.5, 0.5, 0.5), 0.3, seed=30),
         wall=(0.7, 0.7, 0.68), wall_albedo=tiles((0.7, 0.7, 0.68), (0.5, 0.5, 0.5), 0.3, seed=31),
         room=(3.0, 4.0, 2.5), camera=(0.2, -0.2, 1.5), pitch=28, yaw=-4, skirting=0.0,
         window=(1.0, 2.4, 1.0, 2.0), seed=30),
    Spec("plain floor, walls of its colour, camera rolled 12 degrees", (1024, 768),
         plain((0.48, 0.40, 0.31), 0.07, 32), wall=(0.52, 0.44, 0.34), camera=(0.2, 0.3, 1.5), pitch=25, yaw=-6,
         roll=12.0, skirting=0.0, boxes=_sofa(0.4, 4.4, 1.8, 0.9, (0.28, 0.3, 0.36)), seed=32),
    Spec("worn tiles, cream walls, camera rolled -14 degrees, portrait", (768, 1024),
         tiles((0.56, 0.47, 0.36), (0.46, 0.41, 0.34), 0.45, seed=33), wall=(0.6, 0.51, 0.39),
         camera=(0.0, 0.3, 1.6), pitch=30, yaw=5, fov=62, roll=-14.0,
         boxes=(Box((-2.3, 3.8, 0.0), (-1.4, 4.4, 0.85), (0.3, 0.2, 0.12), "cabinet"),), seed=33),
    Spec("carpet, a building's straight shadow across it, white walls", (1024, 768),
         carpet((0.36, 0.34, 0.38), seed=34), wall=(0.78, 0.77, 0.74), camera=(-0.2, 0.3, 1.5), pitch=24, yaw=4,
         boxes=(Box((-2.3, 4.4, 0.0), (-1.2, 5.0, 0.9), (0.3, 0.22, 0.15), "cabinet"),),
         floor_light=(-0.15, 1.0, 2.8, 0.4, 0.04), supersample=4, seed=34),
    Spec("carpet, a runner across the width (runner excluded), white walls", (1024, 768),
         carpet((0.42, 0.36, 0.3), seed=35), wall=(0.8, 0.79, 0.76), camera=(0.1, 0.3, 1.5), pitch=25, yaw=-3,
         rug=RUNNER, rug_albedo=_rug_of(RUNNER, (0.5, 0.14, 0.1), (0.75, 0.62, 0.40), (0.12, 0.14, 0.30), 35),
         supersample=4, seed=35),
    Spec("carpeted hallway, door thresholds, skirting boards, portrait", (768, 1024),
         with_strips(carpet((0.3, 0.33, 0.36), seed=36), (2.2, 4.6), 0.1, (0.55, 0.42, 0.26)),
         wall=(0.78, 0.76, 0.72), room=(1.8, 9.0, 2.5), camera=(0.1, -0.2, 1.6), pitch=24, yaw=-2, fov=58,
         skirting=0.12, window=(5.5, 6.5, 0.9, 2.1), sun=(0.6, 0.1, -0.5), supersample=4, seed=36),
    Spec("carpet, its far half in sun, white walls", (1024, 768), carpet((0.40, 0.37, 0.33), seed=37),
         wall=(0.8, 0.79, 0.76), camera=(0.0, 0.3, 1.5), pitch=25, yaw=5, sun_strength=0.0,
         boxes=_sofa(0.6, 4.6, 1.8, 0.9, (0.3, 0.32, 0.38)), floor_light=(0.1, 1.0, 2.9, 2.2, 0.03),
         supersample=4, seed=37),
    Spec("carpet, a thin strip of its lightness across it, white walls", (1024, 768),
         with_strips(carpet((0.40, 0.37, 0.33), seed=38), (3.0,), 0.05, (0.47, 0.36, 0.24)),
         wall=(0.8, 0.79, 0.76), camera=(0.0, 0.3, 1.5), pitch=25, yaw=-5,
         boxes=(Box((1.3, 4.6, 0.0), (2.3, 5.2, 0.9), (0.3, 0.22, 0.15), "cabinet"),), supersample=4, seed=38),
)  # fmt: skip

# Walls and ceilings as the target, clicked on with the surface named: a ceiling of the walls' neutral
# white, a floor of the wall's colour, walls below a ceiling, and a wall rising past the frame's top
# (nothing to cut). Their left wall is seen obliquely, a sofa against it; its window gives light only.
_WALL_ROOM = Spec(
    "grey wall under a white ceiling", (1024, 768), plain((0.45, 0.40, 0.33), 0.06, 1), wall=(0.62, 0.60, 0.56),
    camera=(1.2, 0.3, 1.5), pitch=5, yaw=-55, fov=66, boxes=_sofa(-2.5, 3.6, 0.9, 2.0, (0.25, 0.3, 0.38)),
    window=(1.0, 2.8, 0.9, 2.2), skirting=0.0, target="wall", seed=3,
)  # fmt: skip
WALL_SPECS = (
    _WALL_ROOM,
    replace(_WALL_ROOM, name="beige wall above a floor of its colour", wall=(0.55, 0.45, 0.33)),
    replace(_WALL_ROOM, name="warm white wall, a lamp, skirting, rolled 6 degrees", wall=(0.75, 0.70, 0.60),
            lamp=(0.5, 3.0, 2.2, 0.6), skirting=0.1, roll=6.0, seed=9),
    replace(_WALL_ROOM, name="grey wall rising past the frame's top", camera=(0.6, 0.3, 1.3), pitch=18, yaw=-80,
            fov=60, seed=7),
    replace(_WALL_ROOM, name="ceiling over grey walls, looking up", camera=(0.5, 0.3, 1.4), pitch=-30, yaw=-20,
            target="ceiling"),
    replace(_WALL_ROOM, name="ceiling over cream walls, a lamp, rolled -5 degrees, portrait", size=(768, 1024),
            wall=(0.7, 0.68, 0.64), camera=(0.0, 0.5, 1.4), pitch=-35, yaw=5, roll=-5.0, fov=62,
            lamp=(0.5, 3.5, 2.0, 0.5), target="ceiling"),
)  # fmt: skip

ALL_SPECS = SPECS + HARD_SPECS


# ---------------------------------------------------------------- scoring


Clicks = tuple[tuple[float, float, float, float], np.ndarray, np.ndarray]  # box, positives, negatives


def score_rooms(rooms: Sequence[Room], segment: Callable[..., np.ndarray] = select_surface) -> list[MaskScore]:
    """Every room segmented from clicks alone and from a box and the clicks, as the quality
    benchmark's `points_only` and `box_points` call the segmentation."""
    results = []
    for room in rooms:
        clicks = modes.clicks(room)
        results += score_clicks(room.name, room.photo, room.visible, clicks, room.focal, room.surface, segment)
    return results


def score_clicks(
    name: str,
    photo: np.ndarray,
    visible: np.ndarray,
    clicks: Clicks,
    focal: float,
    surface: str,
    segment: Callable[..., np.ndarray] = select_surface,
) -> list[MaskScore]:
    """One photo segmented in both modes (clicks alone naming `surface`, then the box and the
    clicks), each mask's IoU with `visible` and its CPU seconds."""
    box, positives, negatives = clicks
    results = []
    for mode in MODES:
        start = time.process_time()
        try:
            mask = segment(
                photo,
                box if mode == "box + points" else None,
                positives,
                negatives,
                focal_px=focal,
                # Clicks alone name the surface as modes.points_only does; with a box the name counts
                # for a wall or a ceiling only (a strip of another surface across the box), which the
                # segmentation stage passes as a request names it.
                **({"surface": surface} if mode == "points only" or surface in PLANES else {}),
            )
        except InputError:
            # The request fails (the stage answers FAILED_PRECONDITION): scored as nothing selected,
            # not an end to the whole run (the ceiling looked up at, clicks alone).
            mask = np.zeros(visible.shape, np.uint8)
        seconds = time.process_time() - start
        results.append(MaskScore(name, mode, mask_iou(mask, visible), seconds))
    return results


def report(scores: Sequence[MaskScore]) -> None:
    """Per room, IoU and CPU seconds in both modes; then each mode's median, mean and worst."""
    names = list(dict.fromkeys(s.scene for s in scores))
    print(f"{'room':<56}" + "".join(f"{mode:>22}" for mode in MODES))
    for name in names:
        cells = {s.mode: s for s in scores if s.scene == name}
        print(f"{name:<56}" + "".join(f"{cells[m].iou:>13.3f} {cells[m].seconds:>6.2f} s" for m in MODES if m in cells))
    for mode in MODES:
        ious = [s.iou for s in scores if s.mode == mode]
        seconds = [s.seconds for s in scores if s.mode == mode]
        print(
            f"{mode:<14} median IoU {statistics.median(ious):.3f}, mean {statistics.mean(ious):.3f}, "
            f"min {min(ious):.3f}; median {statistics.median(seconds):.2f} s CPU"
        )


def _one_thread() -> None:
    cv2.setNumThreads(1)  # the timings are for one core


def _render_and_score(index: int, scale: float) -> list[MaskScore]:
    return score_rooms([build((ALL_SPECS + WALL_SPECS)[index], scale=scale)])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", default="", help="comma-separated room numbers (all when empty)")
    parser.add_argument("--set", default="all", choices=("rooms", "hard", "all", "walls"),
                        help="the rooms, the hard floors (HARD_SPECS, numbered after the rooms), both, or "
                             "the walls and ceilings (WALL_SPECS, numbered after both)")  # fmt: skip
    parser.add_argument("--scale", type=float, default=1.0, help="room size factor (1: 1024 x 768)")
    parser.add_argument("--jobs", type=int, default=2, help="rooms rendered and scored at once, one core each")
    args = parser.parse_args(argv)
    every = {
        "rooms": range(len(SPECS)),
        "hard": range(len(SPECS), len(ALL_SPECS)),
        "all": range(len(ALL_SPECS)),
        "walls": range(len(ALL_SPECS), len(ALL_SPECS + WALL_SPECS)),
    }
    chosen = [int(i) for i in args.rooms.split(",")] if args.rooms else list(every[args.set])
    started = time.perf_counter()
    # Each room is rendered and scored in a process of its own (a room takes 3-7 s to render); the
    # seconds reported are each mask's CPU time in its process.
    with ProcessPoolExecutor(max(1, args.jobs), initializer=_one_thread) as pool:
        scores = [s for room in pool.map(_render_and_score, chosen, [args.scale] * len(chosen)) for s in room]
    for title, part in (("rooms", SPECS), ("hard floors", HARD_SPECS), ("walls and ceilings", WALL_SPECS)):
        names = {spec.name for spec in part}
        if any(s.scene in names for s in scores):
            print(f"-- {title}")
            report([s for s in scores if s.scene in names])
    print(f"{len(chosen)} rooms rendered and scored in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
