"""`GET /files/<key>`: a job's output behind a signed, expiring link (gateway.links), served with
its media type, an entity tag, caching headers and byte ranges.

A tampered or foreign link is refused with 403, an expired one with 403 saying so, a missing
object with 404. The object is read from storage in pieces, so a large file never sits whole in
the gateway's memory.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from urllib.parse import parse_qs, unquote

from gateway.http.asgi import Headers, Receive, Scope, Send, header, respond, text
from gateway.links import FILES_PATH, LinkError, LinkSigner
from renderkit.storage import Storage, StorageError, StorageMissing

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)\Z")
_PAST_ANY_SIZE = 1 << 63


def _position(digits: str) -> int:
    """A range's byte position or length; a number too long to be a size is past any file (int()
    refuses a string of over 4,300 digits, so a long one was a 500 and a traceback in the log)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else _PAST_ANY_SIZE


def byte_range(value: str, size: int) -> tuple[int, int] | str | None:
    """The one range a Range header asks for, as (first, last) inclusive; None to send the whole
    file (no header, or several ranges, which RFC 9110 lets a server ignore); "unsatisfiable"."""
    if not value or "," in value:
        return None
    match = _RANGE.match(value.strip())
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # the last N bytes
        length = _position(last)
        if length == 0:
            return "unsatisfiable"
        return max(size - length, 0), size - 1
    start = _position(first)
    end = size - 1 if last == "" else min(_position(last), size - 1)
    if start >= size or (last != "" and _position(last) < start):
        return "unsatisfiable"
    return start, end


class FileRoute:
    """Serves objects of a storage to whoever holds a link the signer made."""

    def __init__(self, storage: Storage, signer: LinkSigner) -> None:
        self.storage = storage
        self.signer = signer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await text(send, 405, "only GET and HEAD are allowed here", [(b"allow", b"GET, HEAD")])
            return
        key = unquote(scope["path"][len(FILES_PATH) :])
        query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
        try:
            self.signer.verify(
                key,
                query.get("expires", [""])[0],
                query.get("kid", [""])[0],
                query.get("sig", [""])[0],
            )
            info = await asyncio.to_thread(self.storage.stat, key)
        except LinkError as exc:
            await text(send, 403, str(exc))
            return
        except StorageMissing:
            await text(send, 404, "no such file (it may have expired with its job)")
            return
        except StorageError:  # the storage away: asking again may help
            await text(send, 503, "the storage is unavailable; retry in a moment", [(b"retry-after", b"1")])
            return
        expires = int(query["expires"][0])
        headers: Headers = [
            (b"etag", info.etag.encode()),
            (b"accept-ranges", b"bytes"),
            # The link is its own capability: private to whoever holds it, immutable, and worth
            # keeping only while the link itself is valid.
            (b"cache-control", f"private, max-age={max(int(expires - time.time()), 0)}, immutable".encode()),
            (b"x-content-type-options", b"nosniff"),
            # An output shares the console's origin: were one ever markup, it could run nothing.
            (b"content-security-policy", b"sandbox; default-src 'none'"),
        ]
        # Weak comparison, and "*" for any current representation (RFC 9110, 13.1.2).
        matches = {tag.strip().removeprefix("W/") for tag in header(scope, b"if-none-match").split(",")}
        if info.etag.removeprefix("W/") in matches or "*" in matches:
            await respond(send, 304, content_type="", headers=headers)
            return
        wanted: tuple[int, int] | str | None = None
        if_range = header(scope, b"if-range")
        if not if_range or if_range == info.etag:
            wanted = byte_range(header(scope, b"range"), info.size_bytes)
        if wanted == "unsatisfiable":
            await respond(
                send,
                416,
                content_type="",
                headers=[*headers, (b"content-range", f"bytes */{info.size_bytes}".encode())],
            )
            return
        status, first, last = 200, 0, info.size_bytes - 1
        if isinstance(wanted, tuple):
            status, (first, last) = 206, wanted
            headers.append((b"content-range", f"bytes {first}-{last}/{info.size_bytes}".encode()))
        length = max(last - first + 1, 0)
        headers += [(b"content-type", info.content_type.encode()), (b"content-length", str(length).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if method == "HEAD" or length == 0:
            await send({"type": "http.response.body", "body": b""})
            return
        position = first
        while position <= last:
            size = min(CHUNK_BYTES, last - position + 1)
            try:
                chunk = await asyncio.to_thread(self.storage.read, key, position, size)
            except StorageError:
                log.warning("an output vanished while it was being sent")
                chunk = b""
            if not chunk:  # the file shrank or vanished: end the response early (the length tells)
                break
            position += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": position <= last})
        if position <= last:
            await send({"type": "http.response.body", "body": b""})
