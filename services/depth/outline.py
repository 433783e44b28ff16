"""The surface's own edges, read from its mask's outline, as the texture's axis.

The lines on a surface give its plane, and for tiles, planks, bricks and courses their directions
are also the surface's edges: the texture is laid along them. A diagonal motif (a carpet's
diamonds), a herringbone or tiles laid on the diagonal run 45° to the edges, and the material came
out turned 45° from what a user means (docs/quality.md, "The surface's edges, not its pattern's
diagonal"). Where the mask's outline shows the surface's edges (its meeting with the walls, a
facade's frame and window openings), their direction on the plane is taken instead; where it shows
none (a surface filling the frame), the pattern's direction stays: tiles and planks, which follow
the edges, are far more common than diagonal motifs.
"""

from __future__ import annotations

import cv2
import numpy as np

from renderkit import homography
from services.depth.vanishing import texture_axis

# The outline is read on a copy at most this large (as the photo's lines are: vanishing._WORK_SIDE).
_WORK_SIDE = 2048
# Straight runs of the outline shorter than this (of the longer side) are the mask's raggedness or
# an object's corner, not an edge.
_MIN_RUN = 0.03
# How far (pixels of the reduced copy) a run may lie from the outline's convex hull and still be
# one of its sides: the mask's anti-aliasing and a pixel's staircase.
_HULL_SLACK = 2.0
# The edges' direction needs this much outline (of the longer side) agreeing with it: a third of a
# room's back wall seen past the furniture, a facade's window openings.
_MIN_EDGES = 0.15
# The direction's runs must hold this share of the outline's runs: a rectangle's sides are at right
# angles on the right plane, and a beige floor meeting walls of its colour, its plane 82° off, had
# its back and side edges 23° apart.
_CONSISTENT = 0.6
# Runs whose directions on the plane agree to this (folded to a quarter turn: a surface's edges
# meet at right angles) are one direction.
_AGREE_DEG = 2.0
# The edges turn the texture only where they disagree with the pattern's lines by more than this:
# where they agree (tiles, planks) the lines, placed to a fraction of a pixel, are the finer
# measurement; a diagonal motif or a herringbone is 45° off.
_TURN_DEG = 5.0
# Edges this close to the pattern's diagonal are taken at exactly 45° to it: a diamond motif, a
# herringbone and tiles laid on the diagonal are made at 45°, and the pattern's lines, placed to a
# fraction of a pixel, give that finer than the mask's outline does (its runs scatter by a degree).
_DIAGONAL_DEG = 3.0
# A run's points must lie this far in front of the horizon (of the ray's length) to be placed on
# the plane: near the horizon a pixel moves them metres.
_IN_FRONT = 0.02


def outline_runs(mask: np.ndarray) -> np.ndarray:
    """The straight runs of the mask's outline (N, 4: x1, y1, x2, y2 in photo pixels), holes
    included, none along the photo's border: there the frame cuts the surface, it has no edge."""
    height, width = mask.shape
    scale = min(1.0, _WORK_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # The mask as given: a client's anti-aliased outline places an edge to a fraction of a pixel,
    # where a thresholded one is a staircase that turned the carpet's back wall by 0.3°.
    small = cv2.resize(mask, size, interpolation=cv2.INTER_AREA)
    found = cv2.createLineSegmentDetector().detect(small)[0]
    if found is None:
        return np.zeros((0, 4))
    runs = found.reshape(-1, 4).astype(np.float64)
    length = np.hypot(runs[:, 2] - runs[:, 0], runs[:, 3] - runs[:, 1])
    runs = runs[(length >= _MIN_RUN * max(size)) & ~_on_border(runs, size) & _on_hull(runs, small)]
    # Pixel centres sit on integers at both sizes (as vanishing.photo_segments maps its lines back).
    return (runs + 0.5) / scale - 0.5


def _on_hull(runs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Which runs lie along the outline's convex hull: the surface's outer edges. The edges of what
    stands in front of it (a sofa's foot, a rug turned askew) lie inside the hull, as holes or
    bays, and need not follow the surface's edges."""
    outlines, _ = cv2.findContours((mask > 127).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not outlines:
        return np.zeros(len(runs), bool)
    hull = cv2.convexHull(np.concatenate(outlines)).astype(np.float32)
    t = np.linspace(0.0, 1.0, 5)[:, None]
    return np.array(
        [
            all(abs(cv2.pointPolygonTest(hull, (float(x), float(y)), True)) <= _HULL_SLACK for x, y in a + t * (b - a))
            for a, b in zip(runs[:, :2], runs[:, 2:], strict=True)
        ],
        bool,
    ).reshape(len(runs))


def _on_border(runs: np.ndarray, size: tuple[int, int], margin: float = 2.0) -> np.ndarray:
    """Which runs lie along the photo's border (both ends within margin of the same side)."""
    x_max, y_max = size[0] - 1 - margin, size[1] - 1 - margin
    return np.asarray(
        ((runs[:, 0] < margin) & (runs[:, 2] < margin))
        | ((runs[:, 1] < margin) & (runs[:, 3] < margin))
        | ((runs[:, 0] > x_max) & (runs[:, 2] > x_max))
        | ((runs[:, 1] > y_max) & (runs[:, 3] > y_max))
    )


def edge_turn(runs: np.ndarray, normal: np.ndarray, axis: np.ndarray, focal: float, width: int, height: int) -> float:
    """How far (radians, within ±45°) the surface's edges, seen as the outline's runs, lie from
    `axis` on the plane `normal` (camera coordinates, the plane n.X = 1 in front); 0 where fewer
    than _MIN_EDGES of the photo's longer side, or under _CONSISTENT of the runs, agree on one
    direction."""
    if not len(runs):
        return 0.0
    across = np.cross(normal, axis)
    rays, in_front = _placed(runs, normal, focal, width, height)
    if not in_front.any():
        return 0.0
    ends = [r[in_front] / (r[in_front] @ normal)[:, None] for r in rays]
    along = ends[1] - ends[0]
    angle = np.arctan2(along @ across, along @ axis)
    length = np.hypot(runs[in_front, 2] - runs[in_front, 0], runs[in_front, 3] - runs[in_front, 1])
    # Folded to a quarter turn (an edge and the one at a right angle to it are one direction), as a
    # point on the circle, so that -44° and +44° are neighbours.
    folded = np.exp(4j * angle)
    agree = np.abs(np.angle(folded[:, None] / folded[None, :])) < 4 * np.radians(_AGREE_DEG)
    support = agree @ length
    best = int(np.argmax(support))
    if support[best] < _MIN_EDGES * max(width, height) or support[best] < _CONSISTENT * length.sum():
        return 0.0
    members = agree[best]
    return float(np.angle((length[members] * folded[members]).sum()) / 4)


def _placed(
    runs: np.ndarray, normal: np.ndarray, focal: float, width: int, height: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """The rays through the runs' two ends (camera coordinates) and which runs lie in front of the
    plane `normal`'s horizon (both ends, by _IN_FRONT)."""
    K_inv = np.linalg.inv(homography.camera_matrix(focal, width, height))
    rays = [np.column_stack([runs[:, 2 * i : 2 * i + 2], np.ones(len(runs))]) @ K_inv.T for i in (0, 1)]
    depth = [r @ normal / np.linalg.norm(r, axis=1) for r in rays]
    return rays, (depth[0] > _IN_FRONT) & (depth[1] > _IN_FRONT)


def outline_contradicts(runs: np.ndarray, normal: np.ndarray, focal: float, width: int, height: int) -> bool:
    """Whether the mask's outline (its runs, outline_runs) says the plane `normal` (camera
    coordinates) is not the surface's: runs of it as long together as an edge the outline's own
    direction needs (_MIN_EDGES of the longer side) lie at or past the plane's horizon (within
    _IN_FRONT), the surface's edge tens of its distances away. A marble table top's veins
    gave planes 22-26° off whose horizon ran along the top's far edge (on the true plane those
    runs lay at 0.38-0.58 of a ray's length in front of it, on the veins' at 0.009-0.014). A stray
    run alone does not: a blob of the mask apart from the surface, or a sliver up a door frame,
    put one run just under the true plane's horizon and refused it (a review's drawings)."""
    if not len(runs):
        return False
    length = np.hypot(runs[:, 2] - runs[:, 0], runs[:, 3] - runs[:, 1])
    needed = _MIN_EDGES * max(width, height)
    # Either way round: the outline lies on the surface's side of the horizon, whichever the
    # normal's sign says it is.
    beyond = (~_placed(runs, side, focal, width, height)[1] for side in (normal, -normal))
    return all(float(length[past].sum()) >= needed for past in beyond)


def surface_axis(
    mask: np.ndarray, normal: np.ndarray, axis: np.ndarray, focal: float, runs: np.ndarray | None = None
) -> np.ndarray:
    """The texture's u axis (camera coordinates): the pattern's `axis`, unless the mask's outline
    shows the surface's edges running more than _TURN_DEG from it; then whichever edge runs nearer
    the photo's horizontal (vanishing.texture_axis, the convention the pattern's axis follows).
    `runs`: the outline's (outline_runs), where the caller has read them already."""
    height, width = mask.shape
    turn = edge_turn(outline_runs(mask) if runs is None else runs, normal, axis, focal, width, height)
    if abs(turn) <= np.radians(_TURN_DEG):
        return axis
    if abs(abs(turn) - np.pi / 4) < np.radians(_DIAGONAL_DEG):
        turn = np.copysign(np.pi / 4, turn)
    first = np.cos(turn) * axis + np.sin(turn) * np.cross(normal, axis)
    # The mask's pixels as a view of its boolean (as vanishing._Lines.find reads them): np.where
    # made an int64 copy, 8 bytes a pixel (a 40 MP mask: +358 MB at the peak, ~0.7 s).
    moments = cv2.moments((mask > 127).view(np.uint8), binaryImage=True)
    centroid = np.array([moments["m10"], moments["m01"]]) / moments["m00"]
    ray = np.array([*((centroid - [width / 2, height / 2]) / focal), 1.0])
    return texture_axis(first, np.cross(normal, first), normal, ray)
