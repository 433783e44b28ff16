"""Validation of SubmitRenderRequest: every problem names its field (google.rpc.BadRequest)."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from render.v1 import render_service_pb2 as pb
from renderkit import budget, imaging, prompts
from renderkit.fetch import url_problem
from renderkit.homography import quad_problem
from renderkit.scale import DEFAULT_REPEATS, Tiling, tiling_from_repeats, tiling_from_sizes

# Callers' ids and keys (project_id, user_id, idempotency keys).
IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
IDENTIFIER_RULE = "use 1-128 letters, digits or _ . : - (starting with a letter or digit)"


@dataclass(frozen=True)
class Limits:
    """Input limits the gateway enforces."""

    max_image_bytes: int = 40 * 1024 * 1024
    max_pixels: int = imaging.DEFAULT_MAX_PIXELS
    min_side: int = 64
    allow_private_urls: bool = False
    max_stage_timeout_s: float = 600.0
    max_tokens_per_job: int = 10000
    max_cents_per_job: float = 100.0
    # The memory one request may need in its heaviest stage (renderkit.budget estimates it).
    request_memory_bytes: int = budget.DEFAULT_REQUEST_BYTES
    # Watches (WatchJob, SubmitAndWatch) one tenant may hold open on one gateway replica.
    max_watches_per_tenant: int = 1000


Violation = tuple[str, str]
# The headers of the uploaded assets a request names, by asset id (what UploadAsset probed).
Assets = Mapping[str, imaging.ImageInfo]
NO_ASSETS: Assets = MappingProxyType({})
MAX_VARIANTS = 8
# Uploaded assets a request may name (a batch's rooms' swatches are the most a valid one has), and
# what an asset id looks like (gateway.assets.asset_id_of): checked before any is looked up.
MAX_NAMED_ASSETS = 256
ASSET_ID = re.compile(r"as_[0-9a-f]{40}")
# Physical lengths (a swatch, a quad's sides, the plane's distance), in metres: a millimetre to ten
# kilometres covers every real surface; outside it a value is a unit mistake, and would ask the
# projection for billions of repeats or none.
LENGTH_RANGE_M = (0.001, 10000.0)
# How many times a swatch may repeat across a surface: a count given, and what physical sizes
# work out to once the plane is known (a 2 cm mosaic on a 50 m pool is 2,500).
MIN_REPEATS = 0.01
MAX_REPEATS = 1000.0
MAX_IMPLIED_REPEATS = 10000.0
MAX_POLYGON_POINTS = 1000
# The least side of a texture to edit, however it is given (inline, uploaded or by URL).
MIN_TEXTURE_SIDE = 64
MAX_CLICKS = 100


def _image(
    source: pb.ImageSource, field: str, limits: Limits, required: bool, min_side: int, assets: Assets
) -> tuple[list[Violation], imaging.ImageInfo | None]:
    which = source.WhichOneof("source")
    if which is None:
        return ([(field, "is required: give data, url or asset_id")] if required else []), None
    if which == "asset_id":
        info = assets.get(source.asset_id)
        if info is None:
            return [(f"{field}.asset_id", "no such asset: upload the image with UploadAsset (assets expire)")], None
        if min(info.width, info.height) < min_side:
            return [
                (f"{field}.asset_id", f"is {info.width}x{info.height}; both sides must be at least {min_side} px")
            ], None
        return [], info
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


_LENGTHS = f"between {LENGTH_RANGE_M[0]:g} and {LENGTH_RANGE_M[1]:g} metres"


def _length(metres: float) -> bool:
    """Whether a physical length is one a real surface or swatch can have."""
    return LENGTH_RANGE_M[0] <= metres <= LENGTH_RANGE_M[1]  # False for NaN


def _points(points: Iterable[pb.Point], field: str) -> list[Violation]:
    return [(f"{field}[{i}]", "must be finite") for i, p in enumerate(points) if not _finite(p)]


def _finite(point: pb.Point) -> bool:
    return math.isfinite(point.x) and math.isfinite(point.y)


# An outline's corners may lie beyond the photo (a floor runs on past its edges) but not without
# bound: as far as a photo's own size past each edge. A click is on the photo, give or take a pixel
# (a click on the last column lands at x = width).
_OUTLINE_REACH = 1.0
_CLICK_TOLERANCE_PX = 1.0
# A box must hold enough of the photo to tell a surface's colour and texture from what surrounds
# it: one a pixel or two across gave an empty mask, and the job failed as an empty surface.
MIN_BOX_SIDE_PX = 8
# WebP's format stores a side in 14 bits.
WEBP_MAX_SIDE = 16383


def _off_photo(
    points: Sequence[pb.Point], field: str, photo: imaging.ImageInfo, reach: float, tolerance: float, problem: str
) -> list[Violation]:
    """The finite points that lie past `reach` photo sizes (plus `tolerance` pixels) beyond its edges."""
    x_room = reach * photo.width + tolerance
    y_room = reach * photo.height + tolerance
    return [
        (f"{field}[{i}]", problem)
        for i, p in enumerate(points)
        if _finite(p) and not (-x_room <= p.x <= photo.width + x_room and -y_room <= p.y <= photo.height + y_room)
    ]


def photo_hint_problems(hints: pb.SurfaceHints, photo: imaging.ImageInfo) -> list[Violation]:
    """The hints' problems that only the photo's size shows: an outline far outside it, a click or a
    box off it, a focal length no camera has for it. Checked at submit when the photo's header is
    known (inline or uploaded), and by the job's plan once a photo given by URL has arrived, so
    both get the same answers. What submit refuses regardless (NaN, counts) is not repeated."""
    base = "material_swap.hints"
    violations: list[Violation] = []
    outlines = ((hints.quad, "quad", 4), (hints.polygon, "polygon", MAX_POLYGON_POINTS))
    for points, name, most in outlines:
        if len(points) <= most:
            violations += _off_photo(points, f"{base}.{name}", photo, _OUTLINE_REACH, 0.0, "lies far outside the photo")
    for points, name in ((hints.positive_points, "positive_points"), (hints.negative_points, "negative_points")):
        if len(points) <= MAX_CLICKS:
            violations += _off_photo(
                points, f"{base}.{name}", photo, 0.0, _CLICK_TOLERANCE_PX, f"must lie on the photo ({_size(photo)})"
            )
    box = hints.box
    corners = (box.x_min, box.y_min, box.x_max, box.y_max)
    if all(math.isfinite(v) for v in corners) and box.x_max > box.x_min and box.y_max > box.y_min:
        across = min(box.x_max, photo.width) - max(box.x_min, 0.0)
        down = min(box.y_max, photo.height) - max(box.y_min, 0.0)
        if across <= 0 or down <= 0:
            violations.append((f"{base}.box", f"must overlap the photo ({_size(photo)})"))
        elif min(across, down) < MIN_BOX_SIDE_PX:
            violations.append(
                (f"{base}.box", f"must cover at least {MIN_BOX_SIDE_PX} x {MIN_BOX_SIDE_PX} pixels of the photo")
            )
    focal = hints.focal_length_px
    if math.isfinite(focal) and focal > 0 and not 0.1 <= focal / max(photo.width, photo.height) <= 20:
        violations.append((f"{base}.focal_length_px", "must be between 0.1 and 20 times the photo's longer side"))
    return violations


def webp_problem(output: pb.OutputOptions, image: imaging.ImageInfo, what: str) -> Violation | None:
    """Whether a WebP output could not hold an image of this size (the full-size rendition is the
    photo's or texture's own size); `what` names the image in the description."""
    if output.format != pb.IMAGE_FORMAT_WEBP or max(image.width, image.height) <= WEBP_MAX_SIDE:
        return None
    return (
        "output.format",
        f"WebP holds at most {WEBP_MAX_SIDE} px a side, and the {what} is {_size(image)}: choose JPEG or PNG",
    )


def material_swap_photo_problems(
    swap: pb.MaterialSwap, output: pb.OutputOptions, photo: imaging.ImageInfo
) -> list[Violation]:
    """Everything about a material swap that its photo's size decides (photo_hint_problems, and
    whether the output format can hold the result)."""
    webp = webp_problem(output, photo, "photo")
    return photo_hint_problems(swap.hints, photo) + ([webp] if webp else [])


def _size(image: imaging.ImageInfo) -> str:
    return f"{image.width}x{image.height}"


_ENUM = FieldDescriptor.TYPE_ENUM
_MESSAGE = FieldDescriptor.TYPE_MESSAGE


def unknown_enum_values(message: Message, path: str = "") -> list[Violation]:
    """Every enum value in a message (nested messages, repeated fields, maps and oneofs included)
    that its enum type does not define. Proto3 enums are open: a number the schema does not know
    parses and is kept, so without this check it would surface later as an internal error, or be
    silently ignored. Only the fields that can hold an enum are looked at, from a plan worked out
    once per type (_enum_probes), in field-number order as ListFields gives them: a message field
    only when set (HasField; a oneof's member when WhichOneof names it), an enum or a list as it
    is (an unset enum is 0, always known; an unset list is empty). Asking for those few fields
    costs less than listing the set ones (ListFields was ~8,800 instructions on a room render's
    three fields, a HasField ~1,700, a read ~1,200, callgrind). Per walk, callgrind: a dry-run room
    render 32.1k -> 30.2k instructions, a material swap 59.8k -> 36.4k, a batch of five rooms
    150k -> 120k, a texture edit with a webhook 38.7k -> 34.4k."""
    probes = _enum_probes(message.DESCRIPTOR)
    if probes is None:
        return []
    oneofs, fields = probes
    chosen = [message.WhichOneof(name) for name in oneofs]
    violations: list[Violation] = []
    for name, kind, known, oneof in fields:
        if oneof >= 0:
            if chosen[oneof] != name:
                continue
        elif kind == _SINGLE_MESSAGE and not message.HasField(name):
            continue
        value = getattr(message, name)
        if kind == _SINGLE_ENUM:
            if value not in known:
                violations.append((f"{path}.{name}" if path else name, _UNKNOWN % value))
            continue
        where = f"{path}.{name}" if path else name
        if kind == _SINGLE_MESSAGE:
            violations += unknown_enum_values(value, where)
        elif kind == _ENUM_LIST:
            violations += [(f"{where}[{i}]", _UNKNOWN % v) for i, v in enumerate(value) if v not in known]
        elif kind == _MESSAGE_LIST:
            for i, item in enumerate(value):
                violations += unknown_enum_values(item, f"{where}[{i}]")
        elif kind == _ENUM_MAP:
            violations += [(f"{where}[{k!r}]", _UNKNOWN % v) for k, v in value.items() if v not in known]
        else:  # a map to messages
            for k, item in value.items():
                violations += unknown_enum_values(item, f"{where}[{k!r}]")
    return violations


_UNKNOWN = "is %d, not a known value"
_SINGLE_ENUM, _ENUM_LIST, _SINGLE_MESSAGE, _MESSAGE_LIST, _ENUM_MAP, _MESSAGE_MAP = range(6)
_NO_VALUES: frozenset[int] = frozenset()
# A type's oneofs to ask WhichOneof of, and its fields that can hold an enum, in field-number order,
# as (name, kind, the enum's numbers, the index of its oneof among those or -1).
_Probes = tuple[tuple[str, ...], tuple[tuple[str, int, frozenset[int], int], ...]]
_PROBES: dict[Any, _Probes | None] = {}


def _enum_probes(descriptor: Any) -> _Probes | None:
    """What unknown_enum_values asks of a message type (None: it holds no enum at any depth). A
    field of a oneof of two or more fields is found by the oneof's WhichOneof, asked once; one
    alone in its oneof (a proto3 `optional`) is asked as any other field."""
    if descriptor in _PROBES:
        return _PROBES[descriptor]
    oneofs: list[str] = []
    fields = []
    for field in sorted(descriptor.fields, key=lambda f: f.number):
        entry = _enum_entry(field)
        if entry is None:
            continue
        group = field.containing_oneof
        oneof = -1
        if group is not None and len(group.fields) > 1:
            if group.name not in oneofs:
                oneofs.append(group.name)
            oneof = oneofs.index(group.name)
        fields.append((field.name, *entry, oneof))
    probes = (tuple(oneofs), tuple(fields)) if fields else None
    _PROBES[descriptor] = probes
    return probes


def _enum_entry(field: Any) -> tuple[int, frozenset[int]] | None:
    """A field's kind for the walk and its enum's numbers, when it can hold an enum value: an enum,
    or a message (a list or a map too) with an enum at any depth."""
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        mapped = entry.fields_by_name["value"]
        if mapped.type == _ENUM:
            return _ENUM_MAP, _numbers(mapped)
        if mapped.type == _MESSAGE and _holds_enums(mapped.message_type):
            return _MESSAGE_MAP, _NO_VALUES
        return None
    if field.type == _ENUM:
        return (_ENUM_LIST if field.is_repeated else _SINGLE_ENUM), _numbers(field)
    if field.type == _MESSAGE and _holds_enums(field.message_type):
        return (_MESSAGE_LIST if field.is_repeated else _SINGLE_MESSAGE), _NO_VALUES
    return None


def _numbers(field: Any) -> frozenset[int]:
    return frozenset(field.enum_type.values_by_number)


_HOLDS_ENUMS: dict[str, bool] = {}


def _holds_enums(descriptor: Any, within: frozenset[str] = frozenset()) -> bool:
    """Whether a message type has an enum field at any depth (its values need checking)."""
    name = descriptor.full_name
    known = _HOLDS_ENUMS.get(name)
    if known is not None:
        return known
    if name in within:  # a recursive type: its fields are being looked at already
        return False
    inner = within | {name}
    found = any(
        f.type == _ENUM or (f.type == _MESSAGE and _holds_enums(f.message_type, inner)) for f in descriptor.fields
    )
    if found or not within:  # a "no" found inside a cycle may be incomplete; only the outermost is sure
        _HOLDS_ENUMS[name] = found
    return found


def webhook_violations(url: str, events: Sequence[int], prefix: str, allow_private: bool) -> list[Violation]:
    """The problems of a webhook's URL and event filter (`prefix` is the fields' path, "" or
    "webhook."): the URL under the download rules, so a caller cannot aim the gateway at a
    non-global address."""
    if not url:
        return [(f"{prefix}url", "is required: the http(s) URL to post the events to")]
    violations: list[Violation] = []
    problem = url_problem(url, allow_private)
    if problem:
        violations.append((f"{prefix}url", problem))
    if len(events) > len(WEBHOOK_EVENTS):  # each named once at most is all a filter needs
        return [*violations, (f"{prefix}events", f"at most {len(WEBHOOK_EVENTS)} events, got {len(events)}")]
    for index, event in enumerate(events):
        if event == pb.WEBHOOK_EVENT_UNSPECIFIED:
            violations.append((f"{prefix}events[{index}]", "name STARTED, PROGRESS or COMPLETED"))
    return violations


WEBHOOK_EVENTS = tuple(value for value in pb.WebhookEvent.values() if value != pb.WEBHOOK_EVENT_UNSPECIFIED)
# The most list entries a submit may hold across all its repeated fields (a batch's fifty rooms with
# their hints are far fewer). A request under _FEW_ENTRIES_BYTES cannot hold more than that many
# (each costs a byte or two), so only larger ones are counted.
MAX_LIST_ENTRIES = 10_000
_FEW_ENTRIES_BYTES = 8 * 1024


def too_many_entries(request: Message) -> Violation | None:
    """A request whose repeated fields hold more than MAX_LIST_ENTRIES entries in all, counted
    before anything walks one of them: every check and the images' listing walk each entry on the
    event loop, and a request of a million empty ones held every caller for seconds and took half
    a gigabyte. The count stops at the limit."""
    if request.ByteSize() < _FEW_ENTRIES_BYTES:
        return None
    left = [MAX_LIST_ENTRIES]

    def count(message: Message, path: str) -> str | None:
        for field, value in message.ListFields():
            where = f"{path}{field.name}"
            if not field.is_repeated:
                if field.message_type is not None:
                    found = count(value, f"{where}.")
                    if found:
                        return found
                continue
            left[0] -= len(value)
            if left[0] < 0:
                return where
            if field.message_type is not None and not field.message_type.GetOptions().map_entry:
                for item in value:
                    found = count(item, f"{where}[].")
                    if found:
                        return found
        return None

    where = count(request, "")
    return None if where is None else (where, f"the request holds more than {MAX_LIST_ENTRIES} list entries in all")


def validate_submit(request: pb.SubmitRenderRequest, limits: Limits, assets: Assets = NO_ASSETS) -> list[Violation]:
    """Every problem of a request, as (field path, description); `assets` are the tenant's assets
    among those the request names (a name not among them is refused)."""
    violations: list[Violation] = unknown_enum_values(request)
    if request.HasField("webhook"):
        hook = request.webhook
        violations += webhook_violations(hook.url, hook.events, "webhook.", limits.allow_private_urls)
    for field in ("project_id", "user_id", "idempotency_key"):
        value = getattr(request, field)
        if value and not IDENTIFIER.match(value):
            violations.append((field, IDENTIFIER_RULE))
    if request.output.quality and not 1 <= request.output.quality <= 100:
        violations.append(("output.quality", "must be between 1 and 100"))
    kind = request.WhichOneof("kind")
    if kind is None:
        violations.append(("kind", "is required: set material_swap, room_render, room_batch or texture_edit"))
        return violations
    if kind == "room_render":
        return violations + _room_render(request.room_render, "room_render", limits, assets, require_options=False)
    if kind == "room_batch":
        return violations + _room_batch(request.room_batch, limits, assets)
    if kind == "texture_edit":
        return violations + _texture_edit(request.texture_edit, request.output, limits, assets)
    return violations + _material_swap(request.material_swap, request.output, limits, assets)


def source_field(source: pb.ImageSource, field: str) -> str:
    """The path of an image source's set member: field.data, field.url or field.asset_id."""
    return f"{field}.{source.WhichOneof('source') or 'data'}"


def segmentation_needs_photo(swap: pb.MaterialSwap) -> bool:
    """Whether the swap's segmentation is sent the photo: clicks, a box, a client mask, a polygon, a
    named surface or no quad. A quad alone only outlines the surface, drawn from its four corners
    (gateway.material_swap), and the photo is never decoded for it."""
    hints = swap.hints
    clicks = bool(hints.positive_points) or hints.box.x_max > hints.box.x_min
    surface = swap.surface in (pb.SURFACE_FLOOR, pb.SURFACE_WALL, pb.SURFACE_CEILING, pb.SURFACE_FACADE)
    return bool(clicks or swap.HasField("mask") or hints.polygon or surface or not hints.quad)


def material_swap_memory(
    swap: pb.MaterialSwap,
    photo: imaging.ImageInfo | None,
    swatches: Sequence[tuple[str, imaging.ImageInfo]],
    material_maps: bool,
    limits: Limits,
) -> Violation | None:
    """Whether a material swap fits in the memory budget, from its images' headers (an unknown
    photo, not downloaded yet, counts as none); when it does not, the field of the image to blame:
    the photo, or the largest swatch when even without the photo the swatches do not fit."""
    refinement = swap.options.enable_refinement
    segmentation = segmentation_needs_photo(swap)
    swatch_pixels = [info.pixels for _, info in swatches]
    photo_pixels = photo.pixels if photo else 0

    def need(photo_px: int, swatch_px: Sequence[int]) -> int:
        return budget.material_swap_bytes(
            photo_px, swatch_px, material_maps=material_maps, refinement=refinement, segmentation=segmentation
        )

    allowed = limits.request_memory_bytes
    total = need(photo_pixels, swatch_pixels)
    if total <= allowed:
        return None
    if photo is not None and need(0, swatch_pixels) <= allowed:
        largest = budget.largest_pixels(lambda px: need(px, swatch_pixels), allowed)
        return (
            source_field(swap.photo, "material_swap.photo"),
            budget.over_budget_text(photo.width, photo.height, "photo", total, allowed, largest),
        )
    field, info = max(swatches, key=lambda item: item[1].pixels)
    largest = budget.largest_pixels(lambda px: need(photo_pixels, [px]), allowed)
    return field, budget.over_budget_text(info.width, info.height, "swatch", total, allowed, largest)


def tiling_of(
    swap: pb.MaterialSwap, swatch: imaging.ImageInfo, meters_per_unit: float = 0.0, plane_aspect: float = 1.0
) -> tuple[Tiling, str]:
    """The swatch's repeats on the surface and the field that sets them: from physical sizes (the
    quad's, or a metric plane's: meters_per_unit > 0), or from a repeat count over the quad's (or the
    plane's) aspect. hints.quad_size counts only with a quad: the plane's unit square is then the
    quad's, where without one it is the depth plane's, which quad_size does not describe. With a
    quad and its size, nothing here waits for the plane (submit checks it)."""
    hints, scale = swap.hints, swap.options.real_world_scale
    quad_size = bool(hints.quad) and hints.HasField("quad_size")
    if scale.WhichOneof("scale") == "swatch_size":
        size = scale.swatch_size
        swatch_h = size.height_meters or size.width_meters * swatch.height / swatch.width
        if quad_size:
            surface = (hints.quad_size.width_meters, hints.quad_size.height_meters)
        else:
            surface = (meters_per_unit, meters_per_unit / plane_aspect)
        return tiling_from_sizes(surface[0], surface[1], size.width_meters, swatch_h), (
            "material_swap.options.real_world_scale.swatch_size"
        )
    aspect = hints.quad_size.width_meters / hints.quad_size.height_meters if quad_size else plane_aspect
    repeats = scale.repeats if scale.WhichOneof("scale") == "repeats" else DEFAULT_REPEATS
    tiling = tiling_from_repeats(repeats, aspect, swatch.width / swatch.height)
    return tiling, "material_swap.hints.quad_size" if quad_size else "material_swap.hints"


def repeats_problem(tiling: Tiling, field: str) -> Violation | None:
    """Repeats across the surface outside MIN_REPEATS..MAX_IMPLIED_REPEATS: a unit mistake, which
    would render as one blurred texel or as the swatch's average colour."""
    across = (tiling.repeats_u, tiling.repeats_v)
    if all(MIN_REPEATS <= r <= MAX_IMPLIED_REPEATS for r in across):
        return None
    return field, (
        f"puts the swatch {across[0]:.3g} x {across[1]:.3g} times across the surface; it must be between "
        f"{MIN_REPEATS:g} and {MAX_IMPLIED_REPEATS:g} times (the sizes are in metres)"
    )


def _material_swap(swap: pb.MaterialSwap, output: pb.OutputOptions, limits: Limits, assets: Assets) -> list[Violation]:
    violations: list[Violation] = []
    material_maps = output.include_material_maps
    base = "material_swap"
    found, photo = _image(swap.photo, f"{base}.photo", limits, True, limits.min_side, assets)
    violations += found
    found, swatch = _image(swap.swatch, f"{base}.swatch", limits, True, 8, assets)
    violations += found
    swatches = [(source_field(swap.swatch, f"{base}.swatch"), swatch)] if swatch else []
    if len(swap.variant_swatches) > MAX_VARIANTS:
        violations.append(
            (f"{base}.variant_swatches", f"at most {MAX_VARIANTS} variants, got {len(swap.variant_swatches)}")
        )
    for index, variant in enumerate(swap.variant_swatches[:MAX_VARIANTS]):
        found, info = _image(variant, f"{base}.variant_swatches[{index}]", limits, True, 8, assets)
        violations += found
        if info:
            swatches.append((source_field(variant, f"{base}.variant_swatches[{index}]"), info))
    if not violations and (photo or swatches):
        # What the headers say cannot fit is refused before anything is decoded; URL inputs are
        # checked the same way when they arrive.
        memory = material_swap_memory(swap, photo, swatches, material_maps, limits)
        if memory:
            violations.append(memory)
    found, mask = _image(swap.mask, f"{base}.mask", limits, False, 1, assets)
    violations += found
    if photo and mask and (mask.width, mask.height) != (photo.width, photo.height):
        violations.append(
            (
                source_field(swap.mask, f"{base}.mask"),
                f"is {mask.width}x{mask.height}; it must be the photo's size {photo.width}x{photo.height}",
            )
        )
    hints = swap.hints
    if hints.quad:
        if len(hints.quad) != 4:
            violations.append((f"{base}.hints.quad", f"needs exactly 4 points, got {len(hints.quad)}"))
        else:
            bad = _points(hints.quad, f"{base}.hints.quad")
            violations += bad
            if not bad:
                problem = quad_problem(np.array([[p.x, p.y] for p in hints.quad], dtype=np.float64))
                if problem:
                    violations.append((f"{base}.hints.quad", problem))
    # Bounded counts: a hostile request of a million points would cost seconds to check and draw.
    for name, points, most in (
        ("polygon", hints.polygon, MAX_POLYGON_POINTS),
        ("positive_points", hints.positive_points, MAX_CLICKS),
        ("negative_points", hints.negative_points, MAX_CLICKS),
    ):
        if len(points) > most:
            violations.append((f"{base}.hints.{name}", f"at most {most} points, got {len(points)}"))
        else:
            violations += _points(points, f"{base}.hints.{name}")
    if hints.polygon and len(hints.polygon) < 3:
        violations.append((f"{base}.hints.polygon", "needs at least 3 points"))
    if hints.HasField("quad_size") and not hints.quad:
        # Without a quad the plane's unit square is the depth plane's: the size would describe nothing.
        violations.append((f"{base}.hints.quad_size", "applies with a quad only"))
    elif hints.HasField("quad_size") and not (
        _length(hints.quad_size.width_meters) and _length(hints.quad_size.height_meters)
    ):
        violations.append((f"{base}.hints.quad_size", f"both sides must be {_LENGTHS}"))
    if not math.isfinite(hints.focal_length_px) or hints.focal_length_px < 0:
        violations.append((f"{base}.hints.focal_length_px", "must be positive (or zero: unknown)"))
    if hints.plane_distance_meters != 0 and not _length(hints.plane_distance_meters):
        violations.append((f"{base}.hints.plane_distance_meters", f"must be {_LENGTHS} (or zero: unknown)"))
    if photo:
        # A photo given by URL meets the same checks when it arrives (gateway.material_swap).
        violations += material_swap_photo_problems(swap, output, photo)
    options = swap.options
    scale = options.real_world_scale
    which = scale.WhichOneof("scale")
    if which == "repeats" and not (MIN_REPEATS <= scale.repeats <= MAX_REPEATS):
        violations.append(
            (f"{base}.options.real_world_scale.repeats", f"must be between {MIN_REPEATS:g} and {MAX_REPEATS:g}")
        )
    if which == "swatch_size":
        size = scale.swatch_size
        if not (_length(size.width_meters) and (size.height_meters == 0 or _length(size.height_meters))):
            violations.append(
                (
                    f"{base}.options.real_world_scale.swatch_size",
                    f"width must be {_LENGTHS}, and height too (or zero: the image's aspect)",
                )
            )
        # Without a quad the plane may come out metric (a metric depth model); that is checked
        # when the plane is known. A quad's plane is metric only with its size or distance.
        if hints.quad and not (hints.HasField("quad_size") or hints.plane_distance_meters > 0):
            violations.append(
                (
                    f"{base}.options.real_world_scale.swatch_size",
                    "with a quad, needs hints.quad_size (the surface's physical size) or "
                    "hints.plane_distance_meters (a metric plane) to place the swatch at scale",
                )
            )
    if not violations and swatch and hints.quad and hints.HasField("quad_size"):
        # A quad and its size fix the repeats before any plane is known: a unit mistake is
        # refused here, not charged as the job's failure (a swatch by URL is checked on arrival).
        unit_mistake = repeats_problem(*tiling_of(swap, swatch))
        if unit_mistake is not None:
            violations.append(unit_mistake)
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
    if options.grout_color:
        try:
            imaging.grout_bgr(options.grout_color)
        except ValueError as exc:
            violations.append((f"{base}.options.grout_color", str(exc)))
    box = hints.box
    if hints.HasField("box"):
        corners = (box.x_min, box.y_min, box.x_max, box.y_max)
        if not all(math.isfinite(v) for v in corners):
            violations.append((f"{base}.hints.box", "must be finite"))
        elif (box.x_min, box.y_min, box.x_max, box.y_max) != (0, 0, 0, 0) and not (
            box.x_max > box.x_min and box.y_max > box.y_min
        ):
            violations.append((f"{base}.hints.box", "x_max must exceed x_min and y_max must exceed y_min"))
    # Without a quad the plane comes from the depth model or the photo's vanishing lines, once the
    # surface is found: from a mask or an outline, from clicks or a box (GrabCut), or by its name.
    located = (
        hints.polygon
        or swap.HasField("mask")
        or swap.surface
        or hints.positive_points
        or (box.x_max > box.x_min and box.y_max > box.y_min)
    )
    if not hints.quad and not violations and not located:
        violations.append(
            (
                f"{base}.hints",
                "give a quad, or find the surface with a mask, a polygon, positive points, a box or its name",
            )
        )
    return violations


SIZES = ("1024x1024", "1792x1024", "1024x1792", "1536x1024", "1024x1536")
MAX_ROOMS = 50
MAX_BATCH_CONCURRENCY = 8
_SHORT_TEXT = 200


def _prompt_text(text: str, field: str, max_chars: int) -> list[Violation]:
    reason = _text_problem(text, max_chars)
    return [(field, reason)] if reason else []


def _text_problem(text: str, max_chars: int) -> str | None:
    """Why a text is refused (too long, or what prompts.refusal says of it), or None."""
    if not text:
        return None
    if len(text) > max_chars:
        return f"is {len(text)} characters; at most {max_chars}"
    return _refusal(text)


def _says_something(text: str) -> bool:
    """Whether a text still says anything once sanitized (markup, controls and invisible
    characters alone are sent as nothing)."""
    return bool(text) and bool(_sanitized(text))


@functools.lru_cache(maxsize=4096)
def _sanitized(text: str) -> str:
    return prompts.sanitize(text)


def _texts(pairs: Iterable[tuple[str, str, int]], base: str) -> list[Violation]:
    """_prompt_text over (text, field under base, max characters), naming a field only when its
    text is set (most are empty, and a submit checks a dozen)."""
    violations: list[Violation] = []
    for text, field, max_chars in pairs:
        if text and (reason := _text_problem(text, max_chars)):
            violations.append((f"{base}.{field}", reason))
    return violations


@functools.lru_cache(maxsize=4096)
def _refusal(text: str) -> str | None:
    """Why a text is refused once sanitized (texts repeat: room types, material names)."""
    return prompts.refusal(_sanitized(text))


def _generation_options(
    options: pb.GenerationOptions, base: str, limits: Limits, *, sized: bool = True
) -> list[Violation]:
    """A GenerationOptions' problems; `sized` False for a texture edit, whose output keeps the
    texture's size (its size does not apply, so seed 001's "2048x2048" is not refused)."""
    violations: list[Violation] = []
    if sized and options.size and options.size not in SIZES:
        violations.append((f"{base}.size", f"must be one of {', '.join(SIZES)}"))
    violations += _texts(
        (
            (options.style_preset, "style_preset", _SHORT_TEXT),
            (options.additional_prompt, "additional_prompt", prompts.MAX_ADDITIONAL_CHARS),
        ),
        base,
    )
    budget = options.budget
    if budget.HasField("max_tokens") and not 0 <= budget.max_tokens <= limits.max_tokens_per_job:
        violations.append(
            (f"{base}.budget.max_tokens", f"must be between 0 and the server's cap of {limits.max_tokens_per_job}")
        )
    if budget.HasField("max_cents") and not (
        math.isfinite(budget.max_cents) and 0 <= budget.max_cents <= limits.max_cents_per_job
    ):
        violations.append(
            (f"{base}.budget.max_cents", f"must be between 0 and the server's cap of {limits.max_cents_per_job:g}")
        )
    return violations


def _room_render(
    room: pb.RoomRender, base: str, limits: Limits, assets: Assets, require_options: bool
) -> list[Violation]:
    violations: list[Violation] = []
    described = room.room
    # A field's path is spelled only for a problem (a valid room is the common case). With the set
    # fields walked once, a dry-run room render's check fell from ~79k to ~74k instructions.
    for name in ("id", "name", "room_type"):
        value = getattr(described, name)
        if len(value) > _SHORT_TEXT:
            violations.append((f"{base}.room.{name}", f"at most {_SHORT_TEXT} characters"))
        elif value and (reason := _refusal(value)):
            violations.append((f"{base}.room.{name}", reason))
    area = described.area_square_meters
    if not (math.isfinite(area) and 0 <= area <= 100000):
        violations.append((f"{base}.room.area_square_meters", "must be between 0 and 100000"))
    references: list[tuple[str, imaging.ImageInfo]] = []
    # The set surfaces only (an unset one has no text and no swatch), in field order: floor, walls, ceiling.
    for described_surface, material in room.materials.ListFields():
        surface = described_surface.name
        violations += _texts(
            ((material.name, "name", _SHORT_TEXT), (material.description, "description", prompts.MAX_ADDITIONAL_CHARS)),
            f"{base}.materials.{surface}",
        )
        if material.HasField("swatch"):
            field = f"{base}.materials.{surface}"
            found, info = _image(material.swatch, f"{field}.swatch", limits, True, 8, assets)
            violations += found
            if info:
                references.append((source_field(material.swatch, f"{field}.swatch"), info))
    if references:
        memory = room_render_memory(references, limits)
        violations += [memory] if memory else []
    if room.custom_prompt:
        violations += _prompt_text(room.custom_prompt, f"{base}.custom_prompt", prompts.MAX_PROMPT_CHARS)
        if not _says_something(room.custom_prompt):  # the provider would be sent an empty prompt
            violations.append((f"{base}.custom_prompt", "holds no words once markup and control characters go"))
    if require_options or room.HasField("options"):
        violations += _generation_options(room.options, f"{base}.options", limits)
    if not room.custom_prompt and not (_says_something(described.room_type) or _says_something(described.name)):
        violations.append((f"{base}.room.room_type", "is required (or give custom_prompt)"))
    return violations


def _room_batch(batch: pb.RoomBatch, limits: Limits, assets: Assets) -> list[Violation]:
    violations: list[Violation] = []
    if batch.floor_plan_id and not IDENTIFIER.match(batch.floor_plan_id):
        violations.append(("room_batch.floor_plan_id", IDENTIFIER_RULE))
    if not 1 <= len(batch.rooms) <= MAX_ROOMS:
        violations.append(("room_batch.rooms", f"give 1 to {MAX_ROOMS} rooms, got {len(batch.rooms)}"))
    if not 0 <= batch.max_concurrency <= MAX_BATCH_CONCURRENCY:
        violations.append(("room_batch.max_concurrency", f"must be between 0 (default 3) and {MAX_BATCH_CONCURRENCY}"))
    violations += _generation_options(batch.options, "room_batch.options", limits)
    ids = [room.room.id for room in batch.rooms if room.room.id]
    if len(ids) != len(set(ids)):
        violations.append(("room_batch.rooms", "room ids must be unique"))
    for index, room in enumerate(batch.rooms[:MAX_ROOMS]):
        violations += _room_render(room, f"room_batch.rooms[{index}]", limits, assets, require_options=False)
    return violations


def texture_edit_memory(
    texture: imaging.ImageInfo, field: str, material_maps: bool, limits: Limits
) -> Violation | None:
    """Whether a texture edit fits in the memory budget, from the texture's header."""
    allowed = limits.request_memory_bytes

    def need(pixels: int) -> int:
        return budget.texture_edit_bytes(pixels, material_maps=material_maps)

    if need(texture.pixels) <= allowed:
        return None
    largest = budget.largest_pixels(need, allowed)
    return field, budget.over_budget_text(
        texture.width, texture.height, "texture", need(texture.pixels), allowed, largest
    )


def room_render_memory(references: Sequence[tuple[str, imaging.ImageInfo]], limits: Limits) -> Violation | None:
    """Whether a room render's reference images fit in the memory budget together; when they do
    not, the largest is named."""
    allowed = limits.request_memory_bytes
    pixels = [info.pixels for _, info in references]
    total = budget.room_render_bytes(pixels)
    if total <= allowed:
        return None
    field, info = max(references, key=lambda item: item[1].pixels)
    others = sorted(pixels)[:-1]
    largest = budget.largest_pixels(lambda px: budget.room_render_bytes([*others, px]), allowed)
    return field, budget.over_budget_text(info.width, info.height, "reference image", total, allowed, largest)


def _texture_edit(edit: pb.TextureEdit, output: pb.OutputOptions, limits: Limits, assets: Assets) -> list[Violation]:
    violations: list[Violation] = []
    found, texture = _image(edit.base_texture, "texture_edit.base_texture", limits, True, MIN_TEXTURE_SIDE, assets)
    violations += found
    if texture:
        field = source_field(edit.base_texture, "texture_edit.base_texture")
        memory = texture_edit_memory(texture, field, output.include_material_maps, limits)
        # The edit's first rendition is at the texture's own size (the others are 2048 and 512 px).
        webp = webp_problem(output, texture, "texture")
        violations += [problem for problem in (memory, webp) if problem]
    found, mask = _image(edit.mask, "texture_edit.mask", limits, False, 1, assets)
    violations += found
    if texture and mask and (mask.width, mask.height) != (texture.width, texture.height):
        violations.append(
            (
                source_field(edit.mask, "texture_edit.mask"),
                f"is {mask.width}x{mask.height}; it must be the texture's size {texture.width}x{texture.height}",
            )
        )
    if not prompts.sanitize(edit.prompt):
        violations.append(("texture_edit.prompt", "is required: say what to change"))
    violations += _prompt_text(edit.prompt, "texture_edit.prompt", prompts.MAX_PROMPT_CHARS)
    violations += _generation_options(edit.options, "texture_edit.options", limits, sized=False)
    if not violations and edit.options.additional_prompt:
        # Sent joined (prompts.edit_prompt): a refused phrase split between the two is refused too.
        reason = prompts.refusal(prompts.edit_prompt(edit.prompt, edit.options.additional_prompt))
        if reason:
            violations.append(("texture_edit.options.additional_prompt", reason))
    return violations


def named_asset_problems(named: Sequence[tuple[str, str]]) -> list[Violation]:
    """What is wrong with the asset ids a request names, as (field path, id) pairs, before any is
    looked up: an id that is not one, or more assets than any valid request names."""
    violations = [
        (f"{path}.asset_id", "is not an asset id") for path, asset_id in named if not ASSET_ID.fullmatch(asset_id)
    ]
    distinct = len({asset_id for _, asset_id in named})
    if distinct > MAX_NAMED_ASSETS:
        violations.append(("request", f"names {distinct} assets; at most {MAX_NAMED_ASSETS}"))
    return violations[:10]
