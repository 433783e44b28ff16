"""Downloads of input images by URL, refusing every destination that is not globally routable.

The address check is made on the address actually connected to (every redirect hop included),
not on the name in the URL, so DNS tricks cannot reach loopback, private, link-local or cloud
metadata hosts; IPv6 addresses that carry an IPv4 one (mapped, NAT64, 6to4, Teredo) are judged by
that IPv4 address too.

The deadline bounds the whole download on the wall clock. A socket timeout alone does not: it
restarts with every byte received, so a server trickling a byte a second (in its headers or its
body) held a download far past it. Name resolution (getaddrinfo has no timeout) runs on a small
pool and is waited for only as long as the time left; a watchdog shuts the socket down when the
deadline passes, which ends any connect, TLS handshake or read blocked on it; and every read gets
the time left as its timeout. Downloads run on their own bounded thread pool (`fetch_async`), so
slow ones queue behind each other instead of starving the event loop's default executor, and
time spent queued counts against the deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import email.utils
import functools
import http.client
import io
import ipaddress
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urljoin, urlsplit

T = TypeVar("T")

_REDIRECTS = {301, 302, 303, 307, 308}
_TIMED_OUT = "the download timed out"
# A body is judged by its rate once this long has passed since its headers came (a connection's
# slow start, a busy moment), against FetchPolicy.min_bytes_per_s.
_RATE_GRACE_S = 3.0
# At most this many downloads run at once; more wait their turn (within their own deadline).
DOWNLOAD_THREADS = 8
_DOWNLOADS = concurrent.futures.ThreadPoolExecutor(DOWNLOAD_THREADS, thread_name_prefix="fetch")
# A resolution stuck past its download's deadline keeps its thread until the system resolver
# gives up; the pool bounds how many such threads there can be.
_RESOLVERS = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="fetch-resolve")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# What socket.getaddrinfo returns: (family, type, proto, canonical name, socket address).
AddressInfo = tuple[Any, Any, int, str, tuple[Any, ...]]


class DownloadError(RuntimeError):
    """A URL could not be downloaded (or posted to), or was refused. `kind` says which way, for
    callers that report it: invalid_url, address_refused, timeout, connection, tls,
    invalid_response or failed."""

    def __init__(self, message: str, kind: str = "failed") -> None:
        super().__init__(message)
        self.kind = kind


def _networks(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


def _within(networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> Callable[[IPAddress], bool]:
    return lambda addr: any(addr in network for network in networks)  # False across IP versions


_THIS_NETWORK = _within(_networks("0.0.0.0/8"))
# Why an address that is not globally routable is refused, most specific first (the IANA
# special-purpose registries); anything else not global is "not publicly routable".
_REASONS: tuple[tuple[Callable[[IPAddress], bool], str], ...] = (
    (lambda a: a.is_unspecified or _THIS_NETWORK(a), "an unspecified address"),
    (lambda a: a.is_loopback, "a loopback address"),
    (lambda a: a.is_link_local, "a link-local address"),
    (lambda a: a.is_multicast, "a multicast address"),
    (_within(_networks("100.64.0.0/10")), "a shared (carrier-grade NAT) address"),
    (_within(_networks("198.18.0.0/15", "2001:2::/48")), "a benchmarking address"),
    (
        _within(_networks("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")),
        "a documentation address",
    ),
    (_within(_networks("192.0.0.0/24")), "a protocol-assignment address"),
    (lambda a: isinstance(a, ipaddress.IPv6Address) and a.is_site_local, "a site-local address"),
    (lambda a: a.is_reserved, "a reserved address"),
    (_within(_networks("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")), "a private address"),
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _not_global(addr: IPAddress) -> str | None:
    """Why an address is not globally routable, or None. Multicast counts as not routable here
    (ipaddress calls global multicast global); IPv6 site-local too (deprecated, never global)."""
    site_local = isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local
    if addr.is_global and not addr.is_multicast and not site_local:
        return None
    for test, reason in _REASONS:
        if test(addr):
            return reason
    return "an address that is not publicly routable"


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (NAT64, 6to4, Teredo's server and client,
    and the deprecated IPv4-compatible form)."""
    found: list[ipaddress.IPv4Address] = []
    if addr in _NAT64 or (addr in _IPV4_COMPATIBLE and int(addr) > 1):
        found.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    if addr.sixtofour is not None:
        found.append(addr.sixtofour)
    if addr.teredo is not None:
        found.extend(addr.teredo)
    return found


def address_refused(ip: str) -> str | None:
    """Why an address may not be fetched from (every address that is not globally routable:
    loopback, private, link-local, shared, reserved...), or None. ValueError if it is not an IP."""
    addr: IPAddress = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return _not_global(addr.ipv4_mapped)  # the IPv4 address itself, as the kernel connects to it
        for inner in _embedded_ipv4(addr):
            reason = _not_global(inner)
            if reason:
                return f"{reason} (inside an IPv6 address)"
    return _not_global(addr)


def resolve_host(host: str, port: int) -> Sequence[AddressInfo]:
    """The system resolver's TCP addresses of a host (socket.getaddrinfo)."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


@dataclass(frozen=True)
class FetchPolicy:
    """Limits on URL downloads. `refuse` judges each address and `resolve` resolves names
    (both injectable for tests)."""

    allow_private: bool = False
    max_bytes: int = 40 * 1024 * 1024
    timeout_s: float = 20.0
    # A body arriving slower than this on average, past _RATE_GRACE_S, ends the download (0: no
    # floor): a server trickling bytes held its job's dispatcher slot until the deadline.
    min_bytes_per_s: float = 16 * 1024
    max_redirects: int = 3
    refuse: Callable[[str], str | None] = field(default=address_refused)
    resolve: Callable[[str, int], Sequence[AddressInfo]] = field(default=resolve_host)
    # Where names are resolved (None: a shared pool of four threads). A caller whose names its
    # users choose, and whose resolutions may hang (a tenant's webhook endpoint or input URL on a
    # domain whose DNS drops queries), resolves each user's among its own (OwnedLookups.of).
    resolvers: concurrent.futures.Executor | None = field(default=None, compare=False)


class OwnedLookups:
    """Where the names of owners' URLs are resolved (tenants: their webhook endpoints, their jobs'
    input URLs): each lookup on a thread of its own, at most `most` of one owner's at once, those
    that hang past their request included (a lookup cannot be stopped once begun). A pool shared
    by every owner filled with one owner's lookups (its names on a domain whose DNS drops queries:
    the system resolver waits 10-30 s, longer than a request, and each retry adds a stuck lookup)
    and every other owner's requests waited behind them until they timed out. Past its share an
    owner's lookup fails at once (as a name that does not resolve). Threads: at most owners x most."""

    def __init__(self, most: int) -> None:
        self.most = max(most, 1)
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}

    def of(self, owner: str) -> concurrent.futures.Executor:
        """The executor of one owner's lookups (FetchPolicy.resolvers)."""
        return _OwnersLookups(self, owner)

    def _start(self, owner: str) -> bool:
        with self._lock:
            if self._running.get(owner, 0) >= self.most:
                return False
            self._running[owner] = self._running.get(owner, 0) + 1
            return True

    def _end(self, owner: str) -> None:
        with self._lock:
            left = self._running.get(owner, 1) - 1
            if left:
                self._running[owner] = left
            else:
                self._running.pop(owner, None)


class _OwnersLookups(concurrent.futures.Executor):
    def __init__(self, lookups: OwnedLookups, owner: str) -> None:
        self._lookups = lookups
        self._owner = owner

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        future: concurrent.futures.Future[object] = concurrent.futures.Future()
        if not self._lookups._start(self._owner):  # its earlier lookups still hang: it fails now
            future.set_exception(OSError("the owner's earlier name lookups have not answered"))
            return future

        def lookup() -> None:
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(*args, **kwargs))
                    except BaseException as exc:
                        future.set_exception(exc)
            finally:
                self._lookups._end(self._owner)

        try:
            threading.Thread(target=lookup, name="fetch-resolve-owned", daemon=True).start()
        except RuntimeError as exc:  # no thread to be had: the lookup fails, its place is given back
            self._lookups._end(self._owner)
            future.set_exception(OSError(f"no thread for a name lookup: {exc}"))
        return future


def download_lookups() -> OwnedLookups:
    """The lookups of downloads, by owner (FetchPolicy.resolvers = download_lookups().of(tenant)).
    An owner's share is the downloads' own bound (DOWNLOAD_THREADS), so names that resolve are never
    refused for coming together (two jobs' inputs at once: a share of 4 failed the fifth and sixth
    as names with no address); only an owner whose lookups hang past their downloads runs out."""
    return OwnedLookups(DOWNLOAD_THREADS)


def url_problem(
    url: str, allow_private: bool = False, refuse: Callable[[str], str | None] = address_refused
) -> str | None:
    """Why a URL cannot be accepted, judged from its text alone (the address is checked when fetching)."""
    if len(url) > 2048:
        return "the URL is longer than 2048 characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "the URL is malformed"
    if parts.scheme not in ("http", "https"):
        return "only http and https URLs are accepted"
    if not parts.hostname:
        return "the URL has no host"
    if parts.username or parts.password:
        return "URLs with credentials are not accepted"
    del port
    if not allow_private:
        try:
            reason = refuse(parts.hostname)
        except ValueError:
            reason = None  # a name, resolved and checked at download time
        if reason or parts.hostname.lower() in ("localhost", "localhost.localdomain"):
            return f"the URL points to {reason or 'a loopback address'}"
    return None


def fetch(url: str, policy: FetchPolicy) -> bytes:
    """Downloads a URL's body within the policy's size and time limits, following safe redirects."""
    return _fetch_until(url, policy, time.monotonic() + policy.timeout_s)


async def fetch_async(url: str, policy: FetchPolicy) -> bytes:
    """fetch on the downloads' own bounded thread pool; the deadline starts now, queueing included."""
    deadline = time.monotonic() + policy.timeout_s
    return await asyncio.get_running_loop().run_in_executor(_DOWNLOADS, _fetch_until, url, policy, deadline)


@dataclass(frozen=True)
class PostResponse:
    """What a receiver answered a POST: its status and, when it sent one, its Retry-After (s)."""

    status: int
    retry_after_s: float | None = None


def post(
    url: str, body: bytes, headers: dict[str, str], policy: FetchPolicy, max_response_bytes: int = 64 * 1024
) -> PostResponse:
    """POSTs a body to a URL under the same rules as a download (every address that is not globally
    routable refused unless the policy allows private ones, checked on the address connected to;
    the whole request within the policy's timeout), following no redirect: a 3xx is an answer like
    any other. At most `max_response_bytes` of the answer's body are read, and dropped."""
    deadline = time.monotonic() + policy.timeout_s
    problem = url_problem(url, policy.allow_private, policy.refuse)
    if problem:
        raise _refusal(problem)
    return _to_checked_address(
        url,
        policy,
        deadline,
        lambda sock, watchdog, host, port, target: _post_exchange(
            sock, watchdog, host, port, target, body, headers, max_response_bytes, deadline
        ),
    )


def _refusal(problem: str) -> DownloadError:
    """A URL refused from its text (url_problem): its address, or its form."""
    return DownloadError(problem, "address_refused" if problem.startswith("the URL points to") else "invalid_url")


def _fetch_until(url: str, policy: FetchPolicy, deadline: float) -> bytes:
    for _ in range(policy.max_redirects + 1):
        problem = url_problem(url, policy.allow_private, policy.refuse)
        if problem:
            raise _refusal(problem)
        status, location, body = _to_checked_address(
            url,
            policy,
            deadline,
            lambda sock, watchdog, host, port, target: _exchange(sock, watchdog, host, port, target, policy, deadline),
        )
        if status in _REDIRECTS:
            if not location:
                raise DownloadError(f"HTTP {status} without a Location")
            url = urljoin(url, location)
            continue
        if status != 200:
            raise DownloadError(f"the server answered HTTP {status}")
        return body
    raise DownloadError(f"more than {policy.max_redirects} redirects")


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DownloadError(_TIMED_OUT, "timeout")
    return left


def _resolve(host: str, port: int, policy: FetchPolicy, deadline: float) -> Sequence[AddressInfo]:
    """The host's addresses, waited for no longer than the deadline (literal IPs need no resolver)."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 0, "", (host, port))]
    future = (policy.resolvers or _RESOLVERS).submit(policy.resolve, host, port)
    try:
        return future.result(timeout=_remaining(deadline))
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise DownloadError(_TIMED_OUT, "timeout") from None
    except (OSError, UnicodeError):
        raise DownloadError(_unresolved(host), "connection") from None


class _Watchdog:
    """Shuts a socket down when the deadline passes, so whatever is blocked on it returns at once.

    It shuts down a duplicate of the socket's descriptor: that acts on the connection without
    touching the Python (or TLS) object the reading thread is using. Disarm it before closing the
    socket, so it can never act on a descriptor number reused by another connection.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.fired = False
        self._fd = sock.fileno()
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._fd < 0:
                return
            self.fired = True
            try:
                with socket.socket(fileno=os.dup(self._fd)) as duplicate:
                    duplicate.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the peer: nothing is blocked on it

    def disarm(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._fd = -1


# What a request target keeps as it is: RFC 3986's reserved and unreserved characters, and "%" (an
# escape the URL already has). Anything else (spaces, controls, non-ASCII, as people paste URLs and
# as servers write them in redirects) is sent percent-encoded as UTF-8, as browsers send it.
_TARGET_SAFE = "/?#[]@!$&'()*+,;=:-._~%"


def request_target(path: str, query: str) -> str:
    """The request line's target of a URL's path and query, percent-encoded where HTTP needs it."""
    target = (path or "/") + (f"?{query}" if query else "")
    return quote(target, safe=_TARGET_SAFE)


# One request and its answer over a socket connected to a checked address:
# (socket, watchdog, host, port, target) -> the answer.
Exchange = Callable[[socket.socket, "_Watchdog", str, int, str], T]


def _to_checked_address(url: str, policy: FetchPolicy, deadline: float, exchange: Exchange[T]) -> T:
    """The answer of the first of the URL's addresses that is allowed and can be connected to."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    target = request_target(parts.path, parts.query)
    refused = ""
    for family, kind, proto, _, sockaddr in _resolve(host, port, policy, deadline):
        # Judged before any connection is attempted: a refused address is never contacted.
        reason = None if policy.allow_private else policy.refuse(str(sockaddr[0]))
        if reason:
            # Said as an unresolvable name is: a caller telling the two apart could map the
            # names an internal resolver knows (and the kind of address each has).
            refused = _unresolved(host)
            continue
        sock = socket.socket(family, kind, proto)
        answer = _over_connection(sock, sockaddr, host, port, https, target, deadline, exchange)
        if answer is not None:
            return answer[0]
    if refused:
        raise DownloadError(refused, "connection")
    raise DownloadError("could not connect to the URL's server", "connection")


def _over_connection(
    sock: socket.socket,
    sockaddr: tuple[Any, ...],
    host: str,
    port: int,
    https: bool,
    target: str,
    deadline: float,
    exchange: Exchange[T],
) -> tuple[T] | None:
    """The answer of one checked address (in a 1-tuple), or None when it cannot be connected to."""
    watchdog = _Watchdog(sock, deadline)
    try:
        try:
            sock.settimeout(_remaining(deadline))
            sock.connect(sockaddr)
        except OSError:
            if watchdog.fired or time.monotonic() >= deadline:
                raise DownloadError(_TIMED_OUT, "timeout") from None
            return None  # the next address, if any
        try:
            if https:
                # The handshake is started by hand: a failed automatic one closes the descriptor
                # itself, before the watchdog is disarmed.
                sock = ssl.create_default_context().wrap_socket(
                    sock, server_hostname=host, do_handshake_on_connect=False
                )
                sock.settimeout(_remaining(deadline))
                sock.do_handshake()  # type: ignore[attr-defined]
            return (exchange(sock, watchdog, host, port, target),)
        except (OSError, http.client.HTTPException) as exc:
            if watchdog.fired or time.monotonic() >= deadline or isinstance(exc, TimeoutError):
                raise DownloadError(_TIMED_OUT, "timeout") from None
            raise DownloadError(*_failure(exc)) from None
    finally:
        watchdog.disarm()
        sock.close()


def _exchange(
    sock: socket.socket,
    watchdog: _Watchdog,
    host: str,
    port: int,
    target: str,
    policy: FetchPolicy,
    deadline: float,
) -> tuple[int, str, bytes]:
    """The request and its response over a socket connected to a checked address."""
    conn = http.client.HTTPConnection(host, port)
    conn.sock = sock  # already connected to the checked address
    sock.settimeout(_remaining(deadline))
    conn.request("GET", target, headers={"User-Agent": "render-pipeline/0.1", "Accept": "image/*"})
    floor = policy.min_bytes_per_s
    too_slow = DownloadError(f"the download was slower than {floor / 1024:,.0f} KiB a second", "timeout")
    response = _response(conn, sock, deadline, too_slow if floor > 0 else None)
    if response.status in _REDIRECTS:
        return response.status, _header_text(response.getheader("Location") or ""), b""
    if response.status != 200:
        return response.status, "", b""
    length = response.getheader("Content-Length")
    declared = decimal(length or "")
    if declared is not None and declared > policy.max_bytes:
        raise DownloadError(f"the file is {declared:,} bytes, more than {policy.max_bytes:,}")
    chunks, size = [], 0
    # The body is judged by its rate from the headers' arrival (a server slow to answer at all is
    # the deadline's to judge): one that sends its headers and then nothing, or drips, ends once
    # it falls below the floor, as a read waits only until then.
    began = time.monotonic()
    while True:
        wait = _remaining(deadline)  # each read gets the time left, the watchdog the rest
        if floor > 0:  # without another byte, the body falls below the floor this long after `began`
            below = max(_RATE_GRACE_S, size / floor) + 0.01 - (time.monotonic() - began)
            wait = below if below < wait else wait
        sock.settimeout(max(wait, 0.001))
        try:
            chunk = response.read1(65536)
        except TimeoutError:
            if floor > 0 and not watchdog.fired and time.monotonic() < deadline:
                raise too_slow from None
            raise
        if not chunk:
            break
        size += len(chunk)
        if size > policy.max_bytes:
            raise DownloadError(f"the file is more than {policy.max_bytes:,} bytes")
        chunks.append(chunk)
        took = time.monotonic() - began
        if floor > 0 and took > _RATE_GRACE_S and size < floor * took:
            raise too_slow
    if watchdog.fired:  # a body without a length ends at the shutdown as if complete
        raise DownloadError(_TIMED_OUT, "timeout")
    return 200, "", b"".join(chunks)


def _response(
    conn: http.client.HTTPConnection, sock: socket.socket, deadline: float, too_slow: DownloadError | None
) -> http.client.HTTPResponse:
    """The response's status line and headers. However long the server takes to begin answering is
    the deadline's to judge; with a rate floor (too_slow), once its first bytes come the rest of the
    headers must follow within _RATE_GRACE_S: a server trickling them a byte at a time held the
    job's dispatcher slot for the whole budget (else a watchdog at the deadline ends it).

    "Its first bytes" are the response's own, as the response reads them (decrypted, over TLS): a
    TLS 1.3 server's session tickets make the socket readable right after the handshake, and
    select() holds descriptors below FD_SETSIZE (1024) only."""
    if too_slow is None:
        return conn.getresponse()
    headers_watchdog: _Watchdog | None = None

    def first_bytes() -> None:
        nonlocal headers_watchdog
        headers_by = time.monotonic() + _RATE_GRACE_S
        if headers_by < deadline:  # else the deadline's watchdog ends what is blocked
            headers_watchdog = _Watchdog(sock, headers_by)

    conn.response_class = functools.partial(_FirstBytesResponse, first_bytes)  # type: ignore[assignment]
    try:
        response = conn.getresponse()
    except (OSError, http.client.HTTPException):
        if headers_watchdog is not None and headers_watchdog.fired:
            raise too_slow from None
        raise
    finally:
        if headers_watchdog is not None:
            headers_watchdog.disarm()
    if headers_watchdog is not None and headers_watchdog.fired:  # a status line cut short parses as one
        raise too_slow  # ("HTTP/1.1 200 ", no headers)
    return response


class _FirstBytesReader(io.RawIOBase):
    """A socket's bytes (its own unbuffered file, which keeps the descriptor open while the
    response reads, as HTTPResponse's would), calling back once when the first come."""

    def __init__(self, sock: socket.socket, first: Callable[[], None]) -> None:
        self._raw = sock.makefile("rb", buffering=0)
        self._first: Callable[[], None] | None = first

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        count = self._raw.readinto(buffer)
        if count and self._first is not None:
            first, self._first = self._first, None
            first()
        return count

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _FirstBytesSocket:
    """What HTTPResponse takes as its socket: only its makefile is used."""

    def __init__(self, sock: socket.socket, first: Callable[[], None]) -> None:
        self._sock, self._first = sock, first

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_FirstBytesReader(self._sock, self._first))


class _FirstBytesResponse(http.client.HTTPResponse):
    def __init__(self, first: Callable[[], None], sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(_FirstBytesSocket(sock, first), *args, **kwargs)  # type: ignore[arg-type]


def _header_text(value: str) -> str:
    """A header's text as its sender meant it: http.client reads headers as Latin-1, and servers
    write a redirect's non-ASCII characters as UTF-8 bytes (browsers read them so)."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def _post_exchange(
    sock: socket.socket,
    watchdog: _Watchdog,
    host: str,
    port: int,
    target: str,
    body: bytes,
    headers: dict[str, str],
    max_response_bytes: int,
    deadline: float,
) -> PostResponse:
    """A POST and its answer over a socket connected to a checked address; the answer's body is
    read up to a bound (so the connection ends cleanly) and dropped."""
    conn = http.client.HTTPConnection(host, port)
    conn.sock = sock  # already connected to the checked address
    sock.settimeout(_remaining(deadline))
    conn.request(
        "POST", target, body=body, headers={"User-Agent": "render-pipeline/0.1", "Connection": "close", **headers}
    )
    response = conn.getresponse()  # a status line or headers trickled in end at the watchdog
    if watchdog.fired:
        raise DownloadError(_TIMED_OUT, "timeout")
    answer = PostResponse(response.status, retry_after_seconds(response.getheader("Retry-After") or ""))
    # The status is the answer: a body that is slow, long or cut short changes nothing.
    with contextlib.suppress(OSError, http.client.HTTPException, DownloadError):
        read = 0
        while read < max_response_bytes:
            sock.settimeout(_remaining(deadline))
            chunk = response.read1(min(65536, max_response_bytes - read))
            if not chunk:
                break
            read += len(chunk)
    return answer


# RFC 9110 5.6.7's third HTTP-date form, which recipients must accept: "Sun Nov  6 08:49:37 1994" (GMT).
_ASCTIME = re.compile(r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}")


def retry_after_seconds(text: str, now: float | None = None) -> float | None:
    """A Retry-After header's wait in seconds: delay-seconds or an HTTP-date (RFC 9110 10.2.3), a
    date in the past being no wait; None when absent or unreadable."""
    waited = decimal(text)
    return float(waited) if waited is not None else http_date_wait(text, now)


def http_date_wait(text: str, now: float | None = None) -> float | None:
    """The seconds until an HTTP-date (any of RFC 9110 5.6.7's three forms, GMT), 0 for one past;
    None when the text is not one."""
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT: only asctime's form names no zone
        if not _ASCTIME.fullmatch(text.strip()):
            return None
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def decimal(text: str) -> int | None:
    """A header's non-negative decimal number (Content-Length, Retry-After's seconds), else None.
    Headers are read as Latin-1, and str.isdigit() takes "²" and other digits int() refuses."""
    return int(text) if _DECIMAL.fullmatch(text) else None


_DECIMAL = re.compile(r"[0-9]{1,18}")


def _unresolved(host: str) -> str:
    """A name with no public address: unresolvable, or resolving to addresses that are refused."""
    return f"the host {_shown(host)} has no public address"


def _shown(host: str) -> str:
    """A host as messages show it: a name of up to 64 characters, longer ones cut."""
    return host if len(host) <= 64 else host[:61] + "..."


def _failure(exc: OSError | http.client.HTTPException) -> tuple[str, str]:
    """A failed exchange in words safe to show (no library class names or internal addresses), and
    its kind."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "the server's TLS certificate could not be verified", "tls"
    if isinstance(exc, ssl.SSLError):
        return "the TLS handshake with the server failed", "tls"
    if isinstance(exc, http.client.IncompleteRead):
        return "the server closed the connection before the whole file arrived", "connection"
    if isinstance(exc, ConnectionError | http.client.RemoteDisconnected):
        return "the server closed the connection", "connection"
    if isinstance(exc, http.client.HTTPException):
        return "the server's answer is not valid HTTP", "invalid_response"
    return "the download failed", "failed"
