"""Compressed request bodies, inflated no further than the request size limit.

connect-python's gzip inflates a whole body (or a whole enveloped message) at once and checks the
size limit afterwards, so a few kilobytes of gzip could make the process allocate gigabytes before
anything refused them. `BoundedGzip` inflates in steps and stops, RESOURCE_EXHAUSTED, as soon as
the output passes the limit; responses are compressed as before.
"""

from __future__ import annotations

import gzip
import zlib

from connectrpc.code import Code
from connectrpc.errors import ConnectError

_GZIP = 16 + zlib.MAX_WBITS  # zlib's window bits for a gzip member
_STEP = 1 << 20  # bytes inflated at a time


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
        while rest:  # a gzip body may hold several members, one after another
            member = zlib.decompressobj(_GZIP)
            pending = rest
            while not member.eof:
                try:
                    chunk = member.decompress(pending, _STEP)
                except zlib.error:
                    raise ConnectError(Code.INVALID_ARGUMENT, "the request's body is not gzip") from None
                out += chunk
                if len(out) > self.limit:
                    raise ConnectError(
                        Code.RESOURCE_EXHAUSTED,
                        f"the request is larger than {self.limit:,} bytes once decompressed",
                    )
                pending = member.unconsumed_tail
                if not chunk and not pending:
                    raise ConnectError(Code.INVALID_ARGUMENT, "the request's gzip body is cut short")
            rest = member.unused_data
        return bytes(out)
