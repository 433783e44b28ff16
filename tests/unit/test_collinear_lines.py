"""A line direction's fragments joined into the lines they lie on (services.depth.collinear)."""

import math

import numpy as np

from services.depth.collinear import join_collinear

# A vanishing point far to the right of the photo (a grazing wall's courses), homogeneous pixels.
FAR_RIGHT = np.array([2400.0, 300.0, 1.0])


def pieces_of(start: np.ndarray, v: np.ndarray, count: int, length: float, seed: int, noise: float = 0.1) -> np.ndarray:
    """`count` pieces, each `length` px, of the line from `start` towards v, 40 px apart, with
    their ends moved across the line by `noise` px (a detector's scatter), each running towards v."""
    rng = np.random.default_rng(seed)
    direction = (v[:2] / v[2] - start) / np.linalg.norm(v[:2] / v[2] - start)
    normal = np.array([-direction[1], direction[0]])
    pieces = []
    for k in range(count):
        a = start + k * 40.0 * direction
        b = a + length * direction
        pieces.append(np.concatenate([a + rng.normal(0, noise) * normal, b + rng.normal(0, noise) * normal]))
    return np.array(pieces)


def angle_off(segment: np.ndarray, v: np.ndarray) -> float:
    """Degrees between the segment and the line from its midpoint to v."""
    mid = (segment[:2] + segment[2:]) / 2
    d, to_v = segment[2:] - segment[:2], v[:2] / v[2] - mid
    return math.degrees(abs(math.atan2(d[0] * to_v[1] - d[1] * to_v[0], d @ to_v)))


def test_the_pieces_of_one_joint_become_one_line_that_points_at_its_vanishing_point() -> None:
    """Twelve 15 px pieces of a joint, each a tenth of a pixel off at its ends (0.5° apiece at
    worst): joined, one line 455 px long that points at the vanishing point within 0.05°, its
    weight the pieces' share of its span."""
    pieces = pieces_of(np.array([100.0, 400.0]), FAR_RIGHT, 12, 15.0, seed=1)
    lines, coverage = join_collinear(pieces, FAR_RIGHT)
    assert lines.shape == (1, 4)
    assert np.hypot(*(lines[0, 2:] - lines[0, :2])) > 450
    assert angle_off(lines[0], FAR_RIGHT) < 0.05
    assert max(angle_off(p, FAR_RIGHT) for p in pieces) > 0.2
    assert math.isclose(coverage[0], 12 * 15.0 / np.hypot(*(lines[0, 2:] - lines[0, :2])), rel_tol=0.02)


def test_the_two_sides_of_a_joint_and_the_next_joint_stay_apart() -> None:
    """A dark joint's two edges (1.5 px apart, running opposite ways: their polarities differ) and
    the next course's joint 6 px below are three lines, not one."""
    upper = pieces_of(np.array([100.0, 400.0]), FAR_RIGHT, 6, 20.0, seed=2)
    lower_side = pieces_of(np.array([100.0, 401.5]), FAR_RIGHT, 6, 20.0, seed=3)[:, [2, 3, 0, 1]]
    next_joint = pieces_of(np.array([100.0, 406.0]), FAR_RIGHT, 6, 20.0, seed=4)
    lines, coverage = join_collinear(np.concatenate([upper, lower_side, next_joint]), FAR_RIGHT)
    assert len(lines) == 3
    assert np.all(coverage < 1.0)


def test_pieces_that_stray_from_one_line_are_left_in_pieces() -> None:
    """Pieces along a bent edge (a lens's distortion, a warped board: each 0.45 px from the next,
    the middle one 1.8 px off the line through the ends) would make a line up to a pixel from
    them: they stay as they were, each with its own weight."""
    pieces = pieces_of(np.array([100.0, 400.0]), FAR_RIGHT, 9, 20.0, seed=5, noise=0.0)
    bend = 0.45 * np.array([0, 1, 2, 3, 4, 3, 2, 1, 0])
    pieces[:, [1, 3]] += bend[:, None]
    lines, coverage = join_collinear(pieces, FAR_RIGHT)
    assert len(lines) == 9
    assert np.all(coverage == 1.0)
