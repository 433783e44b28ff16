"""make demo: start the embedded stack, render the bundled sample with live progress, stop the stack."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import cv2

from devstack import scenes
from devstack.launcher import ROOT, Ports, Stack
from render.v1 import render_service_pb2 as pb
from render_client.cli import watch
from render_client.client import RenderClient, material_swap_request, room_render, room_render_request
from renderkit.storage import key_of


def write_sample(directory: Path) -> tuple[Path, Path, list[tuple[float, float]]]:
    """The sample: a 1600x1066 room photo, a plank swatch, and the floor's quad."""
    directory.mkdir(parents=True, exist_ok=True)
    scene = scenes.room_scene(1600, 1066)
    photo, swatch = directory / "room.jpg", directory / "planks.jpg"
    cv2.imwrite(str(photo), scene.photo, [cv2.IMWRITE_JPEG_QUALITY, 92])
    cv2.imwrite(str(swatch), scenes.plank_texture(512), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return photo, swatch, [(float(x), float(y)) for x, y in scene.quad]


def main() -> int:
    out_dir = Path(os.environ.get("DEMO_OUT", ROOT / "out"))
    photo, swatch, quad = write_sample(out_dir / "sample")
    print(f"sample photo {photo}\nsample swatch {swatch}\nfloor quad {quad}")
    with tempfile.TemporaryDirectory(prefix="render-demo-") as tmp:
        stack = Stack(data_dir=Path(tmp), ports=Ports.free(), models_dir=ROOT / "models")
        print("starting the stack ...", flush=True)
        with stack, RenderClient(stack.gateway_address, api_key=stack.api_key) as client:
            job = client.submit(material_swap_request(photo, swatch, quad=quad, repeats=12)).job
            print(f"job {job.id}")
            job = watch(client, job.id)
            if job.state != pb.JOB_STATE_SUCCEEDED:
                print(f"the render failed: {job.error.message}", file=sys.stderr)
                return 1
            for output in job.result.outputs:
                source = stack.storage_dir / key_of(output.uri)
                target = out_dir / f"demo-{output.name}{source.suffix}"
                target.write_bytes(source.read_bytes())
                print(f"{output.name:<8} {output.width}x{output.height}  {target}")
            # A room render as a dry run: the prompt and what it would cost, with or without a key.
            room = room_render(
                "living room", area=32, floor="Oak Natural 190", walls="Chalk White", style="modern", dry_run=True
            )
            dry = client.wait(client.submit(room_render_request(room)).job.id, timeout=60)
            if dry.state != pb.JOB_STATE_SUCCEEDED:
                print(f"the room render dry run failed: {dry.error.message}", file=sys.stderr)
                return 1
            report = dry.result.generation
            print(f"\nroom render (dry run) with {report.provider} {report.model}:\n{report.prompt}")
            print(f"estimated cost: {report.estimated_cost.cents:.2f} cents, {report.estimated_cost.tokens} tokens")
        print("stack stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
