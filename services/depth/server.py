"""DepthService: the plane from a quad (exact), from the Triton depth model's disparity, or from the
vanishing points of the lines on and around the surface."""

from __future__ import annotations

import asyncio
import logging
import math

import grpc
import numpy as np

from render.depth.v1 import depth_service_pb2 as pb
from render.depth.v1 import depth_service_pb2_grpc as pb_grpc
from render.imaging.v1 import imaging_pb2
from renderkit import homography, imaging
from renderkit.edge import Edge
from renderkit.errors import InputError, abort, bad_request, error_info
from renderkit.planes import quad_plane
from renderkit.triton import DEPTH, METRIC_DEPTH, ModelOutputError, TritonError, TritonModels, to_pixel_values
from services.common.stage import (
    StageSettings,
    focal_problem,
    model_stage_edge,
    points,
    points_problem,
    size_problem,
)
from services.depth.outline import outline_contradicts, outline_runs, surface_axis
from services.depth.plane import fit_metric_plane, fit_plane, plane_homography
from services.depth.room_lines import ROOM_SOURCE, room_correction, room_plane
from services.depth.vanishing import (
    EXIF_FOCAL_TOLERANCE,
    LinePlane,
    NoVanishingPoints,
    photo_segments,
    plane_from_lines,
)

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
        refused = [
            problem
            for problem in (
                size_problem(width, height),
                focal_problem("focal_length_px", request.focal_length_px, width, height),
                focal_problem("exif_focal_length_px", request.exif_focal_length_px, width, height),
                None
                if math.isfinite(request.plane_distance_meters) and request.plane_distance_meters >= 0
                else ("plane_distance_meters", "must be a finite number, 0 or more"),
                points_problem("quad", request.quad, width, height, outline=True),
            )
            if problem is not None
        ]
        if refused:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "; ".join(f"{field}: {description}" for field, description in refused),
                bad_request(refused),
            )
        if request.quad:
            quad = points(request.quad)
            problem = homography.quad_problem(quad)
            if problem:
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem, bad_request([("quad", problem)]))
            try:
                return quad_plane(
                    quad,
                    width,
                    height,
                    request.focal_length_px,
                    request.plane_distance_meters,
                    request.exif_focal_length_px,
                )
            except homography.GeometryError as exc:  # a focal length no camera has, say
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc), bad_request([("quad", str(exc))]))
        if not request.photo or not request.mask_png:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "without a quad the plane is estimated from the photo and the surface's mask",
                bad_request([("photo", "required without a quad"), ("mask_png", "required without a quad")]),
            )
        # Both decoded side by side (OpenCV releases the GIL); a bad photo is the error to report.
        decoded: tuple[np.ndarray | BaseException, np.ndarray | BaseException] = await asyncio.gather(
            asyncio.to_thread(imaging.decode_bgr, request.photo),
            asyncio.to_thread(imaging.decode_gray, request.mask_png),
            return_exceptions=True,
        )
        for field, result in zip(("photo", "mask_png"), decoded, strict=True):
            if isinstance(result, imaging.ImageError):
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(result), bad_request([(field, str(result))]))
            if isinstance(result, BaseException):
                raise result
        image, mask = (np.asarray(result) for result in decoded)
        if mask.shape != (height, width) or image.shape[:2] != (height, width):
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "the photo and the mask must be width x height",
                bad_request([("mask_png", "must be the size of the photo")]),
            )
        problems = []
        model_failed = False  # the deployed model's answer was unusable: its fault, not the caller's
        try:
            model_deployed = self.triton is not None and await self.triton.model_deployed(DEPTH.name)
        except TritonError as exc:  # Triton is down or reloading: retry later, never fall back meanwhile
            await abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        if model_deployed:
            try:
                return await self._model_plane(image, mask, request)
            except ModelOutputError as exc:  # the model's fault: the photo's lines instead
                problems.append(f"the depth model's answer was unusable ({exc})")
                model_failed = True
                log.warning("depth model answer unusable, trying the photo's lines: %s", exc)
            except TritonError as exc:
                await abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
            except ValueError as exc:
                why = str(exc) if isinstance(exc, InputError) else "its depth did not fit a plane"
                problems.append(f"the depth model's plane fit failed ({why})")
                log.info("depth model fit failed, trying the photo's lines: %s", exc)
        try:
            plane = await asyncio.to_thread(lines_plane, image, mask, request)
            plane.model_fallback_reason = "; ".join(problems)  # why the deployed model's plane was not used
            return plane
        except NoVanishingPoints as exc:
            problems.append(str(exc))
        await abort(
            context,
            grpc.StatusCode.FAILED_PRECONDITION,
            "cannot estimate the surface's plane: "
            + "; ".join(problems)
            + ". Provide a quad (four corners of a rectangle on the surface)"
            + ("" if self.triton is not None else ", or deploy the depth model"),
            # A model that answers NaN or fails on the photo is this deployment's fault: the job is
            # refunded, not charged as a bad request (a working model would have found the plane).
            *([error_info("PIPELINE_ERROR")] if model_failed else []),
        )
        raise AssertionError("unreachable")

    async def _model_plane(
        self, image: np.ndarray, mask: np.ndarray, request: pb.EstimatePlaneRequest
    ) -> pb.EstimatePlaneResponse:
        assert self.triton is not None
        width, height = request.width, request.height
        metric = METRIC_DEPTH.outputs[0].name in await self.triton.output_names(DEPTH.name)
        contract = METRIC_DEPTH if metric else DEPTH
        pixel_values = await asyncio.to_thread(to_pixel_values, image, contract.input_size)
        prediction = (await self.triton.infer(contract, {"pixel_values": pixel_values}))[contract.outputs[0].name][0]
        focal, focal_source = known_focal(request)
        if not focal:
            focal, focal_source = homography.default_focal(width, height), "assumed"
        if not metric:
            fit = await asyncio.to_thread(fit_plane, prediction, mask, focal, width, height)
            return square_plane(request, fit.homography, fit.side, fit.confidence, "depth_model", focal, focal_source)
        plane = await asyncio.to_thread(fit_metric_plane, prediction, mask, focal, width, height)
        H, side = await asyncio.to_thread(plane_homography, plane.normal, focal, width, height, mask)
        return square_plane(request, H, side, plane.confidence, "depth_model", focal, focal_source, plane.distance)


def known_focal(request: pb.EstimatePlaneRequest) -> tuple[float, str]:
    """The focal length the request knows and where it came from: the client's hint, else the
    photo's EXIF; (0, "") when neither."""
    if request.focal_length_px > 0:
        return request.focal_length_px, "hint"
    if request.exif_focal_length_px > 0:
        return request.exif_focal_length_px, "exif"
    return 0.0, ""


def lines_plane(image: np.ndarray, mask: np.ndarray, request: pb.EstimatePlaneRequest) -> pb.EstimatePlaneResponse:
    """The plane from the vanishing points of the lines on and around the surface; where they give
    none, or one the room's clear verticals contradict, and the camera is known, from the room's
    verticals (services.depth.room_lines). With the camera known, no plane the mask's own outline
    contradicts is given (services.depth.outline.outline_contradicts)."""
    width, height = request.width, request.height
    focal, focal_source = known_focal(request)
    source = "vanishing_lines"
    # Found once: the lines' plane and the room's verticals read the same segments.
    segments = photo_segments(image, mask)
    # Read once: the texture's axis follows the outline's edges, and with the camera known no plane
    # its outline contradicts is given (a marble top's veins made one whose horizon ran along the
    # top's far edge: 22-26° off).
    runs = outline_runs(mask)

    def contradicted(plane: LinePlane) -> bool:
        return bool(focal) and outline_contradicts(runs, plane.normal, plane.focal, width, height)

    try:
        found = plane_from_lines(
            image,
            mask,
            homography.default_focal(width, height),
            given_focal=focal or None,
            # A 35 mm equivalent is rounded: the lines may settle it. A sensor's figures are exact.
            focal_tolerance=EXIF_FOCAL_TOLERANCE
            if focal_source == "exif" and not request.exif_focal_length_exact
            else 0.0,
            surface=request.surface,
            segments=segments,
        )
        if contradicted(found):
            raise NoVanishingPoints("the lines' plane contradicts the surface's outline in the mask")
    except NoVanishingPoints as refusal:
        from_room = room_plane(image, mask, focal, request.surface, segments)
        if from_room is None or contradicted(from_room):
            raise
        try:
            H, side = _homography(from_room, width, height, mask, runs)
        except InputError:  # a surface too small to span the room's plane (a pixel): the refusal stands
            raise refusal from None
        found, source = from_room, ROOM_SOURCE
    else:
        # Lines on a plain surface may make a plane the room's verticals contradict (a plain
        # floor's stray lines: 13-88° off): the room's plane, said so in the source.
        corrected = room_correction(found, image, mask, focal, request.surface, segments)
        if corrected is not None and not contradicted(corrected):
            found, source = corrected, ROOM_SOURCE
        H, side = _homography(found, width, height, mask, runs)
    if not focal:
        focal_source = "lines" if found.focal_from_lines else "assumed"
    return square_plane(request, H, side, found.confidence, source, found.focal, focal_source)


def _homography(
    found: LinePlane, width: int, height: int, mask: np.ndarray, runs: np.ndarray
) -> tuple[np.ndarray, float]:
    """The plane's homography and texture square's side, its axis along the mask's edges (`runs`:
    its outline's, outline.outline_runs)."""
    axis = surface_axis(mask, found.normal, found.axis, found.focal, runs)
    return plane_homography(found.normal, found.focal, width, height, mask, axis=axis)


def square_plane(
    request: pb.EstimatePlaneRequest,
    H: np.ndarray,
    side: float,
    confidence: float,
    source: str,
    focal: float,
    focal_source: str,
    model_distance: float = 0.0,
) -> pb.EstimatePlaneResponse:
    """An estimated plane's response: a square of side `side` (in units of the plane's distance) on
    the surface. The plane is metric when its distance is given (which wins) or measured by a
    metric depth model (model_distance, metres)."""
    distance = request.plane_distance_meters or model_distance
    return pb.EstimatePlaneResponse(
        homography=imaging_pb2.Homography(m=homography.to_list(H)),
        confidence=confidence,
        source=source,
        aspect_ratio=1.0,
        focal_length_px=focal,
        used_depth_model=source == "depth_model",
        meters_per_unit=side * distance,
        focal_source=focal_source,
        distance_source="given" if request.plane_distance_meters else ("depth_model" if model_distance else ""),
    )


def create_server(settings: StageSettings) -> Edge:
    """A depth server bound to settings.listen (port 0 picks a free port)."""
    return model_stage_edge(
        settings,
        SERVICE_NAME,
        (DEPTH.name,),
        lambda server, triton: pb_grpc.add_DepthServiceServicer_to_server(DepthServicer(triton), server),
    )
