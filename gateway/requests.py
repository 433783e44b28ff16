"""What each request kind needs from the gateway: its image inputs and the steps of its plan."""

from __future__ import annotations

from render.v1 import render_service_pb2 as pb

SURFACES = ("floor", "walls", "ceiling")


def room_image_fields(prefix: str, room: pb.RoomRender) -> list[tuple[str, pb.ImageSource]]:
    """The swatch images of a room's materials, by field path."""
    out = []
    for surface in SURFACES:
        material = getattr(room.materials, surface)
        if material.HasField("swatch"):
            out.append((f"{prefix}.materials.{surface}.swatch", material.swatch))
    return out


def image_fields(request: pb.SubmitRenderRequest) -> list[tuple[str, pb.ImageSource]]:
    """Every image a request carries, by field path (live references into the request)."""
    kind = request.WhichOneof("kind")
    if kind == "material_swap":
        swap = request.material_swap
        out = [("material_swap.photo", swap.photo), ("material_swap.swatch", swap.swatch)]
        if swap.HasField("mask"):
            out.append(("material_swap.mask", swap.mask))
        out += [(f"material_swap.variant_swatches[{i}]", s) for i, s in enumerate(swap.variant_swatches)]
        return out
    if kind == "room_render":
        return room_image_fields("room_render", request.room_render)
    if kind == "room_batch":
        return [
            f
            for i, room in enumerate(request.room_batch.rooms)
            for f in room_image_fields(f"room_batch.rooms[{i}]", room)
        ]
    if kind == "texture_edit":
        edit = request.texture_edit
        out = [("texture_edit.base_texture", edit.base_texture)]
        if edit.HasField("mask"):
            out.append(("texture_edit.mask", edit.mask))
        return out
    return []


def plan_steps(request: pb.SubmitRenderRequest) -> int:
    """The number of steps of a request's plan (for a batch: its rooms)."""
    kind = request.WhichOneof("kind")
    if kind == "material_swap":
        return 5 if request.material_swap.options.enable_refinement else 4
    if kind == "room_batch":
        return len(request.room_batch.rooms)
    return 3
