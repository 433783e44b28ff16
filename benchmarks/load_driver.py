"""The load driver behind `make load`: the scenarios of the ghz configurations in deploy/load, run
with grpc.aio against one gateway, in a process of its own (benchmarks.load starts it), so its
event loop is shared with nothing it measures.

Each scenario reads its ghz configuration the way ghz does: `call` names the method, `data` is the
request in protobuf JSON, `metadata` the headers, `concurrency` and `connections` the load's shape
and `total` the most calls; every `{{env `NAME`}}` in them is taken from the environment, as ghz's
template does (RENDER_API_KEY, LOAD_JOB_ID, LOAD_PHOTO_ASSET, LOAD_SWATCH_ASSET). The calls run
closed-loop (benchmarks.submit_load.closed_loop: a call starts as soon as the one before it on its
worker returns) for a ramp and then a measured window, or until the count is reached; one JSON
line per scenario goes to stdout.

    python -m benchmarks.load_driver --target 127.0.0.1:50051 --scenario get --seconds 5

`submit-wait` reads SubmitAndWatch's stream (submit-and-wait.json: `outcome_only`) to its end,
timed to its first and its terminal event. Two scenarios have no ghz configuration of their own:
`submit-watch` (the dry-run submit, then WatchJob of the new job until its end: the latency a
client sees from submit to result) and `limited` (the dry-run submit with the key in
$LOAD_LIMITED_API_KEY, a tenant left at the default limits, where the rate limiter refuses most
calls with RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from benchmarks.submit_load import (
    RPC_TIMEOUT_S,
    Operation,
    OperationFailed,
    Window,
    closed_loop,
    open_stubs,
    percentile,
)
from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from render_client.client import TERMINAL_STATES

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "deploy" / "load"
SERVICE = pb.DESCRIPTOR.services_by_name["RenderService"]
# The only template the configurations use: ghz's sprig `env`, its argument a Go raw string (a
# quoted one would need escaping inside the JSON, which ghz's template parser does not undo).
ENV_TEMPLATE = re.compile(r"\{\{\s*env\s+`([A-Za-z_][A-Za-z0-9_]*)`\s*\}\}")
ANY_TEMPLATE = re.compile(r"\{\{.*?\}\}")
API_KEY_VARIABLE = "RENDER_API_KEY"
LIMITED_KEY_ENV = "LOAD_LIMITED_API_KEY"


@dataclass(frozen=True)
class Scenario:
    """One row of the table: a ghz configuration, how its calls are made, and with whose key."""

    name: str
    title: str
    config: str  # the file in deploy/load
    # "unary"; "watch" (the configured WatchJob); "submit-watch" (the configured submit, then a
    # WatchJob of its job); or "stream" (any server stream, read to its end).
    kind: str = "unary"
    key_env: str = ""  # where the key for RENDER_API_KEY comes from ("": RENDER_API_KEY itself)
    expected_errors: frozenset[str] = frozenset()


# In the order they run: the two plain submits last, since the jobs they queue keep the dispatcher
# busy long after (a dry-run job takes ~7 ms of it, its submit ~0.5 ms of the gateway).
SCENARIOS = {
    s.name: s
    for s in (
        Scenario("get", "GetJob of an ended job", "get.json"),
        Scenario("watch", "WatchJob of an ended job (replay)", "watch.json", kind="watch"),
        Scenario("submit-watch", "SubmitRender + WatchJob to the end", "submit-dry-run.json", kind="submit-watch"),
        Scenario("submit-wait", "SubmitAndWatch for the outcome alone", "submit-and-wait.json", kind="stream"),
        Scenario(
            "limited",
            "SubmitRender at default tenant limits",
            "submit-dry-run.json",
            key_env=LIMITED_KEY_ENV,
            expected_errors=frozenset({"RESOURCE_EXHAUSTED"}),
        ),
        Scenario("submit-dry-run", "SubmitRender: dry-run room render", "submit-dry-run.json"),
        Scenario("submit-swap", "SubmitRender: swap 640x480, asset ids", "submit-swap.json"),
    )
}


def in_running_order(names: Sequence[str] | None) -> list[str]:
    """The scenarios chosen (all for none), in SCENARIOS' order whatever order they were named in:
    a submit waited for after the plain submits would wait behind the jobs they queued."""
    unknown = set(names or ()) - set(SCENARIOS)
    if unknown:
        raise KeyError(f"no scenario {sorted(unknown)}")
    return [name for name in SCENARIOS if not names or name in names]


def load_config(name: str | Path) -> dict[str, Any]:
    """A ghz JSON configuration, by its file name in deploy/load or its path."""
    path = Path(name)
    if not path.is_absolute() and not path.exists():
        path = CONFIG_DIR / path
    config = json.loads(path.read_text())
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a ghz configuration is a JSON object")
    return config


def variables(value: Any) -> set[str]:
    """The environment variables the templates in a configuration's strings name."""
    if isinstance(value, str):
        return set(ENV_TEMPLATE.findall(value))
    if isinstance(value, dict):
        return set().union(*(variables(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(variables(v) for v in value)) if value else set()
    return set()


def render(value: Any, env: Mapping[str, str]) -> Any:
    """The value with every `{{env `NAME`}}` replaced from env, as ghz fills it in; any other
    template action is refused (this driver evaluates only that one), and so is a missing variable."""
    if isinstance(value, str):

        def fill(match: re.Match[str]) -> str:
            if match.group(1) not in env:
                raise KeyError(f"the configuration needs ${match.group(1)}")
            return env[match.group(1)]

        filled = ENV_TEMPLATE.sub(fill, value)
        if ANY_TEMPLATE.search(filled):
            raise ValueError(f"only {{{{env `NAME`}}}} templates are supported: {value!r}")
        return filled
    if isinstance(value, dict):
        return {k: render(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, env) for v in value]
    return value


def method_of(call: str) -> Any:
    """The RenderService method a ghz `call` names ("render.v1.RenderService.GetJob" or
    "render.v1.RenderService/GetJob"); KeyError for any other."""
    service, _, method = call.replace("/", ".").rpartition(".")
    if service != SERVICE.full_name or method not in SERVICE.methods_by_name:
        raise KeyError(f"{call!r} is not a method of {SERVICE.full_name}")
    return SERVICE.methods_by_name[method]


def message_class(descriptor: Any) -> type[Message]:
    """The generated class of a message descriptor of render.v1."""
    cls = getattr(pb, descriptor.name, None)
    if cls is None or cls.DESCRIPTOR is not descriptor:
        raise KeyError(f"no generated class for {descriptor.full_name}")
    return cls  # type: ignore[no-any-return]


def request_of(config: Mapping[str, Any], env: Mapping[str, str]) -> Message:
    """The configuration's `data` as its method's request message (strict: an unknown field fails)."""
    method = method_of(str(config["call"]))
    request = message_class(method.input_type)()
    json_format.ParseDict(render(config.get("data", {}), env), request)
    return request


GO_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
GO_UNITS_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration_s(text: str) -> float:
    """A Go duration ("30s", "1m30s", "500ms"), as ghz's configurations write them, in seconds."""
    parts = GO_DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a Go duration")
    return sum(float(n) * GO_UNITS_S[u] for n, u in parts)


def metadata_of(config: Mapping[str, Any], env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The configuration's `metadata` as gRPC metadata (keys lower-cased, as HTTP/2 sends them)."""
    return tuple((str(k).lower(), str(v)) for k, v in render(config.get("metadata", {}), env).items())


@dataclass
class Row:
    """One scenario's figures: what the table prints."""

    scenario: str
    title: str
    concurrency: int
    requests: int  # calls that ended in the measured window, failed ones included
    ok: int  # of which succeeded
    seconds: float  # the window
    per_second: float  # calls per second, failed ones included
    ok_per_second: float
    p50_ms: float  # latencies of the calls that succeeded
    p95_ms: float
    p99_ms: float
    errors: dict[str, int] = field(default_factory=dict)  # failed calls in the window, by code
    outside_errors: dict[str, int] = field(default_factory=dict)  # failed during the ramp or the tail
    unexpected: dict[str, int] = field(default_factory=dict)  # codes the scenario should never see
    first_event_ms: list[float] = field(default_factory=list)  # p50, p95, p99 (watches only)
    end_event_ms: list[float] = field(default_factory=list)
    driver_cpu: float = 0.0
    server_cpu: float = -1.0


def quantiles_ms(values: Sequence[float]) -> list[float]:
    return [percentile(values, q) * 1000 for q in (50, 95, 99)]


def row_of(scenario: Scenario, concurrency: int, window: Window) -> Row:
    failed = sum(window.errors.values())
    ok = len(window.latencies)
    seconds = window.seconds or 1e-9
    outside = {code: n - window.errors.get(code, 0) for code, n in window.all_errors.items()}
    p50, p95, p99 = quantiles_ms(window.latencies)
    return Row(
        scenario=scenario.name,
        title=scenario.title,
        concurrency=concurrency,
        requests=ok + failed,
        ok=ok,
        seconds=window.seconds,
        per_second=(ok + failed) / seconds,
        ok_per_second=ok / seconds,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        errors=dict(sorted(window.errors.items())),
        outside_errors={code: n for code, n in sorted(outside.items()) if n},
        unexpected={code: n for code, n in sorted(window.all_errors.items()) if code not in scenario.expected_errors},
        first_event_ms=quantiles_ms(window.extras["first_event"]) if "first_event" in window.extras else [],
        end_event_ms=quantiles_ms(window.extras["end_event"]) if "end_event" in window.extras else [],
        driver_cpu=window.driver_cpu,
        server_cpu=window.server_cpu,
    )


async def follow(
    stub: pb_grpc.RenderServiceStub,
    job_id: str,
    metadata: tuple[tuple[str, str], ...],
    start: float,
    timeout_s: float = RPC_TIMEOUT_S,
) -> dict[str, float]:
    """WatchJob of a job until the stream ends: seconds from `start` to its first event and to its
    terminal one. A stream that ends before a terminal event fails as NO_END_EVENT."""
    call = stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=metadata, timeout=timeout_s)
    return await events_of(call, start)


async def events_of(call: Any, start: float) -> dict[str, float]:
    """A stream of job events (WatchJob's, SubmitAndWatch's) read to its end: seconds from `start`
    to its first event and to its terminal one. A stream that ends before a terminal event fails
    as NO_END_EVENT."""
    first = end = -1.0
    async for response in call:
        if not response.HasField("event"):
            continue  # a keep-alive
        if first < 0:
            first = time.perf_counter() - start
        if response.event.state in TERMINAL_STATES:
            end = time.perf_counter() - start
    if end < 0:
        raise OperationFailed("NO_END_EVENT")
    return {"first_event": first, "end_event": end}


def operation_of(scenario: Scenario, env: Mapping[str, str]) -> tuple[Operation, dict[str, Any]]:
    """A scenario's call, and its configuration, with the environment's values filled in."""
    if scenario.key_env:
        if not env.get(scenario.key_env):
            raise KeyError(f"the {scenario.name} scenario needs ${scenario.key_env}")
        env = {**env, API_KEY_VARIABLE: env[scenario.key_env]}
    config = load_config(scenario.config)
    request = request_of(config, env)
    metadata = metadata_of(config, env)
    method = method_of(str(config["call"]))
    # Each call's deadline is the configuration's `timeout` (ghz's default 20 s when it has none).
    timeout_s = go_duration_s(str(config.get("timeout", "20s")))

    if scenario.kind == "watch":
        if method.name != "WatchJob":
            raise ValueError(f"{scenario.config} does not call WatchJob")
        job_id = request.job_id  # type: ignore[attr-defined]

        async def watch(stub: pb_grpc.RenderServiceStub) -> dict[str, float]:
            return await follow(stub, job_id, metadata, time.perf_counter(), timeout_s)

        return watch, config
    if scenario.kind == "submit-watch":
        if method.name != "SubmitRender":
            raise ValueError(f"{scenario.config} does not call SubmitRender")

        async def submit_and_watch(stub: pb_grpc.RenderServiceStub) -> dict[str, float]:
            start = time.perf_counter()
            reply = await stub.SubmitRender(request, metadata=metadata, timeout=timeout_s)
            watched = await follow(stub, reply.job.id, metadata, start, timeout_s)
            return {"submit": time.perf_counter() - start, **watched}

        return submit_and_watch, config
    if scenario.kind == "stream":
        if not method.server_streaming or method.client_streaming:
            raise ValueError(f"{scenario.config}: {method.name} is not a server stream")
        streamed = method.name

        async def stream(stub: pb_grpc.RenderServiceStub) -> dict[str, float]:
            start = time.perf_counter()
            return await events_of(getattr(stub, streamed)(request, metadata=metadata, timeout=timeout_s), start)

        return stream, config
    if method.server_streaming or method.client_streaming:
        raise ValueError(f"{scenario.config}: {method.name} streams; give the scenario kind 'watch' or 'stream'")
    name = method.name

    async def unary(stub: pb_grpc.RenderServiceStub) -> None:
        await getattr(stub, name)(request, metadata=metadata, timeout=timeout_s)

    return unary, config


async def drive(
    address: str,
    scenarios: Sequence[Scenario],
    seconds: float,
    ramp_s: float,
    concurrency: int,
    max_requests: int,
    pid: int,
    env: Mapping[str, str],
) -> None:
    """Runs the scenarios one after another, printing each one's Row as a JSON line."""
    for scenario in scenarios:
        operation, config = operation_of(scenario, env)
        in_flight = concurrency or int(config.get("concurrency", 16))
        channels, stubs = open_stubs(address, max(1, min(in_flight, int(config.get("connections", 1)))))
        count = min((n for n in (max_requests, int(config.get("total", 0))) if n > 0), default=0)
        try:
            window = await closed_loop(stubs, operation, in_flight, ramp_s, seconds, max_calls=count, pid=pid)
        finally:
            await asyncio.gather(*(channel.close() for channel in channels))
        print(json.dumps(asdict(row_of(scenario, in_flight, window))), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="the gateway, HOST:PORT (plaintext)")
    parser.add_argument("--pid", type=int, default=0, help="the gateway's pid, for its CPU use")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="repeatable; default: all")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per scenario")
    parser.add_argument("--ramp", type=float, default=1.0, help="unmeasured seconds at the start of each")
    parser.add_argument("--concurrency", type=int, default=0, help="calls in flight (0: each configuration's)")
    parser.add_argument(
        "--max-requests", type=int, default=0, help="most calls per scenario (0: the configuration's total)"
    )
    args = parser.parse_args()
    scenarios = [SCENARIOS[name] for name in in_running_order(args.scenario)]
    try:
        asyncio.run(
            drive(
                args.target,
                scenarios,
                args.seconds,
                args.ramp,
                args.concurrency,
                args.max_requests,
                args.pid,
                dict(os.environ),
            )
        )
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
