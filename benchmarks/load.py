"""`make load`: the ghz scenarios of deploy/load run by a Python driver against the embedded stack,
printed as one table: requests/s, p50/p95/p99 latency and errors by status code per scenario.

The stack starts as `make run` does, without Triton (no scenario uses a model) and dispatching
(DISPATCHER_CONCURRENCY 2, so jobs run and watches end), with the gateways' queue limit out of
reach (QUEUE_LIMIT). Through the admin API, as an operator would, it then mints two tenants' keys:
`load`, its limits set out of the load's reach (high, not "none", so every check still runs) and
its credits plentiful, and `load-limited`, left at the server's default limits (10 submits per
second, a burst of 20), which the `limited` scenario hits. As `load` it uploads a 640x480 room
photo and a plank swatch (the swap's asset ids) and runs one dry-run job to its end (the job id of
`get` and `watch`). The driver (benchmarks.load_driver, a process of its own) then runs each
scenario closed-loop for a ramp and a measured window, bounded by time and by a count:

    python -m benchmarks.load [--seconds 15] [--concurrency N] [--max-requests 50000] [--scenario NAME ...]

The defaults come from LOAD_SECONDS, LOAD_CONCURRENCY and LOAD_MAX_REQUESTS (`make load
LOAD_SECONDS=5`). `--write-inputs DIR` writes the swap's photo and swatch, for running the ghz
configurations against a deployment (deploy/load/README.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.load_driver import API_KEY_VARIABLE, LIMITED_KEY_ENV, SCENARIOS, Row, in_running_order
from benchmarks.submit import (
    DISPATCHER_SLOTS,
    GENEROUS_TENANT_LIMITS,
    format_env,
    parse_env,
    stack_env,
    stack_hops,
)
from devstack import scenes
from devstack.launcher import Ports, Stack
from render.admin.v1 import admin_service_pb2 as admin_pb
from render.admin.v1 import admin_service_pb2_grpc as admin_grpc
from render.v1 import render_service_pb2 as pb
from render_client.client import RenderClient, open_channel, room_render, room_render_request
from renderkit import imaging

PY = sys.executable
SECONDS_ENV = "LOAD_SECONDS"
CONCURRENCY_ENV = "LOAD_CONCURRENCY"
MAX_REQUESTS_ENV = "LOAD_MAX_REQUESTS"
LOAD_TENANT = "load"
LIMITED_TENANT = "load-limited"
SWAP_SIZE = (640, 480)  # the photo the quad in deploy/load/submit-swap.json outlines the floor of
CREDITS = 1_000_000_000  # the most one grant may give: ~500 million dry runs
# GENEROUS_TENANT_LIMITS (benchmarks.submit's, set through the ledger there) as the admin API names them.
LOAD_LIMITS = admin_pb.TenantLimits(
    rate_per_second=float(GENEROUS_TENANT_LIMITS["rate_per_s"] or 0),
    burst=int(GENEROUS_TENANT_LIMITS["burst"] or 0),
    queue_quota=int(GENEROUS_TENANT_LIMITS["queue_quota"] or 0),
)


def swap_inputs() -> tuple[bytes, bytes]:
    """The swap scenario's photo (a synthetic 640x480 room, JPEG q90) and swatch (256 px planks)."""
    photo = scenes.room_scene(*SWAP_SIZE).photo
    return imaging.encode(photo, quality=90)[0], imaging.encode(scenes.plank_texture(256), quality=90)[0]


def write_swap_inputs(directory: Path) -> list[Path]:
    """Writes photo.jpg and swatch.jpg (for `renderctl upload` against a deployment)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "photo.jpg", directory / "swatch.jpg"]
    for path, data in zip(paths, swap_inputs(), strict=True):
        path.write_bytes(data)
    return paths


@dataclass(frozen=True)
class Setup:
    """What the scenarios need: the keys, the ended job and the swap's assets."""

    api_key: str
    limited_key: str
    job_id: str
    photo_asset: str
    swatch_asset: str
    limits: str  # what was set, for the report

    def env(self) -> dict[str, str]:
        """The variables the ghz configurations name (and the limited tenant's key)."""
        return {
            API_KEY_VARIABLE: self.api_key,
            LIMITED_KEY_ENV: self.limited_key,
            "LOAD_JOB_ID": self.job_id,
            "LOAD_PHOTO_ASSET": self.photo_asset,
            "LOAD_SWATCH_ASSET": self.swatch_asset,
        }


def limits_text(limits: admin_pb.TenantLimits) -> str:
    return ", ".join(
        f"{field.name} {value:,g}" if isinstance(value, float) else f"{field.name} {value:,}"
        for field, value in limits.ListFields()
    )


def prepare(
    address: str,
    admin_key: str,
    tenant: str = LOAD_TENANT,
    limited_tenant: str = LIMITED_TENANT,
    limited_limits: admin_pb.TenantLimits | None = None,
) -> Setup:
    """Through the admin API: a key for `tenant` with LOAD_LIMITS and plenty of credits, and one for
    `limited_tenant` at the server's defaults (or `limited_limits`); then, as `tenant`, the swap's
    assets uploaded and one dry-run job run to its end."""
    metadata = (("authorization", f"Bearer {admin_key}"),)
    with open_channel(address) as channel:
        admin = admin_grpc.AdminServiceStub(channel)
        keys = []
        for name in (tenant, limited_tenant):
            minted = admin.CreateApiKey(
                admin_pb.CreateApiKeyRequest(
                    tenant=name, name="make load", scopes=[admin_pb.SCOPE_RENDER, admin_pb.SCOPE_READ]
                ),
                metadata=metadata,
                timeout=30,
            )
            admin.GrantCredits(
                admin_pb.GrantCreditsRequest(tenant=name, amount=CREDITS, note="make load"),
                metadata=metadata,
                timeout=30,
            )
            keys.append(minted.secret)
        admin.UpdateTenantLimits(
            admin_pb.UpdateTenantLimitsRequest(tenant=tenant, limits=LOAD_LIMITS), metadata=metadata, timeout=30
        )
        limited = "the server's defaults"
        if limited_limits is not None:
            admin.UpdateTenantLimits(
                admin_pb.UpdateTenantLimitsRequest(tenant=limited_tenant, limits=limited_limits),
                metadata=metadata,
                timeout=30,
            )
            limited = limits_text(limited_limits)
        shown = admin.GetTenant(admin_pb.GetTenantRequest(tenant=limited_tenant), metadata=metadata, timeout=30)
    photo, swatch = swap_inputs()
    with RenderClient(address, api_key=keys[0]) as client:
        photo_asset, swatch_asset = client.upload(photo, "photo.jpg").id, client.upload(swatch, "swatch.jpg").id
        request = room_render_request(room_render("living room", area=24.0, floor="Oak Natural 190", dry_run=True))
        job = client.wait(client.submit(request).job.id, timeout=60)
    if job.state != pb.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"the load's dry-run job did not succeed: {job.error.message}")
    return Setup(
        api_key=keys[0],
        limited_key=keys[1],
        job_id=job.id,
        photo_asset=photo_asset,
        swatch_asset=swatch_asset,
        limits=(
            f"tenant {tenant!r}: {limits_text(LOAD_LIMITS)} (set through the admin API); "
            f"tenant {limited_tenant!r}: {limited} ({limits_text(shown.tenant.limits)})"
        ),
    )


def driver_argv(
    address: str,
    scenarios: Sequence[str],
    *,
    seconds: float,
    ramp_s: float = 1.0,
    concurrency: int = 0,
    max_requests: int = 0,
    pid: int = 0,
) -> list[str]:
    return [
        *(PY, "-m", "benchmarks.load_driver", "--target", address, "--pid", str(pid)),
        *(f"--scenario={name}" for name in scenarios),
        *("--seconds", str(seconds), "--ramp", str(ramp_s)),
        *("--concurrency", str(concurrency), "--max-requests", str(max_requests)),
    ]


def run_driver(
    argv: list[str],
    env: Mapping[str, str],
    log: Path,
    timeout_s: float,
    on_row: Callable[[Row], None] = lambda _: None,
) -> list[Row]:
    """Runs the driver, parsing its rows as they come; killed past timeout_s. The keys and ids go
    in its environment (where ghz would read them too), not on its command line."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(log, "ab") as stderr_log,
        subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=stderr_log, text=True
        ) as driver,
    ):
        assert driver.stdout is not None
        watchdog = threading.Timer(timeout_s, driver.kill)
        watchdog.start()
        try:
            rows = []
            for line in driver.stdout:
                rows.append(Row(**json.loads(line)))
                on_row(rows[-1])
        finally:
            watchdog.cancel()
        if driver.wait() != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise RuntimeError(f"the load driver exited with {driver.returncode}; {log}:\n{tail}")
    return rows


def codes(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{code} {n}" for code, n in sorted(counts.items())) or "none"


def format_table(rows: Sequence[Row]) -> str:
    """The table `make load` prints: one line per scenario."""

    def pair(values: Sequence[float]) -> str:
        return f"{values[0]:.1f}/{values[2]:.1f}" if values else "-"

    def ms(r: Row, value: float) -> str:
        return f"{value:>7.1f}" if r.ok else f"{'-':>7}"  # no successful call: no latency

    lines = [
        f"{'scenario':<38} {'conc':>4} {'requests':>8} {'req/s':>7} {'ok/s':>7} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'1st ev p50/p99':>14} {'end p50/p99':>13} "
        f"{'gw CPU':>6}  errors"
    ]
    for r in rows:
        lines.append(
            f"{r.title:<38} {r.concurrency:>4} {r.requests:>8} {r.per_second:>7.0f} {r.ok_per_second:>7.0f} "
            f"{ms(r, r.p50_ms)} {ms(r, r.p95_ms)} {ms(r, r.p99_ms)} {pair(r.first_event_ms):>14} "
            f"{pair(r.end_event_ms):>13} {r.server_cpu:>6.2f}  {codes(r.errors)}"
        )
    return "\n".join(lines)


def report(rows: Sequence[Row], args: argparse.Namespace, conditions: Mapping[str, str]) -> None:
    print(
        f"\nLoad, {datetime.date.today().isoformat()}, {os.cpu_count()} CPUs "
        f"(load average {conditions['load_before']} before, {conditions['load_after']} after); "
        f"{args.ramp:g} s ramp + {args.seconds:g} s measured per scenario, at most {args.max_requests} calls"
    )
    print(format_table(rows))
    print(
        "\n  latencies: calls that succeeded, from the call to its reply (a watch: to its stream's end;"
        "\n  submit + watch: from the submit); 1st ev / end: a watch's first and terminal event, ms from"
        "\n  its start; req/s counts refused calls too; gw CPU: the gateway's cores over the window"
    )
    for r in rows:
        if r.outside_errors:
            print(f"  {r.scenario}: also failed during the ramp or the tail: {codes(r.outside_errors)}")
        if r.unexpected:
            print(f"  WARNING {r.scenario}: unexpected errors: {codes(r.unexpected)}")
        if not r.ok:
            print(f"  WARNING {r.scenario}: no call succeeded in the measured window: its row measured nothing")
    print(
        f"  stack: {conditions['env']}; {conditions['hops']}\n"
        f"  limits: {conditions['limits']}\n"
        f"  driver: one process, grpc.aio, each configuration's connections; its CPU "
        + ", ".join(f"{r.scenario} {r.driver_cpu:.2f}" for r in rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=float(os.environ.get(SECONDS_ENV, "15")))
    parser.add_argument("--ramp", type=float, default=1.0, help="unmeasured seconds at the start of each scenario")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=int(os.environ.get(CONCURRENCY_ENV, "0")),
        help="calls in flight in every scenario (0: each configuration's)",
    )
    parser.add_argument(
        "--max-requests",
        type=int,
        default=int(os.environ.get(MAX_REQUESTS_ENV, "50000")),
        help="most calls per scenario (and at most the configuration's total)",
    )
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS), help="repeatable; default: all")
    parser.add_argument("--stack-env", action="append", default=[], help="KEY=VALUE for the stack")
    parser.add_argument("--write-inputs", type=Path, help="write the swap's photo and swatch here and exit")
    args = parser.parse_args()
    if args.write_inputs:
        for path in write_swap_inputs(args.write_inputs):
            print(path)
        return
    scenarios = in_running_order(args.scenario)
    # The slots set here, not left to the gateway's default (4), so the report says what ran.
    env = stack_env({"DISPATCHER_CONCURRENCY": str(DISPATCHER_SLOTS)}, parse_env(args.stack_env))
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="render-load-") as tmp:
        work = Path(tmp)
        try:
            print("starting the stack ...", file=sys.stderr, flush=True)
            with Stack(data_dir=work / "stack", ports=Ports.free(), with_triton=False, env=env) as stack:
                setup = prepare(stack.gateway_address, stack.api_key)
                argv = driver_argv(
                    stack.gateway_address,
                    scenarios,
                    seconds=args.seconds,
                    ramp_s=args.ramp,
                    concurrency=args.concurrency,
                    max_requests=args.max_requests,
                    pid=stack.process("gateway").pid,
                )

                def progress(row: Row) -> None:
                    print(f"  {row.scenario}: {row.ok_per_second:.0f}/s", file=sys.stderr, flush=True)

                timeout_s = len(scenarios) * (args.ramp + args.seconds + 60) + 60
                rows = run_driver(argv, setup.env(), work / "logs" / "driver.log", timeout_s, progress)
                hops = stack_hops(stack)
        except BaseException:
            print(f"make load failed; logs were in {work}", file=sys.stderr)
            for log in sorted(work.glob("**/logs/*.log")):
                print(f"--- {log.relative_to(work)} (last lines)", file=sys.stderr)
                print("\n".join(log.read_text(errors="replace").splitlines()[-15:]), file=sys.stderr)
            raise
    conditions = {
        "load_before": load_before,
        "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "env": format_env(env) + ", no Triton",
        "hops": hops,
        "limits": setup.limits,
    }
    report(rows, args, conditions)
    if any(r.unexpected or not r.ok for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
