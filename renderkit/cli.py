"""renderctl: submit, watch, get, cancel and list render jobs."""

from __future__ import annotations

import argparse
import os
import sys
from typing import cast

import grpc
from google.protobuf import json_format

from render.v1 import render_service_pb2 as pb
from renderkit.client import RenderClient, material_swap_request

STATE_NAMES = {v: k.removeprefix("JOB_STATE_").lower() for k, v in pb.JobState.items()}


def parse_quad(text: str) -> list[tuple[float, float]]:
    """'x,y;x,y;x,y;x,y' as four points."""
    try:
        points = [tuple(float(v) for v in pair.split(",")) for pair in text.split(";") if pair.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("--quad takes 'x,y;x,y;x,y;x,y'") from None
    if len(points) != 4 or any(len(p) != 2 for p in points):
        raise argparse.ArgumentTypeError("--quad takes four x,y points")
    return [(p[0], p[1]) for p in points]


def progress_bar(event: pb.JobEvent, width: int = 30) -> str:
    """One line: a bar, the state and the event's message."""
    filled = round(event.progress * width)
    bar = "#" * filled + "." * (width - filled)
    return f"[{bar}] {event.progress * 100:5.1f}%  {STATE_NAMES[event.state]:<9} {event.message}"


def show_job(job: pb.Job) -> str:
    return json_format.MessageToJson(job, preserving_proto_field_name=True)


def watch(client: RenderClient, job_id: str, out: object = sys.stdout) -> pb.Job:
    """Prints a progress line per event until the job ends."""
    tty = getattr(out, "isatty", lambda: False)()
    for event in client.watch(job_id):
        line = progress_bar(event)
        print(("\r" + line.ljust(100)) if tty else line, end="" if tty else "\n", file=out, flush=True)  # type: ignore[call-overload]
    if tty:
        print(file=out)  # type: ignore[call-overload]
    return client.get(job_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="renderctl", description=__doc__)
    parser.add_argument("--address", default=os.environ.get("RENDER_ADDR", "127.0.0.1:50051"))
    parser.add_argument("--tenant", default=os.environ.get("RENDER_TENANT", ""))
    commands = parser.add_subparsers(dest="command", required=True)
    submit = commands.add_parser("submit", help="submit a material swap")
    submit.add_argument("--photo", required=True, help="file path or http(s) URL")
    submit.add_argument("--swatch", required=True, help="file path or http(s) URL")
    submit.add_argument("--mask", help="file path or http(s) URL")
    submit.add_argument("--quad", type=parse_quad, default=[], help="x,y;x,y;x,y;x,y")
    submit.add_argument("--repeats", type=float)
    submit.add_argument("--refine", action="store_true")
    submit.add_argument("--brick", type=float, metavar="OFFSET", help="staggered rows shifted by OFFSET (0-1)")
    submit.add_argument("--format", choices=["jpeg", "png", "webp"], default="jpeg")
    submit.add_argument("--idempotency-key", default="")
    submit.add_argument("--project", default="")
    submit.add_argument("--watch", action="store_true", help="follow progress until the job ends")
    for name in ("watch", "get", "cancel"):
        sub = commands.add_parser(name, help=f"{name} a job")
        sub.add_argument("job_id")
    listing = commands.add_parser("list", help="list jobs, newest first")
    listing.add_argument("--page-size", type=int, default=20)
    listing.add_argument("--page-token", default="")
    listing.add_argument("--project", default="")
    args = parser.parse_args(argv)

    with RenderClient(args.address, args.tenant) as client:
        try:
            if args.command == "submit":
                fmt = cast(pb.ImageFormat, pb.ImageFormat.Value(f"IMAGE_FORMAT_{args.format.upper()}"))
                request = material_swap_request(
                    args.photo,
                    args.swatch,
                    quad=args.quad,
                    mask=args.mask,
                    repeats=args.repeats,
                    refine=args.refine,
                    idempotency_key=args.idempotency_key,
                    project_id=args.project,
                    output_format=fmt,
                    brick_offset=args.brick,
                )
                job = client.submit(request).job
                print(job.id)
                if args.watch:
                    job = watch(client, job.id)
                    print(show_job(job))
                    return 0 if job.state == pb.JOB_STATE_SUCCEEDED else 1
            elif args.command == "watch":
                job = watch(client, args.job_id)
                return 0 if job.state == pb.JOB_STATE_SUCCEEDED else 1
            elif args.command == "get":
                print(show_job(client.get(args.job_id)))
            elif args.command == "cancel":
                print(show_job(client.cancel(args.job_id)))
            else:
                reply = client.list(args.page_size, args.page_token, args.project)
                for job in reply.jobs:
                    print(f"{job.id}  {STATE_NAMES[job.state]:<9}  {job.create_time.ToJsonString()}  {job.message}")
                if reply.next_page_token:
                    print(f"next page: --page-token {reply.next_page_token}")
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
