"""gRPC's runtime settings for the stack's processes (renderkit.serving.GRPC_ENVIRONMENT): the
installed gRPC knows every experiment they name, so the switch is real and an upgrade that drops it
fails here; an operator's own value wins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from renderkit.serving import GRPC_ENVIRONMENT, PUBLIC_GRPC_ENVIRONMENT, grpc_environment

# A channel that tries to connect: gRPC reads its experiments and says which it does not know.
_TOUCH_GRPC = """
import grpc
channel = grpc.insecure_channel("127.0.0.1:1")
try:
    grpc.channel_ready_future(channel).result(timeout=0.2)
except grpc.FutureTimeoutError:
    pass
"""


def grpc_says(experiments: str) -> str:
    """What gRPC writes to stderr in a process started with GRPC_EXPERIMENTS=experiments."""
    env = {**os.environ, "GRPC_EXPERIMENTS": experiments}
    done = subprocess.run([sys.executable, "-c", _TOUCH_GRPC], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_the_installed_grpc_knows_every_experiment_the_stack_sets() -> None:
    assert "Unknown experiment" in grpc_says("-no_such_experiment")  # what an unknown one looks like
    said = grpc_says(GRPC_ENVIRONMENT["GRPC_EXPERIMENTS"])
    assert "Unknown experiment" not in said, f"gRPC no longer has the switch; measure again: {said}"


@pytest.mark.parametrize(
    ("environ", "added"),
    [({}, GRPC_ENVIRONMENT), ({"GRPC_EXPERIMENTS": ""}, {}), ({"GRPC_EXPERIMENTS": "-other"}, {})],
)
def test_an_operators_own_grpc_setting_wins(environ: dict[str, str], added: dict[str, str]) -> None:
    assert grpc_environment(environ) == added


def test_a_process_serving_a_public_port_keeps_grpcs_own_poller() -> None:
    assert grpc_environment({}, public=True) == PUBLIC_GRPC_ENVIRONMENT == {"GRPC_EXPERIMENTS": ""}
    assert grpc_environment({"GRPC_EXPERIMENTS": "-other"}, public=True) == {}
