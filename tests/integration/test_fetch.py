"""URL downloads against local servers: limits, redirects, and the connect-time address check."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from devstack.certificates import ensure_development_certificates
from renderkit.fetch import (
    DOWNLOAD_THREADS,
    AddressInfo,
    DownloadError,
    FetchPolicy,
    address_refused,
    decimal,
    fetch,
    fetch_async,
    post,
)
from tests.http_fixtures import serve, trickle

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
        with pytest.raises(DownloadError, match="has no public address"):
            fetch(f"http://{name}:{port}/a.jpg", FetchPolicy())


def test_a_redirect_to_a_refused_address_is_refused() -> None:
    with serve({"/a.jpg": (200, {}, b"secret")}, host="127.0.0.2") as inner:
        routes = {"/go": (302, {"Location": f"{inner}/a.jpg"}, b"")}
        with serve(routes) as outer, pytest.raises(DownloadError, match="loopback"):
            fetch(f"{outer}/go", FetchPolicy(refuse=only_127_0_0_1, timeout_s=5))
        with serve(routes) as outer:
            assert fetch(f"{outer}/go", ALLOW) == b"secret"


def test_a_path_with_spaces_or_other_scripts_is_sent_percent_encoded() -> None:
    """As people paste URLs and as servers write redirects: sent as a browser sends them (before,
    the request could not be written and the job failed with an internal error)."""
    encoded = "/%D1%84%D0%BE%D1%82%D0%BE%201.jpg?size=%D0%B1"
    routes = {
        encoded: (200, {}, b"\xff\xd8photo"),
        "/go": (302, {"Location": "/фото 1.jpg?size=б".encode().decode("latin-1")}, b""),
    }
    with serve(routes) as base:
        assert fetch(f"{base}/фото 1.jpg?size=б", ALLOW) == b"\xff\xd8photo"
        assert fetch(f"{base}{encoded}", ALLOW) == b"\xff\xd8photo"  # an escape is kept as it is
        assert fetch(f"{base}/go", ALLOW) == b"\xff\xd8photo"


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


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_server_trickling_a_byte_a_second_is_cut_off_at_the_deadline(where: str) -> None:
    """Every byte restarts a socket timeout; the deadline bounds the whole download regardless."""
    with trickle(where) as base:
        started = time.monotonic()
        with pytest.raises(DownloadError, match=r"^the download timed out$"):
            fetch(f"{base}/slow.jpg", FetchPolicy(allow_private=True, timeout_s=3))
        elapsed = time.monotonic() - started
    assert 2.0 <= elapsed <= 4.0


def test_a_body_slower_than_the_floor_ends_the_download_before_the_deadline() -> None:
    """A job holds its dispatcher slot while it downloads: a server dripping its body held it for
    the whole budget (a review's tenant kept another's 0.1 s job waiting 19 s). Past the grace, a
    body under the floor's rate ends the download; a prompt one of the same bytes does not."""
    with trickle("body", interval_s=0.25) as base:
        started = time.monotonic()
        with pytest.raises(DownloadError, match=r"^the download was slower than 16 KiB a second$"):
            fetch(f"{base}/slow.jpg", FetchPolicy(allow_private=True, timeout_s=20))
        assert time.monotonic() - started < 8.0  # the whole body would take 8 s, the budget 20
    with trickle("body", interval_s=0.25) as base:  # no floor: the body arrives whole
        assert (
            fetch(f"{base}/slow.jpg", FetchPolicy(allow_private=True, timeout_s=20, min_bytes_per_s=0))[:2]
            == b"\xff\xd8"
        )


def test_headers_and_then_nothing_end_the_download_at_the_floors_grace() -> None:
    """A server that answers its headers at once and then sends nothing fell below the floor too,
    but the floor was only looked at when bytes came: it held the dispatcher slot for the whole
    budget (the known limits of 2026-12-06)."""
    with trickle("stall") as base:
        started = time.monotonic()
        with pytest.raises(DownloadError, match=r"^the download was slower than 16 KiB a second$"):
            fetch(f"{base}/slow.jpg", FetchPolicy(allow_private=True, timeout_s=20))
        assert time.monotonic() - started < 6.0  # the grace is 3 s
    with trickle("stall") as base, pytest.raises(DownloadError, match=r"^the download timed out$"):
        fetch(f"{base}/slow.jpg", FetchPolicy(allow_private=True, timeout_s=2, min_bytes_per_s=0))


def test_headers_trickled_end_the_download_at_the_floors_grace() -> None:
    """A status line and headers sent a byte at a time are never judged by the body's rate: once
    their first bytes come, the rest must follow within the grace. Without a floor, the deadline."""
    with trickle("headers", interval_s=0.25) as base:
        started = time.monotonic()
        with pytest.raises(DownloadError, match=r"^the download was slower than 16 KiB a second$"):
            fetch(f"{base}/slow.jpg", FetchPolicy(allow_private=True, timeout_s=20))
        assert time.monotonic() - started < 6.0  # the first byte at 0.25 s, then 3 s of grace
    with trickle("headers", interval_s=0.25) as base, pytest.raises(DownloadError, match=r"^the download timed out$"):
        fetch(f"{base}/slow.jpg", FetchPolicy(allow_private=True, timeout_s=5, min_bytes_per_s=0))


def test_a_download_works_with_more_files_open_than_select_takes() -> None:
    """The gateway raises its open-files limit for its connections, so a busy one's download socket
    gets a descriptor past 1024, which select() refuses (a ValueError, not a DownloadError, for
    every download: the diff's review). The headers' watchdog is armed by the response's own first
    bytes now, as its reader takes them (which also keeps a TLS 1.3 server's session tickets,
    sent before any answer, from arming it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("this process may not hold more than 1,200 files")
    with serve({"/a.jpg": (200, {}, b"\xff\xd8 image")}) as base:
        if soft != resource.RLIM_INFINITY and soft < 1200:
            resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
        held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
        try:
            assert fetch(f"{base}/a.jpg", ALLOW) == b"\xff\xd8 image"
        finally:
            for fd in held:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextlib.contextmanager
def tls_server(tmp_path: Path, answer: Callable[[ssl.SSLSocket], None]) -> Iterator[str]:
    """A TLS 1.3 server on loopback (the development CA's certificate for localhost) handing each
    connection, its request read, to `answer`; yields its base URL."""
    files = ensure_development_certificates(tmp_path, tmp_path / "ca.key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(str(files.cert), str(files.key))
    listener = socket.create_server(("127.0.0.1", 0))
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            with contextlib.suppress(OSError), context.wrap_socket(raw, server_side=True) as conn:
                conn.recv(65536)
                answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{listener.getsockname()[1]}"
    finally:
        stopping.set()
        listener.close()


def test_over_tls_the_headers_grace_counts_from_the_answer_not_the_handshake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TLS 1.3 server sends its session tickets right after the handshake: the socket is readable
    before any answer, and a watchdog armed then failed a server taking 3.5 s to begin its answer
    as too slow (the diff's review). Headers trickled over TLS still end at the grace."""
    body = b"\xff\xd8" + b"x" * 100_000

    def slow_to_start(conn: ssl.SSLSocket) -> None:
        time.sleep(3.5)  # making the image
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    def trickling(conn: ssl.SSLSocket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n\xff\xd8":
            time.sleep(0.25)
            conn.sendall(bytes([byte]))

    files_dir = tmp_path / "tls"
    with tls_server(files_dir, slow_to_start) as base:
        monkeypatch.setenv("SSL_CERT_FILE", str(files_dir / "ca.crt"))
        assert fetch(f"{base}/tile.jpg", FetchPolicy(allow_private=True, timeout_s=20)) == body
    with tls_server(tmp_path / "tls2", trickling) as base:
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "tls2" / "ca.crt"))
        started = time.monotonic()
        with pytest.raises(DownloadError, match=r"^the download was slower than 16 KiB a second$"):
            fetch(f"{base}/tile.jpg", FetchPolicy(allow_private=True, timeout_s=20))
        assert time.monotonic() - started < 6.0


def test_a_resolver_that_never_answers_is_bounded_by_the_deadline() -> None:
    release = threading.Event()

    def hanging(host: str, port: int) -> Sequence[AddressInfo]:
        release.wait(30)  # getaddrinfo has no timeout of its own
        raise socket.gaierror("no answer")

    try:
        started = time.monotonic()
        with pytest.raises(DownloadError, match=r"^the download timed out$"):
            fetch("http://images.example.com/a.jpg", FetchPolicy(timeout_s=1, resolve=hanging))
        assert time.monotonic() - started < 1.5
    finally:
        release.set()


def test_slow_downloads_have_their_own_pool_and_queue_within_their_deadline() -> None:
    """More trickling downloads than the pool has threads: the default executor stays free, and the
    queued ones fail at their own deadline, not one deadline after another."""

    async def scenario() -> tuple[list[BaseException | bytes], float, float]:
        policy = FetchPolicy(allow_private=True, timeout_s=2)
        started = time.monotonic()
        downloads = [asyncio.ensure_future(fetch_async(f"{base}/{i}.jpg", policy)) for i in range(DOWNLOAD_THREADS + 2)]
        await asyncio.sleep(0.2)
        other = time.monotonic()
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 1.0) == "free"
        other_s = time.monotonic() - other
        results = await asyncio.gather(*downloads, return_exceptions=True)
        return results, time.monotonic() - started, other_s

    with trickle("body") as base:
        results, elapsed, other_s = asyncio.run(scenario())
    assert other_s < 0.5
    assert all(isinstance(r, DownloadError) and str(r) == "the download timed out" for r in results)
    assert elapsed < 3.5


def test_the_download_time_includes_the_headers() -> None:
    with serve({"/a.jpg": (200, {}, b"\xff\xd8data")}) as base:
        assert fetch(f"{base}/a.jpg", FetchPolicy(allow_private=True, timeout_s=3)) == b"\xff\xd8data"
        assert (
            asyncio.run(fetch_async(f"{base}/a.jpg", FetchPolicy(allow_private=True, timeout_s=3))) == b"\xff\xd8data"
        )


def resolving_to(address: str) -> FetchPolicy:
    """The default policy, with every name resolving to one address."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET

    def resolve(host: str, port: int) -> Sequence[AddressInfo]:
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    return FetchPolicy(resolve=resolve, timeout_s=5)


REFUSED = [
    "100.64.0.1",
    "100.100.100.200",
    "192.0.0.8",
    "198.18.0.1",
    "240.0.0.1",
    "0.0.0.0",
    "169.254.169.254",
    "fd00::1",
    "fe80::1",
    "::ffff:127.0.0.1",
    "64:ff9b::a9fe:a9fe",
    "2002:7f00:1::1",
]


@pytest.fixture()
def connects(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Records every outgoing connection attempt this test's thread makes (and makes none); other
    threads (the session's in-process servers reconnecting to Redis) connect as usual."""
    attempts: list[object] = []
    test_thread = threading.get_ident()
    original = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        if threading.get_ident() != test_thread:
            return original(self, address)  # type: ignore[arg-type]
        attempts.append(address)
        raise ConnectionRefusedError("no connections in this test")

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


@pytest.mark.parametrize("address", REFUSED)
def test_a_name_resolving_to_a_refused_address_is_never_connected_to(address: str, connects: list[object]) -> None:
    with pytest.raises(DownloadError, match=re.escape("the host metadata.example has no public address")):
        fetch("http://metadata.example/latest/meta-data", resolving_to(address))
    assert connects == []


def test_a_metadata_address_in_the_url_fails_before_any_connection(connects: list[object]) -> None:
    judged: list[str] = []

    def refuse(ip: str) -> str | None:
        judged.append(ip)
        return address_refused(ip)

    started = time.monotonic()
    with pytest.raises(DownloadError, match="shared"):
        fetch("http://100.100.100.200/x", FetchPolicy())
    with pytest.raises(DownloadError, match="shared"):
        fetch("http://100.100.100.200/x", FetchPolicy(refuse=refuse))
    assert time.monotonic() - started < 0.5
    assert connects == [] and judged == ["100.100.100.200"]


def test_a_public_address_is_connected_to(connects: list[object]) -> None:
    with pytest.raises(DownloadError, match="could not connect"):
        fetch("http://cdn.example/a.jpg", resolving_to("93.184.216.34"))
    assert connects == [("93.184.216.34", 80)]


@contextlib.contextmanager
def answering(raw: bytes) -> Iterator[str]:
    """A server that answers every connection with these bytes as they are (after reading the
    request's head); yields its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def run() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    conn.recv(65536)
                    conn.sendall(raw)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_a_number_header_written_in_other_digits_is_no_number() -> None:
    """Headers are read as Latin-1, where "²" is a digit to str.isdigit() and not to int(): a
    receiver's Retry-After of it is no wait (a webhook's attempt is recorded, not lost to an
    exception), and a download's Content-Length of it is no length."""
    with answering(b"HTTP/1.1 503 Busy\r\nRetry-After: \xb2\r\nContent-Length: 0\r\n\r\n") as base:
        answer = post(f"{base}/hook", b"{}", {}, ALLOW)
    assert (answer.status, answer.retry_after_s) == (503, None)
    with answering(b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\nConnection: close\r\n\r\n\xff\xd8data") as base:
        assert fetch(f"{base}/a.jpg", ALLOW) == b"\xff\xd8data"  # read to the connection's end
    assert (decimal("12"), decimal("\xb2"), decimal(""), decimal("1" * 19)) == (12, None, None, None)
