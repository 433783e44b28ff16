"""ProjectionService: decode, project, encode the requested renditions.

The photo's light comes from an intrinsic-decomposition model on Triton where one is deployed
(renderkit.triton.INTRINSIC; with TRITON_URL set, as the other stages: Triton down means
UNAVAILABLE, never a silent change of estimate), else from the classical estimate
(services.projection.shading). The response's shading_source says which.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import NamedTuple, TypeVar

import grpc
import numpy as np

from render.imaging.v1 import imaging_pb2
from render.projection.v1 import projection_service_pb2 as pb
from render.projection.v1 import projection_service_pb2_grpc as pb_grpc
from renderkit import budget, homography, imaging
from renderkit.edge import Edge
from renderkit.errors import InputError, abort, bad_request
from renderkit.material_maps import material_map_images
from renderkit.shared_work import WORKERS
from renderkit.triton import INTRINSIC, ModelOutputError, TritonError, TritonModels, to_pixel_values
from services.common.admission import MemoryGate, report
from services.common.stage import MAX_OUTLINE_POINTS, StageSettings, model_stage_edge, points, points_problem
from services.projection.composite import Sampling, composite
from services.projection.layouts import Layout
from services.projection.shading import Shading, from_model

T = TypeVar("T")
log = logging.getLogger(__name__)
# Far more than any request's (the gateway allows 10,000 across a surface): beyond it a swatch is
# finer than any photo's pixel, and the numbers stop being safe to sample with.
MAX_REPEATS = 1e6
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ProjectionService"].full_name

# Decodes beside the photo's (OpenCV's decoders release the GIL), as many at once as the stage's
# pools have workers: on one thread, every request's swatch waited behind the one before, so one
# slow swatch (a 40 MP PNG, or a JPEG of the most scans the probe allows) held up every request.
_DECODER = ThreadPoolExecutor(WORKERS, thread_name_prefix="projection-decode")


def _project(
    request: pb.ProjectRequest,
    photo_data: bytes,
    swatch_data: bytes,
    mask_data: bytes,
    photo_info: imaging.ImageInfo | None = None,
) -> pb.ProjectResponse:
    """The composite's renditions (and the swatch's maps), the swatch's transparent share, and
    which estimate of the photo's light shaded it (the classical one: no model here). `photo_info`:
    the photo's probe, where the caller has made it."""
    return _render(request, _decode_inputs(request, photo_data, swatch_data, mask_data, photo_info))


class _Inputs:
    """The decoded photo, swatch (and its transparent share) and mask of one request, and the
    material's sampling, already under way. _render takes the photo and the mask out of it, so they
    are freed as soon as the composite is made; `discard` drops the sampling of a request that ends
    before it is rendered."""

    def __init__(
        self,
        photo: np.ndarray,
        swatch: np.ndarray,
        transparent: float,
        mask: np.ndarray,
        sampling: Sampling,
        alpha: np.ndarray | None = None,
    ) -> None:
        self.photo, self.swatch, self.transparent, self.mask = photo, swatch, transparent, mask
        self.sampling = sampling
        self.alpha = alpha  # the swatch's, kept for its maps only: where it is transparent lies lower

    def discard(self) -> None:
        self.sampling.cancel()


def _decode_inputs(
    request: pb.ProjectRequest,
    photo_data: bytes,
    swatch_data: bytes,
    mask_data: bytes,
    photo_info: imaging.ImageInfo | None = None,
) -> _Inputs:
    """Decodes the swatch and the mask, or draws the outline, and starts sampling the material
    from them, all beside the photo's decode: sampling needs no photo, so the photo's decode (and
    the intrinsic model, where one is deployed) overlap it. Names the field that fails (the photo
    first when several do). `photo_info`: the photo's probe, where the caller has made it."""
    H = homography.from_list(list(request.homography.m))
    layout = Layout(row_offset=request.row_offset, herringbone=request.herringbone, tile_aspect=request.tile_aspect)
    # Without a mask, the outline at the photo's size as decoded (EXIF orientation applied: the
    # probe's size). The servicer's check probed it already: probed again, a camera's 4K JPEG
    # would hold the decodes back by ~1 ms.
    size = None if mask_data else photo_info or _decoded("photo", lambda: imaging.probe(photo_data))

    def begin() -> tuple[np.ndarray, float, np.ndarray, Sampling, np.ndarray | None]:
        # The grout fills the swatch's transparent parts before anything samples it, so the tiles,
        # their maps and their mip levels all see the same colour there; the maps also lay them lower.
        swatch, transparent, alpha = _decoded("swatch", lambda: _swatch_layers(request, swatch_data))
        if size is None:
            mask = _decoded("mask_png", lambda: imaging.decode_gray(mask_data))
        else:
            mask = imaging.polygon_mask(points(request.outline), size.width, size.height)
        sampling = Sampling(swatch, mask, H, request.repeats_u, request.repeats_v, request.rotation_degrees, layout)
        return swatch, transparent, mask, sampling, alpha

    begun = _DECODER.submit(begin)
    try:
        photo = _decoded("photo", lambda: imaging.decode_bgr(photo_data))
    except BaseException:  # a photo that cannot be decoded is the error to report
        wait([begun])
        if begun.exception() is None:
            begun.result()[3].cancel()
        raise
    swatch, transparent, mask, sampling, alpha = begun.result()
    if mask.shape != photo.shape[:2]:
        sampling.cancel()
        raise InputError("mask_png: must be the size of the photo")
    return _Inputs(photo, swatch, transparent, mask, sampling, alpha)


def _swatch_layers(request: pb.ProjectRequest, data: bytes) -> tuple[np.ndarray, float, np.ndarray | None]:
    """The swatch over its grout, its transparent share, and its alpha when its maps are asked for."""
    if request.material_maps:
        return imaging.decode_swatch_layers(data, request.grout_color)
    return (*imaging.decode_swatch(data, request.grout_color), None)


def _render(
    request: pb.ProjectRequest, inputs: _Inputs, model_shading: np.ndarray | None = None, fallback: str = ""
) -> pb.ProjectResponse:
    """Lights and blends the material sampled for the inputs, by the intrinsic model's shading when
    given (else the classical estimate), and encodes the renditions. `fallback`: why a deployed
    model's shading is not given."""
    photo, swatch, mask = inputs.photo, inputs.swatch, inputs.mask
    inputs.photo = inputs.mask = np.empty(0, np.uint8)  # the composite replaces the photo below
    shading = None
    if model_shading is not None:
        try:
            shading = from_model(model_shading, mask, photo)
        except ValueError as exc:  # the model's fault, not the request's: the classical light instead
            log.warning("the intrinsic model's shading is unusable (%s); using the classical estimate", exc)
            fallback = f"the intrinsic model's shading was unusable ({exc})"
    # The composite is written over the decoded photo: no second full-size image.
    used: list[Shading] = []
    result = composite(photo, inputs.sampling, out=photo, shading=shading, on_shading=used.append)
    del photo, mask  # the encoders and the maps need only the result and the swatch
    images = imaging.encode_renditions(result, request.output)
    del result
    if request.material_maps:
        images += material_map_images(swatch, inputs.alpha)
    source, coloured = light_of(used)
    return pb.ProjectResponse(
        images=images,
        swatch_transparent_fraction=inputs.transparent,
        shading_source=source,
        patch_colour=coloured,
        model_fallback_reason=fallback,
    )


def light_of(used: list[Shading]) -> tuple[str, bool]:
    """Which estimate shaded the material ("" where none did: no pixel of the surface was drawn),
    and whether it carried a sharp-edged light's colour."""
    if not used:
        return "", False
    return used[0].method, used[0].colour is not None


def _decoded(field: str, decode: Callable[[], T]) -> T:
    """A decode whose failure names its request field (the servicer reports it as the field's)."""
    try:
        return decode()
    except imaging.ImageError as exc:
        raise InputError(f"{field}: {exc}") from None


class _Checked(NamedTuple):
    """What the inputs' headers tell: a problem as (field, description), or the memory the
    projection needs and the photo's probe (which the decode reuses)."""

    problem: tuple[str, str] | None
    need: int = 0
    photo: imaging.ImageInfo | None = None


def _inputs_problem(
    photo: bytes,
    swatch: bytes,
    mask: bytes,
    material_maps: bool,
    budget_bytes: int,
    outline: Sequence[imaging_pb2.Point] = (),
    output: imaging_pb2.OutputSpec | None = None,
) -> _Checked:
    """What is wrong with the inputs as their headers tell it, as (field, description), before any
    pixel is decoded: a refused image, a mask of another size (or no mask and no usable outline),
    an output the composite cannot be encoded as, or more memory than the budget; and, when
    nothing is, the memory the projection needs (renderkit.budget) and the photo's probe."""
    infos: dict[str, imaging.ImageInfo] = {}
    images = (("photo", photo), ("swatch", swatch)) + ((("mask_png", mask),) if mask else ())
    for field, data in images:
        try:
            infos[field] = imaging.probe(data)
        except imaging.ImageError as exc:
            return _Checked((field, str(exc)))
    photo_info = infos["photo"]
    if mask:
        mask_info = infos["mask_png"]
        if (mask_info.width, mask_info.height) != (photo_info.width, photo_info.height):
            return _Checked(("mask_png", "must be the size of the photo"))
    else:
        problem = _outline_problem(outline, photo_info)
        if problem is not None:
            return _Checked(problem)
    if output is not None:
        problem = imaging.output_problem(output, photo_info.width, photo_info.height)
        if problem is not None:
            return _Checked(problem)
    photo_pixels, swatch_info = photo_info.pixels, infos["swatch"]
    need = budget.projection_bytes(photo_pixels, swatch_info.pixels, material_maps)
    if need <= budget_bytes:
        return _Checked(None, need, photo_info)
    # The photo is to blame unless the swatch alone does not fit.
    if budget.projection_bytes(0, swatch_info.pixels, material_maps) <= budget_bytes:
        field, info = "photo", photo_info
        largest = budget.largest_pixels(
            lambda px: budget.projection_bytes(px, swatch_info.pixels, material_maps), budget_bytes
        )
    else:
        field, info = "swatch", swatch_info
        largest = budget.largest_pixels(
            lambda px: budget.projection_bytes(photo_pixels, px, material_maps), budget_bytes
        )
    return _Checked((field, budget.over_budget_text(info.width, info.height, field, need, budget_bytes, largest)), need)


def _outline_problem(outline: Sequence[imaging_pb2.Point], photo: imaging.ImageInfo) -> tuple[str, str] | None:
    """What is wrong with an outline standing in for the mask, as (field, description)."""
    if not outline:
        return "mask_png", "required (or an outline)"
    if not 3 <= len(outline) <= MAX_OUTLINE_POINTS:
        return "outline", f"needs 3 to {MAX_OUTLINE_POINTS} points, got {len(outline)}"
    # As far outside the photo as the gateway lets a quad's corner be; drawing stays cheap.
    return points_problem("outline", outline, photo.width, photo.height, outline=True)


class ProjectionServicer(pb_grpc.ProjectionServiceServicer):
    """Maps the swatch onto the surface, refusing from the headers what would not fit in the
    memory budget of one request (the gateway checks it at submit too: this is defence in depth)."""

    def __init__(
        self,
        memory_budget_bytes: int = budget.DEFAULT_REQUEST_BYTES,
        triton: TritonModels | None = None,
        gate: MemoryGate | None = None,
    ) -> None:
        self.memory_budget_bytes = memory_budget_bytes
        self.triton = triton
        self.gate = gate or MemoryGate(None)

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
        if not math.isfinite(request.rotation_degrees):
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "rotation_degrees must be finite",
                bad_request([("rotation_degrees", "must be a finite number of degrees")]),
            )
        if not (request.tile_aspect >= 0 and math.isfinite(request.tile_aspect)):  # NaN too
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "tile_aspect must be 0 (the swatch's own) or positive",
                bad_request([("tile_aspect", "must be 0 (the swatch's own) or a finite positive ratio")]),
            )
        try:
            homography.from_list(list(request.homography.m))
        except homography.GeometryError as exc:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"homography: {exc}",
                bad_request([("homography", str(exc))]),
            )
        outside = [name for name in ("repeats_u", "repeats_v") if not 0 < getattr(request, name) <= MAX_REPEATS]
        if outside:  # NaN too
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"repeats must be positive and at most {MAX_REPEATS:g}",
                bad_request([(name, f"must be more than 0 and at most {MAX_REPEATS:g}") for name in outside]),
            )
        try:
            imaging.grout_bgr(request.grout_color)
        except ValueError as exc:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"grout_color: {exc}",
                bad_request([("grout_color", str(exc))]),
            )
        # Each access to a bytes field copies it: read the images once.
        photo, swatch, mask = request.photo, request.swatch, request.mask_png
        problem, need, photo_info = _inputs_problem(
            photo, swatch, mask, request.material_maps, self.memory_budget_bytes, request.outline, request.output
        )
        if problem is not None:
            await abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"{problem[0]}: {problem[1]}", bad_request([problem])
            )
        try:
            model_deployed = self.triton is not None and await self.triton.model_deployed(INTRINSIC.name)
        except TritonError as exc:  # Triton is down or reloading: retry later, never light it another way
            await abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        # Other calls' work may have to finish first.
        projected = self._projected(request, context, photo, swatch, mask, photo_info, model_deployed)
        return await self.gate.run(need, projected)

    async def _projected(
        self,
        request: pb.ProjectRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        photo: bytes,
        swatch: bytes,
        mask: bytes,
        photo_info: imaging.ImageInfo | None,
        model_deployed: bool,
    ) -> pb.ProjectResponse:
        try:
            if model_deployed:
                inputs = await asyncio.to_thread(_decode_inputs, request, photo, swatch, mask, photo_info)
                fallback = ""
                try:
                    model_shading = await self._model_shading(inputs.photo)
                except ModelOutputError as exc:  # the model's fault: the classical light instead
                    log.warning("the intrinsic model's answer is unusable (%s); using the classical estimate", exc)
                    model_shading, fallback = None, f"the intrinsic model's answer was unusable ({exc})"
                except BaseException:
                    inputs.discard()
                    raise
                response = await asyncio.to_thread(_render, request, inputs, model_shading, fallback)
            else:
                # Nothing needs the event loop between decoding and rendering: one thread hop.
                # (Measured against two hops at 1024²: the same within the noise, 110 / 115 ms.)
                response = await asyncio.to_thread(_project, request, photo, swatch, mask, photo_info)
        except TritonError as exc:
            await abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        except (imaging.ImageError, homography.GeometryError, InputError) as exc:
            field = str(exc).split(":", 1)[0] if ":" in str(exc) else "photo"
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc), bad_request([(field, str(exc))]))
        return response

    async def _model_shading(self, photo: np.ndarray) -> np.ndarray:
        """The intrinsic model's shading of the photo (at the model's size)."""
        assert self.triton is not None
        pixel_values = await asyncio.to_thread(to_pixel_values, photo, INTRINSIC.input_size)
        output = await self.triton.infer(INTRINSIC, {"pixel_values": pixel_values})
        return np.asarray(output[INTRINSIC.outputs[0].name][0, 0], np.float32)


def create_server(settings: StageSettings) -> Edge:
    """A projection server bound to settings.listen (port 0 picks a free port)."""
    gate = MemoryGate(settings.memory_allowance_bytes)
    report(gate)
    return model_stage_edge(
        settings,
        SERVICE_NAME,
        (INTRINSIC.name,),
        lambda server, triton: pb_grpc.add_ProjectionServiceServicer_to_server(
            ProjectionServicer(settings.memory_budget_bytes, triton, gate),
            server,
        ),
    )
