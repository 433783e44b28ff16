"""The C heap: handing memory freed by a large job back to the system.

numpy and OpenCV allocate through malloc. glibc returns a freed block to the system at once only
when it was mapped on its own, and it raises that threshold as large blocks are freed (up to
32 MB), so after one large job most of its temporaries sit freed but resident in the heaps of the
threads that made them: a stage process would keep the peak of its largest request for good.
malloc_trim(0) releases the free pages of every heap (a few milliseconds after a large job).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    return trim


_TRIM = _malloc_trim()


def trim() -> bool:
    """Returns the heaps' free memory to the system; False where the C library cannot."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


def resident_bytes() -> int:
    """The process's resident size (0 where /proc is not there to tell it)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def trim_above(limit_bytes: int) -> bool:
    """Trims the heaps when the process holds more than limit_bytes: a process may keep some freed
    memory for its next job (fresh pages cost page faults: ~16 ms per 25 MB here) but not its
    largest job's peak. True when it trimmed."""
    return resident_bytes() > limit_bytes and trim()
