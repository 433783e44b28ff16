"""The Redis job ledger: jobs and their state machine, event streams, dispatch (per-tenant queues,
fair takes, leases), tenants' limits and credits.

Scripts live in scripts/*.lua (registered once per client, idempotent under retry), every key and
channel in keys.py, connections and the retry rule in connection.py.
"""

from gateway.ledger.base import LedgerError
from gateway.ledger.connection import LedgerUnavailable, connect
from gateway.ledger.credits import CreditEntry, Credits
from gateway.ledger.events import EventLog, cursor_key
from gateway.ledger.jobs import Jobs, NewJob, NotOwner, QueueFull, State, StoredJob
from gateway.ledger.limits import TenantPolicies
from gateway.ledger.tenants import (
    InsufficientCredits,
    LimitError,
    QuotaExceeded,
    RateLimited,
    TenantLimits,
    TenantUsage,
)
from gateway.ledger.work import WorkQueue


class Ledger(Jobs, EventLog, WorkQueue, TenantPolicies, Credits):
    """The job ledger over one Redis client: jobs, their events, dispatch, tenants' limits and credits."""


__all__ = [
    "CreditEntry",
    "InsufficientCredits",
    "Ledger",
    "LedgerError",
    "LedgerUnavailable",
    "LimitError",
    "NewJob",
    "NotOwner",
    "QueueFull",
    "QuotaExceeded",
    "RateLimited",
    "State",
    "StoredJob",
    "TenantLimits",
    "TenantUsage",
    "connect",
    "cursor_key",
]
