"""The skeleton of a stage service process: its settings, its edge (the shared serving edge with
the stage's dependencies) and main()."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import grpc
import numpy as np

from render.imaging.v1 import imaging_pb2
from renderkit import budget, heap, telemetry
from renderkit.decode_limits import MAX_SIDE, opencv_pixel_limit
from renderkit.edge import Dependency, Edge, serve
from renderkit.interceptors import Behavior, UnaryInterceptor
from renderkit.serving import single_threaded_blas
from renderkit.settings import env_float, env_int, env_listen, env_str
from renderkit.telemetry import RpcDurations
from renderkit.tls import internal_client, internal_server_credentials
from renderkit.triton import TritonModels
from services.common.admission import allowance_bytes


@dataclass(frozen=True)
class StageSettings:
    """What every stage reads from the environment."""

    listen: str
    triton_url: str  # empty: no Triton, only the model-free paths
    grace_seconds: float
    probe_interval_s: float = 1.0
    memory_budget_bytes: int = budget.DEFAULT_REQUEST_BYTES  # what one request may use (the gateway's too)
    # What the process's requests may use at once (services.common.admission); None: not gated.
    memory_allowance_bytes: int | None = None
    # A directory of ca.crt, tls.crt, tls.key: the server then takes only clients with a certificate
    # of that CA, and the Triton client presents its own. Empty: plaintext (tests, development).
    internal_tls_dir: str = ""

    @classmethod
    def from_env(cls, prefix: str, default_port: int) -> StageSettings:
        return cls(
            listen=env_listen(f"{prefix}_LISTEN", f"127.0.0.1:{default_port}"),
            triton_url=env_str("TRITON_URL", ""),
            grace_seconds=env_float("SHUTDOWN_GRACE_SECONDS", 10.0, minimum=0.0),
            probe_interval_s=env_float("HEALTH_PROBE_SECONDS", 1.0, minimum=0.05),
            memory_budget_bytes=env_int("REQUEST_MEMORY_MB", budget.DEFAULT_REQUEST_BYTES // 2**20, minimum=64) * 2**20,
            memory_allowance_bytes=allowance_bytes(),
            internal_tls_dir=env_str("INTERNAL_TLS_DIR", ""),
        )


def triton_for(settings: StageSettings) -> TritonModels | None:
    """The Triton client when TRITON_URL is set (over mutual TLS with INTERNAL_TLS_DIR)."""
    if not settings.triton_url:
        return None
    return TritonModels(settings.triton_url, tls=internal_client(settings.internal_tls_dir))


def triton_dependency(triton: TritonModels, models: tuple[str, ...]) -> Dependency:
    """Triton as a dependency: it answers, and the stage's models that were loaded still are."""
    return Dependency("triton", lambda: triton.healthy(models))


# What a stage may keep of its requests' freed memory for the next one: fresh pages cost a 4K
# projection ~25 ms of page faults; beyond this much above its idle size, memory goes back after
# each request.
RETAINED_BYTES = 256 * 1024**2


class ReleaseMemory(UnaryInterceptor):
    """After each unary call, hands the memory its work freed back to the system when the process
    holds more than retained_bytes over its size when this was made (renderkit.heap.trim, in a
    worker thread beside the response's sending). The stages hold their freed memory otherwise
    (run_stage: heap.hold_freed_memory), so without this a stage would keep its largest request's
    peak for good. The stages' work is unary; streams and probes allocate little."""

    def __init__(self, retained_bytes: int = RETAINED_BYTES) -> None:
        self.limit_bytes = heap.resident_bytes() + retained_bytes
        self._pending: set[asyncio.Future[bool]] = set()

    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        async def released(request: Any, context: grpc.aio.ServicerContext) -> Any:  # type: ignore[type-arg]
            try:
                return await behavior(request, context)
            except BaseException as exc:
                drop_locals(exc)
                raise
            finally:
                self._release()

        return released

    def _release(self) -> None:
        # The size is read here (~16 us); only a trim is worth a thread (a hop costs ~150 us of CPU,
        # which a dry run's small calls would pay every time).
        if heap.resident_bytes() <= self.limit_bytes:
            return
        trimmed = asyncio.get_running_loop().run_in_executor(None, heap.trim)
        self._pending.add(trimmed)  # held until done: the loop keeps only weak references
        trimmed.add_done_callback(self._pending.discard)


def drop_locals(exc: BaseException) -> None:
    """Clears the local variables of the finished frames an exception (and the exceptions it
    chains) passed through. A refused call's frames hold what it decoded (a 40 MP photo is 120 MB),
    and gRPC keeps the status's exception on the call's state, which the handler's frame holds in
    turn (frame -> context -> its state -> the exception -> its traceback -> the frame): a cycle
    only the garbage collector's full passes free, so a stage kept several refused calls' images
    (1.4 GB after eight 40 MP photos refused for their size) and trimmed its heap before they were
    freed. The tracebacks stay whole for the logs; only the values go."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        pending += [current.__cause__, current.__context__]


def stage_edge(
    settings: StageSettings,
    service_name: str,
    register: Callable[[grpc.aio.Server], None],
    dependencies: Sequence[Dependency] = (),
) -> Edge:
    """A stage's server: its servicer on the shared edge, probing the given dependencies; with
    INTERNAL_TLS_DIR it serves mutual TLS only (a client without a certificate of the CA is
    refused in the handshake)."""
    edge = Edge(
        [service_name],
        listen=settings.listen,
        dependencies=dependencies,
        probe_interval_s=settings.probe_interval_s,
        credentials=internal_server_credentials(settings.internal_tls_dir),
        interceptors=[RpcDurations(), ReleaseMemory()],
    )
    edge.add(register)
    return edge


def model_stage_edge(
    settings: StageSettings,
    service_name: str,
    models: tuple[str, ...],
    register: Callable[[grpc.aio.Server, TritonModels | None], None],
) -> Edge:
    """A stage that uses Triton when TRITON_URL is set: Triton is then a dependency, closed last."""
    triton = triton_for(settings)
    dependencies = [triton_dependency(triton, models)] if triton is not None else []
    edge = stage_edge(settings, service_name, lambda server: register(server, triton), dependencies)
    if triton is not None:
        edge.on_close.append(triton.close)
    return edge


# OpenCV's parallel loops in a stage: none. The stages run their own work side by side (the
# projection's strips on its pool, photo and mask decoded together, renditions encoded together,
# requests beside requests), and OpenCV's pool inside each of those calls only added hand-offs
# between threads on cores that were already busy: a 4K swap from a mask took 782-812 ms through the
# stack with OpenCV's default (a thread per core) and 706-727 ms without (docs/benchmarks.md).
STAGE_OPENCV_THREADS = 1


@contextlib.contextmanager
def opencv_threads(count: int) -> Iterator[None]:
    """OpenCV's parallel loops limited to `count` threads (1: none) within the block, for a
    benchmark measuring a stage's work in its own process beside work measured with the default."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def stage_process() -> None:
    """What a stage's process sets for itself before its work, OpenCV's threads aside (run_stage
    sets those; a benchmark sets them around the stage's work only): BLAS on the calling thread,
    the heap's freed memory held for the next request (requests run on worker threads: their pages
    are reused, not faulted in), and numpy's arrays on ordinary pages (faulted in at a steady
    cost, without huge pages' stalls)."""
    single_threaded_blas()
    heap.hold_freed_memory()
    heap.ordinary_pages()
    telemetry.trust_incoming_baggage()  # a stage's callers are the gateways


def run_stage(name: str, create: Callable[[], Edge], grace_seconds: float) -> None:
    """main() of a stage process: serve until SIGTERM, then drain."""
    stage_process()
    cv2.setNumThreads(STAGE_OPENCV_THREADS)
    serve(name, create, grace_seconds)


# The most points an outline (a polygon) or a list of clicks may have (the gateway's limit).
MAX_OUTLINE_POINTS = 1000
# A focal length in pixels is between these times the photo's longer side (what cameras take; the
# gateway refuses a hint outside it and ignores an EXIF value outside it).
FOCAL_RANGE = (0.1, 20.0)


def size_problem(width: int, height: int) -> tuple[str, str] | None:
    """What is wrong with a photo's size a request states, as (field, description)."""
    if width <= 0 or height <= 0:
        return "width", "must be positive"
    most = opencv_pixel_limit(os.environ)  # what any decode here is held to
    if width > MAX_SIDE or height > MAX_SIDE or width * height > most:
        return "width", f"a photo is at most {MAX_SIDE} px a side and {most:,} pixels"
    return None


def points_problem(
    field: str, values: Sequence[Any], width: int, height: int, *, outline: bool = False
) -> tuple[str, str] | None:
    """What is wrong with a request's points, as (field, description): more than MAX_OUTLINE_POINTS,
    a coordinate that is not finite, or a point off the photo (a click up to a pixel outside it; an
    outline's corners as far outside it as the gateway lets a quad's, a photo's size on each side)."""
    if len(values) > MAX_OUTLINE_POINTS:
        return field, f"at most {MAX_OUTLINE_POINTS} points, got {len(values)}"
    # A click may sit a pixel outside the photo (the gateway's tolerance: a click on its edge).
    left, top, right, bottom = (-width, -height, 2 * width, 2 * height) if outline else (-1, -1, width + 1, height + 1)
    for i, p in enumerate(values):
        if not (math.isfinite(p.x) and math.isfinite(p.y)):
            return f"{field}[{i}]", "must be finite"
        if not (left <= p.x <= right and top <= p.y <= bottom):
            return f"{field}[{i}]", "lies outside the photo" if not outline else "lies far outside the photo"
    return None


def box_problem(box: imaging_pb2.Box, width: int, height: int) -> tuple[str, str] | None:
    """What is wrong with a request's box, as (field, description): a coordinate that is not finite,
    or a box that does not overlap the photo (an unset box, all zero, is none)."""
    corners = (box.x_min, box.y_min, box.x_max, box.y_max)
    if not all(math.isfinite(v) for v in corners):
        return "box", "must be finite"
    if any(corners) and (box.x_max <= 0 or box.y_max <= 0 or box.x_min >= width or box.y_min >= height):
        return "box", "lies outside the photo"
    return None


def focal_problem(field: str, focal: float, width: int, height: int) -> tuple[str, str] | None:
    """What is wrong with a focal length in pixels (0: not given), as (field, description)."""
    if not math.isfinite(focal) or focal < 0:
        return field, "must be a finite number, 0 or more"
    low, high = FOCAL_RANGE
    if focal and not low <= focal / max(width, height, 1) <= high:
        return field, f"must be between {low:g} and {high:g} times the photo's longer side"
    return None


def points(values: object) -> np.ndarray:
    """Repeated imaging.v1.Point as an (N, 2) float64 array."""
    return np.array([[p.x, p.y] for p in values], dtype=np.float64).reshape(-1, 2)  # type: ignore[attr-defined]


def box_of(box: imaging_pb2.Box, width: int = 0, height: int = 0) -> tuple[float, float, float, float] | None:
    """A box as (x0, y0, x1, y1), within the photo when its size is given; None when unset."""
    if box.x_max <= box.x_min or box.y_max <= box.y_min:
        return None
    if width and height:
        return (max(0.0, box.x_min), max(0.0, box.y_min), min(float(width), box.x_max), min(float(height), box.y_max))
    return (box.x_min, box.y_min, box.x_max, box.y_max)
