"""A line direction's fragments joined into the long lines they lie on.

The segment detector breaks a tile joint or a plank's edge into pieces a few tens of pixels long
(a running bond's vertical joints are each one row high). Each piece says where its vanishing
point lies only by its own angle, a few tenths of a degree from a tenth of a pixel at its ends;
pieces of one joint, fitted as one line, say it by their places along the whole joint, tens of
times more precisely: on a grazing subway-tiled wall (judge40's W1) the plane went from 0.28° to
0.01°.

Pieces are joined where they lie on one line through the vanishing point (within _GAP of each
other, measured across the line), with the same polarity (the two sides of a dark joint are two
edges, a pixel or two apart, both kept); a joined line whose pieces stray from it by more than
_STRAY (a bent edge, two neighbouring joints near the vanishing point, a lens's distortion) is
left in pieces.
"""

from __future__ import annotations

import numpy as np

# Pieces of one line lie this close (pixels, across the line, where the further of the two is):
# the placed segments' ends scatter by about a tenth of a pixel, and neighbouring joints lie
# several pixels apart except near their vanishing point.
_GAP = 0.5
# A joined line is kept only when every piece's ends lie this close to it (pixels).
_STRAY = 0.75


def join_collinear(segments: np.ndarray, vanishing_point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The segments (N, 4: x1, y1, x2, y2 in pixels) of one line direction, whose vanishing point
    (homogeneous, pixels) is given, with the pieces of one line joined: the lines (M, 4, each
    spanning its pieces) and each line's length of pieces over its span (1 for a piece left alone),
    by which a fit may scale its weight (a joined line's ends are placed by its pieces alone)."""
    lines, coverage = [], []
    for group in _groups(segments, vanishing_point):
        joined = _joined(segments[group])
        if joined is None:
            lines.extend(segments[group])
            coverage.extend([1.0] * len(group))
        else:
            lines.append(joined[0])
            coverage.append(joined[1])
    return np.array(lines).reshape(-1, 4), np.array(coverage)


def _groups(segments: np.ndarray, v: np.ndarray) -> list[np.ndarray]:
    """Indices of the segments that lie on one line through v, by polarity, each group in order
    across the lines."""
    mid = (segments[:, :2] + segments[:, 2:]) / 2
    length = np.hypot(*(segments[:, 2:] - segments[:, :2]).T)
    sign = 1.0 if v[2] >= 0 else -1.0
    towards = (v[:2] - mid * v[2]) * sign  # from each midpoint towards v
    # Each segment's line through v, where it crosses the line across the direction at a reference
    # point (the segments' centre), and how far from v each segment lies relative to it: an offset
    # measured at the reference is that ratio times the offset at the segment.
    reference = np.average(mid, axis=0, weights=length)
    at_reference = (v[:2] - reference * v[2]) * sign
    distance = float(np.linalg.norm(at_reference))
    if distance == 0.0:
        return [np.array([k]) for k in range(len(segments))]
    across = np.array([-at_reference[1], at_reference[0]]) / distance
    through = np.cross(np.column_stack([mid, np.ones(len(mid))]), v)
    place = -(through[:, :2] @ reference + through[:, 2]) / (through[:, :2] @ across)
    ratio = np.linalg.norm(towards, axis=1) / distance
    polarity = np.einsum("ij,ij->i", segments[:, 2:] - segments[:, :2], towards) > 0
    groups: list[np.ndarray] = []
    for side in (False, True):
        order = np.flatnonzero(polarity == side)
        order = order[np.argsort(place[order])]
        gaps = np.diff(place[order]) * np.maximum(ratio[order[1:]], ratio[order[:-1]])
        groups.extend(group for group in np.split(order, np.flatnonzero(gaps > _GAP) + 1) if len(group))
    return groups


def _joined(pieces: np.ndarray) -> tuple[np.ndarray, float] | None:
    """One line through the pieces' ends (total least squares, weighted by their lengths), spanning
    them and running the first piece's way, with its pieces' length over its span; None for a
    single piece or when a piece's end strays from the line."""
    if len(pieces) < 2:
        return None
    ends = np.concatenate([pieces[:, :2], pieces[:, 2:]])
    length = np.hypot(*(pieces[:, 2:] - pieces[:, :2]).T)
    weight = np.tile(length, 2)
    centre = np.average(ends, axis=0, weights=weight)
    offset = ends - centre
    _, axes = np.linalg.eigh((offset * weight[:, None]).T @ offset)
    normal, along = axes[:, 0], axes[:, 1]
    if np.abs(offset @ normal).max() > _STRAY:
        return None
    if along @ (pieces[0, 2:] - pieces[0, :2]) < 0:
        along = -along
    t = offset @ along
    span = float(t.max() - t.min())
    return np.concatenate([centre + t.min() * along, centre + t.max() * along]), float(length.sum()) / span
