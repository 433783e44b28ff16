"""Hard rooms for interactive segmentation, ray-cast with a known camera: the truth is exact.

A room is a floor, four walls and a ceiling around a camera at standing height, with boxes standing
on the floor (a sofa, a cabinet, a table on thin legs) and skirting boards. The old surface is a
procedural material in the surface's own metres (worn or tinted tiles with joints, a checkerboard,
stone cladding, wood planks, carpet, concrete), lit by a window's falloff, a sharp-edged patch of
warm sun (with the shadows the furniture casts in it) and soft contact shadows. The photo is
rendered at twice the size, reduced, given sensor noise and saved as JPEG q90; portrait views are
included. The clicks are what a user would make: positives spread over the surface, negatives on
the furniture and on the wall next to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from renderkit.imaging import linear_to_srgb, srgb_to_linear

Material = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (s, t) metres -> linear RGB (N, 3)

FLOOR, BACK, LEFT, RIGHT, CEILING, FRONT = range(6)
SURFACES = {"floor": FLOOR, "back wall": BACK}


def _hash(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """A deterministic pseudo-random value in [0, 1) per integer cell."""
    h = (ix.astype(np.int64) * 73856093) ^ (iy.astype(np.int64) * 19349663) ^ (seed * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    return ((h ^ (h >> 16)) & 0xFFFF).astype(np.float32) / 65536.0


def _value_noise(s: np.ndarray, t: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Smooth noise in [0, 1) with features about `scale` metres across."""
    x, y = s / scale, t / scale
    ix, iy = np.floor(x), np.floor(y)
    fx, fy = x - ix, y - iy
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    a, b = _hash(ix, iy, seed), _hash(ix + 1, iy, seed)
    c, d = _hash(ix, iy + 1, seed), _hash(ix + 1, iy + 1, seed)
    return ((a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy).astype(np.float32)


def _rgb(colour: tuple[int, int, int]) -> np.ndarray:
    """An sRGB colour (R, G, B) as linear RGB."""
    return srgb_to_linear(np.array([[colour]], np.uint8))[0, 0].astype(np.float32)


def tiles(
    size: float,
    tile: tuple[int, int, int],
    grout: tuple[int, int, int],
    joint: float = 0.006,
    variation: float = 0.12,
    wear: float = 0.25,
    checker: tuple[int, int, int] | None = None,
    seed: int = 1,
) -> Material:
    """Square tiles with joints, a tone per tile, worn patches and speckle (or a checkerboard)."""
    base, grout_c = _rgb(tile), _rgb(grout)
    other = _rgb(checker) if checker is not None else base

    def render(s: np.ndarray, t: np.ndarray) -> np.ndarray:
        i, j = np.floor(s / size), np.floor(t / size)
        u, v = s / size - i, t / size - j
        tone = 1 + variation * (2 * _hash(i, j, seed) - 1)
        colour = np.where(((i + j) % 2 == 0)[:, None], base, other) * tone[:, None]
        worn = 1 + wear * (_value_noise(s, t, 0.35, seed + 1) - 0.5) + 0.08 * (_value_noise(s, t, 0.02, seed + 2) - 0.5)
        colour = colour * worn[:, None]
        half = joint / size / 2
        in_joint = (np.minimum(u, 1 - u) < half) | (np.minimum(v, 1 - v) < half)
        return np.where(in_joint[:, None], grout_c * (1 + 0.2 * (_hash(i, j, seed + 3)[:, None] - 0.5)), colour)

    return render


def stone_cladding(seed: int = 5) -> Material:
    """Courses of split stone of random lengths, strong tone changes, deep dark joints."""

    def render(s: np.ndarray, t: np.ndarray) -> np.ndarray:
        course = np.floor(t / 0.11)
        shift = _hash(course, course * 0 + 7, seed) * 0.4
        length = 0.18 + 0.22 * _hash(course, course * 0 + 3, seed)
        k = np.floor((s + shift) / length[...])
        u = (s + shift) / length - k
        v = t / 0.11 - course
        stone = _hash(k, course, seed)
        warm = np.stack([0.55 + 0.35 * stone, 0.45 + 0.28 * stone, 0.33 + 0.2 * _hash(k, course, seed + 9)], axis=1)
        rough = 0.75 + 0.5 * _value_noise(s, t, 0.03, seed + 1)
        colour = srgb_to_linear(np.clip(warm * 255, 0, 255).astype(np.uint8)[None])[0] * rough[:, None]
        joint = (np.minimum(u, 1 - u) * length < 0.008) | (np.minimum(v, 1 - v) * 0.11 < 0.007)
        return np.where(joint[:, None], colour * 0.15, colour)

    return render


def planks(width: float = 0.16, length: float = 1.4, seed: int = 7) -> Material:
    """Wood planks in a staggered bond: a tone per plank, grain along it, dark joints."""
    base = _rgb((160, 110, 70))

    def render(s: np.ndarray, t: np.ndarray) -> np.ndarray:
        row = np.floor(s / width)
        offset = _hash(row, row * 0, seed) * length
        k = np.floor((t + offset) / length)
        u, v = s / width - row, (t + offset) / length - k
        tone = 0.7 + 0.6 * _hash(row, k, seed + 1)
        grain = 1 + 0.15 * np.sin(2 * math.pi * (s * 40 + 3 * _value_noise(s * 0.3, t, 0.15, seed + 2) + row))
        colour = base * (tone * grain)[:, None]
        joint = (np.minimum(u, 1 - u) * width < 0.002) | (np.minimum(v, 1 - v) * length < 0.002)
        return np.where(joint[:, None], colour * 0.3, colour)

    return render


def carpet(colour: tuple[int, int, int], seed: int = 11) -> Material:
    """A low-contrast pile: millimetre speckle over slow tone changes."""
    base = _rgb(colour)

    def render(s: np.ndarray, t: np.ndarray) -> np.ndarray:
        fine = _hash(np.floor(s / 0.004), np.floor(t / 0.004), seed) - 0.5
        slow = _value_noise(s, t, 0.5, seed + 1) - 0.5
        return base * (1 + 0.25 * fine + 0.15 * slow)[:, None]

    return render


def paint(colour: tuple[int, int, int], seed: int = 13) -> Material:
    """A painted wall: flat with a faint plaster texture."""
    base = _rgb(colour)

    def render(s: np.ndarray, t: np.ndarray) -> np.ndarray:
        return base * (1 + 0.04 * (_value_noise(s, t, 0.05, seed) - 0.5))[:, None]

    return render


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in the room (metres): furniture, legs, skirting boards."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    colour: tuple[int, int, int]


@dataclass(frozen=True)
class Room:
    """The room around the camera and what covers its surfaces."""

    floor: Material
    walls: Material
    back_wall: Material | None = None  # another material on the back wall (cladding)
    half_width: float = 2.2  # walls at x = +-half_width
    depth: float = 6.0  # the back wall at y = depth
    height: float = 2.6
    boxes: tuple[Box, ...] = ()
    skirting: tuple[int, int, int] | None = (235, 235, 230)
    sun: tuple[float, float, float, float] | None = (-0.8, 2.2, 0.9, 1.3)  # x, y, width, length on the floor
    sun_colour: tuple[float, float, float] = (1.0, 0.9, 0.75)
    sun_strength: float = 1.6


@dataclass(frozen=True)
class Camera:
    """A pinhole camera at (x, 0, height) looking along +y, pitched down and turned by yaw."""

    fov_deg: float = 60.0
    pitch_deg: float = 30.0
    yaw_deg: float = 0.0
    x: float = 0.0
    height: float = 1.6
    size: tuple[int, int] = (1024, 768)


@dataclass(frozen=True)
class SegmentationScene:
    """A photo, the target surface's true mask, and the hints a user gives."""

    name: str
    photo: np.ndarray  # uint8 BGR
    truth: np.ndarray  # bool
    positives: np.ndarray  # (N, 2) x, y
    negatives: np.ndarray
    box: tuple[float, float, float, float]
    tags: tuple[str, ...] = field(default=())


def _slab(origin: np.ndarray, d: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray]:
    """The ray's entry distance into a box (inf when missed) and the entry face's axis."""
    lo, hi = np.array(box.lo), np.array(box.hi)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (lo[:, None] - origin[:, None]) / d
        t2 = (hi[:, None] - origin[:, None]) / d
    near, far = np.minimum(t1, t2), np.maximum(t1, t2)
    near = np.nan_to_num(near, nan=-np.inf)
    far = np.nan_to_num(far, nan=np.inf)
    enter, leave = near.max(axis=0), far.min(axis=0)
    hit = (enter <= leave) & (enter > 0)
    return np.where(hit, enter, np.inf), near.argmax(axis=0)


def render(room: Room, camera: Camera, target: int = FLOOR, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The photo (uint8 BGR, JPEG q90 with noise), the target surface's visible mask and the
    furniture's (bool)."""
    width, height = camera.size
    ss = 2
    w2, h2 = width * ss, height * ss
    focal = 0.5 * w2 / math.tan(math.radians(camera.fov_deg) / 2)
    p, y = math.radians(camera.pitch_deg), math.radians(camera.yaw_deg)
    Rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    look = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)
    Rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    R = Rx @ look @ Rz
    vs, us = np.mgrid[0:h2, 0:w2].astype(np.float64)
    rays = np.stack([(us.ravel() + 0.5 - w2 / 2) / focal, (vs.ravel() + 0.5 - h2 / 2) / focal, np.ones(us.size)])
    d = R.T @ rays  # world directions, (3, N)
    origin = np.array([camera.x, 0.0, camera.height])
    with np.errstate(divide="ignore", invalid="ignore"):
        planes = [
            np.where(d[2] < 0, -origin[2] / d[2], np.inf),  # floor z = 0
            np.where(d[1] > 0, (room.depth - origin[1]) / d[1], np.inf),  # back wall
            np.where(d[0] < 0, (-room.half_width - origin[0]) / d[0], np.inf),  # left wall
            np.where(d[0] > 0, (room.half_width - origin[0]) / d[0], np.inf),  # right wall
            np.where(d[2] > 0, (room.height - origin[2]) / d[2], np.inf),  # ceiling
            np.where(d[1] < 0, (-1.0 - origin[1]) / d[1], np.inf),  # a wall behind the camera
        ]
    boxes = list(room.boxes)
    if room.skirting is not None:
        k, hw, dp = 0.012, room.half_width, room.depth
        boxes += [
            Box((-hw, -1.0, 0.0), (-hw + k, dp, 0.08), room.skirting),
            Box((hw - k, -1.0, 0.0), (hw, dp, 0.08), room.skirting),
            Box((-hw, dp - k, 0.0), (hw, dp, 0.08), room.skirting),
        ]
    hits = [_slab(origin, d, box) for box in boxes]
    distances = np.stack(planes + [h[0] for h in hits])
    surface = distances.argmin(axis=0)
    dist = distances.min(axis=0)
    point = origin[:, None] + d * dist
    n = point.shape[1]
    colour = np.zeros((n, 3), np.float32)
    shade = np.ones(n, np.float32)
    for index in range(6):
        sel = surface == index
        if not sel.any():
            continue
        px, py, pz = point[0, sel], point[1, sel], point[2, sel]
        if index in (FLOOR, CEILING):
            s, t = px, py
        elif index in (BACK, FRONT):
            s, t = px, pz
        else:
            s, t = py, pz
        material = room.floor if index == FLOOR else room.walls
        if index == BACK and room.back_wall is not None:
            material = room.back_wall
        colour[sel] = material(s.astype(np.float32), t.astype(np.float32))
        shade[sel] = {FLOOR: 1.0, BACK: 0.85, LEFT: 0.7, RIGHT: 0.95, CEILING: 0.9, FRONT: 0.8}[index]
    for k, (box, (_, face)) in enumerate(zip(boxes, hits, strict=True)):
        sel = surface == 6 + k
        colour[sel] = _rgb(box.colour)
        shade[sel] = np.array([0.8, 0.65, 1.0], np.float32)[face[sel]]
    # Light: a window on the left wall, contact shadows under the furniture, a patch of sun.
    x, yw = point[0], point[1]
    light = 0.35 + 0.9 * np.exp(-(((x + room.half_width) / 2.2) ** 2) - ((yw - 2.5) / 3.0) ** 2)
    light = light.astype(np.float32) * shade
    on_floor = surface == FLOOR
    rgb_light = np.repeat(light[:, None], 3, axis=1)
    for box in room.boxes:
        gap = np.maximum(np.maximum(box.lo[0] - x, x - box.hi[0]), np.maximum(box.lo[1] - yw, yw - box.hi[1]))
        contact = 1 - 0.55 * np.exp(-np.maximum(gap, 0) / 0.12) * on_floor
        rgb_light *= contact[:, None].astype(np.float32)
    if room.sun is not None:
        sx, sy, swidth, slength = room.sun
        slant = 0.5  # the patch leans: sun through a window, from the left and behind
        across = (x - sx - slant * (yw - sy)) / swidth
        along = (yw - sy) / slength
        pen = 0.02  # penumbra (metres)
        inside = (
            np.clip(0.5 + np.minimum(across, 1 - across) * swidth / pen, 0, 1)
            * np.clip(0.5 + np.minimum(along, 1 - along) * slength / pen, 0, 1)
            * on_floor
        )
        sun_dir = np.array([0.55, -0.35])  # floor offset per metre of height towards the sun
        for box in room.boxes:
            shadowed = np.zeros(n, bool)
            for h in np.linspace(0, box.hi[2], 10):
                qx, qy = x + sun_dir[0] * h, yw + sun_dir[1] * h
                shadowed |= (qx > box.lo[0]) & (qx < box.hi[0]) & (qy > box.lo[1]) & (qy < box.hi[1])
            inside = inside * ~shadowed
        sun = 1 + room.sun_strength * inside[:, None] * np.array(room.sun_colour, np.float32)
        rgb_light *= sun.astype(np.float32)
    linear = colour * rgb_light * 0.55
    image = linear_to_srgb(linear.reshape(h2, w2, 3)[..., ::-1].astype(np.float32))
    photo = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)

    def coverage(selected: np.ndarray) -> np.ndarray:
        return cv2.resize(selected.reshape(h2, w2).astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)

    furniture_ids = (surface >= 6) & (surface < 6 + len(room.boxes))
    rng = np.random.default_rng(seed)
    noisy = np.clip(photo.astype(np.float32) + rng.normal(0, 2.5, photo.shape), 0, 255).astype(np.uint8)
    _, jpeg = cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR), coverage(surface == target) >= 0.5, coverage(furniture_ids) >= 0.5


def user_clicks(
    truth: np.ndarray, photo_shape: tuple[int, ...], obstacles: np.ndarray, seed: int, positives: int, negatives: int
) -> tuple[np.ndarray, np.ndarray]:
    """Clicks a user would make: positives spread over the surface (away from its edges), negatives on
    what stands on it and on what lies just beyond its edge."""
    rng = np.random.default_rng(seed)
    height, width = photo_shape[:2]
    margin = max(6, round(0.02 * max(width, height)))
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    inner = cv2.erode(truth.astype(np.uint8), kernel) > 0
    ys, xs = np.nonzero(inner)
    chosen = [int(rng.integers(len(xs)))]
    for _ in range(positives - 1):  # farthest of a few random candidates: spread, not systematic
        candidates = rng.integers(len(xs), size=12)
        gaps = np.min([np.hypot(xs[candidates] - xs[c], ys[candidates] - ys[c]) for c in chosen], axis=0)
        chosen.append(int(candidates[np.argmax(gaps)]))
    pos = np.array([[xs[c], ys[c]] for c in chosen], float)
    neg = []
    if obstacles.any():
        oy, ox = np.nonzero(cv2.erode(obstacles.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
        if len(ox):
            k = int(rng.integers(len(ox)))
            neg.append([ox[k], oy[k]])
    # Just beyond the surface: the band outside it, away from the image border.
    ring = (cv2.dilate(truth.astype(np.uint8), np.ones((4 * margin + 1,) * 2, np.uint8)) > 0) & ~(
        cv2.dilate(truth.astype(np.uint8), kernel) > 0
    )
    ring &= ~obstacles
    ring[:margin], ring[-margin:], ring[:, :margin], ring[:, -margin:] = False, False, False, False
    ry, rx = np.nonzero(ring)
    while len(neg) < negatives and len(rx):
        k = int(rng.integers(len(rx)))
        neg.append([rx[k], ry[k]])
    return pos, np.array(neg, float).reshape(-1, 2)


def _scene(
    name: str,
    room: Room,
    camera: Camera,
    seed: int,
    target: int = FLOOR,
    positives: int = 3,
    negatives: int = 2,
    tags: tuple[str, ...] = (),
) -> SegmentationScene:
    photo, truth, obstacles = render(room, camera, target, seed)
    pos, neg = user_clicks(truth, photo.shape, obstacles, seed, positives, negatives)
    ys, xs = np.nonzero(truth)
    pad = 0.015 * math.hypot(*photo.shape[:2])
    h, w = photo.shape[:2]
    box = (
        max(0.0, xs.min() - pad),
        max(0.0, ys.min() - pad),
        min(float(w), xs.max() + 1 + pad),
        min(float(h), ys.max() + 1 + pad),
    )
    return SegmentationScene(name, photo, truth, pos, neg, box, tags)


def furniture(kind: str) -> tuple[Box, ...]:
    """A sofa and a low table on thin legs, or a cabinet against the right wall, or both."""
    sofa = Box((-1.2, 3.4, 0.0), (0.6, 4.3, 0.8), (70, 80, 110))
    legs = tuple(Box((x, y, 0.0), (x + 0.04, y + 0.04, 0.45), (60, 40, 30)) for x in (0.3, 1.1) for y in (1.9, 2.5))
    table = (*legs, Box((0.28, 1.88, 0.45), (1.16, 2.56, 0.5), (90, 60, 40)))
    cabinet = Box((1.5, 2.8, 0.0), (2.2, 3.6, 1.1), (200, 195, 185))
    return {"sofa": (sofa,), "table": table, "cabinet": (cabinet,), "all": (sofa, *table, cabinet)}[kind]


def hard_scenes(scale: float = 1.0) -> list[SegmentationScene]:
    """The benchmark's scenes (1024 x 768 and portrait 768 x 1024, times scale)."""

    def cam(fov: float, pitch: float, yaw: float, x: float = 0.0, portrait: bool = False) -> Camera:
        size = (768, 1024) if portrait else (1024, 768)
        return Camera(fov, pitch, yaw, x, size=(round(size[0] * scale), round(size[1] * scale)))

    beige = (196, 184, 160)
    scenes = [
        _scene(
            "worn tiles, similar wall, sun",
            Room(tiles(0.45, (200, 188, 165), (150, 140, 125)), paint(beige), boxes=furniture("all")),
            cam(60, 32, 8),
            1,
            tags=("tiles", "sun", "similar wall"),
        ),
        _scene(
            "tinted tiles, dark joints, portrait",
            Room(
                tiles(0.3, (170, 190, 175), (60, 60, 58), wear=0.35, seed=3),
                paint((225, 228, 220)),
                boxes=furniture("sofa"),
            ),
            cam(55, 40, -10, portrait=True),
            2,
            positives=2,
            negatives=1,
            tags=("tiles", "portrait", "sun"),
        ),
        _scene(
            "checkerboard, low view",
            Room(
                tiles(0.35, (235, 232, 225), (120, 120, 120), checker=(40, 40, 45), seed=5),
                paint((210, 205, 195)),
                boxes=furniture("table"),
            ),
            cam(70, 22, 15),
            3,
            tags=("tiles", "pattern", "sun"),
        ),
        _scene(
            "wood planks, cabinet",
            Room(planks(), paint((215, 190, 160)), boxes=furniture("cabinet")),
            cam(65, 35, 12, x=-0.3),
            4,
            positives=2,
            negatives=2,
            tags=("wood", "sun", "similar wall"),
        ),
        _scene(
            "grey carpet, grey wall",
            Room(carpet((150, 150, 155)), paint((165, 165, 168)), boxes=furniture("sofa"), skirting=None),
            cam(60, 30, -5),
            5,
            tags=("carpet", "similar wall", "sun"),
        ),
        _scene(
            "dark slate, white walls, portrait",
            Room(
                tiles(0.6, (70, 72, 78), (190, 190, 185), joint=0.004, variation=0.2, seed=9),
                paint((240, 240, 236)),
                boxes=furniture("all"),
            ),
            cam(60, 38, 5, portrait=True),
            6,
            positives=3,
            negatives=1,
            tags=("tiles", "portrait", "sun"),
        ),
        _scene(
            "stone cladding wall",
            Room(
                planks(seed=21),
                paint((225, 220, 210)),
                back_wall=stone_cladding(),
                boxes=(Box((-0.5, 5.3, 0.0), (0.5, 6.0, 0.9), (60, 60, 65)),),
                depth=6.0,
                sun=None,
            ),
            cam(60, 5, 0),
            7,
            target=BACK,
            tags=("stone", "wall target"),
        ),
        _scene(
            "concrete, no skirting, shadows",
            Room(
                carpet((175, 170, 162), seed=17),
                paint((185, 180, 172)),
                boxes=furniture("all"),
                skirting=None,
                sun=(-0.5, 1.5, 1.2, 1.8),
            ),
            cam(62, 34, -12),
            8,
            positives=2,
            negatives=1,
            tags=("carpet", "similar wall", "sun"),
        ),
    ]
    return scenes


def camera_scenes() -> list[SegmentationScene]:
    """The quality benchmark's known-camera scenes (devstack.scenes.camera_scene: light tiles with
    dark joints under a window's falloff, a patch of sun and an overexposed wall, a dark object in
    front) with its clicks: two on the surface low left and right, one on the object."""
    from devstack import scenes as known

    old, new = known.tile_texture(256, tiles=1), known.plank_texture(256)
    views = [
        known.View(60, 35, 0),
        known.View(45, 25, -15),
        known.View(75, 45, 10),
        known.View(50, 12, -25),
        known.View(80, 40, 0),
        known.View(60, -8, 25, "facade"),
    ]
    out = []
    for view in views:
        scene = known.camera_scene(view, old, new, supersample=2)
        ys, xs = np.nonzero(scene.visible_surface)
        box = (float(xs.min()) - 10, float(ys.min()) - 10, float(xs.max()) + 10, float(ys.max()) + 10)
        inner_y, inner_x = np.nonzero(cv2.erode(scene.visible_surface.astype(np.uint8), np.ones((31, 31), np.uint8)))
        targets = [(np.percentile(inner_x, q), np.percentile(inner_y, 85)) for q in (15, 85)]
        nearest = [int(np.argmin((inner_x - tx) ** 2 + (inner_y - ty) ** 2)) for tx, ty in targets]
        positives = np.array([(inner_x[i], inner_y[i]) for i in nearest], float)
        occ_y, occ_x = np.nonzero(scene.occluder)
        name = f"camera {view.surface} {view.fov_deg:.0f}° {view.pitch_deg:.0f}° {view.yaw_deg:.0f}°"
        out.append(
            SegmentationScene(
                name, scene.photo, scene.visible_surface, positives, np.array([[occ_x.mean(), occ_y.mean()]]), box
            )
        )
    return out
