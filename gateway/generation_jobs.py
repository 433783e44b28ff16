"""Plans that call image models directly: room renders (seed 000) and texture edits (seed 001)."""

from __future__ import annotations

import asyncio

from gateway.context import JobContext, JobFailure, budget_for, generation_report, output_spec, write_outputs
from gateway.requests import SURFACES
from gateway.validation import MIN_TEXTURE_SIDE, room_render_memory, source_field, texture_edit_memory, webp_problem
from render.generation.v1 import generation_service_pb2 as generation_pb
from render.imaging.v1 import imaging_pb2
from render.v1 import render_service_pb2 as pb
from renderkit import imaging
from renderkit.prompts import SurfaceText, edit_prompt, lighting_name, room_prompt, sanitize, time_of_day_name

DEFAULT_SIZE = "1024x1024"
SIZES = ("1024x1024", "1792x1024", "1024x1792", "1536x1024", "1024x1536")
HIGH_RES_SIDE = 2048
# A mask's pixels above this are where a provider may paint (OpenAI's mask and the diffusion model's
# are thresholded here); those at or below it are kept.
MASK_SELECTS = 127
_QUALITY: dict[int, str] = {pb.RENDER_QUALITY_STANDARD: "standard"}


def quality_name(value: int) -> str:
    """The provider quality word of a RenderQuality (unset means HD)."""
    return _QUALITY.get(value, "hd")


def seed_of(options: pb.GenerationOptions) -> int:
    return options.seed if options.HasField("seed") else 42


def prompt_for(room: pb.RoomRender, reference_surfaces: list[str]) -> str:
    """The prompt a room render sends: the custom prompt, or seed 000's template filled in."""
    if room.custom_prompt:
        return sanitize(room.custom_prompt)
    options = room.options

    def surface(material: pb.SurfaceMaterial) -> SurfaceText | None:
        return SurfaceText(material.name, material.description) if (material.name or material.description) else None

    prompt = room_prompt(
        room_type=room.room.room_type or room.room.name,
        area_square_meters=room.room.area_square_meters,
        style=options.style_preset or "modern",
        floor=surface(room.materials.floor),
        walls=surface(room.materials.walls),
        ceiling=surface(room.materials.ceiling),
        lighting=lighting_name(options.lighting),
        time_of_day=time_of_day_name(options.time_of_day),
        additional=options.additional_prompt,
    )
    if reference_surfaces:
        listed = ", ".join(f"image {i + 1}: {name}" for i, name in enumerate(reference_surfaces))
        prompt += f"\nReproduce the exact materials of the reference images ({listed})."
    return prompt


async def probed(images: list[bytes], max_pixels: int) -> list[imaging.ImageInfo]:
    """The images' probes, made off the event loop (a probe walks the whole file). None to probe
    (a room render without swatches) costs no thread: the hop there and back is ~100 us of CPU and
    of the job's time, for nothing."""
    if not images:
        return []
    return await asyncio.to_thread(lambda: [imaging.probe(data, max_pixels=max_pixels) for data in images])


async def run_room_render(ctx: JobContext) -> pb.JobResult:
    """Builds the prompt, generates the room with the first healthy provider and stores the image."""
    room = ctx.request.room_render
    options = room.options
    ctx.total_steps = 3
    await ctx.step(1, pb.STAGE_GENERATION, "building the prompt")
    surfaces = [surface for surface in SURFACES if getattr(room.materials, surface).HasField("swatch")]
    references = await ctx.image_inputs(
        [(f"room_render.materials.{s}.swatch", getattr(room.materials, s).swatch, 8) for s in surfaces]
    )
    # Downloaded references are checked against the memory budget now (inline ones were at submit).
    sources = [(f"room_render.materials.{s}.swatch", getattr(room.materials, s).swatch) for s in surfaces]
    infos = await probed(references, ctx.limits.max_pixels)
    memory = room_render_memory(
        [(source_field(source, name), info) for (name, source), info in zip(sources, infos, strict=True)],
        ctx.limits,
    )
    if memory:
        raise JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, f"{memory[0]}: {memory[1]}")
    prompt = prompt_for(room, surfaces)
    width, height = (int(v) for v in (options.size or DEFAULT_SIZE).split("x"))
    request = generation_pb.GenerateRequest(
        prompt=prompt,
        width=width,
        height=height,
        quality=quality_name(options.quality),
        seed=seed_of(options),
        reference_images=references,
        output=output_spec(ctx.request.output),
        budget=budget_for(ctx, options.budget),
        dry_run=options.dry_run,
    )
    name = room.room.name or room.room.room_type or "the room"
    await ctx.step(
        2, pb.STAGE_GENERATION, f"rendering {name}" + (" (dry run)" if options.dry_run else ""), "generation"
    )
    response = await ctx.call(
        pb.STAGE_GENERATION,
        "generation",
        generation_pb.GenerateResponse,
        lambda t: ctx.stages.generation.Generate(request, timeout=t),
        checkpoint=not options.dry_run,  # a dry run's report costs nothing to ask for again
        may_charge=not options.dry_run,
    )
    return await _finish(ctx, response)


def texture_spec(output: pb.OutputOptions) -> imaging_pb2.OutputSpec:
    """A texture edit's renditions: the edit at the texture's size, 2048 px high-res and the 512 px preview."""
    spec = output_spec(pb.OutputOptions(format=output.format, quality=output.quality, skip_preview=output.skip_preview))
    spec.renditions.insert(1, imaging_pb2.Rendition(name="2048", max_side=HIGH_RES_SIDE, upscale=True))
    return spec


async def run_texture_edit(ctx: JobContext) -> pb.JobResult:
    """Edits the texture inside its mask and stores the edit, its high-res and preview (and maps)."""
    edit = ctx.request.texture_edit
    options = edit.options
    ctx.total_steps = 3
    await ctx.step(1, pb.STAGE_GENERATION, "preparing the texture")
    wanted = [("texture_edit.base_texture", edit.base_texture, MIN_TEXTURE_SIDE)]
    if edit.HasField("mask"):
        wanted.append(("texture_edit.mask", edit.mask, 1))
    texture, *rest = await ctx.image_inputs(wanted)
    mask = rest[0] if rest else b""
    # Sizes in the displayed frame; a downloaded texture meets the memory budget here. Probes and
    # decodes run off the event loop.
    texture_info = await asyncio.to_thread(imaging.probe, texture, max_pixels=ctx.limits.max_pixels)
    memory = texture_edit_memory(
        texture_info,
        source_field(edit.base_texture, "texture_edit.base_texture"),
        ctx.request.output.include_material_maps,
        ctx.limits,
    )
    problem = memory or webp_problem(ctx.request.output, texture_info, "texture")  # a texture by URL, now known
    if problem:
        raise JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, f"{problem[0]}: {problem[1]}")
    if mask:
        mask_info = await asyncio.to_thread(imaging.probe, mask, max_pixels=ctx.limits.max_pixels)
        if (mask_info.width, mask_info.height) != (texture_info.width, texture_info.height):
            raise JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, "texture_edit.mask: must be the size of the texture")
        try:
            pixels = await asyncio.to_thread(imaging.decode_gray, mask, max_pixels=ctx.limits.max_pixels)
        except imaging.ImageError as exc:  # a header that probes but pixels that do not decode
            raise JobFailure(pb.ERROR_CODE_VALIDATION_FAILED, f"texture_edit.mask: {exc}") from None
        # Before the provider is paid for an edit that cannot change a pixel: the providers paint
        # where the mask is over half white (both threshold it at 127), so a mask of faint greys
        # alone selects nothing either.
        if not (pixels > MASK_SELECTS).any():
            raise JobFailure(
                pb.ERROR_CODE_VALIDATION_FAILED,
                "texture_edit.mask: selects nothing to edit (no pixel is more than half white)",
            )
        mask = await asyncio.to_thread(imaging.encode_mask, pixels)
    request = generation_pb.EditRequest(
        image=texture,
        mask_png=mask,
        prompt=edit_prompt(edit.prompt, edit.options.additional_prompt),
        seed=seed_of(options),
        output=texture_spec(ctx.request.output),
        budget=budget_for(ctx, options.budget),
        dry_run=options.dry_run,
        quality=quality_name(options.quality),
        material_maps=ctx.request.output.include_material_maps,
    )
    await ctx.step(
        2, pb.STAGE_GENERATION, "editing the texture" + (" (dry run)" if options.dry_run else ""), "generation"
    )
    response = await ctx.call(
        pb.STAGE_GENERATION,
        "generation",
        generation_pb.EditResponse,
        lambda t: ctx.stages.generation.Edit(request, timeout=t),
        checkpoint=not options.dry_run,
        may_charge=not options.dry_run,
    )
    return await _finish(ctx, response)


async def _finish(
    ctx: JobContext, response: generation_pb.GenerateResponse | generation_pb.EditResponse
) -> pb.JobResult:
    """Counts the call's cost, reports it, and stores the images (step 3 of 3)."""
    ctx.spend(response.call.cost)
    await ctx.detail(2, pb.STAGE_GENERATION, _describe(response.call))
    await ctx.step(3, pb.STAGE_OUTPUT, "writing outputs")
    outputs = await write_outputs(ctx, list(response.images))
    return pb.JobResult(outputs=outputs, generation=generation_report(response.call, ctx))


def _describe(call: generation_pb.ProviderCall) -> str:
    if call.dry_run:
        return (
            f"dry run: {call.provider} ({call.model}) would be called, estimated "
            f"{call.estimated_cost.cents:.2f} cents, {call.estimated_cost.tokens} tokens"
        )
    retries = len(call.attempts) - 1
    tried = f" after {retries} failed attempt{'s' if retries != 1 else ''}" if retries > 0 else ""
    return f"rendered by {call.provider} ({call.model}){tried}; cost {call.cost.cents:.2f} cents"
