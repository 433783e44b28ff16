"""Small local HTTP servers for tests: files, redirects, slow and huge responses."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def serve(
    routes: dict[str, tuple[int, dict[str, str], bytes]],
    host: str = "127.0.0.1",
    delay_s: float = 0.0,
    before_response: Callable[[str], object] | None = None,
) -> Iterator[str]:
    """Serves fixed responses by path on host:free-port (each request on a thread of its own, which
    calls `before_response` with the path first); yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, headers, body = routes.get(self.path, (404, {}, b"not found"))
            if delay_s:
                time.sleep(delay_s)
            if before_response is not None:
                before_response(self.path)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def trickle(where: str, interval_s: float = 1.0, host: str = "127.0.0.1") -> Iterator[str]:
    """A server that sends one byte every interval_s: in its status line and headers
    (where="headers") or, after prompt headers, in its body (where="body"); or prompt headers and
    then nothing until the client gives up (where="stall"). Every byte restarts a client's socket
    timeout, so only a deadline on the whole download ends it. Yields the base URL."""
    stopping = threading.Event()
    body = b"\xff\xd8" + b"x" * 30  # short: code without a whole-download deadline fails in a minute or two

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            head = f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            if where in ("body", "stall"):
                self.wfile.write(head)
                self.wfile.flush()
                if where == "stall":
                    stopping.wait(60)
                    return
                self._drip(body)
            else:
                self._drip(head + body)

        def _drip(self, data: bytes) -> None:
            for index in range(len(data)):
                if stopping.wait(interval_s):
                    return
                try:
                    self.wfile.write(data[index : index + 1])
                    self.wfile.flush()
                except OSError:
                    return  # the client gave up

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()
