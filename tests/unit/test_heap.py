"""Memory freed by a job goes back to the system."""

from __future__ import annotations

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
