"""A plane from the straight lines on and around a surface: two vanishing points fix its orientation.

Lines that lie on a plane (tile joints, plank edges, the floor's meeting with a wall, a facade's
window rows) meet, in the photo, at vanishing points on the plane's horizon. Two vanishing points
v1, v2 of different directions give the plane's normal n ~ (K^-1 v1) x (K^-1 v2); when the two
directions are perpendicular (the usual case: rows and columns of tiles, walls meeting at right
angles) and both points are finite, they also give the focal length: f^2 = -(v1 - c).(v2 - c).

Segments come from OpenCV's LSD detector on a reduced grey copy; vanishing points from RANSAC over
pairs of long segments (consensus by angle, weighted by length), refined by least squares. Short
segments count too: a running bond's joints are each a fraction of a row long (a subway-tiled wall,
stone cladding, small bricks), so a wall's vertical direction is often only short segments. With
the focal length known, the direction perpendicular to a found one is searched for among every
segment's vote (each segment's line and the right angle fix one direction), which finds it where
RANSAC over pairs of short, noisy segments would not. With the camera known, directions not at a
right angle (a hexagonal floor's three, 60° apart) are refitted together: every found direction on
the plane lies on its horizon, which all of them fix better than the chosen pair alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

import cv2
import numpy as np

from renderkit import imaging
from renderkit.errors import InputError
from services.depth.collinear import join_collinear
from services.depth.subpixel import refine_segments

# Lines are found on a copy at most this large: at 1024 px a 12 MP photo's lines were placed to
# ~2 photo pixels, which tilted the plane by up to 0.2° and moved the texture by pixels across the
# surface (docs/quality.md, "Geometry without a quad"); 2048 costs ~0.5 s more at 12 MP.
_WORK_SIDE = 2048
MIN_LENGTH = 0.03  # of the longer side: segments long enough to seed a vanishing point
_SHORT_LENGTH = 0.008  # of the longer side: the shortest that still vote and count as support
# A segment supports a vanishing point when its endpoints lie this close (of the longer side) to
# the line through its midpoint and the point, within 1.5° for long segments and at most 5°.
_ENDPOINT_TOLERANCE = 0.0004
_MAX_INLIER_SIN = np.sin(np.radians(5.0))
_BAND = 0.02  # lines this far outside the surface (of the longer side) count as "around" it
_INLIER_SIN = np.sin(np.radians(1.5))
_TRIALS = 400
_TRIAL_CHUNK = 32  # trials whose support is computed at once (32 x the segments x 2 doubles a temporary)
_FAR = 20.0
# Pixels of the surface a plane is checked at (that it does not run past its own horizon).
_MASK_SAMPLES = 4096
# How far the lines may move an EXIF focal length: FocalLengthIn35mmFilm is rounded to a millimetre
# (±2 % of a phone's 24 mm, ±4 % of a 13 mm ultra-wide) and is the maker's own equivalent.
EXIF_FOCAL_TOLERANCE = 0.04
# The rounding itself: the true equivalent lies within half a millimetre of the value written. The
# lines are weighed over EXIF_FOCAL_TOLERANCE as before; the value they settle stays inside this.
_EXIF_ROUNDING_MM = 0.5


def _exif_rounding(focal_px: float, width: int, height: int) -> float:
    """How far (relative) the true focal length may lie from an EXIF value read from the 35 mm
    equivalent (renderkit.imaging.exif_focal, by the diagonal) for a width x height photo."""
    equivalent = focal_px * imaging.FILM_35MM_DIAGONAL_MM / float(np.hypot(width, height))
    return _EXIF_ROUNDING_MM / max(equivalent, 2 * _EXIF_ROUNDING_MM)


class NoVanishingPoints(InputError):
    """The photo has too few straight lines on or around the surface."""


@dataclass(frozen=True)
class LinePlane:
    """The plane's normal and a direction of its lines (camera coordinates), the focal length used,
    and how well the lines support it."""

    normal: np.ndarray
    axis: np.ndarray
    focal: float
    focal_from_lines: bool
    confidence: float
    segments: int


def line_segments(photo_bgr: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Segments (N, 4: x1, y1, x2, y2 in photo pixels) on the surface or along its edge, down to
    _SHORT_LENGTH of the photo's longer side."""
    segments, near = photo_segments(photo_bgr, mask)
    return segments[near]


# The photo's segments and which of them lie on the surface or along its edge (photo_segments).
PhotoSegments = tuple[np.ndarray, np.ndarray]


def photo_segments(photo_bgr: np.ndarray, mask: np.ndarray) -> PhotoSegments:
    """The photo's segments (N, 4: x1, y1, x2, y2 in photo pixels, down to _SHORT_LENGTH of its
    longer side, none along its border) and which of them lie on the surface or along its edge."""
    height, width = mask.shape
    scale = min(1.0, _WORK_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    grey = cv2.cvtColor(cv2.resize(photo_bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    small_mask = cv2.resize(mask, size, interpolation=cv2.INTER_AREA) > 127
    found = cv2.createLineSegmentDetector().detect(grey)[0]
    if found is None:
        return np.zeros((0, 4)), np.zeros(0, bool)
    segments = found.reshape(-1, 4).astype(np.float64)
    side = max(size)
    length = np.hypot(segments[:, 2] - segments[:, 0], segments[:, 3] - segments[:, 1])
    # Lines along the photo's border are its frame, not the scene's.
    margin = 2.0
    on_border = (
        ((segments[:, 0] < margin) & (segments[:, 2] < margin))
        | ((segments[:, 1] < margin) & (segments[:, 3] < margin))
        | ((segments[:, 0] > size[0] - 1 - margin) & (segments[:, 2] > size[0] - 1 - margin))
        | ((segments[:, 1] > size[1] - 1 - margin) & (segments[:, 3] > size[1] - 1 - margin))
    )
    segments = segments[(length >= _SHORT_LENGTH * side) & ~on_border]
    band = cv2.dilate(small_mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=max(1, round(_BAND * side)))
    # A segment counts when most of it lies in the band around the surface.
    samples = np.linspace(0.1, 0.9, 9)
    xs = segments[:, None, 0] + samples[None, :] * (segments[:, None, 2] - segments[:, None, 0])
    ys = segments[:, None, 1] + samples[None, :] * (segments[:, None, 3] - segments[:, None, 1])
    xi = np.clip(np.round(xs).astype(int), 0, size[0] - 1)
    yi = np.clip(np.round(ys).astype(int), 0, size[1] - 1)
    near = band[yi, xi].mean(axis=1) > 0.7
    # Edges of what the mask leaves out inside its outline (objects in front of the surface) are not
    # the surface's lines: a cabinet's top edge would pull the vanishing point of the floor's rows.
    outlines, _ = cv2.findContours(small_mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = np.zeros_like(band)
    if outlines:
        cv2.fillConvexPoly(hull, cv2.convexHull(np.concatenate(outlines)), (1,))
    # Slivers a few pixels wide between the hull and a straight but pixelated outline are not
    # holes: kept, they covered the surface's own edges (a wall's two vertical sides) with "holes".
    gaps = cv2.morphologyEx(((hull > 0) & ~small_mask).astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    holes = cv2.dilate(gaps, np.ones((3, 3), np.uint8), iterations=3) > 0
    near &= holes[yi, xi].mean(axis=1) < 0.3
    # Pixel centres sit on integers at both sizes, so the reduced copy's coordinates map back with
    # half-pixel offsets (dividing alone would shift every line by half a reduced pixel less half a
    # photo pixel: 1.5 px at 12 MP, enough to tilt the horizon by a few hundredths of a degree).
    return (segments + 0.5) / scale - 0.5, near


def _support(v: np.ndarray, mid: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """|sin| of the angle between each segment and the line from its midpoint to v (homogeneous):
    (segments,) for one point, (points, segments) for a stack of them (v of shape (points, 3))."""
    to_v = v[..., None, :2] - mid * v[..., None, 2:]
    cross = direction[:, 0] * to_v[..., 1] - direction[:, 1] * to_v[..., 0]
    return np.asarray(np.abs(cross) / np.maximum(np.linalg.norm(to_v, axis=-1), 1e-12))


def _refine(lines: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The point closest (least squares) to the weighted lines: the smallest eigenvector."""
    scatter = (lines * weights[:, None]).T @ lines
    _, vectors = np.linalg.eigh(scatter)
    return np.asarray(vectors[:, 0])


def endpoint_residuals(v: np.ndarray, p1: np.ndarray, mid: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Weighted distances of each segment's endpoint from the line through its midpoint and v."""
    lines = np.cross(np.column_stack([mid, np.ones(len(mid))]), v[None, :])
    norm = np.maximum(np.linalg.norm(lines[:, :2], axis=1), 1e-12)
    return np.asarray(weight * np.einsum("ij,ij->i", lines, p1) / norm)


def _refine_ml(v: np.ndarray, p1: np.ndarray, mid: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Gauss-Newton on the segments' endpoint distances (the usual maximum-likelihood error for a
    vanishing point: the algebraic fit favours nearby points and is biased for far ones)."""
    v = v / np.linalg.norm(v)
    weight = np.sqrt(length)
    for _ in range(6):
        # A basis of the tangent plane of the unit sphere at v.
        a = np.cross(v, [1.0, 0.0, 0.0] if abs(v[0]) < 0.9 else [0.0, 1.0, 0.0])
        a /= np.linalg.norm(a)
        b = np.cross(v, a)
        r = endpoint_residuals(v, p1, mid, weight)
        eps = 1e-7
        J = np.column_stack(
            [
                (endpoint_residuals((v + eps * t) / np.linalg.norm(v + eps * t), p1, mid, weight) - r) / eps
                for t in (a, b)
            ]
        )
        step, *_ = np.linalg.lstsq(J, -r, rcond=None)
        moved = v + step[0] * a + step[1] * b
        v = moved / np.linalg.norm(moved)
        if np.linalg.norm(step) < 1e-12:
            break
    return v


def segment_geometry(
    segments: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Segments in coordinates divided by scale: first endpoints (homogeneous), their lines
    (normalised), unit directions, lengths and midpoints."""
    p1 = np.column_stack([segments[:, :2] / scale, np.ones(len(segments))])
    p2 = np.column_stack([segments[:, 2:] / scale, np.ones(len(segments))])
    lines = np.cross(p1, p2)
    lines /= np.maximum(np.linalg.norm(lines[:, :2], axis=1, keepdims=True), 1e-12)
    direction = (p2 - p1)[:, :2]
    length = np.linalg.norm(direction, axis=1)
    direction /= np.maximum(length[:, None], 1e-12)
    mid = (p1[:, :2] + p2[:, :2]) / 2
    return p1, lines, direction, length, mid


def _tolerance(length: np.ndarray) -> np.ndarray:
    """Each segment's |sin| tolerance for supporting a vanishing point (lengths divided by the
    longer side): its endpoints within _ENDPOINT_TOLERANCE, between 1.5° and 5°."""
    return np.clip(2 * _ENDPOINT_TOLERANCE / np.maximum(length, 1e-12), _INLIER_SIN, _MAX_INLIER_SIN)


def vanishing_points(
    segments: np.ndarray, scale: float, seeds: np.ndarray | None = None, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to three vanishing points (homogeneous, in coordinates divided by scale), strongest first,
    each with the boolean mask of the segments that support it. Pairs are drawn from the seeds
    (default: all segments); every segment counts towards the consensus."""
    p1, lines, direction, length, mid = segment_geometry(segments, scale)
    tolerance = _tolerance(length)
    seeds = np.ones(len(segments), bool) if seeds is None else seeds
    rng = np.random.default_rng(seed)
    free = np.ones(len(segments), bool)
    found: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(3):
        candidates = np.flatnonzero(free & seeds)
        if candidates.size < 2:
            break
        weights = length[candidates] / length[candidates].sum()
        cdf = np.cumsum(weights)
        cdf /= cdf[-1]
        pairs = candidates[np.array([_draw_pair(rng, cdf, weights) for _ in range(_TRIALS)])]
        points = np.cross(lines[pairs[:, 0]], lines[pairs[:, 1]])
        best, best_score = None, 0.0
        for chunk in range(0, _TRIALS, _TRIAL_CHUNK):
            some = points[chunk : chunk + _TRIAL_CHUNK]  # a chunk of trials' supporters at once
            supported = free & (_support(some, mid, direction) < tolerance)
            for v, inliers in zip(some, supported, strict=True):
                if not np.any(v):
                    continue
                score = float(length[inliers].sum())
                if score > best_score:
                    best, best_score = v, score
        if best is None:
            break
        point = _settle(best, free, p1, lines, direction, length, mid, tolerance)
        if point is None:
            break
        found.append(point)
        free &= ~point[1]
    return found


def _draw_pair(rng: np.random.Generator, cdf: np.ndarray, weights: np.ndarray) -> tuple[int, int]:
    """Two different indices drawn by weight: what rng.choice(n, 2, replace=False, p=weights)
    draws, from the same random numbers (two uniforms through the weights' cumulative sum, and one
    more without the first when both fall on it), at a tenth of its cost (its checks and cumsum
    are per call). The seeded draws, and so the vanishing points, stay as they were."""
    first, second = (int(k) for k in np.searchsorted(cdf, rng.random(2), side="right"))
    if second == first:
        rest = weights.copy()
        rest[first] = 0.0
        rest_cdf = np.cumsum(rest)
        rest_cdf /= rest_cdf[-1]
        second = int(np.searchsorted(rest_cdf, rng.random(1), side="right")[0])
    return first, second


def _settle(
    v: np.ndarray,
    free: np.ndarray,
    p1: np.ndarray,
    lines: np.ndarray,
    direction: np.ndarray,
    length: np.ndarray,
    mid: np.ndarray,
    tolerance: np.ndarray,
) -> tuple[np.ndarray, np.ndarray] | None:
    """A vanishing point refined on the free segments that support it, with its final supporters
    (None when fewer than two)."""
    inliers = free & (_support(v, mid, direction) < tolerance)
    if inliers.sum() < 2:
        return None
    v = _refine(lines[inliers], length[inliers])
    inliers = free & (_support(v, mid, direction) < tolerance)
    if inliers.sum() < 2:
        return None
    v = _refine_ml(v, p1[inliers], mid[inliers], length[inliers])
    inliers = free & (_support(v, mid, direction) < tolerance)
    return (v, inliers) if inliers.sum() >= 2 else None


# The perpendicular direction's vote: bins of half a degree, smoothed over a degree and a half.
_VOTE_BINS = 360
_VOTE_PEAKS = 3


def perpendicular_points(
    v1: np.ndarray, free: np.ndarray, segments: np.ndarray, scale: float, centre: np.ndarray, f: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Vanishing points (scaled coordinates) of directions perpendicular to v1's for a camera of
    focal length f (scaled), from the free segments' votes, strongest first, each with its
    supporters. A segment's line back-projects to a plane through the camera, and the one
    direction in that plane perpendicular to v1's is its vote: an angle about v1's direction."""
    p1, lines, direction, length, mid = segment_geometry(segments, scale)
    tolerance = _tolerance(length)
    K = np.array([[f, 0.0, centre[0]], [0.0, f, centre[1]], [0.0, 0.0, 1.0]])
    d1 = np.linalg.inv(K) @ v1
    d1 /= np.linalg.norm(d1)
    a = np.cross(d1, [1.0, 0.0, 0.0] if abs(d1[0]) < 0.9 else [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(d1, a)
    votes = np.cross(lines[free] @ K, d1)  # K^T l: the back-projected plane's normal
    size = np.linalg.norm(votes, axis=1)
    usable = size > 1e-9
    theta = np.arctan2(votes[usable] @ b, votes[usable] @ a) % np.pi
    bins = np.minimum((theta / np.pi * _VOTE_BINS).astype(int), _VOTE_BINS - 1)
    counts = np.bincount(bins, weights=length[free][usable], minlength=_VOTE_BINS)
    histogram = 0.25 * np.roll(counts, -1) + 0.5 * counts + 0.25 * np.roll(counts, 1)
    found: list[tuple[np.ndarray, np.ndarray]] = []
    taken = ~free
    for peak in np.argsort(histogram)[::-1]:
        if len(found) == _VOTE_PEAKS or histogram[peak] <= 0:
            break
        # Only local maxima; a later peak keeps only the segments an earlier one did not take.
        if histogram[peak] < max(histogram[peak - 1], histogram[(peak + 1) % _VOTE_BINS]):
            continue
        angle = (peak + 0.5) * np.pi / _VOTE_BINS
        d2 = np.cos(angle) * a + np.sin(angle) * b
        point = _settle(K @ d2, ~taken, p1, lines, direction, length, mid, tolerance)
        if point is None:
            continue
        settled = np.linalg.solve(K, point[0])
        if abs(settled @ d1) > np.sin(_RIGHT_ANGLE_SLACK) * np.linalg.norm(settled):
            continue  # refined away from the right angle: another direction's lines took it
        found.append(point)
        taken |= point[1]
    return found


def plane_from_lines(
    photo_bgr: np.ndarray,
    mask: np.ndarray,
    default_focal: float,
    given_focal: float | None = None,
    focal_tolerance: float = 0.0,
    surface: str = "",
    segments: PhotoSegments | None = None,
) -> LinePlane:
    """The plane of the masked surface from the lines on and around it (`segments`: the photo's,
    photo_segments', where the caller has found them already). A given focal length is
    taken as exact, or, with a focal_tolerance (relative), as known to within it: the lines then
    settle it inside that range where their right angle fixes it (an EXIF's 35 mm equivalent is
    rounded to a millimetre, 2 % of a phone's 24 mm), and leave it exactly as given where they
    cannot tell the focal lengths in the range apart (a far vanishing point: moved by their noise,
    an exact value only got worse).

    Without one, the focal length two finite vanishing points give (f^2 = -(v1 - c).(v2 - c)), or
    else the default, is then treated as known to within SEEDED_TOLERANCE or ASSUMED_TOLERANCE:
    the surface's lines are searched again at a right angle to its directions, the pair refitted
    as one right angle and the focal length settled where the lines fix it (focal_from_lines when
    they told the focal lengths in the range apart; else the default stays). On make quality's
    scenes and the known-camera views this found a subway-tiled wall's plane (41° off before: its
    few short vertical joints lost to strays) and the old brick facade's (refused before), and
    halved the error of facades seen with a long lens (docs/quality.md).

    A surface named a floor or a ceiling takes only a plane level within LEVEL_ROLL as seen by the
    camera (its normal the camera's down or up, turned by no more than a hand-held camera's roll):
    lines that give none (a sun patch's edges and strays on a plain floor) are refused, naming it,
    rather than made into a plane 30-80 degrees off."""
    lines = _Lines.find(photo_bgr, mask, segments)
    if given_focal is not None:
        return _fit(
            lines,
            default_focal,
            given_focal,
            focal_tolerance,
            keep_unless_told=True,
            known_camera=True,
            surface=surface,
        )[0]
    refusal: NoVanishingPoints | None = None
    free: LinePlane | None = None
    try:
        free = _fit(lines, default_focal, None, 0.0, surface=surface)[0]
    except NoVanishingPoints as exc:
        refusal = exc
    seeded = free is not None and free.focal_from_lines
    seed = free.focal if free is not None and seeded else default_focal
    try:
        # The default stays exactly unless the lines tell focal lengths apart (it is then reported
        # as assumed, and must be the default).
        settled, told = _fit(
            lines,
            default_focal,
            seed,
            SEEDED_TOLERANCE if seeded else ASSUMED_TOLERANCE,
            keep_unless_told=not seeded,
            surface=surface,
        )
    except ValueError:  # refused, or a degenerate refit: the free fit's answer stands
        if free is None:
            assert refusal is not None
            raise refusal from None
        return free
    if not (seeded or told):
        return settled
    # A focal length the lines fixed: the confidence of one, as the free fit gives it.
    confidence = round(min(1.0, settled.confidence / _ASSUMED_FOCAL), 3)
    return replace(settled, focal_from_lines=True, confidence=confidence)


# A plane's confidence and score when its focal length was given or assumed, not fixed by its lines.
_ASSUMED_FOCAL = 0.8
# Without a focal length, how far the lines may move the one two finite vanishing points give
# (their intersection's noise), or the default (a phone's main camera is 20-30 % wider than the
# default's 60°; a long lens or a crop narrower).
SEEDED_TOLERANCE = 0.1
ASSUMED_TOLERANCE = 0.4


@dataclass(frozen=True)
class _Lines:
    """The segments on and around a surface and their vanishing points, found once per photo."""

    photo: np.ndarray  # BGR, the photo the segments were found in
    width: int
    height: int
    everywhere: np.ndarray  # the photo's segments
    near: np.ndarray  # which of them lie on or around the surface
    points: list[tuple[np.ndarray, np.ndarray]]  # vanishing points of `segments`, with their inliers
    centroid: tuple[float, float]  # the mask's, in pixels
    samples: np.ndarray  # (x, y) of the mask's pixels, sampled
    on_mask: np.ndarray  # which of `segments` lie mostly on the mask itself, not in the band around it

    @property
    def segments(self) -> np.ndarray:
        return self.everywhere[self.near]

    @property
    def scale(self) -> float:
        return float(max(self.width, self.height))

    @property
    def centre(self) -> np.ndarray:
        return np.array([self.width / 2, self.height / 2]) / self.scale

    @classmethod
    def find(cls, photo_bgr: np.ndarray, mask: np.ndarray, known: PhotoSegments | None = None) -> _Lines:
        height, width = mask.shape
        everywhere, near = photo_segments(photo_bgr, mask) if known is None else known
        segments = everywhere[near]
        if len(segments) < 4:
            raise NoVanishingPoints(
                f"only {len(segments)} straight lines on or around the surface; "
                "at least 4, in two directions, are needed"
            )
        scale = float(max(width, height))
        lengths = np.hypot(segments[:, 2] - segments[:, 0], segments[:, 3] - segments[:, 1])
        long = lengths >= MIN_LENGTH * scale
        # Long segments seed the vanishing points; a surface of small bricks may have none.
        points = vanishing_points(segments, scale, seeds=long if long.sum() >= 4 else None)
        spread = mask_samples(mask)
        if spread is None:
            raise NoVanishingPoints("the surface's mask is empty")
        centroid, samples = spread
        t = np.linspace(0.1, 0.9, 9)
        xs = np.clip(np.round(segments[:, None, 0] + t * (segments[:, None, 2] - segments[:, None, 0])), 0, width - 1)
        ys = np.clip(np.round(segments[:, None, 1] + t * (segments[:, None, 3] - segments[:, None, 1])), 0, height - 1)
        on_mask = (mask[ys.astype(int), xs.astype(int)] > 127).mean(axis=1) > 0.5
        return cls(photo_bgr, width, height, everywhere, near, points, centroid, samples, on_mask)


def mask_samples(mask: np.ndarray) -> tuple[tuple[float, float], np.ndarray] | None:
    """A mask's centroid (x, y) and about _MASK_SAMPLES of its pixels spread over it (x, y rows,
    float64), found without listing every pixel (a 12 MP mask's coordinates are ~200 MB); None for
    an empty mask."""
    moments = cv2.moments((mask > 127).view(np.uint8), binaryImage=True)
    if moments["m00"] == 0:
        return None
    ys, xs = imaging.mask_pixels(mask, step=max(1, round(moments["m00"]) // _MASK_SAMPLES))
    centroid = (moments["m10"] / moments["m00"], moments["m01"] / moments["m00"])
    return centroid, np.column_stack([xs, ys]).astype(np.float64)


def _fit(
    lines: _Lines,
    default_focal: float,
    given_focal: float | None,
    focal_tolerance: float,
    *,
    keep_unless_told: bool = False,
    known_camera: bool = False,
    surface: str = "",
) -> tuple[LinePlane, bool]:
    """The plane from the found lines, the focal length given (see plane_from_lines) or not, and
    whether the lines told the focal lengths within the tolerance apart (_settled_focal). With
    known_camera (the given focal length is the caller's, not a seed), a pair of directions at a
    right angle goes before any other."""
    width, height, points, centroid, samples = lines.width, lines.height, lines.points, lines.centroid, lines.samples
    segments, scale, centre = lines.segments, lines.scale, lines.centre
    lengths = np.hypot(segments[:, 2] - segments[:, 0], segments[:, 3] - segments[:, 1])
    candidates = list(itertools.combinations(points, 2))
    # The pairs of found points; those after them were searched for at a right angle to one.
    found_pairs = len(candidates)
    if given_focal is not None:
        # With the camera known, the direction at a right angle to each of the two strongest
        # found: a wall's vertical joints are short and easily outnumbered by the floor's lines.
        for v1, in1 in points[:2]:
            for other in perpendicular_points(v1, ~in1, segments, scale, centre, given_focal / scale):
                candidates.append(((v1, in1), other))
    if not candidates and (given_focal is None or not points):
        raise NoVanishingPoints("the lines on and around the surface do not run in two directions")
    best: LinePlane | None = None
    best_rank = (False, False, 0.0)
    pair: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    # With the camera known (known_camera), a pair of found directions at a right angle (a floor's
    # planks and their joints) goes before any other (a herringbone's or a rhombic pattern's are
    # kept where no such pair is found; the exceptions are below): a family merged from two
    # directions (a floor's edge against the wall and a sun patch's edges) outscored the planks'
    # joints and tilted the plane 8-9 degrees.
    f = given_focal / scale if known_camera and given_focal is not None else 0.0
    strongest = max(lengths[inliers].sum() for _, inliers in points) if points else 0.0
    long = lengths >= MIN_LENGTH * scale
    scored: list[tuple[bool, float, LinePlane, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = []
    unlevel = False  # whether a plane was turned down for a floor or a ceiling no level camera sees
    from_surface = True  # whether the pair's supporters index the surface's segments (else the photo's)
    for index, ((v1, in1), (v2, in2)) in enumerate(candidates):
        weaker = min(lengths[in1].sum(), lengths[in2].sum())
        if min(in1.sum(), in2.sum()) < _MIN_FAMILY or weaker < _MIN_BALANCE * strongest:
            continue  # a handful of strays beside a strong direction is no second direction
        if max((long & in1).sum(), (long & in2).sum()) < _MIN_LONG_IN_FAMILY:
            continue  # a texture's own short edges (gravel, a mottled carpet), not the surface's lines
        if f > 0 and not _apart(v1, v2, centre, f):
            continue  # one direction fanned out (a photo's own perspective), not a pattern's two
        # Not where a pair the lines found runs along the line through its points (a plane seen at a
        # grazing angle); a pair searched for at a right angle stays refused: the brick photo's
        # strays voting there ran 6-19° from that line.
        if _one_way(segments, lengths, in1, in2) and not (
            index < found_pairs and _along_their_points(v1, v2, segments, lengths, in1 | in2)
        ):
            continue  # one direction turning across the surface, seen in the photo
        candidate = _plane(v1, v2, centre, scale, width, height, default_focal, given_focal, centroid)
        if candidate is None or past_horizon(candidate, samples, width, height) > PAST_HORIZON:
            continue  # the surface cannot run past its own horizon: these lines are not its plane
        if not _level(candidate.normal, surface):
            unlevel = True
            continue  # a floor or ceiling tilted as no hand-held camera sees one
        support = float(lengths[in1 | in2].sum() / lengths.sum())
        balance = float(min(lengths[in1].sum(), lengths[in2].sum()) / max(lengths[in1].sum(), lengths[in2].sum()))
        confidence = support * min(1.0, 2.0 * balance) * (1.0 if candidate.focal_from_lines else _ASSUMED_FOCAL)
        candidate = replace(candidate, confidence=round(confidence, 3), segments=int((in1 | in2).sum()))
        # The pair whose weaker family is strongest, relative to the other: a plank floor's long
        # edges with its few cross joints, not two handfuls of stray segments whose lengths merely
        # balance (one of them a few degrees off the long edges' direction tilted the plane 2°).
        score = float(np.sqrt(lengths[in1].sum() * lengths[in2].sum())) * (
            1.0 if candidate.focal_from_lines else _ASSUMED_FOCAL
        )
        # Only a pair of directions the lines found on their own: one searched for at a right angle
        # to a found direction (perpendicular_points) is at one by construction, and a few stray
        # segments settled there (a hexagonal or rhombic floor's crossings) took the plane 35-75
        # degrees off; such a pair competes by its score alone, as before.
        right = f > 0 and index < found_pairs and _right_angle(v1, v2, centre, f)
        scored.append((right, score, candidate, (v1, in1, v2, in2)))
    for right, score, candidate, (v1, in1, v2, in2) in scored:
        # With the camera known, a pair whose weaker direction is a handful of segments (one or
        # two objects' edges, or strays along the mask's edge that a pixel of it lets in or out)
        # goes after any pair of two real families, whatever its score or right angle.
        family = f <= 0 or min(int(in1.sum()), int(in2.sum())) >= _FEW_SEGMENTS
        if right:
            # Not where one of its directions is the normal of a stronger pair's plane: edges
            # standing on a rhombic or hexagonal floor (table legs, a door's frame) are at a right
            # angle to each of its directions, and such a pair is a wall across the floor.
            # Only where that stronger pair's lines are on the surface itself: a wall (below eye
            # level) bordered by a floor's joints, in the band around its mask, is the wall.
            right = not any(
                not other_right
                and other_score > score
                and _mostly_on_mask(lengths, oin1, lines.on_mask)
                and _mostly_on_mask(lengths, oin2, lines.on_mask)
                and any(_right_angle(v, o1, centre, f) and _right_angle(v, o2, centre, f) for v in (v1, v2))
                for other_right, other_score, _, (o1, oin1, o2, oin2) in scored
            )
        rank = (family, right, score)
        if best is None or rank > best_rank:
            best, best_rank, pair = candidate, rank, (v1, in1, v2, in2)
    # A pair whose weaker direction is a handful of segments; or, on a wall or a facade, a pair not
    # at a right angle (one searched for at a right angle to a found direction is at one): there
    # the building's verticals, where the photo shows them, are surer.
    few = best is not None and (
        not best_rank[0]
        or (
            f > 0 and surface in UPRIGHT_SURFACES and pair is not None and not _right_angle(pair[0], pair[2], centre, f)
        )
    )
    if (best is None or pair is None or few) and given_focal is not None and points:
        # One direction on the surface and none across it (a brick facade whose vertical joints
        # are too small to see): the direction at a right angle to it from the whole photo's
        # lines (the building's verticals), when exactly one such plane keeps the surface this
        # side of its horizon. Also before such a `few` pair: a handful of segments come in or
        # out as the mask's edge moves by a pixel, and a brick facade's courses paired with
        # 11 strays at 60° to them made a plane 72° off (13 mm, 2026-12-07).
        found = _across_from_elsewhere(
            lines.everywhere, lines.near, points[0], (width, height), samples, given_focal, centroid, surface
        )
        if found is not None:
            if _level(found[0].normal, surface):
                (best, pair), segments = found, lines.everywhere
                from_surface = False
            elif best is None:
                unlevel = True
    if best is None or pair is None:
        raise NoVanishingPoints(
            "no two line directions on the surface describe a plane in front of the camera"
            + (f" that a {surface} seen by a camera held level would have" if unlevel else "")
        )
    if given_focal is not None:
        # A known camera makes the two directions' right angle a constraint: the pair is refitted
        # as one orthonormal frame, so a far vanishing point (lines nearly parallel in the photo,
        # whose distance the lines hardly fix) takes its tilt from the other direction and keeps
        # only what its lines' angles say.
        focal, refined, told = _settled_focal(
            pair,
            segments,
            scale,
            centre,
            given_focal,
            focal_tolerance,
            keep_unless_told=keep_unless_told,
            # The caller's camera only (an EXIF value): without one, the seed's range is wide and
            # unmeasured here.
            elsewhere=lines.everywhere if known_camera else None,
            within=_exif_rounding(given_focal, width, height) if known_camera else 0.0,
        )
        if refined is not None:
            # The pair's own segments placed on the photo's edges (services.depth.subpixel), and the
            # right angle refitted on them at the focal length settled: the detector's segments
            # choose the directions and the focal length (placed ones moved it further on biased
            # lines), the placed ones their tilt.
            v1, in1, v2, in2 = pair
            members = in1 | in2
            placed = segments.copy()
            placed[members] = refine_segments(lines.photo, segments[members])
            on_edges = _orthogonal_pair(v1, in1, v2, in2, placed, scale, centre, focal / scale)
            if on_edges is not None:
                refined = _joined_pair(on_edges[0], in1, on_edges[1], in2, placed, scale, centre, focal / scale)
            again = _plane(*refined, centre, scale, width, height, default_focal, focal, centroid)
            if again is not None:
                return replace(again, confidence=best.confidence, segments=best.segments), told
        elif from_surface and known_camera:
            # Directions not at a right angle (a hexagonal or rhombic floor's): every direction
            # found on the plane fixes its horizon, not the chosen pair alone.
            horizon = _horizon_fit(pair, points, segments, lines.photo, scale, centre, focal / scale, best.normal)
            if horizon is not None:
                again = _plane(*horizon, centre, scale, width, height, default_focal, focal, centroid)
                if again is not None:
                    return replace(again, confidence=best.confidence, segments=best.segments), told
    return best, False


def _across_from_elsewhere(
    everywhere: np.ndarray,
    own: np.ndarray,
    point: tuple[np.ndarray, np.ndarray],
    size: tuple[int, int],
    samples: np.ndarray,
    focal: float,
    centroid: tuple[float, float],
    surface: str = "",
) -> tuple[LinePlane, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] | None:
    """The plane through the surface's one line direction and the direction at a right angle to
    it that the whole photo's segments (`own`: those on the surface) vote for, with the pair (its
    supporters index `everywhere`). None unless exactly one voted direction gives a plane
    the surface stays this side of (a facade's verticals do; the street's receding lines would put
    the facade above its horizon). A surface named a wall or a facade takes only an upright
    direction (UPRIGHT_SURFACES)."""
    width, height = size
    scale = float(max(width, height))
    centre = np.array([width / 2, height / 2]) / scale
    v1 = point[0]
    _, _, direction, length, mid = segment_geometry(everywhere, scale)
    along = _support(v1, mid, direction) < _tolerance(length)  # the same direction elsewhere too
    in1 = own & along
    lengths = length * scale
    if in1.sum() < _MIN_FAMILY:
        return None
    planes = []
    for v2, in2 in perpendicular_points(v1, ~along, everywhere, scale, centre, focal / scale):
        if surface in UPRIGHT_SURFACES and not _upright(v2, centre, focal / scale):
            continue  # a street's or a floor's receding lines: level, not a wall's
        if in2.sum() < _MIN_FAMILY or lengths[in2].sum() < _MIN_BALANCE * lengths[in1].sum():
            continue
        plane = _plane(v1, v2, centre, scale, width, height, focal, focal, centroid)
        if plane is None or past_horizon(plane, samples, width, height) > PAST_HORIZON:
            continue
        # Half the confidence of a plane whose two directions both lie on the surface.
        support = float(lengths[in1 | in2].sum() / lengths.sum())
        planes.append((replace(plane, confidence=round(0.5 * support, 3), segments=int((in1 | in2).sum())), v2, in2))
    if len(planes) != 1:
        return None
    plane, v2, in2 = planes[0]
    return plane, (v1, in1, v2, in2)


# Surfaces that hold the world's vertical (floors and ceilings, LEVEL_SURFACES, are at a right
# angle to it): the direction across their lines taken from elsewhere in the photo is that
# vertical, which a camera held level (LEVEL_ROLL) and pitched by less than 45° sees nearer its own
# up than its level plane. On a wide-angle facade (16 mm) the street's receding lines also left the
# facade this side of their horizon, and the plane went unfound (81° off).
UPRIGHT_SURFACES = ("wall", "facade")
_UPRIGHT = np.cos(np.radians(45.0))


def _upright(v: np.ndarray, centre: np.ndarray, f: float) -> bool:
    """Whether a vanishing point (scaled coordinates, homogeneous) is the image of a direction
    nearer the camera's vertical (y) than its level plane, for a camera of focal length f (scaled)."""
    d = np.array([(v[0] - centre[0] * v[2]) / f, (v[1] - centre[1] * v[2]) / f, v[2]])
    return abs(float(d[1])) >= _UPRIGHT * float(np.linalg.norm(d))


# The weaker of two line directions needs this many segments and this share of the strongest
# direction's length (a plank floor's cross joints: 4 %; strays beside a brick facade's courses,
# paired with each other or with the courses: under 0.6 %; on a plain floor, two lines that
# happened to meet at a right angle to a wall's foot made a plane 82° off).
_MIN_FAMILY = 3
_MIN_BALANCE = 0.01
# With the camera known, a direction of fewer segments than this is no family for a pair to go
# first with (_fit). On wide-angle facades (13-18 mm) strays of 2-5 segments near the mask's edge
# made pairs 75-80° off, in or out as the edge moved by a pixel; the real weaker directions of ten
# wide-angle variations had 12 segments or more (the fewest: a subway wall's vertical joints).
_FEW_SEGMENTS = 8
# And the stronger direction this many segments of at least MIN_LENGTH: a floor with no lines of
# its own (gravel, a mottled carpet) has hundreds of short edges, which seen at an angle run nearly
# parallel and met in made-up vanishing points: planes 14-41° off, given without a word
# (another reviewer's scenes), where the request should ask for a quad. Not both directions:
# running bond's and small tiles' cross joints are all short, and a floor seen between furniture
# has no long mask side to lend them one.
_MIN_LONG_IN_FAMILY = 2

# A plane is refused when more of the mask than this lies beyond its horizon by more than the
# slack (a plane within a degree keeps every pixel of its surface this side): the surface cannot
# run past its own horizon. From a plain floor's few lines (its sun patch's edges among them) one
# plane left 0.2 % of the floor over a degree past it, another 36 %.
PAST_HORIZON = 0.001
_HORIZON_SLACK = np.sin(np.radians(1.0))


# A floor's normal (oriented away from the camera) is the camera's down, a ceiling's its up, turned
# by the camera's roll: a hand-held photo is level within a few degrees (the judge's and make
# quality's rolls reach 8°, a floor built to check this 15°); the planes a plain floor's and a grazing
# gravel floor's stray lines made were 116° and 176° "rolled" (docs/quality.md, fortieth stop).
LEVEL_ROLL = np.radians(20.0)
LEVEL_SURFACES = {"floor": 1.0, "ceiling": -1.0}  # the sign of the normal's camera y (y points down)
# A floor seen from above (its normal within this of the optical axis: a camera pitched down more
# than 60°) is not judged: its roll is ill-defined there, and a photo of tiles taken from above is
# as often turned as not. The planes refused were 37-63° from the axis.
_LEVEL_MIN_TILT = np.radians(30.0)


def _level(normal: np.ndarray, surface: str) -> bool:
    """Whether a plane's normal (camera coordinates, away from the camera) suits the surface named:
    a floor's or a ceiling's within LEVEL_ROLL of the camera's down or up about its optical axis.
    Walls and facades are not judged: every plane holds some direction a camera's up could be; nor
    is a floor seen from above (_LEVEL_MIN_TILT)."""
    sign = LEVEL_SURFACES.get(surface)
    if sign is None:
        return True
    x, y, z = (float(v) for v in normal / np.linalg.norm(normal))
    if np.arccos(min(1.0, abs(z))) < _LEVEL_MIN_TILT:
        return True
    return bool(np.arctan2(abs(x), sign * y) <= LEVEL_ROLL)


def past_horizon(plane: LinePlane, samples: np.ndarray, width: int, height: int) -> float:
    """The share of the mask's sampled pixels (x, y) beyond the plane's horizon by over the slack."""
    rays = np.column_stack(
        [(samples[:, 0] - width / 2) / plane.focal, (samples[:, 1] - height / 2) / plane.focal, np.ones(len(samples))]
    )
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    return float(np.mean(rays @ plane.normal < -_HORIZON_SLACK))


# The focal lengths tried across a tolerance (then a parabola through the best and its neighbours).
_FOCAL_STEPS = 17
# The lines tell focal lengths apart when their fit over the range tried differs by this much (in
# their noise's units: two standard deviations).
_TOLD_APART = 4.0
# The lines' noise is their mean squared residual at the given focal length times their number over
# this: the segments along one joint, or of one row, are not independent measurements, and a far
# vanishing point's small bias (a grazing floor's rows, a wall's short vertical joints) otherwise
# moved an exact EXIF value by 2-6 % on make quality's scenes; with it, the lines move the value
# where two finite vanishing points fix it (the carpet's and the worn floor's, to within 0.3 %).
_INDEPENDENT_LINES = 100


def _settled_focal(
    pair: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    segments: np.ndarray,
    scale: float,
    centre: np.ndarray,
    focal: float,
    tolerance: float,
    *,
    keep_unless_told: bool = False,
    elsewhere: np.ndarray | None = None,
    within: float = 0.0,
) -> tuple[float, tuple[np.ndarray, np.ndarray] | None, bool]:
    """The focal length (pixels) within focal × (1 ± tolerance) at which the pair, refitted as a
    right angle, fits its lines best, weighed against the given value (a Gaussian prior of
    tolerance / 2, the lines' noise taken from their residuals at the given value), the refitted
    pair there, and whether the lines told the focal lengths tried apart (their fit differed by
    _TOLD_APART). Where they cannot (a vanishing point far off: its distance is what would say),
    the given one stays, or (unless keep_unless_told) moves only by the noise and the prior.
    A positive `within` (an EXIF value's rounding, relative) bounds the value settled, not the
    range the lines are weighed over. Segments `elsewhere` in the photo along the direction at a
    right angle to both (_Third) count in the fit too, where on their own they settle inside that
    bound: with the pair's near vanishing point they fix the focal length where the pair's far one
    cannot."""
    v1, in1, v2, in2 = pair
    at_given = _orthogonal_pair(v1, in1, v2, in2, segments, scale, centre, focal / scale)
    if at_given is None or tolerance <= 0:
        return focal, None if at_given is None else at_given[:2], False
    noise = at_given[2] / max(1, min(int((in1 | in2).sum()) - 3, _INDEPENDENT_LINES))
    if noise <= 0:
        return focal, at_given[:2], False

    def refit(f: float) -> tuple[np.ndarray, np.ndarray, float] | None:
        return _orthogonal_pair(v1, in1, v2, in2, segments, scale, centre, f / scale)

    bound = within if 0 < within < tolerance else tolerance
    third = _Third.along(at_given[:2], elsewhere, scale, centre, focal / scale) if elsewhere is not None else None
    if third is not None and not third.settles_within(refit, centre, scale, focal, bound):
        third = None

    def fitted(f: float) -> float:
        fit = refit(f)
        return np.inf if fit is None else fit[2] / noise + (third.cost(fit[:2], centre, f / scale) if third else 0.0)

    tried = focal * (1 + tolerance * np.linspace(-1, 1, _FOCAL_STEPS))
    fits = [fitted(f) for f in tried]
    finite = [c for c in fits if np.isfinite(c)]
    told = bool(finite) and max(finite) - min(finite) >= _TOLD_APART
    if keep_unless_told and not told:
        return focal, at_given[:2], False
    if bound < tolerance:
        # Tried again across the bound alone, as finely: the prior stays the tolerance's.
        tried = focal * (1 + bound * np.linspace(-1, 1, _FOCAL_STEPS))
        fits = [fitted(f) for f in tried]
    costs = [fit + ((f - focal) / (focal * tolerance / 2)) ** 2 for f, fit in zip(tried, fits, strict=True)]
    k = int(np.argmin(costs))
    chosen = float(tried[k])
    if 0 < k < _FOCAL_STEPS - 1 and np.all(np.isfinite(costs[k - 1 : k + 2])):
        below, here, above = costs[k - 1 : k + 2]
        curvature = below - 2 * here + above
        if curvature > 0:
            chosen += 0.5 * (below - above) / curvature * float(tried[1] - tried[0])
    fit = refit(chosen)
    if fit is None:
        return focal, at_given[:2], False
    return chosen, fit[:2], told


# The fewest segments taken for a third direction: a handful are one or two objects' edges (a cabinet's
# corner, a lamppost), whose own lean they carry; on make quality's floors 3-5 such segments moved
# exact values by 0.05-0.2 %, on a facade looking up a rounded one 1 % the wrong way.
_MIN_THIRD = 8
# A third direction's own best focal length is searched for over this many times the EXIF value's
# range (a whole number: the range's steps are kept), so that one preferring a value past it shows.
_THIRD_REACH = 3


@dataclass(frozen=True)
class _Third:
    """The photo's segments along the direction at a right angle to a pair of perpendicular ones
    (a floor's verticals: a room's corners, furniture's legs; a facade's depth: window reveals, a
    balcony's sides), and their noise. Their vanishing point, d1 x d2 through the camera, moves with
    the focal length; it is finite where a floor is seen at an angle or a facade from below, so it
    fixes the focal length with the pair's near vanishing point where the pair's far one (a floor
    or a facade seen nearly square-on) cannot: f^2 = -(v_near - c).(v_third - c)."""

    p1: np.ndarray  # the family's first endpoints (homogeneous, scaled)
    mid: np.ndarray
    weight: np.ndarray
    noise: float  # their mean squared endpoint distance at the given focal length

    @classmethod
    def along(
        cls, pair: tuple[np.ndarray, np.ndarray], everywhere: np.ndarray, scale: float, centre: np.ndarray, f: float
    ) -> _Third | None:
        """The family at focal length f (scaled), the pair refitted there; None where it is too
        few segments to be told from strays."""
        p1, _, direction, length, mid = segment_geometry(everywhere, scale)
        tolerance = _tolerance(length)
        others = np.all([_support(v, mid, direction) >= tolerance for v in pair], axis=0)
        family = others & (_support(_third_point(pair, centre, f), mid, direction) < tolerance)
        if family.sum() < _MIN_THIRD or (family & (length >= MIN_LENGTH)).sum() < _MIN_LONG_IN_FAMILY:
            return None
        weight = np.sqrt(length[family])
        residuals = endpoint_residuals(_third_point(pair, centre, f), p1[family], mid[family], weight)
        noise = float(residuals @ residuals) / max(1, min(int(family.sum()) - 1, _INDEPENDENT_LINES))
        if noise <= 0:
            return None
        return cls(p1[family], mid[family], weight, noise)

    def settles_within(
        self,
        refit: Callable[[float], tuple[np.ndarray, np.ndarray, float] | None],
        centre: np.ndarray,
        scale: float,
        focal: float,
        tolerance: float,
    ) -> bool:
        """Whether the family alone, the pair refitted at each focal length (pixels), fits best
        strictly inside focal × (1 ± tolerance), searched over _THIRD_REACH times that range: a real
        direction's lines (uprights, a facade's depth) agree with the EXIF value's rounding; strays
        (a subway wall's few segments towards its centre, whose vanishing point hardly moves with the
        focal length) settle wherever their bias puts them, at the range's edge or past it."""
        steps = _THIRD_REACH * (_FOCAL_STEPS - 1) + 1
        offsets = tolerance * _THIRD_REACH * np.linspace(-1, 1, steps)
        costs = []
        for offset in offsets:
            fit = refit(focal * (1 + offset))
            costs.append(np.inf if fit is None else self.cost(fit[:2], centre, focal * (1 + offset) / scale))
        if not np.isfinite(min(costs)):
            return False
        return bool(abs(offsets[int(np.argmin(costs))]) < tolerance)

    def cost(self, pair: tuple[np.ndarray, np.ndarray], centre: np.ndarray, f: float) -> float:
        """The family's squared endpoint distances from the third vanishing point of the pair at
        focal length f (scaled), in units of their noise."""
        residuals = endpoint_residuals(_third_point(pair, centre, f), self.p1, self.mid, self.weight)
        return float(residuals @ residuals) / self.noise


def _third_point(pair: tuple[np.ndarray, np.ndarray], centre: np.ndarray, f: float) -> np.ndarray:
    """The vanishing point (scaled, homogeneous) of the direction at a right angle to both of a
    pair's, for a camera of focal length f (scaled)."""
    K = np.array([[f, 0.0, centre[0]], [0.0, f, centre[1]], [0.0, 0.0, 1.0]])
    d1, d2 = (np.linalg.solve(K, v) for v in pair)
    return np.asarray(K @ np.cross(d1 / np.linalg.norm(d1), d2 / np.linalg.norm(d2)))


# Two line directions further than this from a right angle (with the camera known) are not taken
# for perpendicular ones (a herringbone's, a rhombic pattern's): they are left as measured.
_RIGHT_ANGLE_SLACK = np.radians(12.0)


def _right_angle(v1: np.ndarray, v2: np.ndarray, centre: np.ndarray, f: float) -> bool:
    """Whether two vanishing points (scaled coordinates, homogeneous) are the images of directions
    within _RIGHT_ANGLE_SLACK of a right angle, for a camera of focal length f (scaled)."""
    d1, d2 = (np.array([(v[0] - centre[0] * v[2]) / f, (v[1] - centre[1] * v[2]) / f, v[2]]) for v in (v1, v2))
    return abs(float(d1 @ d2)) <= np.sin(_RIGHT_ANGLE_SLACK) * float(np.linalg.norm(d1) * np.linalg.norm(d2))


# With the camera known, a surface's two line directions lie at least this far apart: tiles, planks,
# courses and a herringbone's are at a right angle, rhombi at 60°. Two families closer than this are
# one direction fanned out (a real photo of bricks carrying its own perspective, laid as a floor or a
# wall: judge40's F15 and W4, pairs 14-22° apart, planes 19-34° off), and the normal from directions
# θ apart multiplies their errors by 1 / sin θ. Every right plane on judge40's and make quality's
# scenes came from a pair within 0.5° of a right angle.
_MIN_PAIR_ANGLE = np.radians(30.0)


def _apart(v1: np.ndarray, v2: np.ndarray, centre: np.ndarray, f: float) -> bool:
    """Whether two vanishing points (scaled coordinates, homogeneous) are the images of directions
    at least _MIN_PAIR_ANGLE apart, for a camera of focal length f (scaled)."""
    d1, d2 = (np.array([(v[0] - centre[0] * v[2]) / f, (v[1] - centre[1] * v[2]) / f, v[2]]) for v in (v1, v2))
    return abs(float(d1 @ d2)) <= np.cos(_MIN_PAIR_ANGLE) * float(np.linalg.norm(d1) * np.linalg.norm(d2))


# Two families whose segments, each where it lies, run within _SAME_WAY of one another in the photo,
# and lie side by side across that way (less than _SIDE_BY_SIDE of either family's length within the
# other's span) are one direction whose lines turn across the surface, not a pattern's two
# directions, whose lines run over the whole surface together. A texture photo's own perspective,
# repeated with each tile, does this (scikit-image's brick photo on a wall: each tile's joints fan to
# their own point below the photo, and two tiles' fans made a plane 46-65° off, read as a camera
# pitched 47° down); so do strays voting at a right angle to a direction they run along.
_SAME_WAY = np.radians(10.0)
_SIDE_BY_SIDE = 0.5


def _one_way(segments: np.ndarray, lengths: np.ndarray, in1: np.ndarray, in2: np.ndarray) -> bool:
    """Whether two families of segments (x1, y1, x2, y2 rows) run the same way in the photo, side by
    side (_SAME_WAY, _SIDE_BY_SIDE)."""
    means = [_doubled_mean(segments, lengths, members) for members in (in1, in2)]
    turn = abs(means[0] - means[1]) % (2.0 * np.pi)
    if min(turn, 2.0 * np.pi - turn) / 2.0 >= _SAME_WAY:
        return False
    way = 0.5 * np.arctan2(np.sin(means[0]) + np.sin(means[1]), np.cos(means[0]) + np.cos(means[1]))
    across = ((segments[:, :2] + segments[:, 2:4]) / 2.0) @ np.array([-np.sin(way), np.cos(way)])
    shares = []
    for members, other in ((in1, in2), (in2, in1)):
        low, high = np.percentile(across[other], [10.0, 90.0])
        within = (across[members] >= low) & (across[members] <= high)
        shares.append(float(lengths[members][within].sum() / lengths[members].sum()))
    return max(shares) < _SIDE_BY_SIDE


def _doubled_mean(segments: np.ndarray, lengths: np.ndarray, members: np.ndarray) -> float:
    """The length-weighted mean direction of the members' segments in the photo, as a doubled angle
    (a segment has no sense)."""
    doubled = 2.0 * np.arctan2(segments[members, 3] - segments[members, 1], segments[members, 2] - segments[members, 0])
    weights = lengths[members]
    return float(np.arctan2(float((weights * np.sin(doubled)).sum()), float((weights * np.cos(doubled)).sum())))


def _along_their_points(
    v1: np.ndarray, v2: np.ndarray, segments: np.ndarray, lengths: np.ndarray, members: np.ndarray
) -> bool:
    """Whether the members' segments run nearer along the line through two vanishing points
    (homogeneous, scaled coordinates) than across it. A plane seen at a grazing angle shows every
    direction on it running near its horizon, the line through any two of its points: a floor seen
    from 15-25 cm whose near joints ran one way and far planks the other (0.1-7.6° from that line)
    lost its plane to _one_way (0.5-0.7° -> refused). One direction fanned out tile by tile (the brick
    photo's) runs across the line through its tiles' points, which lie side by side (88-90°); half
    way between (45°) is where the segments stop running nearer along it."""
    line = np.cross(v1, v2)
    if np.hypot(line[0], line[1]) <= 1e-12 * np.linalg.norm(line):
        return False  # both points at infinity: no line in the photo to run along
    turn = abs(_doubled_mean(segments, lengths, members) - 2.0 * np.arctan2(-line[0], line[1])) % (2.0 * np.pi)
    return min(turn, 2.0 * np.pi - turn) / 2.0 < np.pi / 4.0


def _mostly_on_mask(lengths: np.ndarray, family: np.ndarray, on_mask: np.ndarray) -> bool:
    """Whether most of a family's length lies on the mask itself, not in the band around it."""
    total = float(lengths[family].sum())
    return total > 0 and float(lengths[family & on_mask].sum()) >= 0.5 * total


def _orthogonal_pair(
    v1: np.ndarray,
    in1: np.ndarray,
    v2: np.ndarray,
    in2: np.ndarray,
    segments: np.ndarray,
    scale: float,
    centre: np.ndarray,
    f: float,
    coverage: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Two vanishing points (scaled coordinates) refitted as the images of two perpendicular
    directions of a camera of focal length f (scaled): Gauss-Newton over the frame's rotation on
    both families' endpoint distances; with the fit's sum of squared distances. None when the
    directions are not nearly perpendicular. A segment's ends weigh by the square root of its
    length, times its coverage where given (a line joined from pieces: its pieces' length over its
    span, what places its ends)."""
    if not _right_angle(v1, v2, centre, f):
        return None
    K = np.array([[f, 0.0, centre[0]], [0.0, f, centre[1]], [0.0, 0.0, 1.0]])
    K_inv = np.linalg.inv(K)
    d1, d2 = (K_inv @ v for v in (v1, v2))
    d1, d2 = d1 / np.linalg.norm(d1), d2 / np.linalg.norm(d2)
    # The nearest orthonormal pair (polar decomposition), completed to a rotation.
    u, _, vt = np.linalg.svd(np.column_stack([d1, d2]), full_matrices=False)
    pair = u @ vt
    frame = np.column_stack([pair, np.cross(pair[:, 0], pair[:, 1])])
    p1, _, _, length, mid = segment_geometry(segments, scale)
    weight = np.sqrt(length if coverage is None else length * coverage)
    families = [(p1[in1], mid[in1], weight[in1]), (p1[in2], mid[in2], weight[in2])]

    def residuals(R: np.ndarray) -> np.ndarray:
        return np.concatenate([endpoint_residuals(K @ R[:, k], *family) for k, family in enumerate(families)])

    frame = refit_rotation(frame, residuals)
    r = residuals(frame)
    return K @ frame[:, 0], K @ frame[:, 1], float(r @ r)


def refit_rotation(frame: np.ndarray, residuals: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The rotation near `frame` that minimises the residuals' squares: Gauss-Newton over a
    rotation vector, the Jacobian by forward differences (at most 8 steps)."""
    for _ in range(8):
        r = residuals(frame)
        eps = 1e-7
        J = np.column_stack([(residuals(_rotate(frame, eps * axis)) - r) / eps for axis in np.eye(3)])
        step, *_ = np.linalg.lstsq(J, -r, rcond=None)
        frame = _rotate(frame, step)
        if np.linalg.norm(step) < 1e-10:
            break
    return frame


def _joined_pair(
    v1: np.ndarray,
    in1: np.ndarray,
    v2: np.ndarray,
    in2: np.ndarray,
    segments: np.ndarray,
    scale: float,
    centre: np.ndarray,
    f: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The right angle (v1, v2: fitted on the families' pieces) refitted on the long lines those
    pieces join into (services.depth.collinear), or as it was where the refit fails."""
    joined = [
        join_collinear(segments[family], np.array([v[0] * scale, v[1] * scale, v[2]]))
        for v, family in ((v1, in1), (v2, in2))
    ]
    lines = np.concatenate([joined[0][0], joined[1][0]])
    first = np.arange(len(lines)) < len(joined[0][0])
    coverage = np.concatenate([joined[0][1], joined[1][1]])
    fit = _orthogonal_pair(v1, first, v2, ~first, lines, scale, centre, f, coverage)
    return (v1, v2) if fit is None else fit[:2]


# A found direction within this angle of a plane (its normal from a pair, with the camera known)
# is taken for one of its lines' directions in the horizon's fit: a hexagonal floor's third
# direction lay 0.0-1.4° from the pair's plane, itself 1.0-2.0° off (six rendered hexagon
# floors, 2026-12-07); a direction off the plane (upright edges) lies tens of degrees from it.
_ON_HORIZON = np.radians(3.0)


def _horizon_fit(
    pair: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    points: list[tuple[np.ndarray, np.ndarray]],
    segments: np.ndarray,
    photo: np.ndarray,
    scale: float,
    centre: np.ndarray,
    f: float,
    normal: np.ndarray,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Two vanishing points (scaled coordinates) on the plane's horizon fitted through every
    direction found on it, for a camera of focal length f (scaled): the pair's and each other
    found one within _ON_HORIZON of the plane (`normal`, the pair's). Gauss-Newton over the
    plane's tilt and each direction's angle in it, on all their segments' endpoint distances,
    the segments placed on the photo's edges (services.depth.subpixel). None where no third
    direction lies on the plane, or the fit fails."""
    v1, in1, v2, in2 = pair
    K = np.array([[f, 0.0, centre[0]], [0.0, f, centre[1]], [0.0, 0.0, 1.0]])
    K_inv = np.linalg.inv(K)
    families, seeds = [in1, in2 & ~in1], [v1, v2]
    taken = in1 | in2
    for v, inliers in points:
        d = K_inv @ v
        own = inliers & ~taken
        if abs(float(d @ normal)) <= np.sin(_ON_HORIZON) * float(np.linalg.norm(d)) and own.sum() >= _MIN_FAMILY:
            families.append(own)
            seeds.append(v)
            taken |= own
    if len(families) < 3:
        # The pair alone: its points stay as found. Refitted on edge-placed segments, a rolled
        # tiles floor's pair (a clipping sun's edges among them) lost 0.6-1.9 dB (2026-12-07).
        return None
    placed = segments.copy()
    placed[taken] = refine_segments(photo, segments[taken])
    p1, _, _, length, mid = segment_geometry(placed, scale)
    weight = np.sqrt(length)
    a = np.cross(normal, [1.0, 0.0, 0.0] if abs(normal[0]) < 0.9 else [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    frame = np.column_stack([a, np.cross(normal, a), normal])
    angles = []
    for seed, family in zip(seeds, families, strict=True):
        # Each family's own direction, as its placed segments fix it, laid into the pair's plane.
        v = _refine_ml(seed, p1[family], mid[family], length[family])
        d = K_inv @ v
        angles.append(float(np.arctan2(d @ frame[:, 1], d @ frame[:, 0])))
    params = np.concatenate([np.zeros(2), angles])

    def residuals(x: np.ndarray) -> np.ndarray:
        R = _rotate(frame, x[0] * frame[:, 0] + x[1] * frame[:, 1])
        return np.concatenate(
            [
                endpoint_residuals(
                    K @ (np.cos(t) * R[:, 0] + np.sin(t) * R[:, 1]), p1[family], mid[family], weight[family]
                )
                for t, family in zip(x[2:], families, strict=True)
            ]
        )

    for _ in range(10):
        r = residuals(params)
        eps = 1e-7
        J = np.column_stack([(residuals(params + eps * e) - r) / eps for e in np.eye(len(params))])
        step, *_ = np.linalg.lstsq(J, -r, rcond=None)
        params = params + step
        if np.linalg.norm(step) < 1e-10:
            break
    if not np.all(np.isfinite(params)):
        return None
    R = _rotate(frame, params[0] * frame[:, 0] + params[1] * frame[:, 1])
    first, second = (K @ (np.cos(t) * R[:, 0] + np.sin(t) * R[:, 1]) for t in params[2:4])
    return first, second


def _rotate(frame: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The frame turned by the rotation vector w (Rodrigues)."""
    angle = float(np.linalg.norm(w))
    if angle == 0.0:
        return frame
    k = w / angle
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    R = np.eye(3) + np.sin(angle) * cross + (1.0 - np.cos(angle)) * cross @ cross
    return np.asarray(R @ frame)


def _plane(
    v1: np.ndarray,
    v2: np.ndarray,
    centre: np.ndarray,
    scale: float,
    width: int,
    height: int,
    default_focal: float,
    given_focal: float | None,
    centroid: tuple[float, float],
) -> LinePlane | None:
    """The plane through two vanishing points (in scaled coordinates), or None if they cannot span
    one; centroid is the surface's mask's, in pixels."""
    # A vanishing point this many photo sizes away is as good as at infinity: lines that are nearly
    # parallel in the photo say nothing reliable about the focal length.
    finite = [abs(v[2]) * _FAR > np.linalg.norm(v[:2] - centre * v[2]) for v in (v1, v2)]
    focal, from_lines = given_focal or default_focal, False
    if given_focal is None and all(finite):
        a, b = v1[:2] / v1[2] - centre, v2[:2] / v2[2] - centre
        f2 = -float(a @ b) * scale * scale
        diagonal = float(np.hypot(width, height))
        if f2 > 0 and 0.3 * diagonal <= np.sqrt(f2) <= 5 * diagonal:
            focal, from_lines = float(np.sqrt(f2)), True
    f = focal / scale

    def direction(v: np.ndarray) -> np.ndarray:
        d = np.array([v[0] - centre[0] * v[2], v[1] - centre[1] * v[2], f * v[2]])
        return d / np.linalg.norm(d)

    d1, d2 = direction(v1), direction(v2)
    normal = np.cross(d1, d2)
    if np.linalg.norm(normal) < np.sin(np.radians(10)):
        return None  # nearly the same direction
    normal /= np.linalg.norm(normal)
    ray = np.array([(centroid[0] - width / 2) / focal, (centroid[1] - height / 2) / focal, 1.0])
    if abs(normal @ ray) < 0.05 * np.linalg.norm(ray):
        return None  # seen edge-on: the surface cannot be on it
    if normal @ ray < 0:
        normal = -normal
    return LinePlane(normal, texture_axis(d1, d2, normal, ray), focal, from_lines, 0.0, 0)


def texture_axis(d1: np.ndarray, d2: np.ndarray, normal: np.ndarray, ray: np.ndarray) -> np.ndarray:
    """The texture's u axis: whichever of the plane's two line directions (camera coordinates) runs
    closer to the photo's horizontal where the surface is seen (at the mask's centroid, `ray`, of
    z = 1), pointing to the photo's right there. Judged in the photo, not by the directions' camera
    x: a wall seen at a grazing angle runs nearly along the optical axis, so with the camera rolled
    a few degrees its verticals had the larger x and the material was laid on its side, and a wall
    on the right of a corridor running away from the camera got u pointing left in the photo (its
    x positive): the material upside down."""

    def shown(d: np.ndarray) -> np.ndarray:  # where the direction runs in the photo at the centroid
        return np.array([d[0] - ray[0] * d[2], d[1] - ray[1] * d[2]])

    def flatness(d: np.ndarray) -> float:
        s = shown(d)
        return abs(float(s[0])) / max(float(np.linalg.norm(s)), 1e-12)

    axis = d1 if flatness(d1) >= flatness(d2) else d2
    axis = axis - (axis @ normal) * normal
    axis = axis / np.linalg.norm(axis)
    if shown(axis)[0] < 0:
        axis = -axis
    return np.asarray(axis)
