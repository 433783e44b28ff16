"""The plans' work on their input images: probes and decodes run off the gateway's event loop (one
job's large or hostile file must not stall every other job's progress), and a texture given by URL
meets the same least side as one given inline."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, cast

import grpc
import numpy as np
import pytest

from gateway import context as job_context
from gateway.context import JobContext, JobFailure
from gateway.generation_jobs import run_room_render, run_texture_edit
from gateway.ledger import Ledger
from gateway.material_swap import run_material_swap
from gateway.stages import StageClients
from gateway.validation import MIN_TEXTURE_SIDE, Limits
from render.imaging.v1 import imaging_pb2
from render.v1 import render_service_pb2 as pb
from renderkit import imaging
from renderkit.fetch import FetchPolicy
from renderkit.storage import Storage
from services.segmentation.server import SegmentationServicer


class StageCalled(Exception):
    """Where these tests stop a plan: at its first stage call, its inputs all read."""


class QuietLedger:
    """Just what a plan's context writes to the ledger before its first stage call."""

    async def record_progress(self, *args: Any) -> None:
        pass

    async def save_checkpoint(self, *args: Any) -> None:
        pass


class UntilAStageCall(JobContext):
    async def call(self, *args: Any, **kwargs: Any) -> Any:
        raise StageCalled


def image(width: int, height: int, fmt: int = imaging_pb2.FORMAT_JPEG) -> bytes:
    return imaging.encode(np.full((height, width, 3), 120, np.uint8), fmt)[0]


@pytest.fixture()
def image_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The threads every probe and decode of the test ran on."""
    threads: list[int] = []

    def recorded(original: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            threads.append(threading.get_ident())
            return original(*args, **kwargs)

        return call

    for name in ("probe", "decode_gray", "decode_bgr", "decode_swatch"):
        monkeypatch.setattr(imaging, name, recorded(getattr(imaging, name)))
    return threads


def job_run(
    context: type[JobContext], request: pb.SubmitRenderRequest, inline: dict[str, bytes], stages: StageClients
) -> JobContext:
    """A run of job j1 by w1 for acme, its inline images handed over by the submit (in a loop)."""
    return context(
        job_id="j1",
        owner="w1",
        tenant="acme",
        request=request,
        inputs={field: f"uploads/j1/{field}" for field in inline},
        ledger=cast(Ledger, QuietLedger()),
        storage=cast(Storage, None),
        stages=stages,
        fetch_policy=FetchPolicy(),
        limits=Limits(),
        default_stage_timeout_s=30.0,
        deadline=asyncio.get_running_loop().time() + 60,
        held={f"uploads/j1/{field}": data for field, data in inline.items()},
    )


def run(
    plan: Callable[[JobContext], Awaitable[pb.JobResult]],
    request: pb.SubmitRenderRequest,
    monkeypatch: pytest.MonkeyPatch,
    inline: dict[str, bytes],
    downloads: dict[str, bytes] | None = None,
) -> None:
    """Runs a plan until its first stage call, its inline images handed over by the submit and its
    URLs answered from downloads."""

    async def fetch(url: str, policy: FetchPolicy) -> bytes:
        return (downloads or {})[url]

    monkeypatch.setattr(job_context, "fetch_async", fetch)

    async def body() -> None:
        ctx = job_run(UntilAStageCall, request, inline, cast(StageClients, None))
        with pytest.raises(StageCalled):
            await plan(ctx)

    asyncio.run(body())


def test_a_texture_edits_download_and_mask_are_probed_and_decoded_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, image_threads: list[int]
) -> None:
    request = pb.SubmitRenderRequest(
        texture_edit=pb.TextureEdit(
            base_texture=pb.ImageSource(url="https://example.com/texture.jpg"),
            mask=pb.ImageSource(data=b"inline"),
            prompt="weathered",
        )
    )
    mask = imaging.encode_mask(np.full((96, 128), 255, np.uint8))
    texture = {"https://example.com/texture.jpg": image(128, 96)}
    run(run_texture_edit, request, monkeypatch, {"texture_edit.mask": mask}, texture)
    # The download's check, the texture's and the mask's probes, the mask's decode.
    assert len(image_threads) >= 4
    assert threading.get_ident() not in image_threads


def test_a_texture_given_by_url_must_be_as_large_as_one_given_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    request = pb.SubmitRenderRequest(
        texture_edit=pb.TextureEdit(base_texture=pb.ImageSource(url="https://example.com/small.jpg"), prompt="p")
    )
    small = {"https://example.com/small.jpg": image(MIN_TEXTURE_SIDE - 1, 200)}
    with pytest.raises(JobFailure) as info:
        run(run_texture_edit, request, monkeypatch, {}, small)
    assert info.value.code == pb.ERROR_CODE_VALIDATION_FAILED
    assert info.value.message == (
        f"texture_edit.base_texture.url: is {MIN_TEXTURE_SIDE - 1}x200; both sides must be at least 64 px"
    )


def test_a_texture_by_url_too_wide_for_a_webp_output_is_refused_before_the_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request = pb.SubmitRenderRequest(
        texture_edit=pb.TextureEdit(base_texture=pb.ImageSource(url="https://example.com/wide.jpg"), prompt="p"),
        output=pb.OutputOptions(format=pb.IMAGE_FORMAT_WEBP),
    )
    with pytest.raises(JobFailure) as info:
        run(run_texture_edit, request, monkeypatch, {}, {"https://example.com/wide.jpg": image(16400, 64)})
    assert info.value.code == pb.ERROR_CODE_VALIDATION_FAILED
    assert info.value.message.startswith("output.format: WebP holds at most 16383 px a side, and the texture is")


def test_a_swaps_inputs_are_probed_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, image_threads: list[int]
) -> None:
    quad = [pb.Point(x=x, y=y) for x, y in ((20, 150), (300, 150), (310, 230), (10, 230))]
    request = pb.SubmitRenderRequest(
        material_swap=pb.MaterialSwap(
            photo=pb.ImageSource(data=b"inline"),
            swatch=pb.ImageSource(data=b"inline"),
            mask=pb.ImageSource(data=b"inline"),
            hints=pb.SurfaceHints(quad=quad),
        )
    )
    inline = {
        "material_swap.photo": image(320, 240),
        "material_swap.swatch": image(64, 64),
        "material_swap.mask": imaging.encode_mask(np.full((240, 320), 255, np.uint8)),
    }
    run(run_material_swap, request, monkeypatch, inline)
    assert len(image_threads) >= 3
    assert threading.get_ident() not in image_threads


def test_a_room_renders_references_are_probed_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, image_threads: list[int]
) -> None:
    request = pb.SubmitRenderRequest(
        room_render=pb.RoomRender(
            materials=pb.RoomMaterials(floor=pb.SurfaceMaterial(swatch=pb.ImageSource(data=b"inline")))
        )
    )
    run(run_room_render, request, monkeypatch, {"room_render.materials.floor.swatch": image(64, 64)})
    assert image_threads and threading.get_ident() not in image_threads


def test_a_room_render_without_references_goes_to_its_stage_call_without_a_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing to probe: no hop to a worker thread and back (~0.1 ms of a short job's time)."""

    def no_thread(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a thread was asked to probe nothing")

    monkeypatch.setattr(asyncio, "to_thread", no_thread)
    run(run_room_render, pb.SubmitRenderRequest(room_render=pb.RoomRender()), monkeypatch, {})


ROOM_URL = "https://example.com/room.jpg"
ROOM_QUAD = ((100, 500), (900, 500), (1000, 760), (20, 760))


def swap_by_url(**hints: Any) -> pb.SubmitRenderRequest:
    """A material swap of a 1024 x 768 photo given by URL (its size unknown at submit)."""
    return pb.SubmitRenderRequest(
        material_swap=pb.MaterialSwap(
            photo=pb.ImageSource(url=ROOM_URL), swatch=pb.ImageSource(data=b"inline"), hints=pb.SurfaceHints(**hints)
        )
    )


def failure_of(request: pb.SubmitRenderRequest, monkeypatch: pytest.MonkeyPatch, photo: bytes) -> JobFailure:
    with pytest.raises(JobFailure) as info:
        run(run_material_swap, request, monkeypatch, {"material_swap.swatch": image(64, 64)}, {ROOM_URL: photo})
    assert info.value.code == pb.ERROR_CODE_VALIDATION_FAILED
    return info.value


def points(*xy: tuple[float, float]) -> list[pb.Point]:
    return [pb.Point(x=x, y=y) for x, y in xy]


@pytest.mark.parametrize(
    "hints, message",
    [
        (
            {"quad": points(*ROOM_QUAD), "focal_length_px": 1e300},
            "material_swap.hints.focal_length_px: must be between 0.1 and 20 times the photo's longer side",
        ),
        (
            {"quad": points(*ROOM_QUAD), "focal_length_px": 1e-300},
            "material_swap.hints.focal_length_px: must be between 0.1 and 20 times the photo's longer side",
        ),
        (
            {"positive_points": points((1e15, 1e15))},
            "material_swap.hints.positive_points[0]: must lie on the photo (1024x768)",
        ),
        (
            {"positive_points": points((500, 700)), "negative_points": points((3040, 533))},
            "material_swap.hints.negative_points[0]: must lie on the photo (1024x768)",
        ),
        (
            {"quad": points(*ROOM_QUAD), "polygon": points((-1e9, -1e9), (1e9, -1e9), (1e9, 1e9), (-1e9, 1e9))},
            "material_swap.hints.polygon[0]: lies far outside the photo",
        ),
        (
            {"quad": points((-1e6, -1e6), (1e6, -1e6), (1e6, 1e6), (-1e6, 1e6))},
            "material_swap.hints.quad[0]: lies far outside the photo",
        ),
        (
            {"box": pb.Box(x_min=1100, y_min=10, x_max=1500, y_max=700)},
            "material_swap.hints.box: must overlap the photo (1024x768)",
        ),
        (  # a box a pixel or two across found nothing, and the job failed as an empty surface
            {"box": pb.Box(x_min=500, y_min=600, x_max=502, y_max=700)},
            "material_swap.hints.box: must cover at least 8 x 8 pixels of the photo",
        ),
        (  # what counts is the part on the photo
            {"box": pb.Box(x_min=1020, y_min=10, x_max=1500, y_max=700)},
            "material_swap.hints.box: must cover at least 8 x 8 pixels of the photo",
        ),
    ],
)
def test_a_photo_given_by_url_meets_the_hint_checks_of_one_given_inline(
    monkeypatch: pytest.MonkeyPatch, hints: dict[str, Any], message: str
) -> None:
    """Submit checks these hints against the photo's size only when it knows the size; a photo
    given by URL is checked when it arrives, before any stage is called, naming the field as
    submit would (not a stage's crash, or a stage's own field names)."""
    assert failure_of(swap_by_url(**hints), monkeypatch, image(1024, 768)).message == message


def test_a_webp_output_of_a_photo_given_by_url_too_wide_for_webp_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    request = swap_by_url(quad=points((100, 20), (16000, 20), (16300, 60), (20, 60)))
    request.output.format = pb.IMAGE_FORMAT_WEBP
    failure = failure_of(request, monkeypatch, image(16400, 64))
    assert failure.message.startswith("output.format: WebP holds at most 16383 px a side")


def test_a_box_that_leaves_no_background_is_named_in_the_job_s_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The segmentation stage's refusal of a box reaches the job's submitter under the box's own
    field, through the stage's real refusal and the gateway's reading of it."""

    class ServicerContext:
        async def abort(self, code: grpc.StatusCode, message: str, trailing_metadata: Any = ()) -> None:
            metadata = grpc.aio.Metadata(*trailing_metadata)
            raise grpc.aio.AioRpcError(code, grpc.aio.Metadata(), metadata, details=message)

    class Segmentation:
        async def Segment(self, request: Any, timeout: float) -> Any:
            return await SegmentationServicer(None).Segment(request, ServicerContext())  # type: ignore[arg-type]

    photo = imaging.encode(np.random.default_rng(0).integers(0, 255, (240, 320, 3), np.uint8))[0]
    request = pb.SubmitRenderRequest(
        material_swap=pb.MaterialSwap(
            photo=pb.ImageSource(data=b"inline"),
            swatch=pb.ImageSource(data=b"inline"),
            hints=pb.SurfaceHints(box=pb.Box(x_min=0, y_min=0, x_max=320, y_max=240)),  # the whole photo
        )
    )
    inline = {"material_swap.photo": photo, "material_swap.swatch": image(64, 64)}

    async def body() -> None:
        stages = type("Stages", (), {"segmentation": Segmentation(), "connected": lambda _, s: True})()
        ctx = job_run(JobContext, request, inline, cast(StageClients, stages))
        await run_material_swap(ctx)

    with pytest.raises(JobFailure) as info:
        asyncio.run(body())
    assert info.value.code == pb.ERROR_CODE_VALIDATION_FAILED
    assert info.value.message == (
        "material_swap.hints.box: cannot find the surface: the hints leave no background to contrast the surface with"
    )


def test_clicks_in_a_box_around_the_whole_photo_get_the_exif_focal_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """A box around nearly the whole photo leaves the surface to the clicks, whose search for the
    plane takes the EXIF's focal length: the servicer sent it only without a box (a review)."""
    import io

    from PIL import Image as PILImage

    from render.imaging.v1 import imaging_pb2
    from render.segmentation.v1 import segmentation_service_pb2 as seg_pb
    from services.segmentation import server as segmentation_server

    given: list[float] = []

    def select(
        photo: Any, box: Any, positives: Any, negatives: Any, prior: Any, focal: float, surface: str = ""
    ) -> np.ndarray:
        given.append(focal)
        return np.full(photo.shape[:2], 255, np.uint8)

    monkeypatch.setattr(segmentation_server, "select_surface", select)
    exif = PILImage.Exif()
    exif.get_ifd(0x8769)[0xA405] = 26  # a 26 mm equivalent
    out = io.BytesIO()
    PILImage.fromarray(np.random.default_rng(1).integers(0, 255, (240, 320, 3), np.uint8)).save(out, "JPEG", exif=exif)

    for box in (None, imaging_pb2.Box(x_min=0, y_min=0, x_max=320, y_max=240)):
        request = seg_pb.SegmentRequest(
            photo=out.getvalue(), width=320, height=240, positive_points=[imaging_pb2.Point(x=160, y=200)]
        )
        if box is not None:
            request.box.CopyFrom(box)
        asyncio.run(SegmentationServicer(None).Segment(request, None))  # type: ignore[arg-type]
    assert len(given) == 2 and given[0] == given[1] > 0
