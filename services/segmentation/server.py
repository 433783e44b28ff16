"""SegmentationService: the surface's soft mask from a client mask, an outline (polygon or quad),
clicks and a box, or the Triton segmentation model, alone or fused with those hints.

Clicks and a box go to the prompt segmentation models (a Segment Anything encoder and decoder) when
both are deployed (source "prompt_points" or "prompt_box"); otherwise to the model-free path of
services.segmentation.interactive ("points" or "box"), seeded by the semantic model's labels when
that one is deployed and the surface named. With the photo, every mask's edge is refined against it
(guided filter). With a named surface and the semantic model: an outline loses what the model sees
standing in front of the surface, and clicks override the model's labels where they disagree. A
client mask is authoritative.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
import numpy as np

from render.segmentation.v1 import segmentation_service_pb2 as pb
from render.segmentation.v1 import segmentation_service_pb2_grpc as pb_grpc
from renderkit import budget, imaging
from renderkit.edge import Edge
from renderkit.errors import InputError, abort, bad_request, error_info
from renderkit.triton import SEGMENTATION, ModelOutputError, TritonError, TritonModels, to_pixel_values
from services.common.admission import MemoryGate, report
from services.common.stage import (
    StageSettings,
    box_of,
    box_problem,
    model_stage_edge,
    points,
    points_problem,
    size_problem,
)
from services.segmentation.interactive import refine_edges, select_surface
from services.segmentation.masks import (
    ADE20K_SURFACE_CLASSES,
    exclude_occluders,
    probability_to_mask,
    surface_probability,
)
from services.segmentation.prompting import MODELS as PROMPT_MODELS
from services.segmentation.prompting import prompted_mask

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SegmentationService"].full_name


# A client's mask decoded: up to four channels, then its alpha or its grey copied out.
_MASK_DECODE_BYTES_PER_PIXEL = 6


async def _header_pixels(data: bytes) -> int:
    """An image's pixels by its header (0: none, or not an image: refused inside, as its decode finds it)."""
    if not data:
        return 0
    with contextlib.suppress(imaging.ImageError):
        return (await asyncio.to_thread(imaging.probe, data)).pixels
    return 0


# A semantic model's logits differ by whole units between a surface and what is not it; below this
# spread everywhere, the model saw nothing.
FLAT_LOGITS = 1e-3


class SegmentationServicer(pb_grpc.SegmentationServiceServicer):
    """Turns hints (or the model's classes) into a soft mask at the photo's size."""

    def __init__(self, triton: TritonModels | None, gate: MemoryGate | None = None) -> None:
        self.triton = triton
        self.gate = gate or MemoryGate(None)

    async def Segment(self, request: pb.SegmentRequest, context: grpc.aio.ServicerContext) -> pb.SegmentResponse:  # type: ignore[type-arg]
        # Other calls' work may have to finish first: a photo's refinement holds ~50 bytes a pixel,
        # a mask drawn from an outline alone little more than the mask. The need counts the photo's
        # own size, from its header, when it is larger than the one declared (checked against it
        # inside): a caller declaring 64x48 for a 40 MP photo was admitted at 64x48's cost.
        problem = size_problem(request.width, request.height)
        if problem is not None:  # before the gate: a huge size waited for every call ahead of it
            await abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"{problem[0]}: {problem[1]}", bad_request([problem])
            )
        pixels = request.width * request.height
        photo_pixels = await _header_pixels(request.photo)
        mask_pixels = await _header_pixels(request.mask)
        pixels = max(pixels, photo_pixels, mask_pixels)
        # A client's mask is decoded as it is stored (RGBA: 4 bytes a pixel, and its alpha copied).
        need = (
            budget.FIXED_BYTES + budget.SEGMENTATION_BYTES_PER_PIXEL * pixels
            if request.photo
            else max(2 * pixels, _MASK_DECODE_BYTES_PER_PIXEL * mask_pixels)
        )
        return await self.gate.run(need, self._segment(request, context))

    async def _segment(self, request: pb.SegmentRequest, context: grpc.aio.ServicerContext) -> pb.SegmentResponse:  # type: ignore[type-arg]
        width, height = request.width, request.height
        problem = size_problem(width, height) or box_problem(request.box, width, height)
        for field, values, corners in (
            ("positive_points", request.positive_points, False),
            ("negative_points", request.negative_points, False),
            ("polygon", request.polygon, True),
            ("quad", request.quad, True),
        ):
            problem = problem or points_problem(field, values, width, height, outline=corners)
        if problem is not None:
            await abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"{problem[0]}: {problem[1]}", bad_request([problem])
            )
        box = box_of(request.box, width, height)
        clicks = bool(request.positive_points) or box is not None
        if clicks and not request.photo:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "points and boxes need the photo",
                bad_request([("photo", "required with positive_points or box")]),
            )
        # A client's mask is decoded beside the photo (OpenCV releases the GIL); the photo's errors
        # are reported first, and a mask's failure is kept for its branch below.
        mask_decoded: asyncio.Future[np.ndarray] | None = None
        if request.mask:
            mask_decoded = asyncio.ensure_future(asyncio.to_thread(imaging.decode_gray, request.mask))
            mask_decoded.add_done_callback(lambda done: done.cancelled() or done.exception())
        photo: np.ndarray | None = None
        if request.photo:
            try:
                photo = await asyncio.to_thread(imaging.decode_bgr, request.photo)
            except imaging.ImageError as exc:
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc), bad_request([("photo", str(exc))]))
            assert photo is not None
            if photo.shape[:2] != (height, width):
                await abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the photo is {photo.shape[1]}x{photo.shape[0]}, not {width}x{height}",
                    bad_request([("photo", "must be width x height")]),
                )
        try:
            # Clicks and a box go to the prompt models when both are deployed (no semantic model then).
            prompted = clicks and not request.mask and await self._prompt_models_ready()
            model_deployed = (
                not prompted
                and request.surface in ADE20K_SURFACE_CLASSES
                and self.triton is not None
                and await self.triton.model_deployed(SEGMENTATION.name)
            )
        except TritonError as exc:  # Triton is down or reloading: retry later, not as if no model existed
            await abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        # A client mask is authoritative: no inference for it.
        use_model = model_deployed and photo is not None and not request.mask
        unusable = ""  # why a deployed model's answer was not used (its fault: the hints alone instead)
        try:
            probability = await self._surface_probability(photo, request.surface) if use_model else None
        except ModelOutputError as exc:
            # Not UNAVAILABLE: the same photo gets the same answer, and the job retried it until
            # its deadline. The hints alone make the mask where there are any.
            log.warning("the segmentation model's answer is unusable (%s); using the hints alone", exc)
            probability, unusable = None, f"the segmentation model's answer was unusable ({exc})"
        except TritonError as exc:
            await abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))

        if mask_decoded is not None:  # the client's own mask is authoritative; only its edge is refined
            try:
                mask = await mask_decoded
            except imaging.ImageError as exc:
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc), bad_request([("mask", str(exc))]))
            if mask.shape != (height, width):
                await abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the mask is {mask.shape[1]}x{mask.shape[0]}, the photo {width}x{height}",
                    bad_request([("mask", "must be the size of the photo")]),
                )
            return await self._respond(await self._refined(photo, mask), "mask")
        if clicks:
            assert photo is not None
            hint = "points" if box is None else "box"
            if prompted:
                assert self.triton is not None
                try:
                    mask, _ = await prompted_mask(
                        self.triton, photo, box, points(request.positive_points), points(request.negative_points)
                    )
                    return await self._respond(mask, f"prompt_{hint}", used_model=True)
                except ModelOutputError as exc:  # the model's fault: the model-free path below
                    log.warning(
                        "the prompt segmentation model's answer is unusable (%s); using the model-free path", exc
                    )
                    unusable = f"the prompt segmentation model's answer was unusable ({exc})"
                except TritonError as exc:
                    await abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))

            def select(photo: np.ndarray) -> np.ndarray:
                # Clicks alone look for the plane (so do clicks in a box around nearly the whole
                # photo, which select_surface leaves to them): the EXIF's focal length helps (0 when
                # it has none). select_surface uses it on that path only. The gateway sends it (a
                # HEIC comes as a JPEG without EXIF); from an older one, the photo's own is read.
                alone = probability is None and len(request.positive_points) > 0
                focal = (request.exif_focal_length_px or imaging.probe(request.photo).focal_length_px) if alone else 0.0
                positives, negatives = points(request.positive_points), points(request.negative_points)
                # The surface's name lets clicks alone keep a floor below its junction with the walls.
                return select_surface(photo, box, positives, negatives, probability, focal, request.surface)

            try:
                mask = await asyncio.to_thread(select, photo)
            except InputError as exc:
                # The box bounds what can be the surface; without one, the clicks are what found nothing.
                field = "box" if box is not None else "positive_points"
                await abort(
                    context,
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"cannot find the surface: {exc}",
                    bad_request([(field, str(exc))]),
                )
            return await self._respond(mask, hint, used_model=probability is not None, fallback=unusable)
        outline = request.polygon if len(request.polygon) >= 3 else request.quad if len(request.quad) == 4 else None
        if outline is not None:
            mask = await asyncio.to_thread(imaging.polygon_mask, points(outline), width, height)
            excluded = 0.0
            if probability is not None:
                mask, excluded = await asyncio.to_thread(exclude_occluders, mask, probability)
            source = "polygon" if len(request.polygon) >= 3 else "quad"
            return await self._respond(
                await self._refined(photo, mask),
                source,
                used_model=probability is not None,
                excluded=excluded,
                fallback=unusable,
            )
        if probability is not None:
            mask = await asyncio.to_thread(probability_to_mask, probability, width, height)
            return await self._respond(await self._refined(photo, mask), "model", used_model=True)
        if model_deployed and not request.photo:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "the model path needs the photo",
                bad_request([("photo", "required when no mask, polygon or quad is given")]),
            )
        named = request.surface in ADE20K_SURFACE_CLASSES
        await abort(
            context,
            grpc.StatusCode.FAILED_PRECONDITION,
            "cannot find the surface: provide a mask, a polygon, a quad, points or a box"
            + ("" if request.surface else ", or name the surface")
            + (f" ({unusable})" if unusable else "")
            + " (the segmentation model is not deployed)" * (named and not unusable),
            # A surface named alone needs the model: its absence, or an unusable answer from it, is
            # this deployment's fault, not the caller's (the job is refunded, not charged as a bad
            # request).
            *([error_info("PIPELINE_ERROR")] if named or unusable else []),
        )
        raise AssertionError("unreachable")

    async def _prompt_models_ready(self) -> bool:
        """Whether the prompt encoder and decoder are both deployed (TritonError: Triton is down,
        or one of them is loading again)."""
        if self.triton is None:
            return False
        return all([await self.triton.model_deployed(name) for name in PROMPT_MODELS])

    async def _surface_probability(self, photo: np.ndarray | None, surface: str) -> np.ndarray:
        """The model's low-resolution probability that each pixel is the surface."""
        assert self.triton is not None and photo is not None
        pixel_values = await asyncio.to_thread(to_pixel_values, photo, SEGMENTATION.input_size)
        outputs = await self.triton.infer(SEGMENTATION, {"pixel_values": pixel_values})
        logits = outputs["logits"][0]
        if float(np.ptp(logits, axis=(1, 2)).max(initial=0.0)) < FLAT_LOGITS:
            # A broken export (or weights never loaded) answers the same at every pixel: no mask
            # can come of it, and the job failed as the caller's empty surface.
            raise ModelOutputError("the segmentation model's logits are the same at every pixel")
        return await asyncio.to_thread(surface_probability, logits, surface)

    @staticmethod
    async def _refined(photo: np.ndarray | None, mask: np.ndarray) -> np.ndarray:
        return mask if photo is None else await asyncio.to_thread(refine_edges, photo, mask)

    async def _respond(
        self, mask: np.ndarray, source: str, used_model: bool = False, excluded: float = 0.0, fallback: str = ""
    ) -> pb.SegmentResponse:
        """The mask and how it was made; `fallback` says why a deployed model's answer was not used."""
        data = await asyncio.to_thread(imaging.encode_mask, mask)
        coverage = float(np.count_nonzero(mask > 127)) / mask.size
        return pb.SegmentResponse(
            mask_png=data,
            source=source,
            coverage=coverage,
            used_model=used_model,
            excluded_fraction=excluded,
            model_fallback_reason=fallback,
        )


def create_server(settings: StageSettings) -> Edge:
    """A segmentation server bound to settings.listen (port 0 picks a free port)."""
    gate = MemoryGate(settings.memory_allowance_bytes)
    report(gate)
    return model_stage_edge(
        settings,
        SERVICE_NAME,
        (SEGMENTATION.name, *PROMPT_MODELS),
        lambda server, triton: pb_grpc.add_SegmentationServiceServicer_to_server(
            SegmentationServicer(triton, gate), server
        ),
    )
