"""End-to-end material-swap latency through the stack vs the same stage functions in one process.

For each size: one warm-up, then RUNS jobs submitted one at a time through the gateway (submit to
the terminal event), and RUNS calls of the same stage functions in this process (decode, mask,
plane, projection, JPEG renditions, storage write). Prints medians, the ratio (the cost of the
microservice split), and the median time of each step taken from the job's own progress events.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from devstack import scenes
from devstack.launcher import Ports, Stack
from render.imaging.v1 import imaging_pb2
from render.v1 import render_service_pb2 as pb
from render_client.client import RenderClient, material_swap_request
from renderkit import imaging
from renderkit.planes import quad_plane
from renderkit.storage import LocalStorage
from services.projection.composite import project_material

SIZES = {"1024x1024": (1024, 1024), "3840x2160": (3840, 2160)}
STEP_NAMES = ["segmentation", "depth", "projection", "output"]


def sample(width: int, height: int) -> tuple[bytes, bytes, list[tuple[float, float]]]:
    base = scenes.room_scene(min(width, 1280), min(height, 960))
    photo = cv2.resize(base.photo, (width, height), interpolation=cv2.INTER_CUBIC)
    sx, sy = width / base.photo.shape[1], height / base.photo.shape[0]
    quad = [(float(x) * sx, float(y) * sy) for x, y in base.quad]
    return imaging.encode(photo, quality=92)[0], imaging.encode(scenes.plank_texture(512), quality=95)[0], quad


def in_process(photo: bytes, swatch: bytes, quad: list[tuple[float, float]], storage: LocalStorage) -> float:
    """The same work without the split: one process, no gRPC, no ledger."""
    start = time.perf_counter()
    image, texture = imaging.decode_bgr(photo), imaging.decode_bgr(swatch)
    h, w = image.shape[:2]
    points = np.array(quad, np.float64)
    mask = imaging.decode_gray(imaging.encode_mask(imaging.polygon_mask(points, w, h)))
    plane = quad_plane(points, w, h)
    H = np.array(plane.homography.m).reshape(3, 3)
    result = project_material(image, texture, mask, H, 24.0, 24.0 / plane.aspect_ratio)
    spec = imaging_pb2.OutputSpec(
        format=imaging_pb2.FORMAT_JPEG,
        renditions=[imaging_pb2.Rendition(name="full"), imaging_pb2.Rendition(name="preview", max_side=512)],
    )
    for rendition in imaging.encode_renditions(result, spec):
        storage.put(f"bench/{rendition.name}.jpg", rendition.data, rendition.content_type)
    return time.perf_counter() - start


def through_stack(
    client: RenderClient, photo: bytes, swatch: bytes, quad: list[tuple[float, float]], repeats: float | None = None
) -> tuple[float, list[float]]:
    """Submit-to-done seconds, and the seconds of each step from the job's event times."""
    start = time.perf_counter()
    job = client.submit(material_swap_request(photo, swatch, quad=quad, repeats=repeats)).job
    events = list(client.watch(job.id))
    elapsed = time.perf_counter() - start
    if events[-1].state != pb.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"benchmark job failed: {events[-1].error.message}")
    step_times = {
        e.step: e.time.ToNanoseconds() / 1e9 for e in events if e.message.startswith("Step") and e.stage_progress == 0
    }
    end = events[-1].time.ToNanoseconds() / 1e9
    marks = [step_times[k] for k in sorted(step_times)] + [end]
    return elapsed, [b - a for a, b in itertools.pairwise(marks)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="render-bench-") as tmp:
        storage = LocalStorage(Path(tmp) / "inproc")
        # The geometry cache off: every job runs every stage, like the in-process side.
        stack = Stack(
            data_dir=Path(tmp) / "stack", ports=Ports.free(), with_triton=False, env={"GEOMETRY_CACHE_SECONDS": "0"}
        )
        with stack, RenderClient(stack.gateway_address, api_key=stack.api_key) as client:
            print(
                f"{'size':<10} {'stack median':>13} {'in-process median':>18} {'ratio':>6}   "
                + "  ".join(f"{n:>12}" for n in STEP_NAMES)
            )
            for name, (width, height) in SIZES.items():
                photo, swatch, quad = sample(width, height)
                through_stack(client, photo, swatch, quad)  # warm-up
                in_process(photo, swatch, quad, storage)
                stack_runs, local_runs, steps = [], [], []
                for _ in range(args.runs):
                    # Interleaved, so a noisy neighbour hits both sides alike.
                    elapsed, step = through_stack(client, photo, swatch, quad)
                    stack_runs.append(elapsed)
                    steps.append(step)
                    local_runs.append(in_process(photo, swatch, quad, storage))
                s, local = statistics.median(stack_runs), statistics.median(local_runs)
                step_medians = [statistics.median(col) * 1000 for col in zip(*steps, strict=True)]
                print(
                    f"{name:<10} {s * 1000:>10.0f} ms {local * 1000:>15.0f} ms {s / local:>6.2f}   "
                    + "  ".join(f"{m:>9.0f} ms" for m in step_medians),
                    flush=True,
                )


if __name__ == "__main__":
    main()
