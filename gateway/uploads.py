"""A submit's inline images, moved to storage so that the ledger keeps only references: uploaded
together, and deleted again when the submit records no job."""

from __future__ import annotations

import asyncio

from gateway import folders
from gateway.context import UPLOADS_AT_ONCE
from gateway.requests import image_fields
from render.v1 import render_service_pb2 as pb
from renderkit.storage import Storage
from renderkit.storage.together import put_all


def upload_key(job_id: str, field_path: str) -> str:
    """Where a job's inline image is kept until the job ends."""
    return folders.uploads(job_id) + field_path.replace("[", "-").replace("]", "")


async def upload_inputs(storage: Storage, job_id: str, request: pb.SubmitRenderRequest) -> tuple[bytes, dict[str, str]]:
    """The request as the ledger keeps it (its inline images' bytes left out) and each uploaded
    field's key. The images go up together, UPLOADS_AT_ONCE at a time; if one cannot be stored,
    the others are deleted and its error raised: a submit keeps all of its images or none (one
    whose caller gives up while they go up keeps none either)."""
    inline = [(path, source) for path, source in image_fields(request) if source.WhichOneof("source") == "data"]
    inputs = {path: upload_key(job_id, path) for path, _ in inline}
    items = [
        (inputs[path], lambda source=source: source.data, "application/octet-stream")  # type: ignore[misc]
        for path, source in inline
    ]
    stored_request, _ = await asyncio.gather(
        asyncio.to_thread(_without_inline_images, request),
        put_all(storage, items, UPLOADS_AT_ONCE, undo_if_cancelled=True),
    )
    return stored_request, inputs


def drop_uploads(storage: Storage, job_id: str, inputs: dict[str, str]) -> None:
    """Deletes what a submit uploaded (never an asset: other jobs may use it)."""
    for key in inputs.values():
        if key.startswith(folders.uploads(job_id)):
            storage.delete(key)


def _without_inline_images(request: pb.SubmitRenderRequest) -> bytes:
    copy = pb.SubmitRenderRequest()
    copy.CopyFrom(request)
    for _, source in image_fields(copy):
        if source.WhichOneof("source") == "data":
            source.data = b""
    return copy.SerializeToString()
