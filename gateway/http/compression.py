"""Compressed request bodies, inflated no further than the request size limit.

connect-python's gzip inflates a whole body (or a whole enveloped message) at once and checks the
size limit afterwards, so a few kilobytes of gzip could make the process allocate gigabytes before
anything refused them. `BoundedGzip` inflates no more than one byte past the limit, and refuses
the body then (RESOURCE_EXHAUSTED); responses are compressed as before.
"""

from __future__ import annotations

import gzip
import zlib

from connectrpc.code import Code
from connectrpc.errors import ConnectError

_GZIP = 16 + zlib.MAX_WBITS  # zlib's window bits for a gzip member


class BoundedGzip:
    """gzip for connect-python (its Compression protocol), whose inflating stops at `limit` bytes."""

    def __init__(self, limit: int, level: int = 6) -> None:
        self.limit = limit
        self.level = level

    def name(self) -> str:
        return "gzip"

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        return gzip.compress(data, compresslevel=self.level)

    def decompress(self, data: bytes | bytearray | memoryview) -> bytes:
        out = bytearray()
        rest = bytes(data)
        # A gzip body may hold several members one after another, and zeros after the last.
        while rest and rest.strip(b"\0"):
            member = zlib.decompressobj(_GZIP)
            try:  # at most one byte past what the limit leaves
                out += member.decompress(rest, self.limit - len(out) + 1)
            except zlib.error:
                raise ConnectError(Code.INVALID_ARGUMENT, "the request's body is not gzip") from None
            if len(out) > self.limit:
                raise ConnectError(
                    Code.RESOURCE_EXHAUSTED, f"the request is larger than {self.limit:,} bytes once decompressed"
                )
            if not member.eof:
                raise ConnectError(Code.INVALID_ARGUMENT, "the request's gzip body is cut short")
            rest = member.unused_data
        return bytes(out)
