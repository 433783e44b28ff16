"""The web console's built files (console/dist), served at `/`.

`index.html` is never cached (it names the current build's files); the files under `assets/`
carry a content hash in their names and are cached for a year. Anything that is not a file of the
build answers with index.html, so the console's own routes survive a reload.

Every answer carries a Content-Security-Policy: the console runs its own script and stylesheet
only, talks to its own origin only, and shows images from its origin, from the links the gateway
makes for outputs, and from the browser's own data: and blob: URLs (the pictures a user picks).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from gateway.http.asgi import Receive, Scope, Send, respond, text
from renderkit.storage import content_type_of

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


def content_security_policy(image_origins: Iterable[str] = ()) -> bytes:
    """The console's policy; image_origins are where output links point besides the console's
    own origin (the gateway's public URL, a bucket's signed URLs)."""
    images = " ".join(dict.fromkeys(["'self'", "data:", "blob:", *(o for o in image_origins if o)]))
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        f"img-src {images}; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ).encode()


class ConsoleFiles:
    """Serves a directory of built static files."""

    def __init__(self, root: Path, image_origins: Iterable[str] = ()) -> None:
        self.root = root.resolve()
        self._headers = [*_SECURITY_HEADERS, (b"content-security-policy", content_security_policy(image_origins))]

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
            [(b"cache-control", cache), *self._headers],
            head=scope["method"] == "HEAD",
        )
