"""The render-client distribution installs on its own: into an empty virtualenv it brings nothing but
grpcio, protobuf and what they need themselves, and its renderctl talks to the stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from devstack.launcher import Stack

ROOT = Path(__file__).resolve().parents[2]
# Debian's interpreter, as the Makefile prefers (any Python 3.11+ would do for the client).
PYTHON = "/usr/bin/python3.11" if Path("/usr/bin/python3.11").exists() else sys.executable


def installed(venv: Path) -> set[str]:
    """The distributions in a virtualenv, by normalised name (pip's own left out)."""
    listing = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {entry["name"].lower().replace("_", "-") for entry in json.loads(listing.stdout)}
    return names - {"pip", "setuptools", "wheel"}


def fresh_venv(path: Path) -> Path:
    subprocess.run([PYTHON, "-m", "venv", str(path)], check=True, timeout=120)
    return path


def pip_install(venv: Path, *requirements: str) -> None:
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
        check=True,
        timeout=600,
    )


def test_the_client_installs_alone_and_its_renderctl_talks_to_the_stack(stack: Stack, tmp_path: Path) -> None:
    # What grpcio and protobuf bring by themselves, at the versions the client allows.
    baseline = fresh_venv(tmp_path / "baseline")
    pip_install(baseline, "grpcio>=1.81", "protobuf>=6.31,<7")
    client = fresh_venv(tmp_path / "client")
    pip_install(client, str(ROOT / "clients" / "python"))
    assert installed(client) == installed(baseline) | {"render-client"}
    # The stubs, the client and the CLI import from the installed copy, not the checkout.
    where = subprocess.run(
        [
            str(client / "bin" / "python"),
            "-c",
            "import render.v1.render_service_pb2 as m, render_client; print(m.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert str(client) in where.stdout and str(ROOT) not in where.stdout
    listing = subprocess.run(
        [str(client / "bin" / "renderctl"), "--address", stack.gateway_address, "--api-key", stack.api_key, "list"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    refused = subprocess.run(
        [str(client / "bin" / "renderctl"), "--address", stack.gateway_address, "--api-key", "rk_wrong", "list"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert refused.returncode == 2 and "UNAUTHENTICATED" in refused.stderr
