"""The material-swap plan: segmentation -> depth -> projection (-> generation) -> outputs."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence

import numpy as np

from gateway.context import JobContext, JobFailure, budget_for, generation_report, named, output_spec, write_outputs
from gateway.validation import (
    material_swap_memory,
    material_swap_photo_problems,
    repeats_problem,
    segmentation_needs_photo,
    source_field,
    tiling_of,
)
from render.depth.v1 import depth_service_pb2 as depth_pb
from render.generation.v1 import generation_service_pb2 as generation_pb
from render.imaging.v1 import imaging_pb2
from render.projection.v1 import projection_service_pb2 as projection_pb
from render.segmentation.v1 import segmentation_service_pb2 as segmentation_pb
from render.v1 import render_service_pb2 as pb
from renderkit import homography, imaging
from renderkit.planes import quad_plane
from renderkit.scale import Tiling

log = logging.getLogger(__name__)

_SURFACE_NAMES = {
    pb.SURFACE_FLOOR: "floor",
    pb.SURFACE_WALL: "wall",
    pb.SURFACE_CEILING: "ceiling",
    pb.SURFACE_FACADE: "facade",
}
MATERIAL_MAPS = ("normal", "roughness")


def row_offset(options: pb.MaterialSwapOptions) -> float:
    """The shift of alternate rows: none for straight tiles, half a tile by default for brick."""
    if options.layout != pb.TILE_LAYOUT_BRICK:
        return 0.0
    return options.row_offset or 0.5


def tile_aspect(options: pb.MaterialSwapOptions) -> float:
    """A swatch's physical height over its width where its swatch_size gives both (0: the image's
    own aspect): rotation and herringbone lay it in physical units."""
    scale = options.real_world_scale
    if scale.WhichOneof("scale") != "swatch_size" or not scale.swatch_size.height_meters:
        return 0.0
    return scale.swatch_size.height_meters / scale.swatch_size.width_meters


def _heif_as_jpeg(data: bytes, max_pixels: int) -> bytes:
    return imaging.encode(imaging.decode_bgr(data, max_pixels=max_pixels), imaging_pb2.FORMAT_JPEG, 95)[0]


def _probed(
    photo: bytes, swatches: Sequence[bytes], max_pixels: int
) -> tuple[imaging.ImageInfo, list[imaging.ImageInfo]]:
    """The photo's and the swatches' headers."""
    return imaging.probe(photo, max_pixels=max_pixels), [imaging.probe(s, max_pixels=max_pixels) for s in swatches]


# Bumped when the plane's estimation changes what it returns for the same inputs (2: the EXIF's
# focal length is used; 3: an EXIF value the lines cannot judge, or an exact one, kept as given, and
# the lines placed on the photo's edges; 4: the texture's u axis runs along the photo's horizontal
# where the surface is seen, rightwards; 5: the depth model's u axis the camera's x projected onto
# the plane again, turned rightwards; 6: a HEIC's EXIF focal length reaches the segmentation's
# clicks, and a cropped portrait HEIC's is read in the frame before its turn; 7: a floor's or a
# ceiling's plane from lines is kept only level within a camera's roll; 8: the texture's axis
# follows the surface's edges seen in its mask's outline, not a diagonal pattern's lines; 9: a
# surface without lines of its own takes its plane from the room's verticals; 10: and so does one
# whose lines' plane the room's clear verticals contradict; 11: with the camera known, two line
# families under 30° apart give no plane, clicks alone on a patterned wall or facade whose lines
# fix no plane, or on a facade, select another mask, and so does a box with clicks; 12: two line
# families that run the same way in the photo side by side give no plane; 13: unless they run along
# the line through their two points, a plane seen at a grazing angle), so masks and planes cached by
# an earlier version are not reused.
PLANE_REVISION = "13"


def geometry_fingerprint(photo: bytes, mask: bytes, swap: pb.MaterialSwap, version: str, tenant: str) -> str:
    """What the mask and plane depend on: the photo, the client mask, the hints, the surface, the
    plane's estimation (PLANE_REVISION) and the models (through the configured cache version); and
    whose they are. A tenant reuses only its own: a result marked reused (and quicker) would tell
    another tenant that someone had rendered the same photo."""
    digest = hashlib.sha256()
    for part in (
        tenant.encode(),
        version.encode(),
        PLANE_REVISION.encode(),
        photo,
        mask,
        swap.hints.SerializeToString(deterministic=True),
        str(swap.surface).encode(),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def tiling_for(swap: pb.MaterialSwap, plane: depth_pb.EstimatePlaneResponse, swatch: imaging.ImageInfo) -> Tiling:
    """The swatch's repeats on the surface: from physical sizes (the quad's, or the metric plane's),
    or from a repeat count (validation.tiling_of). Sizes (or a quad's aspect) that work out to fewer
    than MIN_REPEATS or more than MAX_IMPLIED_REPEATS across the surface fail the job, naming the
    field: a unit mistake, which would render as one blurred texel or as the swatch's average
    colour. (With a quad and its size, submit has refused those already.)"""
    hints, scale = swap.hints, swap.options.real_world_scale
    quad_size = bool(hints.quad) and hints.HasField("quad_size")
    if scale.WhichOneof("scale") == "swatch_size" and not quad_size and plane.meters_per_unit <= 0:
        raise JobFailure(
            pb.ERROR_CODE_VALIDATION_FAILED,
            "material_swap.options.real_world_scale.swatch_size: the plane is not metric; give "
            "hints.plane_distance_meters (for a floor, the camera's height) or hints.quad_size",
        )
    tiling, field = tiling_of(swap, swatch, plane.meters_per_unit, plane.aspect_ratio)
    problem = repeats_problem(tiling, field)
    if problem is not None:
        raise JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, f"{problem[0]}: {problem[1]}")
    return tiling


def describe_segmentation(seg: segmentation_pb.SegmentResponse) -> str:
    """How the segmentation model took part (or why its answer was not used), in words."""
    if not seg.used_model and seg.model_fallback_reason:
        return f"mask from the {seg.source} hints without the model: {seg.model_fallback_reason}"
    if seg.source in ("quad", "polygon"):
        return (
            f"mask from the {seg.source} with the segmentation model: "
            f"{seg.excluded_fraction:.0%} left out as objects in front of the surface"
        )
    if seg.source == "model":
        return f"mask from the segmentation model ({seg.coverage:.0%} of the photo)"
    if seg.source.startswith("prompt_"):  # the clicks and box through the prompt segmentation models
        hints = "clicks" if seg.source == "prompt_points" else "box and clicks"
        return f"mask from the {hints} by the prompt segmentation model ({seg.coverage:.0%} of the photo)"
    return f"mask from the {seg.source} hints, seeded by the segmentation model"


_GEOMETRY_SOURCES = {
    "quad": "the quad",
    "depth_model": "the depth model",
    "vanishing_lines": "the photo's vanishing lines",
    "room_verticals": "the room's verticals",
}
_FOCAL_SOURCES = {
    "hint": "focal length given",
    "exif": "focal length from the photo's EXIF",
    "rectangle": "focal length from the rectangle",
    "lines": "focal length from the vanishing points",
    "assumed": "60° field of view assumed",
}
# What depth called them before the public names (planes cached by an earlier version).
_OLD_FOCAL_SOURCES = {"given": "hint", "vanishing_points": "lines"}


def focal_source(plane: depth_pb.EstimatePlaneResponse) -> str:
    """Where the plane's focal length came from: hint, exif, rectangle, lines or assumed."""
    return _OLD_FOCAL_SOURCES.get(plane.focal_source, plane.focal_source)


def describe_geometry(plane: depth_pb.EstimatePlaneResponse) -> str:
    """The plane's source, confidence and focal length in words."""
    text = f"plane from {_GEOMETRY_SOURCES.get(plane.source, plane.source)}, confidence {plane.confidence:.2f}"
    source = focal_source(plane)
    if source:
        text += f", {_FOCAL_SOURCES.get(source, source)}"
    if plane.model_fallback_reason:  # a deployed depth model's plane was not used
        text += f" ({plane.model_fallback_reason})"
    return text


_SHADING_SOURCES = {
    "texture_space": "light read from the photo on the surface's plane, the old material's pattern left out",
    "blur": "light read from the photo by a blur (the surface's plane could not be rectified)",
    "intrinsic": "light from the intrinsic decomposition model (Triton)",
}


def describe_shading(source: str, fallback: str = "", patch_colour: bool = False) -> str:
    """Which estimate of the photo's light shaded the material, in words, whether it carried a
    sharp-edged light's colour (`patch_colour`), and why a deployed intrinsic model's was not
    (`fallback`)."""
    text = _SHADING_SOURCES.get(source, f"light read from the photo ({source or 'unknown estimate'})")
    if patch_colour:
        text += ", coloured by a sharp-edged light's colour against the shade's (read across its edge)"
    return f"{text} ({fallback})" if fallback else text


def describe_scale(tiling: Tiling, swap: pb.MaterialSwap, distance_source: str = "") -> str:
    """How the material's scale was chosen, in words."""
    if tiling.source != "swatch_size":
        how = "a repeat count"
    elif swap.hints.quad and swap.hints.HasField("quad_size"):
        how = "the swatch's and the quad's physical sizes"
    elif distance_source == "depth_model":
        how = "the swatch's physical size and the depth model's metric plane"
    else:
        how = "the swatch's physical size and the plane's distance"
    return f"scale from {how} ({tiling.repeats_u:.1f} x {tiling.repeats_v:.1f} repeats)"


def _quad_plane(
    quad: Sequence[imaging_pb2.Point], photo: imaging.ImageInfo, hints: pb.SurfaceHints
) -> depth_pb.EstimatePlaneResponse:
    """The plane of the request's quad (checked at submit; checked again for a job an older
    gateway recorded)."""
    corners = np.array([[p.x, p.y] for p in quad], np.float64)
    if problem := homography.quad_problem(corners):
        raise JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, f"material_swap.hints.quad: {problem}")
    try:
        return quad_plane(
            corners,
            photo.width,
            photo.height,
            hints.focal_length_px,
            hints.plane_distance_meters,
            photo.focal_length_px,
        )
    except homography.GeometryError as exc:  # the hints are checked first; this is defence in depth
        raise JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, f"material_swap.hints.quad: {exc}") from None


# The hints a segmentation refusal may name, by the stage request's field: the job's submitter
# knows them by their place in the request.
_SEGMENTATION_FIELDS = {
    "box": "material_swap.hints.box",
    "positive_points": "material_swap.hints.positive_points",
    "negative_points": "material_swap.hints.negative_points",
}


def _hint_named(failure: JobFailure) -> JobFailure:
    """A segmentation stage's refusal, naming the hint it was about as the request does."""
    public = _SEGMENTATION_FIELDS.get(failure.stage_field)
    if failure.code != pb.ERROR_CODE_VALIDATION_FAILED or public is None:
        return failure
    return JobFailure(failure.code, f"{public}: {failure.message}")


async def run_material_swap(ctx: JobContext) -> pb.JobResult:
    """Runs the plan of one material swap and returns its result."""
    swap = ctx.request.material_swap
    refine = swap.options.enable_refinement
    ctx.total_steps = 5 if refine else 4
    stages = ctx.stages

    wanted = [("material_swap.photo", swap.photo, ctx.limits.min_side), ("material_swap.swatch", swap.swatch, 8)]
    wanted += [(f"material_swap.variant_swatches[{i}]", source, 8) for i, source in enumerate(swap.variant_swatches)]
    if swap.HasField("mask"):
        wanted.append(("material_swap.mask", swap.mask, 1))
    photo, *swatches = await ctx.image_inputs(wanted)
    mask = swatches.pop() if swap.HasField("mask") else b""
    # Every input was probed at submit or on arrival; sizes are the displayed frame's. A probe walks
    # the whole file (a HEIC's through libheif): off the event loop, as every decode, the photo and
    # the swatches in one thread hop (a hop costs the job ~1 ms of the loop's turns at 4K).
    photo_info, swatch_infos = await asyncio.to_thread(_probed, photo, swatches, ctx.limits.max_pixels)
    if photo_info.content_type in imaging.HEIF_TYPES:
        # Decoding HEVC costs ~10x a JPEG of the same size: once here, not in every stage. The
        # focal length stays in photo_info; the JPEG is upright and in sRGB.
        try:
            photo = await asyncio.to_thread(_heif_as_jpeg, photo, ctx.limits.max_pixels)
        except imaging.ImageError as exc:  # libheif parsed its boxes but cannot decode its image
            raise JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, f"material_swap.photo: {exc}") from None
    sources = [("material_swap.swatch", swap.swatch)] + [
        (f"material_swap.variant_swatches[{i}]", v) for i, v in enumerate(swap.variant_swatches)
    ]
    # Inline images were checked against the memory budget at submit; downloads are checked now.
    memory = material_swap_memory(
        swap,
        photo_info,
        [(source_field(source, name), info) for (name, source), info in zip(sources, swatch_infos, strict=True)],
        ctx.request.output.include_material_maps,
        ctx.limits,
    )
    if memory:
        raise JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, f"{memory[0]}: {memory[1]}")
    # What the photo's size decides, checked at submit only when its header was known there: a
    # photo given by URL gets the same answers (its hints, the output format) now.
    problems = material_swap_photo_problems(swap, ctx.request.output, photo_info)
    if problems:
        raise JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, f"{problems[0][0]}: {problems[0][1]}")
    if mask:
        mask_info = await asyncio.to_thread(imaging.probe, mask, max_pixels=ctx.limits.max_pixels)
        if (mask_info.width, mask_info.height) != (photo_info.width, photo_info.height):
            raise JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, "material_swap.mask: must be the size of the photo")

    hints = swap.hints
    to_points = [imaging_pb2.Point(x=p.x, y=p.y) for p in hints.quad]
    # The photo goes along unless a quad alone outlines an unnamed surface: clicks, boxes and the
    # model need it, and it refines the edge of a client mask or polygon. (The memory budget
    # counts the segmentation's edge refinement only then: validation.segmentation_needs_photo.)
    surface = _SURFACE_NAMES.get(swap.surface, "")
    needs_photo = segmentation_needs_photo(swap)
    # Without the photo, segmentation would only draw the quad: the projection draws it instead
    # from the four corners, and no full-size PNG is made, sent and decoded (at 4K 12-17 ms to encode
    # and 8-11 ms to decode, on the swap's critical path). A refinement still needs the mask's PNG.
    # Such a job has nothing worth caching either: its mask is the quad, its plane a millisecond.
    outline_only = not needs_photo and not refine

    cached_geometry = ctx.geometry_cache_s > 0 and not outline_only
    fingerprint = (
        geometry_fingerprint(photo, mask, swap, ctx.geometry_cache_version, ctx.tenant) if cached_geometry else ""
    )
    reused = False
    if cached_geometry and "depth" not in ctx.checkpoints:
        cached = await ctx.ledger.cached_geometry(fingerprint)
        if cached is not None:
            await ctx.save_checkpoint("segmentation", cached[0])
            await ctx.save_checkpoint("depth", cached[1])
            ctx.reused.update({"segmentation", "depth"})
            reused = True

    if outline_only:
        await ctx.step(1, pb.STAGE_SEGMENTATION, "outlining the surface with the quad")
    else:
        await ctx.step(1, pb.STAGE_SEGMENTATION, "segmenting the surface", "segmentation")

    # A quad's plane is arithmetic on its corners (~0.05 ms): computed here, as a quad's mask is
    # drawn here, instead of asked of the depth stage (the call cost a 4K swap ~1.4 ms).
    plane = _quad_plane(to_points, photo_info, hints) if to_points else None
    if outline_only:
        quad = np.array([[p.x, p.y] for p in to_points], np.float64)
        coverage = imaging.convex_coverage(quad, photo_info.width, photo_info.height)
        seg = segmentation_pb.SegmentResponse(source="quad", coverage=coverage)
    else:
        segment = segmentation_pb.SegmentRequest(
            width=photo_info.width,
            height=photo_info.height,
            photo=photo if needs_photo else b"",
            mask=mask,
            quad=to_points,
            polygon=[imaging_pb2.Point(x=p.x, y=p.y) for p in hints.polygon],
            positive_points=[imaging_pb2.Point(x=p.x, y=p.y) for p in hints.positive_points],
            negative_points=[imaging_pb2.Point(x=p.x, y=p.y) for p in hints.negative_points],
            box=imaging_pb2.Box(
                x_min=hints.box.x_min, y_min=hints.box.y_min, x_max=hints.box.x_max, y_max=hints.box.y_max
            ),
            surface=surface,
            # Read from the photo as it came: a HEIC's JPEG (above) carries no EXIF.
            exif_focal_length_px=photo_info.focal_length_px,
        )
        try:
            seg = await ctx.call(
                pb.STAGE_SEGMENTATION,
                "segmentation",
                segmentation_pb.SegmentResponse,
                lambda t: stages.segmentation.Segment(segment, timeout=t),
            )
        except JobFailure as failure:
            raise _hint_named(failure) from None
    if seg.coverage <= 0.0:
        raise JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, "the surface's mask is empty")
    if seg.used_model or seg.model_fallback_reason:
        await ctx.detail(1, pb.STAGE_SEGMENTATION, describe_segmentation(seg))
    await ctx.step(2, pb.STAGE_DEPTH, "estimating geometry", "depth")
    if plane is None:
        estimate = depth_pb.EstimatePlaneRequest(
            width=photo_info.width,
            height=photo_info.height,
            photo=photo,
            mask_png=seg.mask_png,
            focal_length_px=hints.focal_length_px,
            plane_distance_meters=hints.plane_distance_meters,
            exif_focal_length_px=photo_info.focal_length_px,
            exif_focal_length_exact=photo_info.focal_length_exact,
            surface=surface,
        )
        plane = await ctx.call(
            pb.STAGE_DEPTH,
            "depth",
            depth_pb.EstimatePlaneResponse,
            lambda t: stages.depth.EstimatePlane(estimate, timeout=t),
        )
    # Geometry a model-free path made because a deployed model was at fault is not kept: a mended
    # model (Triton restarted with its weights) would otherwise go unasked for this photo for the
    # cache's lifetime, and each reuse would replay a failure that did not happen in its job.
    fell_back = bool(seg.model_fallback_reason or plane.model_fallback_reason)
    if cached_geometry and not reused and not fell_back:
        await ctx.ledger.cache_geometry(
            fingerprint, seg.SerializeToString(), plane.SerializeToString(), ctx.geometry_cache_s
        )

    tilings = [tiling_for(swap, plane, info) for info in swatch_infos]
    scale = describe_scale(tilings[0], swap, plane.distance_source)
    await ctx.detail(2, pb.STAGE_DEPTH, f"{describe_geometry(plane)}; {scale}")

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
    shading_source = ""
    for index, (swatch, tiling) in enumerate(zip(swatches, tilings, strict=True)):
        prefix = f"v{index}-" if index else ""
        project = projection_pb.ProjectRequest(
            photo=photo,
            swatch=swatch,
            mask_png=seg.mask_png,
            outline=to_points if outline_only else [],
            homography=plane.homography,
            repeats_u=tiling.repeats_u,
            repeats_v=tiling.repeats_v,
            rotation_degrees=swap.options.rotation_degrees,
            row_offset=row_offset(swap.options),
            herringbone=swap.options.layout == pb.TILE_LAYOUT_HERRINGBONE,
            tile_aspect=tile_aspect(swap.options),
            output=spec,
            material_maps=ctx.request.output.include_material_maps,
            grout_color=swap.options.grout_color,
        )
        # The last render goes straight to the outputs unless a refinement (which costs money) takes
        # it first: stored there, it is not stored again as a checkpoint.
        projected = await ctx.call(
            pb.STAGE_PROJECTION,
            f"projection{index or ''}",
            projection_pb.ProjectResponse,
            lambda t, request=project: stages.projection.Project(request, timeout=t),  # type: ignore[misc]
            checkpoint=refine or index < count - 1,
        )
        if projected.swatch_transparent_fraction > 0:
            whose = f"variant {index}'s" if index else "the swatch's"
            grout = (swap.options.grout_color or imaging.DEFAULT_GROUT).upper()
            share = projected.swatch_transparent_fraction
            text = f"{share:.0%}" if share >= 0.01 else "under 1%"
            await ctx.detail(3, pb.STAGE_PROJECTION, f"{whose} transparent parts ({text}) filled with grout {grout}")
        if index == 0:
            shading_source = projected.shading_source
            light = describe_shading(shading_source, projected.model_fallback_reason, projected.patch_colour)
            await ctx.detail(3, pb.STAGE_PROJECTION, light)
        renders.append([i for i in projected.images if i.name not in MATERIAL_MAPS])
        maps += named([i for i in projected.images if i.name in MATERIAL_MAPS], prefix)

    generation: pb.GenerationReport | None = None
    refinement: pb.RefinementReport | None = None
    if refine:
        await ctx.step(4, pb.STAGE_GENERATION, "refining the render", "generation")
        seed = swap.options.refinement_seed if swap.options.HasField("refinement_seed") else 42
        for index, composite in enumerate(renders):
            refine_request = generation_pb.RefineRequest(
                image=composite[0].data,
                mask_png=seg.mask_png,
                seed=seed,
                output=final_spec,
                budget=budget_for(ctx, pb.Budget()),
            )
            try:
                refined = await ctx.call(
                    pb.STAGE_GENERATION,
                    f"generation{index or ''}",
                    generation_pb.RefineResponse,
                    lambda t, request=refine_request: stages.generation.Refine(request, timeout=t),  # type: ignore[misc]
                )
            except JobFailure as failure:
                # The swap has no budget of its own to raise: the server's per-job cap covers only
                # so many refinements. The swatches past it keep their plain projection, as a
                # refinement that drifted does, rather than failing the job after paying for the
                # others (and charging it as the caller's fault).
                if failure.code != pb.ERROR_CODE_BUDGET_EXCEEDED:
                    raise
                renders[index] = await asyncio.to_thread(_plain, composite[0].data, final_spec)
                reason = f"the job's refinement budget was spent: {failure.message}"
                if index == 0:
                    refinement = pb.RefinementReport(applied=False, fallback_reason=reason)
                await ctx.detail(
                    4, pb.STAGE_GENERATION, f"{f'variant {index}' if index else 'the render'} not refined: {reason}"
                )
                continue
            ctx.spend(refined.call.cost)
            renders[index] = list(refined.images)
            if index == 0:
                generation = generation_report(refined.call, ctx)
                refinement = pb.RefinementReport(
                    applied=refined.applied,
                    color_drift=refined.drift.color,
                    texture_similarity=refined.drift.texture_similarity,
                    fallback_reason=refined.fallback_reason,
                )
                kept = "kept" if refined.applied else f"not kept: {refined.fallback_reason}"
                await ctx.detail(
                    4,
                    pb.STAGE_GENERATION,
                    f"refined by {refined.provider}; colour drift {refined.drift.color:.1f}, "
                    f"texture similarity {refined.drift.texture_similarity:.2f}; {kept}",
                )

    if generation is not None:  # what every swatch's refinement spent, as the charge counts it
        generation.cost.CopyFrom(pb.Cost(tokens=ctx.spent.tokens, cents=round(ctx.spent.cents, 4)))
    await ctx.step(ctx.total_steps, pb.STAGE_OUTPUT, "writing outputs")
    images = [image for index, r in enumerate(renders) for image in named(r, f"v{index}-" if index else "")]
    outputs = await write_outputs(ctx, images + maps)
    return pb.JobResult(
        outputs=outputs,
        geometry_source=plane.source,
        geometry_confidence=plane.confidence,
        scale_source=tilings[0].source,
        repeats_u=tilings[0].repeats_u,
        repeats_v=tilings[0].repeats_v,
        geometry_reused=reused,
        generation=generation,
        refinement=refinement,
        focal_length_px=plane.focal_length_px,
        focal_source=focal_source(plane),
        shading_source=shading_source,
    )


def _plain(composite: bytes, spec: imaging_pb2.OutputSpec) -> list[imaging_pb2.EncodedImage]:
    """A composite that was headed for refinement, encoded as the job's outputs instead."""
    return imaging.encode_renditions(imaging.decode_bgr(composite), spec)
