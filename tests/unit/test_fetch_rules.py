import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import replace

import pytest

from renderkit import fetch
from renderkit.fetch import DownloadError, FetchPolicy, OwnedLookups, address_refused, url_problem
from tests.http_fixtures import serve


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://example.com/a.jpg", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http://", "no host"),
        ("http://user:pw@example.com/a.jpg", "credentials"),
        ("http://127.0.0.1/a.jpg", "loopback"),
        ("http://localhost:8080/a.jpg", "loopback"),
        ("http://10.1.2.3/a.jpg", "private"),
        ("http://192.168.0.10/a.jpg", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::1]/a.jpg", "loopback"),
        ("http://[::ffff:127.0.0.1]/a.jpg", "loopback"),
        ("http://0.0.0.0/a.jpg", "unspecified"),
        ("https://example.com:99999/a.jpg", "malformed"),
    ],
)
def test_urls_refused_with_a_reason(url: str, message: str) -> None:
    problem = url_problem(url)
    assert problem is not None and message in problem


def test_public_urls_and_names_pass_the_text_check() -> None:
    assert url_problem("https://cdn.example.com/swatches/oak.jpg?v=2") is None
    assert url_problem("http://93.184.216.34/a.jpg") is None


def test_private_urls_pass_when_allowed() -> None:
    assert url_problem("http://127.0.0.1:8000/a.jpg", allow_private=True) is None


def test_address_classification() -> None:
    assert address_refused("8.8.8.8") is None
    assert address_refused("172.16.5.4") == "a private address"
    assert address_refused("fe80::1") == "a link-local address"


@pytest.mark.parametrize(
    "address, reason",
    [
        ("100.64.0.1", "a shared (carrier-grade NAT) address"),
        ("100.100.100.200", "a shared (carrier-grade NAT) address"),  # a cloud metadata service
        ("192.0.0.8", "a protocol-assignment address"),
        ("198.18.0.1", "a benchmarking address"),
        ("240.0.0.1", "a reserved address"),
        ("0.0.0.0", "an unspecified address"),
        ("169.254.169.254", "a link-local address"),
        ("224.0.0.1", "a multicast address"),
        ("203.0.113.7", "a documentation address"),
        ("fd00::1", "a private address"),
        ("fe80::1", "a link-local address"),
        ("fec0::1", "a site-local address"),
        ("ff02::1", "a multicast address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("64:ff9b::a9fe:a9fe", "a link-local address (inside an IPv6 address)"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::1", "a loopback address (inside an IPv6 address)"),  # 6to4 of 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "a documentation address (inside an IPv6 address)"),  # Teredo
        ("::7f00:1", "a loopback address (inside an IPv6 address)"),  # IPv4-compatible 127.0.0.1
    ],
)
def test_every_address_that_is_not_globally_routable_is_refused(address: str, reason: str) -> None:
    assert address_refused(address) == reason
    host = f"[{address}]" if ":" in address else address
    problem = url_problem(f"http://{host}/a.jpg")
    assert problem == f"the URL points to {reason}"


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "64:ff9b::808:808"])
def test_global_addresses_are_accepted(address: str) -> None:
    assert address_refused(address) is None


def test_one_owners_names_that_never_resolve_hold_no_other_owners_lookups() -> None:
    """A tenant's input URLs on a domain whose DNS drops queries (the system resolver blocks for
    10-30 s, past the download's deadline) held the lookups every tenant's downloads shared: each
    owner has its own, and past its share a lookup fails at once as a name that does not resolve."""
    release = threading.Event()

    def resolve(host: str, port: int) -> list[fetch.AddressInfo]:
        if host.endswith(".blackhole.example"):
            release.wait(10)
        return list(fetch.resolve_host(host, port))

    lookups = OwnedLookups(2)
    policy = FetchPolicy(allow_private=True, timeout_s=1.0, resolve=resolve)
    downloads = ThreadPoolExecutor(2)
    try:
        with serve({"/p.jpg": (200, {}, b"img")}) as base:
            url = base.replace("127.0.0.1", "localhost") + "/p.jpg"  # a name: it is looked up
            owners = replace(policy, resolvers=lookups.of("a"))
            hung = [downloads.submit(fetch.fetch, f"http://h{i}.blackhole.example/p.jpg", owners) for i in range(2)]
            time.sleep(0.2)
            began = time.monotonic()
            with pytest.raises(DownloadError) as refused:  # the owner's third: its two still hang
                fetch.fetch("http://h9.blackhole.example/p.jpg", owners)
            assert refused.value.kind == "connection" and time.monotonic() - began < 0.5
            assert fetch.fetch(url, replace(policy, resolvers=lookups.of("b"))) == b"img"  # another owner
            wait(hung)  # their downloads end at their deadline; their lookups hang on
            with pytest.raises(DownloadError):
                fetch.fetch("http://h9.blackhole.example/p.jpg", owners)
            release.set()
            time.sleep(0.2)
            assert fetch.fetch(url, owners) == b"img"  # its share back
    finally:
        release.set()
        downloads.shutdown()


def test_a_burst_of_one_owners_downloads_whose_names_resolve_is_not_refused() -> None:
    """Two jobs' inputs at once are six downloads of one tenant: a share of four lookups failed the
    fifth and sixth as names with no address (the diff's review). The downloads' share is their
    own bound, so as many as can run at once resolve, however slowly."""

    def resolve(host: str, port: int) -> list[fetch.AddressInfo]:
        time.sleep(0.3)  # an uncached name: each lookup still running as the next begins
        return list(fetch.resolve_host("localhost", port))

    policy = FetchPolicy(allow_private=True, timeout_s=5.0, resolve=resolve)
    owners = replace(policy, resolvers=fetch.download_lookups().of("tenant"))
    downloads = ThreadPoolExecutor(fetch.DOWNLOAD_THREADS)
    try:
        with serve({"/p.jpg": (200, {}, b"img")}) as base:
            port = base.rsplit(":", 1)[1]
            urls = [f"http://cdn{i}.example.com:{port}/p.jpg" for i in range(fetch.DOWNLOAD_THREADS)]
            assert list(downloads.map(lambda url: fetch.fetch(url, owners), urls)) == [b"img"] * len(urls)
    finally:
        downloads.shutdown()
