"""The HTTP port's server: Hypercorn on the gateway's own event loop (HTTP/1.1, and HTTP/2 with
TLS or cleartext prior knowledge), so the Connect handlers share the gRPC port's ledger, event hub
and interceptors without another process or thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from hypercorn.asyncio import serve
from hypercorn.config import Config

from gateway.http.asgi import App

log = logging.getLogger(__name__)


def bind(listen: str) -> socket.socket:
    """A listening socket for host:port (port 0 picks a free one); bound now, so the port is known
    before the server starts and nobody can take it meanwhile."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except (OSError, ValueError) as exc:
        sock.close()
        raise OSError(f"could not bind the HTTP port {listen}") from exc
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


class HttpServer:
    """Serves an ASGI application on a bound socket until stopped."""

    def __init__(self, app: App, sock: socket.socket, tls_cert: str = "", tls_key: str = "") -> None:
        self.app = app
        self.socket = sock
        self.port: int = self.socket.getsockname()[1]
        self.config = Config()
        self.config.bind = [f"fd://{self.socket.fileno()}"]
        self.config.accesslog = None
        self.config.errorlog = log
        self.config.include_server_header = False
        # Watches are long-lived responses: only idle connections are closed.
        self.config.keep_alive_timeout = 75
        self.config.h2_max_concurrent_streams = 1000
        if tls_cert and tls_key:
            self.config.certfile = tls_cert
            self.config.keyfile = tls_key
            self.config.alpn_protocols = ["h2", "http/1.1"]
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(
            serve(self.app, self.config, shutdown_trigger=self._stopping.wait, mode="asgi")  # type: ignore[arg-type]
        )

    async def stop(self, grace_s: float) -> None:
        """Stops taking connections and waits up to grace_s for responses in flight."""
        if self._task is None:
            return
        self.config.graceful_timeout = grace_s
        self._stopping.set()
        try:
            await asyncio.wait_for(self._task, grace_s + 2)
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        except Exception:
            log.exception("the HTTP server stopped with an error")
        finally:
            self._task = None
            with contextlib.suppress(OSError):
                self.socket.close()
