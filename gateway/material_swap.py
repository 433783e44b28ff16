"""The material-swap plan: segmentation -> depth -> projection (-> generation) -> outputs."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from gateway.fetch import DownloadError, FetchPolicy, fetch
from gateway.ledger import Ledger
from gateway.stages import StageClients
from gateway.validation import Limits, check_image
from render.depth.v1 import depth_service_pb2 as depth_pb
from render.generation.v1 import generation_service_pb2 as generation_pb
from render.imaging.v1 import imaging_pb2
from render.projection.v1 import projection_service_pb2 as projection_pb
from render.segmentation.v1 import segmentation_service_pb2 as segmentation_pb
from render.v1 import render_service_pb2 as pb
from renderkit import imaging
from renderkit.errors import error_reason
from renderkit.scale import DEFAULT_REPEATS, Tiling, tiling_from_repeats, tiling_from_sizes
from renderkit.storage import Storage, StorageError

log = logging.getLogger(__name__)
M = TypeVar("M", bound=Message)

_SURFACE_NAMES = {
    pb.SURFACE_FLOOR: "floor",
    pb.SURFACE_WALL: "wall",
    pb.SURFACE_CEILING: "ceiling",
    pb.SURFACE_FACADE: "facade",
}
_FORMATS = {
    pb.IMAGE_FORMAT_UNSPECIFIED: imaging_pb2.FORMAT_JPEG,
    pb.IMAGE_FORMAT_JPEG: imaging_pb2.FORMAT_JPEG,
    pb.IMAGE_FORMAT_PNG: imaging_pb2.FORMAT_PNG,
    pb.IMAGE_FORMAT_WEBP: imaging_pb2.FORMAT_WEBP,
}
_STAGE_LABELS: dict[int, str] = {
    pb.STAGE_SEGMENTATION: "segmentation",
    pb.STAGE_DEPTH: "depth",
    pb.STAGE_PROJECTION: "projection",
    pb.STAGE_GENERATION: "generation",
}
# Checkpoints larger than this go to storage; Redis keeps their key.
_INLINE_CHECKPOINT_BYTES = 512 * 1024
PREVIEW_SIDE = 512
MATERIAL_MAPS = ("normal", "roughness")


class JobFailure(Exception):
    """Ends a job with a typed error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def failure_from_rpc(stage: int, exc: grpc.aio.AioRpcError, timeout_s: float) -> JobFailure:
    """The job error a failed stage call stands for."""
    label = _STAGE_LABELS.get(stage, "a")
    reason = error_reason(exc)
    if reason and f"ERROR_CODE_{reason}" in pb.ErrorCode.keys():  # noqa: SIM118 (the wrapper is not iterable)
        return JobFailure(pb.ErrorCode.Value(f"ERROR_CODE_{reason}"), exc.details() or f"the {label} stage failed")
    code = exc.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return JobFailure(pb.ERROR_CODE_TIMEOUT, f"the {label} stage took longer than {timeout_s:g} s")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
        return JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, exc.details() or f"the {label} stage refused the input")
    if code == grpc.StatusCode.UNAVAILABLE:
        return JobFailure(pb.ERROR_CODE_PIPELINE_ERROR, f"the {label} stage is unavailable")
    return JobFailure(pb.ERROR_CODE_PIPELINE_ERROR, f"the {label} stage failed")


@dataclass
class JobContext:
    """What one run of a job needs: its request, its owner's identity and the services."""

    job_id: str
    owner: str
    tenant: str
    request: pb.SubmitRenderRequest
    inputs: dict[str, str]
    ledger: Ledger
    storage: Storage
    stages: StageClients
    fetch_policy: FetchPolicy
    limits: Limits
    default_stage_timeout_s: float
    deadline: float  # event-loop time
    geometry_cache_version: str = "1"
    geometry_cache_s: float = 0.0
    total_steps: int = 0
    reused: set[str] = field(default_factory=set)

    def stage_timeout(self, stage: int) -> float:
        """The deadline of a stage call: the stage budget, capped by what is left of the job's."""
        options = self.request.material_swap.options
        budget = (
            options.stage_timeout_seconds if options.HasField("stage_timeout_seconds") else self.default_stage_timeout_s
        )
        left = self.deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise JobFailure(pb.ERROR_CODE_TIMEOUT, "the job ran out of time")
        return min(budget, left)

    async def step(self, step: int, stage: int, text: str, checkpoint: str = "") -> None:
        """Announces a step ("Step 2/4: estimating geometry"), saying so when a checkpoint replaces it."""
        message = f"Step {step}/{self.total_steps}: {text}"
        if checkpoint in self.reused:
            message += " (reused from an earlier render of this photo)"
        elif checkpoint and await self.ledger.checkpoint(self.job_id, checkpoint) is not None:
            message += " (resumed from checkpoint)"
        await self._event(step, stage, message, done=False)

    async def detail(self, step: int, stage: int, text: str) -> None:
        """Reports what a finished step found (stage progress 1), as "Step 2/4: plane from the quad ..."."""
        await self._event(step, stage, f"Step {step}/{self.total_steps}: {text}", done=True)

    async def _event(self, step: int, stage: int, message: str, done: bool) -> None:
        await self.ledger.progress(
            self.job_id,
            self.owner,
            stage=stage,
            step=step,
            total_steps=self.total_steps,
            progress=(step if done else step - 1) / self.total_steps,
            stage_progress=1.0 if done else 0.0,
            message=message,
        )

    async def call(self, stage: int, name: str, kind: type[M], rpc: Callable[[float], Awaitable[M]]) -> M:
        """A stage call with its deadline, its output checkpointed (and reused when resuming)."""
        saved = await self._load_checkpoint(name)
        if saved is not None:
            message = kind()
            message.ParseFromString(saved)
            return message
        timeout = self.stage_timeout(stage)
        try:
            response = await rpc(timeout)
        except grpc.aio.AioRpcError as exc:
            raise failure_from_rpc(stage, exc, timeout) from None
        await self._save_checkpoint(name, response.SerializeToString())
        return response

    async def _load_checkpoint(self, name: str) -> bytes | None:
        value = await self.ledger.checkpoint(self.job_id, name)
        if value is None:
            return None
        if value.startswith(b"storage:"):
            return await asyncio.to_thread(self.storage.get, value[8:].decode())
        return value

    async def _save_checkpoint(self, name: str, value: bytes) -> None:
        if len(value) > _INLINE_CHECKPOINT_BYTES:
            key = f"work/{self.job_id}/{name}.pb"
            await asyncio.to_thread(self.storage.put, key, value, "application/x-protobuf")
            value = b"storage:" + key.encode()
        await self.ledger.save_checkpoint(self.job_id, self.owner, name, value)

    async def image_input(self, name: str, source: pb.ImageSource, min_side: int) -> bytes:
        """An input image's bytes: uploaded at submit, or downloaded once (then kept as a checkpoint)."""
        field_path = f"material_swap.{name}"
        if field_path in self.inputs:
            try:
                return await asyncio.to_thread(self.storage.get, self.inputs[field_path])
            except StorageError:
                log.warning("job %s: uploaded %s is missing from storage", self.job_id, field_path)
                raise JobFailure(pb.ERROR_CODE_PIPELINE_ERROR, f"{field_path}: the uploaded image is gone") from None
        saved = await self._load_checkpoint(f"input:{name}")
        if saved is not None:
            return saved
        try:
            data = await asyncio.to_thread(fetch, source.url, self.fetch_policy)
        except DownloadError as exc:
            raise JobFailure(pb.ERROR_CODE_DOWNLOAD_FAILED, f"{field_path}.url: {exc}") from None
        problems, _ = check_image(data, f"{field_path}.url", self.limits, min_side)
        if problems:
            raise JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, f"{problems[0][0]}: {problems[0][1]}")
        await self._save_checkpoint(f"input:{name}", data)
        return data


def output_spec(options: pb.OutputOptions) -> imaging_pb2.OutputSpec:
    """The renditions a job writes: full size, the 512 px preview unless skipped, 2048 px on request."""
    renditions = [imaging_pb2.Rendition(name="full", max_side=0)]
    if options.include_2048:
        renditions.append(imaging_pb2.Rendition(name="2048", max_side=2048))
    if not options.skip_preview:
        renditions.append(imaging_pb2.Rendition(name="preview", max_side=PREVIEW_SIDE))
    return imaging_pb2.OutputSpec(format=_FORMATS[options.format], quality=options.quality, renditions=renditions)


def row_offset(options: pb.MaterialSwapOptions) -> float:
    """The shift of alternate rows: none for straight tiles, half a tile by default for brick."""
    if options.layout != pb.TILE_LAYOUT_BRICK:
        return 0.0
    return options.row_offset or 0.5


def plan_steps(request: pb.SubmitRenderRequest) -> int:
    """The number of steps of a material swap's plan."""
    return 5 if request.material_swap.options.enable_refinement else 4


def geometry_fingerprint(photo: bytes, mask: bytes, swap: pb.MaterialSwap, version: str) -> str:
    """What the mask and plane depend on: the photo, the client mask, the hints, the surface and the
    models (through the configured cache version)."""
    digest = hashlib.sha256()
    for part in (
        version.encode(),
        photo,
        mask,
        swap.hints.SerializeToString(deterministic=True),
        str(swap.surface).encode(),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def tiling_for(swap: pb.MaterialSwap, plane: depth_pb.EstimatePlaneResponse, swatch: imaging.ImageInfo) -> Tiling:
    """The swatch's repeats on the surface: from physical sizes, or from a repeat count."""
    hints, scale = swap.hints, swap.options.real_world_scale
    if scale.WhichOneof("scale") == "swatch_size":
        size = scale.swatch_size
        swatch_h = size.height_meters or size.width_meters * swatch.height / swatch.width
        return tiling_from_sizes(
            hints.quad_size.width_meters, hints.quad_size.height_meters, size.width_meters, swatch_h
        )
    aspect = (
        hints.quad_size.width_meters / hints.quad_size.height_meters
        if hints.HasField("quad_size")
        else plane.aspect_ratio
    )
    repeats = scale.repeats if scale.WhichOneof("scale") == "repeats" else DEFAULT_REPEATS
    return tiling_from_repeats(repeats, aspect, swatch.width / swatch.height)


def describe_geometry(plane: depth_pb.EstimatePlaneResponse) -> str:
    """The plane's source and confidence in words."""
    source = {"quad": "the quad", "depth_model": "the depth model"}.get(plane.source, plane.source)
    return f"plane from {source}, confidence {plane.confidence:.2f}"


def describe_scale(tiling: Tiling) -> str:
    """How the material's scale was chosen, in words."""
    how = "the swatch's physical size" if tiling.source == "swatch_size" else "a repeat count"
    return f"scale from {how} ({tiling.repeats_u:.1f} x {tiling.repeats_v:.1f} repeats)"


def _named(images: Sequence[imaging_pb2.EncodedImage], prefix: str) -> list[imaging_pb2.EncodedImage]:
    out = []
    for image in images:
        renamed = imaging_pb2.EncodedImage()
        renamed.CopyFrom(image)
        renamed.name = prefix + image.name
        out.append(renamed)
    return out


async def run_material_swap(ctx: JobContext) -> pb.JobResult:
    """Runs the plan of one material swap and returns its result."""
    swap = ctx.request.material_swap
    refine = swap.options.enable_refinement
    ctx.total_steps = plan_steps(ctx.request)
    stages = ctx.stages

    photo = await ctx.image_input("photo", swap.photo, ctx.limits.min_side)
    swatches = [await ctx.image_input("swatch", swap.swatch, 8)]
    for index, source in enumerate(swap.variant_swatches):
        swatches.append(await ctx.image_input(f"variant_swatches[{index}]", source, 8))
    mask = await ctx.image_input("mask", swap.mask, 1) if swap.HasField("mask") else b""
    photo_info = imaging.probe(photo, max_pixels=ctx.limits.max_pixels)
    if mask:
        mask_info = imaging.probe(mask, max_pixels=ctx.limits.max_pixels)
        if (mask_info.width, mask_info.height) != (photo_info.width, photo_info.height):
            raise JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, "material_swap.mask: must be the size of the photo")

    fingerprint = geometry_fingerprint(photo, mask, swap, ctx.geometry_cache_version)
    reused = False
    if ctx.geometry_cache_s > 0 and await ctx.ledger.checkpoint(ctx.job_id, "depth") is None:
        cached = await ctx.ledger.cached_geometry(fingerprint)
        if cached is not None:
            await ctx.ledger.save_checkpoint(ctx.job_id, ctx.owner, "segmentation", cached[0])
            await ctx.ledger.save_checkpoint(ctx.job_id, ctx.owner, "depth", cached[1])
            ctx.reused.update({"segmentation", "depth"})
            reused = True

    await ctx.step(1, pb.STAGE_SEGMENTATION, "segmenting the surface", "segmentation")
    hints = swap.hints
    to_points = [imaging_pb2.Point(x=p.x, y=p.y) for p in hints.quad]
    clicks = bool(hints.positive_points) or hints.box.x_max > hints.box.x_min
    # Clicks and boxes outline the surface even when a quad fixes the plane; both need the photo.
    needs_photo = not (mask or hints.polygon) and (clicks or not hints.quad)
    segment = segmentation_pb.SegmentRequest(
        width=photo_info.width,
        height=photo_info.height,
        photo=photo if needs_photo else b"",
        mask=mask,
        quad=to_points,
        polygon=[imaging_pb2.Point(x=p.x, y=p.y) for p in hints.polygon],
        positive_points=[imaging_pb2.Point(x=p.x, y=p.y) for p in hints.positive_points],
        negative_points=[imaging_pb2.Point(x=p.x, y=p.y) for p in hints.negative_points],
        box=imaging_pb2.Box(x_min=hints.box.x_min, y_min=hints.box.y_min, x_max=hints.box.x_max, y_max=hints.box.y_max),
        surface=_SURFACE_NAMES.get(swap.surface, ""),
    )
    seg = await ctx.call(
        pb.STAGE_SEGMENTATION,
        "segmentation",
        segmentation_pb.SegmentResponse,
        lambda t: stages.segmentation.Segment(segment, timeout=t),
    )
    if seg.coverage <= 0.0:
        raise JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, "the surface's mask is empty")

    await ctx.step(2, pb.STAGE_DEPTH, "estimating geometry", "depth")
    estimate = depth_pb.EstimatePlaneRequest(
        width=photo_info.width,
        height=photo_info.height,
        quad=to_points,
        photo=b"" if to_points else photo,
        mask_png=b"" if to_points else seg.mask_png,
    )
    plane = await ctx.call(
        pb.STAGE_DEPTH,
        "depth",
        depth_pb.EstimatePlaneResponse,
        lambda t: stages.depth.EstimatePlane(estimate, timeout=t),
    )
    if ctx.geometry_cache_s > 0 and not reused:
        await ctx.ledger.cache_geometry(
            fingerprint, seg.SerializeToString(), plane.SerializeToString(), ctx.geometry_cache_s
        )

    tilings = [tiling_for(swap, plane, imaging.probe(s, max_pixels=ctx.limits.max_pixels)) for s in swatches]
    await ctx.detail(2, pb.STAGE_DEPTH, f"{describe_geometry(plane)}; {describe_scale(tilings[0])}")

    count = len(swatches)
    await ctx.step(
        3, pb.STAGE_PROJECTION, "projecting the material" + (f" ({count} swatches)" if count > 1 else ""), "projection"
    )
    final_spec = output_spec(ctx.request.output)
    # A composite headed for refinement travels as high-quality JPEG: PNG would cost ~10x to encode.
    spec = (
        imaging_pb2.OutputSpec(
            format=imaging_pb2.FORMAT_JPEG, quality=95, renditions=[imaging_pb2.Rendition(name="composite")]
        )
        if refine
        else final_spec
    )
    renders: list[list[imaging_pb2.EncodedImage]] = []
    maps: list[imaging_pb2.EncodedImage] = []
    for index, (swatch, tiling) in enumerate(zip(swatches, tilings, strict=True)):
        prefix = f"v{index}-" if index else ""
        project = projection_pb.ProjectRequest(
            photo=photo,
            swatch=swatch,
            mask_png=seg.mask_png,
            homography=plane.homography,
            repeats_u=tiling.repeats_u,
            repeats_v=tiling.repeats_v,
            rotation_degrees=swap.options.rotation_degrees,
            row_offset=row_offset(swap.options),
            output=spec,
            material_maps=ctx.request.output.include_material_maps,
        )
        projected = await ctx.call(
            pb.STAGE_PROJECTION,
            f"projection{index or ''}",
            projection_pb.ProjectResponse,
            lambda t, request=project: stages.projection.Project(request, timeout=t),  # type: ignore[misc]
        )
        renders.append([i for i in projected.images if i.name not in MATERIAL_MAPS])
        maps += _named([i for i in projected.images if i.name in MATERIAL_MAPS], prefix)

    if refine:
        await ctx.step(4, pb.STAGE_GENERATION, "refining the render", "generation")
        seed = swap.options.refinement_seed if swap.options.HasField("refinement_seed") else 42
        for index, composite in enumerate(renders):
            refine_request = generation_pb.RefineRequest(
                image=composite[0].data, mask_png=seg.mask_png, seed=seed, output=final_spec
            )
            refined = await ctx.call(
                pb.STAGE_GENERATION,
                f"generation{index or ''}",
                generation_pb.RefineResponse,
                lambda t, request=refine_request: stages.generation.Refine(request, timeout=t),  # type: ignore[misc]
            )
            renders[index] = list(refined.images)

    await ctx.step(ctx.total_steps, pb.STAGE_OUTPUT, "writing outputs")
    images = [image for index, r in enumerate(renders) for image in _named(r, f"v{index}-" if index else "")]
    outputs = await write_outputs(ctx, images + maps)
    return pb.JobResult(
        outputs=outputs,
        geometry_source=plane.source,
        geometry_confidence=plane.confidence,
        scale_source=tilings[0].source,
        repeats_u=tilings[0].repeats_u,
        repeats_v=tilings[0].repeats_v,
        geometry_reused=reused,
    )


async def write_outputs(ctx: JobContext, images: list[imaging_pb2.EncodedImage]) -> list[pb.OutputFile]:
    """Stores renditions at renders/{tenant}/{project or "-"}/{job_id}/{name}.{ext}."""
    project = ctx.request.project_id or "-"
    outputs = []
    for image in images:
        key = f"renders/{ctx.tenant}/{project}/{ctx.job_id}/{image.name}.{imaging.EXTENSIONS[image.content_type]}"
        try:
            stored = await asyncio.to_thread(ctx.storage.put, key, image.data, image.content_type)
        except StorageError as exc:
            log.warning("job %s: storage failed: %s", ctx.job_id, exc)
            raise JobFailure(pb.ERROR_CODE_UPLOAD_FAILED, "the render could not be stored") from None
        outputs.append(
            pb.OutputFile(
                name=image.name,
                uri=stored.uri,
                size_bytes=stored.size_bytes,
                content_type=stored.content_type,
                sha256=stored.sha256,
                width=image.width,
                height=image.height,
            )
        )
    return outputs
