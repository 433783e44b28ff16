"""The segmentation stage's memory gate sizes a request by its photo, not only by what it declares."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import numpy as np
import pytest

from render.imaging.v1 import imaging_pb2
from render.imaging.v1.imaging_pb2 import Point
from render.segmentation.v1 import segmentation_service_pb2 as pb
from renderkit import budget, imaging
from services.common.admission import MemoryGate
from services.segmentation.server import SegmentationServicer
from tests.unit.test_projection_service import Aborted, FakeContext


def corners(right: float, bottom: float) -> list[Point]:
    return [Point(x=0, y=0), Point(x=right, y=0), Point(x=right, y=bottom), Point(x=0, y=bottom)]


class RecordingGate(MemoryGate):
    """A gate that notes each need it is asked for (and admits everything)."""

    def __init__(self) -> None:
        super().__init__(None)
        self.needs: list[int] = []

    async def run(self, need_bytes: int, work: Coroutine[Any, Any, Any]) -> Any:
        self.needs.append(need_bytes)
        return await super().run(need_bytes, work)


def test_a_photo_larger_than_its_declared_size_is_admitted_at_its_own_size() -> None:
    """A caller declaring 64x48 for a 2000x1500 photo was admitted at 64x48's cost (four such
    calls with 40 MP photos peaked at 947 MB against an allowance of 200 MB; a review found it)."""
    photo = imaging.encode(np.full((1500, 2000, 3), 128, np.uint8))[0]
    gate = RecordingGate()
    request = pb.SegmentRequest(photo=photo, width=64, height=48, quad=corners(63, 47))
    with pytest.raises(Aborted) as refused:
        asyncio.run(SegmentationServicer(None, gate).Segment(request, FakeContext()))  # type: ignore[arg-type]
    assert refused.value.fields == {"photo": "must be width x height"}
    assert gate.needs == [budget.FIXED_BYTES + budget.SEGMENTATION_BYTES_PER_PIXEL * 2000 * 1500]


def test_an_impossible_declared_size_is_refused_before_the_gate() -> None:
    gate = RecordingGate()
    request = pb.SegmentRequest(width=2**31 - 1, height=2**31 - 1, quad=corners(1, 1))
    with pytest.raises(Aborted) as refused:
        asyncio.run(SegmentationServicer(None, gate).Segment(request, FakeContext()))  # type: ignore[arg-type]
    assert set(refused.value.fields) == {"width"} and gate.needs == []


def test_a_mask_larger_than_its_declared_size_is_admitted_at_its_own_size() -> None:
    """A mask declared 64x48 but stored at 2000x1500 RGBA was admitted at 2 x 64 x 48 bytes (the
    photo's header was counted; the mask's was not): its decode holds ~5 bytes a pixel."""
    rgba = np.zeros((1500, 2000, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:10, :10, 3] = 0
    mask = imaging.encode(rgba, imaging_pb2.FORMAT_PNG)[0]
    gate = RecordingGate()
    request = pb.SegmentRequest(mask=mask, width=64, height=48)
    with pytest.raises(Aborted) as refused:
        asyncio.run(SegmentationServicer(None, gate).Segment(request, FakeContext()))  # type: ignore[arg-type]
    assert refused.value.fields == {"mask": "must be the size of the photo"}
    assert gate.needs[0] >= 5 * 2000 * 1500, gate.needs
