"""/healthz answers GET and HEAD only: a CONNECT answered 200 made h11 switch the connection to a
tunnel, and the body that followed raised inside Hypercorn (an ERROR with a traceback each time)."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import pytest

from gateway.http.app import Cors, HttpApp


async def _call(app: HttpApp, method: str) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {"type": "http", "method": method, "path": "/healthz", "headers": [], "query_string": b""}
    await app(scope, receive, send)
    return sent


def _app() -> HttpApp:
    async def rpc(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not an RPC")

    return HttpApp(
        rpc=rpc,
        rpc_prefixes=["/render.v1.RenderService/"],
        files=None,
        console=None,
        cors=Cors.parse(""),
        max_request_bytes=1024,
        serving=lambda: True,
    )


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_health_answers_get_and_head(method: str) -> None:
    assert asyncio.run(_call(_app(), method))[0]["status"] == 200


@pytest.mark.parametrize("method", ["CONNECT", "POST", "PUT", "DELETE", "TRACE"])
def test_health_refuses_other_methods(method: str) -> None:
    start = asyncio.run(_call(_app(), method))[0]
    assert start["status"] == 405 and (b"allow", b"GET, HEAD") in start["headers"]
