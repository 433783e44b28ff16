"""Webhooks' pure parts: Standard Webhooks signatures (checked with the `standardwebhooks`
library), secrets in a rotation's overlap, the retry schedule, payloads, event filters, settings."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from gateway.auth.principal import Scope
from gateway.ledger import Attempt, Delivery, Secrets
from gateway.ledger.webhooks import new_secret
from gateway.server import METHOD_SCOPES, SERVICE_NAME
from gateway.settings import DEFAULT_WEBHOOK_RETRY_SCHEDULE, WebhookSettings
from gateway.webhooks import api, events, signing
from gateway.webhooks.payloads import payload
from gateway.webhooks.worker import after_attempt
from render.v1 import render_service_pb2 as pb
from renderkit.fetch import PostResponse, retry_after_seconds
from renderkit.settings import SettingsError


def test_signatures_verify_with_the_standardwebhooks_library() -> None:
    old, new = new_secret(), new_secret()
    assert new.startswith("whsec_") and len(signing.secret_key(new)) == 32
    body = b'{"type":"job.completed","data":{"job_id":"j"}}'
    now = int(time.time())
    headers = signing.headers("msg_j_1", now, body, [new, old])
    assert headers["webhook-id"] == "msg_j_1" and headers["webhook-timestamp"] == str(now)
    assert [s[:3] for s in headers["webhook-signature"].split(" ")] == ["v1,", "v1,"]
    for secret in (new, old):  # either secret verifies during the overlap
        assert Webhook(secret).verify(body, headers) == {"type": "job.completed", "data": {"job_id": "j"}}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):  # the body, the id and the time are all signed
        Webhook(new).verify(body.replace(b"j", b"k"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body, {**headers, "webhook-id": "msg_j_2"})
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body, {**headers, "webhook-timestamp": str(now - 1)})


def test_a_previous_secret_signs_only_until_its_overlap_ends() -> None:
    secrets = Secrets(current="whsec_new", previous="whsec_old", previous_until_ms=1_000)
    assert secrets.signing(999) == ["whsec_new", "whsec_old"]
    assert secrets.signing(1_000) == ["whsec_new"]
    assert Secrets(current="whsec_only").signing(0) == ["whsec_only"]


def failed(status: int = 500, result: str = "http_error") -> Attempt:
    return Attempt(time_ms=0, result=result, http_status=status, duration_ms=5, error=f"HTTP {status}")


def test_retries_follow_the_schedule_with_jitter_then_fail() -> None:
    settings = WebhookSettings(retry_schedule_s=(5.0, 30.0, 120.0), jitter=1.0)
    assert after_attempt(settings, 1, failed(), None, 0, draw=lambda: 0.0) == ("retry", 5_000, "")
    assert after_attempt(settings, 2, failed(), None, 0, draw=lambda: 0.5) == ("retry", 15_000, "")  # full jitter
    assert after_attempt(settings, 3, failed(), None, 10, draw=lambda: 0.999)[1] < 1_000
    outcome, _, reason = after_attempt(settings, 4, failed(result="timeout"), None, 0)
    assert outcome == "failed" and reason.startswith("all 4 attempts failed")
    half = WebhookSettings(retry_schedule_s=(10.0,), jitter=0.5)
    assert after_attempt(half, 1, failed(), None, 0, draw=lambda: 1.0) == ("retry", 5_000, "")
    # A Retry-After is honoured, up to the schedule's longest wait.
    assert after_attempt(settings, 1, failed(503), PostResponse(503, 60.0), 0, draw=lambda: 0.0)[1] == 60_000
    assert after_attempt(settings, 1, failed(429), PostResponse(429, 9999.0), 0, draw=lambda: 0.0)[1] == 120_000
    ok = Attempt(time_ms=0, result="success", http_status=204, duration_ms=5)
    assert after_attempt(settings, 1, ok, PostResponse(204), 0) == ("delivered", 0, "")
    assert after_attempt(settings, 1, failed(410), PostResponse(410), 0)[0] == "gone"
    assert sum(DEFAULT_WEBHOOK_RETRY_SCHEDULE) / 3600 == pytest.approx(23.8, abs=0.1)  # about a day


def test_a_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    """RFC 9110 10.2.3: delay-seconds or an HTTP-date (a receiver's 503 with a date was retried on
    the schedule, seconds later)."""
    now = 1_760_000_000.0  # 2025-10-09T08:53:20Z
    assert retry_after_seconds("40", now) == 40.0
    assert retry_after_seconds("Thu, 09 Oct 2025 08:54:00 GMT", now) == 40.0
    assert retry_after_seconds("Thursday, 09-Oct-25 08:54:00 GMT", now) == 40.0  # the obsolete RFC 850 form
    assert retry_after_seconds("Thu Oct  9 08:54:00 2025", now) == 40.0  # and asctime's (GMT, no zone named)
    assert retry_after_seconds("Thu, 09 Oct 2025 08:00:00 GMT", now) == 0.0  # past: no wait
    for unreadable in ("", "soon", "-5", "1.5", "Thu, 09 Oct 2025 08:54:00"):  # no zone: not an HTTP-date
        assert retry_after_seconds(unreadable, now) is None, unreadable


def test_a_delivery_is_kept_through_every_attempt_however_long_each_retry_after_makes_it() -> None:
    """A receiver answering every attempt with a Retry-After of the longest step had its delivery
    expire, unrecorded, halfway through the schedule (a review found it): the record lasts every
    attempt at the longest wait."""
    from gateway.webhooks.worker import delivery_ttl_ms

    settings = WebhookSettings()
    schedule = settings.retry_schedule_s
    took = int(settings.timeout_s * 1000)  # each attempt answered at its timeout's end (its wait starts then)
    now = 0
    for made in range(1, len(schedule) + 1):  # each attempt answered 503 with a day's Retry-After
        outcome, now, _ = after_attempt(settings, made, failed(503), PostResponse(503, 86400.0), now + took)
        assert outcome == "retry"
    assert now + settings.lease_s * 1000 <= delivery_ttl_ms(settings, retention_s=3600)
    assert now + settings.lease_s * 1000 <= delivery_ttl_ms(settings, retention_s=172800)  # the default 48 h
    assert after_attempt(settings, len(schedule) + 1, failed(503), PostResponse(503, 86400.0), now)[0] == "failed"


def delivery(event: pb.JobEvent, event_type: str = "job.completed", **fields: object) -> Delivery:
    return Delivery(
        delivery_id="msg_j_1",
        tenant="acme",
        job_id="j",
        endpoint_id="",
        url="https://hooks.example.com/render",
        event_type=event_type,
        event=event.SerializeToString(),
        kind="material_swap",
        **fields,  # type: ignore[arg-type]
    )


def test_payloads_carry_the_event_without_storage_keys_or_paths() -> None:
    event = pb.JobEvent(job_id="j", state=pb.JOB_STATE_SUCCEEDED, step=4, total_steps=4, progress=1.0, message="Done")
    event.time.FromMilliseconds(1_700_000_000_123)
    event.result.outputs.add(
        name="full",
        uri="local:renders/acme/-/j/full.jpg",
        content_type="image/jpeg",
        size_bytes=10,
        width=4,
        height=3,
        sha256="ab",
    )
    body = payload(delivery(event, project_id="kitchen"), None)
    assert b"local:" not in body and b"renders/" not in body and b" " not in body  # compact JSON
    data = json.loads(body)
    assert data["type"] == "job.completed" and data["timestamp"] == "2023-11-14T22:13:20.123Z"
    assert data["data"] == {
        "job_id": "j",
        "kind": "material_swap",
        "state": "succeeded",
        "step": 4,
        "total_steps": 4,
        "progress": 1.0,
        "message": "Done",
        "project_id": "kitchen",
        "outputs": [
            {"name": "full", "content_type": "image/jpeg", "size_bytes": 10, "width": 4, "height": 3, "sha256": "ab"}
        ],
    }
    # Queued by the script that wrote the event, at Redis's time: the payload's time, not the time
    # the writing replica's own clock put in the event (minutes off on a replica whose NTP is).
    queued = json.loads(payload(delivery(event, created_ms=1_700_000_120_500), None))
    assert queued["timestamp"] == "2023-11-14T22:15:20.500Z"
    failed_event = pb.JobEvent(job_id="j", state=pb.JOB_STATE_FAILED, message="Failed: x")
    failed_event.error.code = pb.ERROR_CODE_DOWNLOAD_FAILED
    failed_event.error.message = "material_swap.photo.url: the server answered HTTP 404"
    room = pb.Room(id="kitchen-1", name="Kitchen")
    data = json.loads(payload(delivery(failed_event, "batch.room.completed", parent_job_id="b"), None, room))["data"]
    assert data["error"] == {"code": "download_failed", "message": failed_event.error.message}
    assert data["batch_job_id"] == "b" and data["room"] == {"id": "kitchen-1", "name": "Kitchen"}
    started = pb.JobEvent(job_id="j", state=pb.JOB_STATE_RUNNING, message="Starting")
    assert json.loads(payload(delivery(started, "job.started", job_attempt=2), None))["data"]["attempt"] == 2


def test_event_filters_default_to_the_completion() -> None:
    assert events.stored([]) == "completed"
    assert events.stored([pb.WEBHOOK_EVENT_COMPLETED, pb.WEBHOOK_EVENT_STARTED, pb.WEBHOOK_EVENT_STARTED]) == (
        "start,completed"
    )
    assert events.from_stored(["progress", "completed"]) == [pb.WEBHOOK_EVENT_PROGRESS, pb.WEBHOOK_EVENT_COMPLETED]


def test_settings_name_the_variable_they_refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_RETRY_SCHEDULE", "1,2,x")
    with pytest.raises(SettingsError, match="WEBHOOK_RETRY_SCHEDULE"):
        WebhookSettings.from_env()
    monkeypatch.setenv("WEBHOOK_RETRY_SCHEDULE", "0.5, 2,8")
    monkeypatch.setenv("WEBHOOK_RETRY_JITTER", "1.5")
    with pytest.raises(SettingsError, match="WEBHOOK_RETRY_JITTER"):
        WebhookSettings.from_env()
    monkeypatch.setenv("WEBHOOK_RETRY_JITTER", "0.2")
    monkeypatch.setenv("WEBHOOK_TIMEOUT_SECONDS", "3")
    settings = WebhookSettings.from_env()
    assert settings.retry_schedule_s == (0.5, 2.0, 8.0) and settings.jitter == 0.2 and settings.lease_s == 7.0


def test_every_public_method_has_a_scope_and_webhooks_need_render_to_change() -> None:
    service = pb.DESCRIPTOR.services_by_name["RenderService"]
    assert {f"/{SERVICE_NAME}/{m.name}" for m in service.methods} <= set(METHOD_SCOPES)
    scopes = {name.rsplit("/", 1)[1]: scope for name, scope in METHOD_SCOPES.items()}
    assert {m: scopes[m] for m in scopes if "Webhook" in m} == {
        "CreateWebhookEndpoint": Scope.RENDER,
        "DeleteWebhookEndpoint": Scope.RENDER,
        "RotateWebhookSecret": Scope.RENDER,
        "ListWebhookEndpoints": Scope.READ,
        "ListWebhookDeliveries": Scope.READ,
    }


def test_an_attempts_error_is_shown_cut_and_page_tokens_name_only_positions() -> None:
    """A 2 KB host name in every attempt's error would make one delivery weigh ~25 KB and a batch's
    list pass gRPC's 4 MiB: each error is shown cut to a few hundred characters."""
    host = ".".join(["a" * 63] * 31) + ".invalid"
    failed = Attempt(1_700_000_000_000, "connection_failed", 0, 3, f"the host {host} could not be resolved")
    delivery = Delivery("msg_j_1", "t", "j", "", f"http://{host}/hook", "job.completed", b"", history=(failed,) * 11)
    shown = [a.error_message for a in api.delivery_message(delivery).attempts]
    assert [len(e) for e in shown] == [api.MAX_ERROR_MESSAGE_CHARS] * 11
    assert shown[0].startswith("the host aaa") and shown[0].endswith("\u2026")
    brief = replace(delivery, history=(Attempt(1, "timeout", 0, 3, "timed out"),))
    assert [a.error_message for a in api.delivery_message(brief).attempts] == ["timed out"]

    assert [api.token_position(api.page_token(p)) for p in (0, 1, 516, 10**15)] == [0, 1, 516, 10**15]
    assert api.token_position("") == 0
    forged = [base64.urlsafe_b64encode(text).decode() for text in (b"d-1", b"x5", b"d" + b"9" * 40, b"d")]
    for token in ("garbage!", "0-0", "\u00e9", *forged):
        assert api.token_position(token) is None, token


def test_webhook_names_that_never_resolve_do_not_hold_the_downloads_resolvers() -> None:
    """A tenant's endpoints on a domain whose DNS drops queries (getaddrinfo blocks 10-30 s) held
    all four of fetch's shared resolver threads with its four attempts in flight: every download of
    every tenant, from a server answering at once, timed out behind them (a review found it)."""
    import concurrent.futures
    import threading
    import time
    from dataclasses import replace

    from gateway.webhooks.worker import DeliveryWorker
    from renderkit import fetch
    from tests.http_fixtures import serve

    release = threading.Event()

    def resolve(host: str, port: int) -> list[fetch.AddressInfo]:
        if host.endswith(".blackhole.example"):
            release.wait(10)  # an authoritative server that drops queries
        return list(fetch.resolve_host(host, port))

    class Ledger:
        def with_retry(self, _budget: float) -> Ledger:
            return self

    class Subscriptions:
        def on(self, *args: object) -> None:
            pass

        def on_subscribed(self, *args: object) -> None:
            pass

    policy = fetch.FetchPolicy(allow_private=True, timeout_s=2.0, resolve=resolve)
    worker = DeliveryWorker(Ledger(), WebhookSettings(timeout_s=5.0), policy, None, Subscriptions())  # type: ignore[arg-type]
    attempts = concurrent.futures.ThreadPoolExecutor(4)
    hung: list[concurrent.futures.Future[object]] = []
    try:
        with serve({"/photo.jpg": (200, {}, b"img")}) as base:
            hung += [
                attempts.submit(fetch.post, f"http://h{i}.blackhole.example/hook", b"{}", {}, worker.policy_for("acme"))
                for i in range(WebhookSettings().tenant_concurrency)  # one tenant's attempts in flight
            ]
            time.sleep(0.2)
            url = base.replace("127.0.0.1", "localhost") + "/photo.jpg"  # a name: it is looked up
            assert fetch.fetch(url, replace(policy, timeout_s=1.5)) == b"img"
    finally:
        release.set()
        concurrent.futures.wait(hung)
        attempts.shutdown()
