"""The client of render-pipeline's public API (render.v1.RenderService): `RenderClient`, request
builders, and `renderctl` (render_client.cli)."""

from render_client.client import (
    CorruptDownload,
    GaveUpError,
    RenderClient,
    RetryNotice,
    RetryPolicy,
    generation_options,
    image_source,
    material_swap_request,
    room_batch_request,
    room_render,
    room_render_request,
    texture_edit_request,
)

__all__ = [
    "CorruptDownload",
    "GaveUpError",
    "RenderClient",
    "RetryNotice",
    "RetryPolicy",
    "generation_options",
    "image_source",
    "material_swap_request",
    "room_batch_request",
    "room_render",
    "room_render_request",
    "texture_edit_request",
]
