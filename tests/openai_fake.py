"""A local HTTP server that speaks the OpenAI images edit API, for the real `openai` client."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np


@dataclass
class FakeOpenAI:
    """What the fake received and how it answers."""

    base_url: str = ""
    requests: list[dict[str, object]] = field(default_factory=list)
    status: int = 200
    error_code: str = ""


def edited_image(width: int, height: int) -> bytes:
    """A plausible 'refined' image: a warm gradient with texture (never blank)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([60 + 40 * np.sin(x / 17), 110 + 30 * np.cos(y / 23), 170 + 40 * np.sin((x + y) / 31)], axis=2)
    _ok, png = cv2.imencode(".png", np.clip(image, 0, 255).astype(np.uint8))
    return png.tobytes()


@contextmanager
def fake_openai() -> Iterator[FakeOpenAI]:
    state = FakeOpenAI()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            message = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
            )
            parts = {
                p.get_param("name", header="content-disposition"): p.get_payload(decode=True)
                for p in message.iter_parts()
            }
            fields = {k: bytes(v).decode() for k, v in parts.items() if k not in ("image", "mask", "image[]")}
            state.requests.append(
                {
                    "path": self.path,
                    "fields": fields,
                    "has_image": bool(parts.get("image")),
                    "has_mask": bool(parts.get("mask")),
                }
            )
            if state.status != 200:
                payload: dict[str, object] = {
                    "error": {"message": "refused", "type": "invalid_request_error", "code": state.error_code}
                }
                self._reply(state.status, payload)
                return
            width, height = (int(v) for v in fields.get("size", "1024x1024").split("x"))
            self._reply(
                200, {"created": 0, "data": [{"b64_json": base64.b64encode(edited_image(width, height)).decode()}]}
            )

        def _reply(self, status: int, payload: dict[str, object]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
