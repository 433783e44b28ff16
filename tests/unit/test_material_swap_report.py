"""A material swap's result reports what the job's provider calls spent, as its charge counts it."""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any

import numpy as np

from gateway.context import JobContext
from gateway.material_swap import run_material_swap
from gateway.pricing import PriceTable, charge_for, price_of
from gateway.validation import Limits
from render.generation.v1 import generation_service_pb2 as gen_pb
from render.imaging.v1 import imaging_pb2
from render.projection.v1 import projection_service_pb2 as proj_pb
from render.segmentation.v1 import segmentation_service_pb2 as seg_pb
from render.v1 import render_service_pb2 as pb
from renderkit import imaging
from renderkit.fetch import FetchPolicy
from renderkit.storage.local import LocalStorage


class FakeLedger:
    async def record_progress(self, *args: Any) -> None: ...

    async def save_checkpoint(self, *args: Any) -> None: ...

    async def cached_geometry(self, *args: Any) -> None:
        return None

    async def cache_geometry(self, *args: Any) -> None: ...


def image(width: int, height: int, level: int) -> bytes:
    return imaging.encode(np.full((height, width, 3), level, np.uint8), imaging_pb2.FORMAT_PNG)[0]


class Segmentation:
    async def Segment(self, request: Any, timeout: float) -> seg_pb.SegmentResponse:
        return seg_pb.SegmentResponse(source="quad", coverage=0.5, mask_png=image(256, 256, 255))


class Projection:
    async def Project(self, request: Any, timeout: float) -> proj_pb.ProjectResponse:
        composite = imaging_pb2.EncodedImage(
            name="composite", data=image(256, 256, 100), content_type="image/jpeg", width=256, height=256
        )
        return proj_pb.ProjectResponse(images=[composite])


class Generation:
    async def Refine(self, request: Any, timeout: float) -> gen_pb.RefineResponse:
        refined = imaging_pb2.EncodedImage(
            name="full", data=image(256, 256, 120), content_type="image/jpeg", width=256, height=256
        )
        call = gen_pb.ProviderCall(provider="fake", cost=gen_pb.Cost(cents=4.0))
        return gen_pb.RefineResponse(images=[refined], provider="fake", applied=True, call=call)


class Stages:
    segmentation, projection, generation, depth = Segmentation(), Projection(), Generation(), None

    def connected(self, stage: Any) -> bool:
        return True

    async def wait_ready(self, stage: Any, timeout: float) -> bool:
        return True


def test_a_refined_swap_with_variants_reports_every_refinements_spend() -> None:
    """Each swatch is refined, each call paid: the job was charged for all of them, but its result
    reported the first one's cost alone (a review found it)."""

    async def main() -> tuple[pb.JobResult, float, int]:
        swap = pb.MaterialSwap(photo=pb.ImageSource(), swatch=pb.ImageSource(), variant_swatches=[pb.ImageSource()])
        swap.hints.quad.extend(
            [pb.Point(x=20, y=200), pb.Point(x=230, y=200), pb.Point(x=200, y=120), pb.Point(x=50, y=120)]
        )
        swap.options.enable_refinement = True
        request = pb.SubmitRenderRequest(material_swap=swap)
        keys = {
            "material_swap.photo": "uploads/j/photo",
            "material_swap.swatch": "uploads/j/sw",
            "material_swap.variant_swatches[0]": "uploads/j/v0",
        }
        held = {
            "uploads/j/photo": image(256, 256, 50),
            "uploads/j/sw": image(64, 64, 200),
            "uploads/j/v0": image(64, 64, 30),
        }
        ctx = JobContext(
            job_id="j",
            owner="w1",
            tenant="acme",
            request=request,
            inputs=keys,
            ledger=FakeLedger(),  # type: ignore[arg-type]
            storage=LocalStorage(tempfile.mkdtemp()),
            stages=Stages(),  # type: ignore[arg-type]
            fetch_policy=FetchPolicy(),
            limits=Limits(),
            default_stage_timeout_s=5,
            deadline=asyncio.get_running_loop().time() + 30,
            held=held,
        )
        result = await run_material_swap(ctx)
        prices = PriceTable()
        return result, ctx.spent.cents, charge_for(result, price_of(request, prices, 100.0), ctx.spent.cents, prices)

    result, spent, charged = asyncio.run(main())
    assert spent == 8.0 and result.generation.cost.cents == 8.0
    assert charged == PriceTable().material_swap + PriceTable().variant + 8
