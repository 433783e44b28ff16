"""A small Python client of render.v1.RenderService (what renderctl, the demo and the benchmarks use).

It depends only on grpcio, protobuf and the generated render.v1 stubs, shipped with it in the
render-client distribution.
Watches reconnect on every failure a retry can fix, resume after the last cursor seen, and give
up after a bounded time without a connection; see RetryPolicy.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.experimental
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc

TERMINAL_STATES = {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED}
# How long a SubmitAndWatch may take to bring its first message, the request's upload included
# (48 MiB of inline images at 160 KB/s); after it, the stream's idle limit applies.
FIRST_MESSAGE_S = 300.0

# Codes a broken stream, a restarting gateway or a busy one produce; anything else is the
# request's own fault (INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, ...) and raises at once.
# CANCELLED and DEADLINE_EXCEEDED are retried only when neither the caller nor the caller's
# timeout caused them (see RenderClient.watch).
RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)

_RPC = "render.v1.RenderService"
# round_robin spreads calls over every address a target resolves to and skips replicas that are
# down, so a call whose gateway dies continues on another. Reads and cancels are idempotent, so
# gRPC itself retries them on UNAVAILABLE; submits and watches retry in RenderClient, which knows
# when that is safe (an idempotency key) and where to resume (the cursor).
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{"service": _RPC, "method": m} for m in ("GetJob", "ListJobs", "CancelJob")],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.2s",
                "maxBackoff": "5s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}

CHANNEL_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    # A watch's events are read on the thread that iterates it, not handed over from gRPC's channel
    # thread: two thread switches fewer per event, about 40 % of a watch's client CPU.
    (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
    # A client's connections are its own. gRPC otherwise shares them among every channel in the
    # process to the same address, and a client opened after a gateway came back inherited an
    # earlier client's failed connection and its reconnect backoff: its first call failed with
    # "Connection refused" from a gateway that was up.
    ("grpc.use_local_subchannel_pool", 1),
]


def open_channel(address: str, *, tls: bool = False, root_certificates: bytes | None = None) -> grpc.Channel:
    """A channel to a gateway with the client's options: TLS when tls or root_certificates (PEM;
    None: the system's roots), else plaintext."""
    if tls or root_certificates is not None:
        credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
        return grpc.secure_channel(address, credentials, options=CHANNEL_OPTIONS)
    return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)


def image_source(value: str | bytes | Path | pb.ImageSource) -> pb.ImageSource:
    """Bytes, an http(s) URL, or a file path, as an ImageSource (one given is used as it is, such as
    `pb.ImageSource(asset_id=...)` for an image uploaded with RenderClient.upload)."""
    if isinstance(value, pb.ImageSource):
        return value
    if isinstance(value, bytes):
        return pb.ImageSource(data=value)
    text = str(value)
    if text.startswith(("http://", "https://")):
        return pb.ImageSource(url=text)
    return pb.ImageSource(data=Path(text).read_bytes())


def material_swap_request(
    photo: str | bytes | Path | pb.ImageSource,
    swatch: str | bytes | Path | pb.ImageSource,
    *,
    quad: Sequence[tuple[float, float]] = (),
    mask: str | bytes | Path | pb.ImageSource | None = None,
    repeats: float | None = None,
    refine: bool = False,
    idempotency_key: str = "",
    project_id: str = "",
    output_format: pb.ImageFormat = pb.IMAGE_FORMAT_JPEG,
    brick_offset: float | None = None,
    herringbone: bool = False,
    swatch_size: tuple[float, float] | None = None,
    plane_distance_meters: float = 0.0,
    focal_length_px: float = 0.0,
    polygon: Sequence[tuple[float, float]] = (),
    surface: pb.Surface = pb.SURFACE_UNSPECIFIED,
    variant_swatches: Sequence[str | bytes | Path | pb.ImageSource] = (),
    points: Sequence[tuple[float, float]] = (),
    negative_points: Sequence[tuple[float, float]] = (),
    box: tuple[float, float, float, float] | None = None,
    quad_size: tuple[float, float] | None = None,
    rotation_degrees: float = 0.0,
    grout_color: str = "",
    refinement_seed: int | None = None,
    stage_timeout_seconds: float | None = None,
    quality: int = 0,
    skip_preview: bool = False,
    include_2048: bool = False,
    material_maps: bool = False,
) -> pb.SubmitRenderRequest:
    """A SubmitRenderRequest for a material swap: every field of render.v1.MaterialSwap and of the
    request's OutputOptions, by name.

    Where the surface is: a `quad` (four corners of a rectangle on it, which also outlines it unless
    a `polygon` or `mask` is given), a `polygon`, a `mask`, or `points` on it (and
    `negative_points` off it) with an optional `box` (x_min, y_min, x_max, y_max) and the `surface`
    named. The camera: `focal_length_px` when known (else the photo's EXIF, its lines, or 60
    degrees). The material's scale is either `repeats` or `swatch_size`, the (width, height) in
    metres that the swatch image shows (height 0 keeps the image's aspect ratio), which needs the
    surface's size: the quad's rectangle in metres (`quad_size`, width along its first edge) or
    the plane's distance (`plane_distance_meters`: for a floor, the camera's height).
    `brick_offset` lays the tiles in staggered rows, `herringbone` the swatch's planks in a zigzag.
    """
    if repeats is not None and swatch_size is not None:
        raise ValueError("give repeats or swatch_size, not both")
    if brick_offset is not None and herringbone:
        raise ValueError("give brick_offset or herringbone, not both")
    swap = pb.MaterialSwap(
        photo=image_source(photo),
        swatch=image_source(swatch),
        surface=surface,
        hints=pb.SurfaceHints(
            quad=[pb.Point(x=x, y=y) for x, y in quad],
            polygon=[pb.Point(x=x, y=y) for x, y in polygon],
            positive_points=[pb.Point(x=x, y=y) for x, y in points],
            negative_points=[pb.Point(x=x, y=y) for x, y in negative_points],
            focal_length_px=focal_length_px,
            plane_distance_meters=plane_distance_meters,
        ),
        options=pb.MaterialSwapOptions(
            enable_refinement=refine, rotation_degrees=rotation_degrees, grout_color=grout_color
        ),
        variant_swatches=[image_source(v) for v in variant_swatches],
    )
    if mask is not None:
        swap.mask.CopyFrom(image_source(mask))
    if box is not None:
        x_min, y_min, x_max, y_max = box
        swap.hints.box.CopyFrom(pb.Box(x_min=x_min, y_min=y_min, x_max=x_max, y_max=y_max))
    if quad_size is not None:
        swap.hints.quad_size.CopyFrom(pb.QuadSize(width_meters=quad_size[0], height_meters=quad_size[1]))
    if brick_offset is not None:
        swap.options.layout = pb.TILE_LAYOUT_BRICK
        swap.options.row_offset = brick_offset
    if herringbone:
        swap.options.layout = pb.TILE_LAYOUT_HERRINGBONE
    if repeats is not None:
        swap.options.real_world_scale.repeats = repeats
    if swatch_size is not None:
        swap.options.real_world_scale.swatch_size.width_meters = swatch_size[0]
        swap.options.real_world_scale.swatch_size.height_meters = swatch_size[1]
    if refinement_seed is not None:
        swap.options.refinement_seed = refinement_seed
    if stage_timeout_seconds is not None:
        swap.options.stage_timeout_seconds = stage_timeout_seconds
    return pb.SubmitRenderRequest(
        material_swap=swap,
        idempotency_key=idempotency_key,
        project_id=project_id,
        output=pb.OutputOptions(
            format=output_format,
            quality=quality,
            skip_preview=skip_preview,
            include_2048=include_2048,
            include_material_maps=material_maps,
        ),
    )  # type: ignore[arg-type]


def generation_options(
    *,
    size: str = "",
    quality: pb.RenderQuality = pb.RENDER_QUALITY_UNSPECIFIED,
    style: str = "",
    lighting: pb.Lighting = pb.LIGHTING_UNSPECIFIED,
    time_of_day: pb.TimeOfDay = pb.TIME_OF_DAY_UNSPECIFIED,
    additional_prompt: str = "",
    dry_run: bool = False,
    max_cents: float | None = None,
    max_tokens: int | None = None,
    seed: int | None = None,
) -> pb.GenerationOptions:
    """GenerationOptions for a room render, a batch or a texture edit (size: "1024x1024",
    "1792x1024" or "1024x1792"; unset fields take the gateway's defaults)."""
    options = pb.GenerationOptions(
        size=size,
        quality=quality,
        style_preset=style,
        lighting=lighting,
        time_of_day=time_of_day,
        additional_prompt=additional_prompt,
        dry_run=dry_run,
    )
    if max_cents is not None:
        options.budget.max_cents = max_cents
    if max_tokens is not None:
        options.budget.max_tokens = max_tokens
    if seed is not None:
        options.seed = seed
    return options


def room_render(
    room_type: str,
    *,
    name: str = "",
    room_id: str = "",
    area: float = 0.0,
    floor: str = "",
    walls: str = "",
    ceiling: str = "",
    floor_swatch: str | bytes | Path | pb.ImageSource | None = None,
    walls_swatch: str | bytes | Path | pb.ImageSource | None = None,
    ceiling_swatch: str | bytes | Path | pb.ImageSource | None = None,
    style: str = "",
    lighting: pb.Lighting = pb.LIGHTING_UNSPECIFIED,
    time_of_day: pb.TimeOfDay = pb.TIME_OF_DAY_UNSPECIFIED,
    additional_prompt: str = "",
    custom_prompt: str = "",
    dry_run: bool = False,
    max_cents: float | None = None,
    max_tokens: int | None = None,
    size: str = "",
    quality: pb.RenderQuality = pb.RENDER_QUALITY_UNSPECIFIED,
    seed: int | None = None,
) -> pb.RoomRender:
    """A RoomRender: the room, its surfaces' material names (and swatch photos), and the render's
    options (generation_options)."""
    room = pb.RoomRender(
        room=pb.Room(id=room_id, name=name, room_type=room_type, area_square_meters=area),
        custom_prompt=custom_prompt,
    )
    for surface, material, swatch in (
        ("floor", floor, floor_swatch),
        ("walls", walls, walls_swatch),
        ("ceiling", ceiling, ceiling_swatch),
    ):
        if material:
            getattr(room.materials, surface).name = material
        if swatch is not None:
            getattr(room.materials, surface).swatch.CopyFrom(image_source(swatch))
    options = generation_options(
        size=size,
        quality=quality,
        style=style,
        lighting=lighting,
        time_of_day=time_of_day,
        additional_prompt=additional_prompt,
        dry_run=dry_run,
        max_cents=max_cents,
        max_tokens=max_tokens,
        seed=seed,
    )
    if options != pb.GenerationOptions():
        room.options.CopyFrom(options)
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
    texture: str | bytes | Path | pb.ImageSource,
    prompt: str,
    *,
    mask: str | bytes | Path | pb.ImageSource | None = None,
    material_maps: bool = False,
    dry_run: bool = False,
    project_id: str = "",
    idempotency_key: str = "",
    options: pb.GenerationOptions | None = None,
    output_format: pb.ImageFormat = pb.IMAGE_FORMAT_UNSPECIFIED,
) -> pb.SubmitRenderRequest:
    """A SubmitRenderRequest editing a texture (inside the mask, when one is given); `options`
    (generation_options) sets its quality, seed and budget (not its size: the edit keeps the
    texture's size, and the gateway ignores one given here)."""
    edit = pb.TextureEdit(base_texture=image_source(texture), prompt=prompt)
    if mask is not None:
        edit.mask.CopyFrom(image_source(mask))
    if options is not None:
        edit.options.CopyFrom(options)
    if dry_run:
        edit.options.dry_run = True
    return pb.SubmitRenderRequest(
        texture_edit=edit,
        project_id=project_id,
        idempotency_key=idempotency_key,
        output=pb.OutputOptions(format=output_format, include_material_maps=material_maps),
    )


@dataclass(frozen=True)
class RetryPolicy:
    """How the client retries: exponential backoff with jitter, bounded by time without a connection.

    The n-th retry in a row waits initial_backoff_s * multiplier**(n-1), capped at max_backoff_s,
    less a random share of up to `jitter` of it (so clients that lost the same gateway do not all
    come back at once). The count starts again once a call gets through. After give_up_after_s
    without any successful (re)connection the call raises GaveUpError.
    """

    initial_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.5
    give_up_after_s: float = 60.0

    def __post_init__(self) -> None:
        # NaN compares false with everything: a bound of NaN never ran out.
        values = (self.initial_backoff_s, self.max_backoff_s, self.multiplier, self.jitter, self.give_up_after_s)
        if not all(math.isfinite(v) and v >= 0 for v in values) or self.jitter > 1:
            raise ValueError("RetryPolicy takes finite numbers, 0 or more (jitter at most 1)")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before retry number `attempt` (from 1)."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** max(0, attempt - 1))
        return base * (1.0 - self.jitter * (rng or random).random())


@dataclass(frozen=True)
class RetryNotice:
    """What an on_retry callback receives before the client waits and retries."""

    code: grpc.StatusCode  # the failure being retried
    attempt: int  # the retry's number since the last successful connection, from 1
    delay_s: float  # how long the client waits before retrying
    reason: str  # "connection lost", "no message for 45 s", "gateway busy", "gateway unavailable"
    details: str  # the status message, for logs


OnRetry = Callable[[RetryNotice], None]


class _StreamEndedEarly(grpc.RpcError):
    """A stream that ended without an error before its job did: a break like any other."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "the stream ended before the job did"


class CorruptDownload(grpc.RpcError):
    """A download whose bytes are not the file the gateway announced (its size or its SHA-256):
    an object replaced while it was read, or a stream cut short. DATA_LOSS; download again."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self._message = message

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.DATA_LOSS

    def details(self) -> str:
        return self._message


class GaveUpError(grpc.RpcError):
    """A call stopped retrying: no gateway answered within the policy's bound, or the caller's
    timeout ran out between retries. It is a grpc.RpcError, so callers that catch those see it."""

    def __init__(self, message: str, code: grpc.StatusCode, last_code: grpc.StatusCode, attempts: int) -> None:
        super().__init__(message)
        self._code = code
        self.last_code = last_code
        self.attempts = attempts

    def code(self) -> grpc.StatusCode:
        """UNAVAILABLE (or the last failure's code) when the bound ran out; DEADLINE_EXCEEDED for
        the caller's timeout."""
        return self._code

    def details(self) -> str:
        """The message: what was tried, for how long, and the last failure."""
        return str(self)


def _wire_messages() -> tuple[type[Any], type[Any]]:
    """google.rpc.Status and google.rpc.RetryInfo as wire-compatible local messages.

    The client depends on protobuf alone, not googleapis-common-protos, and needs only these two
    fields: Status.details (3, repeated Any) and RetryInfo.retry_delay (1, a Duration). A private
    pool keeps them from clashing with the real google.rpc types when those are loaded too.
    """
    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="renderkit/client_wire.proto", package="renderkit.wire")
    fields: dict[str, list[tuple[str, int, int, str]]] = {
        "Any": [("type_url", 1, f.TYPE_STRING, ""), ("value", 2, f.TYPE_BYTES, "")],
        "Duration": [("seconds", 1, f.TYPE_INT64, ""), ("nanos", 2, f.TYPE_INT32, "")],
        "Status": [("details", 3, f.TYPE_MESSAGE, ".renderkit.wire.Any")],
        "RetryInfo": [("retry_delay", 1, f.TYPE_MESSAGE, ".renderkit.wire.Duration")],
    }
    for name, members in fields.items():
        message = file.message_type.add(name=name)
        for field_name, number, kind, type_name in members:
            label = f.LABEL_REPEATED if name == "Status" else f.LABEL_OPTIONAL
            field = message.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("renderkit.wire.Status")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("renderkit.wire.RetryInfo")),
    )


_STATUS, _RETRY_INFO = _wire_messages()
_DETAILS_KEY = "grpc-status-details-bin"


def retry_delay_hint(exc: grpc.RpcError) -> float | None:
    """The delay a google.rpc.RetryInfo in the error's status details asks for, if any."""
    metadata: Sequence[tuple[str, str | bytes]] = (exc.trailing_metadata() or ()) if isinstance(exc, grpc.Call) else ()
    for key, value in metadata:
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        for detail in _STATUS.FromString(value).details:
            if detail.type_url.endswith("/google.rpc.RetryInfo"):
                delay = _RETRY_INFO.FromString(detail.value).retry_delay
                return max(0.0, float(delay.seconds + delay.nanos / 1e9))
    return None


class _Retries:
    """One call's retry state: backoff count, the bound since the last connection, the caller's
    deadline, and the notices."""

    def __init__(self, policy: RetryPolicy, on_retry: OnRetry | None, what: str, deadline: float | None) -> None:
        self.policy = policy
        self.on_retry = on_retry
        self.what = what
        self.deadline = deadline
        self.attempt = 0
        self.connected_at = time.monotonic()

    def connected(self) -> None:
        """Something came back: the bound and the backoff start again."""
        self.attempt = 0
        self.connected_at = time.monotonic()

    def remaining(self) -> float | None:
        """Seconds left of the caller's timeout (None: no timeout)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def wait(self, exc: grpc.RpcError, reason: str = "") -> None:
        """Reports and sleeps before the next attempt, or raises GaveUpError when none is allowed."""
        code, details = exc.code(), exc.details() or ""
        # A busy gateway (RESOURCE_EXHAUSTED) or one whose own dependency is down (UNAVAILABLE)
        # says in a RetryInfo when to come back.
        hint = retry_delay_hint(exc)
        if not reason:
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                reason = "gateway busy"
            else:
                reason = "gateway unavailable" if hint is not None else "connection lost"
        self.attempt += 1
        now = time.monotonic()
        bound_left = self.connected_at + self.policy.give_up_after_s - now
        last = f"last error {code.name}: {details}" if details else f"last error {code.name}"
        if bound_left <= 0:
            waited = now - self.connected_at
            raise GaveUpError(
                f"gave up {self.what} after {waited:.1f} s without a connection ({self.attempt} attempts; {last})",
                code=code,
                last_code=code,
                attempts=self.attempt,
            ) from exc
        if hint is not None and hint > bound_left:
            raise GaveUpError(
                f"gave up {self.what}: the gateway asks to retry in {hint:.1f} s, past the retry bound "
                f"({self.attempt} attempts; {last})",
                code=code,
                last_code=code,
                attempts=self.attempt,
            ) from exc
        # A server's RetryInfo is honoured as sent; otherwise the last wait is shortened so one
        # more attempt lands right at the bound instead of after it.
        delay = hint if hint is not None else min(self.policy.backoff(self.attempt), bound_left)
        remaining = self.remaining()
        if remaining is not None and delay >= remaining:
            raise GaveUpError(
                f"{self.what}: the timeout runs out before the next retry ({self.attempt} attempts; {last})",
                code=grpc.StatusCode.DEADLINE_EXCEEDED,
                last_code=code,
                attempts=self.attempt,
            ) from exc
        if self.on_retry is not None:
            self.on_retry(RetryNotice(code, self.attempt, delay, reason, details))
        time.sleep(delay)


# The longest the watchdogs' thread sleeps at once. It could not sleep past threading.TIMEOUT_MAX
# (math.inf for "no limit", or 1e10 s): its wait raised OverflowError, the thread died, and no
# later stream of the client was ever watched.
_MAX_SLEEP_S = 3600.0


class _IdleWatchdog:
    """Cancels a stream that delivers nothing for idle_s while the client is waiting on it.

    A sync gRPC stream has no per-message timeout; the client's _IdleWatchdogs thread is one.
    Time the consumer spends between events (the generator suspended at a yield) does not count.
    """

    def __init__(
        self, call: grpc.Future, idle_s: float | None, watchdogs: _IdleWatchdogs, *, first_s: float | None = None
    ) -> None:
        """first_s: the first message may take this long instead (a call that starts with an upload)."""
        self.fired = False
        # An infinite limit is none: not watched.
        self.idle_s = idle_s if idle_s is not None and 0 < idle_s < math.inf else 0.0
        self._call = call
        self._first_s = first_s
        self._last = time.monotonic()
        self._paused = False
        self._watchdogs = watchdogs if self.idle_s > 0 else None
        if self._watchdogs is not None:
            self._watchdogs.add(self)

    def touch(self, *, paused: bool = False) -> None:
        """A message arrived (paused: and the consumer has it now)."""
        self._last = time.monotonic()
        self._paused = paused
        self._first_s = None

    def stop(self) -> None:
        """The stream is over: nothing more to watch."""
        if self._watchdogs is not None:
            self._watchdogs.discard(self)

    def due(self) -> float:
        """When, by the monotonic clock, the stream has been silent too long (while the consumer
        holds an event: when to look again, a period later)."""
        if self._paused:
            return time.monotonic() + self.idle_s
        first_s = self._first_s
        return self._last + (self.idle_s if first_s is None else max(self.idle_s, first_s))

    def next_look(self, now: float) -> float:
        """When to look at it again: its deadline, or sooner, idle_s from now (the first message
        shortens the deadline, to idle_s after it)."""
        return min(self.due(), now + self.idle_s)

    def fire(self) -> None:
        self.fired = True
        self._call.cancel()


class _IdleWatchdogs:
    """The one thread that watches a client's streams for silence (_IdleWatchdog). A thread
    started for each stream cost a short job's caller ~0.15 ms and ~0.2 ms of CPU. The thread
    sleeps until the earliest deadline it knows of; a touch only moves a deadline later, so only a
    stream added with an earlier one wakes it (it looks again at least every idle_s: a first message
    brings a deadline closer). It ends when it wakes with no stream left (a client
    left unclosed keeps no thread), or when the client closes."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._watched: set[_IdleWatchdog] = set()
        self._thread: threading.Thread | None = None
        self._wake_at = math.inf
        self._closed = False

    def add(self, watchdog: _IdleWatchdog) -> None:
        with self._changed:
            if self._closed:  # its call fails on the closed channel
                return
            self._watched.add(watchdog)
            look = watchdog.next_look(time.monotonic())
            if self._thread is None:
                self._wake_at = look
                self._thread = threading.Thread(target=self._run, name="render-watch-idle", daemon=True)
                self._thread.start()
            elif look < self._wake_at:
                self._changed.notify()

    def discard(self, watchdog: _IdleWatchdog) -> None:
        with self._changed:
            self._watched.discard(watchdog)

    def close(self) -> None:
        """Stops the thread (the client is closed: its streams end with the channel)."""
        with self._changed:
            self._closed = True
            self._changed.notify()

    def _run(self) -> None:
        try:
            self._watch()
        finally:  # should it ever raise, the next stream added starts a thread again
            with self._changed:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _watch(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                silent = [w for w in self._watched if w.due() <= now]
                self._watched.difference_update(silent)
                if not silent:
                    # Streams that ended since the last look leave their deadline as the next
                    # wake-up: one stream after another, each added with a later deadline, does
                    # not wake the thread.
                    if self._closed or (not self._watched and now >= self._wake_at):
                        self._thread = None  # in the same hold of the lock: an add after it starts one
                        return
                    self._wake_at = min((w.next_look(now) for w in self._watched), default=self._wake_at)
                    self._changed.wait(min(max(0.01, self._wake_at - now), _MAX_SLEEP_S))
                    continue
            for watchdog in silent:  # outside the lock: a cancel runs gRPC's callbacks
                watchdog.fire()


class RenderClient:
    """A blocking client over one channel.

    address is a gRPC target: "host:port", "dns:///render-gateway:50051" (every address the name
    resolves to) or "ipv4:127.0.0.1:50051,127.0.0.1:50052" (several gateway replicas); calls are
    spread over the replicas and continue on another when one dies. retry bounds the retries of
    watches and of submits that carry an idempotency key; stream_idle_timeout_s is how long a
    watch waits for any message (the gateway sends a keep-alive about every 15 s) before it
    treats the stream as dead and reconnects (None or 0: never); on_retry sees every retry.

    tls connects over TLS (a gateway with GATEWAY_TLS_CERT), trusting root_certificates (PEM: the
    CAs the gateway's certificate must be signed by) or, when None, the system's roots; root
    certificates alone imply tls, and the certificate must name the host as dialled. Without
    either the channel is plaintext. A `channel` given is used as it is, so neither may come with it.
    """

    def __init__(
        self,
        address: str,
        channel: grpc.Channel | None = None,
        *,
        api_key: str = "",
        retry: RetryPolicy | None = None,
        stream_idle_timeout_s: float | None = 45.0,
        on_retry: OnRetry | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
    ) -> None:
        self.address = address
        self.tls = tls or root_certificates is not None
        if channel is not None:
            if self.tls:
                raise ValueError("tls and root_certificates apply to the channel the client makes, not to one given")
            self.channel = channel
        else:
            self.channel = open_channel(address, tls=self.tls, root_certificates=root_certificates)
        self.stub = pb_grpc.RenderServiceStub(self.channel)
        # A key read from a file saved with CRLF line ends, or pasted with a stray character, cannot
        # be sent as a header: gRPC failed every call with INTERNAL "Invalid metadata", which watches
        # retried as a lost connection until they gave up. Surrounding whitespace is dropped; any
        # other character a header cannot carry is refused here, naming the key.
        api_key = api_key.strip()
        if not all(" " <= c <= "~" for c in api_key):
            self.channel.close()
            raise ValueError("the API key holds a character that cannot be sent (a control character or non-ASCII)")
        # The tenant is the API key's: the gateway takes it from the credential, never from a header.
        self.metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self.retry = retry if retry is not None else RetryPolicy()
        self.stream_idle_timeout_s = stream_idle_timeout_s
        self.on_retry = on_retry
        self._closed = False
        self._watchdogs = _IdleWatchdogs()

    def close(self) -> None:
        """Closes the channel; watches in progress end with CANCELLED (not retried)."""
        self._closed = True
        self.channel.close()
        self._watchdogs.close()

    def __enter__(self) -> RenderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(
        self, request: pb.SubmitRenderRequest, timeout: float = 60.0, *, on_retry: OnRetry | None = None
    ) -> pb.SubmitRenderResponse:
        """Submits a job. With an idempotency key, UNAVAILABLE is retried within the retry policy
        and the timeout (the gateway answers a repeat with the same job); without one it raises,
        since the first attempt may have created a job."""
        retries = self._retries(f"submitting to {self.address}", timeout, on_retry)
        return self._keyed(self.stub.SubmitRender, request, retries)  # type: ignore[no-any-return]

    def create_webhook_endpoint(
        self, request: pb.CreateWebhookEndpointRequest, timeout: float = 30.0, *, on_retry: OnRetry | None = None
    ) -> pb.CreateWebhookEndpointResponse:
        """Registers a webhook endpoint. As with submit, UNAVAILABLE is retried only when the
        request has an idempotency key (a repeat answers with the endpoint the first one made)."""
        retries = self._retries(f"creating a webhook endpoint at {self.address}", timeout, on_retry)
        return self._keyed(self.stub.CreateWebhookEndpoint, request, retries)  # type: ignore[no-any-return]

    def _keyed(self, method: Callable[..., Any], request: Any, retries: _Retries) -> Any:
        """A unary call that creates something, made again after UNAVAILABLE only when its request
        carries an idempotency key (the first attempt may have created it)."""
        while True:
            try:
                return method(request, timeout=retries.remaining(), metadata=self.metadata)
            except grpc.RpcError as exc:
                if not request.idempotency_key or exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                retries.wait(exc)

    def upload(self, image: bytes | str | Path, name: str = "", timeout: float = 60.0) -> pb.Asset:
        """Stores an image (bytes or a file) for the tenant; later jobs name it with
        `pb.ImageSource(asset_id=asset.id)`. The same bytes uploaded again are the same asset."""
        if not isinstance(image, bytes):
            name = name or Path(image).name
            image = Path(image).read_bytes()
        response = self.stub.UploadAsset(
            pb.UploadAssetRequest(data=image, name=name), timeout=timeout, metadata=self.metadata
        )
        return response.asset  # type: ignore[no-any-return]

    def download(self, job_id: str, name: str, timeout: float | None = None) -> bytes:
        """The bytes of one of a job's outputs ("full", "preview", ...), streamed by the gateway
        (for clients that cannot reach the output's URL), checked against the size and SHA-256 the
        gateway announces first: CorruptDownload when they differ."""
        announced: pb.OutputFile | None = None
        parts: list[bytes] = []
        call = self.stub.GetOutput(
            pb.GetOutputRequest(job_id=job_id, name=name), timeout=timeout, metadata=self.metadata
        )
        # A gateway that takes the call and then sends nothing (frozen, or a proxy holding the
        # reply) held the caller for ever: silence past the idle limit ends the download.
        watchdog = _IdleWatchdog(call, self.stream_idle_timeout_s, self._watchdogs)
        try:
            for piece in call:
                watchdog.touch()
                if announced is None and piece.HasField("file"):
                    announced = piece.file
                parts.append(piece.data)
        except grpc.RpcError as exc:
            if watchdog.fired:
                raise GaveUpError(
                    f"no message from {self.address} for {self.stream_idle_timeout_s:g} s while downloading "
                    f"{name!r} of job {job_id}",
                    code=grpc.StatusCode.DEADLINE_EXCEEDED,
                    last_code=exc.code(),
                    attempts=1,
                ) from exc
            raise
        finally:
            watchdog.stop()
        data = b"".join(parts)
        if announced is not None:
            if announced.size_bytes and len(data) != announced.size_bytes:
                raise CorruptDownload(
                    f"the download has {len(data):,} bytes, not the {announced.size_bytes:,} announced"
                )
            if announced.sha256 and hashlib.sha256(data).hexdigest() != announced.sha256:
                raise CorruptDownload("the download's SHA-256 is not the one announced")
        return data

    def get(self, job_id: str, *, timeout: float | None = 30.0) -> pb.Job:
        """The job as it is now (timeout: the call's deadline; a gateway that hangs must not hold
        the caller for ever)."""
        return self.stub.GetJob(  # type: ignore[no-any-return]
            pb.GetJobRequest(job_id=job_id), timeout=timeout, metadata=self.metadata
        ).job

    def cancel(self, job_id: str, timeout: float = 30.0) -> pb.Job:
        """Cancels a job that has not ended and returns it."""
        return self.stub.CancelJob(pb.CancelJobRequest(job_id=job_id), timeout=timeout, metadata=self.metadata).job  # type: ignore[no-any-return]

    def list(
        self, page_size: int = 20, page_token: str = "", project_id: str = "", timeout: float = 30.0
    ) -> pb.ListJobsResponse:
        """One page of the tenant's jobs, newest first."""
        return self.stub.ListJobs(  # type: ignore[no-any-return]
            pb.ListJobsRequest(page_size=page_size, page_token=page_token, project_id=project_id),
            timeout=timeout,
            metadata=self.metadata,
        )

    def watch(
        self,
        job_id: str,
        after: str = "",
        timeout: float | None = None,
        *,
        on_retry: OnRetry | None = None,
        stream_idle_timeout_s: float | None = None,
        outcome_only: bool = False,
    ) -> Iterator[pb.JobEvent]:
        """Events after a cursor until the job ends (with outcome_only, only the terminal one).

        A stream that breaks with a retryable code, or stays silent (not even a keep-alive) for
        the idle limit, is reopened after the last cursor seen, so no event is lost or repeated.
        Keep-alives are never yielded. Codes a retry cannot fix raise at once; GaveUpError ends a
        watch that cannot reconnect within the retry policy's bound; timeout bounds the whole watch.
        on_retry and stream_idle_timeout_s (0: off) replace the client's for this watch.
        """
        idle_s = self.stream_idle_timeout_s if stream_idle_timeout_s is None else stream_idle_timeout_s
        retries = self._retries(f"watching job {job_id} at {self.address}", timeout, on_retry)
        cursor = after
        while True:
            remaining = retries.remaining()
            call = self.stub.WatchJob(
                pb.WatchJobRequest(job_id=job_id, after=cursor, outcome_only=outcome_only),
                timeout=remaining,
                metadata=self.metadata,
            )
            watchdog = _IdleWatchdog(call, idle_s, self._watchdogs)
            try:
                for reply in call:
                    retries.connected()
                    if not reply.HasField("event"):  # a keep-alive: proof of life, no cursor
                        watchdog.touch()
                        continue
                    cursor = reply.event.cursor
                    watchdog.touch(paused=True)
                    yield reply.event
                    watchdog.touch()
                    if reply.event.state in TERMINAL_STATES:
                        return
            except grpc.RpcError as exc:
                watchdog.stop()  # before the backoff: this stream is over
                code = exc.code()
                if watchdog.fired and code == grpc.StatusCode.CANCELLED:
                    retries.wait(exc, reason=f"no message for {idle_s:g} s")
                    continue
                if not self._broken(code, retries):
                    raise
                retries.wait(exc)
                continue
            finally:
                watchdog.stop()
                # Frees the stream when the consumer stopped early (the generator was closed).
                call.cancel()
            # The stream ended before the job did (a proxy that closes long streams, say): it is
            # reopened from the last cursor, as after a break.
            retries.wait(_StreamEndedEarly(), reason="the stream ended before the job")

    def submit_and_watch(
        self,
        request: pb.SubmitRenderRequest,
        timeout: float | None = None,
        *,
        on_retry: OnRetry | None = None,
        outcome_only: bool = False,
    ) -> Iterator[pb.JobEvent]:
        """Submits a job and yields its events from the first (QUEUED, which names the job) until it
        ends, in one call (SubmitAndWatch); needs the render and read scopes. With outcome_only,
        only the first and the terminal event.

        A stream that breaks after the first event, or stays silent past the idle limit (counted
        from its first message: until then the request may still be uploading, for up to
        FIRST_MESSAGE_S), goes on as `watch` does from the last cursor seen, its retry bound
        counted from the last message.
        One that breaks before it is tried again only with an idempotency key (the gateway then
        streams the first request's job), as `submit` does. Keep-alives are never yielded;
        timeout bounds the whole call."""
        retries = self._retries(f"submitting to {self.address}", timeout, on_retry)
        while True:
            call = self.stub.SubmitAndWatch(
                pb.SubmitAndWatchRequest(request=request, outcome_only=outcome_only),
                timeout=retries.remaining(),
                metadata=self.metadata,
            )
            # Silence counts from the first message: until then the request's images may still be
            # on their way up, and the gateway has nothing to say.
            watchdog = _IdleWatchdog(call, self.stream_idle_timeout_s, self._watchdogs, first_s=FIRST_MESSAGE_S)
            last: pb.JobEvent | None = None
            try:
                for reply in call:
                    retries.connected()
                    if not reply.HasField("event"):  # a keep-alive: proof of life
                        watchdog.touch()
                        continue
                    last = reply.event
                    watchdog.touch(paused=True)
                    yield last
                    watchdog.touch()
                    if last.state in TERMINAL_STATES:
                        return
                if last is None:  # not even the job's first event: nothing to follow
                    raise _StreamEndedEarly()
            except grpc.RpcError as exc:
                watchdog.stop()
                code = exc.code()
                waited = max(self.stream_idle_timeout_s or 0.0, FIRST_MESSAGE_S)
                idle = ""
                if watchdog.fired:
                    idle = (
                        f"no message for {self.stream_idle_timeout_s:g} s"
                        if last is not None
                        else f"no message within {waited:g} s of the call"
                    )
                if last is not None and (watchdog.fired or self._broken(code, retries)):
                    # As a watch reconnects: the notice and the backoff, then from the last cursor.
                    retries.wait(exc, reason=idle)
                    yield from self.watch(
                        last.job_id,
                        last.cursor,
                        timeout=retries.remaining(),
                        on_retry=on_retry,
                        outcome_only=outcome_only,
                    )
                    return
                if last is None and request.idempotency_key and (code == grpc.StatusCode.UNAVAILABLE or watchdog.fired):
                    retries.wait(exc, reason=idle)  # the key makes the repeat the same job
                    continue
                if watchdog.fired:  # silent since the call began: not the caller's cancel
                    raise GaveUpError(
                        f"no message from {self.address} within {waited:g} s of the submit; the job "
                        "may or may not have been recorded (an idempotency key makes a repeat safe)",
                        code=grpc.StatusCode.DEADLINE_EXCEEDED,
                        last_code=code,
                        attempts=1,
                    ) from exc
                raise
            finally:
                watchdog.stop()
                call.cancel()
            # The stream ended before the job did: on as a watch from the last cursor.
            assert last is not None
            yield from self.watch(
                last.job_id, last.cursor, timeout=retries.remaining(), on_retry=on_retry, outcome_only=outcome_only
            )
            return

    def wait(self, job_id: str, timeout: float | None = None, *, on_retry: OnRetry | None = None) -> pb.Job:
        """Blocks until the job ends (through watch, with its retries, sent only the terminal event)
        and returns it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for _ in self.watch(job_id, timeout=timeout, on_retry=on_retry, outcome_only=True):
            pass
        # The job has ended; a last read gets at least a second even when the watch used it all.
        return self.get(job_id, timeout=30.0 if deadline is None else max(deadline - time.monotonic(), 1.0))

    def _broken(self, code: grpc.StatusCode, retries: _Retries) -> bool:
        """Whether a stream ended with this code broke (a new connection may go on), rather than
        ending by the request's own fault, the caller's deadline or the client's close."""
        left = retries.remaining()
        own_deadline = code == grpc.StatusCode.DEADLINE_EXCEEDED and left is not None and left <= 0.05
        own_cancel = code == grpc.StatusCode.CANCELLED and self._closed
        return code in RETRYABLE_CODES and not own_deadline and not own_cancel

    def _retries(self, what: str, timeout: float | None, on_retry: OnRetry | None) -> _Retries:
        deadline = None if timeout is None else time.monotonic() + timeout
        return _Retries(self.retry, on_retry if on_retry is not None else self.on_retry, what, deadline)
