"""A surface found from clicks, cut at its junctions with the surfaces around it: a floor at its
walls, a wall or a facade at the floor or ground and the ceiling, roof or sky, a ceiling at its
walls (interactive.select_surface; with a box, BOXED_JUNCTIONS). Each junction is the strongest
path of lightness steps across the photo on one side of the clicks; the part beyond it is cut off
only where it reaches the frame's (or the box's) edge across a strong edge and looks like another
surface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from services.segmentation.parts import clicked_parts

if TYPE_CHECKING:
    from services.segmentation.interactive import Appearance


# The floor's junction with the walls, searched for above the clicks (working pixels, log units).
JUNCTION_BAND = 3  # rows either side of a row whose means are compared
JUNCTION_CAP = 0.08  # a step counts at most this much: a sun patch's edge no more than the junction's
JUNCTION_SLOPE = 3  # rows the junction may climb or fall from one column to the next
JUNCTION_BEND = 0.004  # the cost of each row it does
JUNCTION_ABOVE = 0.05  # of the height: how far above the highest click it lies at least
# What the junction cuts off must be far smoother than what it keeps (mean texture energy): a plain
# wall above a floor with joints, grain, mottle or a sun patch's edges. The walls taken with the
# floor measured 0.30-0.68 of it; the paths along a patterned floor's joints or seams, below a
# junction the selection already kept to, 0.815-0.97 (benchmarks.segmentation_rooms' rooms and hard
# floors, make quality).
JUNCTION_SMOOTHER = 0.75
# ... and about as light as the floor just below the path (log units; the medians of the selected
# pixels JUNCTION_SIDE rows either side of the path, JUNCTION_GAP rows off it, per column, then the
# median over columns): a wall the walk takes for the floor has the floor's colour and light, while
# a straight light edge across a floor (a shadow's, a sun patch's: 0.75-0.81) or a threshold strip
# (0.32) steps. Walls taken with the floor measured 0.11 at most; paths along joints or seams on a
# top-down floor or far tiles 0.15-0.20 (their texture ratio refuses them as well).
JUNCTION_LIGHTER = 0.15
# Walls may be darker than that, down to this much (log units): a wall faces half the sky and the
# room's lamps that light the floor, and its foot lies in the corner's shade. Walls of the floor's
# colour and finish measured 0.22-0.48 darker (a helper's held-out rooms: concrete, marble, grey
# porcelain). A floor beyond a shadow's straight edge steps 0.75-0.82 darker, and it is not
# smoother (in shade its log lightness is noisier): the texture test refuses it as well.
JUNCTION_DARKER = 0.6
# Walls this much darker or more (log units) than the floor just below the path need not be smoother
# where both sides are in one light (JUNCTION_ONE_LIGHT): concrete, plaster or paint as rough as a
# fine floor (their texture 0.9-1.5 of the floor's: darker, and so noisier in log) was kept with it.
# Those walls measured 0.26-0.38 darker. A floor beyond a weak sun patch's straight edge is as dark
# and as rough (0.33-0.44 darker, texture 0.64-0.92), but it is lit by the sky alone: ...
JUNCTION_DIMMER = 0.2
# ... so it is bluer than the sunlit floor by more than this (the median difference across the path
# of red minus blue log chroma: 0.091-0.105), while walls of the floor's material in the room's light
# measured 0.009-0.028. The junction's other tests still apply (reach, edge, JUNCTION_DARKER; a
# strong sun's edge steps 0.75-0.82 darker).
JUNCTION_ONE_LIGHT = 0.05
# ... and where the dimmer part is not the floor going on beyond a straight shadow's edge in one light
# (a window's sun the colour of the sky, or shade white-balanced), as dark (0.36-0.49) and as rough
# (texture 0.78-1.02): that floor is further foreshortened, its grain blurred down the columns more
# than the floor's before the path, while walls face the camera. The lightness's mean change down the
# columns over that along the rows, just beyond the path against just before it, measured 1.12-1.55
# for walls cut off over floors of their tint (9 rendered rooms) and 0.15-0.91 for floors beyond a
# light's edge (14; three cut off without it: IoU 0.93-0.97 -> 0.80-0.87). Walls over tiles whose
# grout runs along the rows measured 0.34 (a room the other tests keep whole as well).
JUNCTION_GRAIN = 1.0
JUNCTION_GRAIN_ROWS = 20  # the band measured on each side, JUNCTION_GAP rows off the path
JUNCTION_SIDE, JUNCTION_GAP = 10, 3
# The step must be measured across the path on at least this share of the columns (selected pixels
# on both sides): a path along a runner that the selection leaves out separates nothing.
JUNCTION_MEASURED = 0.1
# What it cuts off must reach the top of the frame (a ceiling's: the bottom) over at least this share
# of the columns: walls rise through the horizon, and a photo of a floor has its horizon near or
# above its top. Walls taken with the floor reached it on 0.88-1.0 of the columns; the part of a
# floor beyond a strip, a shadow's edge or a seam, below walls the selection left out, on none
# (a top-down floor 0.41-0.69, make quality's floors at most 0.78).
JUNCTION_REACHES = 0.8
JUNCTION_TOP_ROWS = 3
# ... or over nearly all of the columns it lies in: walls or a ceiling of the surface's colour taken
# on one side of the frame only (the rest kept out by a sofa, by their shade or by a lamp's pool on
# the surface) rise to the edge wherever they were taken: 0.92-0.99 of their columns, 0.42-0.57 of
# all (scratch rooms of segmentation_heldout's renderer: a ceiling looking up, a wall over a floor of
# its beige, a carpet under walls of its colour; clicks alone 0.70-0.87 -> 0.89-0.94, the held-out
# beige carpet 0.767 -> 0.849). segmentation_rooms' 33 rooms and 14 guard rooms (a floor running on
# to the top on one side beyond a shadow's, a sun patch's, a runner's or a lamp's edge; walls and a
# ceiling across a rail, a lamp's wash, a beam) scored the same: where this let a path through, the
# edge, texture and light tests still refused it.
JUNCTION_REACHES_WHERE_TAKEN = 0.9
# ... and the path must be an edge where it separates selected pixels: the mean capped step along it
# over the columns with selected pixels on both sides. Junctions with walls of the floor's colour
# measured 0.0788-0.080 (the rooms and hard floors); a floor running on to the frame's top, its far
# part plain at the photo's size (carpet, fine concrete), has no junction: the path followed the
# furniture's outline and crossed the open floor on noise (0.048-0.061).
JUNCTION_EDGE = 0.076
# Where what it cuts off is this much smoother still (mean texture energy against the part kept), a
# plain wall above a floor of grain, gravel or pile, the texture alone tells the two surfaces apart:
# the path need only be half the edge (JUNCTION_PLAIN_EDGE) and reach the frame's edge over half the
# columns (a ceiling in view above the walls). Walls of a textured floor's colour measured 0.07-0.13
# of its energy with edges of 0.058-0.080 and reaches of 0.52-1.0 (seg43's rooms); parts of a floor
# that a path would cut off, 0.53 and more (segmentation_rooms; far floors seen low, from above).
JUNCTION_PLAIN = 0.2
JUNCTION_PLAIN_EDGE = 0.5 * JUNCTION_EDGE
JUNCTION_PLAIN_REACHES = 0.5
# Paths tried, each above the last one refused: the strongest may be a shadow's or a sun patch's
# straight edge across the floor, below the junction.
JUNCTION_TRIES = 2


@dataclass(frozen=True)
class Junction:
    """A junction a named surface is cut at: on which side of the clicks it is searched for, and
    whether the part beyond it must also look like walls rising from a floor (far smoother, about
    as light across the path) besides reaching the frame's edge across a strong edge."""

    below: bool  # searched below the clicks (the photo turned upside down), else above them
    like_walls: bool


# The floor's walls are told from a straight light edge across the floor by their texture and light.
# A wall's ceiling and floor, a ceiling's walls, are lit otherwise than the surface (the ceilings
# above the reviewer's walls measured 0.24-0.33 lighter in log units, walls below a ceiling 0.18-0.36
# darker) and as plain or rougher (a floor's grain): only the reach and the edge tests apply. Paths
# across walls or ceilings with nothing beyond to cut measured edges of 0.040-0.060 (a wall rising
# past the frame's top, a white wall under a white ceiling), the junctions 0.0787-0.080. What it cuts
# off must still look like another surface than the part kept: the difference of their median log
# lightness plus three times that of their median chroma (the larger channel). A shelf's or a picture
# rail's shadow, a dado rail, a radiator's top across a wall is as straight and as strong an edge as
# its junction, but the wall beyond it is the wall kept (0.03-0.11), while the ceilings and floors the
# junctions cut off measured 0.33-1.3.
JUNCTION_OTHER = 0.2
FLOOR_JUNCTION = Junction(below=False, like_walls=True)
# A facade is cut where a wall is: at the pavement or the ground it rises from, and at the roof, the
# sky or the plaster above it (the walk took a stone facade's street with it).
UPRIGHT_JUNCTIONS = (Junction(below=False, like_walls=False), Junction(below=True, like_walls=False))
JUNCTIONS = {
    "floor": (FLOOR_JUNCTION,),
    "wall": UPRIGHT_JUNCTIONS,
    "facade": UPRIGHT_JUNCTIONS,
    "ceiling": (Junction(below=True, like_walls=False),),
}
# With a box, the part beyond must reach the box's side instead of the frame's. Floors are not cut:
# their tests were measured on clicks alone, and a box already keeps the walls out of a floor's.
BOXED_JUNCTIONS = {"wall": JUNCTIONS["wall"], "facade": JUNCTIONS["facade"], "ceiling": JUNCTIONS["ceiling"]}


def junction_side(
    appearance: Appearance,
    selected: np.ndarray,
    positives: np.ndarray,
    junction: Junction,
    window: tuple[slice, slice] | None = None,
) -> np.ndarray:
    """The selection kept on the clicks' side of a junction: below the floor's junction with the
    walls, between a wall's junctions with the ceiling and the floor, above a ceiling's junction
    with the walls. A wall of the floor's colour and light (a ceiling of the wall's neutral white)
    is no different in chroma or texture, and the walk and the cut take it in. The junction is the
    path across all columns of the frame (of the box's `window`), beyond the clicks, along which
    the photo changes most (dynamic programming over rows per column): a step in log lightness or
    chroma between the rows above and below (a joint or seam, thinner than the median filter,
    is no step; steps are capped, and none counts beside overexposed pixels). Many straight edges
    across a floor are as strong (a shadow's, a strip's, a runner's, a row of tiles' or planks'), so
    the part beyond the path is cut off only where it reaches the frame's edge along a strong edge
    and, for a floor, looks like walls rising from it: it is far smoother than the part kept (or
    darker by JUNCTION_DIMMER in the floor's own light), and about as light just above the path as
    the floor just below it, or somewhat darker (a wall's light is less than a floor's:
    JUNCTION_DARKER). Where it does not, the strongest
    path further from the clicks is tried (JUNCTION_TRIES). (Geometry alone and the path's
    distinctiveness measured no better: junctions and those edges are all straight, and capped
    steps make many paths about equally strong.)"""
    if not len(positives) or not selected.any():
        return selected
    rows_in, cols_in = window if window is not None else (slice(None), slice(None))
    lightness, chroma, clipped, texture, mask = (
        a[rows_in, cols_in]
        for a in (appearance.lightness, appearance.chroma, appearance.clipped, appearance.texture[..., 0], selected)
    )
    clicked_rows = positives[:, 1] * appearance.scale - (rows_in.start or 0)
    if junction.below:  # a ceiling is a floor upside down
        lightness, chroma, clipped, texture, mask = (a[::-1] for a in (lightness, chroma, clipped, texture, mask))
        clicked_rows = lightness.shape[0] - 1 - clicked_rows
    sh, sw = lightness.shape
    if sh <= 2 * JUNCTION_BAND or clicked_rows.min() - JUNCTION_ABOVE * sh < 1:
        return selected
    # Chroma weighs three times lightness: a wall of the floor's colour differs by about 0.01 in
    # chroma and 0.03 in log lightness at the junction.
    features = [lightness, 3 * chroma[..., 0], 3 * chroma[..., 1]]
    smooth = np.dstack([cv2.medianBlur(np.ascontiguousarray(f, dtype=np.float32), 5) for f in features])
    smooth = cv2.blur(cv2.GaussianBlur(smooth, (0, 0), 1.0), (5, JUNCTION_BAND))
    band, centre = JUNCTION_BAND, JUNCTION_BAND // 2
    step = np.zeros((sh, sw), np.float32)
    # Row y: the mean of rows y+1..y+band against that of rows y-band..y-1.
    below = smooth[band + centre + 1 : sh - band + centre + 1]
    above = smooth[band - centre - 1 : sh - band - centre - 1]
    step[band : sh - band] = np.abs(below - above).sum(axis=2)
    edge = np.minimum(step, np.float32(JUNCTION_CAP))
    edge[cv2.dilate(clipped.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0] = 0
    edge[int(max(1, clicked_rows.min() - JUNCTION_ABOVE * sh)) :] = -1.0  # never at or below the clicks
    rows = np.arange(sh)[:, None]
    for _ in range(JUNCTION_TRIES):
        path = _strongest_path(edge)
        beyond = rows < path[None, :] - 1
        if _cut_off_beyond(lightness, texture, mask > 0, edge, path, beyond, junction.like_walls, chroma):
            out = np.where(beyond, 0, mask).astype(np.uint8)
            if junction.below:
                out = out[::-1]
            whole = selected.copy()
            whole[rows_in, cols_in] = out
            return clicked_parts(appearance, whole, positives)
        # A shadow's or a sun patch's edge across the floor may be the strongest path: the junction,
        # if any, lies further from the clicks.
        edge[rows >= path[None, :] - JUNCTION_SIDE] = -1.0
    return selected


def _cut_off_beyond(
    lightness: np.ndarray,
    texture: np.ndarray,
    selected: np.ndarray,
    edge: np.ndarray,
    path: np.ndarray,
    beyond: np.ndarray,
    like_walls: bool,
    chroma: np.ndarray | None = None,
) -> bool:
    """Whether the selection beyond the path is another surface: it reaches the frame's top, the
    path is an edge where it separates selected pixels, and (`like_walls`, walls rising from a
    floor) it is far smoother than the part kept, or darker by JUNCTION_DIMMER in one light
    (JUNCTION_ONE_LIGHT) with its grain turned (JUNCTION_GRAIN), and about as light just across the
    path or somewhat darker, (else) it differs from the part kept in light or colour
    (JUNCTION_OTHER). Walls far smoother still (JUNCTION_PLAIN) need a weaker edge and reach the top
    over fewer columns."""
    removed, kept = selected & beyond, selected & ~beyond
    if not removed.any() or not kept.any():
        return False
    plain = like_walls and texture[removed].mean() <= JUNCTION_PLAIN * texture[kept].mean()
    if not _reaches_the_edge(removed, JUNCTION_PLAIN_REACHES if plain else JUNCTION_REACHES):
        return False
    if not like_walls and chroma is not None:
        apart = abs(float(np.median(lightness[removed]) - np.median(lightness[kept])))
        tinted = float(np.abs(np.median(chroma[removed], axis=0) - np.median(chroma[kept], axis=0)).max())
        if apart + 3 * tinted < JUNCTION_OTHER:
            return False
    lighter, measured = _step_across(lightness, selected, path)
    if lighter is None or (like_walls and not -JUNCTION_DARKER <= lighter <= JUNCTION_LIGHTER):
        return False
    if like_walls and texture[removed].mean() > JUNCTION_SMOOTHER * texture[kept].mean():
        # Rough walls: cut off only where darker in the floor's own light (JUNCTION_DIMMER) and
        # grained unlike the floor going on beyond a shadow's edge (JUNCTION_GRAIN).
        dimmer = (
            lighter <= -JUNCTION_DIMMER
            and chroma is not None
            and _in_one_light(chroma, selected, path)
            and _grain_turns(lightness, selected, path)
        )
        if not dimmer:
            return False
    least = JUNCTION_PLAIN_EDGE if plain else JUNCTION_EDGE
    return bool(edge[path[measured], np.nonzero(measured)[0]].mean() >= least)


def _reaches_the_edge(removed: np.ndarray, least: float) -> bool:
    """Whether the part cut off reaches the frame's top over `least` of the columns, or over
    JUNCTION_REACHES_WHERE_TAKEN of those it lies in where it lies against a side of the frame
    (walls taken on one side only)."""
    reaching = removed[:JUNCTION_TOP_ROWS].any(axis=0)
    lying = removed.any(axis=0)
    # Walls taken on one side run on to that side of the frame; a part lying between columns kept
    # on both sides is rather the floor seen through a doorway, beyond its threshold (a scratch
    # room: 0.983 -> 0.930 when it passed, both modes).
    on_one_side = bool(lying[0] or lying[-1])
    return bool(
        reaching.mean() >= least or (on_one_side and reaching.sum() >= JUNCTION_REACHES_WHERE_TAKEN * lying.sum())
    )


def _in_one_light(chroma: np.ndarray, selected: np.ndarray, path: np.ndarray) -> bool:
    """Whether the selected pixels on either side of the path are about as warm (JUNCTION_ONE_LIGHT):
    not across a light's edge, whose colour differs from the light beside it."""
    warmer, _ = _step_across(chroma[..., 1] - chroma[..., 0], selected, path)
    return warmer is not None and abs(warmer) <= JUNCTION_ONE_LIGHT


def _grain_turns(lightness: np.ndarray, selected: np.ndarray, path: np.ndarray) -> bool:
    """Whether the lightness's grain turns across the path (JUNCTION_GRAIN): its change down the
    columns against that along the rows (mean absolute central differences over the selected pixels
    of JUNCTION_GRAIN_ROWS rows JUNCTION_GAP off the path) is not less beyond the path than before it,
    as it is on a floor going on beyond a shadow's edge."""
    height = lightness.shape[0]
    down = np.zeros_like(lightness)
    down[1:-1] = np.abs(lightness[2:] - lightness[:-2])
    along = np.zeros_like(lightness)
    along[:, 1:-1] = np.abs(lightness[:, 2:] - lightness[:, :-2])
    inner = np.zeros_like(selected)
    inner[2:-2, 2:-2] = selected[2:-2, 2:-2]
    rows = np.arange(height)[:, None]
    beyond = (rows < path[None, :] - JUNCTION_GAP) & (rows >= path[None, :] - JUNCTION_GAP - JUNCTION_GRAIN_ROWS)
    before = (rows > path[None, :] + JUNCTION_GAP) & (rows <= path[None, :] + JUNCTION_GAP + JUNCTION_GRAIN_ROWS)
    grains = []
    for side in (beyond & inner, before & inner):
        if side.sum() < 4 * JUNCTION_GRAIN_ROWS or along[side].mean() <= 0:  # under 4 columns: unmeasured
            return False
        grains.append(down[side].mean() / along[side].mean())
    return bool(grains[0] >= JUNCTION_GRAIN * grains[1])


def _step_across(lightness: np.ndarray, selected: np.ndarray, path: np.ndarray) -> tuple[float | None, np.ndarray]:
    """The median over columns of how much lighter the selected pixels just above the path are
    than those just below it (per column, the medians of JUNCTION_SIDE rows JUNCTION_GAP rows off
    the path, where at least 4 of each side are selected; None when fewer than JUNCTION_MEASURED
    of the columns have both sides), and those columns."""
    height, width = lightness.shape
    offsets = np.arange(JUNCTION_GAP, JUNCTION_GAP + JUNCTION_SIDE)
    cols = np.arange(width)[None, :]
    sides = []
    for rows in (path[None, :] - 1 - offsets[:, None], path[None, :] + offsets[:, None]):
        inside = (rows >= 0) & (rows < height)
        rows = np.clip(rows, 0, height - 1)
        ok = inside & selected[rows, cols]
        values = np.where(ok, lightness[rows, cols], np.nan)
        sides.append((values, ok.sum(axis=0)))
    (above, n_above), (below, n_below) = sides
    measured = (n_above >= 4) & (n_below >= 4)
    if measured.sum() < max(1, JUNCTION_MEASURED * width):
        return None, measured
    step = np.median(np.nanmedian(above[:, measured], axis=0) - np.nanmedian(below[:, measured], axis=0))
    return float(step), measured


def _strongest_path(edge: np.ndarray) -> np.ndarray:
    """The row per column of the path across all columns with the greatest sum of `edge`, moving at
    most JUNCTION_SLOPE rows between columns at JUNCTION_BEND a row."""
    height, width = edge.shape
    rows = np.arange(height)
    score = edge[:, 0].astype(np.float64)
    came_from = np.zeros((height, width), np.int32)
    for x in range(1, width):
        best = np.full(height, -np.inf)
        source = rows.copy()
        for move in range(-JUNCTION_SLOPE, JUNCTION_SLOPE + 1):
            origin = rows - move
            valid = (origin >= 0) & (origin < height)
            candidate = np.full(height, -np.inf)
            candidate[valid] = score[origin[valid]] - JUNCTION_BEND * abs(move)
            better = candidate > best
            best[better], source[better] = candidate[better], origin[better]
        score = best + edge[:, x]
        came_from[:, x] = source
    path = np.zeros(width, np.int64)
    path[-1] = int(np.argmax(score))
    for x in range(width - 1, 0, -1):
        path[x - 1] = came_from[path[x], x]
    return path
