"""A quad's focal length from the photo's lines at a right angle to it, where its rectangle leaves
the focal length open.

A rectangle seen square-on (one pair of its edges parallel in the photo: a floor seen straight
ahead, a wall or a facade with the camera turned about one axis only) fixes its plane for every
focal length f, but not f. Its plane's normal (a floor's verticals, a wall's or a facade's lines
running away from it: a cupboard's sides, a side wall's foot) then vanishes at
v_n(f) = c + f^2 u, on a ray from the principal point c whose direction u the rectangle gives
(f^2 = -(v1 - c).(v_n - c) with its finite vanishing point v1). Where several of the photo's long
segments meet at one point of that ray, that point gives f.

Only clear evidence is taken: segments along the rectangle's own directions leave, collinear
pieces count as one line, three distinct lines at least must meet there, better supported than
any other point of the ray by _MARGIN, and a click's error in the corners must not move the
answer by more than _CORNER_SPREAD. Elsewhere (no such lines: a bare floor seen from above, a
facade with nothing standing out of it) the caller keeps its assumed value.
"""

from __future__ import annotations

import numpy as np

from renderkit import homography
from renderkit.imaging import polygon_mask
from renderkit.planes import clicks_moved
from services.depth.vanishing import (
    _ENDPOINT_TOLERANCE,
    _MAX_INLIER_SIN,
    _MIN_LENGTH,
    _endpoint_residuals,
    _segment_geometry,
    _support,
    _tolerance,
    photo_segments,
)

# The focal lengths searched, of the photo's longer side: a 35 mm equivalent of 11 to 220 mm.
_FOCAL_RANGE = (0.3, 6.0)
_FOCAL_STEPS = 1200  # 0.25 % apart: finer than the support's own tolerance for all but the longest lines
_PEAKS = 30  # the best-supported points of the ray whose distinct lines are counted
# Three lines through one point of the ray: one alone fixes f anywhere on it, a second is the
# first check; strays meet by chance in pairs far more often than in threes.
_MIN_LINES = 3
# The best point's evidence over any other point's more than _APART away in f: a long stray line
# (a shadow's edge, a seam of the surface's pattern) otherwise wins over a cupboard's few edges.
_MARGIN = 1.4
_APART = 1.1
# How far the answer may move when a corner moves by a click's error (renderkit.planes.clicks_moved,
# as for the rectangle's own focal length): a grazing view's horizon, a few pixels from the
# principal point, otherwise turns a pixel of the clicks into several per cent of f.
_CORNER_SPREAD = 0.04


def normal_ray(H: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """u such that the rectangle's normal vanishes at centre + f^2 u for focal length f (all in
    the same units as H's image coordinates): K^-1 h1 x K^-1 h2 written out for K = [f, c]."""
    a, b = H[:, 0], H[:, 1]
    ax, ay = a[0] - centre[0] * a[2], a[1] - centre[1] * a[2]
    bx, by = b[0] - centre[0] * b[2], b[1] - centre[1] * b[2]
    cross = ax * by - ay * bx
    if abs(cross) < 1e-15:
        raise homography.GeometryError("the quad's edges meet at one vanishing point")
    return np.array([ay * b[2] - a[2] * by, a[2] * bx - ax * b[2]]) / cross


def focal_from_normal_lines(photo_bgr: np.ndarray, quad: np.ndarray) -> float | None:
    """The focal length (pixels) at which the photo's lines at a right angle to the quad's
    rectangle meet, or None where they do not settle it."""
    height, width = photo_bgr.shape[:2]
    segments, _ = photo_segments(photo_bgr, polygon_mask(quad, width, height))
    scale = float(max(width, height))
    to_scaled = np.diag([1 / scale, 1 / scale, 1.0])
    H = to_scaled @ homography.quad_homography(quad)
    centre = np.array([width / 2, height / 2]) / scale
    p1, _, direction, length, mid = _segment_geometry(segments, scale)
    loose = _tolerance(length)
    # The rectangle's own directions (its joints, its edges, what lies along it) say nothing of f.
    own = (_support(H[:, 0], mid, direction) < loose) | (_support(H[:, 1], mid, direction) < loose)
    usable = ~own & (length >= _MIN_LENGTH)
    if usable.sum() < _MIN_LINES:
        return None
    p1, direction, length, mid = p1[usable], direction[usable], length[usable], mid[usable]
    # Endpoints within _ENDPOINT_TOLERANCE, with no floor on the angle: a long line is precise.
    tight = np.minimum(2 * _ENDPOINT_TOLERANCE / length, _MAX_INLIER_SIN)
    try:
        u = normal_ray(H, centre)
    except homography.GeometryError:
        return None
    found = _best_point(u, centre, p1, direction, length, mid, tight)
    if found is None:
        return None
    f, supporters = found
    refined = _refined(f, u, centre, p1[supporters], mid[supporters], length[supporters])
    for moved in clicks_moved(quad, width, height):
        try:
            other_u = normal_ray(to_scaled @ homography.quad_homography(moved), centre)
        except homography.GeometryError:
            return None
        other = _refined(refined, other_u, centre, p1[supporters], mid[supporters], length[supporters])
        if abs(other / refined - 1.0) > _CORNER_SPREAD:
            return None
    return refined * scale


def _best_point(
    u: np.ndarray,
    centre: np.ndarray,
    p1: np.ndarray,
    direction: np.ndarray,
    length: np.ndarray,
    mid: np.ndarray,
    tolerance: np.ndarray,
) -> tuple[float, np.ndarray] | None:
    """The focal length (scaled) whose normal's vanishing point the most distinct lines clearly
    meet at, with its supporting segments; None without clear evidence."""
    focals = np.geomspace(*_FOCAL_RANGE, _FOCAL_STEPS)
    points = centre[None] + (focals**2)[:, None] * u[None]
    homogeneous = np.column_stack([points, np.ones(len(focals))])
    # A segment never vanishes between its own ends: a point on or beside it is no evidence.
    beyond = np.linalg.norm(points[:, None] - mid[None], axis=2) > length[None]
    supported = (_support(homogeneous, mid, direction) < tolerance) & beyond
    score = supported @ length
    peaks = [k for k in range(1, len(focals) - 1) if score[k] > 0 and score[k - 1] <= score[k] > score[k + 1]]
    peaks = sorted(peaks, key=lambda k: -score[k])[:_PEAKS]
    evidence = [_distinct_lines(points[k], mid, length, tolerance, supported[k]) for k in peaks]
    if not evidence:
        return None
    best = int(np.argmax([weight for _, weight in evidence]))
    lines, weight = evidence[best]
    f = float(focals[peaks[best]])
    rivals = [w for k, (_, w) in zip(peaks, evidence, strict=True) if abs(np.log(focals[k] / f)) > np.log(_APART)]
    if lines < _MIN_LINES or (rivals and weight < _MARGIN * max(rivals)):
        return None
    return f, supported[peaks[best]]


def _distinct_lines(
    point: np.ndarray, mid: np.ndarray, length: np.ndarray, tolerance: np.ndarray, supported: np.ndarray
) -> tuple[int, float]:
    """How many distinct lines through `point` the supporting segments lie on (collinear pieces of
    one edge are one line), and their evidence: the sum of each line's square-rooted length, so
    that several edges outweigh one long one."""
    angle = np.arctan2(mid[supported, 1] - point[1], mid[supported, 0] - point[0]) % np.pi
    if angle.size == 0:
        return 0, 0.0
    order = np.argsort(angle)
    angle, slack, pieces = angle[order], tolerance[supported][order], length[supported][order]
    starts = np.concatenate([[True], np.diff(angle) > np.maximum(slack[1:], slack[:-1])])
    line = np.cumsum(starts) - 1
    # The angles wrap at pi: a line split across the wrap is one line.
    if line[-1] > 0 and angle[0] + np.pi - angle[-1] <= max(slack[0], slack[-1]):
        line[line == line[-1]] = 0
    per_line = np.bincount(line, weights=pieces)
    per_line = per_line[per_line > 0]
    return len(per_line), float(np.sqrt(per_line).sum())


def _refined(f: float, u: np.ndarray, centre: np.ndarray, p1: np.ndarray, mid: np.ndarray, length: np.ndarray) -> float:
    """The focal length (scaled) near f at which the segments' endpoints lie closest to lines
    through the normal's vanishing point (their maximum-likelihood error): Gauss-Newton on log f,
    kept within _APART of f."""
    weight = np.sqrt(length)

    def residuals(log_f: float) -> np.ndarray:
        return _endpoint_residuals(np.array([*(centre + np.exp(2 * log_f) * u), 1.0]), p1, mid, weight)

    start = log_f = float(np.log(f))
    window = float(np.log(_APART))
    for _ in range(8):
        r = residuals(log_f)
        slope = (residuals(log_f + 1e-6) - r) / 1e-6
        if not slope @ slope > 0:
            break
        step = -float(slope @ r) / float(slope @ slope)
        log_f = float(np.clip(log_f + step, start - window, start + window))
        if abs(step) < 1e-9:
            break
    return float(np.exp(log_f))
