"""The HTTP port's HTTP/2 protocol (gateway.http.streams.BoundedH2Protocol), driven in memory by a
real HTTP/2 client (the h2 library) against Hypercorn's own connection machinery: its stream bound
and pace, and that an ordinary client is served as Hypercorn's own protocol serves it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol.events import StreamClosed
from hypercorn.utils import wrap_app
from hyperframe.frame import Frame, HeadersFrame, RstStreamFrame

from gateway.http import streams
from gateway.http.streams import BoundedH2Protocol

_sleep = asyncio.sleep  # the real one, whatever a test replaces
REQUEST = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "gateway")]
Handler = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def answering(body: bytes, finished: list[int]) -> Handler:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
        finished.append(1)

    return app


class Connection:
    """A BoundedH2Protocol in a task group, fed what a client writes; what it writes goes back."""

    def __init__(self, protocol: BoundedH2Protocol, client: h2.connection.H2Connection) -> None:
        self.protocol, self.client = protocol, client
        self.written: list[bytes] = []

    async def send(self) -> None:
        """Hands the server what the client has to send, and the client what the server wrote."""
        for data in self.written:
            self.client.receive_data(data)
        self.written.clear()
        await self.protocol.handle(RawData(self.client.data_to_send()))


def _protocol(
    app: Handler,
    config: Config,
    group: TaskGroup,
    send: Callable[[Event], Awaitable[None]],
    clock: streams.Clock | None = None,
) -> BoundedH2Protocol:
    """A BoundedH2Protocol serving app in a task group, writing through send, as the port makes it
    (reading the time and waiting by `clock`, when given)."""
    made = BoundedH2Protocol if clock is None else type("Clocked", (BoundedH2Protocol,), {"clock": clock})
    return made(
        wrap_app(app, config.wsgi_max_body_size, "asgi"),  # type: ignore[arg-type]
        config,
        WorkerContext(None),
        group,
        {},  # type: ignore[arg-type]
        False,
        None,
        None,
        send,
    )


async def serving(
    app: Handler, body: Callable[[Connection], Awaitable[None]], limit: int = 100, clock: Clock | None = None
) -> list[str]:
    """Runs body against a fresh connection, then closes it; the names of the tasks still running
    half a second after the close (none, when every handler was let go)."""
    config = Config()
    config.accesslog = None
    config.h2_max_concurrent_streams = limit
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    written: list[bytes] = []

    async def send(event: Event) -> None:
        if isinstance(event, RawData):
            written.append(event.data)
            for _ in range(3):  # a write yields, as the port's does while the socket drains
                await _sleep(0)

    left: list[str] = []

    async def run() -> None:
        async with TaskGroup(asyncio.get_running_loop()) as group:
            protocol = _protocol(app, config, group, send, clock)
            await protocol.initiate()
            connection = Connection(protocol, client)
            connection.written = written
            await body(connection)
            await protocol.handle(Closed())
            await _sleep(0.5)
            left.extend(t.get_coro().__qualname__ for t in group._task_group._tasks)  # type: ignore[union-attr]
            for task in group._task_group._tasks:  # type: ignore[union-attr]
                task.cancel()

    await asyncio.wait_for(run(), 10)
    return left


def test_a_client_frame_as_a_response_ends_breaks_nothing() -> None:
    """The last write of a response yields (the port's writes wait for the socket); a frame of the
    client's handled meanwhile must not break the connection (a first version let go of the
    stream under Hypercorn's send task: a KeyError ended every stream of the connection)."""
    finished: list[int] = []
    pending: list[asyncio.Task[None]] = []

    async def body(connection: Connection) -> None:
        server = connection.protocol.connection
        end_stream = server.end_stream

        def ending(stream: int) -> None:  # as the response ends, the client opens its window
            end_stream(stream)
            connection.client.increment_flow_control_window(100)
            frame = RawData(connection.client.data_to_send())
            pending.append(asyncio.get_running_loop().create_task(connection.protocol.handle(frame)))

        server.end_stream = ending  # type: ignore[method-assign,assignment]
        connection.client.send_headers(1, REQUEST, end_stream=True)
        await connection.send()
        for i in range(20):
            connection.client.ping(b"%08d" % i)
            await connection.send()
            await _sleep(0)
        await asyncio.gather(*pending)

    assert asyncio.run(serving(answering(b"x" * 100, finished), body)) == []
    assert finished == [1] and pending


def test_a_handler_waiting_for_a_closed_client_to_read_is_let_go() -> None:
    """A client that opens no window and goes away left its handler waiting for ever in
    Hypercorn's own protocol, and with it the connection."""
    finished: list[int] = []

    async def body(connection: Connection) -> None:
        connection.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        connection.client.send_headers(1, REQUEST, end_stream=True)
        await connection.send()
        await asyncio.sleep(0.1)

    assert asyncio.run(serving(answering(b"x" * 100_000, finished), body)) == []


def test_priority_signals_put_nothing_in_the_tree() -> None:
    """Hypercorn put a stream in its priority tree for each PRIORITY frame, opened or not, and
    every stream's removal then cost time in proportion."""
    held: list[int] = []

    async def body(connection: Connection) -> None:
        held.append(len(connection.protocol.priority._streams))  # type: ignore[attr-defined]
        for stream in range(1, 1800, 2):
            connection.client.prioritize(stream, weight=16, depends_on=stream + 2)
        await connection.send()
        held.append(len(connection.protocol.priority._streams))  # type: ignore[attr-defined]

    assert asyncio.run(serving(answering(b"x", []), body)) == []
    assert held[1] == held[0]


class Clock:
    """The module's clock and sleep: a wait moves the clock on by what it asked, at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    @classmethod
    def installed(cls, monkeypatch: pytest.MonkeyPatch, **budgets: float) -> Clock:
        """A clock for the connections a test serves (`serving(..., clock=)`), with the module's
        budgets (RESETS_BURST=..., and so on) set. Not made the module's or the class's: a gateway
        another test left serving in this process read and waited by it too (593 waits counted
        where 40 were due)."""
        clock = cls()
        for name, value in budgets.items():
            monkeypatch.setattr(streams, name, value)
        return clock

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds >= 0.01:  # not the reader's look while streams are let go of
            self.waits.append(seconds)
        self.now += seconds
        await _sleep(0)


def test_a_client_that_resets_streams_is_read_at_its_budgets_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past RESETS_BURST streams ended early, the connection waits before taking in each next one
    for as long as RESETS_PER_S takes to pay for it; the streams that are over are let go of before
    each new one, so Hypercorn's tree stays within the connection's bound."""
    clock = Clock.installed(monkeypatch, RESETS_BURST=20.0, RESETS_PER_S=10.0)
    widest = [0]

    async def body(connection: Connection) -> None:
        for _ in range(60):
            stream = connection.client.get_next_available_stream_id()
            connection.client.send_headers(stream, REQUEST, end_stream=True)
            connection.client.reset_stream(stream)
            await connection.send()
            widest[0] = max(widest[0], len(connection.protocol.stream_buffers))

    assert asyncio.run(serving(answering(b"x" * 100, []), body, limit=8, clock=clock)) == []
    # 60 resets, 20 of them free: the other 40 each paid for by a wait of 1 / RESETS_PER_S.
    # (The reader's short looks while streams are let go of move the clock too: a little is free.)
    assert 35 <= len(clock.waits) <= 40 and all(w == pytest.approx(0.1, abs=0.01) for w in clock.waits), clock.waits
    assert widest[0] <= 8 + 1


def test_a_client_sending_requests_hypercorn_cannot_take_is_read_at_its_budgets_pace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request Hypercorn cannot take (a :path not ASCII) is reset on its own and counts against
    the reset budget: past RESETS_BURST the connection waits for each as for a client's reset (it
    spent the budget but never waited: such requests alone were read at full speed)."""
    clock = Clock.installed(monkeypatch, RESETS_BURST=20.0, RESETS_PER_S=10.0)
    malformed = [(b":method", b"GET"), (b":path", b"/\xff"), (b":scheme", b"http"), (b":authority", b"x")]

    async def body(connection: Connection) -> None:
        connection.client = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False
            )
        )
        connection.client.initiate_connection()
        for _ in range(60):
            connection.client.send_headers(connection.client.get_next_available_stream_id(), malformed, end_stream=True)
            await connection.send()

    assert asyncio.run(serving(answering(b"x", []), body, limit=8, clock=clock)) == []
    # 60 streams ended early, 20 of them free: the other 40 each paid for by 1 / RESETS_PER_S.
    assert 35 <= len(clock.waits) <= 40 and all(w == pytest.approx(0.1, abs=0.01) for w in clock.waits), clock.waits


def test_a_client_flooding_frames_that_move_nothing_is_read_at_its_budgets_pace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """WINDOW_UPDATE, SETTINGS, PING, PRIORITY and empty DATA frames cost the event loop and move no
    request on: one connection sending nothing else held every caller of either port at 0.24 s
    (p50). Past CONTROL_BURST of them the connection waits CONTROL_PER_S's time for each."""
    clock = Clock.installed(monkeypatch, CONTROL_BURST=128.0, CONTROL_PER_S=64.0)

    async def body(connection: Connection) -> None:
        for i in range(640):
            connection.client.increment_flow_control_window(1)
            connection.client.ping(b"%08d" % i)
        await connection.send()

    assert asyncio.run(serving(answering(b"x", []), body, clock=clock)) == []
    # 1,280 frames, 128 free: 1,152 / 64 = 18 s, waited before the read's 65th event is handled
    # (h2 counted every frame as it parsed the read).
    assert sum(clock.waits) == pytest.approx(1152 / 64, rel=0.05), clock.waits


def test_streams_cancelled_while_their_handlers_wait_leave_the_connection_serving() -> None:
    """The gateway's handlers send nothing once their client has gone (a watch, a call in flight):
    Hypercorn let go of such a stream's buffer only when its handler wrote again, so a first
    version, waiting for a connection's worth of them to go, waited for ever after that many
    cancelled calls. Cancelling three times the bound, each in its own read, leaves a new call
    served."""
    answered: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/answer":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        while (await receive())["type"] != "http.disconnect":  # a watch: waits, then says nothing
            pass

    async def body(connection: Connection) -> None:
        for _ in range(12):
            stream = connection.client.get_next_available_stream_id()
            connection.client.send_headers(stream, REQUEST, end_stream=True)
            await asyncio.wait_for(connection.send(), 5)
            await _sleep(0.01)
            connection.client.reset_stream(stream)
            await asyncio.wait_for(connection.send(), 5)
            await _sleep(0.01)
        stream = connection.client.get_next_available_stream_id()
        connection.client.send_headers(stream, [*REQUEST[:1], (":path", "/answer"), *REQUEST[2:]], end_stream=True)
        await asyncio.wait_for(connection.send(), 5)
        for _ in range(50):
            await _sleep(0.01)
            for data in connection.written:
                for event in connection.client.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        answered.append(event.stream_id)
            connection.written.clear()
            if answered:
                break

    assert asyncio.run(serving(app, body, limit=4)) == []
    assert answered == [25]


def test_frames_that_move_nothing_sent_in_small_reads_are_paced_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each read pays its debt when it is handled, however few frames it held."""
    clock = Clock.installed(monkeypatch, CONTROL_BURST=100.0, CONTROL_PER_S=50.0)

    async def body(connection: Connection) -> None:
        for i in range(300):
            connection.client.ping(b"%08d" % i)
            await connection.send()

    assert asyncio.run(serving(answering(b"x", []), body, clock=clock)) == []
    assert sum(clock.waits) == pytest.approx(200 / 50, rel=0.05), clock.waits


def test_frames_h2_takes_in_without_an_event_count_and_a_cut_up_upload_does_not() -> None:
    """Window updates for a stream gone make no event, yet cost the loop: each is counted as h2
    parses it. A request's data read a kilobyte at a time (its frames cut by the reads) costs
    nothing."""
    spent: list[float] = []

    async def body(connection: Connection) -> None:
        client, protocol = connection.client, connection.protocol
        # What is spent, not what time gives back: a busy machine's slow test refilled 3 of 300.
        protocol._control.per_s = 1e-9
        await connection.send()
        start = protocol._control.left
        client.send_headers(1, [(":method", "POST"), *REQUEST[1:]])
        for piece in range(3):
            client.send_data(1, b"u" * 10_000, end_stream=piece == 2)
        data = client.data_to_send()
        for at in range(0, len(data), 1000):  # 1,000-byte reads: every frame cut across several
            await protocol.handle(RawData(data[at : at + 1000]))
        spent.append(start - protocol._control.left)
        client.reset_stream(1)
        await connection.send()
        start = protocol._control.left
        # WINDOW_UPDATE (type 8) of 1 on the stream gone, as raw frames (its client's h2 would
        # refuse to send them).
        update = (4).to_bytes(3, "big") + bytes([0x8, 0]) + (1).to_bytes(4, "big") + (1).to_bytes(4, "big")
        await protocol.handle(RawData(update * 300))
        spent.append(start - protocol._control.left)

    assert asyncio.run(serving(answering(b"x", []), body)) == []
    assert spent[0] == pytest.approx(0, abs=2)  # a SETTINGS ack at most, not the upload
    assert spent[1] == pytest.approx(300, abs=2)


def test_what_a_review_found_stays_mended() -> None:
    """An empty DATA frame that ends a request is its progress, not a frame that moves nothing; a
    stream h2 resets because its client broke the protocol counts against the reset budget; a
    handler done after the connection closed reports no "idle" (which restarted the keep-alive)."""
    seen: dict[str, float] = {}
    reported: list[object] = []

    async def body(connection: Connection) -> None:
        client, protocol = connection.client, connection.protocol
        # What is spent, not what time gives back: a busy machine's slow test refilled 3 of 300.
        protocol._control.per_s = 1e-9
        await connection.send()
        start = protocol._control.left
        client.send_headers(1, [(":method", "POST"), *REQUEST[1:]])
        client.send_data(1, b"", end_stream=True)
        await connection.send()
        seen["control"] = start - protocol._control.left
        # DATA after END_STREAM on stream 3 (as raw frames: the client's h2 would refuse): h2 resets it.
        client.send_headers(3, REQUEST, end_stream=True)
        await connection.send()
        before = protocol._resets.left
        data = (1).to_bytes(3, "big") + bytes([0x0, 0]) + (3).to_bytes(4, "big") + b"x"
        await protocol.handle(RawData(data))
        seen["resets"] = before - protocol._resets.left
        await protocol.handle(Closed())
        protocol.send = lambda event: reported.append(event) or _sleep(0)  # type: ignore[assignment,method-assign,func-returns-value]
        await protocol.stream_send(StreamClosed(stream_id=1))

    asyncio.run(serving(answering(b"x", []), body))
    assert seen["control"] <= 1  # a SETTINGS ack at most, not the request's end
    assert seen["resets"] == 1
    assert reported == []


def test_a_stream_past_the_bound_is_refused_alone() -> None:
    """A client that opens more streams than the connection allows (one that sends before our
    SETTINGS reach it, or ignores them) has each stream past the bound refused with REFUSED_STREAM,
    which it may retry, while its other streams go on (h2 ended the whole connection). A refused
    stream's headers are decoded all the same: a later request that refers to them through the
    header compression's table is read as sent."""
    release = asyncio.Event()
    served: list[tuple[int, str]] = []
    refused: list[tuple[int, int]] = []
    answered: list[int] = []
    ended: list[object] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        probe = dict(scope["headers"]).get(b"x-probe", b"").decode()
        served.append((len(served), probe))
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def read(connection: Connection) -> None:
        for data in connection.written:
            for event in connection.client.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    answered.append(event.stream_id)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    ended.append(event)
        connection.written.clear()

    async def body(connection: Connection) -> None:
        client, protocol = connection.client, connection.protocol
        receive_frame = client._receive_frame

        def seen(frame: Frame) -> list[h2.events.Event]:  # resets of streams closed make no event
            if isinstance(frame, RstStreamFrame):
                refused.append((frame.stream_id, frame.error_code))
            return receive_frame(frame)

        client._receive_frame = seen  # type: ignore[method-assign]
        # Six streams in one read, before the client has read our SETTINGS (a bound of 4): the last
        # two, past it, carry a header the next request refers to through the table.
        for stream in range(1, 12, 2):
            extra = [("x-probe", "refused-then-used")] if stream > 7 else []
            client.send_headers(stream, [*REQUEST, *extra], end_stream=True)
        await protocol.handle(RawData(client.data_to_send()))
        await _sleep(0.05)
        read(connection)
        # Trailers on a refused stream, sent before its refusal arrived (raw: the client's h2 knows
        # it is reset), encoded through the same table.
        trailers = HeadersFrame(9, client.encoder.encode([("x-trailer", "late")]), flags=["END_HEADERS", "END_STREAM"])
        await protocol.handle(RawData(trailers.serialize()))
        read(connection)
        release.set()
        for _ in range(100):
            await _sleep(0.01)
            read(connection)
            if len(answered) == 4:
                break
        client.send_headers(13, [*REQUEST, ("x-probe", "refused-then-used")], end_stream=True)
        await connection.send()
        for _ in range(100):
            await _sleep(0.01)
            read(connection)
            if 13 in answered:
                break

    assert asyncio.run(serving(app, body, limit=4)) == []
    assert refused == [(9, 7), (11, 7), (9, 5)]  # REFUSED_STREAM, then STREAM_CLOSED
    assert sorted(answered) == [1, 3, 5, 7, 13] and not ended
    assert [probe for _, probe in served] == ["", "", "", "", "refused-then-used"]


def test_a_body_still_arriving_after_its_answer_leaves_the_other_streams_served() -> None:
    """The gateway answers an upload before its body has all come (too large, no credential): the
    client's next DATA frame on that stream, gone from Hypercorn's streams, raised a KeyError that
    ended the connection and every other call on it (the hostile-caller review). The late body goes
    nowhere, its client is asked to stop (RST_STREAM NO_ERROR), and stream 1 is answered."""
    post = [(":method", "POST"), (":scheme", "http"), (":authority", "gateway")]
    events: list[h2.events.Event] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":  # reads its whole body, then answers
            while (await receive()).get("more_body"):
                pass
        await send({"type": "http.response.start", "status": 200 if scope["path"] == "/slow" else 413, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    async def body(connection: Connection) -> None:
        client = connection.client

        async def exchange() -> None:  # Connection.send, keeping what the client hears
            for data in connection.written:
                events.extend(client.receive_data(data))
            connection.written.clear()
            await connection.protocol.handle(RawData(client.data_to_send()))

        client.send_headers(1, [*post, (":path", "/slow")])
        client.send_headers(3, [*post, (":path", "/early")])
        await exchange()
        await _sleep(0.05)  # stream 3 is answered and let go of
        await exchange()
        client.send_data(3, b"x" * 1000)  # its body, still on its way
        await exchange()
        client.send_data(1, b"done", end_stream=True)
        await exchange()
        await _sleep(0.05)
        await exchange()

    assert asyncio.run(serving(app, body)) == []
    answered = {e.stream_id: dict(e.headers)[b":status"] for e in events if isinstance(e, h2.events.ResponseReceived)}
    assert answered == {1: b"200", 3: b"413"}
    assert any(isinstance(e, h2.events.StreamReset) and e.stream_id == 3 and e.error_code == 0 for e in events)


def test_a_late_body_before_the_answer_has_ended_does_not_cut_it_short() -> None:
    """Hypercorn lets go of a stream before its send task has sent END_STREAM (the port's write
    still draining): DATA arriving then was answered with RST_STREAM, and the client got HEADERS
    and DATA and no end, a failed response (the diff's review). The reset waits for the end."""
    post = [(":method", "POST"), (":scheme", "http"), (":authority", "gateway"), (":path", "/upload")]
    heard: list[h2.events.Event] = []
    hit: list[bool] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-length", b"8")]})
        await send({"type": "http.response.body", "body": b"too big!"})  # answered before the body came

    async def main() -> None:
        config = Config()
        config.accesslog = None
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        client.initiate_connection()
        written: list[bytes] = []

        async def send(event: Event) -> None:
            if isinstance(event, RawData):
                written.append(event.data)
                await _sleep(0.05)  # the socket drains a little slowly

        async with TaskGroup(asyncio.get_running_loop()) as group:
            protocol = _protocol(app, config, group, send)
            await protocol.initiate()

            async def exchange() -> None:
                for data in written:
                    heard.extend(client.receive_data(data))
                written.clear()
                await protocol.handle(RawData(client.data_to_send()))

            client.send_headers(1, post)
            await exchange()
            for _ in range(400):  # until Hypercorn has let go of stream 1 but not yet ended it
                if 1 not in dict.keys(protocol.streams) and 1 in protocol.stream_buffers:
                    hit.append(True)
                    break
                await _sleep(0.001)
            client.send_data(1, b"x" * 1000)  # the upload's body, still on its way
            await exchange()
            await _sleep(0.5)
            await exchange()
            for data in written:
                heard.extend(client.receive_data(data))
            await protocol.handle(Closed())
            for task in group._task_group._tasks:  # type: ignore[union-attr]
                task.cancel()

    with contextlib.suppress(asyncio.CancelledError, BaseExceptionGroup):
        asyncio.run(asyncio.wait_for(main(), 10))
    assert hit, "the window between the stream let go and its end was not reached"
    assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == 1 for e in heard), heard
