"""The event hub's fan-out, against a scripted ledger: every watcher gets every event after its own
cursor, once and in order, however its registration interleaves with reads in flight."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping

import pytest

from gateway.ledger import cursor_key, notice_entry, parse_notice
from gateway.ledger.events import NOTICE_EVENT_BYTES, notice_payload
from gateway.watch import CursorPastEnd, EventHub, ServerDraining
from render.v1 import render_service_pb2 as pb


class Stream:
    """One job's events, read the way Ledger.read_events reads them; a read can be held open."""

    def __init__(self, count: int) -> None:
        self.events = [
            pb.JobEvent(cursor=f"100-{i}", message=f"e{i}", state=pb.JOB_STATE_RUNNING) for i in range(count)
        ]
        self.events[0].state = pb.JOB_STATE_QUEUED
        self.reads: list[str] = []
        self.hold: asyncio.Event | None = None
        self.failures = 0  # reads that fail (Redis away) before they answer again
        self.last_reads = 0

    async def read_events(self, cursors: Mapping[str, str], count: int = 100) -> dict[str, list[pb.JobEvent]]:
        start = cursors["job"]
        self.reads.append(start)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Redis away")
        if self.hold is not None:
            await self.hold.wait()
        return {"job": [e for e in self.events if cursor_key(e.cursor) > cursor_key(start)][:count]}

    async def last_event(self, job_id: str) -> pb.JobEvent | None:
        self.last_reads += 1
        return self.events[-1] if self.events else None

    async def last_events(self, job_ids: list[str]) -> list[pb.JobEvent | None]:
        return [await self.last_event(job_id) for job_id in job_ids]

    async def exist(self, job_ids: list[str]) -> list[bool]:
        return [True for _ in job_ids]


class NoSubscriptions:
    def on(self, channel: str, handler: Callable[[str], None]) -> None:
        return None

    def on_subscribed(self, callback: Callable[[], None]) -> None:
        return None

    def follow(self, channel: str, handler: Callable[[str], None]) -> None:
        return None

    def unfollow(self, channel: str) -> None:
        return None


@contextlib.asynccontextmanager
async def running_hub(stream: Stream, *, keepalive_s: float = 5, sweep_s: float = 5.0) -> AsyncIterator[EventHub]:
    """A started hub over the scripted stream, drained at the end."""
    hub = EventHub(stream, NoSubscriptions(), keepalive_s=keepalive_s, sweep_s=sweep_s)  # type: ignore[arg-type]
    hub.start()
    try:
        yield hub
    finally:
        await hub.drain()


async def take(watch: object, n: int) -> list[str]:
    out = []
    async for event in watch:  # type: ignore[attr-defined]
        if event is not None:
            out.append(event.message)
        if len(out) == n:
            return out
    return out


def test_a_watcher_registering_during_a_read_still_gets_every_event() -> None:
    async def body() -> None:
        stream = Stream(6)
        async with running_hub(stream) as hub:
            late = hub.watch("job", after="100-3")  # this watcher has seen e0..e3
            first = asyncio.create_task(take(late, 2))
            await asyncio.sleep(0.05)
            assert await asyncio.wait_for(first, 2) == ["e4", "e5"]
            stream.hold = asyncio.Event()
            later = hub.watch("job", after="100-3")
            resumed = asyncio.create_task(take(later, 2))
            await asyncio.sleep(0.05)  # its read, from 100-3, is in flight
            everything = asyncio.create_task(take(hub.watch("job"), 6))  # a watcher from the start
            await asyncio.sleep(0.05)
            stream.hold.set()
            assert await asyncio.wait_for(resumed, 2) == ["e4", "e5"]
            assert await asyncio.wait_for(everything, 2) == [f"e{i}" for i in range(6)]

    asyncio.run(body())


def test_a_silent_job_gets_keep_alives_and_nothing_else() -> None:
    async def body() -> None:
        stream = Stream(1)
        async with running_hub(stream, keepalive_s=0.05) as hub:
            seen: list[pb.JobEvent | None] = []
            watch = hub.watch("job")
            async for item in watch:
                seen.append(item)
                if len(seen) == 4:
                    break
            await watch.aclose()
            assert seen[0] is not None and seen[0].message == "e0"
            assert seen[1:] == [None, None, None]
            assert hub.watchers == 0

    asyncio.run(body())


def test_a_watcher_for_the_outcome_is_handed_the_terminal_event_and_keep_alives_only() -> None:
    async def body() -> None:
        stream = Stream(6)
        stream.events[-1].state = pb.JOB_STATE_SUCCEEDED
        async with running_hub(stream) as hub:
            # From the start, with the first too (SubmitAndWatch's): e0 and the end.
            both = await asyncio.wait_for(take(hub.watch("job", outcome_only=True, first_too=True), 6), 2)
            assert both == ["e0", "e5"]
            # From a cursor: the first after it is not the job's first; without first_too, the end only.
            assert await asyncio.wait_for(take(hub.watch("job", "100-2", outcome_only=True, first_too=True), 6), 2) == [
                "e3",
                "e5",
            ]
            assert await asyncio.wait_for(take(hub.watch("job", "100-2", outcome_only=True), 6), 2) == ["e5"]
            assert hub.watchers == 0  # each watch ended with its terminal event

    asyncio.run(body())


def test_a_watcher_for_the_outcome_of_a_running_job_gets_keep_alives_while_events_pass() -> None:
    async def body() -> None:
        stream = Stream(3)  # running: no terminal event yet
        async with running_hub(stream, keepalive_s=0.05) as hub:
            seen: list[pb.JobEvent | None] = []
            watch = hub.watch("job", outcome_only=True)
            async for item in watch:
                seen.append(item)
                if len(seen) == 2:
                    stream.events.append(pb.JobEvent(cursor="100-3", message="e3", state=pb.JOB_STATE_RUNNING))
                    stream.events.append(pb.JobEvent(cursor="100-4", message="end", state=pb.JOB_STATE_FAILED))
                    hub.notify("job")
                if item is not None:
                    break
            await watch.aclose()
            assert seen[:2] == [None, None]  # the three events so far were passed over, not sent
            last = seen[-1]
            assert last is not None and last.message == "end" and all(s is None for s in seen[:-1])

    asyncio.run(body())


def test_a_watcher_past_the_event_a_job_ended_at_is_told_so() -> None:
    """A cursor past the stream's end (never the job's, or from events a Redis failover lost):
    the job's end, whose notice names its event, ends that watch; watchers before it go on."""

    async def body() -> None:
        stream = Stream(3)
        async with running_hub(stream) as hub:
            past = asyncio.create_task(take(hub.watch("job", "100-9"), 1))
            behind = asyncio.create_task(take(hub.watch("job", "100-2"), 1))
            await asyncio.sleep(0.05)
            stream.events.append(pb.JobEvent(cursor="100-3", message="end", state=pb.JOB_STATE_CANCELLED))
            hub.notify("job", "end 100-3")
            with pytest.raises(CursorPastEnd):
                await asyncio.wait_for(past, 2)
            assert await asyncio.wait_for(behind, 2) == ["end"]
            # Once the job has ended, a watch from its end (or past it) ends as it begins.
            for cursor in ("100-3", "100-9"):
                with pytest.raises(CursorPastEnd):
                    await asyncio.wait_for(take(hub.watch("job", cursor), 1), 2)
            assert await asyncio.wait_for(take(hub.watch("job", "100-2"), 1), 2) == ["end"]
            stream.events[-1].state = pb.JOB_STATE_RUNNING  # a running job: let be
            # A notice that is not an end's, or is not well formed, ends nothing.
            waiting = asyncio.create_task(take(hub.watch("job", "100-9"), 1))
            await asyncio.sleep(0.05)
            hub.notify("job", "")
            hub.notify("job", "end not-a-cursor")
            await asyncio.sleep(0.05)
            assert not waiting.done()
            waiting.cancel()

    asyncio.run(body())


def test_a_watcher_past_the_end_is_told_so_by_the_sweep_when_the_end_notice_is_lost() -> None:
    """The end's notice was lost (the subscription was down) or Redis was away at the watch's first
    read: the sweep finds the job's end before the cursor and ends the watch. It lets a running
    job's be, and stops looking once a watcher is handed an event."""

    async def body() -> None:
        stream = Stream(3)
        async with running_hub(stream, sweep_s=0.05) as hub:
            past = asyncio.create_task(take(hub.watch("job", "100-9"), 1))
            resumes = asyncio.create_task(take(hub.watch("job", "100-5"), 2))
            await asyncio.sleep(0.3)  # several sweeps over a running job
            assert not past.done() and not resumes.done()
            stream.events.append(pb.JobEvent(cursor="100-6", message="e6", state=pb.JOB_STATE_RUNNING))
            await asyncio.sleep(0.2)  # found by a sweep (no notice at all)
            looked = stream.last_reads
            stream.events.append(pb.JobEvent(cursor="100-7", message="end", state=pb.JOB_STATE_SUCCEEDED))
            # No notice: only the sweep can tell the watcher past 100-7 that nothing will come.
            with pytest.raises(CursorPastEnd):
                await asyncio.wait_for(past, 2)
            assert await asyncio.wait_for(resumes, 2) == ["e6", "end"]
            assert stream.last_reads > looked  # the sweep looked at the end for the watcher past it

            # Redis away at a new watch's first read: the sweep reads the end when it is back.
            stream.failures = 1
            with pytest.raises(CursorPastEnd):
                await asyncio.wait_for(take(hub.watch("job", "100-8"), 1), 2)
            # A watcher behind the end, after the same failure, gets the end as usual.
            stream.failures = 1
            assert await asyncio.wait_for(take(hub.watch("job", "100-6"), 1), 2) == ["end"]

    asyncio.run(body())


def test_the_sweep_reads_the_end_only_while_a_watcher_may_lie_past_it() -> None:
    async def body() -> None:
        stream = Stream(3)
        async with running_hub(stream, sweep_s=0.05) as hub:
            # At the latest event of a running job, or behind it: never past the end.
            at_latest = asyncio.create_task(take(hub.watch("job", "100-2"), 1))
            behind = asyncio.create_task(take(hub.watch("job", "100-1"), 1))
            assert await asyncio.wait_for(behind, 2) == ["e2"]
            await asyncio.sleep(0.05)
            looked = stream.last_reads
            await asyncio.sleep(0.3)  # several sweeps
            assert stream.last_reads == looked and not at_latest.done()

            # A watcher past the latest event is looked at every sweep until it is handed one.
            ahead = asyncio.create_task(take(hub.watch("job", "100-3"), 1))
            await asyncio.sleep(0.3)
            assert stream.last_reads >= looked + 3
            stream.events.append(pb.JobEvent(cursor="100-4", message="e4", state=pb.JOB_STATE_RUNNING))
            hub.notify("job", "")  # a notice without its event: the reader reads
            assert await asyncio.wait_for(ahead, 2) == ["e4"]
            assert await asyncio.wait_for(at_latest, 2) == ["e4"]

            # Redis away at the first read of a watcher at the latest event: it may lie past it, so
            # a sweep looks, finds it at the latest, and no sweep looks again.
            stream.failures = 1
            waiting = asyncio.create_task(take(hub.watch("job", "100-4"), 1))
            await asyncio.sleep(0.3)
            looked = stream.last_reads
            await asyncio.sleep(0.3)
            assert stream.last_reads == looked and not waiting.done()
            waiting.cancel()

    asyncio.run(body())


def notice(kind: str, entry: str, before: str, event: pb.JobEvent | None) -> str:
    """A notice as transition.lua publishes it."""
    head = f"{kind} {entry} {before}"
    return head if event is None else f"{head} {notice_payload(event.SerializeToString())}"


def test_a_notice_that_carries_its_event_reaches_the_watchers_at_the_entry_before_it_without_a_read() -> None:
    async def body() -> None:
        stream = Stream(3)
        async with running_hub(stream) as hub:
            current = asyncio.create_task(take(hub.watch("job", "100-2"), 2))
            outcome = asyncio.create_task(take(hub.watch("job", "100-2", outcome_only=True), 1))
            await asyncio.sleep(0.05)
            reads = len(stream.reads)
            step = pb.JobEvent(message="e3", state=pb.JOB_STATE_RUNNING)
            stream.events.append(pb.JobEvent(cursor="100-3", message="e3", state=pb.JOB_STATE_RUNNING))
            hub.notify("job", notice("next", "100-3", "100-2", step))
            end = pb.JobEvent(message="end", state=pb.JOB_STATE_SUCCEEDED)
            stream.events.append(pb.JobEvent(cursor="100-4", message="end", state=pb.JOB_STATE_SUCCEEDED))
            hub.notify("job", notice("end", "100-4", "100-3", end))
            assert await asyncio.wait_for(current, 2) == ["e3", "end"]
            assert await asyncio.wait_for(outcome, 2) == ["end"]
            assert len(stream.reads) == reads  # handed over from the notices alone

    asyncio.run(body())


def test_watchers_behind_the_entry_before_a_notices_event_get_everything_in_order_from_the_stream() -> None:
    """Watchers at several cursors when a notice arrives, and one whose first read is in flight:
    only the watcher at the entry before takes the event from the notice; the others are read for,
    and none skips or repeats an event."""

    async def body() -> None:
        stream = Stream(4)  # e0..e3, running
        async with running_hub(stream) as hub:
            at = asyncio.create_task(take(hub.watch("job", "100-3"), 2))
            await asyncio.sleep(0.05)
            stream.hold = asyncio.Event()  # the next reads wait: these watchers' first reads
            behind = asyncio.create_task(take(hub.watch("job", "100-1"), 4))
            far_behind = asyncio.create_task(take(hub.watch("job"), 6))
            late = asyncio.create_task(take(hub.watch("job", "100-3"), 2))
            await asyncio.sleep(0.05)
            stream.events.append(pb.JobEvent(cursor="100-4", message="e4", state=pb.JOB_STATE_RUNNING))
            hub.notify("job", notice("next", "100-4", "100-3", pb.JobEvent(message="e4")))
            stream.events.append(pb.JobEvent(cursor="100-5", message="end", state=pb.JOB_STATE_SUCCEEDED))
            hub.notify("job", notice("end", "100-5", "100-4", pb.JobEvent(message="end", state=pb.JOB_STATE_SUCCEEDED)))
            assert await asyncio.wait_for(at, 2) == ["e4", "end"]  # from the notices, reads held
            stream.hold.set()
            assert await asyncio.wait_for(late, 2) == ["e4", "end"]
            assert await asyncio.wait_for(behind, 2) == ["e2", "e3", "e4", "end"]
            assert await asyncio.wait_for(far_behind, 2) == ["e0", "e1", "e2", "e3", "e4", "end"]

    asyncio.run(body())


def test_a_notice_whose_event_cannot_be_read_makes_the_hub_read_the_stream() -> None:
    async def body() -> None:
        stream = Stream(3)
        async with running_hub(stream) as hub:
            watching = asyncio.create_task(take(hub.watch("job", "100-2"), 1))
            await asyncio.sleep(0.05)
            reads = len(stream.reads)
            stream.events.append(pb.JobEvent(cursor="100-3", message="e3", state=pb.JOB_STATE_RUNNING))
            hub.notify("job", "next 100-3 100-2 not*base64")
            assert await asyncio.wait_for(watching, 2) == ["e3"]
            assert len(stream.reads) == reads + 1

    asyncio.run(body())


@pytest.mark.parametrize(
    ("raw", "entry", "before", "end", "message"),
    [
        ("", None, None, False, None),
        ("next 5-1 5-0", (5, 1), (5, 0), False, None),
        ("end 5-1 0", (5, 1), (0, 0), True, None),
        ("end 5-1", (5, 1), None, True, None),  # as published before notices carried events
        (
            "next 5-1 5-0 " + notice_payload(pb.JobEvent(message="a b\nc").SerializeToString()),
            (5, 1),
            (5, 0),
            False,
            "a b\nc",
        ),
        ("next 5-x 5-0", None, None, False, None),
        ("other 5-1 5-0", None, None, False, None),
        ("next 5-1 5-0 \xff", None, None, False, None),
    ],
)
def test_notices_are_read_as_transition_lua_writes_them(
    raw: str, entry: tuple[int, int] | None, before: tuple[int, int] | None, end: bool, message: str | None
) -> None:
    said = parse_notice(raw)
    assert (said.entry, said.before, said.end) == (entry, before, end)
    assert (said.event.message if said.event else None) == message
    if said.event is not None:
        assert said.event.cursor == "5-1"


@pytest.mark.parametrize(
    ("raw", "entry"),
    [
        ("next 5-1 5-0 " + notice_payload(pb.JobEvent(message="m").SerializeToString()), (5, 1)),
        ("end 7-0", (7, 0)),
        ("next 5-1 5-0 \xff", (5, 1)),  # the entry alone: the event it carries is not decoded
        ("", None),
        ("next 5-x 5-0", None),
        ("other 5-1 5-0", None),
    ],
)
def test_a_notices_entry_is_read_without_its_event(raw: str, entry: tuple[int, int] | None) -> None:
    assert notice_entry(raw) == entry


def test_a_notice_carries_an_event_only_up_to_its_size_limit() -> None:
    small, large = b"x" * NOTICE_EVENT_BYTES, b"x" * (NOTICE_EVENT_BYTES + 1)
    assert notice_payload(small) and notice_payload(large) == ""
    assert notice_payload(small).isascii()  # every subscriber can read a notice as text


class Subscribing(NoSubscriptions):
    """Subscriptions whose follows are confirmed when the test says so."""

    def __init__(self, subscribed: bool = True) -> None:
        self.followed: dict[str, Callable[[str], None]] = {}
        self.subscribed = subscribed
        self.connection: int | None = 1 if subscribed else None
        self.follows = 0

    def follow(self, channel: str, handler: Callable[[str], None]) -> None:
        self.followed[channel] = handler
        self.follows += 1

    def unfollow(self, channel: str) -> None:
        del self.followed[channel]


def test_a_new_jobs_watcher_is_handed_what_its_submit_wrote_and_reads_on_from_its_subscription() -> None:
    """A watch from the start of a job its submit just wrote (SubmitAndWatch) gets those events
    without a read; events written before its subscription was confirmed come with the read that
    the confirmation makes, from after them. A second watcher of the job reads for itself."""

    async def body() -> None:
        stream = Stream(4)  # e0 queued, e1 started (what the submit wrote), e2 and e3 before the subscription
        subscriptions = Subscribing()
        hub = EventHub(stream, subscriptions, keepalive_s=5)  # type: ignore[arg-type]
        hub.start()
        try:
            written = tuple(stream.events[:2])
            first = hub.watch("job", outcome_only=True, first_too=True, written=written)
            everything = hub.watch("job", written=written)
            got = await asyncio.wait_for(first.__anext__(), 2)
            assert got is not None and got.message == "e0" and stream.reads == []  # handed over, unread
            seen = asyncio.create_task(take(everything, 4))
            await asyncio.sleep(0.05)
            assert stream.reads == ["0-0"]  # the second watcher read for itself
            (confirm,) = subscriptions.followed.values()
            stream.events[-1].state = pb.JOB_STATE_SUCCEEDED
            confirm("")  # subscribed: the hub reads what came after the submit's events
            assert await asyncio.wait_for(take(first, 1), 2) == ["e3"]
            assert await asyncio.wait_for(seen, 2) == ["e0", "e1", "e2", "e3"]
            assert stream.reads[1:] == ["100-1"]
        finally:
            await hub.drain()

    asyncio.run(body())


def test_a_new_jobs_watcher_reads_at_once_while_the_subscription_is_down() -> None:
    """With the subscription down, its confirmation may be seconds away: the watch reads the
    stream at once rather than wait for it, and gets everything so far."""

    async def body() -> None:
        stream = Stream(3)
        stream.events[-1].state = pb.JOB_STATE_SUCCEEDED
        hub = EventHub(stream, Subscribing(subscribed=False), keepalive_s=5)  # type: ignore[arg-type]
        hub.start()
        try:
            watch = hub.watch("job", written=tuple(stream.events[:2]))
            assert await asyncio.wait_for(take(watch, 3), 2) == ["e0", "e1", "e2"]
            assert stream.reads == ["0-0"]
        finally:
            await hub.drain()

    asyncio.run(body())


def test_a_watch_begun_after_the_drain_ends_at_once() -> None:
    """The server still takes calls while the rest of its drain runs: a watch begun then would
    hold its stop for the whole grace. It ends at once, as the drained ones did."""

    async def body() -> None:
        stream = Stream(3)
        hub = EventHub(stream, NoSubscriptions(), keepalive_s=5)  # type: ignore[arg-type]
        hub.start()
        await hub.drain()
        with pytest.raises(ServerDraining):
            await asyncio.wait_for(take(hub.watch("job"), 1), 1)

    asyncio.run(body())


def test_a_watch_ended_while_its_client_reads_nothing_is_ended_once() -> None:
    """Every sweep ended a stalled watcher of a gone job again, queueing another end each time (a
    review found the queue growing without bound); it is ended once."""
    from gateway.watch import JobGone, _Watcher

    watcher = _Watcher(cursor=(0, 0))
    for _ in range(5):
        watcher.end(JobGone())
    assert watcher.queue.qsize() == 1 and isinstance(watcher.ending, JobGone)


def submitted_notice(stream: Stream) -> str:
    """The notice of the start a submit wrote (submit.lua): its entry, the queued one before it."""
    return notice("next", stream.events[1].cursor, stream.events[0].cursor, stream.events[1])


@pytest.mark.parametrize("confirmed_before_the_watch", [True, False])
def test_a_job_followed_ahead_whose_submit_found_it_followed_is_watched_without_a_read(
    confirmed_before_the_watch: bool,
) -> None:
    """SubmitAndWatch follows the new job's channel before its submit: when the submit found it
    followed, Redis had the subscription before the job's first notice, so the watch starts from what
    the submit wrote and reads nothing, whether the subscription's confirmation comes before the
    watch or after it; the job's later notices reach it as any watch's do."""

    async def body() -> None:
        stream = Stream(4)  # e0 queued, e1 started (the submit's), e2 and e3 later
        subscriptions = Subscribing()
        hub = EventHub(stream, subscriptions, keepalive_s=5)  # type: ignore[arg-type]
        hub.start()
        try:
            hub.follow_ahead("job")
            (heard,) = subscriptions.followed.values()
            if confirmed_before_the_watch:
                heard("")
            heard(submitted_notice(stream))  # the submit's own notice, before its watch
            watch = hub.watch("job", outcome_only=True, first_too=True, written=tuple(stream.events[:2]), followed=True)
            got = await asyncio.wait_for(watch.__anext__(), 2)
            assert got is not None and got.message == "e0"
            if not confirmed_before_the_watch:
                heard("")
            await asyncio.sleep(0.05)
            assert stream.reads == [] and subscriptions.follows == 1  # no read, no second SUBSCRIBE
            stream.events[-1].state = pb.JOB_STATE_SUCCEEDED
            heard(notice("end", stream.events[3].cursor, stream.events[2].cursor, None))  # an end without its event
            assert await asyncio.wait_for(take(watch, 1), 2) == ["e3"]
            assert stream.reads == ["100-1"]  # read for that notice, from after the submit's events
            await watch.aclose()
            assert subscriptions.followed == {}  # the watch's end unfollows the channel
        finally:
            await hub.drain()

    asyncio.run(body())


@pytest.mark.parametrize("why", ["not followed", "a later notice first", "reconnected"])
def test_a_job_followed_ahead_is_read_when_its_submit_cannot_vouch_for_the_subscription(why: str) -> None:
    """The watch of a job followed ahead reads the stream from after its submit's events when the
    submit did not find the channel followed (the SUBSCRIBE reached Redis after it), when a notice
    of a later event came before the watch (the hub had no watcher to hand it to), or when the
    subscription's connection was made again since the SUBSCRIBE; it gets every event either way."""

    async def body() -> None:
        stream = Stream(3)  # e0 queued, e1 started (the submit's), e2 its end
        stream.events[-1].state = pb.JOB_STATE_SUCCEEDED
        subscriptions = Subscribing()
        hub = EventHub(stream, subscriptions, keepalive_s=5)  # type: ignore[arg-type]
        hub.start()
        try:
            hub.follow_ahead("job")
            (heard,) = subscriptions.followed.values()
            heard("")
            if why == "a later notice first":
                heard(notice("end", stream.events[2].cursor, stream.events[1].cursor, stream.events[2]))
            if why == "reconnected":
                subscriptions.connection = 2
            watch = hub.watch("job", written=tuple(stream.events[:2]), followed=why != "not followed")
            assert await asyncio.wait_for(take(watch, 3), 2) == ["e0", "e1", "e2"]
            assert stream.reads == ["100-1"]
        finally:
            await hub.drain()

    asyncio.run(body())


def test_a_job_followed_ahead_and_not_watched_is_unfollowed() -> None:
    """A submit refused, failed or answered with an earlier job of its key: the channel followed
    ahead for it is unfollowed, and a notice on it meanwhile asks for nothing."""

    async def body() -> None:
        stream = Stream(2)
        subscriptions = Subscribing()
        hub = EventHub(stream, subscriptions, keepalive_s=5)  # type: ignore[arg-type]
        hub.start()
        try:
            hub.follow_ahead("job")
            (heard,) = subscriptions.followed.values()
            heard("")
            heard(submitted_notice(stream))
            hub.forget_ahead("job")
            assert subscriptions.followed == {}
            await asyncio.sleep(0.05)
            assert stream.reads == []
        finally:
            await hub.drain()

    asyncio.run(body())
