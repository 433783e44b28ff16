"""Watching jobs: one reader per gateway fans every job's events out to all of its watchers.

A watcher registers the job and its cursor; nothing of its own touches Redis. Each event the ledger
writes is also announced on the job's notice channel, which the gateway follows (on its one
subscription) while it has watchers of the job; the reader reads the streams of the jobs it was told
about (one XREAD for many jobs, from the lowest cursor of each job's watchers) and hands every
watcher the entries after its own cursor, in stream order. A sweep every few seconds re-reads every watched job,
so an event whose notice was lost (the subscription was down) still arrives, and ends the watches
of jobs that expired. Thousands of idle watchers cost a queue each, not a connection each.

A watcher whose cursor lies past its job's latest event (a consumer's saved cursor after a Redis
failover lost the latest events, or a made-up one) waits for events after it; if the job ends
before its cursor, the end's notice ends the watch (CursorPastEnd). Should that notice be lost, or
Redis be away at the watch's first read, the sweep looks at such a watcher's job's latest event
until the watcher is handed an event or its job has ended.

One watcher cannot stall the others: should Redis refuse a read of many jobs (a cursor it does
not take as a stream id, which the servicer's checks should already have refused), the jobs are
read one by one and only the watches that cannot be read end (CursorRefused). A job that no
longer exists (expired, or lost by a Redis without its data) ends its watches with JobGone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field

import redis.exceptions

from gateway.ledger import Ledger, LedgerUnavailable, cursor_key, keys, notice_entry, parse_notice, readable
from gateway.ledger.connection import transient
from gateway.ledger.jobs import TERMINAL_PROTO
from gateway.subscriptions import Subscriptions
from render.v1 import render_service_pb2 as pb
from renderkit.errors import DependencyUnavailable

log = logging.getLogger(__name__)

_READ_CHUNK = 256  # jobs per XREAD
_READ_COUNT = 100  # events per job per XREAD


class CursorPastEnd(Exception):
    """The watched job ended at or before the watcher's cursor: nothing will follow it."""


class CursorRefused(Exception):
    """Redis does not take the watcher's cursor as a stream id: the watch cannot be read."""


class JobGone(Exception):
    """The watched job no longer exists (it expired, or Redis lost it): nothing will follow."""


class EventsUnreadable(Exception):
    """Redis refused to read the job's events, and no watcher's cursor is to blame."""


class ServerDraining(DependencyUnavailable):
    """The gateway is shutting down: the client should reconnect (to another replica)."""

    def __init__(self) -> None:
        # Not at once: a client's next call could reach this replica again while it drains.
        super().__init__("this gateway replica", retry_after_s=0.2)


@dataclass(eq=False)
class _Watcher:
    cursor: tuple[int, int]
    queue: asyncio.Queue[pb.JobEvent | None] = field(default_factory=asyncio.Queue)  # None: the watch ends
    outcome_only: bool = False  # hand it only the terminal event (and the first, if first_too)
    first_too: bool = False
    # Why the watch ends early (raised when its queue hands it None); None: it ends with its job.
    ending: Exception | None = None
    ahead: bool = False  # the cursor may lie past the job's latest event: the sweep checks its end

    def take(self, event: pb.JobEvent, position: tuple[int, int]) -> None:
        """Moves the cursor to the event (at position) and queues it if this watcher wants it."""
        self.cursor = position
        self.ahead = False
        if not self.outcome_only or event.state in TERMINAL_PROTO:
            self.queue.put_nowait(event)
        elif self.first_too:
            self.first_too = False
            self.queue.put_nowait(event)

    def end(self, reason: Exception) -> None:
        """Ends the watch, which raises `reason` (the first one given, if ended twice). Once: a
        watcher whose client stopped reading stays registered, and each sweep would otherwise queue
        another end for it."""
        if self.ending is None:
            self.ending = reason
            self.ahead = False  # ended: no sweep need look at its job for it again
            self.queue.put_nowait(None)


@dataclass
class _Ahead:
    """A job's channel followed before its submit is written (EventHub.follow_ahead)."""

    connection: int | None  # the subscription's connection the SUBSCRIBE went out on
    confirmed: bool = False  # Redis confirmed the subscription (its handler heard "")
    heard: list[str] = field(default_factory=list)  # notices that came before the job's watch


class EventHub:
    """Fans jobs' events out to watchers, with one reader and one subscription per gateway."""

    def __init__(
        self, ledger: Ledger, subscriptions: Subscriptions, *, keepalive_s: float = 15.0, sweep_s: float = 5.0
    ) -> None:
        self.ledger = ledger
        self.keepalive_s = keepalive_s
        self.sweep_s = sweep_s
        self._watchers: dict[str, set[_Watcher]] = {}
        self._draining = False
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ahead: dict[str, _Ahead] = {}
        self.subscriptions = subscriptions
        subscriptions.on_subscribed(self.catch_up)

    @property
    def watchers(self) -> int:
        """How many watches are open on this gateway."""
        return sum(len(group) for group in self._watchers.values())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def drain(self) -> None:
        """Ends every watch with UNAVAILABLE (clients resume from their cursor elsewhere) and stops;
        a watch begun after this (a call a port took just before its stop) ends the same way at
        once: a watch left open would hold its server's stop for the whole grace."""
        self._draining = True
        for group in self._watchers.values():
            for watcher in group:
                watcher.end(ServerDraining())
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def notify(self, job_id: str, notice: str = "") -> None:
        """A job got an event (a pub/sub notice, transition.lua's): read its stream if anyone watches
        it. A notice that carries its event hands it at once to every watcher whose cursor is the
        entry before it; the stream is read only for watchers behind that. An end's notice names
        its event: a watcher whose cursor is past it (one that was never this job's, or one from
        events a Redis failover lost) would wait for what can never come, so its watch ends."""
        group = self._watchers.get(job_id)
        if group is None:
            return
        said = parse_notice(notice)
        if said.entry is not None:
            if said.end:
                for watcher in group:
                    # At the end itself too: a watcher already handed the terminal event returns on
                    # it before it reaches this.
                    if watcher.cursor >= said.entry:
                        _end_past(watcher)
            if said.event is not None and said.before is not None:
                for watcher in group:
                    if watcher.cursor == said.before:
                        watcher.take(said.event, said.entry)
            if all(watcher.cursor >= said.entry for watcher in group):
                return  # every watcher has it (or is past it): nothing to read
        self._dirty.add(job_id)
        self._wake.set()

    def follow_ahead(self, job_id: str) -> None:
        """Follows a new job's channel before its submit is written (SubmitAndWatch, with the id
        the submit will use), so that its watch may start from the events the submit wrote without
        reading the stream: when the submit finds the channel followed (Submitted.followed), Redis
        had this subscription before the job's first notice. The SUBSCRIBE goes out just before the
        submit's script (no round trip of its own), and its confirmation costs no read (watch).
        Every follow_ahead is ended by a watch of the job or by forget_ahead."""
        self._ahead[job_id] = _Ahead(self.subscriptions.connection)
        self.subscriptions.follow(keys.job_channel(job_id), lambda notice: self._heard_ahead(job_id, notice))

    def forget_ahead(self, job_id: str) -> None:
        """Stops following a channel followed ahead whose job will not be watched here (its submit
        was refused, failed, or found an earlier job with its key)."""
        if self._ahead.pop(job_id, None) is not None and job_id not in self._watchers:
            self.subscriptions.unfollow(keys.job_channel(job_id))

    def _heard_ahead(self, job_id: str, notice: str) -> None:
        """A notice on a channel followed ahead: its subscription's first confirmation (the first
        "" on a connection always is: no message comes before it) is noted; notices before the
        job's watch are kept for it to judge; the rest go to the watchers as any job's do."""
        ahead = self._ahead.get(job_id)
        if ahead is None:
            self.notify(job_id, notice)
        elif not ahead.confirmed and not notice:
            ahead.confirmed = True
            if job_id in self._watchers:  # its watch began before the confirmation: done here
                del self._ahead[job_id]
        elif job_id in self._watchers:
            self.notify(job_id, notice)
        else:
            ahead.heard.append(notice)

    def _caught_up_ahead(self, job_id: str, written: Sequence[pb.JobEvent], followed: bool) -> bool | None:
        """For a watch of a job followed ahead (None: it was not): whether the events its submit
        wrote are all there is so far and every later notice will come, so no read is needed. True
        when the submit found the channel `followed`, on the connection still up, and no notice came
        for anything after those events (a notice before the watch is otherwise dropped). The
        subscription's confirmation, should it come later, asks for no read then."""
        ahead = self._ahead.pop(job_id, None)
        if ahead is None:
            return None
        last = cursor_key(written[-1].cursor) if written else None
        caught_up = (
            followed
            and last is not None
            and ahead.connection is not None
            and ahead.connection == self.subscriptions.connection
            and all((entry := notice_entry(notice)) is not None and entry <= last for notice in ahead.heard)
        )
        if caught_up and not ahead.confirmed:
            ahead.heard.clear()
            self._ahead[job_id] = ahead  # its confirmation is still to come
        elif not caught_up and ahead.confirmed:
            # The read the confirmation asks for was not made (no watcher then): the reader makes it
            # once this watch is in (it registers before the loop runs the reader again).
            self._dirty.add(job_id)
            self._wake.set()
        return caught_up

    def catch_up(self) -> None:
        """Re-reads every watched job (after a reconnect, notices sent meanwhile were lost)."""
        self._dirty.update(self._watchers)
        self._wake.set()

    @property
    def draining(self) -> bool:
        """Whether this replica is draining: it starts no watch (ServerDraining)."""
        return self._draining

    async def watch(
        self,
        job_id: str,
        after: str = "",
        *,
        outcome_only: bool = False,
        first_too: bool = False,
        written: Sequence[pb.JobEvent] = (),
        followed: bool = False,
    ) -> AsyncGenerator[pb.JobEvent | None, None]:
        """The job's events after the cursor, then new ones until the job ends; None is a keep-alive
        (the watcher was handed nothing for keepalive_s). With outcome_only, only the terminal event
        (and, with first_too, the first after the cursor).

        `written`: a new job's first events, as its submit wrote them (their cursors set), when
        the watch begins from the start; `followed`: whether that submit found the job's channel
        followed. With no one else watching the job they are handed over
        as read, without reading them back: the job's channel is followed from now on, and the
        confirmation of that subscription reads what came after them (as it does for every
        watch), so an event whose notice came before the subscription is not missed. While the
        subscription is down (its confirmation could be seconds away) the watch reads at once. A
        job whose channel was followed ahead (follow_ahead) reads nothing when its submit found the
        channel followed (_caught_up_ahead)."""
        if self._draining:
            raise ServerDraining()
        watcher = _Watcher(cursor=cursor_key(after), outcome_only=outcome_only, first_too=first_too)
        caught_up = self._caught_up_ahead(job_id, written, followed)  # None: its channel was not followed ahead
        group = self._watchers.setdefault(job_id, set())
        fresh = not group
        if fresh and caught_up is None:
            self.subscriptions.follow(keys.job_channel(job_id), lambda notice: self.notify(job_id, notice))
        group.add(watcher)
        try:
            if written and fresh and not after and (caught_up or self.subscriptions.subscribed):
                for early in written:
                    watcher.take(early, cursor_key(early.cursor))
            else:
                await self._catch_up(job_id, watcher)
            while True:
                try:
                    async with asyncio.timeout(self.keepalive_s):
                        event = await watcher.queue.get()
                except TimeoutError:
                    yield None
                    continue
                if event is None:
                    if watcher.ending is not None:
                        raise watcher.ending
                    return
                yield event
                if event.state in TERMINAL_PROTO:
                    return
        finally:
            remaining = self._watchers.get(job_id)
            if remaining is not None:
                remaining.discard(watcher)
                if not remaining:
                    del self._watchers[job_id]
                    self._ahead.pop(job_id, None)  # its confirmation, still to come, asks for nothing
                    self.subscriptions.unfollow(keys.job_channel(job_id))

    async def _catch_up(self, job_id: str, watcher: _Watcher) -> None:
        """A new watcher's first read, made at once (not through the reader, which batches the
        reads that notices ask for); what comes after arrives as the reader finds it."""
        start = watcher.cursor
        try:
            found = await self.ledger.read_events({job_id: _cursor_text(start)}, count=_READ_COUNT)
            events = found.get(job_id, [])
            # Nothing after a cursor: if the job's last event is its end, nothing ever will be.
            last = await self.ledger.last_event(job_id) if not events and start > (0, 0) else None
        except Exception:  # Redis away: the reader reads it, retrying (and the sweep checks the end)
            watcher.ahead = start > (0, 0)
            self.notify(job_id)
            return
        if last is not None and start >= cursor_key(last.cursor):
            if last.state in TERMINAL_PROTO:
                _end_past(watcher)
                return
            watcher.ahead = start > cursor_key(last.cursor)  # a running job: events may yet come
        for event in events:
            position = cursor_key(event.cursor)
            if position > watcher.cursor:
                watcher.take(event, position)
        if len(events) == _READ_COUNT:
            self.notify(job_id)  # more than one read's worth: the reader goes on

    async def _run(self) -> None:
        delay = 0.05
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self.sweep_s
        while True:
            # asyncio.timeout, not wait_for: no task made for every wake-up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_sweep - loop.time())):
                    await self._wake.wait()
            self._wake.clear()
            sweep = loop.time() >= next_sweep
            if sweep:
                next_sweep = loop.time() + self.sweep_s
                self._dirty.update(self._watchers)
            try:
                if sweep:
                    await self._end_expired()
                await self._read_dirty()
                if sweep:
                    await self._end_past_watchers()
                delay = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not isinstance(exc, LedgerUnavailable):
                    log.exception("reading watched jobs failed; retrying")
                self._dirty.update(self._watchers)
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 2.0)
                self._wake.set()

    async def _read_dirty(self) -> None:
        while self._dirty:
            taken = list(self._dirty)[:_READ_CHUNK]
            self._dirty.difference_update(taken)
            batch = [job for job in taken if job in self._watchers]
            if not batch:
                continue
            starts = {job: min(w.cursor for w in self._watchers[job]) for job in batch if self._watchers.get(job)}
            try:
                found = await self.ledger.read_events(
                    {job: _cursor_text(start) for job, start in starts.items()}, count=_READ_COUNT
                )
            except redis.exceptions.ResponseError as exc:
                if transient(exc):
                    self._dirty.update(batch)
                    raise
                found = await self._read_each(starts)
            except BaseException:
                self._dirty.update(batch)
                raise
            for job_id, events in found.items():
                self._deliver(job_id, starts[job_id], events)
                if len(events) == _READ_COUNT:
                    self._dirty.add(job_id)  # more to read

    async def _read_each(self, starts: dict[str, tuple[int, int]]) -> dict[str, list[pb.JobEvent]]:
        """The jobs' events read one job at a time, for a read of many that Redis refused: a job
        whose own read is refused ends the watches that cannot be read (their cursor is not a
        stream id), or all of its watches when none is to blame, and the others go on."""
        found: dict[str, list[pb.JobEvent]] = {}
        for job_id, start in starts.items():
            try:
                found.update(await self.ledger.read_events({job_id: _cursor_text(start)}, count=_READ_COUNT))
            except redis.exceptions.ResponseError as exc:
                if transient(exc):
                    self._dirty.update(starts)
                    raise
                group = self._watchers.get(job_id, set())
                blamed = [w for w in group if not readable(w.cursor)]
                ended = blamed or list(group)
                log.warning("job %s: %d watch(es) ended, their events could not be read: %s", job_id, len(ended), exc)
                for watcher in ended:
                    watcher.end(CursorRefused() if blamed else EventsUnreadable())
                    group.discard(watcher)
                if group:
                    self._dirty.add(job_id)  # the watches left read on from their own cursors
        return found

    def _deliver(self, job_id: str, start: tuple[int, int], events: list[pb.JobEvent]) -> None:
        """Hands each watcher the events after its cursor. A watcher whose cursor lies before the
        read's start (it registered while the read was in flight) would skip the events between
        the two: it waits for the next read, which starts from its cursor."""
        for watcher in list(self._watchers.get(job_id, ())):
            if watcher.cursor < start:
                self._dirty.add(job_id)
                continue
            for event in events:
                position = cursor_key(event.cursor)
                if position > watcher.cursor:
                    watcher.take(event, position)

    async def _end_expired(self) -> None:
        # (A watch already ended is only waiting for its client to read the end.)
        watched = [job for job, group in self._watchers.items() if any(w.ending is None for w in group)]
        for start in range(0, len(watched), _READ_CHUNK):
            chunk = watched[start : start + _READ_CHUNK]
            for job_id, exists in zip(chunk, await self.ledger.exist(chunk), strict=True):
                if not exists:
                    for watcher in self._watchers.get(job_id, ()):
                        watcher.end(JobGone())

    async def _end_past_watchers(self) -> None:
        """Ends the watches whose cursor lies at or past their job's end, for when the end's notice
        was lost (the notice alone ends them at once); a watcher handed an event, or at or behind
        its job's latest event, is no longer checked. One pipelined read per _READ_CHUNK jobs."""
        jobs = [job for job, group in self._watchers.items() if any(w.ahead for w in group)]
        for start in range(0, len(jobs), _READ_CHUNK):
            chunk = jobs[start : start + _READ_CHUNK]
            for job_id, last in zip(chunk, await self.ledger.last_events(chunk), strict=True):
                if last is None:
                    continue  # expired: _end_expired ends its watches
                end = cursor_key(last.cursor)
                for watcher in list(self._watchers.get(job_id, ())):
                    if not watcher.ahead:
                        continue
                    if last.state in TERMINAL_PROTO and watcher.cursor >= end:
                        _end_past(watcher)
                    elif watcher.cursor <= end:
                        watcher.ahead = False  # the reads from its cursor reach what follows


def _end_past(watcher: _Watcher) -> None:
    """Ends a watch whose cursor is at or past its job's end (it raises CursorPastEnd)."""
    watcher.end(CursorPastEnd())


def _cursor_text(position: tuple[int, int]) -> str:
    return f"{position[0]}-{position[1]}"
