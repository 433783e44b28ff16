"""A bare grpc.aio server answering render.v1 SubmitRender with a fixed job: the submit benchmark's baseline.

It has the gateway's server options (renderkit.edge.server.server_options with the gateway's
default request limit) and nothing else: no interceptors, no health, no ledger. Its requests per
second are what gRPC in Python costs for this RPC on this machine, so the gateway's rate divided by
this one is the share left after what the gateway adds (validation, ledger round trips,
authentication, limits, credits).

    python -m benchmarks.echo --listen 127.0.0.1:50099 [--response reply.bin]

`--response` is a serialized SubmitRenderResponse to send back (the submit benchmark passes one the
gateway returned, so both targets send the same bytes); without it a small queued job is sent.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

import grpc

from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from renderkit.edge.server import server_options

log = logging.getLogger(__name__)

# The gateway's MAX_REQUEST_BYTES default, so both servers refuse and accept the same sizes.
GATEWAY_MAX_REQUEST_BYTES = 48 * 1024 * 1024
GRACE_S = 2.0


class EchoServicer(pb_grpc.RenderServiceServicer):  # type: ignore[misc]
    """SubmitRender answered with the same reply every time; every other RPC is UNIMPLEMENTED."""

    def __init__(self, reply: pb.SubmitRenderResponse) -> None:
        self.reply = reply

    async def SubmitRender(
        self,
        request: pb.SubmitRenderRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.SubmitRenderResponse:
        return self.reply


def fixed_reply(path: Path | None) -> pb.SubmitRenderResponse:
    """The reply read from a serialized SubmitRenderResponse, or a queued job when no file is given."""
    if path is not None:
        return pb.SubmitRenderResponse.FromString(path.read_bytes())
    return pb.SubmitRenderResponse(job=pb.Job(id="0" * 32, state=pb.JOB_STATE_QUEUED, kind="room_render"))


def create_server(listen: str, reply: pb.SubmitRenderResponse) -> grpc.aio.Server:
    """The echo server bound to `listen` (not started)."""
    server = grpc.aio.server(options=server_options(GATEWAY_MAX_REQUEST_BYTES))
    pb_grpc.add_RenderServiceServicer_to_server(EchoServicer(reply), server)
    if server.add_insecure_port(listen) == 0:
        raise OSError(f"could not bind {listen}")
    return server


async def serve(listen: str, reply: pb.SubmitRenderResponse) -> None:
    """Serves until SIGTERM or SIGINT, then stops with a short grace."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = create_server(listen, reply)
    await server.start()
    log.info("echo server listening on %s", listen)
    await stop.wait()
    await server.stop(GRACE_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", required=True, help="host:port to bind")
    parser.add_argument("--response", type=Path, help="a serialized SubmitRenderResponse to answer with")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s echo %(levelname)s %(message)s")
    asyncio.run(serve(args.listen, fixed_reply(args.response)))


if __name__ == "__main__":
    main()
