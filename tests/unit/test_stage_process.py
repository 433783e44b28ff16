"""What a stage process (services.common.stage.run_stage) and the gateway's (gateway.server.main) set up for
themselves before they serve."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2

from services.common.stage import opencv_threads

# In a fresh interpreter, as `python -m services.<stage>` starts: numpy (and its OpenBLAS) loaded,
# then run_stage, whose serving is replaced by a report of the BLAS libraries' and OpenCV's thread
# counts.
_PROBE = """
import json, threadpoolctl
import cv2, numpy
import services.common.stage as stage
before = [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
opencv_before = cv2.getNumThreads()
huge_pages_before = numpy.core.multiarray._get_madvise_hugepage()
held = []
hold_freed_memory = stage.heap.hold_freed_memory
stage.heap.hold_freed_memory = lambda: held.append(hold_freed_memory())
stage.serve = lambda *args: print(json.dumps({"before": before, "opencv_before": opencv_before, "serving": [
    pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"
], "opencv_serving": cv2.getNumThreads(), "heap_held": held, "huge_pages_before": huge_pages_before,
    "huge_pages_serving": numpy.core.multiarray._get_madvise_hugepage()}))
stage.run_stage("probe", lambda: None, 0.0)
"""


def run_fresh(script: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Runs a script in a fresh interpreter at the repository's root: its last line, as JSON."""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    reported: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return reported


def test_a_stage_serves_with_blas_and_opencv_on_the_calling_thread_and_its_heap_held() -> None:
    # As if the machine had two cores (OpenCV sizes its pool from the CPUs the process may use).
    env = {"OPENBLAS_NUM_THREADS": "2", "OPENCV_FOR_THREADS_NUM": "2", "PATH": "/usr/bin:/bin"}
    threads = run_fresh(_PROBE, env)
    # numpy asks for huge pages by itself wherever the kernel has them; a stage does not.
    assert threads["huge_pages_serving"] is False
    if threads["huge_pages_before"]:
        # An operator's own NUMPY_MADVISE_HUGEPAGE is left as it is.
        assert run_fresh(_PROBE, {**env, "NUMPY_MADVISE_HUGEPAGE": "1"})["huge_pages_serving"] is True
    assert threads["before"], "numpy's BLAS was not found"
    assert max(threads["before"]) == 2
    assert threads["serving"] == [1] * len(threads["before"])
    assert threads["opencv_before"] == 2
    assert threads["opencv_serving"] == 1
    assert threads["heap_held"] == [True]  # the freed memory held for the next request (glibc here)


def test_opencv_threads_holds_within_its_block_only() -> None:
    before = cv2.getNumThreads()
    with opencv_threads(2):
        assert cv2.getNumThreads() == 2
        with opencv_threads(1):
            assert cv2.getNumThreads() == 1
        assert cv2.getNumThreads() == 2
    assert cv2.getNumThreads() == before


# A grpc.aio server in a fresh interpreter that holds its freed memory as a stage does, answering a
# call that allocates and frees 320 MB in blocks the heap keeps: the process's resident growth
# after the call, with ReleaseMemory and without.
_RELEASE = """
import asyncio, json, time
import grpc, numpy as np
from renderkit import heap
from services.common.stage import ReleaseMemory

heap.hold_freed_memory()

def same(data):
    return data

async def work(request, context):
    blocks = [np.ones(8 << 20, np.uint8) for _ in range(40)]
    del blocks
    return b"done"

async def growth(interceptors, settle_s):
    server = grpc.aio.server(interceptors=interceptors, options=[("grpc.so_reuseport", 0)])
    handler = grpc.unary_unary_rpc_method_handler(work, same, same)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("probe.Probe", {"Work": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    before = heap.resident_bytes()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        assert await channel.unary_unary("/probe.Probe/Work", same, same)(b"", timeout=30) == b"done"
    deadline = time.monotonic() + settle_s  # the trim runs beside the response's sending
    while heap.resident_bytes() - before > 64 << 20 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await server.stop(None)
    return heap.resident_bytes() - before

async def main():
    released = await growth([ReleaseMemory(retained_bytes=32 << 20)], 5.0)
    kept = await growth([], 0.0)
    print(json.dumps({"released": released, "kept": kept}))

asyncio.run(main())
"""


def test_a_stage_hands_back_what_a_request_freed_beyond_what_it_retains() -> None:
    growth = run_fresh(_RELEASE)
    assert growth["released"] < 64 << 20, growth  # trimmed to within the 32 MB it may retain
    assert growth["kept"] > 256 << 20, growth  # without it the held heap keeps the request's peak


# The same server answering a call that decodes 320 MB into a local and is then refused (as a stage
# refuses a photo of the wrong size): gRPC keeps the abort on the call, in a cycle through the
# handler's frame, so without ReleaseMemory's clearing the array lived until a full garbage
# collection (here never: the collector is off, as it is between a server's rare full passes).
_REFUSED = """
import asyncio, gc, json
import grpc, numpy as np
from renderkit import heap
from services.common.stage import ReleaseMemory

heap.hold_freed_memory()
gc.disable()

def same(data):
    return data

async def work(request, context):
    photo = np.ones(320 << 20, np.uint8)
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the photo is {photo.size} bytes, not 64x48")

async def main():
    server = grpc.aio.server(interceptors=[ReleaseMemory(retained_bytes=32 << 20)], options=[("grpc.so_reuseport", 0)])
    handler = grpc.unary_unary_rpc_method_handler(work, same, same)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("probe.Probe", {"Work": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    before = heap.resident_bytes()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            await channel.unary_unary("/probe.Probe/Work", same, same)(b"", timeout=30)
        except grpc.aio.AioRpcError as error:
            code = error.code().name
    for _ in range(100):  # the trim runs beside the status's sending
        if heap.resident_bytes() - before <= 64 << 20:
            break
        await asyncio.sleep(0.05)
    growth = heap.resident_bytes() - before
    await server.stop(None)
    print(json.dumps({"code": code, "growth": growth}))

asyncio.run(main())
"""


def test_a_refused_call_frees_what_it_decoded_at_once() -> None:
    refused = run_fresh(_REFUSED)
    assert refused["code"] == "INVALID_ARGUMENT"
    assert refused["growth"] < 64 << 20, refused


# The gateway's process likewise (gateway.server.main): a quad's plane is a 3 x 3 inverse there,
# which woke OpenBLAS's worker to spin a core beside the projection's threads.
_GATEWAY_PROBE = """
import json, threadpoolctl
import numpy
import gateway.server as server
before = [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
server.serve = lambda *args: print(json.dumps({"before": before, "serving": [
    pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"
]}))
server.main()
"""


def test_the_gateway_serves_with_blas_on_the_calling_thread() -> None:
    threads = run_fresh(_GATEWAY_PROBE, {"OPENBLAS_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"})
    assert threads["before"] and max(threads["before"]) > 1, threads
    assert threads["serving"] == [1] * len(threads["serving"]), threads
