"""Validation of SubmitRenderRequest: every problem names its field (google.rpc.BadRequest)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from gateway.fetch import url_problem
from render.v1 import render_service_pb2 as pb
from renderkit import imaging
from renderkit.homography import quad_problem

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


@dataclass(frozen=True)
class Limits:
    """Input limits the gateway enforces."""

    max_image_bytes: int = 40 * 1024 * 1024
    max_pixels: int = imaging.DEFAULT_MAX_PIXELS
    min_side: int = 64
    allow_private_urls: bool = False
    max_stage_timeout_s: float = 600.0


Violation = tuple[str, str]
MAX_VARIANTS = 8


def _image(
    source: pb.ImageSource, field: str, limits: Limits, required: bool, min_side: int
) -> tuple[list[Violation], imaging.ImageInfo | None]:
    which = source.WhichOneof("source")
    if which is None:
        return ([(field, "is required: give data or url")] if required else []), None
    if which == "url":
        problem = url_problem(source.url, limits.allow_private_urls)
        return ([(f"{field}.url", problem)] if problem else []), None
    if len(source.data) > limits.max_image_bytes:
        return [(f"{field}.data", f"is {len(source.data):,} bytes, more than {limits.max_image_bytes:,}")], None
    return check_image(source.data, f"{field}.data", limits, min_side)


def check_image(
    data: bytes, field: str, limits: Limits, min_side: int
) -> tuple[list[Violation], imaging.ImageInfo | None]:
    """Checks an encoded image's type and size (also used on downloaded bytes)."""
    try:
        info = imaging.probe(data, max_pixels=limits.max_pixels)
    except imaging.ImageError as exc:
        return [(field, str(exc))], None
    if min(info.width, info.height) < min_side:
        return [(field, f"is {info.width}x{info.height}; both sides must be at least {min_side} px")], None
    return [], info


def _points(points: Iterable[pb.Point], field: str, info: imaging.ImageInfo | None) -> list[Violation]:
    out = []
    for i, p in enumerate(points):
        if not (math.isfinite(p.x) and math.isfinite(p.y)):
            out.append((f"{field}[{i}]", "must be finite"))
        elif info is not None and not (-info.width <= p.x <= 2 * info.width and -info.height <= p.y <= 2 * info.height):
            out.append((f"{field}[{i}]", "lies far outside the photo"))
    return out


def validate_submit(request: pb.SubmitRenderRequest, limits: Limits) -> list[Violation]:
    """Every problem of a request, as (field path, description)."""
    violations: list[Violation] = []
    for field in ("project_id", "user_id", "idempotency_key"):
        value = getattr(request, field)
        if value and not _ID.match(value):
            violations.append((field, "use 1-128 letters, digits or _ . : - (starting with a letter or digit)"))
    if request.output.quality and not 1 <= request.output.quality <= 100:
        violations.append(("output.quality", "must be between 1 and 100"))
    kind = request.WhichOneof("kind")
    if kind is None:
        violations.append(("kind", "is required: set material_swap"))
        return violations
    swap = request.material_swap
    base = "material_swap"
    found, photo = _image(swap.photo, f"{base}.photo", limits, True, limits.min_side)
    violations += found
    violations += _image(swap.swatch, f"{base}.swatch", limits, True, 8)[0]
    if len(swap.variant_swatches) > MAX_VARIANTS:
        violations.append(
            (f"{base}.variant_swatches", f"at most {MAX_VARIANTS} variants, got {len(swap.variant_swatches)}")
        )
    for index, variant in enumerate(swap.variant_swatches[:MAX_VARIANTS]):
        violations += _image(variant, f"{base}.variant_swatches[{index}]", limits, True, 8)[0]
    found, mask = _image(swap.mask, f"{base}.mask", limits, False, 1)
    violations += found
    if photo and mask and (mask.width, mask.height) != (photo.width, photo.height):
        violations.append(
            (
                f"{base}.mask.data",
                f"is {mask.width}x{mask.height}; it must be the photo's size {photo.width}x{photo.height}",
            )
        )
    hints = swap.hints
    if hints.quad:
        if len(hints.quad) != 4:
            violations.append((f"{base}.hints.quad", f"needs exactly 4 points, got {len(hints.quad)}"))
        else:
            bad = _points(hints.quad, f"{base}.hints.quad", photo)
            violations += bad
            if not bad:
                problem = quad_problem(np.array([[p.x, p.y] for p in hints.quad], dtype=np.float64))
                if problem:
                    violations.append((f"{base}.hints.quad", problem))
    if hints.polygon:
        if len(hints.polygon) < 3:
            violations.append((f"{base}.hints.polygon", "needs at least 3 points"))
        violations += _points(hints.polygon, f"{base}.hints.polygon", photo)
    violations += _points(hints.positive_points, f"{base}.hints.positive_points", photo)
    violations += _points(hints.negative_points, f"{base}.hints.negative_points", photo)
    if hints.HasField("quad_size") and (hints.quad_size.width_meters <= 0 or hints.quad_size.height_meters <= 0):
        violations.append((f"{base}.hints.quad_size", "both sides must be positive"))
    options = swap.options
    scale = options.real_world_scale
    which = scale.WhichOneof("scale")
    if which == "repeats" and not (0.01 <= scale.repeats <= 1000):
        violations.append((f"{base}.options.real_world_scale.repeats", "must be between 0.01 and 1000"))
    if which == "swatch_size":
        if scale.swatch_size.width_meters <= 0 or scale.swatch_size.height_meters < 0:
            violations.append((f"{base}.options.real_world_scale.swatch_size", "width must be positive"))
        if not hints.HasField("quad_size"):
            violations.append(
                (
                    f"{base}.options.real_world_scale.swatch_size",
                    "needs hints.quad_size (the surface's physical size) to place the swatch at scale",
                )
            )
    if options.HasField("stage_timeout_seconds") and not (
        0 < options.stage_timeout_seconds <= limits.max_stage_timeout_s
    ):
        violations.append(
            (f"{base}.options.stage_timeout_seconds", f"must be more than 0 and at most {limits.max_stage_timeout_s:g}")
        )
    if not (math.isfinite(options.row_offset) and 0.0 <= options.row_offset < 1.0):
        violations.append((f"{base}.options.row_offset", "must be at least 0 and less than 1"))
    if options.row_offset and options.layout != pb.TILE_LAYOUT_BRICK:
        violations.append((f"{base}.options.row_offset", "applies to TILE_LAYOUT_BRICK only"))
    if not math.isfinite(options.rotation_degrees):
        violations.append((f"{base}.options.rotation_degrees", "must be finite"))
    # Without a quad the plane comes from the depth model, which needs the surface's outline.
    if not hints.quad and not violations and not (hints.polygon or swap.HasField("mask") or swap.surface):
        violations.append((f"{base}.hints", "give a quad, or a mask/polygon/surface with the depth model"))
    return violations
