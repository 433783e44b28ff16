"""The submit script's call, sent in runs packed apart (gateway.ledger.jobs: a tenant's keys and a
queued job's empty start packed once), against the script it calls: a key added to one and not the
other shifts KEYS into ARGV silently, and the command stays a valid one."""

import re

from gateway.ledger.base import SCRIPT_SOURCES
from gateway.ledger.jobs import _NOT_STARTING, SUBMIT_KEYS, _tenant_keys

SUBMIT = SCRIPT_SOURCES["submit"]


def _highest(name: str) -> int:
    return max(int(n) for n in re.findall(rf"\b{name}\[(\d+)\]", SUBMIT))


def test_the_submit_calls_key_count_is_the_scripts() -> None:
    assert _highest("KEYS") == SUBMIT_KEYS
    # The job's five keys, the tenant's packed run, then the job's webhooks, parked tenants and
    # queue finish (Jobs.submit's runs, in order).
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
