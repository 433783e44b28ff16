"""What every process of the stack shares besides the serving edge: channel options, gRPC's
runtime environment, BLAS's threads and the open files' limit (logging, traces and metrics are
renderkit.telemetry's)."""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Mapping

import threadpoolctl

# gRPC reads its experiments from the environment when it is first imported, so these are set for a
# process, not by it: by deploy/k8s's render-config and by the launcher of `make run` for every
# process it starts (the image sets none: its command is the gateway, below). gRPC 1.80 made Python
# poll through its EventEngine (the experiment below, on by default); on this project's processes
# that costs a thread hop more per call: a unary call over loopback took 0.61 ms instead of 0.46
# (grpc.aio on both ends, medians of 1,800) and a dry-run job's submit to end 0.1-0.4 ms more
# (docs/benchmarks.md, "gRPC's poller"). gRPC plans to remove the switch once the EventEngine poller
# has had two releases without reported problems: tests/unit/test_grpc_environment.py fails when the
# installed gRPC no longer knows it, so an upgrade measures again instead of setting nothing.
GRPC_ENVIRONMENT: dict[str, str] = {"GRPC_EXPERIMENTS": "-event_engine_poller_for_python"}
# A process that serves a port callers reach (the gateway) keeps gRPC's own poller. With the switch,
# the completion queue's one thread reads every connection: one connection sending a header block
# that never ends (an endless run of CONTINUATION frames, no credential needed) kept that thread
# parsing, and every other caller's call ran past its 10 s deadline. gRPC's EventEngine reads each
# connection on threads of its own: callers were answered in ~2 ms throughout (docs/architecture.md,
# "A header block that never ends").
PUBLIC_GRPC_ENVIRONMENT: dict[str, str] = {"GRPC_EXPERIMENTS": ""}


def grpc_environment(environ: Mapping[str, str], public: bool = False) -> dict[str, str]:
    """The gRPC settings a process of the stack starts with (PUBLIC_GRPC_ENVIRONMENT for one serving
    a public port, else GRPC_ENVIRONMENT), less what environ already sets (an operator's own choice
    wins)."""
    chosen = PUBLIC_GRPC_ENVIRONMENT if public else GRPC_ENVIRONMENT
    return {name: value for name, value in chosen.items() if name not in environ}


CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
]


def single_threaded_blas() -> None:
    """BLAS (numpy's OpenBLAS) on the calling thread only, for the rest of the process: every
    process of the stack sets it before its work.

    The stages and the gateway (a quad's plane) use BLAS and LAPACK only for tiny matrices
    (homographies, 3 x 3 inverses), which a second thread cannot speed up. Yet each such call
    wakes OpenBLAS's worker, which then spins on a core until its timeout: measured here,
    np.linalg.inv of a 3 x 3 in a loop kept a second core fully busy, and the few calls a
    projection makes cost a 4K swap ~15 % of its CPU, taken from the strips' pool
    (docs/benchmarks.md). In the gateway, the one quad's plane of a 4K swap kept a core spinning
    for ~80 ms, and the projection stage beside it took a quarter longer. The stages parallelise
    their own work instead."""
    threadpoolctl.threadpool_limits(1, user_api="blas")


# Files a process keeps open besides its public connections: Redis, the stages' channels, logs,
# gRPC's own pipes and epoll, storage's sockets.
_FILES_BESIDE_CONNECTIONS = 1024


def raise_open_files_limit() -> int:
    """Raises this process's limit on open files to what the system allows it (the hard limit,
    which container runtimes set high and leave the soft one at 1,024 or so), as Go's runtime
    does: every connection a public port holds is a file. Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    return soft


def connection_limit(wanted: int, ports: int, open_files: int) -> int:
    """At most `wanted` connections a port, fewer when `ports` ports holding that many would leave
    the process no files for its own work (then a flood of connections would fail its Redis calls
    and log an error per refused accept): 1,024 files, or a quarter of a smaller limit, are kept."""
    reserve = min(_FILES_BESIDE_CONNECTIONS, open_files // 4)
    return max(1, min(wanted, (open_files - reserve) // ports))
