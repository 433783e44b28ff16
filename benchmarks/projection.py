"""The projection against its compute floor, its memory and cost per pixel by photo size, and the
outputs' JPEG encode in bands against one call.

Three parts, each printing ratios measured in the same run (timings on these shared 2-core machines
vary run to run; ratios much less):

- **floor** (3840x2160, FLOOR_SCENES: the issue's room floor with a 512 px swatch 24 times over,
  and scenes harder on the sampler: a floor near the camera covering most of the photo with a
  1024 and a 2048 px swatch, a wall seen nearly head-on with a 1024 px swatch and with a 512 px
  one it magnifies): the least a swap could cost, measured
  beside the real thing and interleaved with it, RUNS times each (medians): OpenCV decode of the photo's JPEG,
  cv2.warpPerspective of the swatch onto the surface's quad (bilinear, the photo's size), one
  per-pixel multiply of the result by the photo (cv2.multiply, scale 1/255: the new albedo times
  the old light) and a JPEG encode (q90). Against it: the projection stage's work called in this
  process (services.projection.server._project: decode photo and swatch, draw the quad's mask,
  sample, shade, blend, encode the full JPEG and the 512 px preview, with OpenCV's threads as the
  stage sets them) and the whole swap through the embedded
  stack (as benchmarks.e2e, submit to the terminal event). Each is timed by the clock and by the
  CPU it used (for the stack, all its processes'), which a busy neighbour disturbs far less.
- **memory** (1, 4, 8, 12, 24 and 40 MP, a surface covering the whole photo as a mask, the worst
  case for the sampler): each size in a fresh process, which reads the encoded inputs, resets its peak
  resident size (/proc/self/clear_refs), then calls _project on a worker thread with the stage's
  process settings (services.common.stage.stage_process), as the stage serves a request.
  Reported per photo pixel: the peak resident growth over the baseline (VmHWM, threads
  included), beside renderkit.budget's model of it (its fixed part included); what stays
  resident after the job has returned and the heap has been trimmed as the servicer trims it;
  and the milliseconds per megapixel by the clock and by CPU (median of the runs after the
  first), each as a multiple of the 4 MP figure (1.0 = linear).
- **jpeg** (3840x2160, 4032x3024, 6000x4000, the floor part's photo resized): renderkit.jpeg_bands'
  encode, in bands on the cores there are, against one cv2.imencode of the same image (q90),
  interleaved, 3 x RUNS times each: wall and CPU, medians.

    python -m benchmarks.projection [--runs 7] [--parts floor memory jpeg] [--sizes 1 4 8 12 24 40]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psutil

from benchmarks.e2e import sample, through_stack
from devstack import scenes
from devstack.launcher import Ports, Stack
from render.imaging.v1 import imaging_pb2
from render.projection.v1 import projection_service_pb2 as pb
from render_client.client import RenderClient
from renderkit import budget, heap, homography, imaging, jpeg_bands
from renderkit.planes import quad_plane
from renderkit.scale import tiling_from_repeats
from services.common.stage import RETAINED_BYTES, STAGE_OPENCV_THREADS, opencv_threads, stage_process
from services.projection import server

PARTS = ("floor", "memory", "jpeg")
SIZES_MP = (1, 4, 8, 12, 24, 40)
# The gateway's output for a swap: the full JPEG and the 512 px preview (gateway/context.py).
OUTPUT = imaging_pb2.OutputSpec(
    format=imaging_pb2.FORMAT_JPEG,
    renditions=[imaging_pb2.Rendition(name="full"), imaging_pb2.Rendition(name="preview", max_side=512)],
)
REPEATS = 24.0


@dataclass(frozen=True)
class FloorScene:
    """A 4K swap for the floor part: the surface's quad in the 3840x2160 photo (None: the e2e
    benchmark's room floor), a plank swatch of this many pixels a side, repeated this many times
    along the surface's longer side (as the gateway reads `repeats`)."""

    name: str
    quad: tuple[tuple[float, float], ...] | None
    swatch_px: int
    repeats: float


# The scene minifies the swatch 5-18 times (coarse mip levels, a 20 MB atlas) over 35 % of
# the photo; a swatch of a real product's resolution nearer the camera is looked up 1-9 texels a
# pixel over 61-73 % of it, from an atlas of 77 MB (1024 px) or 305 MB (2048 px).
NEAR_FLOOR = ((700.0, 500.0), (3140.0, 500.0), (5400.0, 2160.0), (-1560.0, 2160.0))
# A wall over 61 % of the photo, its footprints round within 1.07; a 512 px swatch five times across
# it is magnified (a texel over more than a pixel) everywhere.
HEAD_ON_WALL = ((400.0, 200.0), (3440.0, 300.0), (3440.0, 1860.0), (400.0, 1960.0))
FLOOR_SCENES = (
    FloorScene("room floor, 512 px swatch x 24 (the issue's)", None, 512, REPEATS),
    FloorScene("near floor, 1024 px swatch x 6.7", NEAR_FLOOR, 1024, 6.7),
    FloorScene("near floor, 2048 px swatch x 6.7", NEAR_FLOOR, 2048, 6.7),
    FloorScene("wall nearly head-on, 1024 px swatch x 5", HEAD_ON_WALL, 1024, 5.0),
    FloorScene("wall nearly head-on, 512 px swatch x 5 (magnified)", HEAD_ON_WALL, 512, 5.0),
)


def project_request(
    photo: bytes,
    swatch: bytes,
    H: np.ndarray,
    aspect: float,
    *,
    mask: bytes = b"",
    outline: np.ndarray | None = None,
    repeats: float = REPEATS,
) -> pb.ProjectRequest:
    """The request the gateway sends the projection stage for a swap of this photo: the surface as
    a mask, or as the quad's outline (a quad alone, as the floor part's swap gives it)."""
    corners = [] if outline is None else [imaging_pb2.Point(x=float(x), y=float(y)) for x, y in outline]
    info = imaging.probe(swatch)
    tiling = tiling_from_repeats(repeats, aspect, info.width / info.height)
    return pb.ProjectRequest(
        photo=photo,
        swatch=swatch,
        mask_png=mask,
        outline=corners,
        homography=imaging_pb2.Homography(m=homography.to_list(H)),
        repeats_u=tiling.repeats_u,
        repeats_v=tiling.repeats_v,
        output=OUTPUT,
    )


Timing = tuple[float, float]  # wall seconds, CPU seconds


def floor(photo: bytes, swatch: np.ndarray, quad: np.ndarray) -> Timing:
    """The compute floor: decode, one warp of the swatch, one multiply, encode."""
    start, cpu = time.perf_counter(), time.process_time()
    image = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
    h, w = swatch.shape[:2]
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    M = cv2.getPerspectiveTransform(corners, quad.astype(np.float32))
    warped = cv2.warpPerspective(swatch, M, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR)
    lit = cv2.multiply(warped, image, scale=1.0 / 255.0)
    cv2.imencode(".jpg", lit, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return time.perf_counter() - start, time.process_time() - cpu


def in_process(request: pb.ProjectRequest) -> Timing:
    """The projection stage's own work on a request (no gRPC), with OpenCV's threads as the stage
    process sets them (services.common.stage.run_stage; the floor keeps OpenCV's default)."""
    with opencv_threads(STAGE_OPENCV_THREADS):
        start, cpu = time.perf_counter(), time.process_time()
        server._project(request, request.photo, request.swatch, request.mask_png)
        return time.perf_counter() - start, time.process_time() - cpu


def stack_cpu_seconds(stack: Stack) -> float:
    """CPU seconds used so far by the stack's processes and this one (the client)."""
    total = time.process_time()
    for _, process in stack.processes:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(process.pid).cpu_times()
            total += times.user + times.system
    return total


# Issue 12's targets: the issue's 4K swap (the first floor scene) end to end at most twice its
# compute floor in the same run; the projection's peak at most 24 bytes a photo pixel.
FLOOR_TARGET = 2.0
MEMORY_TARGET = 24.0


def floor_part(runs: int) -> None:
    photo, _, room_quad = sample(3840, 2160)
    with tempfile.TemporaryDirectory(prefix="render-bench-") as tmp:
        stack = Stack(
            data_dir=Path(tmp) / "stack", ports=Ports.free(), with_triton=False, env={"GEOMETRY_CACHE_SECONDS": "0"}
        )
        with stack, RenderClient(stack.gateway_address, api_key=stack.api_key) as client:
            ratios = [floor_scene(client, stack, photo, room_quad, scene, runs) for scene in FLOOR_SCENES]
    print("\n  end to end / floor (wall), medians by scene:")
    for scene, ratio in zip(FLOOR_SCENES, ratios, strict=True):
        print(f"    {scene.name:<60} {ratio:5.2f}")
    met = "met" if ratios[0] <= FLOOR_TARGET else "not met"
    print(
        f"  issue 12's target, this run: the 4K swap end to end <= {FLOOR_TARGET}x its floor: {ratios[0]:.2f} ({met})"
    )


def scene_inputs(
    scene: FloorScene, photo: bytes, room_quad: list[tuple[float, float]]
) -> tuple[list[tuple[float, float]], bytes, pb.ProjectRequest]:
    """The scene's quad, its swatch (JPEG, as the e2e benchmark encodes its own) and the request the
    gateway sends the projection stage for it."""
    quad = room_quad if scene.quad is None else list(scene.quad)
    swatch = imaging.encode(scenes.plank_texture(scene.swatch_px), quality=95)[0]
    points = np.array(quad, np.float64)
    plane = quad_plane(points, 3840, 2160)
    H = np.array(plane.homography.m).reshape(3, 3)
    return quad, swatch, project_request(photo, swatch, H, plane.aspect_ratio, outline=points, repeats=scene.repeats)


def floor_scene(
    client: RenderClient,
    stack: Stack,
    photo: bytes,
    room_quad: list[tuple[float, float]],
    scene: FloorScene,
    runs: int,
) -> float:
    """Prints the scene's floor, stage and end-to-end timings; returns the end-to-end ratio to the
    floor (wall, medians)."""
    quad, swatch, request = scene_inputs(scene, photo, room_quad)
    points = np.array(quad, np.float64)
    texture = imaging.decode_bgr(swatch)

    def whole_swap() -> Timing:
        cpu = stack_cpu_seconds(stack)
        wall = through_stack(client, photo, swatch, quad, repeats=scene.repeats)[0]
        return wall, stack_cpu_seconds(stack) - cpu

    floor(photo, texture, points)  # warm-up
    in_process(request)
    whole_swap()
    floors, locals_, stacked = [], [], []
    for _ in range(runs):
        # Interleaved, so a noisy neighbour hits every side alike.
        floors.append(floor(photo, texture, points))
        locals_.append(in_process(request))
        stacked.append(whole_swap())
    base_wall, base_cpu = (statistics.median(t[i] for t in floors) * 1000 for i in (0, 1))
    print(f"\n3840x2160, {scene.name}, medians of {runs} interleaved runs")
    print(f"  {'':<60} {'wall':>9} {'x floor':>8} {'CPU':>9} {'x floor':>8}")
    for name, timings in (
        ("compute floor (decode, warpPerspective, multiply, encode)", floors),
        ("projection stage in this process (_project)", locals_),
        ("swap end to end through the stack (all its processes' CPU)", stacked),
    ):
        wall, cpu = (statistics.median(t[i] for t in timings) * 1000 for i in (0, 1))
        print(f"  {name:<60} {wall:6.0f} ms {wall / base_wall:8.2f} {cpu:6.0f} ms {cpu / base_cpu:8.2f}")
    per_run = sorted(s[0] / f[0] for s, f in zip(stacked, floors, strict=True))
    print(f"  end to end / floor (wall), run by run: {per_run[0]:.2f}-{per_run[-1]:.2f}", flush=True)
    return statistics.median(s[0] for s in stacked) / statistics.median(f[0] for f in floors)


def full_surface_inputs(megapixels: float, directory: Path) -> int:
    """Writes a noisy JPEG photo of about this many pixels (3:2), a mask covering all of it, a
    swatch and a homography whose surface covers the photo in perspective; returns the pixels."""
    width = math.floor(math.sqrt(megapixels * 1e6 * 1.5))
    height = math.floor(megapixels * 1e6 / width)  # 40 MP stays within the decode limit
    base = scenes.room_scene(1024, 683).photo
    photo = cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC)
    # Sensor-like noise (a tile of it, so 40 MP do not need a gigabyte of random numbers): JPEG
    # decode and encode cost depends on it.
    noise = np.random.default_rng(0).integers(0, 9, (1021, 1021, 3), np.uint8)
    tiled = np.tile(noise, (-(-height // 1021), -(-width // 1021), 1))[:height, :width]
    photo = cv2.subtract(cv2.add(photo, tiled), np.full_like(photo, 4))
    # A receding plane reaching past every edge of the photo: every pixel is on the surface.
    quad = np.array(
        [[-0.1 * width, -0.05 * height], [1.1 * width, -0.05 * height], [1.4 * width, 1.05 * height],
         [-0.4 * width, 1.05 * height]]
    )  # fmt: skip
    H = homography.quad_homography(quad)
    (directory / "photo.jpg").write_bytes(imaging.encode(photo, quality=92)[0])
    (directory / "mask.png").write_bytes(imaging.encode_mask(np.full((height, width), 255, np.uint8)))
    (directory / "swatch.jpg").write_bytes(imaging.encode(scenes.plank_texture(512), quality=95)[0])
    (directory / "homography.json").write_text(json.dumps(homography.to_list(H)))
    return width * height


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} is not in /proc/self/status")


def measure_child(directory: Path, runs: int) -> dict[str, Any]:
    """In a fresh process: the peak resident growth of the first job, the resident growth left
    after the jobs, and each job's seconds."""
    request = project_request(
        (directory / "photo.jpg").read_bytes(),
        (directory / "swatch.jpg").read_bytes(),
        np.array(json.loads((directory / "homography.json").read_text()), np.float64).reshape(3, 3),
        1.0,
        mask=(directory / "mask.png").read_bytes(),  # a mask from segmentation: the larger request
    )
    photo, swatch, mask = request.photo, request.swatch, request.mask_png
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    baseline = _status_kib("VmRSS")
    seconds, cpu_seconds = [], []
    # On a worker thread, as the stage serves a request (asyncio.to_thread).
    with ThreadPoolExecutor(1) as worker:
        for _ in range(runs):
            start, cpu = time.perf_counter(), time.process_time()
            images = worker.submit(server._project, request, photo, swatch, mask).result().images
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - cpu)
            del images
            # What a stage does after each request (services.common.stage.ReleaseMemory).
            heap.trim_above(baseline * 1024 + RETAINED_BYTES)
            if len(seconds) == 1:
                peak = _status_kib("VmHWM")
    gc.collect()
    after = _status_kib("VmRSS")
    return {"peak_kib": peak - baseline, "after_kib": after - baseline, "seconds": seconds, "cpu": cpu_seconds}


def memory_part(runs: int, sizes: list[float]) -> None:
    print(
        f"\n{'photo':>14} {'MP':>5} {'peak B/px':>10} {'model B/px':>11} {'held after':>11} "
        f"{'ms/MP':>7} {'x 4 MP':>7} {'CPU ms/MP':>10} {'x 4 MP':>7}"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="render-bench-") as tmp:
        for megapixels in sizes:
            directory = Path(tmp) / f"{megapixels}"
            directory.mkdir()
            pixels = full_surface_inputs(megapixels, directory)
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.projection", "--child", str(directory), "--runs", str(runs)],
                capture_output=True,
                text=True,
            )
            if child.returncode != 0:
                raise RuntimeError(f"the {megapixels} MP measurement failed:\n{child.stderr}")
            result = json.loads(child.stdout.strip().splitlines()[-1])
            info = imaging.probe((directory / "photo.jpg").read_bytes())
            rows.append((megapixels, pixels, info, result))

    def per_megapixel(result: dict[str, Any], key: str, pixels: int) -> float:
        timed = result[key][1:] or result[key]  # the first job is a warm-up
        return float(statistics.median(timed)) * 1e9 / pixels

    peaks = []
    reference = next((r for r in rows if r[0] == 4), rows[0])
    ref_wall, ref_cpu = (per_megapixel(reference[3], key, reference[1]) for key in ("seconds", "cpu"))
    for _, pixels, info, result in rows:
        wall, cpu = (per_megapixel(result, key, pixels) for key in ("seconds", "cpu"))
        model = budget.projection_bytes(pixels, 512 * 512, False) / pixels
        print(
            f"{info.width:>6}x{info.height:<7} {pixels / 1e6:5.1f} {result['peak_kib'] * 1024 / pixels:10.1f} "
            f"{model:11.1f} {result['after_kib'] / 1024:7.0f} MiB {wall:7.1f} {wall / ref_wall:7.2f} "
            f"{cpu:10.1f} {cpu / ref_cpu:7.2f}",
            flush=True,
        )
        peaks.append((pixels, result["peak_kib"] * 1024 / pixels))
    within = [f"{pixels / 1e6:.0f} MP" for pixels, peak in peaks if peak <= MEMORY_TARGET]
    over = [f"{pixels / 1e6:.0f} MP" for pixels, peak in peaks if peak > MEMORY_TARGET]
    print(
        f"  issue 12's target, this run: peak <= {MEMORY_TARGET} bytes a photo pixel: met at "
        f"{', '.join(within) or 'no size'}; not met at {', '.join(over) or 'no size'}"
    )


def jpeg_part(runs: int) -> None:
    """The outputs' JPEG encode (renderkit.jpeg_bands: bands of rows on the cores there are)
    against one cv2.imencode of the same image, interleaved, at 4K, 12 and 24 MP."""
    photo = imaging.decode_bgr(sample(3840, 2160)[0])
    print(f"JPEG encode (q90), medians of {runs * 3} interleaved runs: one cv2.imencode against bands")
    for width, height in ((3840, 2160), (4032, 3024), (6000, 4000)):
        image = cv2.resize(photo, (width, height), interpolation=cv2.INTER_LINEAR)
        name = f"{width}x{height}"
        whole: list[Timing] = []
        banded: list[Timing] = []
        for _ in range(runs * 3):
            for timings, encode in (
                (whole, lambda im=image: cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 90])),
                (banded, lambda im=image: jpeg_bands.encode_jpeg(im, 90)),
            ):
                start, cpu = time.perf_counter(), time.process_time()
                encode()
                timings.append((time.perf_counter() - start, time.process_time() - cpu))
        w_wall, w_cpu = (statistics.median(t[i] for t in whole) * 1000 for i in (0, 1))
        b_wall, b_cpu = (statistics.median(t[i] for t in banded) * 1000 for i in (0, 1))
        print(
            f"  {name:<10} one call {w_wall:5.1f} ms (CPU {w_cpu:5.1f}), bands {b_wall:5.1f} ms (CPU {b_cpu:5.1f}):"
            f" {b_wall / w_wall:.2f} of the wall time, {b_cpu / w_cpu:.2f} of the CPU",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--sizes", nargs="+", type=float, default=list(SIZES_MP), help="megapixels")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    # As the projection stage's process runs (services.common.stage.run_stage); the floor gains
    # from the heap's settings too.
    stage_process()
    if args.child is not None:
        with opencv_threads(STAGE_OPENCV_THREADS):
            print(json.dumps(measure_child(args.child, max(1, min(args.runs, 4)))))
        return
    if "floor" in args.parts:
        floor_part(args.runs)
    if "memory" in args.parts:
        memory_part(args.runs, args.sizes)
    if "jpeg" in args.parts:
        jpeg_part(args.runs)


if __name__ == "__main__":
    main()
