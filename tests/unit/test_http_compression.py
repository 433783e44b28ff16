"""The HTTP port's gzip for request bodies (gateway.http.compression.BoundedGzip)."""

from __future__ import annotations

import gzip
import os

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from gateway.http.compression import BoundedGzip


def refusal(gz: BoundedGzip, body: bytes) -> tuple[Code, str]:
    with pytest.raises(ConnectError) as refused:
        gz.decompress(body)
    return refused.value.code, refused.value.message


def test_members_are_inflated_in_turn_across_pieces_and_trailing_zeros_end_the_body() -> None:
    gz = BoundedGzip(limit=1 << 20)
    noise = os.urandom(200_000)  # incompressible: a member larger than one piece fed to zlib
    body = gzip.compress(noise) + gzip.compress(b"tail") + bytes(64)
    assert gz.decompress(body) == noise + b"tail"
    assert gz.decompress(memoryview(gzip.compress(b"{}"))) == b"{}"
    assert refusal(gz, gzip.compress(b"{}") + bytes(8) + b"junk") == (
        Code.INVALID_ARGUMENT,
        "the request's body is not gzip",
    )
    assert refusal(gz, gzip.compress(noise)[:-100])[1] == "the request's gzip body is cut short"


def test_a_body_of_many_members_is_refused_after_a_few() -> None:
    """Thousands of empty members cost time in the square of the body inflated one after another;
    clients send one member."""
    gz = BoundedGzip(limit=48 << 20)
    empty = gzip.compress(b"", 9)
    assert gz.decompress(gzip.compress(b"a") * 16) == b"a" * 16
    code, message = refusal(gz, empty * 50_000)
    assert code == Code.INVALID_ARGUMENT and message == "the request's gzip body has more than 16 members"


def test_inflating_stops_one_byte_past_the_limit() -> None:
    gz = BoundedGzip(limit=1000)
    assert gz.decompress(gzip.compress(b"x" * 1000)) == b"x" * 1000
    assert refusal(gz, gzip.compress(b"x" * 1001)) == (
        Code.RESOURCE_EXHAUSTED,
        "the request is larger than 1,000 bytes once decompressed",
    )
