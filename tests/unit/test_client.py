"""The client's retries against real gRPC servers on loopback that break on cue (tests/gateway_fake.py):
watches resume after the last cursor, skip keep-alives, reconnect idle streams and give up within
their bound; submits retry only with an idempotency key; several replicas fail over."""

from __future__ import annotations

import math
import random
import socket
import threading
import time

import grpc
import pytest

from render.v1 import render_service_pb2 as pb
from render_client import client as client_module
from render_client.client import GaveUpError, RenderClient, RetryNotice, RetryPolicy
from tests.gateway_fake import KEEP_ALIVE, REST, Fail, FakeGateway, Step, job_log, serve, target

FAST = RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.05, give_up_after_s=5.0)
ALL = [e.cursor for e in job_log()]


def dead_address() -> str:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def client_of(address: str, stream_idle_timeout_s: float = 45.0) -> tuple[RenderClient, list[RetryNotice]]:
    """A client with quick retries, and the list its retry notices go to."""
    notices: list[RetryNotice] = []
    client = RenderClient(
        address, api_key="rk_test", retry=FAST, on_retry=notices.append, stream_idle_timeout_s=stream_idle_timeout_s
    )
    return client, notices


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ],
)
def test_a_watch_survives_a_stream_broken_with_any_retryable_code(code: grpc.StatusCode) -> None:
    fake = FakeGateway(watch_plans=[[2, code], [code], [1, code], [REST]])
    with serve(fake) as servers:
        client, notices = client_of(target(servers))
        with client:
            cursors = [e.cursor for e in client.watch("job-1", timeout=10)]
    assert cursors == ALL  # every event once, in order
    assert [w.after for w in fake.watches] == ["", "2-0", "2-0", "3-0"]
    assert all(w.metadata.get("authorization") == "Bearer rk_test" for w in fake.watches)
    assert [(n.code, n.attempt) for n in notices] == [(code, 1), (code, 2), (code, 1)]  # a stream that
    # delivered something counts as a connection, so the count starts again


@pytest.mark.parametrize(
    ("code", "reason"),
    [(grpc.StatusCode.RESOURCE_EXHAUSTED, "gateway busy"), (grpc.StatusCode.UNAVAILABLE, "gateway unavailable")],
)
def test_a_retry_waits_as_long_as_the_gateways_retry_info_asks(code: grpc.StatusCode, reason: str) -> None:
    fake = FakeGateway(watch_plans=[[1, Fail(code, retry_after_s=0.4)]])
    with serve(fake) as servers:
        client, notices = client_of(target(servers))
        started = time.monotonic()
        with client:
            cursors = [e.cursor for e in client.watch("job-1", timeout=10)]
    assert cursors == ALL
    assert [(n.reason, round(n.delay_s, 3)) for n in notices] == [(reason, 0.4)]
    assert time.monotonic() - started >= 0.4


def test_keep_alives_are_skipped_and_do_not_move_the_cursor() -> None:
    fake = FakeGateway(
        watch_plans=[[KEEP_ALIVE, 1, KEEP_ALIVE, KEEP_ALIVE, 1, KEEP_ALIVE, grpc.StatusCode.UNAVAILABLE]]
    )
    with serve(fake) as servers:
        client, _ = client_of(target(servers))
        with client:
            events = list(client.watch("job-1", timeout=10))
    assert [e.cursor for e in events] == ALL and all(e.job_id == "job-1" for e in events)
    assert [w.after for w in fake.watches] == ["", "2-0"]


def test_keep_alives_keep_a_quiet_stream_open() -> None:
    quiet = [step for _ in range(6) for step in (0.15, KEEP_ALIVE)]  # 0.9 s without an event
    fake = FakeGateway(watch_plans=[[1, *quiet, REST]])
    with serve(fake) as servers:
        client, notices = client_of(target(servers), stream_idle_timeout_s=0.5)
        with client:
            assert [e.cursor for e in client.watch("job-1", timeout=10)] == ALL
    assert notices == [] and len(fake.watches) == 1


def test_a_silent_stream_is_taken_for_dead_and_reopened_after_the_last_cursor() -> None:
    fake = FakeGateway(watch_plans=[[2, 30.0], [REST]])
    with serve(fake) as servers:
        client, notices = client_of(target(servers), stream_idle_timeout_s=0.3)
        started = time.monotonic()
        with client:
            cursors = [e.cursor for e in client.watch("job-1", timeout=10)]
        elapsed = time.monotonic() - started
    assert cursors == ALL
    assert [w.after for w in fake.watches] == ["", "2-0"]
    assert [(n.code, n.reason) for n in notices] == [(grpc.StatusCode.CANCELLED, "no message for 0.3 s")]
    assert 0.3 <= elapsed < 3
    assert fake.watches[0].ended.wait(2)  # the silent stream was cancelled, not left open


def watch_idle_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "render-watch-idle"]


def test_a_clients_streams_share_one_idle_watchdog_thread() -> None:
    """A thread started for every stream cost each short job ~0.2 ms of the caller's CPU."""
    fake = FakeGateway(watch_plans=[[REST] for _ in range(5)])
    with serve(fake) as servers:
        client, _ = client_of(target(servers))
        with client:
            threads = set()
            for _ in range(5):
                assert [e.cursor for e in client.watch("job-1", timeout=10)] == ALL
                threads.update(watch_idle_threads())
            assert len(threads) == 1
        next(iter(threads)).join(2)
    assert watch_idle_threads() == []  # gone with the client


def test_a_stream_silent_while_a_longer_limit_is_watched_is_still_reopened() -> None:
    """The shared thread sleeps until the earliest deadline it knows: a stream added with an earlier
    one wakes it."""
    fake = FakeGateway(watch_plans=[[1, 2.0, REST], [2, 30.0], [REST]])
    with serve(fake) as servers:
        client, notices = client_of(target(servers), stream_idle_timeout_s=30.0)
        with client:
            long_watch = client.watch("job-1", timeout=10)
            first = next(long_watch)  # its plan is taken, its 30 s deadline known to the thread
            started = time.monotonic()
            cursors = [e.cursor for e in client.watch("job-1", timeout=10, stream_idle_timeout_s=0.3)]
            elapsed = time.monotonic() - started
            assert [first.cursor, *(e.cursor for e in long_watch)] == ALL
    assert cursors == ALL and 0.3 <= elapsed < 1.5
    assert [n.reason for n in notices] == ["no message for 0.3 s"]


def test_time_the_caller_spends_on_an_event_is_not_idle_time() -> None:
    fake = FakeGateway(watch_plans=[[REST]])
    with serve(fake) as servers:
        client, notices = client_of(target(servers), stream_idle_timeout_s=0.2)
        with client:
            for _ in client.watch("job-1", timeout=10):
                time.sleep(0.4)
    assert notices == [] and len(fake.watches) == 1


def test_the_callers_timeout_ends_a_silent_watch_without_retrying() -> None:
    fake = FakeGateway(watch_plans=[[1, 30.0]])
    with serve(fake) as servers:
        client, notices = client_of(target(servers), stream_idle_timeout_s=10.0)
        started = time.monotonic()
        with client, pytest.raises(grpc.RpcError) as info:
            list(client.watch("job-1", timeout=0.5))
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.5 <= time.monotonic() - started < 2 and notices == [] and len(fake.watches) == 1


def test_an_unreachable_gateway_is_given_up_on_after_the_bound_with_every_retry_reported() -> None:
    notices: list[RetryNotice] = []
    started = time.monotonic()
    with (
        RenderClient(dead_address(), retry=RetryPolicy(give_up_after_s=2.0), on_retry=notices.append) as client,
        pytest.raises(GaveUpError) as info,
    ):
        list(client.watch("job-1"))
    elapsed = time.monotonic() - started
    assert 1.9 <= elapsed < 3.5
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "gave up watching job job-1" in str(info.value)
    assert len(notices) >= 3 and {n.code for n in notices} == {grpc.StatusCode.UNAVAILABLE}
    assert [n.attempt for n in notices] == list(range(1, len(notices) + 1))
    assert notices[0].delay_s <= 0.2 and notices[1].delay_s >= notices[0].delay_s  # exponential
    assert info.value.attempts == len(notices) + 1


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.OUT_OF_RANGE,
    ],
)
def test_a_code_a_retry_cannot_fix_raises_at_once(code: grpc.StatusCode) -> None:
    fake = FakeGateway(watch_plans=[[1, code]])
    seen: list[str] = []
    with serve(fake) as servers:
        client, notices = client_of(target(servers))
        with client, pytest.raises(grpc.RpcError) as info:
            for event in client.watch("job-1", timeout=10):
                seen.append(event.cursor)
    assert info.value.code() == code
    assert seen == ["1-0"] and notices == [] and len(fake.watches) == 1


def test_closing_the_client_ends_a_watch_without_retrying() -> None:
    fake = FakeGateway(watch_plans=[[1, 30.0]])
    with serve(fake) as servers:
        client, notices = client_of(target(servers))
        threading.Timer(0.3, client.close).start()
        with pytest.raises(grpc.RpcError) as info:
            list(client.watch("job-1", timeout=10))
    assert info.value.code() == grpc.StatusCode.CANCELLED and notices == []


def test_leaving_a_watch_early_ends_its_stream() -> None:
    fake = FakeGateway(watch_plans=[[1, 30.0]])
    with serve(fake) as servers:
        client, _ = client_of(target(servers))
        with client:
            events = client.watch("job-1", timeout=10)
            assert next(events).cursor == "1-0"
            events.close()  # type: ignore[attr-defined]
            assert fake.watches[0].ended.wait(2)


def test_submit_with_an_idempotency_key_retries_unavailable() -> None:
    fake = FakeGateway(submit_failures=[grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE])
    with serve(fake) as servers:
        client, notices = client_of(target(servers))
        with client:
            reply = client.submit(pb.SubmitRenderRequest(idempotency_key="k-1"))
    assert reply.job.id == "job-1" and [key for _, key in fake.submits] == ["k-1"] * 3
    assert [(n.code, n.attempt) for n in notices] == [
        (grpc.StatusCode.UNAVAILABLE, 1),
        (grpc.StatusCode.UNAVAILABLE, 2),
    ]


@pytest.mark.parametrize(
    ("key", "failure"),
    [("", grpc.StatusCode.UNAVAILABLE), ("k-1", grpc.StatusCode.RESOURCE_EXHAUSTED)],
    ids=["no key", "not unavailable"],
)
def test_submit_raises_when_a_retry_is_unsafe_or_useless(key: str, failure: grpc.StatusCode) -> None:
    fake = FakeGateway(submit_failures=[failure])
    with serve(fake) as servers:
        client, notices = client_of(target(servers))
        with client, pytest.raises(grpc.RpcError) as info:
            client.submit(pb.SubmitRenderRequest(idempotency_key=key))
    assert info.value.code() == failure and len(fake.submits) == 1 and notices == []


def test_submit_and_watch_skips_keep_alives_and_goes_on_as_a_watch_when_its_stream_breaks() -> None:
    fake = FakeGateway(watch_plans=[[KEEP_ALIVE, 2, KEEP_ALIVE, grpc.StatusCode.UNAVAILABLE], [REST]])
    with serve(fake) as servers:
        client, notices = client_of(target(servers))
        with client:
            cursors = [e.cursor for e in client.submit_and_watch(pb.SubmitRenderRequest(), timeout=10)]
    assert cursors == ALL and len(fake.submits) == 1  # submitted once, every event once
    assert [w.after for w in fake.watches] == ["", "2-0"]
    # Announced and backed off as a watch's reconnection is.
    assert [(n.code, n.attempt, n.reason) for n in notices] == [(grpc.StatusCode.UNAVAILABLE, 1, "connection lost")]


def test_a_stream_that_ends_before_its_job_is_reopened_after_the_last_cursor() -> None:
    """A stream that ends in order without the job's end (a proxy closing long streams) is a
    break: the watch goes on from the last cursor, and so does a SubmitAndWatch."""
    fake = FakeGateway(watch_plans=[[2], [1], [REST]])
    with serve(fake) as servers:
        client, notices = client_of(target(servers))
        with client:
            cursors = [e.cursor for e in client.watch("job-1", timeout=10)]
            assert cursors == ALL
            assert [w.after for w in fake.watches] == ["", "2-0", "3-0"]
            assert [n.reason for n in notices] == ["the stream ended before the job"] * 2
            fake.watch_plans = [[2], [REST]]
            assert [e.cursor for e in client.submit_and_watch(pb.SubmitRenderRequest(), timeout=10)] == ALL
            assert [w.after for w in fake.watches[3:]] == ["", "2-0"]


def test_streams_that_keep_ending_early_are_given_up_on_once() -> None:
    """A gateway whose streams keep ending in order without the job's end (and without a message)
    is given up on after the bound, with one plain GaveUpError naming the last failure."""
    fake = FakeGateway(watch_plans=[[0]] * 10_000)
    policy = RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.02, give_up_after_s=0.5)
    with (
        serve(fake) as servers,
        RenderClient(target(servers), api_key="rk_test", retry=policy) as client,
        pytest.raises(GaveUpError) as info,
    ):
        list(client.watch("job-1", timeout=10))
    message = str(info.value)
    assert message.count("gave up") == 1 and "the stream ended before the job did" in message
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_caller_waiting_for_the_outcome_asks_for_it_again_when_it_resumes() -> None:
    fake = FakeGateway(watch_plans=[[1, grpc.StatusCode.UNAVAILABLE], [REST], [REST]])
    with serve(fake) as servers:
        client, _ = client_of(target(servers))
        with client:
            events = list(client.submit_and_watch(pb.SubmitRenderRequest(), timeout=10, outcome_only=True))
            assert [(w.after, w.outcome_only) for w in fake.watches] == [("", True), ("1-0", True)]
            assert events[-1].state == pb.JOB_STATE_SUCCEEDED
            # wait() asks for the outcome alone too; watch() for every event unless told.
            assert client.wait("job-1", timeout=10).state == pb.JOB_STATE_SUCCEEDED
            list(client.watch("job-1", timeout=10))
    assert [w.outcome_only for w in fake.watches[2:]] == [True, False]


def test_submit_and_watch_resumes_a_stream_that_lasted_longer_than_the_retry_bound() -> None:
    """The bound on retrying counts from the last message, not from the call's start: a job
    followed for longer than it is still resumed when its stream breaks."""
    plan: list[Step] = [2, KEEP_ALIVE, 0.3, KEEP_ALIVE, 0.3, KEEP_ALIVE, 0.3, grpc.StatusCode.UNAVAILABLE]
    fake = FakeGateway(watch_plans=[plan, [REST]])
    policy = RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.05, give_up_after_s=0.5)
    with serve(fake) as servers, RenderClient(target(servers), retry=policy) as client:
        cursors = [e.cursor for e in client.submit_and_watch(pb.SubmitRenderRequest(), timeout=10)]
    assert cursors == ALL and [w.after for w in fake.watches] == ["", "2-0"]


def test_submit_and_watch_counts_silence_from_its_first_message() -> None:
    """Before the first message the request may still be uploading: no idle limit then."""
    fake = FakeGateway(watch_plans=[[0.5, REST]])
    with serve(fake) as servers:
        client, notices = client_of(target(servers), stream_idle_timeout_s=0.2)
        with client:
            cursors = [e.cursor for e in client.submit_and_watch(pb.SubmitRenderRequest(), timeout=10)]
    assert cursors == ALL and len(fake.submits) == 1 and notices == []


def test_submit_and_watch_goes_on_as_a_watch_after_silence_past_its_first_event() -> None:
    fake = FakeGateway(watch_plans=[[1, 1.0, REST], [REST]])
    with serve(fake) as servers:
        client, notices = client_of(target(servers), stream_idle_timeout_s=0.2)
        with client:
            cursors = [e.cursor for e in client.submit_and_watch(pb.SubmitRenderRequest(), timeout=10)]
    assert cursors == ALL and [w.after for w in fake.watches] == ["", "1-0"]
    assert [n.reason for n in notices] == ["no message for 0.2 s"]


@pytest.mark.parametrize("key", ["k-1", ""], ids=["with a key", "without"])
def test_submit_and_watch_bounds_the_wait_for_its_first_message(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Silent past FIRST_MESSAGE_S since the call began: made again with a key (the same job),
    else a clear error (DEADLINE_EXCEEDED, not a CANCELLED that looks like the caller's)."""
    monkeypatch.setattr(client_module, "FIRST_MESSAGE_S", 0.3)
    fake = FakeGateway(watch_plans=[[1.5, REST], [REST]])
    with serve(fake) as servers:
        client, notices = client_of(target(servers), stream_idle_timeout_s=0.1)
        with client:
            events = client.submit_and_watch(pb.SubmitRenderRequest(idempotency_key=key), timeout=10)
            if key:
                assert [e.cursor for e in events] == ALL
                assert [n.reason for n in notices] == ["no message within 0.3 s of the call"]
            else:
                with pytest.raises(GaveUpError) as info:
                    list(events)
                assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and notices == []
    assert len(fake.submits) == (2 if key else 1)


@pytest.mark.parametrize("key", ["k-1", ""], ids=["with a key", "without"])
def test_submit_and_watch_is_tried_again_before_its_first_event_only_with_a_key(key: str) -> None:
    fake = FakeGateway(submit_failures=[grpc.StatusCode.UNAVAILABLE])
    with serve(fake) as servers:
        client, notices = client_of(target(servers))
        with client:
            events = client.submit_and_watch(pb.SubmitRenderRequest(idempotency_key=key), timeout=10)
            if key:
                assert [e.cursor for e in events] == ALL
            else:
                with pytest.raises(grpc.RpcError) as info:
                    list(events)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(fake.submits) == (2 if key else 1)
    assert [n.code for n in notices] == ([grpc.StatusCode.UNAVAILABLE] if key else [])


def test_a_new_client_does_not_wait_out_an_open_clients_failed_connection() -> None:
    # gRPC shares connections between channels to the same address unless told not to: a client
    # made after a gateway came back on an address an open client had failed to reach inherited
    # that connection's reconnect backoff, and its first call failed with "Connection refused".
    address = dead_address()
    port = int(address.rsplit(":", 1)[1])
    with RenderClient(address, retry=RetryPolicy(give_up_after_s=0.3)) as stale:
        with pytest.raises(grpc.RpcError) as info:
            stale.submit(pb.SubmitRenderRequest(), timeout=1.0)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        fake = FakeGateway()
        with serve(fake, port=port), RenderClient(address) as fresh:
            assert fresh.submit(pb.SubmitRenderRequest(), timeout=2.0).job.id == "job-1"
    assert len(fake.submits) == 1


def test_submit_to_an_unreachable_gateway_gives_up_within_the_timeout() -> None:
    started = time.monotonic()
    with RenderClient(dead_address(), retry=RetryPolicy(give_up_after_s=30.0)) as client:
        with pytest.raises(GaveUpError) as info:
            client.submit(pb.SubmitRenderRequest(idempotency_key="k-1"), timeout=1.0)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(grpc.RpcError) as unkeyed:
            client.submit(pb.SubmitRenderRequest(), timeout=1.0)
        assert unkeyed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 2.5


def test_with_two_replicas_calls_continue_on_the_other_when_one_stops() -> None:
    fake = FakeGateway(watch_plans=[[2, 30.0]])
    with serve(fake, names=("a", "b")) as servers:
        client, notices = client_of(target(servers))
        with client:
            events = client.watch("job-1", timeout=10)
            assert [next(events).cursor for _ in range(2)] == ["1-0", "2-0"]
            first = fake.watches[0].server
            servers[first][0].stop(0)  # the replica serving the watch dies
            assert [e.cursor for e in events] == ALL[2:]
            survivor = "b" if first == "a" else "a"
            assert [(w.server, w.after) for w in fake.watches[1:]] == [(survivor, "2-0")]
            assert client.submit(pb.SubmitRenderRequest(idempotency_key="k-2")).job.id == "job-1"
            assert client.submit(pb.SubmitRenderRequest()).job.id == "job-1"
            assert client.get("job-1").state == pb.JOB_STATE_SUCCEEDED
    assert {server for server, _ in fake.submits} == {survivor}
    assert len(notices) >= 1


def test_backoff_doubles_to_its_cap_with_jitter() -> None:
    policy = RetryPolicy()
    rng = random.Random(7)
    for attempt, base in enumerate([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0], start=1):
        delays = [policy.backoff(attempt, rng) for _ in range(200)]
        assert base * 0.5 <= min(delays) < max(delays) <= base


def test_tls_is_off_by_default_and_root_certificates_imply_it() -> None:
    fake = FakeGateway()
    with serve(fake) as servers:
        with RenderClient(target(servers)) as plaintext:
            assert not plaintext.tls
            assert plaintext.get("job-1", timeout=5).id == "job-1"
        # A TLS client is refused in the handshake by a plaintext server.
        for options in ({"tls": True}, {"root_certificates": b"-----BEGIN CERTIFICATE-----\n"}):
            with RenderClient(target(servers), **options) as secure:  # type: ignore[arg-type]
                assert secure.tls
                with pytest.raises(grpc.RpcError) as info:
                    secure.get("job-1", timeout=5)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def test_tls_options_cannot_come_with_a_channel_of_ones_own() -> None:
    with grpc.insecure_channel(dead_address()) as channel:
        assert not RenderClient("unused", channel=channel).tls
        with pytest.raises(ValueError, match="tls and root_certificates"):
            RenderClient("unused", channel=channel, tls=True)


def test_a_download_is_checked_against_the_size_and_sha256_it_was_announced_with() -> None:
    """The bytes were joined and returned whatever they were: a stream cut short, or an object
    replaced while it was read, was saved as the output (a review found it)."""
    import hashlib

    from render_client.client import CorruptDownload

    whole = bytes(range(256)) * 4
    announced = pb.OutputFile(name="full", size_bytes=len(whole), sha256=hashlib.sha256(whole).hexdigest())
    for pieces, good in (([whole[:500], whole[500:]], True), ([whole[:400]], False), ([b"x" * len(whole)], False)):
        fake = FakeGateway(output=(announced, pieces))
        with serve(fake) as servers, client_of(target(servers))[0] as client:
            if good:
                assert client.download("job-1", "full") == whole
            else:
                with pytest.raises(CorruptDownload) as refused:
                    client.download("job-1", "full")
                assert refused.value.code() == grpc.StatusCode.DATA_LOSS


def test_a_download_from_a_silent_gateway_gives_up_after_the_idle_limit() -> None:
    """A gateway that takes the call and then sends nothing (frozen, or a proxy holding the reply)
    held download for ever (the client review): silence past stream_idle_timeout_s ends it."""
    fake = FakeGateway(output=(pb.OutputFile(name="full"), [b"x"]), output_silence_s=30)
    with serve(fake) as servers, client_of(target(servers), stream_idle_timeout_s=0.5)[0] as client:
        started = time.monotonic()
        with pytest.raises(GaveUpError) as info:
            client.download("job-1", "full")
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 10


@pytest.mark.parametrize("field", ["give_up_after_s", "initial_backoff_s", "jitter"])
def test_a_retry_policy_of_numbers_that_are_no_bound_is_refused(field: str) -> None:
    """NaN compares false with everything: a bound of NaN never ran out."""
    with pytest.raises(ValueError, match="finite"):
        RetryPolicy(**{field: float("nan")})


def test_reads_and_cancels_have_a_deadline_by_default() -> None:
    """A replica frozen (SIGSTOP, a VM paused) held get, list, cancel and wait's last read for as
    long as it stayed frozen: each call now carries a deadline unless its caller gives another."""
    import inspect

    from render_client.client import RenderClient

    for method in (RenderClient.get, RenderClient.list, RenderClient.cancel):
        timeout = inspect.signature(method).parameters["timeout"].default
        assert isinstance(timeout, float) and 0 < timeout <= 60, method.__name__


@pytest.mark.parametrize("limit", [math.inf, 1e10])
def test_a_watch_without_an_idle_limit_leaves_the_clients_other_streams_watched(limit: float) -> None:
    """The shared thread could not sleep that long: its wait raised OverflowError, the thread died,
    and no later stream of the client was ever cancelled when silent."""
    fake = FakeGateway(watch_plans=[[REST], [2, 30.0], [REST]])
    with serve(fake) as servers:
        client, notices = client_of(target(servers), stream_idle_timeout_s=0.3)
        with client:
            assert [e.cursor for e in client.watch("job-1", timeout=10, stream_idle_timeout_s=limit)] == ALL
            time.sleep(0.1)  # the thread has looked at the long limit
            started = time.monotonic()
            cursors = [e.cursor for e in client.watch("job-1", timeout=5)]
            elapsed = time.monotonic() - started
    assert cursors == ALL and elapsed < 2
    assert [(n.code, n.reason) for n in notices] == [(grpc.StatusCode.CANCELLED, "no message for 0.3 s")]
