"""URL downloads against local servers: limits, redirects, and the connect-time address check."""

from __future__ import annotations

import socket

import pytest

from gateway.fetch import DownloadError, FetchPolicy, address_refused, fetch
from tests.http_fixtures import serve

ALLOW = FetchPolicy(allow_private=True, timeout_s=5)


def only_127_0_0_1(ip: str) -> str | None:
    """Treats 127.0.0.1 as public and every other address by the real rules (so 127.0.0.2 is refused)."""
    return None if ip == "127.0.0.1" else address_refused(ip)


def test_download_succeeds_when_private_addresses_are_allowed() -> None:
    with serve({"/a.jpg": (200, {"Content-Type": "image/jpeg"}, b"\xff\xd8data")}) as base:
        assert fetch(f"{base}/a.jpg", ALLOW) == b"\xff\xd8data"


def test_loopback_is_refused_by_default() -> None:
    with serve({"/a.jpg": (200, {}, b"x")}) as base, pytest.raises(DownloadError, match="loopback"):
        fetch(f"{base}/a.jpg", FetchPolicy())


def test_a_name_that_resolves_to_loopback_is_refused_at_connect_time() -> None:
    name = socket.gethostname()
    address = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)[0][4][0]
    assert address_refused(str(address)) is not None, "this test needs the host name to resolve to a local address"
    with serve({"/a.jpg": (200, {}, b"x")}, host="127.0.0.1") as base:
        port = base.rsplit(":", 1)[1]
        with pytest.raises(DownloadError, match="resolves to"):
            fetch(f"http://{name}:{port}/a.jpg", FetchPolicy())


def test_a_redirect_to_a_refused_address_is_refused() -> None:
    with serve({"/a.jpg": (200, {}, b"secret")}, host="127.0.0.2") as inner:
        routes = {"/go": (302, {"Location": f"{inner}/a.jpg"}, b"")}
        with serve(routes) as outer, pytest.raises(DownloadError, match="loopback"):
            fetch(f"{outer}/go", FetchPolicy(refuse=only_127_0_0_1, timeout_s=5))
        with serve(routes) as outer:
            assert fetch(f"{outer}/go", ALLOW) == b"secret"


def test_redirect_loops_are_bounded() -> None:
    with serve({"/loop": (302, {"Location": "/loop"}, b"")}) as base, pytest.raises(DownloadError, match="redirects"):
        fetch(f"{base}/loop", ALLOW)


def test_size_limit() -> None:
    with serve({"/big": (200, {}, b"x" * 5000)}) as base, pytest.raises(DownloadError, match="more than 1,000"):
        fetch(f"{base}/big", FetchPolicy(allow_private=True, max_bytes=1000))


def test_time_limit() -> None:
    with serve({"/slow": (200, {}, b"x")}, delay_s=2) as base, pytest.raises(DownloadError, match="timed out"):
        fetch(f"{base}/slow", FetchPolicy(allow_private=True, timeout_s=0.5))


def test_http_errors_are_reported() -> None:
    with serve({}) as base, pytest.raises(DownloadError, match="HTTP 404"):
        fetch(f"{base}/missing.jpg", ALLOW)
