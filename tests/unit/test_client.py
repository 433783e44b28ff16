"""The client's watch: a broken stream is resumed after the last cursor seen (grpc_testing channel)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import grpc
import grpc_testing
import pytest

from render.v1 import render_service_pb2 as pb
from renderkit.client import RenderClient

SERVICE = pb.DESCRIPTOR.services_by_name["RenderService"]
WATCH = SERVICE.methods_by_name["WatchJob"]


def event(cursor: str, state: int) -> pb.WatchJobResponse:
    return pb.WatchJobResponse(event=pb.JobEvent(cursor=cursor, job_id="job-1", state=state))  # type: ignore[arg-type]


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def watch_in_thread(client: RenderClient) -> tuple[threading.Thread, list[pb.JobEvent], list[BaseException]]:
    events: list[pb.JobEvent] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for item in client.watch("job-1"):
                events.append(item)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, events, errors


def test_watch_resumes_after_the_last_cursor_when_the_stream_breaks() -> None:
    channel = grpc_testing.channel([SERVICE], grpc_testing.strict_real_time())
    client = RenderClient("unused", tenant="acme", channel=channel)
    thread, events, errors = watch_in_thread(client)

    metadata, request, rpc = channel.take_unary_stream(WATCH)
    assert (request.job_id, request.after) == ("job-1", "")
    assert ("x-tenant-id", "acme") in metadata
    rpc.send_response(event("1-0", pb.JOB_STATE_QUEUED))
    rpc.send_response(event("2-0", pb.JOB_STATE_RUNNING))
    wait_for(lambda: len(events) == 2)  # the client has read both before the stream breaks
    rpc.terminate((), grpc.StatusCode.UNAVAILABLE, "gateway restarted")

    _, request, rpc = channel.take_unary_stream(WATCH)
    assert request.after == "2-0"
    rpc.send_response(event("3-0", pb.JOB_STATE_SUCCEEDED))
    rpc.terminate((), grpc.StatusCode.OK, "")
    thread.join(5)
    assert not errors
    assert [e.cursor for e in events] == ["1-0", "2-0", "3-0"]


def test_watch_raises_errors_that_a_retry_cannot_fix() -> None:
    channel = grpc_testing.channel([SERVICE], grpc_testing.strict_real_time())
    thread, events, errors = watch_in_thread(RenderClient("unused", channel=channel))
    _, _, rpc = channel.take_unary_stream(WATCH)
    rpc.terminate((), grpc.StatusCode.NOT_FOUND, "job job-1 not found")
    thread.join(5)
    assert events == []
    with pytest.raises(grpc.RpcError) as info:
        raise errors[0]
    assert info.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
