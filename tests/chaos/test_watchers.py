"""2,000 idle watchers on one gateway through 60 s of silence: few Redis connections, a small cost
per watcher, keep-alives on every stream, and every watcher gets its job's end."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import psutil
import redis

from devstack.launcher import Ports, Stack, free_port
from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from render_client.client import room_render, room_render_request
from tests.credentials import bearer

JOBS = 200
WATCHERS_PER_JOB = 10
SILENCE_S = 61.0
# Connections the watchers share: each carries at most MAX_STREAMS_PER_CONNECTION (100) streams.
CHANNELS = 25


def gateway_connections(redis_url: str, pid: int) -> int:
    """Redis connections held by one gateway process (its clients are named after its pid)."""
    client = redis.Redis.from_url(redis_url)
    try:
        return sum(1 for c in client.client_list() if f"-{pid}-" in c.get("name", ""))
    finally:
        client.close()


def test_two_thousand_idle_watchers_outlive_a_minute_of_silence(tmp_path: Path) -> None:
    # The stack's gateway only serves the API: its jobs stay queued, silent, until a dispatching
    # replica arrives after the silence.
    # One tenant holds every watch here: its cap on open watches (TENANT_WATCHES) is raised past them.
    env = {
        "DISPATCHER_CONCURRENCY": "0",
        "TENANT_RATE_PER_SECOND": "0",
        "TENANT_QUEUE_QUOTA": "0",
        "TENANT_WATCHES": str(4 * JOBS * WATCHERS_PER_JOB),
    }
    stack = Stack(data_dir=tmp_path, ports=Ports.free(), with_triton=False, env=env)
    with stack:
        gateway = psutil.Process(stack.process("gateway").pid)

        auth = bearer(stack.api_key)

        async def body() -> tuple[float, int, list[list[pb.WatchJobResponse]], float]:
            # Each channel its own connection (gRPC shares one among a process's channels otherwise).
            own = [("grpc.use_local_subchannel_pool", 1)]
            channels = [grpc.aio.insecure_channel(stack.gateway_address, options=own) for _ in range(CHANNELS)]
            try:
                stubs = [pb_grpc.RenderServiceStub(c) for c in channels]
                room = room_render_request(room_render("hall", dry_run=True))
                jobs = [(await stubs[0].SubmitRender(room, metadata=auth)).job.id for _ in range(JOBS)]
                await asyncio.sleep(1.0)
                rss_before = gateway.memory_info().rss
                calls = [
                    stubs[i % CHANNELS].WatchJob(pb.WatchJobRequest(job_id=jobs[i % JOBS]), metadata=auth)
                    for i in range(JOBS * WATCHERS_PER_JOB)
                ]
                replies: list[list[pb.WatchJobResponse]] = [[] for _ in calls]
                first = [asyncio.Event() for _ in calls]

                async def follow(index: int) -> None:
                    async for reply in calls[index]:
                        replies[index].append(reply)
                        first[index].set()
                        if reply.event.state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED):
                            return

                tasks = [asyncio.create_task(follow(i)) for i in range(len(calls))]
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in first)), 120)
                await asyncio.sleep(2.0)
                per_watcher = (gateway.memory_info().rss - rss_before) / len(calls)
                connections = gateway_connections(stack.redis_url, gateway.pid)
                opened = time.monotonic()
                await asyncio.sleep(SILENCE_S)
                silent_for = time.monotonic() - opened
                await asyncio.to_thread(
                    stack.add_gateway, "dispatcher", free_port(), 30.0, {"DISPATCHER_CONCURRENCY": "2"}
                )
                await asyncio.wait_for(asyncio.gather(*tasks), 180)
                return per_watcher, connections, replies, silent_for
            finally:
                for channel in channels:
                    await channel.close()

        per_watcher, connections, replies, silent_for = asyncio.run(body())

    assert silent_for >= 60.0
    assert connections < 20, f"the gateway holds {connections} Redis connections for 2,000 watchers"
    ends = [r[-1].event.state for r in replies]
    assert ends.count(pb.JOB_STATE_SUCCEEDED) == JOBS * WATCHERS_PER_JOB
    keep_alives = [sum(1 for reply in r if reply.keep_alive) for r in replies]
    assert min(keep_alives) >= 3  # about one per 15 s of silence, on every stream
    print(
        f"\nwatchers: {JOBS * WATCHERS_PER_JOB} idle watchers, {connections} Redis connections, "
        f"{per_watcher / 1024:.1f} KiB of gateway memory each, {min(keep_alives)}+ keep-alives each "
        f"over {silent_for:.0f} s of silence"
    )
