"""Ordinary faults end nothing: Redis dying and coming back, Triton dying and coming back, silence on
a watch, lost replies under retry. Real redis-server and Triton processes, real gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import redis
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack import scenes
from devstack.launcher import free_port
from gateway.ledger import Ledger, TenantLimits, keys, progress_event
from gateway.ledger.connection import client_name, connect
from gateway.server import Gateway, create_server
from gateway.settings import GatewaySettings
from render.depth.v1 import depth_service_pb2 as depth_pb
from render.depth.v1 import depth_service_pb2_grpc as depth_grpc
from render.imaging.v1 import imaging_pb2
from render.projection.v1 import projection_service_pb2 as projection_pb
from render.projection.v1 import projection_service_pb2_grpc as projection_grpc
from render.segmentation.v1 import segmentation_service_pb2 as seg_pb
from render.segmentation.v1 import segmentation_service_pb2_grpc as seg_grpc
from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from render_client.client import RenderClient, material_swap_request, room_render, room_render_request
from renderkit import homography, imaging
from renderkit.edge import Edge
from renderkit.errors import status_details, unpack_detail
from renderkit.storage import LocalStorage, StorageError, StoredObject
from services.depth.server import create_server as create_depth
from services.generation.server import create_server as create_generation
from services.projection.server import create_server as create_projection
from services.segmentation.server import create_server as create_segmentation
from tests.conftest import (
    EmbeddedTriton,
    LoopThread,
    RedisServer,
    gateway_settings,
    generation_settings,
    stage_settings,
)
from tests.credentials import bearer, client_for, key_for
from tests.http_fixtures import serve

SCENE = scenes.room_scene(320, 240)
PHOTO = imaging.encode(SCENE.photo)[0]
SWATCH = imaging.encode(scenes.plank_texture(64))[0]
QUAD = [(float(x), float(y)) for x, y in SCENE.quad]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def api_only(
    start_gateway: Callable[[GatewaySettings], Gateway],
    redis_url: str,
    database: int,
    tmp_path: Path,
    stages: dict[str, str],
    **settings: Any,
) -> tuple[str, Gateway]:
    """A gateway that does not dispatch (its jobs stay queued) on a Redis database of its own,
    emptied first (no dispatching gateway uses it): the database's URL and the gateway."""
    url = f"{redis_url}/{database}"
    redis.Redis.from_url(url).flushdb()
    return url, start_gateway(gateway_settings(url, tmp_path, stages, dispatch=False, **settings))


def health(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        try:
            return (
                health_pb2_grpc.HealthStub(channel)
                .Check(  # type: ignore[no-any-return]
                    health_pb2.HealthCheckRequest(service=service), timeout=2
                )
                .status
            )
        except grpc.RpcError:
            return -1


def seconds_until(address: str, status: int, limit_s: float, service: str = "") -> float:
    """How long until a server reports the status (fails past the limit)."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        if health(address, service) == status:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{address} did not report {status} within {limit_s} s")


def assert_ledger_unavailable(error: grpc.RpcError) -> None:
    """UNAVAILABLE with when to retry, and nothing of Redis in it."""
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()  # type: ignore[attr-defined]
    assert error.details() == "the job ledger is unavailable; retry in a moment"  # type: ignore[attr-defined]
    retry = unpack_detail(status_details(error.trailing_metadata()), error_details_pb2.RetryInfo)  # type: ignore[attr-defined, arg-type]
    assert isinstance(retry, error_details_pb2.RetryInfo)


def test_health_follows_redis_and_the_gateway_comes_back_whole(
    stages: dict[str, str],
    own_redis: RedisServer,
    start_own_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path: Path,
) -> None:
    server = own_redis
    gateway = start_own_gateway(gateway_settings(server.url, tmp_path / "storage", stages, probe_interval_s=0.5))
    address = f"127.0.0.1:{gateway.port}"
    assert health(address) == SERVING
    key = key_for(server.url, "faults")
    with RenderClient(address, api_key=key) as client:
        before = client.wait(client.submit(material_swap_request(PHOTO, SWATCH, quad=QUAD)).job.id, timeout=60)
        assert before.state == pb.JOB_STATE_SUCCEEDED

        server.kill()
        assert seconds_until(address, NOT_SERVING, 5.0) <= 5.0
        assert health(address, "liveness") == SERVING  # unready, not dead: nothing should restart it
        # A submit while Redis is away: UNAVAILABLE, with when to retry, and nothing of Redis in it.
        with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as info:
            pb_grpc.RenderServiceStub(channel).SubmitRender(
                material_swap_request(PHOTO, SWATCH, quad=QUAD), timeout=10, metadata=bearer(key)
            )
        assert_ledger_unavailable(info.value)

        server.start()
        seconds_until(address, SERVING, 20.0)
        # The listeners came back: cancel notices and event notices are subscribed again.
        check = redis.Redis.from_url(server.url)
        subscribers = dict(check.pubsub_numsub(keys.CANCEL_CHANNEL, keys.REVOKED_KEYS_CHANNEL))
        check.close()
        assert subscribers[keys.CANCEL_CHANNEL.encode()] >= 1 and subscribers[keys.REVOKED_KEYS_CHANNEL.encode()] >= 1
        after = client.wait(client.submit(material_swap_request(PHOTO, SWATCH, quad=QUAD)).job.id, timeout=60)
        assert after.state == pb.JOB_STATE_SUCCEEDED, after.error.message


def test_redis_refusing_writes_is_unavailable_not_an_internal_error(
    stages: dict[str, str],
    own_redis: RedisServer,
    start_own_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path: Path,
) -> None:
    """Redis out of memory (maxmemory under noeviction; a full disk's MISCONF is the same kind of
    refusal) answers reads and refuses writes: a submit is UNAVAILABLE with when to retry, as
    with Redis away, and goes through once Redis takes writes again."""
    server = own_redis
    api = start_own_gateway(
        gateway_settings(server.url, tmp_path / "storage", stages, dispatch=False, redis_retry_s=0.5)
    )
    key = key_for(server.url, "full")
    request = room_render_request(room_render("kitchen", dry_run=True))
    check = redis.Redis.from_url(server.url)
    with grpc.insecure_channel(f"127.0.0.1:{api.port}") as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        stub.SubmitRender(request, timeout=10, metadata=bearer(key))
        size = check.dbsize()
        check.config_set("maxmemory", 1)
        try:
            with pytest.raises(grpc.RpcError) as info:
                stub.SubmitRender(request, timeout=10, metadata=bearer(key))
        finally:
            check.config_set("maxmemory", 0)
        assert_ledger_unavailable(info.value)
        assert check.dbsize() == size  # nothing of the refused submit was written
        assert stub.SubmitRender(request, timeout=10, metadata=bearer(key)).job.id
    check.close()


def test_a_gateway_drains_quickly_with_redis_away_and_its_watchers_go_at_once(
    stages: dict[str, str],
    own_redis: RedisServer,
    start_own_gateway: Callable[[GatewaySettings], Gateway],
    loop_thread: LoopThread,
    tmp_path: Path,
) -> None:
    """SIGTERM while Redis is down: the watches end UNAVAILABLE first (their clients go on at
    another replica), and the drain does not wait out the webhook worker's claim, which retries
    Redis for a lease (it took ~32 s, past a pod's grace)."""
    server = own_redis
    gateway = start_own_gateway(
        gateway_settings(server.url, tmp_path / "storage", stages, dispatch=False, redis_retry_s=0.5)
    )
    key = key_for(server.url, "draining")
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        job = stub.SubmitRender(room_render_request(room_render("hall", dry_run=True)), metadata=bearer(key))
        watch = stub.WatchJob(pb.WatchJobRequest(job_id=job.job.id), timeout=60, metadata=bearer(key))
        assert next(watch).event.state == pb.JOB_STATE_QUEUED
        server.kill()
        time.sleep(1.0)  # the webhook worker's claim is now waiting Redis out
        started = time.monotonic()
        draining = threading.Thread(target=loop_thread.run, args=(gateway.stop(5.0),), daemon=True)
        draining.start()
        with pytest.raises(grpc.RpcError) as info:
            for _ in watch:
                pass
        told = time.monotonic() - started
        draining.join(30)
        drained = time.monotonic() - started
    server.start()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert told < 2.0, f"the watch was told after {told:.1f} s"
    assert not draining.is_alive() and drained < 10.0, f"the drain took {drained:.1f} s"


def test_a_job_running_while_redis_restarts_succeeds(
    stages: dict[str, str],
    own_redis: RedisServer,
    start_own_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path: Path,
) -> None:
    server = own_redis
    # An API-only gateway to submit and watch, and a dispatching one whose lease is long
    # enough to wait a restart out.
    api = start_own_gateway(gateway_settings(server.url, tmp_path / "storage", stages, dispatch=False))
    big = scenes.room_scene(1920, 1080)
    photo = imaging.encode(big.photo)[0]
    quad = [(float(x), float(y)) for x, y in big.quad]
    with client_for(f"127.0.0.1:{api.port}", server.url, "faults") as client:
        job = client.submit(material_swap_request(photo, SWATCH, quad=quad, idempotency_key="blip-1")).job
        start_own_gateway(gateway_settings(server.url, tmp_path / "storage", stages, lease_s=10.0))
        seen = []
        restarted = False
        for event in client.watch(job.id, timeout=120):
            seen.append(event)
            if event.stage == pb.STAGE_DEPTH and not restarted:
                server.kill()  # SIGKILL, in the middle of the job
                time.sleep(1.5)
                server.start()
                restarted = True
        done = client.get(job.id)
    assert restarted and done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    check = redis.Redis.from_url(server.url)
    entries: Any = check.xrange(keys.events(job.id))
    stream = [entry_id.decode() for entry_id, _ in entries]
    check.close()
    assert [e.cursor for e in seen] == stream  # every event, once, in order


def test_a_watch_outlives_silence_and_keep_alives_flow(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path: Path,
) -> None:
    """Longer than redis-py's default 5 s socket timeout, which used to end every quiet watch."""
    url, api = api_only(start_gateway, redis_url, 10, tmp_path, stages, watch_keepalive_s=1.0)
    room = room_render("kitchen", dry_run=True)
    auth = bearer(key_for(url, "faults"))
    with grpc.insecure_channel(f"127.0.0.1:{api.port}") as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        job = stub.SubmitRender(room_render_request(room), metadata=auth).job
        replies = []
        started = time.monotonic()
        stream = stub.WatchJob(pb.WatchJobRequest(job_id=job.id), timeout=60, metadata=auth)
        for reply in stream:
            replies.append(reply)
            if time.monotonic() - started > 7 and len(replies) < 50 and not any(r.event.state > 1 for r in replies):
                start_gateway(gateway_settings(url, tmp_path, stages))  # a dispatcher arrives
            if reply.event.state == pb.JOB_STATE_SUCCEEDED:
                break
    keep_alives = [r for r in replies if r.keep_alive]
    assert len(keep_alives) >= 5 and all(not r.HasField("event") for r in keep_alives)
    assert replies[-1].event.state == pb.JOB_STATE_SUCCEEDED


def test_submit_and_watch_sends_keep_alives_without_an_event(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path: Path,
) -> None:
    url, api = api_only(start_gateway, redis_url, 21, tmp_path, stages, watch_keepalive_s=0.2)
    request = pb.SubmitAndWatchRequest(request=room_render_request(room_render("den", dry_run=True)))
    auth = bearer(key_for(url, "faults"))
    with grpc.insecure_channel(f"127.0.0.1:{api.port}") as channel:
        stream = pb_grpc.RenderServiceStub(channel).SubmitAndWatch(request, timeout=30, metadata=auth)
        replies = []
        for reply in stream:  # no dispatcher: the job stays queued, and keep-alives follow its event
            replies.append(reply)
            if sum(r.keep_alive for r in replies) == 3:
                break
        stream.cancel()
    assert replies[0].event.state == pb.JOB_STATE_QUEUED and replies[0].event.job_id
    assert [r.HasField("event") for r in replies[1:]] == [False] * 3 and all(r.keep_alive for r in replies[1:])


def test_many_watchers_share_one_reader(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path: Path,
) -> None:
    unlimited = TenantLimits(rate_per_s=0, queue_quota=0)
    url, api = api_only(
        start_gateway, redis_url, 11, tmp_path, stages, watch_keepalive_s=30.0, tenant_defaults=unlimited
    )
    address = f"127.0.0.1:{api.port}"

    auth = bearer(key_for(url, "faults"))

    async def body() -> None:
        # Four connections of their own: each carries at most MAX_STREAMS_PER_CONNECTION (100).
        own = [("grpc.use_local_subchannel_pool", 1)]
        channels = [grpc.aio.insecure_channel(address, options=own) for _ in range(4)]
        try:
            stubs = [pb_grpc.RenderServiceStub(channel) for channel in channels]
            room = room_render_request(room_render("hall", dry_run=True))
            jobs = [(await stubs[0].SubmitRender(room, metadata=auth)).job.id for _ in range(30)]
            streams = [
                stubs[i % 4].WatchJob(pb.WatchJobRequest(job_id=jobs[i % len(jobs)]), metadata=auth) for i in range(300)
            ]
            # Each replays its QUEUED event.
            firsts = await asyncio.wait_for(asyncio.gather(*(s.read() for s in streams)), 60)
            assert all(f.event.state == pb.JOB_STATE_QUEUED for f in firsts)
            assert api.hub.watchers == 300
            names = [c["name"] for c in redis.Redis.from_url(url).client_list()]
            assert names.count(client_name(api.redis)) < 20
            for s in streams:
                s.cancel()
        finally:
            for channel in channels:
                await channel.close()

    asyncio.run(body())


def test_scripts_apply_once_when_a_reply_is_lost(redis_url: str) -> None:
    """A retry repeats the same operation id (and job id): nothing is applied twice."""

    async def body() -> None:
        client = connect(redis_url + "/3")
        await client.flushdb()
        ledger = Ledger(client)
        try:
            from tests.integration.test_ledger import new_job

            new = new_job()
            await ledger.submit(new)
            await ledger.submit(new)  # the same job id again, as a retry after a lost reply sends it
            assert await client.xlen(keys.events(new.job_id)) == 1
            assert await client.llen(keys.queue(new.tenant)) == 1
            script = ledger.scripts["transition"]
            event = pb.JobEvent(job_id=new.job_id, message="Step 1/4")
            job_keys, args = ledger.transition_call(new.job_id, "", "", event, {"message": "Step 1/4"}, "op-1")
            assert await script(keys=job_keys, args=args) == b"ok"
            assert await script(keys=job_keys, args=args) == b"ok"
            assert await client.xlen(keys.events(new.job_id)) == 2
            # Steps written ahead of an event in the same call are part of its one operation.
            steps = [
                progress_event(new.job_id, stage=1, step=n, total_steps=4, progress=0.0, message=f"Step {n}/4")
                for n in (2, 3)
            ]
            job_keys, args = ledger.transition_call(
                new.job_id, "", "", steps[1].event, steps[1].fields, "op-2", before=steps[:1]
            )
            assert await script(keys=job_keys, args=args) == b"ok"
            assert await script(keys=job_keys, args=args) == b"ok"
            assert await client.xlen(keys.events(new.job_id)) == 4
        finally:
            await ledger.aclose()
            await client.flushdb()
            await client.aclose()

    asyncio.run(body())


def test_stage_health_follows_triton(triton: EmbeddedTriton, start_stage: Callable[[Callable[[], Edge]], Edge]) -> None:
    """The session's Triton is killed (its whole process group, as a crash) and started again on
    the same ports; the stages that use it follow."""
    fast = replace(stage_settings(triton.url), probe_interval_s=0.5)
    diffusion_only = replace(generation_settings(None, triton.url, providers=("triton",)), stage=fast)
    servers = {
        "segmentation": start_stage(lambda: create_segmentation(fast)),
        "depth": start_stage(lambda: create_depth(fast)),
        "projection": start_stage(lambda: create_projection(fast)),
        "generation": start_stage(lambda: create_generation(diffusion_only)),
    }
    addresses = {name: f"127.0.0.1:{server.port}" for name, server in servers.items()}
    for address in addresses.values():
        assert health(address) == SERVING
    diffusion = "render.generation.v1.GenerationService/triton"
    assert health(addresses["generation"], diffusion) == SERVING
    try:
        triton.kill()
        for address in addresses.values():
            assert seconds_until(address, NOT_SERVING, 5.0) <= 5.0
        assert health(addresses["generation"], diffusion) == NOT_SERVING
        # Asked for the model path meanwhile, the stages say UNAVAILABLE (the dispatcher retries)
        # instead of answering as if no model were deployed (a wrong plane, or a refusal).
        mask = imaging.encode_mask(SCENE.floor_mask)
        with grpc.insecure_channel(addresses["segmentation"]) as channel, pytest.raises(grpc.RpcError) as seg:
            seg_grpc.SegmentationServiceStub(channel).Segment(
                seg_pb.SegmentRequest(width=320, height=240, photo=PHOTO, surface="floor"), timeout=10
            )
        with grpc.insecure_channel(addresses["depth"]) as channel, pytest.raises(grpc.RpcError) as depth:
            depth_grpc.DepthServiceStub(channel).EstimatePlane(
                depth_pb.EstimatePlaneRequest(width=320, height=240, photo=PHOTO, mask_png=mask), timeout=10
            )
        # The projection's light: with the intrinsic model away, not silently the classical estimate.
        project = projection_pb.ProjectRequest(
            photo=PHOTO,
            swatch=SWATCH,
            mask_png=mask,
            homography=imaging_pb2.Homography(m=homography.to_list(SCENE.homography)),
            repeats_u=4,
            repeats_v=4,
        )
        with grpc.insecure_channel(addresses["projection"]) as channel, pytest.raises(grpc.RpcError) as projected:
            projection_grpc.ProjectionServiceStub(channel).Project(project, timeout=10)
        for failed in (seg.value, depth.value, projected.value):
            assert failed.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
            assert failed.details() == "the model server (Triton) is unavailable"  # type: ignore[attr-defined]
    finally:
        triton.start()
    for address in addresses.values():
        seconds_until(address, SERVING, 30.0)


def test_a_gateway_started_before_redis_waits_for_it(
    stages: dict[str, str], loop_thread: LoopThread, tmp_path: Path
) -> None:
    """What `make run` does when Redis is not up yet: the gateway waits, NOT_SERVING, instead of crashing."""
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis")
    settings = gateway_settings(server.url, tmp_path / "storage", stages, probe_interval_s=0.2)
    gateway = loop_thread.run(_started(settings))
    address = f"127.0.0.1:{gateway.port}"
    try:
        time.sleep(1.5)
        assert health(address) == NOT_SERVING
        server.start()
        seconds_until(address, SERVING, 20.0)
        with client_for(address, server.url, "faults") as client:
            done = client.wait(client.submit(material_swap_request(PHOTO, SWATCH, quad=QUAD)).job.id, timeout=60)
        assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    finally:
        loop_thread.run(gateway.stop(0.5))
        server.stop()


async def _started(settings: GatewaySettings) -> Gateway:
    gateway = create_server(settings)
    await gateway.start()
    return gateway


@contextlib.asynccontextmanager
async def _lone_dispatcher(
    redis_url: str, stages: dict[str, str], tmp_path: Path, storage: Any, **overrides: Any
) -> AsyncIterator[tuple[Ledger, Any]]:
    """A ledger on an emptied database and a dispatcher of its own (not started: a test drives its
    takes and runs), on the given storage and the session's stages (settings: `overrides`)."""
    from gateway.dispatcher import Dispatcher
    from gateway.stages import StageClients
    from gateway.subscriptions import Subscriptions

    client = connect(redis_url + "/12")
    await client.flushdb()
    ledger = Ledger(client)
    stage_clients = StageClients.connect(*(stages[n] for n in ("segmentation", "depth", "projection", "generation")))
    settings = gateway_settings(redis_url + "/12", tmp_path, stages, **overrides)
    try:
        yield ledger, Dispatcher(ledger, storage, stage_clients, settings, Subscriptions(client))
    finally:
        await stage_clients.close()
        await ledger.aclose()
        await client.flushdb()
        await client.aclose()


class ObservedStorage(LocalStorage):
    """Local storage that lists the keys it was asked to write and the folders to delete."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.put_keys: list[str] = []
        self.deleted: list[str] = []

    def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        self.put_keys.append(key)
        return super().put(key, data, content_type)

    def delete_prefix(self, prefix: str) -> int:
        self.deleted.append(prefix)
        return super().delete_prefix(prefix)


async def submit_stored_swap(ledger: Ledger, storage: LocalStorage, job_id: str) -> None:
    """Submits a quad's swap of the faults tenant as a submit with inline images records it: its
    photo and swatch stored as the job's uploads."""
    from gateway.ledger import NewJob

    inputs = {f"material_swap.{name}": f"uploads/{job_id}/{name}" for name in ("photo", "swatch")}
    storage.put(inputs["material_swap.photo"], PHOTO, "image/jpeg")
    storage.put(inputs["material_swap.swatch"], SWATCH, "image/jpeg")
    request = material_swap_request(PHOTO, SWATCH, quad=QUAD).SerializeToString()
    await ledger.submit(NewJob(job_id, "faults", "material_swap", request, inputs, "f", "", "", "", 4))


def test_an_ended_job_deletes_what_it_stored_and_lists_no_folder_it_never_wrote(
    redis_url: str, stages: dict[str, str], tmp_path: Path
) -> None:
    """After a job ends its dispatcher deletes the uploads its submit recorded and the work files
    of its runs. A first run that stored neither (a dry run, a small job) makes no storage call at
    all: listing two empty folders per job cost the dispatcher's loop two thread hops."""
    from gateway.ledger import NewJob

    async def body() -> None:
        storage = ObservedStorage(tmp_path)
        request = room_render_request(room_render("living room", dry_run=True)).SerializeToString()
        async with _lone_dispatcher(redis_url, stages, tmp_path, storage) as (ledger, dispatcher):
            for job_id, uploaded in (("dry-run", False), ("with-upload", True)):
                inputs: dict[str, str] = {}
                if uploaded:
                    inputs["room_render.materials.floor.swatch"] = f"uploads/{job_id}/swatch"
                    storage.put(inputs["room_render.materials.floor.swatch"], SWATCH, "image/jpeg")
                await ledger.submit(NewJob(job_id, "faults", "room_render", request, inputs, "f", "", "", "", 3))
                taken = await ledger.take(dispatcher.consumer, 30.0, frozenset())
                assert taken == (job_id, 1, "room_render")
                await dispatcher._run(taken)
                state = await ledger.state(job_id)
                assert state is not None and state.terminal
            # The dry run stored nothing and listed nothing; the other's upload is gone, and its
            # work folder (this first run wrote no work file) was not listed either.
            assert storage.deleted == ["uploads/with-upload/"]
            assert not (tmp_path / "uploads" / "with-upload").exists()
            assert await ledger.releases_due(10) == []  # noted by the end, struck off once deleted

    asyncio.run(body())


def test_a_dispatcher_dead_as_its_job_ended_leaves_its_folders_to_the_reaper(
    redis_url: str, stages: dict[str, str], tmp_path: Path
) -> None:
    """A dispatcher killed between its job's end and deleting the job's uploads left them in
    storage for good (a review found it): the end notes them in the same step, and a reaper
    deletes them."""
    from gateway.ledger import NewJob

    async def body() -> None:
        storage = ObservedStorage(tmp_path)
        request = room_render_request(room_render("living room", dry_run=True)).SerializeToString()
        async with _lone_dispatcher(redis_url, stages, tmp_path, storage) as (ledger, dispatcher):
            inputs = {"room_render.materials.floor.swatch": "uploads/dies/swatch"}
            storage.put(inputs["room_render.materials.floor.swatch"], SWATCH, "image/jpeg")
            await ledger.submit(NewJob("dies", "faults", "room_render", request, inputs, "f", "", "", "", 3))
            taken = await ledger.take(dispatcher.consumer, 30.0, frozenset())
            assert taken is not None

            async def dead(job_id: str, **_: Any) -> None:  # the process is gone before it deletes
                return None

            dispatcher._release_if_ended = dead  # type: ignore[method-assign]
            await dispatcher._run(taken)
            state = await ledger.state("dies")
            assert state is not None and state.terminal
            assert (tmp_path / "uploads" / "dies").exists()
            assert await ledger.releases_due(10) == ["uploads/dies/"]
            await dispatcher._release_due()  # another replica's reaper
            assert not (tmp_path / "uploads" / "dies").exists()
            assert await ledger.releases_due(10) == []

    asyncio.run(body())


def test_a_reapers_look_goes_on_while_it_finds_a_full_page_of_due_folders(
    redis_url: str, stages: dict[str, str], tmp_path: Path
) -> None:
    """A look deleted 20 folders every quarter of a lease (2.7 a second), and each cancel notes two
    or three: a tenant cancelling more than ~1.3 jobs a second grew the set without bound (the soak
    review). A full page is followed by another at once."""

    async def body() -> None:
        storage = ObservedStorage(tmp_path)
        async with _lone_dispatcher(redis_url, stages, tmp_path, storage) as (ledger, dispatcher):
            for n in range(75):
                storage.put(f"work/j{n}/checkpoint", b"x", "application/octet-stream")
                await ledger.defer_release(f"work/j{n}/")
            await dispatcher._release_due()
            assert await ledger.releases_due(10) == []
            assert not any((tmp_path / "work").iterdir())

    asyncio.run(body())


def test_an_upload_whose_delete_fails_is_deleted_later(redis_url: str, stages: dict[str, str], tmp_path: Path) -> None:
    """A customer's photo must not stay in storage because the storage failed once when its job
    ended: the folder is noted in the ledger and a reaper's look deletes it once storage works."""
    from gateway.ledger import NewJob
    from renderkit.storage import StorageError

    class FailingOnce(ObservedStorage):
        failures = 2  # the job's own delete and the first later look

        def delete_prefix(self, prefix: str) -> int:
            if self.failures:
                self.failures -= 1
                raise StorageError("the storage is unavailable")
            return super().delete_prefix(prefix)

    async def body() -> None:
        storage = FailingOnce(tmp_path)
        request = room_render_request(room_render("den", dry_run=True)).SerializeToString()
        async with _lone_dispatcher(redis_url, stages, tmp_path, storage) as (ledger, dispatcher):
            job_id = "kept-upload"
            inputs = {"room_render.materials.floor.swatch": f"uploads/{job_id}/swatch"}
            storage.put(inputs["room_render.materials.floor.swatch"], SWATCH, "image/jpeg")
            await ledger.submit(NewJob(job_id, "faults", "room_render", request, inputs, "f", "", "", "", 3))
            taken = await ledger.take(dispatcher.consumer, 30.0, frozenset())
            assert taken is not None
            await dispatcher._run(taken)
            assert (tmp_path / "uploads" / job_id / "swatch").exists()
            assert await ledger.releases_due(10) == [f"uploads/{job_id}/"]
            await dispatcher._release_due()  # the storage still fails: it stays due
            assert await ledger.releases_due(10) == [f"uploads/{job_id}/"]
            await dispatcher._release_due()
            assert not (tmp_path / "uploads" / job_id).exists()
            assert await ledger.releases_due(10) == []

    asyncio.run(body())


def test_a_job_cancelled_as_it_ends_keeps_no_outputs(redis_url: str, stages: dict[str, str], tmp_path: Path) -> None:
    """A cancel that lands after the outputs are stored and before the job's end is recorded: the
    job is CANCELLED, its result names no output, and the files it stored are deleted."""

    async def body() -> None:
        storage = ObservedStorage(tmp_path)
        async with _lone_dispatcher(redis_url, stages, tmp_path, storage) as (ledger, dispatcher):
            job_id = "cancelled-late"
            await submit_stored_swap(ledger, storage, job_id)
            succeed = dispatcher.ledger.succeed

            async def cancelled_first(*args: Any, **kwargs: Any) -> None:
                assert await ledger.cancel(job_id)
                await succeed(*args, **kwargs)

            dispatcher.ledger.succeed = cancelled_first
            taken = await ledger.take(dispatcher.consumer, 30.0, frozenset())
            assert taken is not None
            await dispatcher._run(taken)
            stored = await ledger.get(job_id)
            assert stored is not None and stored.job.state == pb.JOB_STATE_CANCELLED
            assert not stored.job.result.outputs
            assert any(key.startswith(f"renders/faults/-/{job_id}/") for key in storage.put_keys)  # they were written
            assert not (tmp_path / "renders" / "faults" / "-" / job_id).exists()

    asyncio.run(body())


def test_a_swap_stores_its_render_once_at_its_outputs(redis_url: str, stages: dict[str, str], tmp_path: Path) -> None:
    """The last projection's answer is the job's render: it is stored at the outputs' keys and not
    again as a checkpoint (at 4K that was a second upload of ~1 MB). The stage before it still
    checkpoints, and so does a variant's projection that another follows."""
    from gateway.ledger import NewJob

    async def body() -> None:
        storage = ObservedStorage(tmp_path)
        async with _lone_dispatcher(redis_url, stages, tmp_path, storage) as (ledger, dispatcher):
            job_id = "stored-once"
            inputs = {
                "material_swap.photo": f"uploads/{job_id}/photo",
                "material_swap.swatch": f"uploads/{job_id}/swatch",
                "material_swap.variant_swatches[0]": f"uploads/{job_id}/variant",
            }
            for field_path, key in inputs.items():
                storage.put(key, PHOTO if field_path.endswith("photo") else SWATCH, "image/jpeg")
            storage.put_keys.clear()
            request = material_swap_request(PHOTO, SWATCH, quad=QUAD, variant_swatches=[SWATCH]).SerializeToString()
            await ledger.submit(NewJob(job_id, "faults", "material_swap", request, inputs, "f", "", "", "", 4))
            taken = await ledger.take(dispatcher.consumer, 30.0, frozenset())
            assert taken == (job_id, 1, "material_swap")
            await dispatcher._run(taken)
            stored = await ledger.get(job_id)
            assert stored is not None
            assert stored.job.state == pb.JOB_STATE_SUCCEEDED, stored.job.error.message
            outputs = {o.name: o.uri for o in stored.job.result.outputs}
            assert set(outputs) == {"full", "preview", "v1-full", "v1-preview"}
            assert sorted(storage.put_keys) == sorted(uri.removeprefix("local:") for uri in outputs.values())
            assert set(await ledger.checkpoints(job_id)) == {"projection"}  # a quad's plane is not a call

            # A render that a refinement takes next stays a checkpoint (the refinement may be
            # charged: a resumed job must not need it twice). No provider here: the refinement fails.
            job_id = "refined"
            inputs = {k: v.replace("stored-once", job_id) for k, v in inputs.items() if "variant" not in k}
            for field_path, key in inputs.items():
                storage.put(key, PHOTO if field_path.endswith("photo") else SWATCH, "image/jpeg")
            request = material_swap_request(PHOTO, SWATCH, quad=QUAD, refine=True).SerializeToString()
            await ledger.submit(NewJob(job_id, "faults", "material_swap", request, inputs, "f", "", "", "", 5))
            taken = await ledger.take(dispatcher.consumer, 30.0, frozenset())
            assert taken == (job_id, 1, "material_swap")
            await dispatcher._run(taken)
            refined = await ledger.get(job_id)
            assert refined is not None and refined.job.error.code == pb.ERROR_CODE_PROVIDER_UNAVAILABLE
            assert "projection" in await ledger.checkpoints(job_id)

    asyncio.run(body())


def test_a_quads_plane_needs_no_depth_stage(redis_url: str, stages: dict[str, str], tmp_path: Path) -> None:
    """A quad's plane is arithmetic the gateway does itself: a swap given one renders with the
    depth stage unreachable, and its plane is the one the depth stage would have answered."""
    from renderkit.planes import quad_plane

    async def body() -> None:
        storage = ObservedStorage(tmp_path)
        unreachable = {**stages, "depth": f"127.0.0.1:{free_port()}"}
        # Were the stage called, the job would fail within its 5 s budget.
        async with _lone_dispatcher(redis_url, unreachable, tmp_path, storage, job_timeout_s=5.0) as (
            ledger,
            dispatcher,
        ):
            job_id = "no-depth"
            await submit_stored_swap(ledger, storage, job_id)
            taken = await ledger.take(dispatcher.consumer, 30.0, frozenset())
            assert taken == (job_id, 1, "material_swap")
            await dispatcher._run(taken)
            stored = await ledger.get(job_id)
            assert stored is not None
            assert stored.job.state == pb.JOB_STATE_SUCCEEDED, stored.job.error.message
            with grpc.insecure_channel(stages["depth"]) as channel:
                answer = depth_grpc.DepthServiceStub(channel).EstimatePlane(
                    depth_pb.EstimatePlaneRequest(
                        width=SCENE.photo.shape[1],
                        height=SCENE.photo.shape[0],
                        quad=[imaging_pb2.Point(x=x, y=y) for x, y in QUAD],
                    ),
                    timeout=10,
                )
            result = stored.job.result
            assert (result.geometry_source, result.focal_source) == (answer.source, answer.focal_source)
            assert answer.source == "quad"
            assert result.focal_length_px == pytest.approx(answer.focal_length_px, rel=1e-9)
            local = quad_plane(np.array(QUAD), SCENE.photo.shape[1], SCENE.photo.shape[0])
            assert list(local.homography.m) == pytest.approx(list(answer.homography.m), rel=1e-9)

    asyncio.run(body())


def test_a_render_an_earlier_run_checkpointed_is_used_not_made_again(
    redis_url: str, stages: dict[str, str], tmp_path: Path
) -> None:
    """A swap's last render is no longer checkpointed, but one an earlier run (or an older gateway)
    did checkpoint is still what a resumed run stores: the projection is not called again."""

    earlier = imaging.encode(np.full((240, 320, 3), (30, 160, 90), np.uint8))[0]  # not a render of PHOTO
    render = projection_pb.ProjectResponse(
        images=[imaging_pb2.EncodedImage(name="full", data=earlier, content_type="image/jpeg", width=320, height=240)]
    )

    async def body() -> None:
        storage = LocalStorage(tmp_path)
        async with _lone_dispatcher(redis_url, stages, tmp_path, storage) as (ledger, dispatcher):
            job_id = "resumed-render"
            await submit_stored_swap(ledger, storage, job_id)
            taken = await ledger.take(dispatcher.consumer, 30.0, frozenset())
            assert taken is not None
            await ledger.save_checkpoint(job_id, dispatcher.consumer, "projection", render.SerializeToString())
            await dispatcher._run(taken.unread())  # as a run after the take would find it
            stored = await ledger.get(job_id)
            assert stored is not None
            assert stored.job.state == pb.JOB_STATE_SUCCEEDED, stored.job.error.message
            outputs = [(o.name, storage.get(o.uri.removeprefix("local:"))) for o in stored.job.result.outputs]
            assert outputs == [("full", earlier)]  # a new render would be full and preview, of PHOTO

    asyncio.run(body())


def test_a_checkpoint_upload_under_way_when_the_job_fails_is_waited_for_and_cleaned_up(
    redis_url: str, stages: dict[str, str], tmp_path: Path
) -> None:
    """A downloaded photo's checkpoint is being written to storage when the swatch's download
    fails: the job waits for the write (a thread cannot be stopped) before it ends, so the end's
    clean-up of its work folder finds the file instead of the file landing after it."""
    from gateway.ledger import NewJob
    from renderkit.fetch import FetchPolicy

    writing = threading.Event()

    class SlowWork(LocalStorage):
        def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
            if key.startswith("work/"):
                writing.set()
                time.sleep(1.0)
            return super().put(key, data, content_type)

    noise = np.random.default_rng(5).integers(0, 255, (768, 1024, 3), np.uint8)
    photo = imaging.encode(noise, quality=95)[0]
    assert len(photo) > 512 * 1024  # over the inline limit: its checkpoint goes to storage
    routes = {"/photo.jpg": (200, {"Content-Type": "image/jpeg"}, photo)}

    def fail_once_the_photo_is_being_written(path: str) -> None:
        if path == "/swatch.jpg":
            writing.wait(10)

    async def body(base: str) -> None:
        storage = SlowWork(tmp_path)
        policy = FetchPolicy(allow_private=True, timeout_s=10)
        async with _lone_dispatcher(redis_url, stages, tmp_path, storage, fetch=policy) as (ledger, dispatcher):
            job_id = "failed-mid-write"
            request = material_swap_request(f"{base}/photo.jpg", f"{base}/swatch.jpg", quad=QUAD).SerializeToString()
            await ledger.submit(NewJob(job_id, "faults", "material_swap", request, {}, "f", "", "", "", 4))
            taken = await ledger.take(dispatcher.consumer, 30.0, frozenset())
            assert taken == (job_id, 1, "material_swap")
            await dispatcher._run(taken)
            stored = await ledger.get(job_id)
            assert stored is not None
            assert stored.job.error.message.startswith("material_swap.swatch.url:"), stored.job.error.message
        assert writing.is_set()
        await asyncio.sleep(1.5)  # past the write, had it been left running
        assert not [path for path in (tmp_path / "work").rglob("*") if path.is_file()]

    with serve(routes, before_response=fail_once_the_photo_is_being_written) as base:
        asyncio.run(body(base))


def test_a_job_back_from_a_stale_run_of_this_dispatcher_starts_from_what_that_run_stored(
    redis_url: str, stages: dict[str, str], tmp_path: Path
) -> None:
    """A dispatcher's earlier run of a job (its lease lost while Redis was away) writes as this
    dispatcher, so when the job comes back to it the stopped run may checkpoint after the take:
    the new run reads the checkpoints once that run has stopped, not as the take found them (a
    generation call it redid could be charged twice)."""
    from gateway.ledger import NewJob

    async def body() -> None:
        async with _lone_dispatcher(redis_url, stages, tmp_path, LocalStorage(tmp_path)) as (ledger, dispatcher):
            job_id = "stale-run"
            request = room_render_request(room_render("living room", dry_run=True)).SerializeToString()
            await ledger.submit(NewJob(job_id, "faults", "room_render", request, {}, "f", "", "", "", 3))
            first = await ledger.take(dispatcher.consumer, 30.0, frozenset())
            assert first is not None
            await ledger.started(job_id, dispatcher.consumer, stored=first.stored)
            assert await ledger.hand_back(dispatcher.consumer, job_id)  # as a reaper would put it back
            again = await ledger.take(dispatcher.consumer, 30.0, frozenset())
            assert again is not None and again.checkpoints == {}

            async def stale_run() -> None:  # cancelled in a stage call, it still stores the answer
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    await ledger.save_checkpoint(job_id, dispatcher.consumer, "generation", b"answer")
                    raise

            dispatcher._running[job_id] = asyncio.create_task(stale_run())
            await asyncio.sleep(0)
            started_from: dict[str, bytes] = {}

            async def execute(job_id: str, stored: Any, checkpoints: dict[str, bytes], held: Any = None) -> bool:
                started_from.update(checkpoints)
                return False

            dispatcher._execute = execute
            await dispatcher._dispatch(again, slot=False)
            assert started_from == {"generation": b"answer"}

    asyncio.run(body())


def test_a_dispatcher_that_lost_its_job_leaves_the_new_owners_work_alone(
    redis_url: str, stages: dict[str, str], tmp_path: Path
) -> None:
    """Taken over while its Redis was away, a dispatcher neither runs the job a second time nor
    deletes the inputs or the slot the new owner is using."""
    from gateway.ledger import NewJob

    async def body() -> None:
        storage = LocalStorage(tmp_path)
        async with _lone_dispatcher(redis_url, stages, tmp_path, storage) as (ledger, old):
            job_id = "taken-over-job"
            storage.put(f"uploads/{job_id}/material_swap-photo", PHOTO, "image/jpeg")
            inputs = {"material_swap.photo": f"uploads/{job_id}/material_swap-photo"}
            await ledger.submit(NewJob(job_id, "faults", "material_swap", b"", inputs, "f", "", "", "", 4))
            taken = await ledger.take(old.consumer, 0.05, frozenset())
            assert taken is not None and taken[:2] == (job_id, 1)
            # The old dispatcher's lease ran out (its Redis was away); the job went back and another
            # dispatcher took it.
            await asyncio.sleep(0.1)
            assert await ledger.requeue_expired() == 1
            assert await ledger.take("new-owner", 30.0, frozenset()) == (job_id, 2, "material_swap")
            await old._run(taken)  # the old one comes back to the job it had taken
            stored = await ledger.get(job_id)
            assert stored is not None and stored.owner == "new-owner" and stored.job.attempt == 2
            assert storage.get(f"uploads/{job_id}/material_swap-photo") == PHOTO
            assert not await ledger.renew(old.consumer, job_id, 30.0)
            assert await ledger.renew("new-owner", job_id, 30.0)

    asyncio.run(body())


def test_a_watch_past_the_event_its_job_ends_at_ends_with_out_of_range(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path: Path,
) -> None:
    """A cursor past a running job's latest event is let be (after a Redis failover a client's
    cursor can be), but once the job ends before it nothing can follow: the watch ends then."""
    url, api = api_only(start_gateway, redis_url, 22, tmp_path, stages, watch_keepalive_s=0.2)
    with client_for(f"127.0.0.1:{api.port}", url, "faults") as client:
        job = client.submit(room_render_request(room_render("porch", dry_run=True))).job
        outcome: list[grpc.StatusCode] = []

        def watch() -> None:
            try:
                list(client.watch(job.id, after="99999999999999-0", timeout=20))
            except grpc.RpcError as exc:
                outcome.append(exc.code())

        watcher = threading.Thread(target=watch)
        watcher.start()
        deadline = time.monotonic() + 10
        while api.hub.watchers == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert api.hub.watchers == 1
        time.sleep(0.5)  # keep-alives come; the watch waits
        assert watcher.is_alive()
        assert client.cancel(job.id).state == pb.JOB_STATE_CANCELLED
        watcher.join(15)
    assert outcome == [grpc.StatusCode.OUT_OF_RANGE]


class AwayStorage(LocalStorage):
    """Local storage that, like GCS past STORAGE_RETRY_SECONDS, fails reads of uploads and writes
    of checkpoints with StorageError (the storage away, not the object missing)."""

    def get(self, key: str) -> bytes:
        if key.startswith("uploads/"):
            raise StorageError(f"could not read {key}: the storage service is unavailable")
        return super().get(key)

    def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        if key.startswith("work/"):
            raise StorageError(f"could not write {key}: the storage service is unavailable")
        return super().put(key, data, content_type)


def test_a_storage_away_inside_a_job_is_neither_a_gone_image_nor_an_internal_error(
    redis_url: str, stages: dict[str, str], tmp_path: Path
) -> None:
    """A queued job reading its uploaded photo back, and a job checkpointing a large downloaded
    photo, while the storage is away: each fails naming the storage (refunded), not with "the
    uploaded image is gone" (the image is there) nor as an internal error."""
    from gateway.ledger import NewJob
    from renderkit.fetch import FetchPolicy

    noise = np.random.default_rng(5).integers(0, 255, (768, 1024, 3), np.uint8)
    large = imaging.encode(noise, quality=95)[0]
    assert len(large) > 512 * 1024  # its checkpoint goes to storage
    routes = {"/photo.jpg": (200, {"Content-Type": "image/jpeg"}, large)}

    async def body(base: str) -> list[pb.JobError]:
        storage = AwayStorage(tmp_path)
        policy = FetchPolicy(allow_private=True, timeout_s=10)
        errors = []
        async with _lone_dispatcher(redis_url, stages, tmp_path, storage, fetch=policy) as (ledger, dispatcher):
            swatch = imaging.encode(scenes.plank_texture(64))[0]
            uploaded = material_swap_request(imaging.encode(SCENE.photo)[0], swatch, quad=QUAD)
            inputs = {}
            for field in ("photo", "swatch"):
                key = f"uploads/queued/material_swap.{field}"
                LocalStorage.put(storage, key, getattr(uploaded.material_swap, field).data, "image/jpeg")
                getattr(uploaded.material_swap, field).data = b""
                inputs[f"material_swap.{field}"] = key
            downloaded = material_swap_request(f"{base}/photo.jpg", swatch, quad=QUAD)
            downloaded.material_swap.swatch.data = b""
            LocalStorage.put(storage, "assets/faults/swatch", swatch, "image/jpeg")  # an asset: readable
            as_asset = {"material_swap.swatch": "assets/faults/swatch"}
            for job_id, request, job_inputs in (("queued", uploaded, inputs), ("checkpointed", downloaded, as_asset)):
                new = NewJob(
                    job_id, "faults", "material_swap", request.SerializeToString(), job_inputs, "f", "", "", "", 4
                )
                await ledger.submit(new)
                taken = await ledger.take(dispatcher.consumer, 30.0, frozenset())
                assert taken is not None and taken[0] == job_id
                await dispatcher._run(taken)
                stored = await ledger.get(job_id)
                assert stored is not None and stored.job.state == pb.JOB_STATE_FAILED
                errors.append(stored.job.error)
        return errors

    with serve(routes) as base:
        read, written = asyncio.run(body(base))
    assert (read.code, read.message) == (
        pb.ERROR_CODE_PIPELINE_ERROR,
        "material_swap.photo: the storage was unavailable; submit the job again in a moment",
    )
    assert (written.code, written.message) == (
        pb.ERROR_CODE_UPLOAD_FAILED,
        "the storage was unavailable; submit the job again in a moment",
    )
