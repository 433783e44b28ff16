"""A scripted render.v1.RenderService on loopback: real gRPC, failures on cue. It records what each
watch asked for (its cursor, outcome_only) but plays its plan whatever was asked.

Each WatchJob call plays the next plan of `watch_plans` (the last call's default is "rest"), and so
does each SubmitAndWatch after its submit:
a plan is a list of steps run in order against the job's event log, starting after the
request's cursor. Every server made by `serve` shares one FakeGateway, the way gateway
replicas share one ledger.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field

import grpc

from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from renderkit.errors import retry_info, rich_status

# A step: an int sends that many of the next events; KEEP_ALIVE sends a keep-alive; a float
# holds the stream silent that many seconds; REST sends every remaining event; a StatusCode
# (or a Fail, for details) ends the call with it.
KEEP_ALIVE = "keep-alive"
REST = "rest"


@dataclass(frozen=True)
class Fail:
    """Ends the call with a status, optionally with a google.rpc.RetryInfo in its details."""

    code: grpc.StatusCode
    retry_after_s: float | None = None


Step = int | float | str | grpc.StatusCode | Fail


def job_log(count: int = 4, message: str = "") -> list[pb.JobEvent]:
    """A job's events, cursors "1-0", "2-0", ...; the last one ends the job."""
    return [
        pb.JobEvent(
            cursor=f"{i}-0",
            job_id="job-1",
            state=pb.JOB_STATE_SUCCEEDED if i == count else pb.JOB_STATE_RUNNING,  # type: ignore[arg-type]
            progress=i / count,
            message=message or f"Step {i}/{count}",
        )
        for i in range(1, count + 1)
    ]


@dataclass
class WatchCall:
    """One WatchJob call as the fake saw it."""

    server: str
    after: str
    metadata: dict[str, str]
    ended: threading.Event = field(default_factory=threading.Event)
    outcome_only: bool = False


@dataclass
class FakeGateway:
    """The state every replica shares: the job's log, the scripts, and what was called."""

    log: list[pb.JobEvent] = field(default_factory=job_log)
    watch_plans: list[list[Step]] = field(default_factory=list)
    submit_failures: list[grpc.StatusCode] = field(default_factory=list)
    watches: list[WatchCall] = field(default_factory=list)
    submits: list[tuple[str, str]] = field(default_factory=list)  # (server, idempotency key)
    requests: list[pb.SubmitRenderRequest] = field(default_factory=list)  # each submit's request, as sent
    # GetOutput's answer: the file it announces, and the pieces of data it then sends.
    output: tuple[pb.OutputFile, list[bytes]] = field(default_factory=lambda: (pb.OutputFile(), []))
    output_silence_s: float = 0.0  # GetOutput says nothing this long first (a frozen replica)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_plan(self) -> list[Step]:
        with self.lock:
            return self.watch_plans.pop(0) if self.watch_plans else [REST]


class _Servicer(pb_grpc.RenderServiceServicer):
    def __init__(self, name: str, fake: FakeGateway) -> None:
        self.name = name
        self.fake = fake

    def WatchJob(self, request: pb.WatchJobRequest, context: grpc.ServicerContext) -> Iterator[pb.WatchJobResponse]:
        metadata = {k: str(v) for k, v in context.invocation_metadata()}
        call = WatchCall(self.name, request.after, metadata, outcome_only=request.outcome_only)
        context.add_callback(call.ended.set)  # type: ignore[attr-defined]
        with self.fake.lock:
            self.fake.watches.append(call)
        cursors = [e.cursor for e in self.fake.log]
        position = cursors.index(request.after) + 1 if request.after else 0
        for step in self.fake.next_plan():
            if isinstance(step, Fail | grpc.StatusCode):
                fail = step if isinstance(step, Fail) else Fail(step)
                if fail.retry_after_s is not None:
                    status = rich_status(fail.code, "busy", retry_info(fail.retry_after_s))
                    context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
                context.abort(fail.code, f"scripted {fail.code.name}")
            elif step == KEEP_ALIVE:
                yield pb.WatchJobResponse(keep_alive=True)
            elif isinstance(step, float):
                call.ended.wait(step)  # silent, but ends as soon as the client goes away
            else:
                count = len(self.fake.log) if step == REST else int(step)
                for event in self.fake.log[position : position + count]:
                    yield pb.WatchJobResponse(event=event)
                position += count

    def SubmitRender(self, request: pb.SubmitRenderRequest, context: grpc.ServicerContext) -> pb.SubmitRenderResponse:
        with self.fake.lock:
            self.fake.submits.append((self.name, request.idempotency_key))
            self.fake.requests.append(request)
            failure = self.fake.submit_failures.pop(0) if self.fake.submit_failures else None
        if failure is not None:
            context.abort(failure, f"scripted {failure.name}")
        return pb.SubmitRenderResponse(job=pb.Job(id="job-1", state=pb.JOB_STATE_QUEUED))

    def SubmitAndWatch(
        self, request: pb.SubmitAndWatchRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.SubmitAndWatchResponse]:
        """A submit (failing as scripted), then the next watch plan from the job's first event."""
        self.SubmitRender(request.request, context)
        watch = pb.WatchJobRequest(job_id="job-1", outcome_only=request.outcome_only)
        for reply in self.WatchJob(watch, context):
            yield (
                pb.SubmitAndWatchResponse(event=reply.event)
                if reply.HasField("event")
                else (pb.SubmitAndWatchResponse(keep_alive=True))
            )

    def GetJob(self, request: pb.GetJobRequest, context: grpc.ServicerContext) -> pb.GetJobResponse:
        return pb.GetJobResponse(job=pb.Job(id=request.job_id, state=self.fake.log[-1].state))

    def GetOutput(self, request: pb.GetOutputRequest, context: grpc.ServicerContext) -> Iterator[pb.GetOutputResponse]:
        announced, pieces = self.fake.output
        ended = threading.Event()
        context.add_callback(ended.set)
        ended.wait(self.fake.output_silence_s)  # silent, but ends as soon as the client goes away
        for index, piece in enumerate(pieces or [b""]):
            yield pb.GetOutputResponse(file=announced, data=piece) if index == 0 else pb.GetOutputResponse(data=piece)


@contextlib.contextmanager
def serve(
    fake: FakeGateway, names: Sequence[str] = ("a",), port: int = 0
) -> Iterator[dict[str, tuple[grpc.Server, int]]]:
    """One server per name on 127.0.0.1:port (0: any free one), all over the same fake; yields
    name -> (server, port)."""
    servers: dict[str, tuple[grpc.Server, int]] = {}
    try:
        for name in names:
            # Not SO_REUSEPORT (on by default): bound to port 0, two test servers could share a port.
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=[("grpc.so_reuseport", 0)])
            pb_grpc.add_RenderServiceServicer_to_server(_Servicer(name, fake), server)  # type: ignore[no-untyped-call]
            bound = server.add_insecure_port(f"127.0.0.1:{port}")
            server.start()
            servers[name] = (server, bound)
        yield servers
    finally:
        for server, _ in servers.values():
            server.stop(None).wait()


def target(servers: dict[str, tuple[grpc.Server, int]]) -> str:
    """A gRPC target naming every server: "ipv4:127.0.0.1:p1,127.0.0.1:p2"."""
    return "ipv4:" + ",".join(f"127.0.0.1:{port}" for _, port in servers.values())
