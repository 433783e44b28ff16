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
