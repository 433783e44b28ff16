"""Jobs' event streams: non-blocking reads of many streams at once, what the gateway's one reader
(gateway/watch.py) uses to fan events out to every watcher."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from gateway.ledger import keys
from gateway.ledger.base import LedgerBase, as_dict
from render.v1 import render_service_pb2 as pb


def cursor_key(cursor: str) -> tuple[int, int]:
    """A stream id ("1700000000000-3", or "0") as a comparable pair."""
    ms, _, seq = (cursor or "0").partition("-")
    return int(ms), int(seq or 0)


_CURSOR = re.compile(r"[0-9]{1,20}-[0-9]{1,20}\Z")
_MAX_ID_PART = 2**64 - 1  # each part of a stream id is an unsigned 64-bit number


def is_cursor(text: str) -> bool:
    """Whether a caller's text is a stream id Redis accepts ("1700000000000-3"): 20 digits fit a
    part that Redis refuses (above 2^64 - 1), and one refused id fails a whole XREAD of many jobs."""
    return _CURSOR.match(text) is not None and readable(cursor_key(text))


def stamp(event: pb.JobEvent, entry_id: str) -> pb.JobEvent:
    """The event with its cursor, and its time as its stream entry's: Redis's clock (the id's
    milliseconds), which every replica shares, not the wall clock of the replica that wrote it. A
    replica whose clock was minutes off stamped its jobs' starts and ends minutes off, and the
    running intervals read from two replicas' events overlapped (a tenant over its concurrency,
    by its events)."""
    event.cursor = entry_id
    ms = cursor_key(entry_id)[0]
    event.time.seconds, event.time.nanos = ms // 1000, ms % 1000 * 1_000_000
    return event


def readable(position: tuple[int, int]) -> bool:
    """Whether Redis accepts a position (cursor_key's pair) as a stream id."""
    return 0 <= position[0] <= _MAX_ID_PART and 0 <= position[1] <= _MAX_ID_PART


def parse_event(entry_id: bytes, fields: Mapping[bytes, bytes]) -> pb.JobEvent:
    """One stream entry as the event it holds, its cursor set."""
    event = pb.JobEvent()
    event.ParseFromString(fields[b"event"])
    return stamp(event, entry_id.decode())


@dataclass(frozen=True)
class Notice:
    """What a job's notice says (transition.lua): the event's position, the position of the
    stream's entry before it, whether it is the job's end, and the event itself when it was small
    enough to carry. An empty or unknown notice says only that something may have happened."""

    entry: tuple[int, int] | None = None
    before: tuple[int, int] | None = None
    end: bool = False
    event: pb.JobEvent | None = None


# The largest event a notice carries, serialized: a larger one's watchers read the stream. Notices
# stay small in Redis's pub/sub output buffers (a stalled subscriber is dropped at 32 MB by
# default, and then reads every watched job again).
NOTICE_EVENT_BYTES = 3072


def notice_payload(serialized: bytes) -> str:
    """The event as a notice carries it: base64, so that a notice is text to every subscriber
    (gateways from before notices carried events read them as text); "" when it is too large."""
    return base64.b64encode(serialized).decode() if len(serialized) <= NOTICE_EVENT_BYTES else ""


def parse_notice(notice: str) -> Notice:
    """A job's notice: "next|end <entry> <entry before> [<event in base64>]" (or "end <entry>", as
    written before notices carried events); Notice() when it is empty or not well formed (its
    reader then reads the stream)."""
    parts = notice.split(" ", 3)
    if len(parts) < 2 or parts[0] not in ("next", "end"):
        return Notice()
    try:
        entry = cursor_key(parts[1])
        before = cursor_key(parts[2]) if len(parts) > 2 else None
        event = None
        if len(parts) == 4:
            event = pb.JobEvent()
            event.ParseFromString(base64.b64decode(parts[3], validate=True))
            stamp(event, parts[1])
    except (ValueError, DecodeError):  # binascii.Error is a ValueError
        return Notice()
    return Notice(entry=entry, before=before, end=parts[0] == "end", event=event)


def notice_entry(notice: str) -> tuple[int, int] | None:
    """The entry a job's notice announces (parse_notice's, without decoding the event it may carry);
    None for a notice without one."""
    parts = notice.split(" ", 2)
    if len(parts) < 2 or parts[0] not in ("next", "end"):
        return None
    try:
        return cursor_key(parts[1])
    except ValueError:
        return None


class EventLog(LedgerBase):
    """Reading jobs' event streams."""

    async def read_events(self, cursors: Mapping[str, str], count: int = 100) -> dict[str, list[pb.JobEvent]]:
        """For each job, its events after the given cursor (at most `count`), in one round trip."""
        if not cursors:
            return {}
        names = [keys.events(job_id) for job_id in cursors]
        reply = await self._command("XREAD", "COUNT", count, "STREAMS", *names, *(c or "0" for c in cursors.values()))
        out: dict[str, list[pb.JobEvent]] = {}
        for stream, entries in reply or []:
            out[keys.job_of_events(stream.decode())] = [
                parse_event(entry_id, as_dict(fields)) for entry_id, fields in entries
            ]
        return out

    async def last_event(self, job_id: str) -> pb.JobEvent | None:
        """The job's latest event, its cursor set (None when it has none)."""
        return _latest(await self._command("XREVRANGE", keys.events(job_id), "+", "-", "COUNT", 1))

    async def last_events(self, job_ids: Sequence[str]) -> list[pb.JobEvent | None]:
        """Each job's latest event (None where it has none), in one round trip."""

        async def read() -> Any:
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.xrevrange(keys.events(job_id), "+", "-", count=1)
                return await pipe.execute()

        replies = await self._retry(read) if job_ids else []
        return [_latest(reply) for reply in replies]

    async def exist(self, job_ids: Sequence[str]) -> list[bool]:
        """Whether each job still exists (it expires after its retention)."""

        async def read() -> Any:
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.exists(keys.job(job_id))
                return await pipe.execute()

        return [bool(n) for n in await self._retry(read)] if job_ids else []


def _latest(reply: Any) -> pb.JobEvent | None:
    """An XREVRANGE ... COUNT 1 reply as the event it holds (None for an empty stream)."""
    return parse_event(reply[0][0], as_dict(reply[0][1])) if reply else None
