"""The material swap on the held-out rooms: benchmarks.segmentation_heldout's renderer (its own ray
caster, camera, materials, lamps with shadows, sun through a barred window, vignetting, white
balance off, sensor noise, JPEG q85), never tuned on, scored the way make quality scores its scenes.

    python -m benchmarks.swap_heldout [--rooms 0,3] [--jobs 2]

Every held-out room whose target is a floor, the back wall or a table top gets a metric rectangle
on the target's plane where a user would put a quad (inside the visible surface's extent, its
corners inside the photo, furniture may stand on it) and a new material: a swatch of known size
(scikit-image's texture photos tinted, or one of the held-out materials rasterised). The truth is
that swatch laid on the rectangle by the quad's convention (its first corner the texture's origin,
u along its first edge, as benchmarks/quality/scenes.py `build`) under the room's own light,
through the camera's lens, without noise or JPEG; the true shading is that light through the lens.
Both are divided by the surface's median light per channel, as make quality's are: exposure and
white balance are the camera's, not the material's.

Scored per room with the pipeline's own functions, as benchmarks/quality/report.py `run_scene`
does: the quad and its sizes (quad mode), the visible surface inside the rectangle as a client's
mask with the true focal length and the plane's distance (mask + focal), each with the light's
estimate; the quad with the true light (oracle: the geometry's and sampling's bound); the light's
estimate against the true shading. In-surface PSNR / SSIM over the visible rectangle less 2 pixels
at its edges, the plane's and scale's errors, CPU seconds of the pipeline's calls; then medians and
the worst.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from benchmarks import segmentation_heldout as heldout
from benchmarks.quality import metrics, modes
from benchmarks.quality.materials import Swatch
from benchmarks.quality.render import gaussian_pyramid, trilinear
from services.projection.composite import project_material
from services.projection.shading import AUTO, Shading, estimate_shading
from services.projection.texture import texel_transform

# The photo's pixel coordinates here are the pipeline's (pixel i's centre at i); the held-out
# camera's rays put pixel i's centre at i + 0.5.
HALF_PIXEL = 0.5
# Texture lookups per supersampled ray along each axis for the truth (so 4 x 4 per pixel), each at
# the pyramid's level of its footprint: the oracle's swap against truths of 1, 2 and 3 lookups
# scored 43.1, 46.1 and 46.0 dB on the hexagon room's tiles, 47.9, 48.3 and 48.2 on a brick floor
# lit by the sky alone (2026-12-07): 2 is where the truth stops changing.
LOOKUPS = 2
# The rectangle is shrunk until its corners lie this share of the photo's size inside its edges.
CORNER_MARGIN = 0.03
# A table top takes part when its visible rectangle covers this share of the photo.
SMALLEST_SURFACE = 0.05
SWATCH_TEXELS = 512
# The lookups are laid out in rows this long for OpenCV's remap (whose sides stay under 32767).
REMAP_COLUMNS = 4096


# ---------------------------------------------------------------- the new materials


def _photo_swatch(name: str, metres: float, tint: heldout.Vec) -> Swatch:
    """A scikit-image texture photo tinted (its contrast kept within sRGB's range), `metres` wide."""
    grey = heldout._texture_photo(name, 0.6)
    albedo = np.array(tint)[None, None] * np.clip(grey, 0.05, 3)[..., None]
    return Swatch(name, heldout.srgb_bgr(albedo), (metres, metres))


def _procedural_swatch(name: str, material: heldout.Albedo, metres: float) -> Swatch:
    """A held-out material rasterised to a square swatch `metres` wide (2 x 2 points per texel)."""
    n = SWATCH_TEXELS
    ys, xs = np.mgrid[0 : 2 * n, 0 : 2 * n].astype(np.float64)
    u, v = (xs.ravel() + 0.5) * metres / (2 * n), (ys.ravel() + 0.5) * metres / (2 * n)
    fine = material(u, v).reshape(2 * n, 2 * n, 3).astype(np.float32)
    albedo = cv2.resize(fine, (n, n), interpolation=cv2.INTER_AREA)
    return Swatch(name, heldout.srgb_bgr(albedo), (metres, metres))


SWATCHES: tuple[Callable[[], Swatch], ...] = (
    lambda: _photo_swatch("brick", 1.0, (0.6, 0.32, 0.24)),
    lambda: _photo_swatch("gravel", 0.6, (0.5, 0.48, 0.44)),
    lambda: _procedural_swatch("tiles", heldout.tiles((0.62, 0.6, 0.55), (0.25, 0.25, 0.25), 0.3, 0.006, 21), 0.6),
    lambda: _photo_swatch("grass", 0.8, (0.3, 0.42, 0.2)),
    lambda: _procedural_swatch("hexagons", heldout.hexagons((0.3, 0.45, 0.55), (0.8, 0.8, 0.78), 0.1, 22), 0.6),
)


# ---------------------------------------------------------------- the rectangle and the camera


@dataclass(frozen=True)
class Rectangle:
    """A rectangle on the target's plane (room metres): origin + a u + b v, a and b within size."""

    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray
    size: tuple[float, float]

    def corners(self) -> np.ndarray:
        w, h = self.size
        o, u, v = self.origin, self.u, self.v
        return np.array([o, o + w * u, o + w * u + h * v, o + h * v])

    def coordinates(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points on the plane (N, 3) as (a, b) metres."""
        rel = points - self.origin
        return rel @ self.u, rel @ self.v


def to_pixels(spec: heldout.Spec, rect: Rectangle) -> np.ndarray:
    """The homography from the rectangle's (a, b) metres to the photo's pixels (the pipeline's)."""
    w, h = spec.size
    f = heldout.focal_px(spec, w)
    # The camera's (right, forward, up) to pixels, pixel centres at i + 0.5; then the pipeline's.
    K = np.array([[f, w / 2, 0.0], [0.0, h / 2, -f], [0.0, 1.0, 0.0]])
    shift = np.array([[1.0, 0.0, -HALF_PIXEL], [0.0, 1.0, -HALF_PIXEL], [0.0, 0.0, 1.0]])
    R = heldout.camera_rotation(spec)
    frame = np.stack([rect.u, rect.v, rect.origin - np.array(spec.camera)], 1)
    result: np.ndarray = shift @ K @ R.T @ frame
    return result


def _project(H: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = H[2, 0] * a + H[2, 1] * b + H[2, 2]
    return (H[0, 0] * a + H[0, 1] * b + H[0, 2]) / w, (H[1, 0] * a + H[1, 1] * b + H[1, 2]) / w


def quad_of(spec: heldout.Spec, rect: Rectangle) -> np.ndarray:
    """The rectangle's corners in the photo's pixels (4, 2), in its order."""
    w, h = rect.size
    return np.stack(_project(to_pixels(spec, rect), np.array([0, w, w, 0.0]), np.array([0, 0, h, h])), 1)


def _in_camera(spec: heldout.Spec, direction: np.ndarray) -> np.ndarray:
    """A room direction in the pipeline's camera coordinates (x right, y down, z forward)."""
    right, forward, up = heldout.camera_rotation(spec).T @ direction
    return np.array([right, -up, forward])


def _plane(spec: heldout.Spec) -> tuple[int, int, float]:
    """The target plane: its two in-plane axes and where it stands on the third (metres)."""
    if spec.target == "floor":
        return 0, 1, 0.0
    if spec.target == "wall":
        return 0, 2, spec.room[1]
    if spec.target == "table":
        return 0, 1, spec.boxes[0].hi[2]
    raise ValueError(f"no swap on a {spec.target}")


def place_rectangle(spec: heldout.Spec, shot: heldout.Shot, on_target: np.ndarray) -> Rectangle:
    """Where a user puts a quad: from the far left corner of the visible surface's extent (its
    3rd to 97th percentiles along the room's axes), u across, v towards the camera (down a wall),
    shrunk about its centre until its corners lie inside the photo."""
    first, second, at = _plane(spec)
    pts = shot.points[on_target]
    a0, a1 = np.percentile(pts[:, first], (3, 97))
    b0, b1 = np.percentile(pts[:, second], (3, 97))
    w, h = spec.size
    u = np.zeros(3)
    u[first] = 1.0
    v = np.zeros(3)
    v[second] = -1.0
    for _ in range(60):
        origin = np.zeros(3)
        origin[first], origin[second] = a0, b1
        origin[3 - first - second] = at
        rect = Rectangle(origin, u, v, (float(a1 - a0), float(b1 - b0)))
        cam = (rect.corners() - np.array(spec.camera)) @ heldout.camera_rotation(spec)
        if np.all(cam[:, 1] > 0.1):
            x, y = quad_of(spec, rect).T
            mx, my = CORNER_MARGIN * w, CORNER_MARGIN * h
            if np.all((x > mx) & (x < w - mx) & (y > my) & (y < h - my)):
                return rect
        ca, cb = (a0 + a1) / 2, (b0 + b1) / 2
        a0, a1 = ca + 0.95 * (a0 - ca), ca + 0.95 * (a1 - ca)
        b0, b1 = cb + 0.95 * (b0 - cb), cb + 0.95 * (b1 - cb)
    raise ValueError(f"{spec.name}: no rectangle fits the photo")


# ---------------------------------------------------------------- the truth


def _rows(values: np.ndarray) -> np.ndarray:
    """N values laid out in rows of REMAP_COLUMNS (the last padded), as cv2.remap takes them."""
    rows = -(-len(values) // REMAP_COLUMNS)
    padded = np.zeros(rows * REMAP_COLUMNS, np.float32)
    padded[: len(values)] = values
    return padded.reshape(rows, REMAP_COLUMNS)


def swatch_albedo(pyramid: list[np.ndarray], to_texel: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The swatch's linear RGB over each supersampled ray's footprint (centres xs, ys in photo
    pixels): LOOKUPS x LOOKUPS trilinear lookups in its pyramid (render.trilinear), each level
    chosen by the map's footprint of one lookup."""
    x0, y0 = _project(to_texel, xs, ys)
    x1, y1 = _project(to_texel, xs + 1, ys)
    x2, y2 = _project(to_texel, xs, ys + 1)
    det = np.abs((x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0))
    per_pixel = heldout.SUPERSAMPLE * LOOKUPS
    lod = _rows(np.clip(0.5 * np.log2(np.maximum(det, 1e-12)) - np.log2(per_pixel), 0, len(pyramid) - 1))
    total = np.zeros((len(xs), 3))
    offsets = ((np.arange(LOOKUPS) + 0.5) / LOOKUPS - 0.5) / heldout.SUPERSAMPLE
    for oy in offsets:
        for ox in offsets:
            tx, ty = _project(to_texel, xs + ox, ys + oy)
            total += trilinear(pyramid, _rows(tx), _rows(ty), lod).reshape(-1, 3)[: len(xs)]
    bgr = total / LOOKUPS**2
    result: np.ndarray = bgr[:, ::-1]
    return result


@dataclass
class SwapRoom:
    """A held-out room with a rectangle and a new material on it, and what is true of the swap
    (the attributes benchmarks.quality.modes reads of a scene)."""

    spec: heldout.Spec
    photo: np.ndarray  # BGR uint8, after JPEG
    rect: Rectangle
    quad: np.ndarray  # (4, 2) the rectangle's corners, the photo's pixels
    swatch: Swatch
    shot: heldout.Shot = field(repr=False)
    inside: np.ndarray = field(repr=False)  # per ray: on the target and within the rectangle
    coverage: np.ndarray = field(init=False, repr=False)  # per pixel: the share of its rays inside
    visible: np.ndarray = field(init=False)  # bool: the rectangle as seen (what stands on it excluded)
    white: np.ndarray = field(init=False)  # RGB: the light's median over the visible rectangle, developed
    shading: np.ndarray = field(init=False)  # float32 linear BGR, 1 at that median (per channel)
    to_texel: np.ndarray = field(init=False)  # the quad's convention: photo pixels to the swatch's texels
    truth: np.ndarray = field(init=False)  # BGR uint8: the swap's truth in the quad's convention
    pyramid: list[np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.coverage = heldout.reduce(self.spec, self.inside)
        self.visible = self.coverage > 0.5
        light = self.developed(self.shot.light * self.inside[:, None])
        self.white = np.median(light[self.visible], axis=0)
        self.shading = np.ascontiguousarray(light[..., ::-1] / self.white[::-1], np.float32)
        th, tw = self.swatch.image.shape[:2]
        sw, sh = self.swatch.size_m
        self.to_texel = np.diag([tw / sw, th / sh, 1.0]) @ np.linalg.inv(to_pixels(self.spec, self.rect))
        self.pyramid = gaussian_pyramid(self.swatch.image)
        self.truth = self.truth_through(self.to_texel)

    @property
    def width(self) -> int:
        return int(self.photo.shape[1])

    @property
    def height(self) -> int:
        return int(self.photo.shape[0])

    @property
    def size_m(self) -> tuple[float, float]:
        return self.rect.size

    @property
    def focal(self) -> float:
        return heldout.focal_px(self.spec, self.spec.size[0])

    @property
    def exif_focal(self) -> float:
        return self.focal  # the mask mode's hint: the true focal length

    @property
    def plane_distance_m(self) -> float:
        first, second, at = _plane(self.spec)
        return abs(at - self.spec.camera[3 - first - second])

    @property
    def normal(self) -> np.ndarray:
        return _in_camera(self.spec, np.cross(self.rect.u, self.rect.v))

    @property
    def edge_axes(self) -> tuple[np.ndarray, np.ndarray]:
        return _in_camera(self.spec, self.rect.u), _in_camera(self.spec, self.rect.v)

    def developed(self, values: np.ndarray) -> np.ndarray:
        """Per-ray values over the rectangle (zero elsewhere) as the camera develops them: averaged
        over each pixel's rays inside, exposed, through the lens (linear RGB, the photo's size)."""
        mean = heldout.reduce(self.spec, values) / np.maximum(self.coverage, 1e-6)[..., None]
        result: np.ndarray = heldout.lens(mean * self.spec.exposure)
        return result

    def lit(self, albedo: np.ndarray) -> np.ndarray:
        """The rectangle's rays' albedo (linear RGB, in the order of its rays) under their light,
        developed and divided by the median light (linear RGB, the photo's size)."""
        full = np.zeros_like(self.shot.light)
        full[self.inside] = albedo * self.shot.light[self.inside]
        result: np.ndarray = self.developed(full) / self.white
        return result

    def ray_pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """The rectangle's rays' centres in the photo's pixels (the pipeline's)."""
        ss = heldout.SUPERSAMPLE
        rows, cols = np.divmod(np.nonzero(self.inside)[0], self.spec.size[0] * ss)
        return (cols + 0.5) / ss - HALF_PIXEL, (rows + 0.5) / ss - HALF_PIXEL

    def old_albedo(self) -> np.ndarray:
        """The room's own material at the rectangle's rays, found through the rectangle's (a, b)
        metres (a check of the convention: it is what the renderer put there)."""
        a, b = self.rect.coordinates(self.shot.points[self.inside])
        p = self.rect.origin + a[:, None] * self.rect.u + b[:, None] * self.rect.v
        spec = self.spec
        if spec.target == "wall":
            return spec.walls[2](p[:, 0], p[:, 2])
        top = spec.boxes[0].top if spec.target == "table" else spec.floor
        assert top is not None
        return top(p[:, 0], p[:, 1])

    def truth_through(self, to_texel: np.ndarray) -> np.ndarray:
        """The photo with the visible rectangle re-covered by the swatch through a map from pixels
        to texels, under the true shading (BGR uint8)."""
        linear = self.lit(swatch_albedo(self.pyramid, to_texel, *self.ray_pixels()))
        out = self.photo.copy()
        out[self.visible] = heldout.srgb_bgr(linear)[self.visible]
        return out


def build(spec: heldout.Spec, swatch: Swatch) -> SwapRoom:
    """The room rendered (its photo as segmentation_heldout's), a rectangle on its target and the
    truth of a swap to `swatch` on it."""
    shot = heldout.shoot(spec)
    photo = heldout.photograph(spec, shot)
    on_target = heldout.target_of(spec, shot)
    rect = place_rectangle(spec, shot, on_target)
    a, b = rect.coordinates(shot.points)
    inside = on_target & (a >= 0) & (a <= rect.size[0]) & (b >= 0) & (b <= rect.size[1])
    return SwapRoom(spec, photo, rect, quad_of(spec, rect), swatch, shot, inside)


# ---------------------------------------------------------------- scoring


def swaps() -> list[tuple[int, heldout.Spec]]:
    """The rooms that take part: those whose target is a floor, the back wall or a table top (the
    ceilings are left to the masks)."""
    return [(i, spec) for i, spec in enumerate(heldout.ROOMS) if spec.target in ("floor", "wall", "table")]


@dataclass(frozen=True)
class Score:
    """A room's figures."""

    name: str
    swatch: str
    quad_db: float
    quad_ssim: float
    oracle_db: float  # the quad's swap under the true light (grey): the geometry's and sampling's bound
    mask_db: float  # nan when the mask's plane failed
    mask_ssim: float
    plane_deg: float
    scale_error: float
    shading_db: float
    cpu_s: float  # the pipeline's calls: both modes' geometry, the light's estimates, the swaps


def oracle_shading(room: SwapRoom) -> Shading:
    """The true shading's luminance: what a perfect grey estimate gives."""
    luma = room.shading @ np.array([0.0722, 0.7152, 0.2126], np.float32)
    return Shading(np.ascontiguousarray(luma, np.float32), (0, 0, room.width, room.height), "oracle")


def _swap(room: SwapRoom, geometry: modes.Geometry, shading: Shading | None = None) -> tuple[np.ndarray, Shading]:
    """The pipeline's swap with a geometry and the light's estimate (unless a shading is given)."""
    if shading is None:
        sh, sw = room.swatch.image.shape[:2]
        to_plane = texel_transform(geometry.H, *geometry.repeats, 0.0, sw, sh)
        shading = estimate_shading(room.photo, geometry.mask, to_plane, AUTO)
    out = project_material(room.photo, room.swatch.image, geometry.mask, geometry.H, *geometry.repeats, shading=shading)
    return out, shading


def score(room: SwapRoom) -> Score:
    """The room's swaps in both modes against their truths, and the light's estimate."""
    region = metrics.inner(room.visible)
    started = time.process_time()
    quad = modes.quad(room)
    quad_out, estimate = _swap(room, quad)
    masked = modes._lines(room, modes.user_mask(room))
    mask_out = _swap(room, masked)[0] if masked is not None else None
    cpu = time.process_time() - started
    oracle_out, _ = _swap(room, quad, oracle_shading(room))
    light = estimate.region(0, 0, room.width, room.height)
    nan = float("nan")
    return Score(
        room.spec.name,
        room.swatch.name,
        metrics.psnr(quad_out, quad.truth, region),
        metrics.ssim(quad_out, quad.truth, region),
        metrics.psnr(oracle_out, quad.truth, region),
        metrics.psnr(mask_out, masked.truth, region) if masked is not None and mask_out is not None else nan,
        metrics.ssim(mask_out, masked.truth, region) if masked is not None and mask_out is not None else nan,
        masked.plane_error_deg if masked is not None else nan,
        masked.scale_error if masked is not None else nan,
        metrics.shading_psnr(light, room.shading, region),
        cpu,
    )


def _one_thread() -> None:
    cv2.setNumThreads(1)  # the timings are for one core


def _build_and_score(index: int) -> Score | None:
    spec = heldout.ROOMS[index]
    swatch = SWATCHES[index % len(SWATCHES)]()
    room = build(spec, swatch)
    if spec.target == "table" and room.visible.mean() < SMALLEST_SURFACE:
        return None
    return score(room)


def _median(values: list[float]) -> float:
    kept = [v for v in values if v == v]
    return statistics.median(kept) if kept else float("nan")


def _worst(values: list[float]) -> float:
    kept = [v for v in values if v == v]
    return min(kept) if kept else float("nan")


def report(scores: list[Score]) -> None:
    """A markdown table per room, then the medians and the worst."""
    print(
        "\n| room | swatch | quad + sizes PSNR / SSIM | quad, true light | mask + focal PSNR / SSIM | plane | scale "
        "| light's estimate | CPU |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for s in scores:
        mask = f"{s.mask_db:.2f} dB / {s.mask_ssim:.3f}" if s.mask_db == s.mask_db else "failed"
        print(
            f"| {s.name} | {s.swatch} | {s.quad_db:.2f} dB / {s.quad_ssim:.3f} | {s.oracle_db:.2f} dB | {mask} "
            f"| {s.plane_deg:.2f}° | {s.scale_error:+.1%} | {s.shading_db:.2f} dB | {s.cpu_s:.1f} s |"
        )
    columns = {
        "quad + sizes": [s.quad_db for s in scores],
        "quad, true light": [s.oracle_db for s in scores],
        "mask + focal": [s.mask_db for s in scores],
        "light's estimate": [s.shading_db for s in scores],
    }
    print("\n| measure | median | worst |\n|---|---|---|")
    for name, values in columns.items():
        print(f"| {name} (PSNR) | {_median(values):.2f} dB | {_worst(values):.2f} dB |")
    failed = sum(1 for s in scores if s.mask_db != s.mask_db)
    planes = [s.plane_deg for s in scores]
    scales = [abs(s.scale_error) for s in scores]
    print(f"| mask + focal plane error | {_median(planes):.2f}° | {-_worst([-p for p in planes]):.2f}° |")
    print(f"| mask + focal scale error | {_median(scales):.1%} | {-_worst([-p for p in scales]):.1%} |")
    print(
        f"| CPU per room (pipeline) | {_median([s.cpu_s for s in scores]):.1f} s "
        f"| {max(s.cpu_s for s in scores):.1f} s |"
    )
    print(f"\nmask + focal failed on {failed} of {len(scores)} rooms")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", default="", help="comma-separated room numbers (all with a swap when empty)")
    parser.add_argument("--jobs", type=int, default=2, help="rooms rendered and scored at once, one core each")
    args = parser.parse_args(argv)
    chosen = [int(i) for i in args.rooms.split(",")] if args.rooms else [i for i, _ in swaps()]
    started = time.perf_counter()
    with ProcessPoolExecutor(max(1, args.jobs), initializer=_one_thread) as pool:
        scores = [s for s in pool.map(_build_and_score, chosen) if s is not None]
    print("-- the swap on the held-out rooms (never tuned on; segmentation_heldout's renderer)")
    report(scores)
    print(f"{len(chosen)} held-out rooms rendered and scored in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
