"""The benchmark's materials: old surfaces as procedures over the surface in metres, new ones from photos.

Old surfaces are what a renovation replaces, worn and uneven: tiles whose every tile has its own
tone and tint, with dirty joints, stains and scuffs; stone cladding of blocks of varied size and
tone with weathering streaks; wood planks of random lengths with grain; a patterned carpet with a
worn path; glazed wall tiles; brick. Each is albedo only (linear BGR), evaluated at surface
points (a, b) in metres with each sample's footprint (fa, fb), so the thin joints are box-filtered
analytically instead of aliasing where the surface recedes.

New materials are real texture photos (scikit-image's data module), tinted where they are grey,
each with the physical size it shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np


class Albedo(Protocol):
    """A surface's albedo (linear BGR) at points (a, b) in metres: a pattern evaluated per sub-pixel
    sample with its footprint (fa, fb), times a smoother detail evaluated per pixel."""

    def pattern(self, a: np.ndarray, b: np.ndarray, fa: np.ndarray, fb: np.ndarray) -> np.ndarray: ...

    def detail(self, a: np.ndarray, b: np.ndarray) -> np.ndarray: ...


def linear(bgr: tuple[int, int, int]) -> np.ndarray:
    """An sRGB colour (BGR, 0-255) in linear light (float32, 3)."""
    c = np.asarray(bgr, np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def periodic_noise(shape: tuple[int, int], sigma: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise that tiles in both directions, unit standard deviation; sigma
    is (along rows, along columns) in texels."""
    h, w = shape
    white = rng.standard_normal(shape).astype(np.float32)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    kernel = np.exp(-2 * math.pi**2 * ((fy * sigma[0]) ** 2 + (fx * sigma[1]) ** 2))
    noise = np.fft.irfft2(np.fft.rfft2(white) * kernel, s=shape)
    return np.asarray((noise - noise.mean()) / (noise.std() + 1e-12), np.float32)


@dataclass(frozen=True)
class NoiseField:
    """A tiling noise raster laid on the surface at `texel` metres per texel."""

    raster: np.ndarray
    texel: float

    def at(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        h, w = self.raster.shape[:2]
        inv = np.float32(1.0 / self.texel)
        x = np.mod(a * inv, np.float32(w)).astype(np.float32)
        y = np.mod(b * inv, np.float32(h)).astype(np.float32)
        return np.asarray(cv2.remap(self.raster, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP))


def noise_field(
    rng: np.random.Generator, texel: float, size: int, sigma: tuple[float, float] = (1.0, 1.0)
) -> NoiseField:
    """Noise of `size` x `size` texels, `texel` metres each, blurred by sigma texels (rows, columns)."""
    return NoiseField(periodic_noise((size, size), sigma, rng), texel)


def joint_cover(distance: np.ndarray, footprint: np.ndarray, width: float) -> np.ndarray:
    """The share of a sample's box footprint (centred `distance` from a joint's centre line) that
    falls on the joint (`width` wide): exact for a box filter."""
    half = np.float32(width / 2)
    fp = np.maximum(footprint, np.float32(1e-5))
    lo = distance - fp * np.float32(0.5)
    hi = distance + fp * np.float32(0.5)
    return np.clip(np.minimum(hi, half) - np.maximum(lo, -half), 0, None) / fp


@dataclass
class Bond:
    """Courses of blocks: rows `heights` high (along b) of blocks `lengths` long (along a), each
    block with its own tone, tint and texture, joints `joint` wide between them.

    Covers a and b in [-extent, extent] metres. Regular tiles are the case of one height and one
    length (their cells found by division); stone, bricks and planks look their blocks up by a
    sorted search over every course's block edges.
    """

    heights: Callable[[np.random.Generator], float]
    lengths: Callable[[np.random.Generator], float]
    joint: float
    colour: tuple[int, int, int]
    joint_colour: tuple[int, int, int]
    tone_sd: float
    tint_sd: float
    seed: int
    stagger: float | None = None  # a course's shift as a share of the block; None: random
    regular: bool = False
    extent: float = 30.0
    texture: list[tuple[NoiseField, float]] = field(default_factory=list)  # (noise, amplitude)
    wear: list[tuple[NoiseField, float, tuple[float, float, float]]] = field(default_factory=list)
    marks: NoiseField | None = None  # scuffs and chips: dark where the raster is high
    _course_edges: np.ndarray = field(init=False, repr=False)
    _keys: np.ndarray = field(init=False, repr=False)
    _tone: np.ndarray = field(init=False, repr=False)
    _first: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        edges_b = [-self.extent]
        while edges_b[-1] < self.extent:
            edges_b.append(edges_b[-1] + self.heights(rng))
        self._course_edges = np.array(edges_b, np.float64)
        keys: list[float] = []
        span = 4 * self.extent  # a course's keys live in [course * span, (course + 1) * span)
        for course in range(len(edges_b) - 1):
            first = self.lengths(rng)
            shift = (self.stagger * (course % 2) if self.stagger is not None else rng.uniform()) * first
            x = -self.extent - shift
            while x < self.extent + 1:
                keys.append(course * span + x + 2 * self.extent)
                x += self.lengths(rng)
            keys.append(course * span + x + 2 * self.extent)
        self._keys = np.array(keys, np.float64)
        self._first = np.searchsorted(self._keys, np.arange(len(edges_b) - 1) * span)
        count = len(keys)
        self._tone = np.concatenate(
            [
                np.clip(rng.normal(1.0, self.tone_sd, (count, 1)), 0.4, 1.8),
                np.exp(rng.normal(0.0, self.tint_sd, (count, 3))),
                rng.uniform(0, 50, (count, 2)),  # the block's own window into the texture noise
            ],
            axis=1,
        ).astype(np.float32)

    def _cells(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
        """Each point's block (its row in the tone table) and the block's edges."""
        span = 4 * self.extent
        if self.regular:
            h = float(self._course_edges[1] - self._course_edges[0])
            course = np.floor((b + np.float32(self.extent)) / np.float32(h)).astype(np.int64)
            course = np.clip(course, 0, len(self._first) - 1)
            bottom = course.astype(np.float32) * np.float32(h) - np.float32(self.extent)
            top = bottom + np.float32(h)
            length = np.float32(self._keys[1] - self._keys[0])
            first = self._first[course]
            shift = (self._keys[first] - course * span - 2 * self.extent).astype(np.float32)
            cell = np.floor((a - shift) / length).astype(np.int64)
            left = shift + cell.astype(np.float32) * length
            return np.clip(first + cell, 0, len(self._tone) - 1), left, left + length, bottom, top
        course = np.clip(np.searchsorted(self._course_edges, b, side="right") - 1, 0, len(self._first) - 1)
        bottom = self._course_edges[course].astype(np.float32)
        top = self._course_edges[course + 1].astype(np.float32)
        keys = course * span + (a.astype(np.float64) + 2 * self.extent)
        index = np.clip(np.searchsorted(self._keys, keys, side="right") - 1, 0, len(self._keys) - 2)
        base = course * span + 2 * self.extent
        left = (self._keys[index] - base).astype(np.float32)
        right = (self._keys[index + 1] - base).astype(np.float32)
        return index, left, right, bottom, top

    def pattern(self, a: np.ndarray, b: np.ndarray, fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
        """Each block's tone and tint, and the joints (box-filtered over the footprint)."""
        index, left, right, bottom, top = self._cells(a, b)
        da = np.minimum(a - left, right - a)
        db = np.minimum(b - bottom, top - b)
        joint = 1 - (1 - joint_cover(da, fa, self.joint)) * (1 - joint_cover(db, fb, self.joint))
        props = self._tone[index]
        albedo = linear(self.colour) * (props[..., :1] * props[..., 1:4])
        return albedo * (1 - joint)[..., None] + linear(self.joint_colour) * joint[..., None]

    def detail(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The stone's or glaze's grain (per block), stains, streaks and scuffs, as a multiplier."""
        index = self._cells(a, b)[0]
        props = self._tone[index]
        grain = np.ones(a.shape, np.float32)
        for noise, amplitude in self.texture:
            grain += np.float32(amplitude) * noise.at(a + props[..., 4], b + props[..., 5])
        out = np.repeat(np.clip(grain, 0.2, 3.0)[..., None], 3, axis=-1)
        for noise, strength, tint in self.wear:
            stain = np.clip(noise.at(a, b) - np.float32(0.4), 0, None) * np.float32(strength)
            out *= 1 - stain[..., None] * (1 - np.asarray(tint, np.float32))
        if self.marks is not None:
            dark = np.clip(self.marks.at(a, b) - np.float32(2.2), 0, 1)
            out *= (1 - np.float32(0.5) * dark)[..., None]
        return out


def worn_tiles(seed: int, size: float = 0.45, colour: tuple[int, int, int] = (160, 182, 196)) -> Bond:
    """Square ceramic tiles in a grid, each its own tone and tint, dirty grout, mottled glaze,
    brownish stains over several tiles and scuffs."""
    rng = np.random.default_rng(seed + 100)
    return Bond(
        heights=lambda r: size,
        lengths=lambda r: size,
        joint=0.006,
        colour=colour,
        joint_colour=(88, 98, 108),
        tone_sd=0.07,
        tint_sd=0.025,
        seed=seed,
        stagger=0.0,
        regular=True,
        texture=[(noise_field(rng, 0.0025, 256, (1.2, 1.2)), 0.05), (noise_field(rng, 0.01, 128, (3, 3)), 0.04)],
        wear=[
            (noise_field(rng, 0.04, 128, (5, 5)), 0.45, (0.82, 0.92, 1.0)),  # brown stains: less blue
            (noise_field(rng, 0.08, 128, (9, 4)), 0.25, (0.9, 0.9, 0.9)),  # grey traffic dirt
        ],
        marks=noise_field(rng, 0.003, 512, (0.7, 4.0)),
    )


def stone_cladding(seed: int) -> Bond:
    """Ashlar cladding: courses 0.22-0.45 m high of blocks 0.35-0.9 m long, strongly varied in tone
    and tint, light mortar joints, grainy stone, dark weathering streaks running down."""
    rng = np.random.default_rng(seed + 200)
    return Bond(
        heights=lambda r: float(r.choice([0.22, 0.3, 0.38, 0.45])),
        lengths=lambda r: float(r.uniform(0.35, 0.9)),
        joint=0.012,
        colour=(150, 172, 186),
        joint_colour=(190, 200, 206),
        tone_sd=0.13,
        tint_sd=0.05,
        seed=seed,
        texture=[(noise_field(rng, 0.004, 256, (1.0, 1.0)), 0.07), (noise_field(rng, 0.02, 128, (2.5, 2.5)), 0.08)],
        wear=[
            (noise_field(rng, 0.05, 128, (60.0, 1.5)), 0.5, (0.75, 0.78, 0.8)),  # streaks: long along b
            (noise_field(rng, 0.1, 64, (4, 4)), 0.3, (0.85, 0.92, 1.0)),
        ],
    )


def brick_facade(seed: int) -> Bond:
    """Old brick: 0.215 x 0.065 m bricks in stretcher bond, each its own tone of red-brown, light mortar,
    sooty patches."""
    rng = np.random.default_rng(seed + 300)
    return Bond(
        heights=lambda r: 0.075,
        lengths=lambda r: 0.225,
        joint=0.01,
        colour=(70, 92, 150),
        joint_colour=(170, 180, 186),
        tone_sd=0.14,
        tint_sd=0.06,
        seed=seed,
        stagger=0.5,
        texture=[(noise_field(rng, 0.003, 256, (1.0, 1.0)), 0.08)],
        wear=[(noise_field(rng, 0.06, 128, (6, 6)), 0.55, (0.8, 0.82, 0.85))],
    )


def wood_planks(seed: int) -> Bond:
    """Planks 0.16 m wide and 0.6-1.6 m long along a, each its own tone, long grain, thin dark joints."""
    rng = np.random.default_rng(seed + 400)
    return Bond(
        heights=lambda r: 0.16,
        lengths=lambda r: float(r.uniform(0.6, 1.6)),
        joint=0.003,
        colour=(80, 120, 168),
        joint_colour=(30, 40, 55),
        tone_sd=0.12,
        tint_sd=0.04,
        seed=seed,
        texture=[
            (noise_field(rng, 0.002, 512, (0.8, 40.0)), 0.12),  # grain: long along a (columns)
            (noise_field(rng, 0.01, 256, (1.5, 30.0)), 0.1),
        ],
        wear=[(noise_field(rng, 0.08, 64, (4, 4)), 0.3, (0.9, 0.95, 1.0))],
        marks=noise_field(rng, 0.003, 512, (0.7, 4.0)),
    )


def subway_tiles(seed: int) -> Bond:
    """Glazed 0.15 x 0.075 m wall tiles in a running bond, grey grout, faint tone differences."""
    rng = np.random.default_rng(seed + 500)
    return Bond(
        heights=lambda r: 0.075,
        lengths=lambda r: 0.15,
        joint=0.004,
        colour=(214, 222, 226),
        joint_colour=(120, 124, 128),
        tone_sd=0.04,
        tint_sd=0.015,
        seed=seed,
        stagger=0.5,
        texture=[(noise_field(rng, 0.003, 256, (2, 2)), 0.02)],
        wear=[(noise_field(rng, 0.05, 64, (5, 5)), 0.25, (0.85, 0.9, 0.95))],
    )


@dataclass
class Carpet:
    """A patterned carpet: a diamond lattice in two tones with a border line, pile noise, a worn path
    and stains. No joints: nothing for lines to find."""

    seed: int
    period: float = 0.32
    _pile: NoiseField = field(init=False, repr=False)
    _stains: NoiseField = field(init=False, repr=False)
    _path: NoiseField = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed + 600)
        self._pile = noise_field(rng, 0.002, 512, (0.8, 0.8))
        self._stains = noise_field(rng, 0.05, 128, (4, 4))
        self._path = noise_field(rng, 0.2, 32, (3, 6))

    def pattern(self, a: np.ndarray, b: np.ndarray, fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
        p = np.float32(self.period)
        s, t = (a + b) / p, (a - b) / p
        ds = np.abs(s - np.round(s)) * p / np.float32(math.sqrt(2))  # distance to the lattice's lines
        dt = np.abs(t - np.round(t)) * p / np.float32(math.sqrt(2))
        fp = (fa + fb) * np.float32(0.5)
        line = 1 - (1 - joint_cover(ds, fp, 0.012)) * (1 - joint_cover(dt, fp, 0.012))
        inner = np.clip((np.minimum(ds, dt) - np.float32(0.05)) / np.maximum(fp, np.float32(0.004)) + 0.5, 0, 1)
        field_c, motif, border = linear((96, 62, 58)), linear((120, 140, 150)), linear((180, 196, 205))
        albedo = field_c * (1 - inner)[..., None] + motif * inner[..., None]
        return albedo * (1 - line)[..., None] + border * line[..., None]

    def detail(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = (1 + np.float32(0.1) * self._pile.at(a, b))[..., None] * np.ones(3, np.float32)
        path = np.clip(self._path.at(a, b), 0, None) * np.float32(0.12)
        out *= (1 + path)[..., None]  # worn lighter and flatter along the path
        stain = np.clip(self._stains.at(a, b) - np.float32(1.2), 0, None) * np.float32(0.5)
        return out * (1 - stain[..., None] * np.array([0.3, 0.15, 0.0], np.float32))


@dataclass(frozen=True)
class Plain:
    """A painted or rendered surface: one colour, a faint texture (the walls, ceilings and ground
    around the surface)."""

    colour: tuple[int, int, int]
    texture: float = 0.03
    seed: int = 0

    def pattern(self, a: np.ndarray, b: np.ndarray, fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
        return np.broadcast_to(linear(self.colour), (*a.shape, 3))

    def detail(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        noise = _plain_noise(self.seed).at(a, b)
        return (1 + np.float32(self.texture) * noise)[..., None] * np.ones(3, np.float32)


_PLAIN_NOISE: dict[int, NoiseField] = {}


def _plain_noise(seed: int) -> NoiseField:
    if seed not in _PLAIN_NOISE:
        _PLAIN_NOISE[seed] = noise_field(np.random.default_rng(seed + 700), 0.01, 128, (2, 2))
    return _PLAIN_NOISE[seed]


# ---- new materials: texture photos


@dataclass(frozen=True)
class Swatch:
    """A new material: the swatch image (uint8 BGR) and the physical size it shows (metres)."""

    name: str
    image: np.ndarray
    size_m: tuple[float, float]


def _tinted(grey: np.ndarray, dark: tuple[int, int, int], light: tuple[int, int, int]) -> np.ndarray:
    """A grey photo coloured along a ramp from `dark` to `light` (BGR), through linear light."""
    t = (grey.astype(np.float32) / 255.0)[..., None]
    lo, hi = linear(dark), linear(light)
    lin = lo * (1 - t) + hi * t
    srgb = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * np.power(lin, 1 / 2.4) - 0.055)
    return np.clip(srgb * 255 + 0.5, 0, 255).astype(np.uint8)


def swatch(name: str) -> Swatch:
    """One of the new materials: 'brick', 'gravel', 'grass' or 'concrete' (the moon's surface),
    from scikit-image's bundled photos (grey, so tinted here)."""
    try:
        from skimage import data
    except ImportError as exc:  # pragma: no cover - make quality installs it
        raise SystemExit("make quality needs scikit-image: pip install -e '.[bench]'") from exc
    if name == "brick":
        return Swatch(name, _tinted(data.brick(), (30, 40, 78), (150, 170, 215)), (1.0, 1.0))
    if name == "gravel":
        return Swatch(name, _tinted(data.gravel(), (40, 48, 56), (200, 214, 224)), (0.5, 0.5))
    if name == "grass":
        return Swatch(name, _tinted(data.grass(), (20, 50, 30), (120, 210, 170)), (0.6, 0.6))
    if name == "concrete":
        moon = data.moon()
        return Swatch(name, _tinted(moon, (70, 74, 78), (215, 220, 222)), (1.2, 1.2))
    raise ValueError(f"unknown swatch {name!r}")
