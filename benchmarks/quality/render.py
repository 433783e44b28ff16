"""The benchmark's renderer: ray casting through a pinhole camera, several lights, supersampled surfaces.

It shares nothing with the pipeline's model of a photo. A photo is radiance = albedo x irradiance,
where the irradiance at each point sums lights of different kinds and colours:

- ambient light, brighter near the window and darker where surfaces meet (occlusion near walls,
  the ground and the objects standing on the surface);
- a window as an area light (many point samples over its opening), its shadows soft;
- the sun through the window's panes (or over a facade), tested per sub-pixel sample against the
  opening, its bars and the objects, over the sun's disc: hard edges with a penumbra of a
  centimetre or two;
- a lamp (a small sphere sampled at a few points): a hot spot, inverse-square falloff, shadows;
- a highlight: the glaze's sheen around the mirror direction of a light, as a multiplier;
- vignetting.

The old surface is supersampled (its joints box-filtered per sample), and so is the sun's
visibility, so a sun patch's edge is exact to the sub-pixel. The true shading is the same render
with a white albedo; the truth of a swap is the new material, sampled from a Gaussian pyramid per
sub-pixel sample, under that shading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from benchmarks.quality.materials import Albedo, linear

Vector = tuple[float, float, float]


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: principal point at (width / 2, height / 2), pixel centres on integers."""

    width: int
    height: int
    focal: float
    position: np.ndarray  # (3,) world, metres
    rotation: np.ndarray  # (3, 3) world to camera (x right, y down, z forward)

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.focal, 0, self.width / 2], [0, self.focal, self.height / 2], [0, 0, 1]])

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points (N, 3) to pixels (N, 2)."""
        cam = (self.rotation @ (np.asarray(points, np.float64) - self.position).T).T
        if np.any(cam[:, 2] <= 1e-6):
            raise ValueError("a point behind the camera")
        pix = (self.K @ cam.T).T
        return np.asarray(pix[:, :2] / pix[:, 2:], np.float64)

    def rays(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World directions (not normalised) of the rays through pixel positions."""
        cx = (xs - np.float32(self.width / 2)) / np.float32(self.focal)
        cy = (ys - np.float32(self.height / 2)) / np.float32(self.focal)
        r = self.rotation.astype(np.float32)
        return (
            r[0, 0] * cx + r[1, 0] * cy + r[2, 0],
            r[0, 1] * cx + r[1, 1] * cy + r[2, 1],
            r[0, 2] * cx + r[1, 2] * cy + r[2, 2],
        )


def aim(
    width: int, height: int, focal_35mm: float, position: Vector, yaw: float, pitch: float, roll: float = 0.0
) -> Camera:
    """A camera at `position` (z up) looking along +y turned by yaw (degrees, to the left), pitched
    down by pitch and rolled; its focal length given as a 35 mm equivalent (on the diagonal)."""
    focal = focal_35mm * math.hypot(width, height) / math.hypot(36.0, 24.0)
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    Rz = np.array([[math.cos(y), math.sin(y), 0], [-math.sin(y), math.cos(y), 0], [0, 0, 1]])
    look = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)  # world (x, y, z) -> camera (x, -z, y)
    Rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    Rr = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return Camera(width, height, focal, np.array(position, float), Rr @ Rx @ look @ Rz)


@dataclass(frozen=True)
class Rect:
    """A rectangle in the world: origin + a u + b v for a in [0, size[0]], b in [0, size[1]]."""

    origin: Vector
    u: Vector
    v: Vector
    size: tuple[float, float]
    albedo: Albedo

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.u, self.v)
        return np.asarray(n / np.linalg.norm(n), np.float64)

    def corners(self) -> np.ndarray:
        o, u, v = (np.array(x, float) for x in (self.origin, self.u, self.v))
        w, h = self.size
        return np.array([o, o + w * u, o + w * u + h * v, o + h * v])

    def to_image(self, camera: Camera) -> np.ndarray:
        """The homography from surface metres (a, b) to pixels."""
        o, u, v = (np.array(x, float) for x in (self.origin, self.u, self.v))
        return np.asarray(camera.K @ camera.rotation @ np.stack([u, v, o - camera.position], 1), np.float64)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box: furniture, a hedge, a balcony, a neighbouring building."""

    lo: Vector
    hi: Vector
    colour: tuple[int, int, int]  # sRGB BGR


@dataclass(frozen=True)
class Window:
    """An opening in a wall (a Rect whose normal points into the room), with bars across it."""

    opening: Rect
    bars: tuple[tuple[float, float, float, float], ...] = ()  # (a0, a1, b0, b1) of the opening

    def passes(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        w, h = self.opening.size
        inside = (a > 0) & (a < w) & (b > 0) & (b < h)
        for a0, a1, b0, b1 in self.bars:
            inside &= ~((a > a0) & (a < a1) & (b > b0) & (b < b1))
        return inside


@dataclass(frozen=True)
class Lights:
    """Everything that lights the scene; colours are linear BGR multipliers."""

    ambient: float
    ambient_colour: Vector = (1.0, 0.98, 0.95)
    window: Window | None = None  # the sun comes only through it; it is also an area light
    window_power: float = 0.0
    window_colour: Vector = (1.0, 0.97, 0.92)
    sun: Vector | None = None  # towards the sun
    sun_power: float = 0.0
    sun_colour: Vector = (0.86, 0.95, 1.0)
    lamp: Vector | None = None
    lamp_power: float = 0.0
    lamp_colour: Vector = (0.72, 0.87, 1.0)
    near_window_boost: float = 0.6  # ambient light, brighter by this much near the window
    sheen: float = 0.0  # the highlight's strength (a multiplier at its peak)
    sheen_exponent: float = 40.0
    sheen_from: str = "lamp"  # 'lamp' or 'sun'
    vignetting: float = 0.18
    occlusion_reach: float = 0.15  # metres


@dataclass(frozen=True)
class World:
    """A scene: rectangles (surface first), boxes, lights, a sky colour where rays escape."""

    rects: tuple[Rect, ...]
    boxes: tuple[Box, ...]
    lights: Lights
    sky: tuple[int, int, int] = (235, 215, 190)


@dataclass
class Render:
    """What the renderer knows about a photo it made."""

    radiance: np.ndarray  # float32 linear BGR, the old surface under the light (before exposure)
    shading: np.ndarray  # float32 linear BGR: the light on the surface (white albedo), per pixel
    surface: np.ndarray  # bool: pixels whose first hit is the surface (objects excluded)
    ident: np.ndarray  # int16: -1 sky, rect index, or 100 + box index
    samples: int  # per axis
    base: np.ndarray = field(repr=False)  # float32 BGR: the shading without the sun (surface pixels)
    sun: np.ndarray = field(repr=False)  # float32 BGR: the sun's contribution when visible
    visible: np.ndarray = field(repr=False)  # uint8 (samples^2, *packed): the sun seen by each sample
    packed: Packed = field(repr=False)  # the surface's pixels


def _cast(world: World, camera: Camera, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, ...]:
    """The first hit of each pixel's ray: distance, what it is, position (3) and normal (3)."""
    d = camera.rays(xs, ys)
    o = camera.position.astype(np.float32)
    t_best = np.full(d[0].shape, np.inf, np.float32)
    ident = np.full(d[0].shape, -1, np.int16)
    normal = [np.zeros(d[0].shape, np.float32) for _ in range(3)]
    for k, rect in enumerate(world.rects):
        n = rect.normal.astype(np.float32)
        denom = n[0] * d[0] + n[1] * d[1] + n[2] * d[2]
        safe = np.where(np.abs(denom) < 1e-9, np.float32(1e-9), denom)
        t = np.float32(n @ (np.array(rect.origin, np.float32) - o)) / safe
        px, py, pz = (o[i] + t * d[i] for i in range(3))
        rel = [px - np.float32(rect.origin[0]), py - np.float32(rect.origin[1]), pz - np.float32(rect.origin[2])]
        a = sum(rel[i] * np.float32(rect.u[i]) for i in range(3))
        b = sum(rel[i] * np.float32(rect.v[i]) for i in range(3))
        hit = (t > 1e-4) & (t < t_best) & (a >= 0) & (a <= rect.size[0]) & (b >= 0) & (b <= rect.size[1])
        t_best = np.where(hit, t, t_best)
        ident = np.where(hit, np.int16(k), ident)
        facing = np.where(denom > 0, np.float32(-1), np.float32(1))  # the normal towards the camera
        for i in range(3):
            normal[i] = np.where(hit, n[i] * facing, normal[i])
    for k, box in enumerate(world.boxes):
        t, bn = _hit_box(box, o, d)
        hit = t < t_best
        t_best = np.where(hit, t, t_best)
        ident = np.where(hit, np.int16(100 + k), ident)
        for i in range(3):
            normal[i] = np.where(hit, bn[i], normal[i])
    pos = [np.where(np.isfinite(t_best), o[i] + t_best * d[i], 0).astype(np.float32) for i in range(3)]
    return (t_best, ident, *pos, *normal)


def _hit_box(box: Box, o: np.ndarray, d: tuple[np.ndarray, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Slab test: the distance where each ray enters the box (inf: missed) and the normal there."""
    inf = np.float32(np.inf)
    t_near = np.full(d[0].shape, -inf, np.float32)
    t_far = np.full(d[0].shape, inf, np.float32)
    axis = np.zeros(d[0].shape, np.int8)
    sign = np.zeros(d[0].shape, np.float32)
    for i in range(3):
        safe = np.where(np.abs(d[i]) < 1e-9, np.float32(1e-9), d[i])
        t1 = (np.float32(box.lo[i]) - o[i]) / safe
        t2 = (np.float32(box.hi[i]) - o[i]) / safe
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        later = near > t_near
        axis = np.where(later, np.int8(i), axis)
        sign = np.where(later, -np.sign(safe), sign)
        t_near, t_far = np.maximum(t_near, near), np.minimum(t_far, far)
    t = np.where((t_far >= t_near) & (t_near > 1e-4), t_near, inf)
    return t, [np.where(axis == i, sign, np.float32(0)) for i in range(3)]


def _blocked(boxes: tuple[Box, ...], p: list[np.ndarray], d: tuple[np.ndarray, ...], reach: float) -> np.ndarray:
    """Whether the segment from points p along directions d (up to `reach` times d) meets a box."""
    out = np.zeros(p[0].shape, bool)
    for box in boxes:
        t_near = np.zeros(p[0].shape, np.float32)
        t_far = np.full(p[0].shape, reach, np.float32)
        for i in range(3):
            safe = np.where(np.abs(d[i]) < 1e-9, np.float32(1e-9), d[i])
            t1 = (np.float32(box.lo[i]) - p[i]) / safe
            t2 = (np.float32(box.hi[i]) - p[i]) / safe
            t_near = np.maximum(t_near, np.minimum(t1, t2))
            t_far = np.minimum(t_far, np.maximum(t1, t2))
        out |= (t_far > t_near) & (t_far > 1e-3)
    return out


def _box_distance(box: Box, p: list[np.ndarray]) -> np.ndarray:
    sq = sum(
        np.maximum(np.maximum(np.float32(box.lo[i]) - p[i], p[i] - np.float32(box.hi[i])), 0) ** 2 for i in range(3)
    )
    return np.sqrt(np.asarray(sq, np.float32))


def _through_window(window: Window, p: list[np.ndarray], d: tuple[np.ndarray, ...]) -> np.ndarray:
    """Whether rays from p along d leave through the window's panes."""
    rect = window.opening
    n = rect.normal.astype(np.float32)
    denom = n[0] * d[0] + n[1] * d[1] + n[2] * d[2]
    safe = np.where(np.abs(denom) < 1e-9, np.float32(-1e-9), denom)
    t = sum(n[i] * (np.float32(rect.origin[i]) - p[i]) for i in range(3)) / safe
    hit = [p[i] + t * d[i] - np.float32(rect.origin[i]) for i in range(3)]
    a = sum(hit[i] * np.float32(rect.u[i]) for i in range(3))
    b = sum(hit[i] * np.float32(rect.v[i]) for i in range(3))
    return np.asarray((t > 0) & window.passes(a, b))


def _disc(samples: int, direction: np.ndarray, radius_deg: float = 0.27) -> list[np.ndarray]:
    """Directions spread over the sun's disc, one per sub-pixel sample (a fixed spiral)."""
    d = direction / np.linalg.norm(direction)
    e1 = np.cross(d, [0.0, 0.0, 1.0] if abs(d[2]) < 0.9 else [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(d, e1)
    r = math.tan(math.radians(radius_deg))
    out = []
    for k in range(samples):
        rho = r * math.sqrt((k + 0.5) / samples)
        phi = k * 2.39996  # the golden angle
        v = d + rho * (math.cos(phi) * e1 + math.sin(phi) * e2)
        out.append(v / np.linalg.norm(v))
    return out


def _irradiance(world: World, geo: tuple[np.ndarray, ...], camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Light reaching each hit point (linear BGR), without the sun, and the sun's own colour times
    its incidence (to be multiplied by its visibility)."""
    _, ident, px, py, pz, nx, ny, nz = geo
    lights = world.lights
    p, n = [px, py, pz], [nx, ny, nz]
    shape = px.shape
    # Occlusion near the other surfaces and near the objects.
    ao = np.ones(shape, np.float32)
    reach = np.float32(lights.occlusion_reach)
    for k, rect in enumerate(world.rects):
        rn = rect.normal.astype(np.float32)
        dist = np.abs(sum(rn[i] * (p[i] - np.float32(rect.origin[i])) for i in range(3)))
        across = np.abs(sum(rn[i] * n[i] for i in range(3))) < 0.5  # not the point's own plane
        ao *= np.where(across & (ident != k), 1 - np.float32(0.25) * np.exp(-dist / reach), np.float32(1))
    for k, box in enumerate(world.boxes):
        dist = _box_distance(box, p)
        ao *= np.where(ident == 100 + k, np.float32(1), 1 - np.float32(0.5) * np.exp(-dist / reach))
    ambient = np.full(shape, np.float32(lights.ambient))
    window = lights.window
    light = np.zeros((*shape, 3), np.float32)
    if window is not None:
        corners = window.opening.corners()
        centre = corners.mean(0)
        dist = np.sqrt(sum((p[i] - np.float32(centre[i])) ** 2 for i in range(3)))
        ambient *= 1 + np.float32(lights.near_window_boost) * np.exp(-dist / np.float32(2.0))
        # The opening as an area light: 6 x 4 points, each shadowed by the objects.
        wn = window.opening.normal.astype(np.float32)
        area = window.opening.size[0] * window.opening.size[1] / 24
        sky = np.zeros(shape, np.float32)
        for fa in (np.arange(6) + 0.5) / 6:
            for fb in (np.arange(4) + 0.5) / 4:
                q = corners[0] + fa * (corners[1] - corners[0]) + fb * (corners[3] - corners[0])
                v = [np.float32(q[i]) - p[i] for i in range(3)]
                d2 = np.maximum(sum(c * c for c in v), np.float32(0.05))
                inv = 1 / np.sqrt(d2)
                cos_p = np.maximum(sum(n[i] * v[i] for i in range(3)) * inv, 0)
                cos_w = np.maximum(-sum(wn[i] * v[i] for i in range(3)) * inv, 0)
                shadow = _blocked(world.boxes, p, tuple(v), 1.0)
                sky += np.where(shadow, np.float32(0), np.float32(area / math.pi) * cos_p * cos_w / d2)
        light += (np.float32(lights.window_power) * sky)[..., None] * np.array(lights.window_colour, np.float32)
    light += (ambient * ao)[..., None] * np.array(lights.ambient_colour, np.float32)
    if lights.lamp is not None:
        lamp = np.zeros(shape, np.float32)
        for off in ((0.04, 0, 0), (-0.04, 0, 0), (0, 0.04, 0.02), (0, -0.04, -0.02)):
            q = np.array(lights.lamp) + np.array(off)
            v = [np.float32(q[i]) - p[i] for i in range(3)]
            d2 = np.maximum(sum(c * c for c in v), np.float32(0.05))
            cos_p = np.maximum(sum(n[i] * v[i] for i in range(3)) / np.sqrt(d2), 0)
            shadow = _blocked(world.boxes, p, tuple(v), 1.0)
            lamp += np.where(shadow, np.float32(0), np.float32(0.25) * cos_p / d2)
        light += (np.float32(lights.lamp_power) * lamp)[..., None] * np.array(lights.lamp_colour, np.float32)
    sun = np.zeros((*shape, 3), np.float32)
    if lights.sun is not None:
        s = np.array(lights.sun, float)
        s /= np.linalg.norm(s)
        cos_s = np.maximum(sum(n[i] * np.float32(s[i]) for i in range(3)), 0)
        sun = (np.float32(lights.sun_power) * cos_s)[..., None] * np.array(lights.sun_colour, np.float32)
    # The highlight: the sheen around the mirror direction of the lamp (or the sun), as seen from here.
    if lights.sheen > 0:
        src = lights.lamp if lights.sheen_from == "lamp" else None
        view = [np.float32(camera.position[i]) - p[i] for i in range(3)]
        vlen = np.sqrt(sum(c * c for c in view)) + np.float32(1e-6)
        if src is not None:
            to_l = [np.float32(src[i]) - p[i] for i in range(3)]
        else:
            s = np.array(lights.sun, float)
            to_l = [np.full(shape, np.float32(s[i])) for i in range(3)]
        llen = np.sqrt(sum(c * c for c in to_l)) + np.float32(1e-6)
        h = [view[i] / vlen + to_l[i] / llen for i in range(3)]
        hlen = np.sqrt(sum(c * c for c in h)) + np.float32(1e-6)
        cos_h = np.maximum(sum(n[i] * h[i] for i in range(3)) / hlen, 0)
        boost = 1 + np.float32(lights.sheen) * cos_h ** np.float32(lights.sheen_exponent)
        boost = np.where(ident == 0, boost, np.float32(1))  # only the surface is glazed
        light *= boost[..., None]
        sun *= boost[..., None]
    return light, sun


def _sun_visible(world: World, p: list[np.ndarray], direction: np.ndarray) -> np.ndarray:
    """Whether the sun (one direction of its disc) reaches points p."""
    d = tuple(np.full(p[0].shape, np.float32(direction[i])) for i in range(3))
    lit = ~_blocked(world.boxes, p, d, 1e4)
    if world.lights.window is not None:
        lit &= _through_window(world.lights.window, p, d)
    return lit


def _vignetting(camera: Camera, strength: float) -> np.ndarray:
    ys, xs = np.mgrid[0 : camera.height, 0 : camera.width].astype(np.float32)
    r2 = ((xs - camera.width / 2) ** 2 + (ys - camera.height / 2) ** 2) / np.float32(
        (camera.width / 2) ** 2 + (camera.height / 2) ** 2
    )
    return np.asarray(1 - np.float32(strength) * r2, np.float32)


def _on_surface_plane(world: World, camera: Camera, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every ray's hit with the surface's plane (as _cast gives hits), whatever is in front of it."""
    d = camera.rays(xs, ys)
    o = camera.position.astype(np.float32)
    rect = world.rects[0]
    n = rect.normal.astype(np.float32)
    denom = n[0] * d[0] + n[1] * d[1] + n[2] * d[2]
    t = np.float32(n @ (np.array(rect.origin, np.float32) - o)) / np.where(
        np.abs(denom) < 1e-9, np.float32(1e-9), denom
    )
    facing = np.where(denom > 0, np.float32(-1), np.float32(1))
    pos = [o[i] + t * d[i] for i in range(3)]
    return (t, np.zeros(t.shape, np.int16), *pos, *(n[i] * facing for i in range(3)))


def _light_grid(world: World, camera: Camera) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """The light without the sun, and the sun's colour times its incidence, at every pixel: computed
    on a grid of ~0.4 MP and enlarged (both are smooth there: their hard edges are the sun's
    visibility, taken per sample). The surface's light is computed on its plane everywhere, so it
    is smooth up to the objects' edges; the rest's on what each ray meets first."""
    w, h = camera.width, camera.height
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    geo = _cast(world, camera, xs, ys)
    factor = max(2, math.ceil(math.sqrt(w * h / 0.4e6)))
    sw, sh = -(-w // factor), -(-h // factor)
    gy, gx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    gx, gy = gx * factor + (factor - 1) / 2, gy * factor + (factor - 1) / 2
    scene_light, scene_sun = _irradiance(world, _cast(world, camera, gx, gy), camera)
    surface_light, surface_sun = _irradiance(world, _on_surface_plane(world, camera, gx, gy), camera)

    def enlarge(x: np.ndarray) -> np.ndarray:
        # Grid point j sits at pixel j * factor + (factor - 1) / 2: where cv2.resize puts it.
        big = cv2.resize(x, (sw * factor, sh * factor), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(big[:h, :w], np.float32)

    on = (geo[1] == 0)[..., None]
    light = np.where(on, enlarge(surface_light), enlarge(scene_light))
    sun = np.where(on, enlarge(surface_sun), enlarge(scene_sun))
    return light, sun, geo


@dataclass(frozen=True)
class Packed:
    """Some pixels of an image packed into a 2D block (rows of PACK_WIDTH), so that per-sample work
    is spent on them alone (OpenCV's remap needs 2D maps of bounded width)."""

    index: np.ndarray  # flat pixel indices
    shape: tuple[int, int]  # of the image

    @staticmethod
    def of(region: np.ndarray) -> Packed:
        return Packed(np.flatnonzero(region), (int(region.shape[0]), int(region.shape[1])))

    @property
    def rows(self) -> int:
        return -(-self.index.size // PACK_WIDTH)

    def pack(self, image: np.ndarray) -> np.ndarray:
        """The pixels (of an H x W or H x W x C array) as rows x PACK_WIDTH (x C), the tail repeated."""
        flat = image.reshape(self.shape[0] * self.shape[1], *image.shape[2:])
        padded = np.concatenate([self.index, np.full(self.rows * PACK_WIDTH - self.index.size, self.index[-1])])
        return np.ascontiguousarray(flat[padded].reshape(self.rows, PACK_WIDTH, *image.shape[2:]))

    def unpack(self, values: np.ndarray, into: np.ndarray) -> None:
        """Writes packed values back into an image."""
        flat = into.reshape(self.shape[0] * self.shape[1], *into.shape[2:])
        flat[self.index] = values.reshape(-1, *values.shape[2:])[: self.index.size]


PACK_WIDTH = 1024


def render(world: World, camera: Camera, samples: int) -> Render:
    """The old surface's photo (radiance before exposure) and what is true about it."""
    w, h = camera.width, camera.height
    light, sun_rgb, geo = _light_grid(world, camera)
    _t, ident = geo[0], geo[1]
    vig = _vignetting(camera, world.lights.vignetting)[..., None]
    light *= vig
    sun_rgb *= vig
    radiance = np.zeros((h, w, 3), np.float32)
    # Everything but the surface at one sample per pixel.
    px, py, pz = geo[2], geo[3], geo[4]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    sun_dir = None if world.lights.sun is None else np.array(world.lights.sun, float)
    sun_dir = None if sun_dir is None else sun_dir / np.linalg.norm(sun_dir)
    vis_centre = (
        _sun_visible(world, [px, py, pz], sun_dir).astype(np.float32)[..., None]
        if sun_dir is not None
        else np.zeros((h, w, 1), np.float32)
    )
    for k, rect in enumerate(world.rects[1:], start=1):
        on = ident == k
        if not on.any():
            continue
        H = np.linalg.inv(rect.to_image(camera))
        part = Packed.of(on)
        px_, py_ = part.pack(xs), part.pack(ys)
        a, b = _apply(H, px_, py_)
        fa, fb = _footprints(H, px_, py_, 1)
        albedo = rect.albedo.pattern(a, b, fa, fb) * rect.albedo.detail(a, b)
        lit = albedo * (part.pack(light) + part.pack(sun_rgb) * part.pack(vis_centre))
        part.unpack(lit, radiance)
    for k, box in enumerate(world.boxes):
        on = ident == 100 + k
        radiance[on] = linear(box.colour) * (light + sun_rgb * vis_centre)[on]
    sky = ident == -1
    radiance[sky] = linear(world.sky) * np.float32(2.5)
    window = world.lights.window
    if window is not None:  # the window's glass shows the bright outside; its bars are white
        rect = window.opening
        rel = [q - np.float32(rect.origin[i]) for i, q in enumerate((px, py, pz))]
        off = np.abs(sum(rel[i] * np.float32(rect.normal[i]) for i in range(3)))
        a = np.asarray(sum(rel[i] * np.float32(rect.u[i]) for i in range(3)))
        b = np.asarray(sum(rel[i] * np.float32(rect.v[i]) for i in range(3)))
        in_frame = (
            (off < 1e-3) & (ident > 0) & (ident < 100) & (a > 0) & (a < rect.size[0]) & (b > 0) & (b < rect.size[1])
        )
        glass = in_frame & window.passes(a, b)
        radiance[glass] = linear(world.sky) * np.float32(3.0)
        radiance[in_frame & ~glass] = (linear((235, 238, 240)) * light)[in_frame & ~glass]
    # The surface, supersampled over its own pixels only.
    surface = ident == 0
    packed = Packed.of(surface)
    rect = world.rects[0]
    Hinv = np.linalg.inv(rect.to_image(camera))
    discs = _disc(samples * samples, sun_dir) if sun_dir is not None else []
    sx, sy = packed.pack(xs), packed.pack(ys)
    s_light, s_sun = packed.pack(light), packed.pack(sun_rgb)
    visible = np.zeros((samples * samples, *sx.shape), np.uint8)
    acc = np.zeros((*sx.shape, 3), np.float32)
    fa, fb = _footprints(Hinv, sx, sy, samples)
    offsets = (np.arange(samples) + 0.5) / samples - 0.5
    origin, u, v = (np.array(x, np.float32) for x in (rect.origin, rect.u, rect.v))
    k = 0
    for oy in offsets:
        for ox in offsets:
            a, b = _apply(Hinv, sx + np.float32(ox), sy + np.float32(oy))
            albedo = rect.albedo.pattern(a, b, fa, fb)
            if discs:
                p = [origin[i] + a * u[i] + b * v[i] for i in range(3)]
                vis = _sun_visible(world, p, discs[k])
                visible[k] = vis
                acc += albedo * (s_light + s_sun * vis[..., None])
            else:
                acc += albedo * s_light
            k += 1
    acc *= rect.albedo.detail(*_apply(Hinv, sx, sy)) / np.float32(samples * samples)
    packed.unpack(acc, radiance)
    seen = np.zeros((h, w, 1), np.float32)
    packed.unpack(visible.mean(axis=0, dtype=np.float32)[..., None], seen)
    shading = light + sun_rgb * seen
    return Render(radiance, shading, surface, ident, samples, light, sun_rgb, visible, packed)


def _apply(H: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Hf = H.astype(np.float64)
    w = Hf[2, 0] * xs + Hf[2, 1] * ys + Hf[2, 2]
    a = (Hf[0, 0] * xs + Hf[0, 1] * ys + Hf[0, 2]) / w
    b = (Hf[1, 0] * xs + Hf[1, 1] * ys + Hf[1, 2]) / w
    return a.astype(np.float32), b.astype(np.float32)


def _footprints(H: np.ndarray, xs: np.ndarray, ys: np.ndarray, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's extent along a and b (the pixel's, divided among samples per axis)."""
    a0, b0 = _apply(H, xs, ys)
    a1, b1 = _apply(H, xs + 1, ys)
    a2, b2 = _apply(H, xs, ys + 1)
    s = np.float32(samples)
    return (np.abs(a1 - a0) + np.abs(a2 - a0)) / s, (np.abs(b1 - b0) + np.abs(b2 - b0)) / s


def gaussian_pyramid(texture_bgr: np.ndarray) -> list[np.ndarray]:
    """A tiling texture's Gaussian pyramid in linear light (each level blurred with wrapped borders)."""
    lin = linear_image(texture_bgr)
    levels = [lin]
    while min(levels[-1].shape[:2]) > 4:
        pad = cv2.copyMakeBorder(levels[-1], 4, 4, 4, 4, cv2.BORDER_WRAP)
        blurred = cv2.GaussianBlur(pad, (0, 0), 1.0)[4:-4, 4:-4]
        hh, ww = blurred.shape[:2]
        levels.append(cv2.resize(blurred, (ww // 2, hh // 2), interpolation=cv2.INTER_AREA))
    return levels


def linear_image(bgr: np.ndarray) -> np.ndarray:
    """uint8 sRGB to float32 linear (by the formula)."""
    c = bgr.astype(np.float32) / np.float32(255)
    return np.where(
        c <= 0.04045, c / np.float32(12.92), ((c + np.float32(0.055)) / np.float32(1.055)) ** np.float32(2.4)
    ).astype(np.float32)


def srgb_image(lin: np.ndarray) -> np.ndarray:
    """float32 linear to uint8 sRGB (by the formula), clipped."""
    c = np.clip(lin, 0, 1)
    s = np.where(
        c <= 0.0031308, c * np.float32(12.92), np.float32(1.055) * c ** np.float32(1 / 2.4) - np.float32(0.055)
    )
    return np.clip(s * 255 + 0.5, 0, 255).astype(np.uint8)


def trilinear(pyramid: list[np.ndarray], tx: np.ndarray, ty: np.ndarray, lod: np.ndarray) -> np.ndarray:
    """The pyramid's colour (float32) at level-0 texel coordinates (texel i spanning [i, i + 1),
    wrapped), blended between the two levels about each point's `lod`. The arrays share one 2-D
    shape, each side under cv2.remap's 32,767."""
    w0, h0 = pyramid[0].shape[1], pyramid[0].shape[0]
    colour = np.zeros((*tx.shape, 3), np.float32)
    for level in range(int(np.floor(lod.min())), int(np.ceil(lod.max())) + 1):
        weight = np.clip(1 - np.abs(lod - level), 0, 1)
        if not (weight > 0).any():
            continue
        img = pyramid[level]
        lh, lw = img.shape[:2]
        mx = np.mod(tx * np.float32(lw / w0) - np.float32(0.5), lw).astype(np.float32)
        my = np.mod(ty * np.float32(lh / h0) - np.float32(0.5), lh).astype(np.float32)
        colour += cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP) * weight[..., None]
    return colour


def texture_under_light(pyramid: list[np.ndarray], to_texel: np.ndarray, shot: Render) -> np.ndarray:
    """A material sampled through a map from pixels to texels (level-0 coordinates, texel i spanning
    [i, i + 1)), supersampled like the shot's surface and lit by its light per sample (float32 linear
    BGR over the surface's pixels; zero elsewhere)."""
    packed = shot.packed
    h, w = packed.shape
    s = shot.samples
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    sx, sy = packed.pack(xs), packed.pack(ys)
    # Each sample's footprint in texels: the pixel's Jacobian determinant shared among s x s samples.
    x0, y0 = _apply(to_texel, sx, sy)
    x1, y1 = _apply(to_texel, sx + 1, sy)
    x2, y2 = _apply(to_texel, sx, sy + 1)
    det = np.abs((x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0))
    lod = np.clip(0.5 * np.log2(np.maximum(det, 1e-12)) - math.log2(s), 0, len(pyramid) - 1).astype(np.float32)
    mean_albedo = np.zeros((*sx.shape, 3), np.float32)
    lit_albedo = np.zeros((*sx.shape, 3), np.float32)
    offsets = (np.arange(s) + 0.5) / s - 0.5
    k = 0
    for oy in offsets:
        for ox in offsets:
            tx, ty = _apply(to_texel, sx + np.float32(ox), sy + np.float32(oy))
            colour = trilinear(pyramid, tx, ty, lod)
            mean_albedo += colour
            lit_albedo += colour * shot.visible[k][..., None]
            k += 1
    n = np.float32(s * s)
    lit = (mean_albedo / n) * packed.pack(shot.base) + packed.pack(shot.sun) * (lit_albedo / n)
    out = np.zeros((h, w, 3), np.float32)
    packed.unpack(lit, out)
    return out
