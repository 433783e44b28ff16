"""A surface's plane from the room around it, where the surface's own lines give none or one the
room contradicts.

A plain floor, a carpet, concrete or a painted wall has no lines of its own, but the room it is in
has verticals: its corners, door and window frames, furniture's legs and sides. With the camera's
focal length known they fix the room's vertical direction: their vanishing point, back-projected.
A floor's or a ceiling's normal is that direction; a wall holds it, and its normal is at a right
angle to it and to a horizontal direction of the wall (its junctions with the floor and the
ceiling, a skirting, a frame's top: lines along the mask's outline or on the wall itself). The
mask's own outline counts among the lines: a floor meeting the walls draws their junctions.

Taken only on clear evidence: several distinct verticals spread across the photo meeting at one
point, a vertical a hand-held camera's roll allows, and the surface on its side of the horizon
(a floor below it, a ceiling above); else the lines' refusal stands. Lines lying well inside a
floor's or a ceiling's mask lie on it, are level, and never count as its verticals.

Where the lines do give a plane, the same clear evidence checks it (room_correction): stray lines on
a plain surface made planes 13-90° off that the room's verticals, asked on the same masks, put within
0.1° of the truth.
"""

from __future__ import annotations

import cv2
import numpy as np

from services.depth.outline import outline_runs
from services.depth.vanishing import (
    LEVEL_ROLL,
    LEVEL_SURFACES,
    MIN_LENGTH,
    PAST_HORIZON,
    UPRIGHT_SURFACES,
    LinePlane,
    PhotoSegments,
    endpoint_residuals,
    mask_samples,
    past_horizon,
    perpendicular_points,
    photo_segments,
    refit_rotation,
    segment_geometry,
    texture_axis,
    vanishing_points,
)

# The response's `source` for a plane from the room's verticals.
ROOM_SOURCE = "room_verticals"

# The verticals need this many distinct lines (pieces of one line count once: a door frame's
# edge broken by a handle is one line, and any two lines meet somewhere).
_MIN_VERTICALS = 3
# Segments whose lines through the vanishing point pass this close to each other's midpoints (of
# the photo's longer side) are one line.
_SAME_LINE = 0.01
# The distinct verticals must lie this far apart (of the longer side): their convergence, which
# gives the camera's pitch, is measured across their spread (an angle error d of each line moves
# the pitch by about focal x d / spread: 0.1° lines 0.4° apart at a fifth of the photo).
_MIN_SPREAD = 0.1
# A horizontal direction needs this many distinct lines to take part in the room's frame (for a
# wall, to be the wall's).
_MIN_ACROSS = 3
# A horizontal direction joins the frame only this close to a right angle with the directions in
# it: the vertical from three short lines may be a few degrees off (a wall's corner and a frame on
# it: 3.9°), and a family merged from two directions (a floor's near edge with the room's
# junctions, 11.8° off the right angle) pulled a plain floor's plane 12.6° away.
_PERPENDICULAR = np.radians(5.0)
# A wall's horizontal direction: most of its lines' length on or around the wall (its junctions,
# a frame on it), not across the room.
_ON_WALL = 0.5
# Planes from candidate verticals that disagree by more than this are no clear evidence.
_AGREE = np.radians(3.0)
# A lines' plane this far from the room's clear vertical (a floor's normal from it, a wall's from a
# right angle to it) is not the surface's: the room's plane replaces it. The room's candidates may
# differ by _AGREE and right planes from lines lie up to 1.8° from the truth (the judge's 70 mm
# wall: 2.2° from the room's vertical); wrong ones on plain surfaces were 12-90° off (one 3.6°,
# left as it is).
_DISAGREE = np.radians(5.0)
# A floor's or a ceiling's vertical is not met by the lines lying this far (of the longer side)
# inside its mask: those lie on it and are level (a wood floor's joints, converging below the photo,
# made a "vertical" 38° off). Its distinct verticals are counted without them (a table's legs a
# mask took in keep their parts along its outline).
_INSIDE = 0.02
# A plane from the room's lines: half the confidence of one whose directions lie on the surface
# (as vanishing._across_from_elsewhere's), scaled by the lines' support.
_ROOM_CONFIDENCE = 0.5


def room_plane(
    photo_bgr: np.ndarray, mask: np.ndarray, focal: float, surface: str, segments: PhotoSegments | None = None
) -> LinePlane | None:
    """The plane of the masked surface named `surface` from the room's verticals (and its
    horizontal lines), for a camera of focal length `focal` (pixels); None without clear evidence
    or where the name does not say how the surface stands. `segments`: the photo's
    (vanishing.photo_segments), where the caller has found them already."""
    evidence = _room_evidence(photo_bgr, mask, focal, surface, segments)
    return None if evidence is None else evidence[1]


def room_correction(
    found: LinePlane,
    photo_bgr: np.ndarray,
    mask: np.ndarray,
    focal: float,
    surface: str,
    segments: PhotoSegments | None = None,
) -> LinePlane | None:
    """The room's plane where the room's verticals (clear evidence, as room_plane takes it)
    contradict the lines' plane `found` of the surface named: a floor's or a ceiling's normal
    further than _DISAGREE from the room's vertical, a wall's or a facade's further than that from
    a right angle to it. None where they agree or the room gives no clear evidence."""
    evidence = _room_evidence(photo_bgr, mask, focal, surface, segments)
    if evidence is None:
        return None
    vertical, plane = evidence
    off = _angle(found.normal / np.linalg.norm(found.normal), vertical)
    if surface in UPRIGHT_SURFACES:
        off = np.pi / 2 - off
    return plane if off > _DISAGREE else None


def _room_evidence(
    photo_bgr: np.ndarray, mask: np.ndarray, focal: float, surface: str, segments: PhotoSegments | None
) -> tuple[np.ndarray, LinePlane] | None:
    """The room's vertical (camera coordinates) and the surface's plane from it, where every
    candidate vertical gives one and they agree; None without clear evidence."""
    if focal <= 0 or (surface not in LEVEL_SURFACES and surface not in UPRIGHT_SURFACES):
        return None
    room = _room(photo_bgr, mask, focal, surface in LEVEL_SURFACES, segments)
    if room is None:
        return None
    height, width = mask.shape
    spread = mask_samples(mask)
    if spread is None:
        return None
    (cx, cy), samples = spread
    ray = np.array([(cx - width / 2) / focal, (cy - height / 2) / focal, 1.0])
    found = []
    for vertical in room.verticals():
        frame = room.frame(vertical)
        if surface in LEVEL_SURFACES:
            plane = frame.horizontal_plane(ray, LEVEL_SURFACES[surface], focal)
        else:
            plane = frame.upright_plane(ray, focal)
        if plane is not None and past_horizon(plane, samples, width, height) <= PAST_HORIZON:
            found.append((frame.rotation[:, 0], plane))
    if not found:
        return None
    up, plane = found[0]
    if any(_angle(other_up, up) > _AGREE or _angle(other.normal, plane.normal) > _AGREE for other_up, other in found):
        return None  # verticals that disagree: no clear evidence
    return up, plane


def _room(
    photo_bgr: np.ndarray, mask: np.ndarray, focal: float, level_surface: bool, known: PhotoSegments | None
) -> _Room | None:
    """The photo's long segments and the mask's outline runs as a _Room (None with too few); on a
    level surface (a floor, a ceiling) the segments lying on it are marked level."""
    height, width = mask.shape
    scale = float(max(width, height))
    everywhere, near = photo_segments(photo_bgr, mask) if known is None else known
    length = np.hypot(everywhere[:, 2] - everywhere[:, 0], everywhere[:, 3] - everywhere[:, 1])
    is_long = length >= MIN_LENGTH * scale
    long = everywhere[is_long]
    runs = outline_runs(mask)
    segments = np.concatenate([long, runs])
    if len(segments) < _MIN_VERTICALS:
        return None
    on_surface = np.concatenate([near[is_long], np.ones(len(runs), bool)])
    level = np.concatenate([_inside(long, mask, scale) & level_surface, np.zeros(len(runs), bool)])
    return _Room(segments, on_surface, level, scale, np.array([width / 2, height / 2]) / scale, focal / scale)


def _inside(segments: np.ndarray, mask: np.ndarray, scale: float) -> np.ndarray:
    """Which segments (N, 4, photo pixels) lie well inside the mask (their ends and middle over
    _INSIDE of the longer side from its edge): on the surface, not along its outline."""
    margin = max(1, round(_INSIDE * scale))
    inner = cv2.erode((mask > 127).astype(np.uint8), np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    height, width = mask.shape
    points = [segments[:, :2], segments[:, 2:], (segments[:, :2] + segments[:, 2:]) / 2]
    inside = np.ones(len(segments), bool)
    for p in points:
        x = np.clip(np.round(p[:, 0]).astype(int), 0, width - 1)
        y = np.clip(np.round(p[:, 1]).astype(int), 0, height - 1)
        inside &= inner[y, x] > 0
    return inside


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    """The angle (radians) between two lines' unit directions."""
    return float(np.arccos(np.clip(abs(float(a @ b)), 0.0, 1.0)))


Family = tuple[np.ndarray, np.ndarray]  # a vanishing point (scaled coordinates) and its supporters


class _Room:
    """The room's long segments and the mask's outline runs, in coordinates divided by the photo's
    longer side, for a camera of focal length f (same units) centred on `centre`; `on_surface`
    marks those on or around the surface, `level` those lying on a floor or a ceiling."""

    def __init__(
        self,
        segments: np.ndarray,
        on_surface: np.ndarray,
        level: np.ndarray,
        scale: float,
        centre: np.ndarray,
        f: float,
    ):
        self.segments, self.on_surface, self.level = segments, on_surface, level
        self.scale, self.centre, self.f = scale, centre, f
        self.p1, _, _, self.length, self.mid = segment_geometry(segments, scale)
        self.K = np.array([[f, 0.0, centre[0]], [0.0, f, centre[1]], [0.0, 0.0, 1.0]])
        self.points = self._points()

    def _points(self) -> list[Family]:
        """The lines' vanishing points and those at a right angle to each (a table's few legs
        outnumbered by its edges and the room's junctions)."""
        found = vanishing_points(self.segments, self.scale)
        for v, members in list(found):
            found += perpendicular_points(v, ~members, self.segments, self.scale, self.centre, self.f)
        return found

    def direction(self, v: np.ndarray) -> np.ndarray:
        """The camera direction of a vanishing point, pointing down the photo (camera y >= 0)."""
        d = np.linalg.solve(self.K, v)
        d /= np.linalg.norm(d)
        return d if d[1] >= 0 else -d

    def distinct(self, family: Family) -> np.ndarray:
        """The midpoints (scaled) of the longest segment of each distinct line through the
        vanishing point that its supporters lie on."""
        v, members = family
        index = np.flatnonzero(members)
        index = index[np.argsort(-self.length[index])]
        lines = np.cross(v, np.column_stack([self.mid[index], np.ones(len(index))]))
        lines /= np.maximum(np.linalg.norm(lines[:, :2], axis=1, keepdims=True), 1e-12)
        heads: list[int] = []
        for k in range(len(index)):
            if not any(abs(float(lines[h] @ [*self.mid[index[k]], 1.0])) < _SAME_LINE for h in heads):
                heads.append(k)
        return np.asarray(self.mid[index[heads]])

    def verticals(self) -> list[Family]:
        """The vanishing points that may be the room's vertical, strongest first: those whose
        direction a level camera's roll allows (within vanishing.LEVEL_ROLL of the photo's up)
        met by _MIN_VERTICALS distinct lines spread _MIN_SPREAD apart, level lines left out."""
        found = []
        for family in self.points:
            d = self.direction(family[0])
            if np.arctan2(abs(d[0]), d[1]) > LEVEL_ROLL:
                continue
            heads = self.distinct((family[0], family[1] & ~self.level))
            spread = np.linalg.norm(heads[:, None] - heads[None], axis=-1).max(initial=0.0)
            if len(heads) < _MIN_VERTICALS or spread < _MIN_SPREAD:
                continue
            found.append((float(self.length[family[1]].sum()), family))
        return [family for _, family in sorted(found, key=lambda item: -item[0])]

    def frame(self, vertical: Family) -> _Frame:
        """The room's frame from its vertical and up to two horizontal directions at right angles
        (each of _MIN_ACROSS distinct lines, strongest first), refitted as one rotation."""
        families = [vertical]
        for family in sorted(self.points, key=lambda item: -float(self.length[item[1]].sum())):
            if len(self.distinct(family)) < _MIN_ACROSS or any(family[1] is other[1] for other in families):
                continue
            if all(self.perpendicular(family[0], other[0]) for other in families):
                families.append(family)
            if len(families) == 3:
                break
        return _Frame(self, families, self._fit(families))

    def perpendicular(self, v1: np.ndarray, v2: np.ndarray) -> bool:
        """Whether two vanishing points are the images of directions within _PERPENDICULAR of a
        right angle."""
        return abs(float(self.direction(v1) @ self.direction(v2))) <= np.sin(_PERPENDICULAR)

    def _fit(self, families: list[Family]) -> np.ndarray:
        """The rotation (columns: the families' camera directions, the vertical first) that fits
        the families' segment endpoints best (Gauss-Newton, as vanishing._orthogonal_pair)."""
        first = self.direction(families[0][0])
        second = np.cross(first, [0.0, 0.0, 1.0] if len(families) == 1 else self.direction(families[1][0]))
        second = np.cross(second, first) if len(families) > 1 else second
        second /= np.linalg.norm(second)
        frame = np.column_stack([first, second, np.cross(first, second)])
        if len(families) > 2 and frame[:, 2] @ self.direction(families[2][0]) < 0:
            frame[:, 2] = -frame[:, 2]
        weight = np.sqrt(self.length)
        parts = [(self.p1[m], self.mid[m], weight[m]) for _, m in families]

        def residuals(R: np.ndarray) -> np.ndarray:
            return np.concatenate([endpoint_residuals(self.K @ R[:, k], *part) for k, part in enumerate(parts)])

        frame = refit_rotation(frame, residuals)
        return frame if frame[1, 0] >= 0 else -frame


class _Frame:
    """The room's directions (camera coordinates): the vertical (pointing down the photo) and up to
    two horizontal ones, each with the family of lines it was fitted to."""

    def __init__(self, room: _Room, families: list[Family], rotation: np.ndarray):
        self.room, self.families, self.rotation = room, families, rotation

    def horizontal_plane(self, ray: np.ndarray, sign: float, focal: float) -> LinePlane | None:
        """A floor's (sign 1) or a ceiling's (-1) plane: its normal the room's vertical; None
        where the surface lies on the wrong side of the horizon (a floor above it)."""
        normal = sign * self.rotation[:, 0]
        if normal @ ray <= 0:
            return None
        h = self.rotation[:, 1]
        return self._plane(normal, texture_axis(h, np.cross(normal, h), normal, ray), focal)

    def upright_plane(self, ray: np.ndarray, focal: float) -> LinePlane | None:
        """A wall's plane: through the room's vertical and the horizontal direction of the frame
        whose lines lie mostly on or around the wall (exactly one: a corner's two walls in the band
        are ambiguous)."""
        room = self.room
        on_wall = [
            k
            for k, (_, members) in enumerate(self.families[1:], start=1)
            if room.length[members & room.on_surface].sum() >= _ON_WALL * room.length[members].sum()
        ]
        if len(on_wall) != 1:
            return None
        up, h = self.rotation[:, 0], self.rotation[:, on_wall[0]]
        normal = np.cross(up, h)
        normal = normal if normal @ ray > 0 else -normal
        return self._plane(normal, texture_axis(h, up, normal, ray), focal)

    def _plane(self, normal: np.ndarray, axis: np.ndarray, focal: float) -> LinePlane:
        used = np.any([members for _, members in self.families], axis=0)
        confidence = _ROOM_CONFIDENCE * float(self.room.length[used].sum() / self.room.length.sum())
        return LinePlane(normal, axis, focal, False, round(confidence, 3), int(used.sum()))
