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
) -> pb.SubmitRenderRequest:
    """A SubmitRenderRequest for a material swap (brick_offset lays the tiles in staggered rows)."""
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
    if repeats is not None:
        swap.options.real_world_scale.repeats = repeats
    return pb.SubmitRenderRequest(
        material_swap=swap,
        idempotency_key=idempotency_key,
        project_id=project_id,
        output=pb.OutputOptions(format=output_format),
    )  # type: ignore[arg-type]


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
