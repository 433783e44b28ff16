"""`make load`'s driver, briefly, against the whole stack: every scenario gives a row of the table and
no error it should not, and a tenant over its rate is refused with RESOURCE_EXHAUSTED.

A few calls per scenario (about 3 s in all once the session's stack runs): the figures themselves
are make load's, not this test's. Its tenants are its own, so the other tests' limits are untouched.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from benchmarks.load import driver_argv, format_table, prepare, run_driver
from benchmarks.load_driver import SCENARIOS
from devstack.launcher import Stack
from render.admin.v1 import admin_service_pb2 as admin_pb


def test_the_load_driver_prints_a_row_per_scenario(stack: Stack, tmp_path: Path) -> None:
    suffix = secrets.token_hex(4)
    # One submit per second with no burst: the limited scenario's few calls are mostly refused.
    setup = prepare(
        stack.gateway_address,
        stack.api_key,
        tenant=f"load-{suffix}",
        limited_tenant=f"load-limited-{suffix}",
        limited_limits=admin_pb.TenantLimits(rate_per_second=1, burst=1),
    )
    argv = driver_argv(stack.gateway_address, list(SCENARIOS), seconds=0.3, ramp_s=0.1, concurrency=2, max_requests=8)
    rows = run_driver(argv, setup.env(), tmp_path / "driver.log", timeout_s=120)
    table = format_table(rows)
    assert [r.scenario for r in rows] == list(SCENARIOS), table
    for row in rows:
        assert not row.unexpected, table
        assert row.requests > 0 and row.p50_ms <= row.p95_ms <= row.p99_ms, table
        assert row.title in table
    by_name = {r.scenario: r for r in rows}
    assert (
        by_name["limited"].errors.get("RESOURCE_EXHAUSTED", 0)
        + by_name["limited"].outside_errors.get("RESOURCE_EXHAUSTED", 0)
        > 0
    ), table
    for name in ("watch", "submit-watch", "submit-wait"):
        first, end = by_name[name].first_event_ms, by_name[name].end_event_ms
        assert len(first) == len(end) == 3 and 0 < first[0] <= end[0], table
    assert all(r.ok > 0 for r in rows if r.scenario != "limited"), table
