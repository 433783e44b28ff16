"""A local HTTP server that speaks the OpenAI images API (generations and edits), for the real
`openai` client. Tests script its replies: errors with headers, slow or trickled answers, malformed
bodies, blank, black, echoed or misshapen images, reported token counts, and URLs instead of base64."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

# A prompt containing this is refused as the real API refuses content (HTTP 400, content_policy_violation).
REFUSE_MARKER = "[provider-refuses]"


@dataclass(frozen=True)
class Reply:
    """One scripted answer. kind: ok, error, slow, malformed, blank, black, echo, wild, url, or raw
    (`body` as it is, with `content_type`, status 200). `byte_every_s` sends the answer (for a url,
    the image behind it) one byte at a time with that pause; `size` ("WxH") overrides the image's
    size; `tokens` the total_tokens reported (44 of them input text tokens, the rest output)."""

    kind: str = "ok"
    status: int = 200
    code: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0
    body: bytes = b""
    content_type: str = "application/json"
    byte_every_s: float = 0.0
    size: str = ""
    tokens: int | None = None
    message: str = ""  # an error's message (default "scripted <status>")
    # A "slow" answer with a gate waits until the test sets it (at most delay_s, when that is set).
    gate: threading.Event | None = None


@dataclass
class FakeOpenAI:
    """What the fake received, and the replies it gives next (then `default`)."""

    base_url: str = ""
    requests: list[dict[str, object]] = field(default_factory=list)
    script: deque[Reply] = field(default_factory=deque)
    default: Reply = field(default_factory=Reply)
    files: dict[str, tuple[bytes, float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def push(self, *replies: Reply) -> None:
        with self.lock:
            self.script.extend(replies)

    def next_reply(self) -> Reply:
        with self.lock:
            return self.script.popleft() if self.script else self.default

    def reset(self) -> None:
        with self.lock:
            self.script.clear()
            self.default = Reply()


def textured_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A plausible generated picture: coloured waves with texture (never blank)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack(
        [60 + 40 * np.sin(x / 17 + seed), 110 + 30 * np.cos(y / 23), 170 + 40 * np.sin((x + y) / 31)], axis=2
    )
    return np.clip(image, 0, 255).astype(np.uint8)


def harmonised(image: np.ndarray) -> np.ndarray:
    """What a gentle refinement does: a slight warm shift of the light, the texture untouched."""
    shifted = image.astype(np.int16) + np.array([-6, 2, 12], np.int16)
    return np.clip(shifted, 0, 255).astype(np.uint8)


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


@contextmanager
def fake_openai() -> Iterator[FakeOpenAI]:
    state = FakeOpenAI()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = state.files.get(self.path)
            if found is None:
                self._raw(404, b"missing", "text/plain")
                return
            self._raw(200, found[0], "image/png", byte_every_s=found[1])

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            images: list[bytes] = []
            if self.headers["Content-Type"].startswith("application/json"):
                fields = {k: str(v) for k, v in json.loads(body).items()}
                has_mask = False
            else:
                message = BytesParser(policy=HTTP).parsebytes(
                    f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
                )
                fields, has_mask = {}, False
                for part in message.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    payload = bytes(part.get_payload(decode=True) or b"")
                    if name in ("image", "image[]"):
                        images.append(payload)
                    elif name == "mask":
                        has_mask = True
                    else:
                        fields[str(name)] = payload.decode()
            state.requests.append(
                {
                    "path": self.path,
                    "fields": fields,
                    "has_image": bool(images),
                    "images": len(images),
                    "image_shapes": [
                        cv2.imdecode(np.frombuffer(i, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2] for i in images
                    ],
                    "has_mask": has_mask,
                    "time": time.monotonic(),
                }
            )
            reply = state.next_reply()
            if REFUSE_MARKER in fields.get("prompt", ""):
                reply = Reply("error", 400, "content_policy_violation")
            if reply.kind == "error":
                error = {
                    "message": reply.message or f"scripted {reply.status}",
                    "type": "invalid_request_error",
                    "code": reply.code,
                }
                self._json(reply.status, {"error": error}, reply.headers)
                return
            if reply.kind == "raw":
                self._raw(200, reply.body, reply.content_type)
                return
            if reply.kind == "slow":
                if reply.gate is not None:
                    reply.gate.wait(reply.delay_s or None)
                else:
                    time.sleep(reply.delay_s)
            width, height = (int(v) for v in (reply.size or fields.get("size", "1024x1024")).split("x"))
            source = cv2.imdecode(np.frombuffer(images[0], np.uint8), cv2.IMREAD_COLOR) if images else None
            picture: np.ndarray
            if reply.kind == "blank":
                picture = np.full((height, width, 3), 128, np.uint8)
            elif reply.kind == "black":
                picture = np.zeros((height, width, 3), np.uint8)
            elif reply.kind == "echo" and source is not None:
                picture = source
            elif reply.kind == "wild" or source is None or not has_mask:
                picture = textured_image(width, height, seed=len(state.requests))
            else:
                picture = harmonised(source)
            item: dict[str, object] = {"revised_prompt": "Revised: " + fields.get("prompt", "")[:200]}
            if reply.kind == "malformed":
                item["b64_json"] = base64.b64encode(b"this is not an image").decode()
            elif reply.kind == "url":
                path = f"/files/{len(state.requests)}.png"
                state.files[path] = (_png(picture), reply.byte_every_s)
                item["url"] = state.base_url.removesuffix("/v1") + path
            else:
                item["b64_json"] = base64.b64encode(_png(picture)).decode()
            answer: dict[str, object] = {"created": 0, "data": [item]}
            if fields.get("model", "").startswith("gpt-image"):
                # As the API reports it: the total is the input (text) and output tokens together.
                total = 1100 if reply.tokens is None else reply.tokens
                text = min(44, total)
                answer["usage"] = {
                    "total_tokens": total,
                    "input_tokens": text,
                    "output_tokens": total - text,
                    "input_tokens_details": {"text_tokens": text, "image_tokens": 0},
                }
            self._json(200, answer, byte_every_s=0.0 if reply.kind == "url" else reply.byte_every_s)

        def _json(
            self,
            status: int,
            payload: dict[str, object],
            headers: tuple[tuple[str, str], ...] = (),
            byte_every_s: float = 0.0,
        ) -> None:
            self._raw(status, json.dumps(payload).encode(), "application/json", headers, byte_every_s)

        def _raw(
            self,
            status: int,
            data: bytes,
            content_type: str,
            headers: tuple[tuple[str, str], ...] = (),
            byte_every_s: float = 0.0,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers:
                self.send_header(key, value)
            self.end_headers()
            if not byte_every_s:
                self.wfile.write(data)
                return
            # A byte at a time, never silent for long: only a deadline on the whole call ends it.
            for i in range(len(data)):
                try:
                    self.wfile.write(data[i : i + 1])
                except OSError:
                    return  # the client gave up
                time.sleep(byte_every_s)

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
