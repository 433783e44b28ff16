"""ProjectionService: decode, project, encode the requested renditions."""

from __future__ import annotations

import asyncio

import grpc

from render.projection.v1 import projection_service_pb2 as pb
from render.projection.v1 import projection_service_pb2_grpc as pb_grpc
from renderkit import homography, imaging
from renderkit.errors import abort, bad_request
from renderkit.material_maps import material_map_images
from services.common.stage import StageServer, StageSettings, build_server
from services.projection.composite import project_material
from services.projection.layouts import Layout

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ProjectionService"].full_name


def _project(request: pb.ProjectRequest) -> list:  # type: ignore[type-arg]
    photo = imaging.decode_bgr(request.photo)
    swatch = imaging.decode_bgr(request.swatch)
    mask = imaging.decode_gray(request.mask_png)
    if mask.shape != photo.shape[:2]:
        raise ValueError("mask_png: must be the size of the photo")
    H = homography.from_list(list(request.homography.m))
    layout = Layout(row_offset=request.row_offset, herringbone=request.herringbone)
    result = project_material(
        photo, swatch, mask, H, request.repeats_u, request.repeats_v, request.rotation_degrees, layout
    )
    images = imaging.encode_renditions(result, request.output)
    if request.material_maps:
        images += material_map_images(swatch)
    return images


class ProjectionServicer(pb_grpc.ProjectionServiceServicer):
    """Maps the swatch onto the surface."""

    async def Project(
        self,
        request: pb.ProjectRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.ProjectResponse:
        if not 0.0 <= request.row_offset < 1.0:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "row_offset must be in [0, 1)",
                bad_request([("row_offset", "must be at least 0 and less than 1")]),
            )
        if request.repeats_u <= 0 or request.repeats_v <= 0:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "repeats must be positive",
                bad_request([("repeats_u", "must be positive"), ("repeats_v", "must be positive")]),
            )
        try:
            images = await asyncio.to_thread(_project, request)
        except (imaging.ImageError, homography.GeometryError, ValueError) as exc:
            field = str(exc).split(":", 1)[0] if ":" in str(exc) else "photo"
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc), bad_request([(field, str(exc))]))
        return pb.ProjectResponse(images=images)


def create_server(settings: StageSettings) -> StageServer:
    """A projection server bound to settings.listen (port 0 picks a free port)."""

    return build_server(
        settings,
        [SERVICE_NAME],
        lambda s: pb_grpc.add_ProjectionServiceServicer_to_server(ProjectionServicer(), s),
    )
