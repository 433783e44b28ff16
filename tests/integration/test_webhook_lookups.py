"""One tenant's webhook endpoint on a domain whose DNS drops queries: its lookups outlive its
attempts (the system resolver's 10-30 s against a 15 s attempt), and the worker's resolver pool,
shared by every tenant's webhooks, fills with them."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from redis.typing import EncodableT, FieldT

from gateway.ledger import Ledger, jobs, keys
from gateway.settings import WebhookSettings
from gateway.webhooks.worker import DeliveryWorker
from renderkit.fetch import FetchPolicy
from tests.integration.test_ledger import run

HANG_S = 4.0  # the system resolver's wait for a domain whose DNS drops queries (scaled: 10-30 s)
TIMEOUT_S = 1.5  # an attempt's (scaled: WEBHOOK_TIMEOUT_SECONDS, 15 s)


class _Subscriptions:
    def on(self, channel: str, handler: object) -> None:
        pass

    def on_subscribed(self, handler: object) -> None:
        pass


def test_a_tenants_hanging_dns_does_not_fail_other_tenants_webhooks(redis_url: str) -> None:
    """The worker's resolvers were one pool for every tenant: one tenant's stuck lookups (each
    outliving its attempt) filled it, and another tenant's delivery timed out waiting for a thread
    (the diff's review). Each tenant's lookups are now its own (OwnedLookups)."""
    arrived: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            arrived.append(self.headers.get("host", ""))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def resolve(host: str, port: int):  # type: ignore[no-untyped-def]
        if host == "dead.test":
            time.sleep(HANG_S)
            raise socket.gaierror("timed out")
        return [(socket.AF_INET, socket.SOCK_STREAM, 0, "", ("127.0.0.1", port))]

    async def queue(ledger: Ledger, tenant: str, delivery_id: str, host: str, due_ms: int) -> None:
        fields: dict[FieldT, EncodableT] = {"id": delivery_id, "tenant": tenant, "job": "job", "endpoint": ""}
        fields |= {"status": "pending", "url": f"http://{host}:{port}/hook", "type": "job.completed"}
        fields |= {"attempts": "0", "event": b""}
        await ledger.redis.hset(keys.webhook_delivery(delivery_id), mapping=fields)
        await ledger.redis.zadd(keys.WEBHOOKS_DUE, {delivery_id: due_ms})

    async def body(ledger: Ledger) -> None:
        now = jobs.now_ms()
        for i in range(12):  # a busy tenant's job events, its endpoint's domain unresolvable
            await queue(ledger, "dead", f"dead-{i}", "dead.test", now - 1)
        await queue(ledger, "good", "good-0", "good.test", now + 2500)
        settings = WebhookSettings(timeout_s=TIMEOUT_S, retry_schedule_s=(60.0,), jitter=0.0)
        policy = FetchPolicy(allow_private=True, refuse=lambda _a: None, resolve=resolve)
        worker = DeliveryWorker(ledger, settings, policy, None, _Subscriptions())  # type: ignore[arg-type]
        worker.ledger = ledger
        await worker.start()
        await asyncio.sleep(2500 / 1000 + TIMEOUT_S + 1.0)
        await worker.stop(1.0)
        assert arrived == [f"good.test:{port}"], "another tenant's DNS failed this tenant's webhook"

    try:
        run(body, redis_url)
    finally:
        server.shutdown()
