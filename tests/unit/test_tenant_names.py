"""A tenant's name never turns one of its Redis keys into a global one."""

from __future__ import annotations

import pytest

from gateway.auth.principal import TENANT_NAME
from gateway.ledger import keys


@pytest.mark.parametrize("name", ["tenants", "clock", "parked", "finish"])
def test_names_of_the_dispatchers_keys_are_not_tenant_names(name: str) -> None:
    assert keys.queue(name) in {keys.QUEUED_TENANTS, keys.QUEUE_CLOCK, keys.PARKED_TENANTS, keys.QUEUE_FINISH}
    assert not TENANT_NAME.match(name)


@pytest.mark.parametrize("name", ["acme", "Tenants", "clock2", "dev", "a" * 64, "_", "-"])
def test_other_names_still_are(name: str) -> None:
    assert TENANT_NAME.match(name)
