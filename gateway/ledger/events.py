"""Jobs' event streams: non-blocking reads of many streams at once, what the gateway's one reader
(gateway/watch.py) uses to fan events out to every watcher."""

from __future__ import annotations

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


def parse_event(entry_id: bytes, fields: Mapping[bytes, bytes]) -> pb.JobEvent:
    """One stream entry as the event it holds, its cursor set."""
    event = pb.JobEvent()
    event.ParseFromString(fields[b"event"])
    event.cursor = entry_id.decode()
    return event


@dataclass(frozen=True)
class Notice:
    """What a job's notice says (transition.lua): the event's position, the position of the
    stream's entry before it, whether it is the job's end, and the event itself when it was small
    enough to carry. An empty or unknown notice says only that something may have happened."""

    entry: tuple[int, int] | None = None
    before: tuple[int, int] | None = None
    end: bool = False
    event: pb.JobEvent | None = None


def parse_notice(notice: bytes) -> Notice:
    """A job's notice: "next|end <entry> <entry before> [<event>]" (or "end <entry>", as written
    before notices carried events); Notice() when it is empty or not well formed (its reader then
    reads the stream)."""
    parts = notice.split(b" ", 3)
    if len(parts) < 2 or parts[0] not in (b"next", b"end"):
        return Notice()
    try:
        entry = cursor_key(parts[1].decode())
        before = cursor_key(parts[2].decode()) if len(parts) > 2 else None
        event = None
        if len(parts) == 4:
            event = pb.JobEvent()
            event.ParseFromString(parts[3])
            event.cursor = parts[1].decode()
    except (ValueError, DecodeError):
        return Notice()
    return Notice(entry=entry, before=before, end=parts[0] == b"end", event=event)


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
        reply = await self._command("XREVRANGE", keys.events(job_id), "+", "-", "COUNT", 1)
        return parse_event(reply[0][0], as_dict(reply[0][1])) if reply else None

    async def exist(self, job_ids: Sequence[str]) -> list[bool]:
        """Whether each job still exists (it expires after its retention)."""

        async def read() -> Any:
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.exists(keys.job(job_id))
                return await pipe.execute()

        return [bool(n) for n in await self._retry(read)] if job_ids else []
