"""benchmarks.segmentation_heldout: a room's truth is what the camera sees of the target, and the
user's clicks lie on it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from benchmarks import segmentation_heldout as heldout

SMALL = (192, 144)  # a few hundredths of a second to render, where the set's own size takes seconds


def test_a_small_rooms_clicks_lie_on_the_floor_and_on_the_sofa_in_front_of_it() -> None:
    spec = replace(heldout.ROOMS[0], size=SMALL)  # herringbone, a sofa at the back, sun
    room = heldout.build(spec)
    assert room.photo.shape == (144, 192, 3) and room.surface == "floor"
    assert 0.3 < room.visible.mean() < 0.9
    # The floor fills the bottom row; the sofa stands in front of it, never the surface.
    assert room.visible[-1].all() and not room.visible[0].any()
    assert room.occluder.any() and not (room.visible & room.occluder).any()
    assert len(room.positives) == spec.clicks
    assert all(room.visible[int(y), int(x)] for x, y in room.positives)
    assert len(room.negatives) == 1 and all(room.occluder[int(y), int(x)] for x, y in room.negatives)
    # The box holds the whole visible floor.
    ys, xs = np.nonzero(room.visible)
    x0, y0, x1, y1 = room.box
    assert x0 < xs.min() and xs.max() < x1 and y0 < ys.min() and ys.max() < y1


def test_rendering_and_clicks_follow_the_seed() -> None:
    spec = replace(heldout.ROOMS[0], size=SMALL)
    first, again = heldout.build(spec), heldout.build(spec)
    assert np.array_equal(first.photo, again.photo) and np.array_equal(first.positives, again.positives)
    other = heldout.build(replace(spec, seed=spec.seed + 1))
    assert not np.array_equal(first.photo, other.photo) and not np.array_equal(first.positives, other.positives)


def test_a_table_tops_truth_is_its_top_which_hides_the_floor() -> None:
    spec = replace(heldout.ROOMS[12], size=SMALL)  # an oak table top over an oak floor, unnamed
    table = heldout.build(spec)
    floor = heldout.build(replace(spec, target="floor"))
    bare_floor = heldout.build(replace(spec, target="floor", boxes=()))
    assert table.surface == "" and len(table.negatives) == 0
    assert 0.05 < table.visible.mean() < 0.6
    assert all(table.visible[int(y), int(x)] for x, y in table.positives)
    # The top is not the floor, and seen from above it hides floor (its far edge may straddle a wall).
    assert not (table.visible & floor.visible).any()
    assert (table.visible & bare_floor.visible).sum() > 0.95 * table.visible.sum()
