"""A small Python client of render.v1.RenderService (what the CLI, the demo and the benchmarks use)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc

from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from renderkit.serving import CHANNEL_OPTIONS

TERMINAL_STATES = {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED}


def image_source(value: str | bytes | Path) -> pb.ImageSource:
    """Bytes, an http(s) URL, or a file path, as an ImageSource."""
    if isinstance(value, bytes):
        return pb.ImageSource(data=value)
    text = str(value)
    if text.startswith(("http://", "https://")):
        return pb.ImageSource(url=text)
    return pb.ImageSource(data=Path(text).read_bytes())


def material_swap_request(
    photo: str | bytes | Path,
    swatch: str | bytes | Path,
    *,
    quad: Sequence[tuple[float, float]] = (),
    mask: str | bytes | Path | None = None,
    repeats: float | None = None,
    refine: bool = False,
    idempotency_key: str = "",
    project_id: str = "",
    output_format: pb.ImageFormat = pb.IMAGE_FORMAT_JPEG,
    brick_offset: float | None = None,
    herringbone: bool = False,
) -> pb.SubmitRenderRequest:
    """A SubmitRenderRequest for a material swap (brick_offset lays the tiles in staggered rows,
    herringbone the swatch's planks in a zigzag)."""
    swap = pb.MaterialSwap(
        photo=image_source(photo),
        swatch=image_source(swatch),
        hints=pb.SurfaceHints(quad=[pb.Point(x=x, y=y) for x, y in quad]),
        options=pb.MaterialSwapOptions(enable_refinement=refine),
    )
    if mask is not None:
        swap.mask.CopyFrom(image_source(mask))
    if brick_offset is not None:
        swap.options.layout = pb.TILE_LAYOUT_BRICK
        swap.options.row_offset = brick_offset
    if herringbone:
        swap.options.layout = pb.TILE_LAYOUT_HERRINGBONE
    if repeats is not None:
        swap.options.real_world_scale.repeats = repeats
    return pb.SubmitRenderRequest(
        material_swap=swap,
        idempotency_key=idempotency_key,
        project_id=project_id,
        output=pb.OutputOptions(format=output_format),
    )  # type: ignore[arg-type]


def room_render(
    room_type: str,
    *,
    name: str = "",
    room_id: str = "",
    area: float = 0.0,
    floor: str = "",
    walls: str = "",
    ceiling: str = "",
    floor_swatch: str | bytes | Path | None = None,
    style: str = "",
    lighting: pb.Lighting = pb.LIGHTING_UNSPECIFIED,
    time_of_day: pb.TimeOfDay = pb.TIME_OF_DAY_UNSPECIFIED,
    additional_prompt: str = "",
    custom_prompt: str = "",
    dry_run: bool = False,
    max_cents: float | None = None,
) -> pb.RoomRender:
    """A RoomRender: the room, its surfaces' material names, and the render's options."""
    room = pb.RoomRender(
        room=pb.Room(id=room_id, name=name, room_type=room_type, area_square_meters=area),
        custom_prompt=custom_prompt,
    )
    for surface, material in (("floor", floor), ("walls", walls), ("ceiling", ceiling)):
        if material:
            getattr(room.materials, surface).name = material
    if floor_swatch is not None:
        room.materials.floor.swatch.CopyFrom(image_source(floor_swatch))
    if style or lighting or time_of_day or additional_prompt or dry_run or max_cents is not None:
        room.options.CopyFrom(
            pb.GenerationOptions(
                style_preset=style,
                lighting=lighting,
                time_of_day=time_of_day,
                additional_prompt=additional_prompt,
                dry_run=dry_run,
            )
        )
        if max_cents is not None:
            room.options.budget.max_cents = max_cents
    return room


def room_render_request(
    room: pb.RoomRender, *, project_id: str = "", idempotency_key: str = ""
) -> pb.SubmitRenderRequest:
    """A SubmitRenderRequest for one room render."""
    return pb.SubmitRenderRequest(room_render=room, project_id=project_id, idempotency_key=idempotency_key)


def room_batch_request(
    rooms: Sequence[pb.RoomRender], *, floor_plan_id: str = "", max_concurrency: int = 0, project_id: str = ""
) -> pb.SubmitRenderRequest:
    """A SubmitRenderRequest rendering every room of a floor plan as one batch."""
    return pb.SubmitRenderRequest(
        room_batch=pb.RoomBatch(floor_plan_id=floor_plan_id, rooms=rooms, max_concurrency=max_concurrency),
        project_id=project_id,
    )


def texture_edit_request(
    texture: str | bytes | Path,
    prompt: str,
    *,
    mask: str | bytes | Path | None = None,
    material_maps: bool = False,
    dry_run: bool = False,
    project_id: str = "",
) -> pb.SubmitRenderRequest:
    """A SubmitRenderRequest editing a texture (inside the mask, when one is given)."""
    edit = pb.TextureEdit(base_texture=image_source(texture), prompt=prompt)
    if mask is not None:
        edit.mask.CopyFrom(image_source(mask))
    if dry_run:
        edit.options.dry_run = True
    return pb.SubmitRenderRequest(
        texture_edit=edit, project_id=project_id, output=pb.OutputOptions(include_material_maps=material_maps)
    )


class RenderClient:
    """A blocking client over one channel."""

    def __init__(self, address: str, tenant: str = "", channel: grpc.Channel | None = None) -> None:
        self.channel = channel if channel is not None else grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.stub = pb_grpc.RenderServiceStub(self.channel)
        self.metadata = (("x-tenant-id", tenant),) if tenant else ()

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> RenderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, request: pb.SubmitRenderRequest, timeout: float = 60.0) -> pb.SubmitRenderResponse:
        return self.stub.SubmitRender(request, timeout=timeout, metadata=self.metadata)  # type: ignore[no-any-return]

    def get(self, job_id: str) -> pb.Job:
        return self.stub.GetJob(pb.GetJobRequest(job_id=job_id), metadata=self.metadata).job  # type: ignore[no-any-return]

    def cancel(self, job_id: str) -> pb.Job:
        return self.stub.CancelJob(pb.CancelJobRequest(job_id=job_id), metadata=self.metadata).job  # type: ignore[no-any-return]

    def list(self, page_size: int = 20, page_token: str = "", project_id: str = "") -> pb.ListJobsResponse:
        return self.stub.ListJobs(
            pb.ListJobsRequest(
                page_size=page_size,
                page_token=page_token,  # type: ignore[no-any-return]
                project_id=project_id,
            ),
            metadata=self.metadata,
        )

    def watch(self, job_id: str, after: str = "", timeout: float | None = None) -> Iterator[pb.JobEvent]:
        """Events after a cursor until the job ends; reconnects resume from the last cursor seen."""
        cursor = after
        while True:
            try:
                for reply in self.stub.WatchJob(
                    pb.WatchJobRequest(job_id=job_id, after=cursor), timeout=timeout, metadata=self.metadata
                ):
                    cursor = reply.event.cursor
                    yield reply.event
                    if reply.event.state in TERMINAL_STATES:
                        return
                return
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                    raise

    def wait(self, job_id: str, timeout: float | None = None) -> pb.Job:
        """Blocks until the job ends and returns it."""
        for _ in self.watch(job_id, timeout=timeout):
            pass
        return self.get(job_id)
