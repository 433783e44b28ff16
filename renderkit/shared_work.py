"""Independent calls queued on a thread pool, which the calling thread joins in once it is free.

The projection's strips and a JPEG's bands are cut into parts that any thread can do. The parts go
to a pool of one thread fewer than the cores (the caller is the last), which takes them from the
first; when the caller comes for the results it does the parts no thread has started yet, from
the last, so it never waits for a part that is only queued (behind another request's work, say).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Generic, TypeVar

R = TypeVar("R")

# The threads one kind of parallel work uses at most, the caller's included.
WORKERS = max(1, min(4, os.cpu_count() or 1))


def helpers(name: str) -> ThreadPoolExecutor:
    """A pool for SharedWork beside the caller: WORKERS - 1 threads, at least one."""
    return ThreadPoolExecutor(max(1, WORKERS - 1), thread_name_prefix=name)


class SharedWork(Generic[R]):
    """fn called with each argument tuple of `calls`, queued on `pool` from the start."""

    def __init__(self, pool: ThreadPoolExecutor, fn: Callable[..., R], calls: Iterable[tuple[Any, ...]]) -> None:
        self._fn, self._calls = fn, list(calls)
        self.futures: list[Future[R]] = [pool.submit(fn, *args) for args in self._calls]

    def results(self) -> list[R]:
        """Every call's result, in order: the calls no thread has started are made here, from the
        last; then those the pool started are waited for (a call's error is raised)."""
        here = {i: self._fn(*self._calls[i]) for i in reversed(range(len(self.futures))) if self.futures[i].cancel()}
        self._wait_started()
        return [here[i] if i in here else future.result() for i, future in enumerate(self.futures)]

    def cancel(self) -> None:
        """Drops the calls not started and waits for those running."""
        for future in self.futures:
            future.cancel()
        self._wait_started()

    def _wait_started(self) -> None:
        # Not the cancelled ones: `wait` would hold those until a worker takes them off its queue,
        # behind whatever it is doing.
        wait([future for future in self.futures if not future.cancelled()])
