"""Webhook payloads: `{"type", "timestamp", "data"}` as compact JSON, made from the job event a
delivery was queued with. Output links are made at each attempt (they expire), so a retry a day
later carries links that work; nothing else changes between attempts. Payloads carry no
credentials, storage keys or server paths."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.ledger import Delivery
from gateway.links import OutputLinks
from render.v1 import render_service_pb2 as pb


def _name(enum: Any, value: int, prefix: str) -> str:
    """An enum value's name in payloads: JOB_STATE_SUCCEEDED -> "succeeded"."""
    try:
        return str(enum.Name(value)).removeprefix(prefix).lower()
    except ValueError:
        return "unknown"


def _time(ms: int) -> str:
    """RFC 3339 in UTC, to the millisecond."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _outputs(outputs: Sequence[pb.OutputFile], links: OutputLinks | None) -> list[dict[str, Any]]:
    out = []
    for output in outputs:
        linked = pb.OutputFile()
        linked.CopyFrom(output)
        if links is not None:
            links.fill_output(linked)
        item: dict[str, Any] = {
            "name": linked.name,
            "content_type": linked.content_type,
            "size_bytes": linked.size_bytes,
            "width": linked.width,
            "height": linked.height,
            "sha256": linked.sha256,
        }
        if linked.url:
            item["url"] = linked.url
            item["url_expire_time"] = _time(linked.url_expire_time.ToMilliseconds())
        out.append(item)
    return out


def _error(error: pb.JobError) -> dict[str, str]:
    return {"code": _name(pb.ErrorCode, error.code, "ERROR_CODE_"), "message": error.message}


def _room(child: pb.ChildJob, links: OutputLinks | None, with_outputs: bool) -> dict[str, Any]:
    room: dict[str, Any] = {
        "index": child.index,
        "room_id": child.room_id,
        "room_name": child.room_name,
        "job_id": child.job_id,
        "state": _name(pb.JobState, child.state, "JOB_STATE_"),
    }
    if child.HasField("error"):
        room["error"] = _error(child.error)
    if with_outputs and child.outputs:
        room["outputs"] = _outputs(child.outputs, links)
    return room


def payload(delivery: Delivery, links: OutputLinks | None, room: pb.Room | None = None) -> bytes:
    """The body of one attempt of a delivery. `room` is a batch room's own description, when known."""
    event = pb.JobEvent.FromString(delivery.event)
    data: dict[str, Any] = {
        "job_id": delivery.job_id,
        "kind": delivery.kind,
        "state": _name(pb.JobState, event.state, "JOB_STATE_"),
        "step": event.step,
        "total_steps": event.total_steps,
        "progress": round(event.progress, 4),
        "message": event.message,
    }
    if event.stage:
        data["stage"] = _name(pb.Stage, event.stage, "STAGE_")
    for name, value in (("project_id", delivery.project_id), ("user_id", delivery.user_id)):
        if value:
            data[name] = value
    if delivery.event_type == "job.started":
        data["attempt"] = delivery.job_attempt
    if delivery.parent_job_id:
        data["batch_job_id"] = delivery.parent_job_id
        if room is not None:
            data["room"] = {"id": room.id, "name": room.name}
    if event.HasField("error"):
        data["error"] = _error(event.error)
    final = delivery.event_type != "job.progress"
    if event.result.outputs:
        data["outputs"] = _outputs(event.result.outputs, links)
    report = event.result.batch
    if event.HasField("result") and event.result.HasField("batch"):
        data["rooms"] = [_room(child, links, True) for child in report.children]
        data["summary"] = {
            "total": report.total,
            "succeeded": report.succeeded,
            "failed": report.failed,
            "cancelled": report.cancelled,
        }
    elif event.children:
        data["rooms"] = [_room(child, links, final) for child in event.children]
    # The event's time by Redis's clock (the delivery was queued in the script that wrote the event,
    # at the time its stream entry has), not the writing replica's, as the job's events read it.
    at_ms = delivery.created_ms or event.time.ToMilliseconds()
    body = {"type": delivery.event_type, "timestamp": _time(at_ms), "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
