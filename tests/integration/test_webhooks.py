"""Webhooks end to end: an in-process gateway over real Redis delivers job events to a local
receiver that verifies every delivery with the `standardwebhooks` library (a client nobody here
wrote), fails, times out and recovers; secrets rotate; batches report each room; progress is
throttled; a dead worker's claim and a gateway restart mid-backoff lose nothing."""

from __future__ import annotations

import itertools
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import grpc
import pytest
import redis
from google.rpc import error_details_pb2
from redis.typing import EncodableT, FieldT
from standardwebhooks import WebhookVerificationError

from gateway.ledger import keys
from gateway.ledger.webhooks import new_secret
from gateway.server import Gateway
from gateway.settings import GatewaySettings, WebhookSettings
from render.v1 import render_service_pb2 as pb
from render_client.client import RenderClient, room_render, room_render_request
from renderkit.errors import status_details, unpack_detail
from renderkit.fetch import DownloadError, FetchPolicy, post
from tests.conftest import LoopThread, gateway_settings
from tests.credentials import key_for
from tests.webhook_receiver import Hook, Receiver, webhook_receiver

DB = "/19"  # the delivering gateway's database
RESTART_DB = "/20"  # the restart test's gateways
TIMEOUT_S = 0.5
SCHEDULE = (0.2, 0.5, 1.2, 2.5)
JITTER = 0.25
HOOKS = WebhookSettings(
    timeout_s=TIMEOUT_S,
    retry_schedule_s=SCHEDULE,
    jitter=JITTER,
    secret_overlap_s=3600.0,
    concurrency=8,
    endpoints_per_tenant=3,
)


def delivering(redis_url: str, storage: Path, stages: dict[str, str], hooks: WebhookSettings) -> GatewaySettings:
    """A gateway that may post to the loopback receiver."""
    base = gateway_settings(redis_url, storage, stages)
    return replace(
        base,
        webhooks=hooks,
        fetch=replace(base.fetch, allow_private=True),
        limits=replace(base.limits, allow_private_urls=True),
    )


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with webhook_receiver(slow_s=TIMEOUT_S * 3) as running:
        yield running


@pytest.fixture(scope="module")
def hooks_gateway(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path_factory: pytest.TempPathFactory,
) -> Gateway:
    redis.Redis.from_url(redis_url + DB).flushdb()
    return start_gateway(delivering(redis_url + DB, tmp_path_factory.mktemp("hooks-storage"), stages, HOOKS))


@pytest.fixture(scope="module")
def connect(hooks_gateway: Gateway, redis_url: str) -> Iterator[Callable[[str], RenderClient]]:
    """RenderClients of tenants on the delivering gateway."""
    opened: list[RenderClient] = []

    def client(tenant: str) -> RenderClient:
        made = RenderClient(f"127.0.0.1:{hooks_gateway.port}", api_key=key_for(redis_url + DB, tenant))
        opened.append(made)
        return made

    yield client
    for made in opened:
        made.close()


def dry_room(name: str = "Kitchen", room_id: str = "kitchen-1") -> pb.RoomRender:
    room = room_render("kitchen", name=name, room_id=room_id, floor="Oak Natural 190")
    room.options.dry_run = True  # no image provider: the job succeeds at once with its prompt
    return room


def hooked(request: pb.SubmitRenderRequest, hook: Hook, *events: pb.WebhookEvent) -> pb.SubmitRenderRequest:
    request.webhook.url = hook.url
    request.webhook.events.extend(events)
    return request


def deliveries(client: RenderClient, job_id: str, page_size: int = 0) -> list[pb.WebhookDelivery]:
    """Every page of a job's deliveries."""
    found: list[pb.WebhookDelivery] = []
    token = ""
    while True:
        page = client.stub.ListWebhookDeliveries(
            pb.ListWebhookDeliveriesRequest(job_id=job_id, page_size=page_size, page_token=token),
            metadata=client.metadata,
        )
        found += page.deliveries
        token = page.next_page_token
        if not token:
            return found


def settled(client: RenderClient, job_id: str, timeout_s: float = 10.0) -> list[pb.WebhookDelivery]:
    """A job's deliveries once none is pending (a receiver has the request a moment before its
    sender records the answer)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = deliveries(client, job_id)
        if all(d.status != pb.WEBHOOK_DELIVERY_STATUS_PENDING for d in found):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def tenant_secret(client: RenderClient) -> str:
    """The tenant's secret for webhooks on requests (the first rotation makes it)."""
    return client.stub.RotateWebhookSecret(pb.RotateWebhookSecretRequest(), metadata=client.metadata).secret  # type: ignore[no-any-return]


def field_violations(exc: grpc.RpcError) -> dict[str, str]:
    metadata = exc.trailing_metadata()  # type: ignore[attr-defined]
    bad = unpack_detail(status_details(metadata), error_details_pb2.BadRequest)  # type: ignore[arg-type]
    assert isinstance(bad, error_details_pb2.BadRequest)
    return {v.field: v.description for v in bad.field_violations}


def test_retries_keep_the_id_with_fresh_signed_timestamps_and_back_off_until_delivered(
    connect: Callable[[str], RenderClient], receiver: Receiver
) -> None:
    client = connect("wh-retries")
    first = client.stub.RotateWebhookSecret(pb.RotateWebhookSecretRequest(), metadata=client.metadata)
    assert first.secret.startswith("whsec_") and not first.HasField("previous_secret_expire_time")  # made now
    hook = receiver.hook("retries")
    hook.answer_with("500", "timeout", "500")
    job = client.submit(hooked(room_render_request(dry_room()), hook)).job
    arrived = hook.wait_for(lambda got: any(r.answer == "ok" for r in got))
    assert [r.answer for r in arrived] == ["500", "timeout", "500", "ok"]
    # One delivery: the same webhook-id every time, a timestamp of its own attempt, a signature valid
    # for the tenant's secret (checked by standardwebhooks), the same event.
    assert len({r.id for r in arrived}) == 1 and arrived[0].id.startswith("msg_")
    payloads = [r.verify(first.secret) for r in arrived]
    assert all(abs(r.timestamp - r.time) < 1.5 for r in arrived)
    assert [r.timestamp for r in arrived] == sorted(r.timestamp for r in arrived)
    assert arrived[-1].timestamp > arrived[0].timestamp
    assert {p["timestamp"] for p in payloads} == {payloads[0]["timestamp"]}
    body = payloads[-1]
    assert body["type"] == "job.completed"
    assert body["data"]["job_id"] == job.id and body["data"]["state"] == "succeeded"
    assert body["data"]["kind"] == "room_render" and body["data"]["progress"] == 1.0
    with pytest.raises(WebhookVerificationError):
        arrived[-1].verify(new_secret())

    # The API shows every attempt; the waits between them grow along the schedule, with jitter.
    (delivery,) = settled(client, job.id)
    assert delivery.id == arrived[0].id and delivery.url == hook.url and delivery.event_type == "job.completed"
    assert delivery.status == pb.WEBHOOK_DELIVERY_STATUS_DELIVERED and not delivery.HasField("next_attempt_time")
    attempts = list(delivery.attempts)
    assert [(a.result, a.http_status) for a in attempts] == [
        (pb.WEBHOOK_ATTEMPT_RESULT_HTTP_ERROR, 500),
        (pb.WEBHOOK_ATTEMPT_RESULT_TIMEOUT, 0),
        (pb.WEBHOOK_ATTEMPT_RESULT_HTTP_ERROR, 500),
        (pb.WEBHOOK_ATTEMPT_RESULT_SUCCESS, 200),
    ]
    assert attempts[1].error_message == f"no answer within {TIMEOUT_S:g} s"
    assert TIMEOUT_S * 1000 <= attempts[1].duration_ms < TIMEOUT_S * 1000 + 400
    starts = [a.time.ToMilliseconds() / 1000 for a in attempts]
    waits = [starts[k + 1] - starts[k] - attempts[k].duration_ms / 1000 for k in range(3)]
    for wait, step in zip(waits, SCHEDULE, strict=False):
        assert step * (1 - JITTER) - 0.05 <= wait <= step + 0.35, (waits, SCHEDULE)
    assert waits[0] < waits[1] < waits[2]


def test_an_endpoint_gets_every_job_and_a_rotated_secret_signs_beside_the_new_one(
    connect: Callable[[str], RenderClient], receiver: Receiver
) -> None:
    client = connect("wh-endpoints")
    hook = receiver.hook("endpoint")
    created = client.stub.CreateWebhookEndpoint(
        pb.CreateWebhookEndpointRequest(url=hook.url, description="orders service"), metadata=client.metadata
    )
    endpoint, old = created.endpoint, created.secret
    assert endpoint.id.startswith("ep_") and list(endpoint.events) == [pb.WEBHOOK_EVENT_COMPLETED]  # the default
    listed = client.stub.ListWebhookEndpoints(pb.ListWebhookEndpointsRequest(), metadata=client.metadata)
    assert [(e.id, e.url, e.description) for e in listed.endpoints] == [(endpoint.id, hook.url, "orders service")]
    assert old not in str(listed)  # a secret is shown once

    rotated = client.stub.RotateWebhookSecret(
        pb.RotateWebhookSecretRequest(endpoint_id=endpoint.id), metadata=client.metadata
    )
    assert rotated.secret != old
    assert abs(rotated.previous_secret_expire_time.seconds - (time.time() + HOOKS.secret_overlap_s)) < 5
    job = client.submit(room_render_request(dry_room())).job  # no webhook of its own: the endpoint's
    (arrived,) = hook.wait_for(lambda got: len(got) == 1)
    assert len(arrived.headers["webhook-signature"].split(" ")) == 2  # both secrets sign in the overlap
    assert arrived.verify(old) == arrived.verify(rotated.secret)
    assert arrived.payload["data"]["job_id"] == job.id
    (delivery,) = settled(client, job.id)
    assert delivery.endpoint_id == endpoint.id and delivery.status == pb.WEBHOOK_DELIVERY_STATUS_DELIVERED

    # A tenant's endpoints are bounded; a deleted one gets nothing more.
    for n in range(2):
        client.stub.CreateWebhookEndpoint(
            pb.CreateWebhookEndpointRequest(url=f"{hook.url}-{n}"), metadata=client.metadata
        )
    with pytest.raises(grpc.RpcError) as full:
        client.stub.CreateWebhookEndpoint(pb.CreateWebhookEndpointRequest(url=hook.url), metadata=client.metadata)
    assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    for listed_endpoint in client.stub.ListWebhookEndpoints(
        pb.ListWebhookEndpointsRequest(), metadata=client.metadata
    ).endpoints:
        client.stub.DeleteWebhookEndpoint(
            pb.DeleteWebhookEndpointRequest(endpoint_id=listed_endpoint.id), metadata=client.metadata
        )
    with pytest.raises(grpc.RpcError) as gone:
        client.stub.DeleteWebhookEndpoint(
            pb.DeleteWebhookEndpointRequest(endpoint_id=endpoint.id), metadata=client.metadata
        )
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    later = client.wait(client.submit(room_render_request(dry_room())).job.id, timeout=30)
    assert later.state == pb.JOB_STATE_SUCCEEDED and deliveries(client, later.id) == []

    # Another tenant sees neither the endpoints nor the deliveries.
    stranger = connect("wh-stranger")
    assert not stranger.stub.ListWebhookEndpoints(
        pb.ListWebhookEndpointsRequest(), metadata=stranger.metadata
    ).endpoints
    with pytest.raises(grpc.RpcError) as hidden:
        deliveries(stranger, job.id)
    assert hidden.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_job_announces_its_start_once_however_it_started(
    connect: Callable[[str], RenderClient], receiver: Receiver
) -> None:
    """A job the gateway starts in its submit (an idle dispatcher beside it) or a dispatcher takes
    from the queue: one start event, one job.started delivery, before its completion."""
    client = connect("wh-start")
    secret = tenant_secret(client)
    hook = receiver.hook("start")
    wanted = (pb.WEBHOOK_EVENT_STARTED, pb.WEBHOOK_EVENT_COMPLETED)
    jobs = [client.submit(hooked(room_render_request(dry_room()), hook, *wanted)).job for _ in range(3)]
    arrived = hook.wait_for(lambda got: len(got) >= 2 * len(jobs))
    for job in jobs:
        assert client.wait(job.id, timeout=30).state == pb.JOB_STATE_SUCCEEDED
        assert [e.message for e in client.watch(job.id)].count("Starting") == 1
        listed = settled(client, job.id)
        assert sorted(d.event_type for d in listed) == ["job.completed", "job.started"]
    bodies = [r.verify(secret) for r in arrived]
    assert len(bodies) == 2 * len(jobs)
    started = [b for b in bodies if b["type"] == "job.started"]
    assert sorted(b["data"]["job_id"] for b in started) == sorted(j.id for j in jobs)  # type: ignore[index]
    assert {b["data"]["state"] for b in started} == {"running"}  # type: ignore[index]


def test_a_batch_sends_each_room_and_its_end_and_progress_at_most_once_a_second(
    connect: Callable[[str], RenderClient], receiver: Receiver
) -> None:
    client = connect("wh-batch")
    secret = tenant_secret(client)
    hook = receiver.hook("batch")
    count = 10  # one at a time: the batch runs for a few seconds, with progress events several times a second
    rooms = [dry_room(f"Room {i}", f"room-{i}") for i in range(count)]
    request = pb.SubmitRenderRequest(room_batch=pb.RoomBatch(rooms=rooms, max_concurrency=1))
    every = (pb.WEBHOOK_EVENT_STARTED, pb.WEBHOOK_EVENT_PROGRESS, pb.WEBHOOK_EVENT_COMPLETED)
    batch = client.submit(hooked(request, hook, *every)).job
    hook.wait_for(lambda got: any(r.payload["type"] == "batch.completed" for r in got))
    listed = settled(client, batch.id)  # the rooms' completions are listed with their batch
    assert {d.status for d in listed} == {pb.WEBHOOK_DELIVERY_STATUS_DELIVERED}
    # Deliveries go out concurrently, in no promised order: the last to arrive may be any of them.
    arrived = hook.wait_for(lambda got: len(got) == len(listed))
    bodies = [r.verify(secret) for r in arrived]
    assert sorted(d.event_type for d in listed) == sorted(str(b["type"]) for b in bodies)
    by_type: dict[str, list[dict[str, object]]] = {}
    for body in bodies:
        by_type.setdefault(str(body["type"]), []).append(body)
    assert {b["data"]["job_id"] for b in by_type["job.started"]} == {batch.id}  # type: ignore[index]
    rooms_done = by_type["batch.room.completed"]
    assert sorted(b["data"]["room"]["id"] for b in rooms_done) == [f"room-{i}" for i in range(count)]  # type: ignore[index]
    assert {b["data"]["batch_job_id"] for b in rooms_done} == {batch.id}  # type: ignore[index]
    assert {b["data"]["state"] for b in rooms_done} == {"succeeded"}  # type: ignore[index]
    (end,) = by_type["batch.completed"]
    assert end["data"]["state"] == "succeeded" and end["data"]["summary"]["succeeded"] == count  # type: ignore[index]
    assert [r["room_id"] for r in end["data"]["rooms"]] == [f"room-{i}" for i in range(count)]  # type: ignore[index]
    assert "job.completed" not in by_type  # the batch ends as batch.completed; rooms start unannounced here

    # Progress: the batch's events come faster than once a second; its deliveries do not.
    events = [e for e in client.watch(batch.id) if e.state == pb.JOB_STATE_RUNNING]
    progress = sorted(time_ms(b) for b in by_type["job.progress"])
    assert 2 <= len(progress) < len(events) / 2, (len(progress), len(events))
    assert all(later - earlier >= 1000 for earlier, later in itertools.pairwise(progress))
    span_s = (time_ms(end) - min(time_ms(b) for b in by_type["job.started"])) / 1000
    assert len(progress) <= span_s + 1


def time_ms(body: dict[str, object]) -> int:
    """A payload's event time (ms)."""
    return int(datetime.fromisoformat(str(body["timestamp"]).replace("Z", "+00:00")).timestamp() * 1000)


def test_a_jobs_deliveries_come_in_pages_each_once_none_past_a_mebibyte(
    connect: Callable[[str], RenderClient], receiver: Receiver, redis_url: str
) -> None:
    """A big batch's deliveries to a 2 KB URL, each with many failed attempts whose errors repeat
    the 2 KB host, once made one answer past a default client's 4 MiB (RESOURCE_EXHAUSTED: not
    listable at all). They come in pages: page_size at most, errors cut, never past 1 MiB."""
    client = connect("wh-pages")
    hook = receiver.hook("pages")
    job = client.submit(hooked(room_render_request(dry_room()), hook, pb.WEBHOOK_EVENT_STARTED)).job
    assert client.wait(job.id, timeout=30).state == pb.JOB_STATE_SUCCEEDED
    (real,) = settled(client, job.id)
    # Deliveries as a long retry schedule leaves them (written as the ledger keeps them; none is
    # due, so no worker takes them).
    host = ".".join(["a" * 63] * 31) + ".invalid"
    url = f"http://{host}/" + "p" * (2048 - len(host) - 8)
    failed = json.dumps(
        {"t": 1, "r": "connection_failed", "s": 0, "d": 3, "e": f"the host {host} could not be resolved"}
    )
    store = redis.Redis.from_url(redis_url + DB)
    attempts: dict[FieldT, EncodableT] = {f"attempt:{n}": failed for n in range(1, 41)}
    with store.pipeline() as pipe:
        for i in range(150):
            delivery: dict[FieldT, EncodableT] = {"id": f"msg_pad_{i}", "tenant": "wh-pages", "job": job.id}
            delivery |= {"url": url, "type": "job.progress", "status": "failed", "created_ms": 1, **attempts}
            pipe.hset(keys.webhook_delivery(f"msg_pad_{i}"), mapping=delivery)
            pipe.expire(keys.webhook_delivery(f"msg_pad_{i}"), 600)
            pipe.rpush(keys.job_webhooks(job.id), f"msg_pad_{i}")
        pipe.execute()
    padded = [real.id] + [f"msg_pad_{i}" for i in range(150)]
    first = client.stub.ListWebhookDeliveries(
        pb.ListWebhookDeliveriesRequest(job_id=job.id, page_size=100), metadata=client.metadata
    )
    assert 1 < len(first.deliveries) < 100 and first.next_page_token  # cut by weight, not by page_size
    assert first.ByteSize() <= 1 << 20
    assert {len(a.error_message) for a in first.deliveries[1].attempts} == {300}
    assert [d.id for d in first.deliveries] == padded[: len(first.deliveries)]
    assert [d.id for d in deliveries(client, job.id)] == padded  # every one once, oldest first
    assert [d.id for d in deliveries(client, job.id, page_size=7)] == padded
    for bad, field in (
        (pb.ListWebhookDeliveriesRequest(job_id=job.id, page_size=101), "page_size"),
        (pb.ListWebhookDeliveriesRequest(job_id=job.id, page_token="0-0"), "page_token"),
    ):
        with pytest.raises(grpc.RpcError) as info:
            client.stub.ListWebhookDeliveries(bad, metadata=client.metadata)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert list(field_violations(info.value)) == [field]


def test_a_410_gives_up_and_disables_the_endpoint(connect: Callable[[str], RenderClient], receiver: Receiver) -> None:
    client = connect("wh-gone")
    hook = receiver.hook("gone")
    hook.answer_with("410")
    endpoint = client.stub.CreateWebhookEndpoint(
        pb.CreateWebhookEndpointRequest(url=hook.url), metadata=client.metadata
    ).endpoint
    job = client.wait(client.submit(room_render_request(dry_room())).job.id, timeout=30)
    hook.wait_for(lambda got: len(got) == 1)
    found = settled(client, job.id)
    assert found[0].status == pb.WEBHOOK_DELIVERY_STATUS_FAILED and len(found[0].attempts) == 1
    assert found[0].failure_reason == "the receiver answered 410 Gone"
    listed = client.stub.ListWebhookEndpoints(pb.ListWebhookEndpointsRequest(), metadata=client.metadata)
    assert [(e.id, e.disabled) for e in listed.endpoints] == [(endpoint.id, True)]


def test_private_addresses_are_refused_naming_the_field(gateway_address: str, redis_url: str) -> None:
    """The session's gateway allows no private URLs: neither an endpoint nor a request's webhook may
    aim it at loopback, link-local (cloud metadata) or private networks."""
    with RenderClient(gateway_address, api_key=key_for(redis_url, "wh-private")) as client:
        for url in ("http://127.0.0.1:9/hook", "http://169.254.169.254/latest", "http://localhost/hook"):
            with pytest.raises(grpc.RpcError) as info:
                client.stub.CreateWebhookEndpoint(pb.CreateWebhookEndpointRequest(url=url), metadata=client.metadata)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert list(field_violations(info.value)) == ["url"]
        request = room_render_request(dry_room())
        request.webhook.url = "http://10.0.0.7/hook"
        request.webhook.events.append(pb.WEBHOOK_EVENT_UNSPECIFIED)
        with pytest.raises(grpc.RpcError) as info:
            client.submit(request)
        assert field_violations(info.value) == {
            "webhook.url": "the URL points to a private address",
            "webhook.events[0]": "name STARTED, PROGRESS or COMPLETED",
        }


def test_a_name_that_resolves_to_loopback_is_refused_where_it_connects(receiver: Receiver) -> None:
    hook = receiver.hook("rebinding")
    port = int(hook.url.rsplit(":", 1)[1].split("/", 1)[0])
    # A public-looking name whose DNS answer is loopback: refused at connect time, never contacted.
    policy = FetchPolicy(
        timeout_s=2.0, resolve=lambda host, p: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", p))]
    )
    with pytest.raises(DownloadError) as info:
        post(f"http://hooks.example.com:{port}/rebinding", b"{}", {}, policy)
    assert info.value.kind == "connection" and "has no public address" in str(info.value)
    assert hook.received == []


def test_a_dead_workers_claim_and_a_restart_mid_backoff_lose_nothing(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    loop_thread: LoopThread,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    url = redis_url + RESTART_DB
    redis.Redis.from_url(url).flushdb()
    storage = tmp_path / "storage"
    quiet = delivering(url, storage, stages, replace(HOOKS, concurrency=0))  # queues, sends nothing
    sending = delivering(url, storage, stages, replace(HOOKS, retry_schedule_s=(1.5, 1.5)))
    hook = receiver.hook("restart")
    hook.answer_with("500")
    key = key_for(url, "wh-restart")

    first = start_gateway(quiet)
    with RenderClient(f"127.0.0.1:{first.port}", api_key=key) as client:
        secret = tenant_secret(client)
        job = client.wait(client.submit(hooked(room_render_request(dry_room()), hook)).job.id, timeout=30)
        (queued,) = deliveries(client, job.id)
    assert queued.status == pb.WEBHOOK_DELIVERY_STATUS_PENDING and not queued.attempts
    # A replica claims it and dies mid-attempt: nobody records anything, the claim runs out.
    lease_ms = int(HOOKS.lease_s * 1000)
    claimed_at = time.time()
    dead = loop_thread.run(first.ledger.claim_deliveries("a-dead-replica", lease_ms, 10))
    assert [d.delivery_id for d in dead.deliveries] == [queued.id]
    loop_thread.run(first.stop(0.5))

    second = start_gateway(sending)
    (failed,) = hook.wait_for(lambda got: len(got) == 1)
    assert failed.time >= claimed_at + HOOKS.lease_s - 0.1  # not before the dead replica's lease ran out
    loop_thread.run(second.stop(1.0))  # mid-backoff: the retry is due 1.1-1.5 s after the failure
    stored = redis.Redis.from_url(url).hgetall(f"webhook:{queued.id}")
    assert stored[b"status"] == b"pending" and stored[b"attempts"] == b"1"
    assert int(stored[b"next_ms"]) > time.time() * 1000

    third = start_gateway(sending)
    arrived = hook.wait_for(lambda got: len(got) == 2)
    assert [r.answer for r in arrived] == ["500", "ok"] and arrived[1].id == arrived[0].id == queued.id
    assert [r.verify(secret)["data"]["job_id"] for r in arrived] == [job.id, job.id]
    with RenderClient(f"127.0.0.1:{third.port}", api_key=key) as client:
        (done,) = settled(client, job.id)
    assert done.status == pb.WEBHOOK_DELIVERY_STATUS_DELIVERED
    assert [a.http_status for a in done.attempts] == [500, 200]


def test_an_endpoint_created_again_with_its_idempotency_key_is_the_same_endpoint(
    connect: Callable[[str], RenderClient], receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    """A create retried after a lost reply made a second endpoint, and every event then arrived
    twice. With a key, the repeat answers with the first endpoint and its secret; renderctl sends
    one of its own."""
    from render_client.cli import main

    client = connect("wh-keyed")
    hook = receiver.hook("keyed")
    request = pb.CreateWebhookEndpointRequest(url=hook.url, description="billing", idempotency_key="billing-hook")
    first, again = client.create_webhook_endpoint(request), client.create_webhook_endpoint(request)
    assert not first.deduplicated and again.deduplicated
    assert (again.endpoint, again.secret) == (first.endpoint, first.secret)
    request.description = "billing, again"
    with pytest.raises(grpc.RpcError) as other:
        client.create_webhook_endpoint(request)
    assert other.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "idempotency_key was already used for a different request" in (other.value.details() or "")
    request.idempotency_key = "no spaces"
    with pytest.raises(grpc.RpcError) as invalid:
        client.create_webhook_endpoint(request)
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "idempotency_key" in (
        invalid.value.details() or ""
    )

    start = ["--address", client.address, "--api-key", dict(client.metadata)["authorization"].removeprefix("Bearer ")]
    for _ in range(2):
        assert main([*start, "webhooks", "create", hook.url, "--idempotency-key", "ops-hook"]) == 0
    first_out, second_out = capsys.readouterr().out.split("\n")[0:3:2]  # each create prints a secret, then a line
    assert first_out == second_out
    listed = client.stub.ListWebhookEndpoints(pb.ListWebhookEndpointsRequest(), metadata=client.metadata).endpoints
    assert sorted(e.description for e in listed) == ["", "billing"]


def test_renderctl_registers_an_endpoint_sends_a_jobs_events_and_lists_its_deliveries(
    hooks_gateway: Gateway, redis_url: str, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    # The whole webhook flow from the command line, checked by the standardwebhooks library.
    from render_client.cli import main

    hook = receiver.hook("renderctl")
    start = ["--address", f"127.0.0.1:{hooks_gateway.port}", "--api-key", key_for(redis_url + DB, "wh-renderctl")]
    assert main([*start, "webhooks", "create", hook.url, "--events", "started,completed", "--description", "ops"]) == 0
    secret, line = capsys.readouterr().out.splitlines()
    endpoint_id = line.split()[0]
    assert secret.startswith("whsec_") and endpoint_id.startswith("ep_") and line.endswith(f"{hook.url}  ops")
    assert line.split()[1] == "started,completed"
    assert main([*start, "webhooks", "list"]) == 0
    assert capsys.readouterr().out.strip() == line

    assert main([*start, "webhooks", "rotate"]) == 0  # the secret of requests' own webhooks
    (request_secret,) = capsys.readouterr().out.splitlines()[:1]
    assert main([*start, "room", "kitchen", "--dry-run", "--webhook", hook.url, "--webhook-events", "completed"]) == 0
    job_id = capsys.readouterr().out.strip()
    arrived = hook.wait_for(lambda got: len(got) == 3)  # the endpoint's start and end, the request's end
    by_secret = {secret: 0, request_secret: 0}
    for delivery in arrived:
        for key in by_secret:
            try:
                payload = delivery.verify(key)
            except WebhookVerificationError:
                continue
            assert payload["data"]["job_id"] == job_id
            by_secret[key] += 1
    assert by_secret == {secret: 2, request_secret: 1}

    client = RenderClient(f"127.0.0.1:{hooks_gateway.port}", api_key=start[-1])
    with client:
        settled(client, job_id)
    assert main([*start, "webhooks", "deliveries", job_id]) == 0
    listed = capsys.readouterr().out.splitlines()
    summaries = sorted(line.split()[1:3] for line in listed if not line.startswith(" "))
    assert summaries == [["job.completed", "delivered"], ["job.completed", "delivered"], ["job.started", "delivered"]]
    assert sum("HTTP 200" in line for line in listed if line.startswith("    ")) == 3

    assert main([*start, "webhooks", "delete", endpoint_id]) == 0
    assert capsys.readouterr().out == f"deleted {endpoint_id}\n"
    assert main([*start, "webhooks", "list"]) == 0
    assert capsys.readouterr().out == ""
    with pytest.raises(SystemExit):  # an event renderctl does not know is named before sending
        main([*start, "webhooks", "create", hook.url, "--events", "finished"])
    assert "events are a comma-separated list of started, progress, completed" in capsys.readouterr().err
