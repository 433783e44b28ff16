"""The submit script's call, sent in runs packed apart (gateway.ledger.jobs: a tenant's keys and a
queued job's empty start packed once), against the script it calls: a key added to one and not the
other shifts KEYS into ARGV silently, and the command stays a valid one."""

import asyncio
import re
from typing import Any

import hiredis
import redis.asyncio as aioredis

from gateway.ledger import Ledger, NewJob, TenantLimits, keys
from gateway.ledger.base import SCRIPT_SOURCES
from gateway.ledger.jobs import _NOT_STARTING, SUBMIT_KEYS, _tenant_keys
from gateway.ledger.pipelining import Packed
from render.v1 import render_service_pb2 as pb

SUBMIT = SCRIPT_SOURCES["submit"]


def _highest(name: str) -> int:
    return max(int(n) for n in re.findall(rf"\b{name}\[(\d+)\]", SUBMIT))


def test_the_submit_calls_key_count_is_the_scripts() -> None:
    assert _highest("KEYS") == SUBMIT_KEYS
    # The job's five keys, the tenant's packed run, then the job's webhooks, parked tenants and
    # queue finish (Jobs.submit's runs, in order; the layout test below joins them).
    assert 5 + _tenant_keys("acme").size + 3 == SUBMIT_KEYS


def test_a_queued_jobs_empty_start_fills_the_scripts_start_arguments() -> None:
    # ARGV 15-26 are the start (the script reads 15 as its owner and 26 as the webhooks' last), 27-28
    # the weight and the job's template, then the job's fields.
    assert "ARGV[15]" in SUBMIT and "ARGV[26]" in SUBMIT
    assert _NOT_STARTING.size == 26 - 15 + 1
    assert _highest("ARGV") == 28


def test_a_tenants_keys_are_its_own() -> None:
    assert _tenant_keys("acme").data != _tenant_keys("zenith").data
    assert b"acme" in _tenant_keys("acme").data and b"zenith" not in _tenant_keys("acme").data


def test_the_runs_joined_are_the_whole_call_in_the_scripts_order() -> None:
    """The runs packed once (the tenant's, this ledger's) sit where the script reads them: joined,
    the command is the one hiredis packs from the keys and arguments in submit.lua's order."""
    ledger = Ledger(aioredis.Redis(), queue_limit=500, retention_s=3600, tenant_defaults=TenantLimits(rate_per_s=2.5))
    ledger.wall_ms = lambda: 1_700_000_000_123
    sent: list[bytes] = []

    async def fake_send(command: bytes) -> Any:
        sent.append(command)
        return [b"ok", b"j1", b"1700000000123-0", b"1700000000123"]

    ledger.scripts["submit"]._send = fake_send  # type: ignore[method-assign]
    new = NewJob(
        job_id="j1", tenant="acme", kind="room_render", request=b"\x00req", inputs={}, fingerprint="",
        project_id="p", user_id="", idempotency_key="", total_steps=3, credits_reserved=7,
    )  # fmt: skip
    submitted = asyncio.run(ledger.submit(new))
    assert submitted.job_id == "j1" and submitted.created_ms == 1_700_000_000_123
    event = pb.JobEvent(job_id="j1", state=pb.JOB_STATE_QUEUED, total_steps=3, message="Queued")
    event.time.FromMilliseconds(1_700_000_000_123)
    defaults = ledger.defaults
    whole = hiredis.pack_command(
        (
            "EVALSHA", ledger.scripts["submit"].sha, SUBMIT_KEYS,
            keys.job("j1"), keys.events("j1"), keys.ACTIVE_SET, keys.tenant_index("acme"), "idem:none",
            *_items(_tenant_keys("acme")),
            keys.job_webhooks("j1"), keys.PARKED_TENANTS, keys.QUEUE_FINISH,
            "j1", "0", 500, "", 3_600_000, event.SerializeToString(), keys.job_channel("j1"), keys.WORK_CHANNEL,
            "acme", "2.5", defaults.burst, defaults.queue_quota, "1", 7,
            *_items(_NOT_STARTING),
            repr(defaults.weight), keys.JOB_TEMPLATE,
            "kind", "room_render", "request", b"\x00req", "fingerprint", "", "total_steps", 3,
            "project_id", "p", "credits_reserved", 7,
        )
    )  # fmt: skip
    assert sent == [whole]


def _items(run: Packed) -> list[bytes]:
    """A packed run's items, read back from its RESP bulk strings."""
    reader = hiredis.Reader()
    reader.feed(b"*%d\r\n" % run.size + run.data)
    items: list[bytes] = reader.gets()
    return items
