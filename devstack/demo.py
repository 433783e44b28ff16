"""make demo: start the embedded stack, render the bundled sample with live progress, stop the stack."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from devstack import sample_room
from devstack.launcher import ROOT, Ports, Stack
from render.v1 import render_service_pb2 as pb
from render_client.cli import watch
from render_client.client import RenderClient, material_swap_request, room_render, room_render_request
from renderkit.storage import key_of


def main() -> int:
    out_dir = Path(os.environ.get("DEMO_OUT", ROOT / "out"))
    # The bundled sample: a furnished room photo, its floor's mask, three swatches and sample.json.
    sample = sample_room.write_sample_files(out_dir / "sample")
    scene = sample.room
    print(
        f"sample photo {sample.photo}\nfloor mask {sample.mask} (the furniture left out)\n"
        f"swatches {', '.join(str(path) for path in sample.swatches.values())}, "
        f"each {scene.swatch_size_m[0]:g} x {scene.swatch_size_m[1]:g} m\n"
        f"camera {scene.camera_height_m:g} m above the floor, focal length {scene.focal_length_px:.0f} px\n"
        f"floor quad {[(round(x), round(y)) for x, y in scene.quad_points]}"
    )
    # The floor at real size: the swatch's physical size on a plane made metric by the camera's
    # height; the mask keeps the furniture in front of the new floor.
    request = material_swap_request(
        sample.photo,
        sample.swatches["oak"],
        variant_swatches=[path for name, path in sample.swatches.items() if name != "oak"],
        quad=scene.quad_points,
        mask=sample.mask,
        swatch_size=scene.swatch_size_m,
        plane_distance_meters=scene.camera_height_m,
        focal_length_px=scene.focal_length_px,
    )
    with tempfile.TemporaryDirectory(prefix="render-demo-") as tmp:
        stack = Stack(data_dir=Path(tmp), ports=Ports.free(), models_dir=ROOT / "models")
        print("starting the stack ...", flush=True)
        with stack, RenderClient(stack.gateway_address, api_key=stack.api_key) as client:
            job = client.submit(request).job
            print(f"job {job.id}")
            job = watch(client, job.id)
            if job.state != pb.JOB_STATE_SUCCEEDED:
                print(f"the render failed: {job.error.message}", file=sys.stderr)
                return 1
            for output in job.result.outputs:
                source = stack.storage_dir / key_of(output.uri)
                target = out_dir / f"demo-{output.name}{source.suffix}"
                target.write_bytes(source.read_bytes())
                print(f"{output.name:<10} {output.width}x{output.height}  {target}")
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
