"""What a stage process sets up for itself before it serves (services.common.stage.run_stage)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# In a fresh interpreter, as `python -m services.<stage>` starts: numpy (and its OpenBLAS) loaded,
# then run_stage, whose serving is replaced by a report of the BLAS libraries' thread counts.
_PROBE = """
import json, threadpoolctl
import numpy
import services.common.stage as stage
before = [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
stage.serve = lambda *args: print(json.dumps({"before": before, "serving": [
    pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"
]}))
stage.run_stage("probe", lambda: None, 0.0)
"""


def test_a_stage_serves_with_blas_on_the_calling_thread_only() -> None:
    env = {"OPENBLAS_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"}  # as if the machine had two cores
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
