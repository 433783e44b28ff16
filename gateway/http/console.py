"""The web console's built files (console/dist), served at `/`.

`index.html` is never cached (it names the current build's files); the files under `assets/`
carry a content hash in their names and are cached for a year. Anything that is not a file of the
build answers with index.html, so the console's own routes survive a reload.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.http.asgi import Receive, Scope, Send, respond, text
from renderkit.storage import content_type_of

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class ConsoleFiles:
    """Serves a directory of built static files."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _file(self, path: str) -> Path | None:
        relative = path.lstrip("/") or "index.html"
        if "\0" in relative:  # no file has one; Path.resolve raises on it
            return None
        candidate = (self.root / relative).resolve()
        if candidate.is_relative_to(self.root) and candidate.is_file():
            return candidate
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await text(send, 405, "only GET and HEAD are allowed here", [(b"allow", b"GET, HEAD")])
            return
        found = self._file(scope["path"])
        if found is None and "." in scope["path"].rsplit("/", 1)[-1]:
            await text(send, 404, "not found")
            return
        found = found or self.root / "index.html"
        if not found.is_file():
            await text(send, 404, "the console is not built (make console)")
            return
        body = await asyncio.to_thread(found.read_bytes)
        hashed = found.parent.name == "assets"
        cache = b"public, max-age=31536000, immutable" if hashed else b"no-cache"
        content_type = content_type_of(found.name)
        if content_type.startswith("text/") or content_type.endswith(("javascript", "json")):
            content_type += "; charset=utf-8"
        await respond(
            send,
            200,
            body,
            content_type,
            [(b"cache-control", cache), *_SECURITY_HEADERS],
            head=scope["method"] == "HEAD",
        )
