"""The HTTP port's HTTP/2 connections, kept cheap whatever their client does.

Hypercorn keeps every stream it has been sent in a priority tree until its send task has finished
with it, and takes a stream out of that tree in time proportional to the tree's size. A client that
opens streams and resets them at once (HTTP/2 "rapid reset") got ahead of that send task, so one
connection's tree grew to a thousand entries and each stream's removal cost a millisecond of the
event loop the gRPC port shares: one such client held every caller of either port at 0.6 s.
HTTP/2's own bound on a connection's concurrent streams does not apply to it, since a reset stream
is closed at once.

`BoundedH2Protocol`:

- takes in a new stream only once the send task has let go of all but a connection's worth
  (`h2_max_concurrent_streams`) of the streams that are over (it lets go of them itself, closing
  their buffers, so a handler waiting on one is woken), so the tree stays small. Hypercorn's send
  task tries a reset stream again only when its handler writes, and the gateway's handlers write
  nothing once their client has gone, so the wait makes h2 forget its closed streams and puts each
  back in the send task's way; a connection whose streams are still held after _SETTLE_LIMIT_S is
  closed;
- reads a connection more slowly once its client has made more streams end early than
  RESETS_BURST at once and RESETS_PER_S a second after (its own resets, and those h2 makes for it
  when it breaks the protocol on a stream): the rest of what it sent waits, and its own socket's
  backpressure slows it to that pace, while every other connection goes on;
- reads a connection more slowly, too, once its client has sent more frames that move no request
  on (every frame h2 parses but a request's headers, its data and its end, and resets:
  WINDOW_UPDATE, SETTINGS, PING, PRIORITY, CONTINUATION, empty DATA, unknown frames, including
  those h2 takes in without an event) than CONTROL_BURST at once and CONTROL_PER_S a second
  after, and lets the event loop's other work go first every _EVENTS_PER_TURN events: one
  connection sending only window updates held every caller of either port at 0.24 s (p50); now
  2 ms, with the gateway at 2-7 % of a core;
- refuses a stream opened past the bound on its own (REFUSED_STREAM, which its client may retry,
  as RFC 9113 asks), decoding its header block so that header compression stays in step: h2 ends
  the whole connection, every call on it included;
- ignores PRIORITY signals (RFC 9113 deprecates them): Hypercorn put a stream into its tree for each
  one, opened or not, and never took it out;
- ends a stream whose response its client has taken nothing of for WRITE_STALL_S (its
  flow-control window left shut: the client reads the socket, so the socket's own stall check
  never fires, and the stream's handler, its buffered response and the connection's place were
  held for good: no credential needed, one connection of 100 such streams held 73 MB). Where only
  the stream's window is shut, the stream alone is reset (RST_STREAM CANCEL, its handler told its
  client went): a browser multiplexing its other calls on the connection keeps them (aborting the
  connection lost them all). Where the connection's own window is shut, every stream on it is
  stuck, and the connection is aborted;
- wakes every handler still waiting to send when the connection closes (Hypercorn left one that
  waited for a client's window to open waiting for ever, and its connection open), and reports no
  "idle" for a handler done after the close (Hypercorn's restarted the 75 s keep-alive);
- refuses a stream whose request Hypercorn cannot take (a :method or :path that is not ASCII, a
  CONNECT without a :path) on its own, with PROTOCOL_ERROR, as RFC 9113 (8.1.1) answers a
  malformed request: Hypercorn raised out of the connection's task, ending every stream on it
  without a GOAWAY and logging an ERROR with a traceback for each such request.

Measured with one resetting client against a stack (docs/architecture.md, "Streams a connection
may hold"): a normal caller's GetJob on the gRPC port took 0.6 s (p50) with Hypercorn's own
protocol and 5-7 ms with this one (1.5 ms with no such client).

`install` makes Hypercorn's connections use it. It builds on both libraries' internals: Hypercorn's
protocol and h2's frame handling (`_receive_frame`, `_decode_headers`, `_closed_streams`), so
requirements.lock pins Hypercorn and h2, and tests/integration/test_connection_limits.py and
tests/unit/test_http_streams.py check it against the pinned versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any, Protocol

import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.stream
import hypercorn.protocol
from h2.connection import ConnectionInputs
from h2.stream import StreamClosedBy
from hypercorn.events import Closed, Event
from hypercorn.protocol.events import Body, Data, EndBody, EndData, StreamClosed, Trailers
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H11Protocol
from hyperframe.frame import DataFrame, Frame, HeadersFrame, RstStreamFrame
from priority.priority import MissingStreamError

# Streams a connection's client may make end early in a burst, and after it each second, before
# its connection is read more slowly (a browser cancels a few requests when a page goes away).
RESETS_BURST = 200.0
RESETS_PER_S = 50.0
# How often the reader looks again while the send task lets go of streams that are over.
_SETTLE_S = 0.001
# Frames that move no request on (WINDOW_UPDATE, SETTINGS, PING, PRIORITY, empty DATA) a client may
# send in a burst, and after it each second, before its connection is read more slowly: a client
# downloading an output sends a window update every few tens of kilobytes.
CONTROL_BURST = 10_000.0
CONTROL_PER_S = 1_000.0
# Events handled before the connection lets the event loop's other work go first.
_EVENTS_PER_TURN = 64
# How long a new stream may wait for the send task to let go of the streams that are over before
# the connection is closed (ENHANCE_YOUR_CALM): a client should not hold that many.
_SETTLE_LIMIT_S = 5.0
# A response's bytes not taken at all for this long (a socket not read, or an HTTP/2 stream's window
# left shut): the client is gone, and its connection is ended (an HTTP/2 stream whose own window
# alone is shut: that stream is reset).
WRITE_STALL_S = 120.0
# How long the GOAWAY of a connection closed for holding streams may wait to be written.
_GOODBYE_S = 1.0


def _takeable(headers: Any) -> bool:
    """Whether Hypercorn can make a request of these headers: it decodes :method and :path as
    ASCII, and reads a :path that an HTTP/2 CONNECT does not have."""
    method = path = None
    for name, value in headers:
        if name in (b":method", ":method"):
            method = value
        elif name in (b":path", ":path"):
            path = value
    return method is not None and path is not None and method.isascii() and path.isascii()


def _moves_a_request_on(frame: Frame) -> bool:
    """Whether a frame is a request's progress (its headers, its data or its end, or a reset, which
    has a budget of its own), not one that moves nothing on."""
    if isinstance(frame, DataFrame):
        return bool(frame.data) or "END_STREAM" in frame.flags
    return isinstance(frame, (HeadersFrame, RstStreamFrame))


class Clock(Protocol):
    """What a connection's budgets and waits read the time from and sleep by."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class _SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


_SYSTEM_CLOCK = _SystemClock()


class BoundedH2Protocol(H2Protocol):
    """Hypercorn's HTTP/2 connection, with the streams it holds bounded and a client that makes
    streams end early, or sends frames that move nothing on, past its budget read at its pace."""

    # Its budgets' time and its waits (a test's connection stands its own clock in).
    clock: Clock = _SYSTEM_CLOCK

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.streams: dict[int, Any] = _Streams(self.connection, self.streams)
        self._resets = _Budget(RESETS_BURST, RESETS_PER_S, self.clock)
        self._control = _Budget(CONTROL_BURST, CONTROL_PER_S, self.clock)
        # Each stream's wait for its client to take its response (stream_send), put off by
        # WRITE_STALL_S whenever the send task takes some of it: a slow client is not a gone one.
        self._stalls: dict[int, asyncio.Timeout] = {}
        # When the send task last took bytes of any stream's response (the event loop's clock): a
        # connection whose window is spent at a stream's stall while its other calls move on (a
        # client giving its window back slowly but steadily) is not one whose window is left shut.
        self._moved_at = float("-inf")
        # Every frame h2 parses is counted, events or not (a window update for a stream gone makes
        # none), and a frame cut by a read is counted once, when whole.
        receive_frame = self.connection._receive_frame

        def counted(frame: Frame) -> list[h2.events.Event]:
            if isinstance(frame, HeadersFrame) and self._refused(frame):
                return []
            if not _moves_a_request_on(frame):
                self._control.spend()
            return receive_frame(frame)

        self.connection._receive_frame = counted  # type: ignore[method-assign]

    def _refused(self, frame: HeadersFrame) -> bool:
        """Refuses a stream opened past the connection's bound on its own, with REFUSED_STREAM, as
        RFC 9113 (5.1.2) asks: h2 would end the whole connection and every call on it (a client may
        open streams before our SETTINGS reach it). Its header block is decoded all the same, so
        that the connection's header compression stays in step, and the refusal counts against the
        reset budget. A later HEADERS frame on a stream so refused gets STREAM_CLOSED, as h2 answers
        one on a stream it reset itself."""
        connection = self.connection
        stream = frame.stream_id
        if stream in connection.streams or stream % 2 == 0:  # not a client's new stream: h2's to judge
            return False
        if connection.open_inbound_streams < connection.local_settings.max_concurrent_streams:
            return False
        if stream > connection.highest_inbound_stream_id:
            code = h2.errors.ErrorCodes.REFUSED_STREAM
        elif connection._stream_is_closed_by_reset(stream):
            code = h2.errors.ErrorCodes.STREAM_CLOSED
        else:
            return False  # a stream that ended otherwise: h2's connection error
        connection.state_machine.process_input(ConnectionInputs.RECV_HEADERS)
        h2.connection._decode_headers(connection.decoder, frame.data)
        if code == h2.errors.ErrorCodes.REFUSED_STREAM:
            connection.highest_inbound_stream_id = stream
            connection._closed_streams[stream] = StreamClosedBy.SEND_RST_STREAM
        refusal = RstStreamFrame(stream)
        refusal.error_code = code
        connection._prepare_for_sending([refusal])
        self._resets.spend()
        return True

    async def handle(self, event: Event) -> None:
        await super().handle(event)
        if isinstance(event, Closed):
            # A handler waiting for its client to read (a flow-control window left at 0) would
            # wait for ever on a closed connection, holding it open: its buffer is closed too.
            for buffer in list(self.stream_buffers.values()):
                await buffer.close()

    async def stream_send(self, event: StreamEvent) -> None:
        if self.closed and isinstance(event, StreamClosed):
            # A handler done after the connection closed: no "idle" to report (Hypercorn's would
            # start the keep-alive's 75 s over, holding the connection's task that long).
            await self._close_stream(event.stream_id)
            return
        if isinstance(event, (Body, Data, EndBody, EndData, Trailers)) and not self.closed:
            # A response's bytes wait in the stream's buffer for the client's window to open (and
            # its trailers, gRPC's status, wait for them all to go): one that never opens it must
            # not hold the handler and the connection for good. The wait is WRITE_STALL_S from
            # the last bytes the client took, not from the send's start: a 256 KiB chunk over a
            # slow link (or a stream's share of one) takes longer than that and is not stalled.
            try:
                async with asyncio.timeout(WRITE_STALL_S) as stall:
                    self._stalls[event.stream_id] = stall
                    try:
                        await super().stream_send(event)
                    finally:
                        if self._stalls.get(event.stream_id) is stall:
                            del self._stalls[event.stream_id]
            except TimeoutError:
                await self._stalled(event.stream_id)
            return
        await super().stream_send(event)

    async def _stalled(self, stream_id: int) -> None:
        """A stream whose client took nothing of its response for WRITE_STALL_S. Where only the
        stream's own window is shut (the connection's is open, so its other streams still move), the
        stream alone is reset (RST_STREAM CANCEL): its handler is told its client went (a call is
        cancelled), its buffer let go of and its place among the connection's streams freed, and a
        browser's other calls on the connection go on (also where the connection's window is spent
        at this instant by another call that is moving on). Where the connection's own window is
        shut, spent with no stream moving for WRITE_STALL_S (every stream is stuck), or both are open
        (the socket, or the send task, is what stalls), the connection is aborted (Stalled)."""
        connection = self.connection
        stream = connection.streams.get(stream_id)
        # The connection's window is shut when it is spent and no stream has moved for as long: at
        # this instant it may be spent by another call that is moving on (its client gives it back
        # as it reads), and aborting the connection would lose that call too.
        moving = asyncio.get_running_loop().time() - self._moved_at < WRITE_STALL_S
        shut = connection.outbound_flow_control_window <= 0 and not moving
        if stream is None or shut or stream.outbound_flow_control_window > 0:
            await self.send(Stalled())
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):  # closed meanwhile: nothing to reset
            connection.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        buffer = self.stream_buffers.get(stream_id)
        if buffer is not None:
            # Wakes whatever of its handler waits on it; the send task then lets go of it (h2 says
            # the stream is closed), as of a stream its client reset.
            await buffer.close()
            with contextlib.suppress(MissingStreamError):
                self.priority.unblock(stream_id)
        await self._close_stream(stream_id)  # its handler gets http.disconnect
        await self.has_data.set()
        await self._flush()

    async def _close_stream(self, stream_id: int) -> None:
        """Hypercorn's, with room made for the disconnect it tells the stream's handler. It puts
        http.disconnect into the handler's queue, which holds at most max_app_queue_size messages,
        and waits while it is full: a handler that answers without reading its request's body
        (/healthz, a file, the console) whose client sent more DATA frames than that had its queue
        full for good, and the put, made from the handler's own task at its response's end (or at
        its stall's reset), waited for ever. The handler never ended, its request stayed in flight
        and its connection was never let go, its client gone or not (no credential needed). A
        stream that is over reads no more of its body: what its handler did not read is dropped
        (which also lets go of the connection's reader, waiting to put one more)."""
        _drop_unread(self.streams.get(stream_id))  # dict.get: not _Streams.__missing__
        await super()._close_stream(stream_id)

    async def _send_data(self, stream_id: int) -> None:
        buffer = self.stream_buffers.get(stream_id)
        before = len(buffer.buffer) if buffer is not None else 0
        await super()._send_data(stream_id)
        moved = buffer is not None and len(buffer.buffer) < before
        if moved:
            self._moved_at = asyncio.get_running_loop().time()
        stall = self._stalls.get(stream_id)
        if stall is not None and moved and not stall.expired():
            stall.reschedule(self._moved_at + WRITE_STALL_S)

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        kept: list[h2.events.Event] = []
        malformed: set[int] = set()
        for index, event in enumerate(events):
            if isinstance(event, h2.events.RequestReceived) and not _takeable(event.headers):
                self.connection.reset_stream(event.stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
                self._resets.spend()
                malformed.add(event.stream_id)
                # A stream ended early like any other: the client pays for it at the budget's pace
                # (a client sending only such requests was never made to wait).
                await super()._handle_events(kept)
                kept = []
                await self._pay(self._resets)
                if self.closed:
                    return
                continue
            if isinstance(event, (h2.events.DataReceived, h2.events.StreamEnded)) and event.stream_id in malformed:
                if isinstance(event, h2.events.DataReceived):  # the connection's window is still owed it
                    self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                continue
            if index % _EVENTS_PER_TURN == _EVENTS_PER_TURN - 1:  # a long batch lets others go first
                await super()._handle_events(kept)
                kept = []
                await self.clock.sleep(self._control.wait())
                if self.closed:
                    return
            if isinstance(event, h2.events.RequestReceived):
                # Each new stream is taken in after what came before it, once the streams that
                # are over have mostly gone, and at the client's pace.
                await super()._handle_events(kept)
                kept = []
                await self._settle()
                await self._pay(self._resets)
                if self.closed:
                    return
            elif isinstance(event, h2.events.StreamReset):
                self._resets.spend()
            kept.append(event)
        await super()._handle_events(kept)
        await self._pay(self._control)

    async def _pay(self, budget: _Budget) -> None:
        """Waits what the budget says this connection owes (every other connection goes on)."""
        wait = budget.wait()
        if wait > 0:
            await self.clock.sleep(wait)

    async def _priority_updated(self, event: h2.events.PriorityUpdated) -> None:
        """PRIORITY signals are ignored: every stream is served alike."""

    async def _settle(self) -> None:
        """Waits while a connection's worth of streams are over but still held (their handler told,
        their buffer not yet let go of). The send task lets go of one when it next tries it and h2
        says it is closed: h2 is made to forget its closed streams and each is put back in the send
        task's way. Past _SETTLE_LIMIT_S the connection is closed."""
        limit = self.config.h2_max_concurrent_streams
        deadline = self.clock.monotonic() + _SETTLE_LIMIT_S
        while not self.closed:
            over = [stream for stream in self.stream_buffers if stream not in self.streams]
            if len(over) < limit:
                return
            if self.clock.monotonic() > deadline:
                self.connection.close_connection(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
                with contextlib.suppress(TimeoutError):  # a client not reading gets no goodbye
                    async with asyncio.timeout(_GOODBYE_S):  # not wait_for: it can swallow a cancel
                        await self._flush()
                await self.send(Closed())
                await self.handle(Closed())  # closed here and now: no new stream, no "idle"
                return
            _ = self.connection.open_inbound_streams  # h2 forgets its closed streams as it counts
            for stream in over:
                with contextlib.suppress(MissingStreamError):
                    self.priority.unblock(stream)
            await self.has_data.set()
            await self.clock.sleep(_SETTLE_S)


class _Answered:
    """A stream already answered and let go of, whose client is still sending its body (a refused
    upload): its bytes go nowhere and its client is asked to stop sending (RST_STREAM NO_ERROR,
    RFC 9113, 8.1); Hypercorn then lets go of them for flow control as for any stream."""

    def __init__(self, connection: h2.connection.H2Connection, stream_id: int) -> None:
        self.connection = connection
        self.stream_id = stream_id

    async def handle(self, event: StreamEvent) -> None:
        if isinstance(event, Body):
            stream = self.connection.streams.get(self.stream_id)
            if stream is not None and stream.state_machine.state != h2.stream.StreamState.HALF_CLOSED_LOCAL:
                # The response's END_STREAM is not sent yet (the send task waits on the socket):
                # a reset now would cut the response short; a later DATA frame asks instead.
                return
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.connection.reset_stream(self.stream_id, h2.errors.ErrorCodes.NO_ERROR)


@dataclass(frozen=True)
class Stalled(Event):
    """To the connection's server: a response's client took nothing of it for WRITE_STALL_S with
    the connection's own window shut (every stream stuck), or with nothing shut but the socket; the
    connection is to be aborted (what it has not sent dropped), as a socket not read is. (A stream
    whose own window alone is shut is reset on its own: BoundedH2Protocol._stalled.)"""


class _Streams(dict):  # type: ignore[type-arg]
    """Hypercorn's streams by id. Hypercorn looks up the stream of every DATA frame, and a KeyError
    (a body still arriving after its response ended) ends the whole connection, every other call
    on it included: such a frame goes to an _Answered instead."""

    def __init__(self, connection: h2.connection.H2Connection, streams: dict[int, Any]) -> None:
        super().__init__(streams)
        self.connection = connection

    def __missing__(self, stream_id: int) -> _Answered:
        return _Answered(self.connection, stream_id)


def _drop_unread(stream: object) -> None:
    """Drops the request's body messages a stream's handler has not read (its queue holds at most
    max_app_queue_size of them), making room for the http.disconnect Hypercorn puts there next and
    letting go of the connection's reader if it waits to put one more."""
    queue = getattr(getattr(stream, "app_put", None), "__self__", None)
    if isinstance(queue, asyncio.Queue):
        while not queue.empty():
            queue.get_nowait()


class BoundedH11Protocol(H11Protocol):
    """Hypercorn's HTTP/1.1 connection, with room made for the disconnect it tells a request's
    handler at the request's end (as BoundedH2Protocol._close_stream does for a stream): a handler
    that answers without reading its body (/healthz, a file, the console) whose client sent more
    body chunks than its queue holds (a chunked body of 11 one-byte chunks) had its queue full, the
    connection's reader waiting to put one more and the put of http.disconnect waiting for ever.
    The request stayed in flight, so its connection was never closed for another (no credential
    needed: max_connections such connections held the port shut)."""

    async def _close_stream(self) -> None:
        _drop_unread(self.stream)
        await super()._close_stream()


def install() -> None:
    """Hypercorn's connections speak HTTP/2 through BoundedH2Protocol and HTTP/1.1 through
    BoundedH11Protocol from now on (its protocol wrapper picks the classes by these names, for
    HTTP/2 over TLS and in cleartext alike)."""
    hypercorn.protocol.H2Protocol = BoundedH2Protocol  # type: ignore[attr-defined,misc]
    hypercorn.protocol.H11Protocol = BoundedH11Protocol  # type: ignore[attr-defined,misc]


class _Budget:
    """A token bucket: `burst` at once, `per_s` a second after; wait() says how long to pay for
    what was spent past it."""

    def __init__(self, burst: float, per_s: float, clock: Clock) -> None:
        self.burst, self.per_s = burst, per_s
        self.clock = clock
        self.left = burst
        self.stamp = clock.monotonic()

    def spend(self, count: int = 1) -> None:
        self.left -= count

    def wait(self) -> float:
        now = self.clock.monotonic()
        self.left = min(self.burst, self.left + (now - self.stamp) * self.per_s)
        self.stamp = now
        return max(0.0, -self.left / self.per_s)
