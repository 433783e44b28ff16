"""The ghz configurations in deploy/load (ghz cannot run here), checked against the protos, and the
load driver's pieces that need no server.

Every configuration is read as ghz reads it: only ghz's own keys, Go durations, a `call` that names
a method of render.v1.RenderService as compiled from protos/ by protoc (not the generated code, which
could lag), and `data` that parses strictly into that method's request type once its templates are
filled. The driver (benchmarks.load_driver) reads the same files, so its requests are checked too.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc_tools  # type: ignore[import-untyped]
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_tools import protoc  # type: ignore[import-untyped]

from benchmarks import load_driver
from benchmarks.load import SWAP_SIZE
from benchmarks.load_driver import CONFIG_DIR, SCENARIOS, load_config, operation_of, render, variables
from benchmarks.submit_load import OperationFailed, closed_loop, dry_run_request
from devstack.launcher import ROOT
from tests.unit.test_configuration import documented, is_documented

CONFIGS = sorted(CONFIG_DIR.glob("*.json"))
# The keys of ghz's configuration (runner.Config's JSON tags, ghz 0.12x): a misspelt one would be
# ignored by ghz without a word.
GHZ_KEYS = {
    "proto", "protoset", "call", "cacert", "cert", "key", "count-errors", "skipTLS", "skipFirst", "cname",
    "authority", "insecure", "total", "async", "concurrency", "concurrency-schedule", "concurrency-start",
    "concurrency-end", "concurrency-step", "concurrency-step-duration", "concurrency-max-duration",
    "connections", "rps", "duration", "duration-stop", "max-duration", "timeout", "data", "data-file",
    "binary-file", "metadata", "metadata-file", "stream-interval", "stream-call-duration", "stream-call-count",
    "stream-dynamic-messages", "output", "format", "connect-timeout", "keepalive", "cpus", "import-paths", "name",
    "tags", "reflect-metadata", "debug", "host", "enable-compression", "load-schedule", "load-start", "load-end",
    "load-step", "load-step-duration", "load-max-duration", "lb-strategy", "max-recv-message-size",
    "max-send-message-size", "disable-template-functions", "disable-template-data",
}  # fmt: skip
DURATION_KEYS = {"duration", "max-duration", "timeout", "connect-timeout", "stream-call-duration", "keepalive"}
GO_DURATION = re.compile(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+")
PLACEHOLDERS = {name: f"placeholder-{name.lower()}" for name in ("RENDER_API_KEY", "LOAD_JOB_ID")} | {
    "LOAD_PHOTO_ASSET": "a" * 32,
    "LOAD_SWATCH_ASSET": "b" * 32,
    "LOAD_LIMITED_API_KEY": "placeholder-limited",
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pool.DescriptorPool:
    """render.v1 compiled from protos/ by protoc, as ghz's --proto and --import-paths read it."""
    out = tmp_path_factory.mktemp("protos") / "render_v1.binpb"
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    status = protoc.main(
        [
            "protoc",
            f"-I{ROOT / 'protos'}",
            f"-I{well_known}",
            "--include_imports",
            f"--descriptor_set_out={out}",
            "render/v1/render_service.proto",
        ]
    )
    assert status == 0
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file:
        pool.Add(file)
    return pool


def configs() -> Iterator[Any]:
    for path in CONFIGS:
        yield pytest.param(path, id=path.name)


def test_there_is_a_configuration_per_ghz_scenario() -> None:
    assert {p.name for p in CONFIGS} == {
        "submit-dry-run.json",
        "submit-swap.json",
        "submit-and-wait.json",
        "get.json",
        "watch.json",
    }
    readme = (CONFIG_DIR / "README.md").read_text()
    for path in CONFIGS:
        assert path.name in readme, f"deploy/load/README.md does not show how to run {path.name}"
    for scenario in SCENARIOS.values():
        assert (CONFIG_DIR / scenario.config).is_file(), scenario


@pytest.mark.parametrize("path", configs())
def test_a_configuration_is_what_ghz_reads(path: Path, compiled: descriptor_pool.DescriptorPool) -> None:
    config = json.loads(path.read_text())
    assert not set(config) - GHZ_KEYS, f"keys ghz does not know: {set(config) - GHZ_KEYS}"
    for key in DURATION_KEYS & set(config):
        assert GO_DURATION.fullmatch(config[key]), f"{key}: {config[key]!r} is not a Go duration"
        assert load_driver.go_duration_s(config[key]) > 0
    # The proto file as ghz finds it: relative to an import path, run from the repository root.
    assert any((ROOT / d / config["proto"]).is_file() for d in config["import-paths"])
    service_name, _, method_name = config["call"].rpartition(".")
    method = compiled.FindServiceByName(service_name).methods_by_name[method_name]
    request = message_factory.GetMessageClass(method.input_type)()
    json_format.ParseDict(render(config["data"], PLACEHOLDERS), request)  # strict: unknown fields fail
    assert request.ByteSize() > 0
    # The credential from the environment, never written into the file.
    assert config["metadata"] == {"authorization": "Bearer {{env `RENDER_API_KEY`}}"}
    assert not config["insecure"], "TLS by default; --insecure on the command line for a plaintext port"
    assert 1 <= config["connections"] <= config["concurrency"] <= config["total"]
    assert config["skipFirst"] < config["total"] and config["rps"] >= 0
    assert "max-duration" in config, "bounded in time as well as in count"
    # ghz's default (close) reports every call in flight at max-duration as an error (Unavailable or
    # Canceled) that the gateway never sent; the driver does not count them either.
    assert config["duration-stop"] == "ignore"
    # A watch ends by itself at the job's end; the cap stops one that would not end within the run.
    assert ("stream-call-duration" in config) == method.server_streaming
    assert variables(config) <= set(PLACEHOLDERS)


def test_every_variable_of_the_configurations_is_documented() -> None:
    used = set().union(*(variables(load_config(p)) for p in CONFIGS)) | {load_driver.LIMITED_KEY_ENV}
    table = documented()
    assert {name for name in used if not is_documented(name, table)} == set()
    readme = (CONFIG_DIR / "README.md").read_text()
    assert {name for name in used if name not in readme} == set()


def test_the_driver_sends_what_the_configurations_say() -> None:
    # The dry-run submit is make bench's request, byte for byte.
    request = load_driver.request_of(load_config("submit-dry-run.json"), PLACEHOLDERS)
    assert request == dry_run_request()
    waited = load_driver.request_of(load_config("submit-and-wait.json"), PLACEHOLDERS)
    assert waited.request == dry_run_request() and waited.outcome_only  # type: ignore[attr-defined]
    swap = load_driver.request_of(load_config("submit-swap.json"), PLACEHOLDERS).material_swap  # type: ignore[attr-defined]
    assert (swap.photo.asset_id, swap.swatch.asset_id) == (PLACEHOLDERS["LOAD_PHOTO_ASSET"], "b" * 32)
    assert all(0 <= p.x <= SWAP_SIZE[0] and 0 <= p.y <= SWAP_SIZE[1] for p in swap.hints.quad)
    assert load_driver.metadata_of(load_config("get.json"), PLACEHOLDERS) == (
        ("authorization", "Bearer placeholder-render_api_key"),
    )
    for scenario in SCENARIOS.values():
        operation, _ = operation_of(scenario, PLACEHOLDERS)
        assert callable(operation)
    without_limited = {k: v for k, v in PLACEHOLDERS.items() if k != "LOAD_LIMITED_API_KEY"}
    with pytest.raises(KeyError):
        operation_of(SCENARIOS["limited"], without_limited)


def test_templates_other_than_env_are_refused() -> None:
    assert render({"a": ["{{env `X`}}-{{ env `Y` }}"]}, {"X": "1", "Y": "2"}) == {"a": ["1-2"]}
    with pytest.raises(KeyError):
        render("{{env `MISSING`}}", {})
    with pytest.raises(ValueError):
        render("{{newUUID}}", {})
    with pytest.raises(ValueError):
        render('{{env "X"}}', {"X": "1"})  # quotes would reach ghz's template escaped, and fail there
    with pytest.raises(KeyError):
        load_driver.method_of("render.v1.RenderService.NoSuchMethod")
    assert load_driver.method_of("render.v1.RenderService/GetJob").name == "GetJob"
    assert load_driver.go_duration_s("1m30s") == 90.0 and load_driver.go_duration_s("250ms") == 0.25
    with pytest.raises(ValueError):
        load_driver.go_duration_s("30")


def test_the_closed_loop_counts_calls_extras_and_failures() -> None:
    calls = 0

    async def operation(_: Any) -> dict[str, float] | None:
        nonlocal calls
        calls += 1
        this = calls
        await asyncio.sleep(0)
        if this % 4 == 0:
            raise OperationFailed("NO_END_EVENT")
        return {"first_event": 0.001}

    window = asyncio.run(closed_loop([object()], operation, 3, 0.0, 30.0, max_calls=40))  # type: ignore[list-item]
    assert window.started == 40 and calls == 40
    assert len(window.latencies) == 30 and window.errors == window.all_errors == {"NO_END_EVENT": 10}
    assert window.extras == {"first_event": [0.001] * 30}
    assert window.server_cpu == -1.0 and window.seconds < 30.0


def test_make_load_starts_the_stack_with_the_dispatcher_slots_it_reports(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The report says DISPATCHER_CONCURRENCY=2: the stack must run with 2, not the gateway's default."""
    from benchmarks import load
    from gateway.settings import GatewaySettings

    started: dict[str, Any] = {}

    class Stop(Exception):
        pass

    class FakeStack:
        def __init__(self, **kwargs: Any) -> None:
            started.update(kwargs)

        def __enter__(self) -> None:
            raise Stop

        def __exit__(self, *_: object) -> None:
            pass

    monkeypatch.setattr(load, "Stack", FakeStack)
    monkeypatch.setattr("sys.argv", ["load", "--seconds", "1"])
    monkeypatch.delenv("DISPATCHER_CONCURRENCY", raising=False)
    with pytest.raises(Stop):
        load.main()
    for name, value in started["env"].items():
        monkeypatch.setenv(name, value)
    assert GatewaySettings.from_env().dispatcher_concurrency == 2


def test_scenarios_run_in_their_order_whatever_order_they_are_named_in() -> None:
    # The plain submits queue jobs for long after: a waited submit run after them measures that backlog.
    assert load_driver.in_running_order(["submit-dry-run", "submit-wait"]) == ["submit-wait", "submit-dry-run"]
    assert load_driver.in_running_order(None) == list(SCENARIOS)


def test_a_row_without_a_successful_call_shows_no_latency() -> None:
    from benchmarks.load import format_table
    from benchmarks.load_driver import Row

    empty = Row("submit-wait", "SubmitAndWatch", 16, 0, 0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    line = format_table([empty]).splitlines()[1]
    assert line.split()[5:8] == ["-", "-", "-"]  # p50, p95, p99: not 0.0 ms
