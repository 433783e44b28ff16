"""What every process of the stack shares besides the serving edge: channel options and gRPC's
runtime environment (logging, traces and metrics are renderkit.telemetry's)."""

from __future__ import annotations

from collections.abc import Mapping

# gRPC reads its experiments from the environment when it is first imported, so these are set for a
# process, not by it: by the image (Dockerfile ENV) and by the launcher of `make run` for every
# process it starts. gRPC 1.80 made Python poll through its EventEngine (the experiment below,
# on by default); on this project's processes that costs a thread hop more per call: a unary call
# over loopback took 0.61 ms instead of 0.46 (grpc.aio on both ends, medians of 1,800), a dry-run
# job's submit to end 0.1-0.4 ms more, and the gateway ~23 % fewer submits per second at 16 in flight
# (docs/benchmarks.md, "gRPC's poller"). gRPC plans to remove the switch once the EventEngine poller
# has had two releases without reported problems: tests/unit/test_grpc_environment.py fails when the
# installed gRPC no longer knows it, so an upgrade measures again instead of setting nothing.
GRPC_ENVIRONMENT: dict[str, str] = {"GRPC_EXPERIMENTS": "-event_engine_poller_for_python"}


def grpc_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """GRPC_ENVIRONMENT less what environ already sets (an operator's own choice wins)."""
    return {name: value for name, value in GRPC_ENVIRONMENT.items() if name not in environ}


CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
]
