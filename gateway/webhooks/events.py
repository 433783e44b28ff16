"""Which job events a webhook receives: the API's WebhookEvent values as the ledger stores them
("start,progress,completed"), which the transition script matches against each event."""

from __future__ import annotations

from collections.abc import Iterable

from render.v1 import render_service_pb2 as pb

CATEGORIES: dict[int, str] = {
    pb.WEBHOOK_EVENT_STARTED: "start",
    pb.WEBHOOK_EVENT_PROGRESS: "progress",
    pb.WEBHOOK_EVENT_COMPLETED: "completed",
}
EVENTS: dict[str, pb.WebhookEvent] = {
    "start": pb.WEBHOOK_EVENT_STARTED,
    "progress": pb.WEBHOOK_EVENT_PROGRESS,
    "completed": pb.WEBHOOK_EVENT_COMPLETED,
}
# No filter: the completion only (progress can be many deliveries; nobody gets them unasked).
DEFAULT = ("completed",)


def categories(events: Iterable[int]) -> tuple[str, ...]:
    """The categories of a filter, in a fixed order, without repeats; empty means completion only."""
    chosen = {CATEGORIES[e] for e in events if e in CATEGORIES}
    return tuple(c for c in CATEGORIES.values() if c in chosen) or DEFAULT


def stored(events: Iterable[int]) -> str:
    """A filter as the job hash and the endpoint records keep it."""
    return ",".join(categories(events))


def from_stored(names: Iterable[str]) -> list[pb.WebhookEvent]:
    """A stored filter as the API's values."""
    return [EVENTS[name] for name in names if name in EVENTS]
