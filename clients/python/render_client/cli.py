"""renderctl: submit material swaps, room renders, batches and texture edits; watch, get, cancel
and list jobs."""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO, cast

import grpc
from google.protobuf import json_format

from render.v1 import render_service_pb2 as pb
from render_client import admin_cli, webhooks_cli
from render_client.client import (
    GaveUpError,
    RenderClient,
    RetryNotice,
    RetryPolicy,
    generation_options,
    material_swap_request,
    room_render,
    room_render_request,
    texture_edit_request,
)

STATE_NAMES = {v: k.removeprefix("JOB_STATE_").lower() for k, v in pb.JobState.items()}


def _number(text: str, option: str, what: str) -> float:
    """A finite number from an option's text, or the option's usage error."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{option} takes {what}")
    return value


def points_arg(option: str, least: int = 1, most: int | None = None) -> Callable[[str], list[tuple[float, float]]]:
    """An option's parser for 'x,y;x,y;...' (pixels): between least and most points."""
    count = f"{least}" if most == least else f"{least} or more" if most is None else f"{least} to {most}"
    what = f"{count} points as 'x,y;x,y;...' (pixels)"

    def parse(text: str) -> list[tuple[float, float]]:
        pairs = [pair.split(",") for pair in text.split(";") if pair.strip()]
        if any(len(pair) != 2 for pair in pairs) or not least <= len(pairs) <= (most or len(pairs)):
            raise argparse.ArgumentTypeError(f"{option} takes {what}")
        return [(_number(x, option, what), _number(y, option, what)) for x, y in pairs]

    return parse


def numbers_arg(option: str, counts: tuple[int, ...], what: str) -> Callable[[str], tuple[float, ...]]:
    """An option's parser for comma-separated numbers, as many as one of counts."""

    def parse(text: str) -> tuple[float, ...]:
        parts = text.split(",")
        if len(parts) not in counts:
            raise argparse.ArgumentTypeError(f"{option} takes {what}")
        return tuple(_number(part, option, what) for part in parts)

    return parse


parse_quad = points_arg("--quad", 4, 4)


def render_quality(name: str | None) -> pb.RenderQuality:
    """--render-quality's choice as a RenderQuality (unset: the gateway's default)."""
    if not name:
        return pb.RENDER_QUALITY_UNSPECIFIED
    return cast(pb.RenderQuality, pb.RenderQuality.Value(f"RENDER_QUALITY_{name.upper()}"))


def state_name(state: int) -> str:
    """A job state's name, or its number for one a newer gateway knows and this client does not."""
    return STATE_NAMES.get(state, str(state))


def give_up_after(text: str) -> float:
    """--give-up-after: seconds, finite and 0 or more (nan would switch the bound off)."""
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError("--give-up-after takes a number of seconds, 0 or more")
    return value


def progress_bar(event: pb.JobEvent, width: int = 30) -> str:
    """One line: a bar `width` characters wide, the state and the event's message."""
    filled = round(event.progress * width)
    bar = "#" * filled + "." * (width - filled)
    message = "".join(" " if unicodedata.category(c).startswith("C") else c for c in event.message)
    return f"[{bar}] {event.progress * 100:5.1f}%  {state_name(event.state):<9} {message}"


def cell_width(char: str) -> int:
    """Terminal columns a character takes: 2 for wide East Asian ones, 0 for combining marks."""
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def fit(text: str, columns: int, ellipsis: str = "…") -> str:
    """The text cut to at most `columns` terminal columns, ending in the ellipsis when cut."""
    if sum(cell_width(c) for c in text) <= columns:
        return text
    room = columns - len(ellipsis)
    kept: list[str] = []
    for char in text:
        room -= cell_width(char)
        if room < 0:
            break
        kept.append(char)
    return "".join(kept) + ellipsis if columns >= len(ellipsis) else ""


def progress_line(event: pb.JobEvent, columns: int, ellipsis: str = "…") -> str:
    """The live progress line for a terminal `columns` wide.

    It leaves the last column free, since writing there makes many terminals wrap, and the bar
    narrows with the terminal so the message keeps some room.
    """
    return fit(progress_bar(event, max(10, min(30, columns // 4))), columns - 1, ellipsis)


class Progress:
    """Shows a job's events: one live line redrawn in place on a terminal, plain lines otherwise;
    retry notices go to the error stream."""

    def __init__(self, out: TextIO, err: TextIO, tty: bool | None = None) -> None:
        self.out = out
        self.err = err
        self.tty = out.isatty() if tty is None else tty
        self.live = False  # a live line is on screen, so the cursor is not at a line start
        try:
            "…".encode(getattr(out, "encoding", None) or "utf-8")
            self.ellipsis = "…"
        except UnicodeEncodeError:
            self.ellipsis = "..."

    def event(self, event: pb.JobEvent) -> None:
        """Draws one event."""
        if not self.tty:
            print(progress_bar(event), file=self.out, flush=True)
            return
        # The width is read at every redraw so a resized terminal is followed; \x1b[K clears what
        # a longer earlier line left to the right.
        columns = shutil.get_terminal_size().columns
        self.out.write("\r" + progress_line(event, columns, self.ellipsis) + "\x1b[K")
        self.out.flush()
        self.live = True

    def retry(self, notice: RetryNotice) -> None:
        """Reports a retry on the error stream, on a line of its own."""
        self.clear()
        print(retry_message(notice), file=self.err, flush=True)

    def clear(self) -> None:
        """Removes the live line, so what is printed next starts on a clean line."""
        if self.live:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self.live = False

    def close(self) -> None:
        """Ends the live line, keeping it on screen."""
        if self.live:
            self.out.write("\n")
            self.out.flush()
            self.live = False


def retry_message(notice: RetryNotice) -> str:
    """A retry in words: "connection lost (UNAVAILABLE); retrying in 1.6 s"."""
    return f"{notice.reason} ({notice.code.name}); retrying in {notice.delay_s:.1f} s"


def print_retry(notice: RetryNotice) -> None:
    """Reports a retry outside a watch (a submit with an idempotency key) on stderr."""
    print(retry_message(notice), file=sys.stderr, flush=True)


def show_job(job: pb.Job) -> str:
    """The job as JSON."""
    return json_format.MessageToJson(job, preserving_proto_field_name=True)


class Interrupted(Exception):
    """Ctrl-C while following a job: the job itself goes on."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


def watch(client: RenderClient, job_id: str, out: TextIO | None = None, err: TextIO | None = None) -> pb.Job:
    """Shows the job's progress until it ends (on stdout and stderr as they are at the call) and
    returns the ended job; reconnects are reported, and GaveUpError ends a watch that cannot.
    Ctrl-C stops the watch, not the job (Interrupted)."""
    progress = Progress(out if out is not None else sys.stdout, err if err is not None else sys.stderr)
    try:
        for event in client.watch(job_id, on_retry=progress.retry):
            progress.event(event)
    except KeyboardInterrupt:
        raise Interrupted(job_id) from None
    finally:
        progress.close()
    return client.get(job_id)


def submit_and_maybe_watch(
    client: RenderClient,
    request: pb.SubmitRenderRequest,
    follow: bool,
    webhook: str = "",
    webhook_events: Sequence[pb.WebhookEvent] = (),
) -> int:
    """Prints the new job's id; with follow, its progress and the ended job too. A webhook URL is
    sent the job's events (webhook_events; none: its end).

    A request without an idempotency key gets one of its own, so that a submit whose reply is lost
    (a gateway killed after recording the job, a proxy cutting the connection) is retried safely:
    the gateway answers the repeat with the same job instead of creating and charging a second."""
    if webhook:
        request.webhook.CopyFrom(pb.Webhook(url=webhook, events=webhook_events))
    if not request.idempotency_key:
        request.idempotency_key = f"renderctl-{uuid.uuid4().hex}"
    hint = (
        f"the job may have been created; submit again with --idempotency-key {request.idempotency_key} "
        "to get that job rather than a second one"
    )
    try:
        job = client.submit(request).job
    except grpc.RpcError as exc:
        code = exc.last_code if isinstance(exc, GaveUpError) else exc.code()
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            print(hint, file=sys.stderr)
        raise
    except KeyboardInterrupt:  # Ctrl-C while the submit waits or retries: its reply may be lost
        print(f"\n{hint}", file=sys.stderr)
        raise
    print(job.id)
    if not follow:
        return 0
    job = watch(client, job.id)
    print(show_job(job))
    return 0 if job.state == pb.JOB_STATE_SUCCEEDED else 1


def default_api_key() -> str:
    """$RENDER_API_KEY, else the development key an embedded stack left in its data directory."""
    key = os.environ.get("RENDER_API_KEY", "")
    if key:
        return key
    path = Path(os.environ.get("DATA_DIR", "var/stack")) / "dev-api-key"
    try:  # read as the parser is built: an unreadable one must not stop every command, --help too
        return path.read_text().strip() if path.exists() else ""
    except (OSError, UnicodeDecodeError):
        return ""  # the gateway then answers UNAUTHENTICATED, naming what is missing


def source_arg(text: str) -> str | pb.ImageSource:
    """An image option: asset:ID names an uploaded asset; anything else is a path or a URL."""
    if text.startswith("asset:"):
        return pb.ImageSource(asset_id=text.removeprefix("asset:"))
    return text


_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


def save_output(client: RenderClient, job_id: str, name: str, path: str | None) -> int:
    """Writes one output of a job to a file and says where."""
    data = client.download(job_id, name)
    output = next((o for o in client.get(job_id).result.outputs if o.name == name), None)
    extension = _EXTENSIONS.get(output.content_type if output else "", "bin")
    target = Path(path or f"{job_id}-{name}.{extension}")
    partial = target.with_name(f".{target.name}.part")  # written whole, then renamed: no half file
    partial.write_bytes(data)
    partial.replace(target)
    print(f"{target}  {len(data):,} bytes")
    return 0


class CliError(Exception):
    """A problem with renderctl's own options or files; the message is one line, safe to show."""


class SettingsError(ValueError):
    """An environment variable renderctl reads is malformed."""


def default_tls() -> bool:
    """$RENDER_TLS (1/0, true/false, yes/no, on/off; unset: plaintext)."""
    raw = os.environ.get("RENDER_TLS", "").strip().lower()
    if raw in {"", "0", "false", "no", "off"}:
        return False
    if raw in {"1", "true", "yes", "on"}:
        return True
    raise SettingsError(f"RENDER_TLS must be a boolean (true/false), got {raw!r}")


def read_cacert(path: str) -> bytes:
    """The PEM CA certificates in the file, or CliError naming the path as given."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CliError(f"cannot read the CA certificate {path} (--cacert or RENDER_CACERT): {reason}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise CliError(f"the CA certificate {path} (--cacert or RENDER_CACERT) holds no PEM certificate")
    return data


def main(argv: list[str] | None = None) -> int:
    try:
        tls = default_tls()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="renderctl", description=__doc__)
    parser.add_argument(
        "--address",
        default=os.environ.get("RENDER_ADDR", "127.0.0.1:50051"),
        help="the gateway as a gRPC target: host:port, dns:///name:port (every address the name has) or "
        "ipv4:host:port,host:port (several replicas); default $RENDER_ADDR or 127.0.0.1:50051",
    )
    parser.add_argument(
        "--api-key",
        default=default_api_key(),
        help="the API key (its tenant is the jobs'); default $RENDER_API_KEY, else the embedded stack's "
        "development key in $DATA_DIR/dev-api-key (DATA_DIR default var/stack)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        default=tls,
        help="connect over TLS, trusting the system's root certificates (a gateway with GATEWAY_TLS_CERT); "
        "default $RENDER_TLS (1/true), else plaintext",
    )
    parser.add_argument(
        "--cacert",
        default=os.environ.get("RENDER_CACERT", ""),
        metavar="PATH",
        help="connect over TLS, trusting the CA certificates in this PEM file instead of the system's "
        "(implies --tls); default $RENDER_CACERT",
    )
    parser.add_argument(
        "--give-up-after",
        type=give_up_after,
        default=RetryPolicy.give_up_after_s,
        metavar="SECONDS",
        help="stop retrying after this long without reaching a gateway (default %(default)g)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    submit = commands.add_parser(
        "submit",
        help="submit a material swap",
        description="Re-cover a surface of a photo with a swatch's material. Say where the surface is with "
        "--quad, --polygon, --mask, or --points (and --box) with --surface.",
    )
    submit.add_argument("--photo", required=True, type=source_arg, help="file path, http(s) URL or asset:ID")
    submit.add_argument("--swatch", required=True, type=source_arg, help="file path, http(s) URL or asset:ID")
    where = submit.add_argument_group("where the surface is")
    where.add_argument(
        "--quad",
        type=parse_quad,
        default=[],
        help="four corners of a rectangle on the surface, in order around it: 'x,y;x,y;x,y;x,y' (pixels)",
    )
    where.add_argument(
        "--polygon", type=points_arg("--polygon", 3, 1000), default=[], help="the outline: 'x,y;x,y;...'"
    )
    where.add_argument("--mask", type=source_arg, help="white on the surface: file path, http(s) URL or asset:ID")
    where.add_argument(
        "--points", type=points_arg("--points", 1, 100), default=[], help="points on the surface: 'x,y;...'"
    )
    where.add_argument(
        "--negative-points", type=points_arg("--negative-points", 1, 100), default=[], help="points off it: 'x,y;...'"
    )
    where.add_argument(
        "--box", type=numbers_arg("--box", (4,), "x_min,y_min,x_max,y_max (pixels)"), help="x_min,y_min,x_max,y_max"
    )
    where.add_argument("--surface", choices=["floor", "wall", "ceiling", "facade"], help="the kind of surface")
    camera = submit.add_argument_group("the camera and the surface's size")
    camera.add_argument(
        "--focal-length", type=float, default=0.0, metavar="PX", help="in pixels (default: EXIF, lines, 60°)"
    )
    camera.add_argument(
        "--quad-size",
        type=numbers_arg("--quad-size", (2,), "WIDTH,HEIGHT in metres"),
        metavar="W,H",
        help="the quad's rectangle in metres (width along its first edge)",
    )
    camera.add_argument(
        "--plane-distance",
        type=float,
        default=0.0,
        metavar="M",
        help="metres from the camera to the plane (a floor: its height)",
    )
    material = submit.add_argument_group("the material")
    scale = material.add_mutually_exclusive_group()
    scale.add_argument(
        "--repeats", type=float, help="times the swatch repeats along the quad's longer edge (default 24)"
    )
    scale.add_argument(
        "--swatch-size",
        type=numbers_arg("--swatch-size", (1, 2), "WIDTH[,HEIGHT] in metres"),
        metavar="W[,H]",
        help="metres the swatch image shows (needs --quad-size or --plane-distance)",
    )
    layout = material.add_mutually_exclusive_group()
    layout.add_argument("--brick", type=float, metavar="OFFSET", help="staggered rows shifted by OFFSET (0-1)")
    layout.add_argument("--herringbone", action="store_true", help="lay the swatch's planks in herringbone")
    material.add_argument("--rotation", type=float, default=0.0, metavar="DEGREES", help="counter-clockwise")
    material.add_argument(
        "--grout", default="", metavar="#RRGGBB", help="what shows through a swatch's transparent parts"
    )
    material.add_argument(
        "--variant", action="append", default=[], type=source_arg, metavar="SWATCH", help="another swatch (repeatable)"
    )
    material.add_argument("--refine", action="store_true", help="a generative pass harmonises the result")
    material.add_argument("--seed", type=int, help="the refinement's seed (default 42)")
    material.add_argument("--stage-timeout", type=float, metavar="SECONDS", help="the longest any one stage may take")
    outputs = submit.add_argument_group("the outputs")
    outputs.add_argument("--format", choices=["jpeg", "png", "webp"], default="jpeg")
    outputs.add_argument("--quality", type=int, default=0, help="JPEG or WebP quality, 1-100 (default 90)")
    outputs.add_argument("--no-preview", action="store_true", help="skip the 512 px preview")
    outputs.add_argument("--include-2048", action="store_true", help="also a rendition at most 2048 px a side")
    outputs.add_argument("--maps", action="store_true", help="also the swatch's normal and roughness maps")
    room = commands.add_parser("room", help="render a room from a description of its surfaces")
    room.add_argument("room_type", help='such as "kitchen"')
    room.add_argument("--name", default="")
    room.add_argument("--area", type=float, default=0.0, help="floor area in square metres")
    room.add_argument("--floor", default="", help="the floor's material name")
    room.add_argument("--walls", default="", help="the walls' material name")
    room.add_argument("--ceiling", default="", help="the ceiling's material name")
    for surface in ("floor", "walls", "ceiling"):
        room.add_argument(
            f"--{surface}-swatch", type=source_arg, help=f"a swatch photo of the {surface} (file path, URL or asset:ID)"
        )
    # (A texture edit keeps the texture's size: the gateway ignores a size there.)
    room.add_argument("--size", choices=["1024x1024", "1792x1024", "1024x1792"], help="the image size")
    room.add_argument("--style", default="")
    room.add_argument("--lighting", choices=["natural", "warm", "cool", "dramatic"], default="natural")
    room.add_argument("--time-of-day", choices=["day", "evening", "night"], default="day")
    room.add_argument("--prompt", default="", help="additions to the built prompt")
    room.add_argument("--custom-prompt", default="", help="send this prompt instead of the built one")
    texture = commands.add_parser("texture", help="edit a texture with an image model")
    texture.add_argument("texture", type=source_arg, help="file path, http(s) URL or asset:ID")
    texture.add_argument("prompt")
    texture.add_argument("--mask", type=source_arg, help="white where the model may paint")
    texture.add_argument("--maps", action="store_true", help="also write normal and roughness maps")
    for sub in (room, texture):
        sub.add_argument("--dry-run", action="store_true", help="return the prompt and cost estimate only")
        sub.add_argument("--render-quality", choices=["standard", "hd"], help="the image model's quality")
        sub.add_argument("--seed", type=int)
        sub.add_argument("--max-cents", type=float, help="refuse if the estimate is over this")
        sub.add_argument("--max-tokens", type=int, help="refuse if the estimate is over this many tokens")
    batch = commands.add_parser("batch", help="render every room of a floor plan (a RoomBatch as JSON)")
    batch.add_argument("plan", help="a JSON file holding a render.v1.RoomBatch")
    for sub in (submit, room, batch, texture):
        sub.add_argument("--idempotency-key", default="", help="the same key again returns the same job")
        sub.add_argument("--project", default="")
        sub.add_argument("--webhook", default="", metavar="URL", help="post the job's events to this URL (signed)")
        sub.add_argument(
            "--webhook-events",
            type=webhooks_cli.parse_events,
            default=[],
            metavar="EVENTS",
            help="started, progress, completed (default completed)",
        )
        sub.add_argument("--watch", action="store_true", help="follow progress until the job ends")
    for name, text in (
        ("watch", "follow a job's progress until it ends"),
        ("wait", "wait until a job ends (sent no progress), print it; exit 1 unless it succeeded"),
        ("get", "get a job"),
        ("cancel", "cancel a job"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("job_id")
    upload = commands.add_parser("upload", help="store an image once; later jobs use it as asset:ID")
    upload.add_argument("file")
    upload.add_argument("--name", default="", help="a name for your records (default: the file's name)")
    download = commands.add_parser("download", help="save one of a job's outputs (streamed by the gateway)")
    download.add_argument("job_id")
    download.add_argument("name", nargs="?", default="full", help="the output's name (default full)")
    download.add_argument("-o", "--output", help="the file to write (default JOB-NAME.EXT here)")
    listing = commands.add_parser("list", help="list jobs, newest first")
    listing.add_argument("--page-size", type=int, default=20)
    listing.add_argument("--page-token", default="")
    listing.add_argument("--project", default="")
    admin_cli.add_commands(commands)
    webhooks_cli.add_commands(commands)
    args = parser.parse_args(argv)
    if getattr(args, "webhook_events", None) and not args.webhook:
        parser.error("--webhook-events needs --webhook URL")

    try:
        root_certificates = read_cacert(args.cacert) if args.cacert else None
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    policy = RetryPolicy(give_up_after_s=args.give_up_after)
    try:
        opened = RenderClient(
            args.address,
            api_key=args.api_key,
            retry=policy,
            on_retry=print_retry,
            tls=args.tls,
            root_certificates=root_certificates,
        )
    except ValueError as exc:
        print(f"error: {exc} (--api-key or RENDER_API_KEY)", file=sys.stderr)
        return 2
    with opened as client:
        try:
            if args.command in ("keys", "tenants", "credits"):
                return admin_cli.run(args, client.channel, client.metadata)
            if args.command == "webhooks":
                return webhooks_cli.run(args, client)
            if args.command == "submit":
                fmt = cast(pb.ImageFormat, pb.ImageFormat.Value(f"IMAGE_FORMAT_{args.format.upper()}"))
                request = material_swap_request(
                    args.photo,
                    args.swatch,
                    quad=args.quad,
                    polygon=args.polygon,
                    mask=args.mask,
                    points=args.points,
                    negative_points=args.negative_points,
                    box=cast("tuple[float, float, float, float] | None", args.box),
                    surface=cast(pb.Surface, pb.Surface.Value(f"SURFACE_{args.surface.upper()}"))
                    if args.surface
                    else pb.SURFACE_UNSPECIFIED,
                    focal_length_px=args.focal_length,
                    quad_size=cast("tuple[float, float] | None", args.quad_size),
                    plane_distance_meters=args.plane_distance,
                    repeats=args.repeats,
                    swatch_size=None if args.swatch_size is None else (*args.swatch_size, 0.0)[:2],
                    brick_offset=args.brick,
                    herringbone=args.herringbone,
                    rotation_degrees=args.rotation,
                    grout_color=args.grout,
                    variant_swatches=args.variant,
                    refine=args.refine,
                    refinement_seed=args.seed,
                    stage_timeout_seconds=args.stage_timeout,
                    idempotency_key=args.idempotency_key,
                    project_id=args.project,
                    output_format=fmt,
                    quality=args.quality,
                    skip_preview=args.no_preview,
                    include_2048=args.include_2048,
                    material_maps=args.maps,
                )
                return submit_and_maybe_watch(client, request, args.watch, args.webhook, args.webhook_events)
            elif args.command == "room":
                lighting = cast(pb.Lighting, pb.Lighting.Value(f"LIGHTING_{args.lighting.upper()}"))
                time_of_day = cast(pb.TimeOfDay, pb.TimeOfDay.Value(f"TIME_OF_DAY_{args.time_of_day.upper()}"))
                described = room_render(
                    args.room_type,
                    name=args.name,
                    area=args.area,
                    floor=args.floor,
                    walls=args.walls,
                    ceiling=args.ceiling,
                    floor_swatch=args.floor_swatch,
                    walls_swatch=args.walls_swatch,
                    ceiling_swatch=args.ceiling_swatch,
                    style=args.style,
                    lighting=lighting,
                    time_of_day=time_of_day,
                    additional_prompt=args.prompt,
                    custom_prompt=args.custom_prompt,
                    dry_run=args.dry_run,
                    max_cents=args.max_cents,
                    max_tokens=args.max_tokens,
                    size=args.size or "",
                    quality=render_quality(args.render_quality),
                    seed=args.seed,
                )
                return submit_and_maybe_watch(
                    client,
                    room_render_request(described, project_id=args.project, idempotency_key=args.idempotency_key),
                    args.watch,
                    args.webhook,
                    args.webhook_events,
                )
            elif args.command == "batch":
                plan = json_format.Parse(Path(args.plan).read_text(), pb.RoomBatch())
                request = pb.SubmitRenderRequest(
                    room_batch=plan, project_id=args.project, idempotency_key=args.idempotency_key
                )
                return submit_and_maybe_watch(client, request, args.watch, args.webhook, args.webhook_events)
            elif args.command == "texture":
                request = texture_edit_request(
                    args.texture,
                    args.prompt,
                    mask=args.mask,
                    material_maps=args.maps,
                    project_id=args.project,
                    idempotency_key=args.idempotency_key,
                    options=generation_options(
                        quality=render_quality(args.render_quality),
                        dry_run=args.dry_run,
                        max_cents=args.max_cents,
                        max_tokens=args.max_tokens,
                        seed=args.seed,
                    ),
                )
                return submit_and_maybe_watch(client, request, args.watch, args.webhook, args.webhook_events)
            elif args.command == "watch":
                job = watch(client, args.job_id)
                return 0 if job.state == pb.JOB_STATE_SUCCEEDED else 1
            elif args.command == "wait":
                try:
                    job = client.wait(args.job_id)
                except KeyboardInterrupt:
                    raise Interrupted(args.job_id) from None
                print(show_job(job))
                return 0 if job.state == pb.JOB_STATE_SUCCEEDED else 1
            elif args.command == "get":
                print(show_job(client.get(args.job_id)))
            elif args.command == "cancel":
                print(show_job(client.cancel(args.job_id)))
            elif args.command == "upload":
                asset = client.upload(args.file, args.name)
                print(
                    f"asset:{asset.id}  {asset.width}x{asset.height} {asset.content_type}  {asset.size_bytes:,} bytes"
                )
                print(f"kept until {asset.expire_time.ToJsonString()}")
            elif args.command == "download":
                return save_output(client, args.job_id, args.name, args.output)
            else:
                reply = client.list(args.page_size, args.page_token, args.project)
                for job in reply.jobs:
                    print(f"{job.id}  {state_name(job.state):<9}  {job.create_time.ToJsonString()}  {job.message}")
                if reply.next_page_token:
                    print(f"next page: --page-token {reply.next_page_token}")
        except Interrupted as stop:
            print(
                f"\ninterrupted; job {stop.job_id} goes on (renderctl watch {stop.job_id} to follow it again, "
                f"renderctl cancel {stop.job_id} to stop it)",
                file=sys.stderr,
            )
            return 130
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130
        except (OSError, ValueError, json_format.ParseError) as exc:  # a local file: missing, unreadable, bad JSON
            print(f"error: {_local_problem(exc)}", file=sys.stderr)
            return 2
        except grpc.RpcError as exc:
            gave_up = isinstance(exc, GaveUpError)
            print(f"error: {exc}" if gave_up else f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            if (exc.last_code if isinstance(exc, GaveUpError) else exc.code()) == grpc.StatusCode.UNAVAILABLE:
                print(f"is a gateway running at {args.address}? (--address or RENDER_ADDR)", file=sys.stderr)
                if client.tls:
                    print(
                        "does it serve TLS, with a certificate for that host signed by a CA you trust? "
                        "(--cacert or RENDER_CACERT)",
                        file=sys.stderr,
                    )
            return 2
    return 0


def _local_problem(exc: BaseException) -> str:
    """A local input's or output's problem in words, without a traceback."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
