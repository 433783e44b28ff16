"""A local webhook receiver for tests: one HTTP server whose paths (hooks) each answer by their own
plan (fail with 500, time out, answer 410 or redirect, then recover) and record what arrived, for the
tests to verify with the `standardwebhooks` library."""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    time: float  # the receiver's clock when it arrived
    headers: dict[str, str]  # names lower-cased
    body: bytes
    answer: str  # the plan's step it got: "ok", "500", "timeout", "410", "302"

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def timestamp(self) -> int:
        return int(self.headers["webhook-timestamp"])

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]

    def verify(self, secret: str) -> dict[str, Any]:
        """The payload, once the standardwebhooks library has verified it with the secret."""
        return Webhook(secret).verify(self.body, self.headers)  # type: ignore[no-any-return]


class Hook:
    """One path of the receiver: its URL, its plan of answers (then "ok") and what arrived."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.plan: collections.deque[str] = collections.deque()
        self.received: list[Received] = []
        self.changed = threading.Condition()

    def answer_with(self, *steps: str) -> None:
        """The next requests' answers, in order; then 200 again."""
        with self.changed:
            self.plan.extend(steps)

    def next_answer(self) -> str:
        with self.changed:
            return self.plan.popleft() if self.plan else "ok"

    def record(self, received: Received) -> None:
        with self.changed:
            self.received.append(received)
            self.changed.notify_all()

    def wait_for(self, done: Callable[[list[Received]], bool], timeout_s: float = 15.0) -> list[Received]:
        """What arrived, once `done` says it is enough (AssertionError after timeout_s)."""
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while not done(self.received):
                left = deadline - time.monotonic()
                assert left > 0, f"the receiver got {[(r.answer, r.payload.get('type')) for r in self.received]}"
                self.changed.wait(left)
            return list(self.received)

    def delivered(self) -> list[Received]:
        """The requests answered 2xx."""
        with self.changed:
            return [r for r in self.received if r.answer == "ok"]


class Receiver:
    """Hooks on one local server; a "timeout" answer sleeps `slow_s` before answering."""

    def __init__(self, base_url: str, slow_s: float) -> None:
        self.base_url = base_url
        self.slow_s = slow_s
        self.hooks: dict[str, Hook] = {}

    def hook(self, name: str) -> Hook:
        """A new path of the receiver."""
        hook = Hook(f"{self.base_url}/{name}")
        self.hooks[f"/{name}"] = hook
        return hook


@contextmanager
def webhook_receiver(slow_s: float = 1.5) -> Iterator[Receiver]:
    """A receiver on a free loopback port."""
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hook = receiver.hooks.get(self.path)
            if hook is None:
                self._answer(404)
                return
            step = hook.next_answer()
            headers = {name.lower(): value for name, value in self.headers.items()}
            hook.record(Received(time.time(), headers, body, step))
            if step == "timeout":
                time.sleep(receiver.slow_s)
                self._answer(200)
            elif step == "302":
                self._answer(302, {"Location": hook.url + "-moved"})
            elif step == "ok":
                self._answer(200)
            else:
                self._answer(int(step))

        def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the sender gave up (a timeout)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(f"http://127.0.0.1:{server.server_address[1]}", slow_s)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
