"""SegmentationService: a client mask, a polygon, a quad, or the Triton segmentation model."""

from __future__ import annotations

import asyncio
import logging

import grpc
import numpy as np

from render.segmentation.v1 import segmentation_service_pb2 as pb
from render.segmentation.v1 import segmentation_service_pb2_grpc as pb_grpc
from renderkit import imaging
from renderkit.errors import abort, bad_request
from renderkit.triton import SEGMENTATION, TritonError, TritonModels, to_pixel_values
from services.common.stage import (
    StageServer,
    StageSettings,
    box_of,
    build_model_server,
    points,
)
from services.segmentation.interactive import grabcut_mask
from services.segmentation.masks import ADE20K_SURFACE_CLASSES, probability_to_mask, surface_probability

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SegmentationService"].full_name


class SegmentationServicer(pb_grpc.SegmentationServiceServicer):
    """Turns hints (or the model's classes) into a soft mask at the photo's size."""

    def __init__(self, triton: TritonModels | None) -> None:
        self.triton = triton

    async def Segment(self, request: pb.SegmentRequest, context: grpc.aio.ServicerContext) -> pb.SegmentResponse:  # type: ignore[type-arg]
        width, height = request.width, request.height
        if width <= 0 or height <= 0:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "width and height must be positive",
                bad_request([("width", "must be positive")]),
            )
        if request.mask:
            mask = await asyncio.to_thread(imaging.decode_gray, request.mask)
            if mask.shape != (height, width):
                await abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the mask is {mask.shape[1]}x{mask.shape[0]}, the photo {width}x{height}",
                    bad_request([("mask", "must be the size of the photo")]),
                )
            return await self._respond(mask, "mask")
        if len(request.polygon) >= 3:
            return await self._respond(
                await asyncio.to_thread(imaging.polygon_mask, points(request.polygon), width, height), "polygon"
            )
        box = box_of(request.box)
        if request.positive_points or box is not None:
            if not request.photo:
                await abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "points and boxes need the photo",
                    bad_request([("photo", "required with positive_points or box")]),
                )
            try:
                mask = await asyncio.to_thread(
                    self._interactive,
                    request.photo,
                    box,
                    points(request.positive_points),
                    points(request.negative_points),
                )
            except ValueError as exc:
                await abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"cannot find the surface: {exc}")
            return await self._respond(mask, "points" if box is None else "box")
        if len(request.quad) == 4:
            return await self._respond(
                await asyncio.to_thread(imaging.polygon_mask, points(request.quad), width, height), "quad"
            )
        if (
            request.surface in ADE20K_SURFACE_CLASSES
            and self.triton
            and await self.triton.model_ready(SEGMENTATION.name)
        ):
            if not request.photo:
                await abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "the model path needs the photo",
                    bad_request([("photo", "required when no mask, polygon or quad is given")]),
                )
            try:
                mask = await self._model_mask(request.photo, request.surface, width, height)
            except TritonError as exc:
                await abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
            return await self._respond(mask, "model")
        await abort(
            context,
            grpc.StatusCode.FAILED_PRECONDITION,
            "cannot find the surface: provide a mask, a polygon, a quad, points or a box"
            + ("" if request.surface else ", or name the surface")
            + " (the segmentation model is not deployed)" * (request.surface in ADE20K_SURFACE_CLASSES),
        )
        raise AssertionError("unreachable")

    @staticmethod
    def _interactive(
        photo: bytes, box: tuple[float, float, float, float] | None, positives: np.ndarray, negatives: np.ndarray
    ) -> np.ndarray:
        return grabcut_mask(imaging.decode_bgr(photo), box, positives, negatives)

    async def _model_mask(self, photo: bytes, surface: str, width: int, height: int) -> np.ndarray:
        assert self.triton is not None
        image = await asyncio.to_thread(imaging.decode_bgr, photo)
        pixel_values = await asyncio.to_thread(to_pixel_values, image, SEGMENTATION.input_size)
        outputs = await self.triton.infer(SEGMENTATION, {"pixel_values": pixel_values})
        logits = outputs["logits"][0]
        probability = await asyncio.to_thread(surface_probability, logits, surface)
        return await asyncio.to_thread(probability_to_mask, probability, width, height)

    async def _respond(self, mask: np.ndarray, source: str) -> pb.SegmentResponse:
        data = await asyncio.to_thread(imaging.encode_mask, mask)
        coverage = float(np.count_nonzero(mask > 127)) / mask.size
        return pb.SegmentResponse(mask_png=data, source=source, coverage=coverage)


def create_server(settings: StageSettings) -> StageServer:
    """A segmentation server bound to settings.listen (port 0 picks a free port)."""
    return build_model_server(
        settings,
        SERVICE_NAME,
        lambda server, triton: pb_grpc.add_SegmentationServiceServicer_to_server(SegmentationServicer(triton), server),
    )
