"""What the gateway costs a job: SubmitRender throughput against a bare gRPC server, and a dry-run
job's submit-to-end latency against a Celery no-op task on the same Redis.

Throughput: the embedded stack starts with its dispatcher off (DISPATCHER_CONCURRENCY=0) and the
queue limit out of reach, so submits only queue; beside it a bare grpc.aio server
(benchmarks.echo) answers the same RPC with a fixed job. One load driver (benchmarks.submit_load,
a process of its own) drives both, alternating, at each concurrency for several rounds; the
figures are medians over the rounds, and the ratio gateway / echo is the share of a bare server's
rate the gateway keeps once it validates, records in the ledger, authenticates, limits and
charges.

Latency: a second stack with the dispatcher on, and a Celery worker (benchmarks.celery_noop) with
as many processes as the dispatcher has slots, its broker and results on the stack's Redis. After a
warm-up, four series go one call at a time, in a de Bruijn order (each follows each equally often):
a dry-run room render through the gateway timed from SubmitRender to the terminal WatchJob event;
the same in one SubmitAndWatch call; the same sent only its first and terminal events
(outcome_only); and a no-op task timed from apply_async to result.get(). Reports p50 and p99 of
each.

    python -m benchmarks.submit [--rounds 5 --seconds 2 --jobs 200 --parts throughput latency]

Needs the `bench` extra (Celery) for the latency part; `make bench` installs it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import redis

from benchmarks.submit_load import API_KEY_ENV, Cell, dry_run_request, percentile
from devstack import launcher
from devstack.launcher import Ports, Stack, free_port
from gateway.ledger import Ledger, connect, keys
from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from render_client.client import RenderClient
from renderkit.serving import GRPC_ENVIRONMENT, grpc_environment

PY = sys.executable
PARTS = ("throughput", "latency")
# A dry run needs a configured image provider to name; this key is never sent anywhere, since a dry
# run only estimates, and the unroutable base URL makes sure a real call could not leave the machine.
DRY_RUN_PROVIDER_ENV = {
    "GENERATION_PROVIDERS": "openai",
    "OPENAI_API_KEY": "bench-placeholder-never-sent",
    "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
}
# Limits set out of the load's reach, so the figures measure the checks and not refusals: the
# gateway's queue limit through the stack's env (more through --stack-env), and the development
# tenant's own limits through the ledger, the way an admin sets them (high, not 0 = "none", so
# that every check still runs).
GENEROUS_LIMITS = {"QUEUE_LIMIT": "100000000"}
GENEROUS_TENANT_LIMITS: dict[str, float | int | None] = {
    "rate_per_s": 100000,
    "burst": 100000,
    "queue_quota": 10_000_000,
}
DISPATCHER_SLOTS = 2  # the gateway's dispatcher slots here; the Celery worker gets as many processes


@dataclass(frozen=True)
class Throughput:
    """One concurrency's medians over the rounds, for both targets."""

    concurrency: int
    gateway_per_s: float
    echo_per_s: float
    round_ratios: list[float]
    gateway_p50_ms: float
    gateway_p99_ms: float
    echo_p50_ms: float
    echo_p99_ms: float
    gateway_cpu: float
    echo_cpu: float
    driver_cpu: float

    @property
    def ratio(self) -> float:
        return self.gateway_per_s / self.echo_per_s if self.echo_per_s else 0.0


@dataclass(frozen=True)
class ThroughputRun:
    """The throughput part: its figures and how they were made."""

    figures: list[Throughput]
    env: dict[str, str]  # the stack's settings
    errors: dict[str, int]  # failed requests, by target and status code
    requests: int  # requests counted in the measured windows
    queued_after: int  # jobs still queued at the end (all of them: nothing dispatches)
    api_key: bool  # whether the stack minted a key (authentication, limits and credits on)
    hops: str  # how the stack's own processes talk (stack_hops)
    tenant_limits: str  # what open_tenant_limits set


@dataclass(frozen=True)
class LatencyRun:
    """The latency part: submit-to-end seconds of every measured job and task."""

    gateway_s: list[float]
    celery_s: list[float]
    env: dict[str, str]
    followed_s: list[float]  # the same job in one call (SubmitAndWatch)
    outcome_s: list[float]  # the same call sent only the first and the terminal event (outcome_only)
    api_key: bool
    hops: str
    tenant_limits: str
    topology: str = "one"


TOPOLOGIES = {
    "one": "one gateway process serves the API and dispatches",
    "split": "an API-only gateway and a dispatching one, as gateway-api and gateway-dispatcher",
}


def stack_hops(stack: Stack) -> str:
    """Whether the stack's internal hops are authenticated: Redis's password, mutual TLS to the
    stages (a stack from before either has neither)."""
    password = "with a password" if "@" in stack.redis_url else "without a password"
    transport = "its Unix socket" if stack.redis_socket else "TCP"
    tls = "mutual TLS" if getattr(stack, "internal_tls", False) else "plaintext"
    ledger = redis.Redis.from_url(stack.redis_url)
    try:  # what an acknowledged write costs: `always` fsyncs before answering
        fsync = cast(dict[str, str], ledger.config_get("appendfsync")).get("appendfsync", "?")
    finally:
        ledger.close()
    return f"Redis {password} over {transport} (appendfsync {fsync}), gateway to stages {tls}, public port plaintext"


def celery_url(stack: Stack) -> str:
    """Celery's broker and result backend: the stack's Redis reached as its gateways reach it (its
    Unix socket where they use one), in database 1 so the key spaces stay apart."""
    socket_path = stack.redis_socket
    if socket_path is None:
        return stack.redis_url.rsplit("/", 1)[0] + "/1"
    return f"redis+socket://:{stack.redis_password}@{urllib.parse.quote(str(socket_path))}?virtual_host=1"


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A child process in its own session, output to a log file: a Ctrl-C reaches only the
    benchmark, which then stops it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


@contextlib.contextmanager
def running(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A child process for the block's duration: SIGTERM at the end, SIGKILL if it lingers."""
    process = spawn(argv, log, env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_answering(address: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 30.0) -> None:
    """Returns once the echo server answers a SubmitRender."""
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the echo server exited with {process.returncode}; see {log}")
            try:
                stub.SubmitRender(dry_run_request(), timeout=1.0, wait_for_ready=True)
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def open_tenant_limits(stack: Stack) -> str:
    """Sets the key's tenant's limits out of reach (GENEROUS_TENANT_LIMITS); says what it set, or
    why nothing was (a gateway without tenant limits, a stack without a key)."""
    tenant = getattr(launcher, "DEV_TENANT", "")
    if not stack.api_key or not tenant:
        return "no tenant limits (no API key)"

    async def apply() -> str:
        client = connect(stack.redis_url, max_connections=1, role="bench")
        ledger = Ledger(client)
        try:
            # Looked up, not called by name, so the benchmark runs on a gateway from before limits.
            setter = getattr(ledger, "set_tenant_limits", None)
            if setter is None:
                return "no tenant limits (this gateway has none)"
            await setter(tenant, GENEROUS_TENANT_LIMITS)
        finally:
            if hasattr(ledger, "aclose"):
                await ledger.aclose()
            await client.aclose()
        values = " ".join(f"{k}={v}" for k, v in GENEROUS_TENANT_LIMITS.items())
        return f"tenant {tenant!r} limits set through the ledger: {values}"

    return asyncio.run(apply())


def stack_env(base: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    return {**DRY_RUN_PROVIDER_ENV, **GENEROUS_LIMITS, **base, **extra}


def run_driver(
    argv: list[str], api_key: str, log: Path, timeout_s: float, on_cell: Callable[[Cell], None]
) -> list[Cell]:
    """Runs the load driver, parsing its JSON lines as they come; killed past timeout_s. The key
    goes in its environment, not on its command line, which any local user can read."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(log, "ab") as stderr_log,
        subprocess.Popen(
            argv,
            env={**os.environ, **grpc_settings(public=False), API_KEY_ENV: api_key},
            stdout=subprocess.PIPE,
            stderr=stderr_log,
            text=True,
        ) as driver,
    ):
        assert driver.stdout is not None
        watchdog = threading.Timer(timeout_s, driver.kill)
        watchdog.start()
        try:
            cells = []
            for line in driver.stdout:
                cells.append(Cell(**json.loads(line)))
                on_cell(cells[-1])
        finally:
            watchdog.cancel()
        if driver.wait() != 0:
            raise RuntimeError(f"the load driver exited with {driver.returncode}; see {log}")
    return cells


def summarize(cells: Sequence[Cell], concurrencies: Sequence[int]) -> list[Throughput]:
    """Medians over the rounds per concurrency; each round's ratio pairs the same round's cells."""
    out = []
    for c in concurrencies:
        gateway = {cell.round: cell for cell in cells if cell.target == "gateway" and cell.concurrency == c}
        echo = {cell.round: cell for cell in cells if cell.target == "echo" and cell.concurrency == c}

        def med(side: dict[int, Cell], value: Callable[[Cell], float]) -> float:
            return statistics.median(value(cell) for cell in side.values())

        out.append(
            Throughput(
                concurrency=c,
                gateway_per_s=med(gateway, lambda x: x.per_second),
                echo_per_s=med(echo, lambda x: x.per_second),
                round_ratios=[
                    gateway[r].per_second / echo[r].per_second
                    for r in sorted(gateway)
                    if r in echo and echo[r].per_second
                ],
                gateway_p50_ms=med(gateway, lambda x: x.p50_ms),
                gateway_p99_ms=med(gateway, lambda x: x.p99_ms),
                echo_p50_ms=med(echo, lambda x: x.p50_ms),
                echo_p99_ms=med(echo, lambda x: x.p99_ms),
                gateway_cpu=med(gateway, lambda x: x.server_cpu),
                echo_cpu=med(echo, lambda x: x.server_cpu),
                driver_cpu=statistics.median(x.driver_cpu for x in [*gateway.values(), *echo.values()]),
            )
        )
    return out


def measure_throughput(args: argparse.Namespace, work: Path, extra_env: dict[str, str]) -> ThroughputRun:
    """The throughput part: a stack that does not dispatch, the echo server, and the driver."""
    env = stack_env({"DISPATCHER_CONCURRENCY": "0"}, extra_env)
    stack = Stack(data_dir=work / "submit-stack", ports=Ports.free(), with_triton=False, env=env)
    with stack:
        api_key, tenant_limits = stack.api_key, open_tenant_limits(stack)
        # One real reply: the echo server sends these very bytes back, so both targets serialize
        # and the driver parses the same response.
        with RenderClient(stack.gateway_address, api_key=api_key) as client:
            reply = client.submit(dry_run_request())
        reply_file = work / "reply.bin"
        reply_file.write_bytes(reply.SerializeToString())
        echo_address = f"127.0.0.1:{free_port()}"
        echo_log = work / "logs" / "echo.log"
        argv = [PY, "-m", "benchmarks.echo", "--listen", echo_address, "--response", str(reply_file)]
        # The bare server runs under the gRPC settings of this process (as a module, the stack's:
        # with_grpc_environment).
        with running(argv, echo_log, grpc_settings(public=True)) as echo:
            wait_answering(echo_address, echo, echo_log)
            driver = [
                *(PY, "-m", "benchmarks.submit_load"),
                *("--target", f"gateway={stack.gateway_address}", "--target", f"echo={echo_address}"),
                *("--pid", f"gateway={stack.process('gateway').pid}", "--pid", f"echo={echo.pid}"),
                *("--concurrency", *map(str, args.concurrency)),
                *("--rounds", str(args.rounds), "--seconds", str(args.seconds), "--ramp", str(args.ramp)),
                *("--warmup", str(args.warmup), "--channels", str(args.channels)),
            ]
            cells_per_round = 2 * len(args.concurrency)
            expected_s = 2 * args.warmup + args.rounds * cells_per_round * (args.ramp + args.seconds)

            def progress(cell: Cell) -> None:
                print(
                    f"  round {cell.round + 1}/{args.rounds}: {cell.target:<7} c={cell.concurrency:<3} "
                    f"{cell.per_second:>7.0f}/s",
                    file=sys.stderr,
                    flush=True,
                )

            cells = run_driver(driver, api_key, work / "logs" / "driver.log", expected_s + 120, progress)
        with redis.Redis.from_url(stack.redis_url) as ledger_redis:
            queued = int(ledger_redis.scard(keys.ACTIVE_SET))
        hops = stack_hops(stack)
    errors: dict[str, int] = {}
    for cell in cells:
        for code, count in cell.errors.items():
            errors[f"{cell.target} {code}"] = errors.get(f"{cell.target} {code}", 0) + count
    requests = sum(cell.completed for cell in cells)
    return ThroughputRun(
        summarize(cells, args.concurrency), env, errors, requests, queued, bool(api_key), hops, tenant_limits
    )


def job_seconds(client: RenderClient, request: pb.SubmitRenderRequest) -> float:
    """SubmitRender to the terminal WatchJob event, as the client sees it."""
    start = time.perf_counter()
    job = client.submit(request).job
    return _until_success(client.watch(job.id), start)


# The latency part's order of (two calls, one call, one call for the outcome, Celery): a de Bruijn
# sequence, in which each ordered pair of the four occurs once per sixteen, cyclic.
BALANCED_ORDER = (0, 0, 1, 0, 2, 0, 3, 1, 1, 2, 1, 3, 2, 2, 3, 3)


def followed_seconds(client: RenderClient, request: pb.SubmitRenderRequest, *, outcome_only: bool = False) -> float:
    """SubmitAndWatch to its terminal event: the submit and the watch in one call (with
    outcome_only, sent only the first event and the terminal one, as a task's result.get())."""
    start = time.perf_counter()
    return _until_success(client.submit_and_watch(request, outcome_only=outcome_only), start)


def _until_success(events: Iterator[pb.JobEvent], start: float) -> float:
    """Seconds from start to the last of the events, which must be the job's success."""
    last = None
    for event in events:
        last = event
    elapsed = time.perf_counter() - start
    if last is None or last.state != pb.JOB_STATE_SUCCEEDED:
        message = last.error.message if last is not None else "no event"
        raise RuntimeError(f"benchmark job {last.job_id if last else ''} did not succeed: {message}")
    return elapsed


def task_seconds(task: Any) -> float:
    """apply_async to result.get() of the no-op task."""
    start = time.perf_counter()
    task.apply_async().get(timeout=60)
    return time.perf_counter() - start


def measure_latency(args: argparse.Namespace, work: Path, extra_env: dict[str, str]) -> LatencyRun:
    """The latency part: a dispatching stack and a Celery worker on its Redis, one job at a time."""
    try:
        from benchmarks.celery_noop import NOOP_TASK, REDIS_URL_ENV, create_app
    except ImportError as exc:
        raise SystemExit(f"the latency part needs Celery: pip install -e '.[bench]' ({exc})") from None
    slots = int(extra_env.get("DISPATCHER_CONCURRENCY", DISPATCHER_SLOTS))
    env = stack_env({"DISPATCHER_CONCURRENCY": str(slots)}, extra_env)
    split = args.topology == "split"
    # Split: as deployed (gateway-api and gateway-dispatcher), the stack's gateway answers the API
    # only and a second gateway process dispatches; one: a single process does both.
    stack_settings = {**env, "GATEWAY_DISPATCH": "false"} if split else env
    stack = Stack(
        data_dir=work / f"latency-stack-{args.topology}", ports=Ports.free(), with_triton=False, env=stack_settings
    )
    with stack:
        if split:
            stack.add_gateway("gateway-dispatcher", free_port(), env={"GATEWAY_DISPATCH": "true"})
        api_key, hops, tenant_limits = stack.api_key, stack_hops(stack), open_tenant_limits(stack)
        broker = celery_url(stack)
        worker_argv = [PY, "-m", "benchmarks.celery_noop", "--concurrency", str(slots)]
        app = create_app(broker)
        noop = app.tasks[NOOP_TASK]
        request = dry_run_request()
        with (
            running(worker_argv, work / "logs" / "celery.log", {REDIS_URL_ENV: broker}),
            RenderClient(stack.gateway_address, api_key=api_key) as client,
        ):
            for _ in range(args.warmup_jobs):
                job_seconds(client, request)
                followed_seconds(client, request)
                followed_seconds(client, request, outcome_only=True)
                task_seconds(noop)
            gateway: list[float] = []
            followed: list[float] = []
            outcome: list[float] = []
            celery: list[float] = []
            measures: list[tuple[list[float], Callable[[], float]]] = [
                (gateway, lambda: job_seconds(client, request)),
                (followed, lambda: followed_seconds(client, request)),
                (outcome, lambda: followed_seconds(client, request, outcome_only=True)),
                (celery, lambda: task_seconds(noop)),
            ]
            # A job's tail (the dispatcher's cleanup and next take, Celery's acknowledgement) slows
            # whatever comes next, so each of the four follows each (itself included) equally
            # often: the order is a de Bruijn sequence.
            series = len(measures)
            for step in range(series * args.jobs):
                times, measure = measures[BALANCED_ORDER[step % len(BALANCED_ORDER)]]
                times.append(measure())
                if (step + 1) % 200 == 0:
                    print(f"  latency: {(step + 1) // series}/{args.jobs} of each", file=sys.stderr, flush=True)
        app.close()
    return LatencyRun(gateway, celery, env, followed, outcome, bool(api_key), hops, tenant_limits, args.topology)


def format_env(env: dict[str, str]) -> str:
    shown = {k: v for k, v in env.items() if k not in DRY_RUN_PROVIDER_ENV}
    return " ".join(f"{k}={v}" for k, v in sorted(shown.items()))


def report(args: argparse.Namespace, throughput: ThroughputRun | None, latency: LatencyRun | None) -> None:
    """Prints the figures, their ratios and the run's conditions."""
    keyed = any(run.api_key for run in (throughput, latency) if run is not None)
    # Limits and credits are kept per authenticated tenant: a stack that mints no key has none of
    # the three. With a key, the conditions below name the limits the stacks were given.
    auth = (
        "on (the stack minted an API key, sent as a bearer token; the gateway's limits and credits apply)"
        if keyed
        else "off: before authentication, limits and credits (the stack minted no API key)"
    )
    print(f"\nSubmit benchmark, {datetime.date.today().isoformat()}, {os.cpu_count()} CPUs; authentication: {auth}")
    if throughput is not None:
        print(
            f"\nSubmitRender per second, gateway vs a bare grpc.aio echo server (dry-run room render, no images;\n"
            f"median of {args.rounds} rounds of {args.seconds:g} s after a {args.ramp:g} s ramp, "
            f"{args.warmup:g} s warm-up per target, {args.channels} channels)"
        )
        print(
            f"{'concurrency':>11} {'gateway/s':>10} {'echo/s':>8} {'ratio':>6} {'rounds':>11}   "
            f"{'gateway p50/p99':>16} {'echo p50/p99':>14}   {'CPU gateway/echo/driver':>23}"
        )
        for t in throughput.figures:
            spread = f"{min(t.round_ratios):.2f}-{max(t.round_ratios):.2f}" if t.round_ratios else "-"
            print(
                f"{t.concurrency:>11} {t.gateway_per_s:>10.0f} {t.echo_per_s:>8.0f} {t.ratio:>6.2f} {spread:>11}   "
                f"{t.gateway_p50_ms:>7.1f}/{t.gateway_p99_ms:<5.1f} ms {t.echo_p50_ms:>5.1f}/{t.echo_p99_ms:<5.1f} ms"
                f"   {t.gateway_cpu:>9.2f}/{t.echo_cpu:.2f}/{t.driver_cpu:.2f}"
            )
    if latency is not None:
        g, f, o, c = latency.gateway_s, latency.followed_s, latency.outcome_s, latency.celery_s
        g50, g99, f50, f99, o50, o99, c50, c99 = (percentile(v, q) * 1000 for v in (g, f, o, c) for q in (50, 99))
        print(
            f"\nSubmit to end, one at a time ({len(g)} of each after {args.warmup_jobs} warm-up, in a balanced order)\n"
            f"{'':<52} {'p50':>9} {'p99':>9}\n"
            f"{'gateway: dry-run room render, SubmitRender..WatchJob':<52} {g50:>6.1f} ms {g99:>6.1f} ms\n"
            f"{'gateway: the same in one call, SubmitAndWatch':<52} {f50:>6.1f} ms {f99:>6.1f} ms\n"
            f"{'gateway: the same, sent the outcome (outcome_only)':<52} {o50:>6.1f} ms {o99:>6.1f} ms\n"
            f"{'  (' + TOPOLOGIES[latency.topology] + ')':<52}\n"
            f"{'Celery: no-op task, apply_async..get':<52} {c50:>6.1f} ms {c99:>6.1f} ms\n"
            f"{'ratio gateway / Celery, two calls':<52} {g50 / c50:>9.1f} {g99 / c99:>9.1f}\n"
            f"{'ratio gateway / Celery, one call':<52} {f50 / c50:>9.1f} {f99 / c99:>9.1f}\n"
            f"{'ratio gateway / Celery, one call, the outcome only':<52} {o50 / c50:>9.1f} {o99 / c99:>9.1f}"
        )
    print_targets(throughput, latency)
    print("\nConditions:")
    for run in (throughput, latency):
        if run is not None:
            print(f"  the stack's own hops: {run.hops}\n  tenant limits: {run.tenant_limits}")
            break
    if throughput is not None:
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(throughput.errors.items())) or "none"
        if throughput.errors:
            # Failed submits are not counted: a limit that refuses shows up only as a lower rate,
            # so the figures would measure the limit, not the gateway.
            print("  WARNING: some requests failed (below); the throughput figures are not comparable")
        print(
            f"  throughput stack: {format_env(throughput.env)} (dispatcher off: submits only queue; "
            f"{throughput.queued_after} jobs left queued)\n"
            f"  requests counted: {throughput.requests}; errors: {errors}\n"
            f"  CPU: seconds per second of each process over the measured windows (1.00 = one core)"
        )
    if latency is not None:
        print(
            f"  latency stack: {format_env(latency.env)}; Celery worker: prefork, "
            f"{latency.env.get('DISPATCHER_CONCURRENCY')} processes, broker and results on the "
            f"stack's Redis (database 1), reached as the gateway reaches it"
        )
    print(f"  dry runs name a placeholder OpenAI provider ({DRY_RUN_PROVIDER_ENV['OPENAI_BASE_URL']}); none is called")
    mine = {name: os.environ[name] for name in GRPC_ENVIRONMENT if name in os.environ}
    if mine:
        print(f"  gRPC, in every process (the stack, the echo server, the driver, this client): {format_env(mine)}")
    else:
        print(
            f"  gRPC: the gateway and the echo server {format_env(grpc_settings(True))} (gRPC's own poller); "
            f"the stages, the driver and this client {format_env(GRPC_ENVIRONMENT)}"
        )


def parse_env(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--stack-env {pair!r}: use KEY=VALUE")
        out[key] = value
    return out


# Set in the environment of this benchmark started again by with_grpc_environment.
_STARTED_AGAIN = "RENDER_BENCH_GRPC_SET"


def with_grpc_environment() -> None:
    """Starts this benchmark again under the stack's gRPC settings for a client when they are not
    set: gRPC reads them when it is imported, and the latency part's client is this process. Once
    started again, the settings leave its environment (gRPC has read them), so the processes it
    starts get their role's (grpc_settings). Set GRPC_EXPERIMENTS yourself (empty: gRPC's defaults)
    to run every process with yours."""
    added = os.environ.pop(_STARTED_AGAIN, None)
    if added is not None:  # only what was added then: a setting of yours stays
        for name in added.split(","):
            os.environ.pop(name, None)
        return
    missing = grpc_environment(os.environ)
    if missing:  # with the interpreter's own options
        os.execve(sys.executable, sys.orig_argv, {**os.environ, **missing, _STARTED_AGAIN: ",".join(missing)})


def grpc_settings(public: bool) -> dict[str, str]:
    """The gRPC settings of a process this benchmark starts: the gateway's (public) for the echo
    server standing in for it, the stack's others' for the load driver (the stack's own launcher
    gives each of its processes its role's); yours for all when you set them."""
    return grpc_environment(os.environ, public)


# Issue 10's targets: SubmitRender at 0.6 of a bare grpc.aio server's rate or more, at every
# concurrency measured; a dry-run job from submit to end at or below a Celery no-op, p50 and p99.
THROUGHPUT_TARGET = 0.6


def print_targets(throughput: ThroughputRun | None, latency: LatencyRun | None) -> None:
    """Each target, this run's figure and whether it was met (a verdict of one run: see the
    docs for how they move between runs on shared cores)."""
    lines = []
    if throughput is not None:
        for t in throughput.figures:
            met = t.ratio >= THROUGHPUT_TARGET
            lines.append(
                f"throughput at {t.concurrency} in flight >= {THROUGHPUT_TARGET} of the bare server: "
                f"{t.ratio:.2f} ({'met' if met else 'not met'})"
            )
    if latency is not None:
        celery = (percentile(latency.celery_s, 50), percentile(latency.celery_s, 99))
        for label, series in (
            ("two calls", latency.gateway_s),
            ("one call", latency.followed_s),
            ("the outcome only", latency.outcome_s),
        ):
            ours = (percentile(series, 50), percentile(series, 99))
            verdicts = ["met" if ours[i] <= celery[i] else "not met" for i in range(2)]
            lines.append(
                f"job at or below a Celery no-op, {label}: p50 {ours[0] / celery[0]:.2f}x ({verdicts[0]}), "
                f"p99 {ours[1] / celery[1]:.2f}x ({verdicts[1]})"
            )
    if lines:
        print("\nIssue 10's targets, this run:")
        for line in lines:
            print(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per target, concurrency, round")
    parser.add_argument("--ramp", type=float, default=0.5)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load per target before round 1")
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument(
        "--jobs", type=int, default=200, help="sequential jobs of each series for the latency part (a multiple of 4)"
    )
    parser.add_argument("--warmup-jobs", type=int, default=20)
    parser.add_argument(
        "--topology",
        choices=sorted(TOPOLOGIES),
        default="one",
        help="latency part: one gateway process that serves and dispatches, or split as deployed",
    )
    parser.add_argument(
        "--stack-env", action="append", default=[], help="KEY=VALUE for both stacks (e.g. a generous rate limit)"
    )
    args = parser.parse_args()
    if args.jobs <= 0 or args.jobs * 4 % len(BALANCED_ORDER):
        # The order is balanced, and every series runs --jobs times, over whole cycles only.
        parser.error(f"--jobs must be a positive multiple of {len(BALANCED_ORDER) // 4}")
    extra_env = parse_env(args.stack_env)
    throughput: ThroughputRun | None = None
    latency: LatencyRun | None = None
    with tempfile.TemporaryDirectory(prefix="render-bench-submit-") as tmp:
        work = Path(tmp)
        try:
            if "throughput" in args.parts:
                throughput = measure_throughput(args, work, extra_env)
            if "latency" in args.parts:
                latency = measure_latency(args, work, extra_env)
        except BaseException:
            # The temporary directory goes with the run: its logs' tails are the only trace left.
            print(f"submit benchmark failed; logs were in {work}", file=sys.stderr)
            for log in sorted(work.glob("**/logs/*.log")):
                print(f"--- {log.relative_to(work)} (last lines)", file=sys.stderr)
                print("\n".join(log.read_text(errors="replace").splitlines()[-15:]), file=sys.stderr)
            raise
    report(args, throughput, latency)


if __name__ == "__main__":
    with_grpc_environment()
    main()
