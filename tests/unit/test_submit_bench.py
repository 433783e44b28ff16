"""make bench's submit benchmark: the latency part's order is balanced, and only job counts that
keep it balanced are taken."""

from __future__ import annotations

import sys

import pytest

from benchmarks import submit


def test_each_series_follows_each_equally_often() -> None:
    order = submit.BALANCED_ORDER
    series = sorted(set(order))
    assert series == [0, 1, 2, 3]  # two calls, one call, the outcome alone, Celery
    pairs = [(order[i], order[(i + 1) % len(order)]) for i in range(len(order))]
    assert sorted(pairs) == [(a, b) for a in series for b in series]  # every ordered pair, once


@pytest.mark.parametrize("jobs", ["150", "0"])
def test_a_job_count_that_would_unbalance_the_order_is_refused(
    jobs: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["submit", "--parts", "latency", "--jobs", jobs])
    with pytest.raises(SystemExit) as exited:
        submit.main()
    assert exited.value.code == 2 and "--jobs must be a positive multiple of 4" in capsys.readouterr().err
