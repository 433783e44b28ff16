"""What a stage process sets up for itself before it serves (services.common.stage.run_stage)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
stage.serve = lambda *args: print(json.dumps({"before": before, "opencv_before": opencv_before, "serving": [
    pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"
], "opencv_serving": cv2.getNumThreads()}))
stage.run_stage("probe", lambda: None, 0.0)
"""


def test_a_stage_serves_with_blas_and_opencv_on_the_calling_thread_only() -> None:
    # As if the machine had two cores (OpenCV sizes its pool from the CPUs the process may use).
    env = {"OPENBLAS_NUM_THREADS": "2", "OPENCV_FOR_THREADS_NUM": "2", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    threads = json.loads(result.stdout.strip().splitlines()[-1])
    assert threads["before"], "numpy's BLAS was not found"
    assert max(threads["before"]) == 2
    assert threads["serving"] == [1] * len(threads["before"])
    assert threads["opencv_before"] == 2
    assert threads["opencv_serving"] == 1


def test_opencv_threads_holds_within_its_block_only() -> None:
    before = cv2.getNumThreads()
    with opencv_threads(2):
        assert cv2.getNumThreads() == 2
        with opencv_threads(1):
            assert cv2.getNumThreads() == 1
        assert cv2.getNumThreads() == 2
    assert cv2.getNumThreads() == before
