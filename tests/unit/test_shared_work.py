"""Calls shared between a pool and the calling thread."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from renderkit.shared_work import SharedWork


def test_the_caller_makes_the_calls_no_thread_started_and_results_keep_their_order() -> None:
    pool, release = ThreadPoolExecutor(1), threading.Event()
    pool.submit(release.wait)  # the pool's one thread is busy elsewhere
    threads: dict[int, str] = {}

    def square(n: int) -> int:
        threads[n] = threading.current_thread().name
        return n * n

    try:
        work = SharedWork(pool, square, [(n,) for n in range(6)])
        assert work.results() == [0, 1, 4, 9, 16, 25]
        assert set(threads.values()) == {threading.current_thread().name}
        assert all(future.cancelled() for future in work.futures)
    finally:
        release.set()
        pool.shutdown()


def test_calls_the_pool_started_are_waited_for_and_their_errors_raised() -> None:
    pool = ThreadPoolExecutor(1)
    started, release = threading.Event(), threading.Event()

    def call(n: int) -> int:
        if n == 0:
            started.set()
            assert release.wait(30)
            raise ValueError("the first call failed")
        return n

    try:
        work = SharedWork(pool, call, [(n,) for n in range(3)])
        assert started.wait(30)  # the pool is in the first call: the caller makes the others
        threading.Timer(0.2, release.set).start()
        with pytest.raises(ValueError, match="the first call failed"):
            work.results()
        assert not work.futures[0].cancelled() and work.futures[0].done()
    finally:
        release.set()
        pool.shutdown()


def test_cancel_drops_what_has_not_started() -> None:
    pool, release = ThreadPoolExecutor(1), threading.Event()
    pool.submit(release.wait)
    calls: list[int] = []
    try:
        work = SharedWork(pool, calls.append, [(n,) for n in range(4)])
        work.cancel()  # returns at once: nothing had started
        assert all(future.cancelled() for future in work.futures)
    finally:
        release.set()
        pool.shutdown()
    assert calls == []
