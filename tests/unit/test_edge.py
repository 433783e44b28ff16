"""The serving edge: error mapping with safe messages, live health, reflection of real services only."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import cv2
import grpc
import numpy as np
import pytest
import redis.exceptions
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from render.projection.v1 import projection_service_pb2 as pb
from render.projection.v1 import projection_service_pb2_grpc as pb_grpc
from renderkit.edge import Dependency, Edge
from renderkit.errors import DependencyUnavailable, safe_message, status_details, unpack_detail

SERVICE = pb.DESCRIPTOR.services_by_name["ProjectionService"].full_name


def opencv_error() -> Exception:
    try:
        cv2.resize(np.zeros((0, 0), np.uint8), (0, 0))
    except cv2.error as exc:
        return exc
    raise AssertionError("cv2 accepted an empty image")


class Failing(pb_grpc.ProjectionServiceServicer):
    """Raises whatever the test sets."""

    def __init__(self) -> None:
        self.error: Exception = ValueError("unset")

    async def Project(self, request: pb.ProjectRequest, context: grpc.aio.ServicerContext) -> pb.ProjectResponse:  # type: ignore[type-arg]
        raise self.error


async def call(edge: Edge) -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.ProjectionServiceStub(channel).Project(pb.ProjectRequest(), timeout=5)
    return info.value


def test_escaping_exceptions_become_safe_statuses(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        servicer = Failing()
        edge = Edge(
            [SERVICE],
            listen="127.0.0.1:0",
            infrastructure=[(redis.exceptions.ConnectionError, "the job ledger")],
        )
        edge.add(lambda server: pb_grpc.add_ProjectionServiceServicer_to_server(servicer, server))
        await edge.start()
        try:
            servicer.error = opencv_error()  # its message holds OpenCV's source path
            bug = await call(edge)
            assert bug.code() == grpc.StatusCode.INTERNAL
            assert "an internal error occurred (reference " in (bug.details() or "")
            assert "cv2" not in (bug.details() or "") and "/" not in (bug.details() or "")

            servicer.error = redis.exceptions.ConnectionError("Error 111 connecting to 10.0.0.7:6379. Refused.")
            down = await call(edge)
            assert down.code() == grpc.StatusCode.UNAVAILABLE
            assert down.details() == "the job ledger is unavailable; retry in a moment"
            retry = unpack_detail(status_details(down.trailing_metadata()), error_details_pb2.RetryInfo)  # type: ignore[arg-type]
            assert isinstance(retry, error_details_pb2.RetryInfo) and retry.retry_delay.seconds == 1

            servicer.error = redis.exceptions.ConnectionError()  # no text: the log names its kind
            with caplog.at_level(logging.WARNING):
                await call(edge)
            assert caplog.messages[-1].endswith("the job ledger is unavailable (ConnectionError)")

            servicer.error = DependencyUnavailable("the segmentation model", retry_after_s=3)
            model = await call(edge)
            assert model.code() == grpc.StatusCode.UNAVAILABLE and "the segmentation model" in (model.details() or "")
        finally:
            await edge.stop(0.1)

    asyncio.run(body())


def test_a_guard_runs_before_every_call_and_its_handler_is_mapped_as_the_calls() -> None:
    """Edge(guard=): the check the gateway's authentication runs, inside the error mapping. The
    handler it hands back runs instead of the call's, and what that raises is mapped like a handler's."""

    async def body() -> None:
        servicer = Failing()
        servicer.error = ValueError("the servicer ran")
        seen: list[str] = []

        async def guard(handler: Any, details: grpc.HandlerCallDetails) -> Any:
            seen.append(details.method)
            if dict(details.invocation_metadata or ()).get("let-in") == "yes":
                return handler

            async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:  # type: ignore[type-arg]
                raise redis.exceptions.ConnectionError("the key store is away")

            return grpc.unary_unary_rpc_method_handler(
                refuse,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

        edge = Edge(
            [SERVICE],
            listen="127.0.0.1:0",
            infrastructure=[(redis.exceptions.ConnectionError, "the key store")],
            guard=guard,
        )
        edge.add(lambda server: pb_grpc.add_ProjectionServiceServicer_to_server(servicer, server))
        await edge.start()
        try:
            refused = await call(edge)
            assert refused.code() == grpc.StatusCode.UNAVAILABLE
            assert refused.details() == "the key store is unavailable; retry in a moment"
            async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.port}") as channel:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await pb_grpc.ProjectionServiceStub(channel).Project(
                        pb.ProjectRequest(), metadata=(("let-in", "yes"),), timeout=5
                    )
            assert info.value.code() == grpc.StatusCode.INTERNAL  # the servicer's own ValueError, mapped
            assert seen == [f"/{SERVICE}/Project"] * 2
        finally:
            await edge.stop(0.1)

    asyncio.run(body())


def test_safe_message_removes_what_a_caller_must_not_see() -> None:
    leaky = [
        ("Error 111 connecting to 127.0.0.1:6390. Connection refused.", "127.0.0.1"),
        ("redis.exceptions.ConnectionError: boom", "redis.exceptions"),
        ("Unexpected <class 'cv2.error'>: x", "<class"),
        ("OpenCV(4.10.0) /io/opencv/modules/imgproc/src/resize.cpp:4152: error", "/io/opencv"),
        ("failed to connect to all addresses; last error: ipv4:10.1.2.3:8001: refused", "10.1.2.3"),
        ("could not read /var/lib/render/storage/uploads/x: gone", "/var/lib"),
        ("ValueError: bad", "ValueError"),
        ("Traceback (most recent call last):\n  File x", "Traceback"),
        ("connect to [fd00::7]:6379 failed", "fd00::7"),
        # A review found these passing: a URL's password, and a host name with its port.
        ("HTTP 400: redis://:s3cretPass@redis-master.render.svc:6379/0 refused", "s3cretPass"),
        ("HTTP 400: upstream triton.render.svc:8001 timed out", "triton.render.svc"),
        ("proxy http://user:pw@internal-proxy:8080/v1 failed", "internal-proxy"),
    ]
    for text, secret in leaky:
        assert secret not in safe_message(text), text
    # Ordinary messages pass unchanged, long ones are bounded.
    for text in (
        "material_swap.photo.url: the server answered HTTP 404",
        "Step 2/4: estimating geometry",
        "webhook.events[0]: name STARTED, PROGRESS or COMPLETED",
        "the job started at 12:30 and ran 1:2",
    ):
        assert safe_message(text) == text
    assert len(safe_message("x" * 10_000)) <= 500


def test_health_follows_a_dependency_and_reflection_lists_only_real_services() -> None:
    async def body() -> None:
        up = {"redis": True, "provider": True}

        async def probe(name: str) -> bool:
            return up[name]

        edge = Edge(
            [SERVICE],
            listen="127.0.0.1:0",
            probe_interval_s=0.05,
            dependencies=[
                Dependency("redis", lambda: probe("redis")),
                Dependency("provider", lambda: probe("provider"), required=False, health_name=f"{SERVICE}/provider"),
            ],
        )
        edge.add(lambda server: pb_grpc.add_ProjectionServiceServicer_to_server(Failing(), server))
        await edge.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)

                async def status(service: str = "") -> int:
                    return (await health.Check(health_pb2.HealthCheckRequest(service=service))).status  # type: ignore[no-any-return]

                async def becomes(expected: int, service: str = "") -> None:
                    for _ in range(100):
                        if await status(service) == expected:
                            return
                        await asyncio.sleep(0.02)
                    raise AssertionError(f"{service or 'server'} never became {expected}")

                await becomes(health_pb2.HealthCheckResponse.SERVING)
                up["provider"] = False  # optional: only its own name changes
                await becomes(health_pb2.HealthCheckResponse.NOT_SERVING, f"{SERVICE}/provider")
                assert await status() == health_pb2.HealthCheckResponse.SERVING
                up["redis"] = False
                await becomes(health_pb2.HealthCheckResponse.NOT_SERVING)
                assert await status(SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
                up["redis"] = True
                await becomes(health_pb2.HealthCheckResponse.SERVING)

                names = await list_services(channel)
                assert f"{SERVICE}/provider" not in names and SERVICE in names
        finally:
            await edge.stop(0.1)

    asyncio.run(body())


async def list_services(channel: grpc.aio.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for reply in stub.ServerReflectionInfo(requests()):
        return {s.name for s in reply.list_services_response.service}
    return set()


def test_a_request_over_the_message_limit_is_refused_unread() -> None:
    async def body() -> None:
        edge = Edge([SERVICE], listen="127.0.0.1:0", max_receive_bytes=1024 * 1024)
        edge.add(lambda server: pb_grpc.add_ProjectionServiceServicer_to_server(Failing(), server))
        await edge.start()
        try:
            async with grpc.aio.insecure_channel(
                f"127.0.0.1:{edge.port}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
            ) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await pb_grpc.ProjectionServiceStub(channel).Project(
                        pb.ProjectRequest(photo=b"\0" * (8 * 1024 * 1024)), timeout=10
                    )
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            await edge.stop(0.1)

    asyncio.run(body())


def test_internal_servers_age_connections_out_so_clients_find_new_replicas() -> None:
    """A stage behind a headless Service: a gateway's round_robin channel re-resolves when a
    connection ends, so each ends after a while (calls in flight get the grace). Public ports keep
    theirs: their limits are per connection."""
    from renderkit.edge.server import server_options

    internal = dict(server_options(1 << 20))
    assert 0 < internal["grpc.max_connection_age_ms"] <= 300_000
    assert internal["grpc.max_connection_age_grace_ms"] >= internal["grpc.max_connection_age_ms"]
    public = dict(server_options(1 << 20, max_connections=100))
    assert "grpc.max_connection_age_ms" not in public and public["grpc.max_allowed_incoming_connections"] == 100


def test_a_call_grpc_ended_already_is_not_answered_again_nor_logged_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refusal's abort on a call gRPC had ended (its client reset it; a compressed message gRPC
    refused) raised, and the mapping logged it as a failure with a reference and aborted again,
    which gRPC logged as a servicer error: two tracebacks at ERROR for ~100 bytes a caller sent,
    without a credential (the hostile-caller review). Such a call ends as a cancel, at debug."""
    from renderkit.edge.errors import ErrorMapping

    class Ended:
        aborted = False

        def done(self) -> bool:
            return True

        async def abort(self, *args: object, **kwargs: object) -> None:
            Ended.aborted = True

    async def refused(request: object, context: object) -> None:
        raise RuntimeError("the abort found the call over")

    call = ErrorMapping()._unary("/render.v1.RenderService/GetJob", refused)
    with caplog.at_level("DEBUG"), pytest.raises(asyncio.CancelledError):
        asyncio.run(call(object(), Ended()))  # type: ignore[arg-type]
    assert not Ended.aborted
    assert not [r for r in caplog.records if r.levelno >= 30], [r.getMessage() for r in caplog.records]


def test_the_drain_steps_run_at_once_within_one_grace() -> None:
    """One after another, each with the whole grace (the HTTP port, the dispatcher, the webhook
    deliveries, then the server), a gateway's drain added up past its pod's grace (the kubelet's
    SIGKILL ended the rest). Each step here waits for the other to have begun: run in turn, the
    first would wait out its whole grace for the second."""

    async def scenario() -> list[str]:
        edge = Edge([SERVICE], listen="127.0.0.1:0")
        edge.add(lambda server: None)
        await edge.start()
        began = {name: asyncio.Event() for name in ("watches", "dispatcher")}
        seen: list[str] = []

        def step(name: str, other: str) -> Callable[[], Awaitable[None]]:
            async def drain() -> None:
                began[name].set()
                try:
                    await asyncio.wait_for(began[other].wait(), timeout=30)
                    seen.append(f"{name} saw {other} begin")
                except TimeoutError:
                    seen.append(f"{name} waited out its grace")

            return drain

        edge.on_drain.append(step("watches", "dispatcher"))
        edge.on_drain.append(step("dispatcher", "watches"))
        await edge.stop(30)
        return seen

    assert sorted(asyncio.run(scenario())) == ["dispatcher saw watches begin", "watches saw dispatcher begin"]


def test_no_call_the_server_takes_while_it_drains_is_cut_short() -> None:
    """A drain step that holds the grace (a dispatcher whose job runs past it) left the server's
    stop none of it: the gRPC port took calls all through the drain, then cut every one at once
    (a 4 MB upload begun 1 s before the end failed UNAVAILABLE "Cancelling all calls"). A call
    either runs to its end or is refused before its handler begins."""

    class Slow(pb_grpc.ProjectionServiceServicer):
        def __init__(self) -> None:
            self.begun = 0
            self.finished = 0

        async def Project(self, request: pb.ProjectRequest, context: grpc.aio.ServicerContext) -> pb.ProjectResponse:  # type: ignore[type-arg]
            self.begun += 1
            await asyncio.sleep(0.6)
            self.finished += 1
            return pb.ProjectResponse()

    async def scenario() -> tuple[Slow, str]:
        servicer = Slow()
        edge = Edge([SERVICE], listen="127.0.0.1:0")
        edge.add(lambda server: pb_grpc.add_ProjectionServiceServicer_to_server(servicer, server))
        await edge.start()

        async def busy_dispatcher() -> None:
            await asyncio.sleep(1.0)  # its job runs past the grace

        edge.on_drain.append(busy_dispatcher)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.port}") as channel:
            await channel.channel_ready()
            stopping = asyncio.ensure_future(edge.stop(1.0))
            await asyncio.sleep(0.7)  # into the drain, 0.6 s of work before its grace ends
            try:
                await pb_grpc.ProjectionServiceStub(channel).Project(pb.ProjectRequest(), timeout=5)
                outcome = "answered"
            except grpc.aio.AioRpcError as exc:
                outcome = exc.code().name
            await stopping
        return servicer, outcome

    servicer, outcome = asyncio.run(scenario())
    assert servicer.begun == servicer.finished, f"a call taken during the drain was cut ({outcome})"
