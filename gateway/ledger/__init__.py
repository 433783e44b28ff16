"""The Redis job ledger: jobs and their state machine, event streams, dispatch (per-tenant queues,
fair takes, leases), tenants' limits and credits, uploaded assets, webhooks (endpoints, secrets,
the delivery queue).

Scripts live in scripts/*.lua (registered once per client, idempotent under retry), every key and
channel in keys.py, connections and the retry rule in connection.py.
"""

from gateway.ledger.assets import AssetBeingSwept, AssetQuotaExceeded, Assets, StoredAsset
from gateway.ledger.base import LedgerError
from gateway.ledger.connection import LedgerUnavailable, connect
from gateway.ledger.credits import CreditEntry, Credits, Grant
from gateway.ledger.events import EventLog, Notice, cursor_key, is_cursor, notice_entry, parse_notice, readable
from gateway.ledger.jobs import (
    Jobs,
    NewJob,
    NotOwner,
    Progress,
    QueueFull,
    StartHere,
    State,
    StoredJob,
    Submitted,
    progress_event,
)
from gateway.ledger.limits import TenantPolicies
from gateway.ledger.tenants import (
    InsufficientCredits,
    LimitError,
    QuotaExceeded,
    RateLimited,
    TenantLimits,
    TenantUsage,
)
from gateway.ledger.webhooks import (
    Attempt,
    CreatedEndpoint,
    Delivery,
    Endpoint,
    EndpointKeyUsed,
    EndpointLimit,
    Secrets,
    Webhooks,
)
from gateway.ledger.work import Taken, WorkQueue


class Ledger(Jobs, EventLog, WorkQueue, TenantPolicies, Credits, Assets, Webhooks):
    """The job ledger over one Redis client: jobs, their events, dispatch, tenants' limits and
    credits, uploaded assets, webhook endpoints and deliveries."""


__all__ = [
    "AssetBeingSwept",
    "AssetQuotaExceeded",
    "Attempt",
    "CreatedEndpoint",
    "CreditEntry",
    "Delivery",
    "Endpoint",
    "EndpointKeyUsed",
    "EndpointLimit",
    "Grant",
    "InsufficientCredits",
    "Ledger",
    "LedgerError",
    "LedgerUnavailable",
    "LimitError",
    "NewJob",
    "NotOwner",
    "Notice",
    "Progress",
    "QueueFull",
    "QuotaExceeded",
    "RateLimited",
    "Secrets",
    "StartHere",
    "State",
    "StoredAsset",
    "StoredJob",
    "Submitted",
    "Taken",
    "TenantLimits",
    "TenantUsage",
    "connect",
    "cursor_key",
    "is_cursor",
    "notice_entry",
    "parse_notice",
    "progress_event",
    "readable",
]
