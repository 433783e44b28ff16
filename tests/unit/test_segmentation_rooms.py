"""benchmarks.segmentation_rooms: the rooms' truth is what the camera sees of the floor."""

from __future__ import annotations

import numpy as np

from benchmarks import segmentation_rooms as rooms
from benchmarks.quality import modes


def test_a_small_rooms_truth_is_the_floor_below_the_horizon_and_not_the_sofa() -> None:
    spec = rooms.SPECS[0]  # a plain floor, walls of its colour, a sofa and a lamp at the back
    room = rooms.build(spec, scale=0.2)
    assert room.photo.shape == (154, 205, 3)
    visible, occluder = room.visible, room.occluder
    assert 0.3 < visible.mean() < 0.8
    # The floor fills the bottom row and is below the horizon (the walls and ceiling are above it).
    assert visible[-1].all() and not visible[0].any()
    horizon = room.height / 2 - room.focal * np.tan(np.radians(spec.pitch))
    rows = np.nonzero(visible)[0]
    assert rows.min() > horizon
    # The sofa and the lamp stand in front of the floor: never the surface, and seen.
    assert occluder.any() and not (visible & occluder).any()
    # The photo shows the floor lighter than the dark blue sofa on it.
    grey = room.photo.mean(axis=2)
    assert grey[visible].mean() > grey[occluder].mean() + 20
    # The benchmark's clicks land on the floor and on the sofa.
    _, positives, negatives = modes.clicks(room)
    assert all(visible[int(y), int(x)] for x, y in positives)
    assert all(occluder[int(y), int(x)] for x, y in negatives) and len(negatives) == 1


def test_a_room_whose_request_fails_is_scored_as_nothing_selected() -> None:
    """`--set walls` has a room whose clicks alone fail ("ceiling over grey walls, looking up": the
    hints leave no background); the run went on to no figures at all, the InputError raised."""
    from renderkit.errors import InputError

    room = rooms.build(rooms.SPECS[0], scale=0.2)

    def failing(*args: object, **kwargs: object) -> np.ndarray:
        raise InputError("the hints leave no background to contrast the surface with")

    scores = rooms.score_rooms([room], failing)
    assert [s.iou for s in scores] == [0.0, 0.0]
