"""The Redis job ledger: jobs and their state machine, event streams, the work stream.

Scripts live in scripts/*.lua (registered once per client, idempotent under retry), every key and
channel in keys.py, connections and the retry rule in connection.py.
"""

from gateway.ledger.base import LedgerError
from gateway.ledger.connection import LedgerUnavailable, connect
from gateway.ledger.events import EventLog, cursor_key
from gateway.ledger.jobs import Jobs, NewJob, NotOwner, QueueFull, State, StoredJob
from gateway.ledger.work import WorkQueue


class Ledger(Jobs, EventLog, WorkQueue):
    """The job ledger over one Redis client: jobs, their events and the work stream."""


__all__ = [
    "Ledger",
    "LedgerError",
    "LedgerUnavailable",
    "NewJob",
    "NotOwner",
    "QueueFull",
    "State",
    "StoredJob",
    "connect",
    "cursor_key",
]
