"""The C heap: what a process keeps of the memory its jobs free.

numpy and OpenCV allocate through malloc, and left to itself glibc does two things a server does
not want:
- It keeps much freed memory resident. A block is unmapped when freed only if it was mapped on its
  own, and the size for that rises (up to 32 MB) as large blocks are freed, so a stage would keep
  the peak of its largest request for good.
- It hands other freed memory back too soon. Each thread's heap returns its free top once it passes
  a threshold that glibc moves with the first, and a stage runs requests on worker threads
  (asyncio.to_thread, its pools): the next request faulted the same pages in again, zeroed.

So a stage fixes both thresholds and gives its threads one heap (`hold_freed_memory`), and decides
itself, after each job, what goes back (`trim_above`: malloc_trim(0) releases the heap's free
pages, a few milliseconds after a large job).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import os
from collections.abc import Callable


def _glibc(function: str) -> Callable[..., int] | None:
    """A function of glibc's malloc, None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        found: Callable[..., int] = getattr(ctypes.CDLL(name), function)
    except (OSError, AttributeError):
        return None
    return found


_TRIM = _glibc("malloc_trim")
_MALLOPT = _glibc("mallopt")

# mallopt's parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Blocks at least this large are mapped on their own (and unmapped when freed): glibc's ceiling for
# the threshold on 64-bit. A 4K photo's colour and 8-bit planes are below it.
MMAP_THRESHOLD_BYTES = 32 * 1024**2
# A heap gives its free top back on its own only beyond this (mallopt takes a C int).
TRIM_THRESHOLD_BYTES = 1024**3


def hold_freed_memory() -> bool:
    """Freed memory stays in the process's heap until trimmed (`trim`, `trim_above`), and every
    thread allocates from that one heap; blocks of MMAP_THRESHOLD_BYTES and more are still mapped
    and unmapped on their own. For a server process, before it takes work. False where the C
    library has no mallopt.

    Measured on the projection stage (docs/benchmarks.md), against glibc's defaults: a 1024 x 1024
    request faulted in ~12,900 fresh pages and a 4K one up to ~4,800, every time (the CPU of the
    1024 x 1024 request 180 -> 130 ms); with a heap per thread instead of one, what a thread freed
    was of no use to the next, and an 8 MP request's peak rose by 2 bytes a pixel. The stages'
    threads allocate a few large blocks each (strips, planes), so they seldom wait on its lock."""
    if _MALLOPT is None:
        return False
    settings = (
        (_M_ARENA_MAX, 1),
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
    )
    return all(_MALLOPT(parameter, value) == 1 for parameter, value in settings)


def ordinary_pages() -> bool:
    """numpy's arrays on the system's ordinary pages: numpy otherwise asks for transparent huge
    pages (madvise) for every array of 4 MB or more. False where numpy has no such switch, or where
    the process's NUMPY_MADVISE_HUGEPAGE already says (an operator's own choice wins).

    Measured on this project's machines (virtual, THP in madvise mode; docs/benchmarks.md): a fresh
    127 MB array filled in 24 ms on huge pages against 50 on ordinary ones at the median, but one
    fill in 15-30 took 0.3-3.5 s on huge pages (the host backing them) and none over 1.2x the
    median on ordinary ones. A 4K swap's end to end / floor ranged up to 5-16x with huge pages and
    up to 4.3x without, with medians no worse."""
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return False
    switch = getattr(_numpy_multiarray(), "_set_madvise_hugepage", None)
    if switch is None:
        return False
    switch(False)
    return True


def _numpy_multiarray() -> object:
    """numpy's C module of arrays (numpy._core from numpy 2, numpy.core before)."""
    for name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


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
