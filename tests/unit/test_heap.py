"""Memory freed by a job goes back to the system."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from renderkit import heap


def resident_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux's /proc")
def test_freed_blocks_kept_by_the_heap_are_returned() -> None:
    """What numpy frees inside the heap (blocks under malloc's mapping threshold, pinned below a
    block still in use) stays resident until the heap is trimmed."""
    if not heap.trim():
        pytest.skip("the C library cannot trim its heap")
    before = resident_bytes()
    # Freeing one large mapped block raises malloc's threshold: the 1 MB blocks below then come
    # from the heap, and the small block after them keeps the heap from shrinking on its own.
    del_me = np.ones(24 << 20, np.uint8)
    del del_me
    blocks = [np.ones(1 << 20, np.uint8) for _ in range(160)]
    pin = np.ones(1 << 16, np.uint8)
    del blocks
    held = resident_bytes() - before
    heap.trim()
    after = resident_bytes() - before
    assert after < 40 << 20, (held, after)
    assert pin.sum() == 1 << 16


HELD = """
import json, sys, threading
import numpy as np
from renderkit import heap

def faults():
    return int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[7])

held = heap.hold_freed_memory()
counts = []
def job():
    for _ in range(6):
        before = faults()
        blocks = [np.ones(12 << 20, np.uint8) for _ in range(3)]
        del blocks
        counts.append(faults() - before)
worker = threading.Thread(target=job)
worker.start()
worker.join()
before = heap.resident_bytes()
big = np.ones(64 << 20, np.uint8)
del big
print(json.dumps({"held": held, "faults": counts, "big_kept": heap.resident_bytes() - before}))
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_a_held_heap_reuses_a_worker_threads_freed_pages() -> None:
    """After hold_freed_memory, a worker thread's repeated job reuses the pages it freed (no fresh
    page faults after its first round) and blocks over the mapping threshold still go back."""
    child = subprocess.run([sys.executable, "-c", HELD], capture_output=True, text=True, check=True)
    result = json.loads(child.stdout)
    if not result["held"]:
        pytest.skip("the C library has no mallopt")
    assert max(result["faults"][1:]) < 200, result  # 36 MB a round: up to 9,216 fresh pages
    assert result["big_kept"] < 8 << 20, result
