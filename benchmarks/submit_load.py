"""The submit benchmark's load driver: SubmitRender at a fixed concurrency against several targets.

It runs in a process of its own (benchmarks.submit starts it), so its event loop is shared with
nothing it measures. For every target it opens a few channels, each its own HTTP/2 connection,
and keeps N requests in flight spread over them (closed loop: a request is sent as soon as one
returns). After a warm-up per target, every round runs each concurrency against each target in
turn, the targets' order alternating between rounds so that neither always goes first; a cell
counts the requests that complete in its measured window, after a short ramp. Every cell is
printed as one JSON line on stdout.

    python -m benchmarks.submit_load --target gateway=127.0.0.1:50051 --target echo=127.0.0.1:50099

The request is a dry-run room render (no images, so image handling does not dominate). An API key
in $BENCH_API_KEY is sent as `authorization: Bearer <key>` to every target alike.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import grpc

from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from render_client.client import CHANNEL_OPTIONS, room_render, room_render_request

API_KEY_ENV = "BENCH_API_KEY"
# Without its own subchannel pool every channel to one address shares a single connection, and
# "a few channels" would be one.
DRIVER_CHANNEL_OPTIONS: list[tuple[str, int | str]] = [*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
RPC_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Target:
    """A server to load: its name in the report, its address, and its pid (0: unknown) for CPU use."""

    name: str
    address: str
    pid: int = 0


@dataclass
class Cell:
    """One target at one concurrency in one round."""

    target: str
    concurrency: int
    round: int
    completed: int
    seconds: float
    per_second: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int] = field(default_factory=dict)
    driver_cpu: float = 0.0  # the driver's CPU seconds per second over the window (1.0: one core)
    server_cpu: float = -1.0  # the target process's, where its pid is known (-1: not measured)


def auth_metadata(api_key: str) -> tuple[tuple[str, str], ...]:
    """The bearer credential for raw stubs (none before the stack mints a key)."""
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


def dry_run_request() -> pb.SubmitRenderRequest:
    """The benchmark's request: a dry-run room render, no images."""
    return room_render_request(room_render("living room", area=24.0, floor="Oak Natural 190", dry_run=True))


def process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of a process, all its threads (Linux /proc; -1 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name (field 2) may hold spaces: the fields after it start past its ")".
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return -1.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; 0 for no values."""
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


@dataclass
class Window:
    """What a closed loop measured: the calls that ended inside its measured window."""

    latencies: list[float]  # seconds of each successful call, sorted
    extras: dict[str, list[float]]  # further per-call seconds an operation reports (sorted), by name
    errors: dict[str, int]  # failed calls ending in the window, by status code
    all_errors: dict[str, int]  # failed calls at any time (the ramp and the tail too)
    seconds: float  # the window's length: `seconds`, or less when max_calls ended the loop first
    started: int  # calls started after the ramp
    driver_cpu: float  # the driver's CPU seconds per second over the window
    server_cpu: float  # the target process's (-1: not measured)


class OperationFailed(Exception):
    """An operation's failure that is not a status from the server (a stream that ended too soon),
    counted under its own code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


# An operation is one call (or a short sequence of calls) on a stub; it may return further timings
# (seconds, by name), such as a watch's time to its first event.
Operation = Callable[[pb_grpc.RenderServiceStub], Awaitable[Mapping[str, float] | None]]


async def closed_loop(
    stubs: Sequence[pb_grpc.RenderServiceStub],
    operation: Operation,
    concurrency: int,
    ramp_s: float,
    seconds: float,
    *,
    max_calls: int = 0,
    pid: int = 0,
) -> Window:
    """`concurrency` operations in flight (spread over the stubs), each started as soon as the one
    before it returns, for ramp_s + seconds, or until max_calls have started after the ramp (0: no
    count); counts what ends in the window after the ramp. A call in flight at the end is awaited,
    not counted."""
    latencies: list[float] = []
    extras: dict[str, list[float]] = collections.defaultdict(list)
    errors: collections.Counter[str] = collections.Counter()
    all_errors: collections.Counter[str] = collections.Counter()
    now = time.perf_counter()
    measure_from, stop_at = now + ramp_s, now + ramp_s + seconds
    started = 0  # calls started after the ramp

    async def one_in_flight(stub: pb_grpc.RenderServiceStub) -> None:
        nonlocal started
        while (start := time.perf_counter()) < stop_at and (max_calls <= 0 or started < max_calls):
            if start >= measure_from:
                started += 1
            try:
                more = await operation(stub)
            except (grpc.aio.AioRpcError, OperationFailed) as exc:
                code = exc.code if isinstance(exc, OperationFailed) else exc.code().name
                all_errors[code] += 1
                if measure_from <= time.perf_counter() < stop_at:
                    errors[code] += 1
                continue
            end = time.perf_counter()
            if measure_from <= end < stop_at:
                latencies.append(end - start)
                for name, value in (more or {}).items():
                    extras[name].append(value)

    def snapshot() -> tuple[float, float, float]:
        return time.perf_counter(), time.process_time(), process_cpu_s(pid) if pid else -1.0

    workers = asyncio.ensure_future(asyncio.gather(*(one_in_flight(stubs[i % len(stubs)]) for i in range(concurrency))))
    # CPU use is read at the window's edges, so the ramp and the tail are left out; the window ends
    # early when the count does.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(workers), timeout=max(0.0, measure_from - time.perf_counter()))
    begin = snapshot()
    if not workers.done():
        await asyncio.wait({workers}, timeout=max(0.0, stop_at - time.perf_counter()))
    end = snapshot()
    await workers
    window = max(0.0, min(end[0], stop_at) - begin[0])
    cpu_window = end[0] - begin[0]
    return Window(
        latencies=sorted(latencies),
        extras={name: sorted(values) for name, values in extras.items()},
        errors=dict(errors),
        all_errors=dict(all_errors),
        seconds=window,
        started=started,
        driver_cpu=(end[1] - begin[1]) / cpu_window if cpu_window > 0 else 0.0,
        server_cpu=(end[2] - begin[2]) / cpu_window if cpu_window > 0 and begin[2] >= 0 and end[2] >= 0 else -1.0,
    )


def open_stubs(address: str, channels: int) -> tuple[list[grpc.aio.Channel], list[pb_grpc.RenderServiceStub]]:
    """`channels` channels to one address, each its own HTTP/2 connection, and a stub on each."""
    opened = [grpc.aio.insecure_channel(address, options=DRIVER_CHANNEL_OPTIONS) for _ in range(channels)]
    return opened, [pb_grpc.RenderServiceStub(channel) for channel in opened]


class Load:
    """A target's channels and stubs, kept open across cells so every cell finds them warm."""

    def __init__(self, target: Target, channels: int, metadata: tuple[tuple[str, str], ...]) -> None:
        self.target = target
        self.metadata = metadata
        self.channels, self.stubs = open_stubs(target.address, channels)

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self.channels))

    async def run(
        self, request: pb.SubmitRenderRequest, concurrency: int, ramp_s: float, seconds: float, round_: int
    ) -> Cell:
        """`concurrency` requests in flight for ramp_s + seconds; counts what completes after the ramp."""

        async def submit(stub: pb_grpc.RenderServiceStub) -> None:
            await stub.SubmitRender(request, metadata=self.metadata, timeout=RPC_TIMEOUT_S)

        window = await closed_loop(self.stubs, submit, concurrency, ramp_s, seconds, pid=self.target.pid)
        return Cell(
            target=self.target.name,
            concurrency=concurrency,
            round=round_,
            completed=len(window.latencies),
            seconds=seconds,
            per_second=len(window.latencies) / seconds,
            p50_ms=percentile(window.latencies, 50) * 1000,
            p99_ms=percentile(window.latencies, 99) * 1000,
            errors=window.all_errors,
            driver_cpu=window.driver_cpu,
            server_cpu=window.server_cpu,
        )


async def drive(
    targets: Sequence[Target],
    concurrencies: Sequence[int],
    rounds: int,
    seconds: float,
    ramp_s: float,
    warmup_s: float,
    channels: int,
    api_key: str,
) -> None:
    """Warms up every target, then runs the rounds, printing each cell as a JSON line."""
    metadata = auth_metadata(api_key)
    request = dry_run_request()
    loads = [Load(target, channels, metadata) for target in targets]
    try:
        for load in loads:
            await load.run(request, max(concurrencies), 0.0, warmup_s, -1)
        for round_ in range(rounds):
            # Rotating the order each round: a neighbour's burst or the queue's growth does not
            # always land on the same target.
            shift = round_ % len(loads)
            order = loads[shift:] + loads[:shift]
            for concurrency in concurrencies:
                for load in order:
                    cell = await load.run(request, concurrency, ramp_s, seconds, round_)
                    print(json.dumps(asdict(cell)), flush=True)
    finally:
        for load in loads:
            await load.close()


def parse_target(text: str, pids: dict[str, int]) -> Target:
    name, sep, address = text.partition("=")
    if not sep or not name or not address:
        raise argparse.ArgumentTypeError(f"--target {text!r}: use NAME=HOST:PORT")
    return Target(name, address, pids.get(name, 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", action="append", required=True, help="NAME=HOST:PORT (repeatable)")
    parser.add_argument("--pid", action="append", default=[], help="NAME=PID of a target's process, for its CPU use")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per cell")
    parser.add_argument("--ramp", type=float, default=0.5, help="unmeasured seconds at the start of each cell")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per target before round 1")
    parser.add_argument("--channels", type=int, default=4)
    args = parser.parse_args()
    pids = {}
    for text in args.pid:
        name, _, pid = text.partition("=")
        pids[name] = int(pid)
    targets = [parse_target(text, pids) for text in args.target]
    try:
        asyncio.run(
            drive(
                targets,
                args.concurrency,
                args.rounds,
                args.seconds,
                args.ramp,
                args.warmup,
                args.channels,
                os.environ.get(API_KEY_ENV, ""),
            )
        )
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
