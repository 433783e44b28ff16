"""Downloads of input images by URL, refusing private destinations.

The check is made on the address actually connected to (every redirect hop included), not on
the name in the URL, so DNS tricks cannot reach loopback, private or link-local hosts.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

_REDIRECTS = {301, 302, 303, 307, 308}


class DownloadError(RuntimeError):
    """A URL could not be downloaded, or was refused."""


def address_refused(ip: str) -> str | None:
    """Why an address may not be fetched from (loopback, private, link-local...), or None."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    # Most specific first: link-local and unspecified ranges also count as private.
    for attribute, reason in (
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_unspecified", "unspecified"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    ):
        if getattr(addr, attribute):
            return f"a {reason} address"
    return None


@dataclass(frozen=True)
class FetchPolicy:
    """Limits on URL downloads. `refuse` judges each address (injectable for tests)."""

    allow_private: bool = False
    max_bytes: int = 40 * 1024 * 1024
    timeout_s: float = 20.0
    max_redirects: int = 3
    refuse: Callable[[str], str | None] = field(default=address_refused)


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
    deadline = time.monotonic() + policy.timeout_s
    for _ in range(policy.max_redirects + 1):
        problem = url_problem(url, policy.allow_private, policy.refuse)
        if problem:
            raise DownloadError(problem)
        status, location, body = _get_once(url, policy, deadline)
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
        raise DownloadError("the download timed out")
    return left


def _connect(host: str, port: int, policy: FetchPolicy, deadline: float) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise DownloadError(f"the host {host} could not be resolved") from None
    refused = ""
    for family, kind, proto, _, sockaddr in infos:
        ip = str(sockaddr[0])
        reason = None if policy.allow_private else policy.refuse(ip)
        if reason:
            refused = f"the host {host} resolves to {reason}"
            continue
        sock = socket.socket(family, kind, proto)
        sock.settimeout(_remaining(deadline))
        try:
            sock.connect(sockaddr)
            return sock
        except OSError:
            sock.close()
    raise DownloadError(refused or f"could not connect to {host}")


def _get_once(url: str, policy: FetchPolicy, deadline: float) -> tuple[int, str, bytes]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    sock = _connect(host, port, policy, deadline)
    try:
        if https:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        conn = http.client.HTTPConnection(host, port, timeout=_remaining(deadline))
        sock.settimeout(_remaining(deadline))
        conn.sock = sock  # already connected to the checked address
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn.request("GET", path, headers={"User-Agent": "render-pipeline/0.1", "Accept": "image/*"})
        response = conn.getresponse()
        if response.status in _REDIRECTS:
            return response.status, response.getheader("Location") or "", b""
        if response.status != 200:
            return response.status, "", b""
        length = response.getheader("Content-Length")
        if length and length.isdigit() and int(length) > policy.max_bytes:
            raise DownloadError(f"the file is {int(length):,} bytes, more than {policy.max_bytes:,}")
        chunks, size = [], 0
        while True:
            _remaining(deadline)  # each read is bounded by the socket timeout; the total by the deadline
            chunk = response.read(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > policy.max_bytes:
                raise DownloadError(f"the file is more than {policy.max_bytes:,} bytes")
            chunks.append(chunk)
        return 200, "", b"".join(chunks)
    except (OSError, http.client.HTTPException) as exc:
        if isinstance(exc, TimeoutError | socket.timeout):
            raise DownloadError("the download timed out") from None
        raise DownloadError(f"the download failed: {exc}") from None
    finally:
        sock.close()
