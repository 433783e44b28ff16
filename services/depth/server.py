"""DepthService: the plane from a quad (exact) or from the Triton depth model's disparity."""

from __future__ import annotations

import asyncio
import logging

import grpc
import numpy as np

from render.depth.v1 import depth_service_pb2 as pb
from render.depth.v1 import depth_service_pb2_grpc as pb_grpc
from render.imaging.v1 import imaging_pb2
from renderkit import homography, imaging
from renderkit.errors import abort, bad_request
from renderkit.triton import DEPTH, TritonError, TritonModels, to_pixel_values
from services.common.stage import StageServer, StageSettings, build_model_server, points
from services.depth.plane import fit_plane

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DepthService"].full_name


class DepthServicer(pb_grpc.DepthServiceServicer):
    """Estimates the surface's plane."""

    def __init__(self, triton: TritonModels | None) -> None:
        self.triton = triton

    async def EstimatePlane(
        self,
        request: pb.EstimatePlaneRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.EstimatePlaneResponse:
        width, height = request.width, request.height
        if width <= 0 or height <= 0:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "width and height must be positive",
                bad_request([("width", "must be positive")]),
            )
        if request.quad:
            quad = points(request.quad)
            problem = homography.quad_problem(quad)
            if problem:
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem, bad_request([("quad", problem)]))
            return quad_plane(quad, width, height)
        if self.triton is not None and await self.triton.model_ready(DEPTH.name):
            if not request.photo or not request.mask_png:
                await abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "the depth model needs the photo and the mask",
                    bad_request([("photo", "required without a quad"), ("mask_png", "required without a quad")]),
                )
            try:
                return await self._model_plane(request.photo, request.mask_png, width, height)
            except TritonError as exc:
                await abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
            except ValueError as exc:
                await abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"cannot fit the surface's plane: {exc}")
        await abort(
            context,
            grpc.StatusCode.FAILED_PRECONDITION,
            "cannot estimate the surface's plane: provide a quad (the depth model is not deployed)",
        )
        raise AssertionError("unreachable")

    async def _model_plane(self, photo: bytes, mask_png: bytes, width: int, height: int) -> pb.EstimatePlaneResponse:
        assert self.triton is not None
        image = await asyncio.to_thread(imaging.decode_bgr, photo)
        mask = await asyncio.to_thread(imaging.decode_gray, mask_png)
        pixel_values = await asyncio.to_thread(to_pixel_values, image, DEPTH.input_size)
        disparity = (await self.triton.infer(DEPTH, {"pixel_values": pixel_values}))["predicted_depth"][0]
        focal = homography.default_focal(width, height)
        fit = await asyncio.to_thread(fit_plane, disparity, mask, focal, width, height)
        return pb.EstimatePlaneResponse(
            homography=imaging_pb2.Homography(m=homography.to_list(fit.homography)),
            confidence=fit.confidence,
            source="depth_model",
            aspect_ratio=1.0,
            focal_length_px=focal,
            used_depth_model=True,
        )


def quad_plane(quad: np.ndarray, width: int, height: int) -> pb.EstimatePlaneResponse:
    """The exact plane of a quad; the focal length comes from the rectangle when the view fixes it."""
    H = homography.quad_homography(quad)
    focal = homography.focal_from_rectangle(H, width, height) or homography.default_focal(width, height)
    aspect = homography.rectangle_aspect(H, focal, width, height)
    return pb.EstimatePlaneResponse(
        homography=imaging_pb2.Homography(m=homography.to_list(H)),
        confidence=1.0,
        source="quad",
        aspect_ratio=aspect,
        focal_length_px=focal,
    )


def create_server(settings: StageSettings) -> StageServer:
    """A depth server bound to settings.listen (port 0 picks a free port)."""
    return build_model_server(
        settings,
        SERVICE_NAME,
        lambda server, triton: pb_grpc.add_DepthServiceServicer_to_server(DepthServicer(triton), server),
    )
