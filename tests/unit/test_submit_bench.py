"""make bench's submit benchmark: the latency part's order is balanced, and only job counts that
keep it balanced are taken."""

from __future__ import annotations

import os
import sys

import pytest

from benchmarks import submit
from renderkit.serving import GRPC_ENVIRONMENT, PUBLIC_GRPC_ENVIRONMENT


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


def test_the_benchmark_starts_again_under_the_stacks_grpc_settings_unless_they_are_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """gRPC reads them at import: the benchmark's own client gets them only by a fresh start, with
    the interpreter's own options kept; an operator's own value is left as it is."""
    started: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: started.append((path, argv, env)))
    monkeypatch.setattr(sys, "orig_argv", ["python", "-X", "dev", "-m", "benchmarks.submit", "--parts", "latency"])
    monkeypatch.delenv("GRPC_EXPERIMENTS", raising=False)
    submit.with_grpc_environment()
    assert len(started) == 1
    path, argv, env = started[0]
    assert path == sys.executable and argv == sys.orig_argv
    assert all(env[name] == value for name, value in GRPC_ENVIRONMENT.items())
    # Started again: the settings leave its environment, so what it starts gets its role's.
    monkeypatch.setattr(os, "environ", dict(env))
    submit.with_grpc_environment()
    assert len(started) == 1 and "GRPC_EXPERIMENTS" not in os.environ
    assert submit.grpc_settings(public=True) == PUBLIC_GRPC_ENVIRONMENT
    assert submit.grpc_settings(public=False) == GRPC_ENVIRONMENT
    monkeypatch.setenv("GRPC_EXPERIMENTS", "")  # gRPC's defaults, by choice: for every process
    submit.with_grpc_environment()
    assert len(started) == 1 and submit.grpc_settings(public=False) == {}


def test_the_report_says_which_of_issue_10s_targets_this_run_met(capsys: pytest.CaptureFixture[str]) -> None:
    def figure(concurrency: int, gateway: float) -> submit.Throughput:
        return submit.Throughput(concurrency, gateway, 1000.0, [], 0, 0, 0, 0, 0, 0, 0)

    throughput = submit.ThroughputRun([figure(16, 650.0), figure(64, 450.0)], {}, {}, 0, 0, True, "", "")
    ms = [0.001 * k for k in range(1, 101)]  # 1..100 ms
    latency = submit.LatencyRun(
        gateway_s=[t * 1.2 for t in ms],
        celery_s=ms,
        env={},
        followed_s=ms,
        outcome_s=[t * 0.9 for t in ms],
        api_key=True,
        hops="",
        tenant_limits="",
    )
    submit.print_targets(throughput, latency)
    out = capsys.readouterr().out
    assert "throughput at 16 in flight >= 0.6 of the bare server: 0.65 (met)" in out
    assert "throughput at 64 in flight >= 0.6 of the bare server: 0.45 (not met)" in out
    assert "two calls: p50 1.20x (not met), p99 1.20x (not met)" in out
    assert "one call: p50 1.00x (met), p99 1.00x (met)" in out
    assert "the outcome only: p50 0.90x (met), p99 0.90x (met)" in out
