"""Bad settings are refused at start, each with one line naming its variable (the operator review)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.launcher import _started, leftovers, lock_data_dir, main
from gateway.settings import GatewaySettings
from renderkit.settings import SettingsError, env_float, env_listen
from services.generation.server import GenerationSettings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf"])
def test_a_number_that_is_not_finite_is_refused(raw: str) -> None:
    with pytest.raises(SettingsError, match=r"^X must be a finite number"):
        env_float("X", 1.0, minimum=0.0, env={"X": raw})


def test_a_duration_redis_cannot_hold_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """JOB_RETENTION_SECONDS=1e30 started a gateway whose every job then failed in the ledger."""
    monkeypatch.setenv("JOB_RETENTION_SECONDS", "1e30")
    with pytest.raises(SettingsError, match="JOB_RETENTION_SECONDS must be at most"):
        GatewaySettings.from_env()


@pytest.mark.parametrize(
    "value",
    ["nonsense", "127.0.0.1:99999", "127.0.0.1:port", "0.0.0.0:\u00b2", "0.0.0.0:\uff15\uff10\uff10\uff15\uff11"],
)
def test_an_address_to_listen_on_needs_a_port_that_exists(value: str) -> None:
    """127.0.0.1:99999 listened on port 34463 (the port wrapped around)."""
    with pytest.raises(SettingsError, match="GATEWAY_LISTEN must be host:port"):
        env_listen("GATEWAY_LISTEN", "", env={"GATEWAY_LISTEN": value})
    assert env_listen("X", "", env={"X": "[::]:50051"}) == "[::]:50051"


def test_a_misspelt_provider_is_refused_rather_than_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENERATION_PROVIDERS", "opneai,triton")
    with pytest.raises(SettingsError, match=r"unknown provider.*opneai"):
        GenerationSettings.from_env()


def test_a_process_with_a_bad_setting_says_so_in_one_line_and_exits_2() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DEPTH_LISTEN": "127.0.0.1:99999"}
    done = subprocess.run(
        [sys.executable, "-m", "services.depth"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "depth: configuration: DEPTH_LISTEN must be host:port with a port of 0-65535, got '127.0.0.1:99999'"
    ]


def test_one_data_directory_takes_one_launcher(tmp_path: Path) -> None:
    """Two stacks on one DATA_DIR ran two Redis servers appending to one file."""
    held = lock_data_dir(tmp_path)
    try:
        code = f"import pathlib, devstack.launcher as l; l.lock_data_dir(pathlib.Path({str(tmp_path)!r}))"
        child = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert child.returncode != 0 and f"another render-stack (pid {os.getpid()})" in child.stderr
    finally:
        held.close()  # type: ignore[attr-defined]


def test_processes_a_killed_launcher_left_are_found_by_id_and_start_time(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pids = tmp_path / "stack.pids"
        pids.write_text(f"redis {sleeper.pid} {_started(sleeper.pid)}\ngateway {sleeper.pid} 1\n")
        assert leftovers(pids) == [f"redis {sleeper.pid}"]  # the second's id was since reused
    finally:
        sleeper.kill()
        sleeper.wait()
    assert leftovers(pids) == []


@pytest.mark.parametrize(("name", "value"), [("LOG_FORMAT", "xml"), ("LOG_LEVEL", "LOUD")])
def test_a_log_setting_that_means_nothing_is_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """LOG_FORMAT=xml gave JSON silently; LOG_LEVEL=LOUD a traceback."""
    from renderkit.telemetry import configure_logging

    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=f"^{name} must be"):
        configure_logging("test")


def test_render_stack_help_says_how_it_is_configured_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`render-stack --help` took no options and started the whole stack (Triton included)."""
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "stack"))
    with pytest.raises(SystemExit) as ended:
        main(["--help"])
    assert ended.value.code == 0
    assert "DATA_DIR" in capsys.readouterr().out
    assert not (tmp_path / "stack").exists()  # nothing started: no data directory, no lock


def test_a_stage_address_list_under_internal_tls_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """An `ipv4:` list of replicas never connected under mutual TLS (gRPC checks each certificate
    against the target's one name, which a list has not): jobs waited out their whole budget."""
    monkeypatch.setenv("PROJECTION_ADDR", "ipv4:127.0.0.1:50063,127.0.0.1:50163")
    assert GatewaySettings.from_env().projection_addr.startswith("ipv4:")  # plaintext: a list is fine
    monkeypatch.setenv("INTERNAL_TLS_DIR", "/etc/render/internal-tls")
    with pytest.raises(SettingsError, match=r"^PROJECTION_ADDR lists several addresses"):
        GatewaySettings.from_env()
    monkeypatch.setenv("PROJECTION_ADDR", "ipv4:127.0.0.1:50063")  # one address: its own name
    assert GatewaySettings.from_env().projection_addr == "ipv4:127.0.0.1:50063"
