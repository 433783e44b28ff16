"""The little ASGI the gateway's HTTP port needs around Connect: plain responses and headers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

# The scope key of a request's RequestState: the HTTP server puts one in every request's scope, the
# application notes in it what the server should know (copies of the scope share it).
REQUEST_STATE = "render.request"


@dataclass(eq=False)
class RequestState:
    """What the application tells the server about a request in flight: `refused` once it is being
    refused for its credential (it then holds no place the server must keep for it)."""

    refused: bool = False


def note_refused(scope: Scope) -> None:
    """Notes in the scope's RequestState (when the server gave it one) that the request is refused."""
    state = scope.get(REQUEST_STATE)
    if isinstance(state, RequestState):
        state.refused = True


def header(scope: Scope, name: bytes) -> str:
    """A request header's value ("" when absent); name in lowercase."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


async def respond(
    send: Send,
    status: int,
    body: bytes = b"",
    content_type: str = "text/plain; charset=utf-8",
    headers: Iterable[tuple[bytes, bytes]] = (),
    head: bool = False,
) -> None:
    """A whole response at once (no body on HEAD, or with 204 and 304)."""
    out: Headers = [(b"content-type", content_type.encode())] if body or content_type else []
    out += list(headers)
    if status not in (204, 304):
        out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": b"" if head or status in (204, 304) else body})


async def text(send: Send, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """A short plain-text answer (errors, refusals), one line."""
    await respond(send, status, (message + "\n").encode(), headers=headers)
