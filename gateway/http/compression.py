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
_PIECE = 64 * 1024  # compressed bytes fed to a member at a time
_MAX_MEMBERS = 16  # clients send one; a few concatenated files are still gzip


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
        view = memoryview(data).cast("B")
        out = bytearray()
        position, members = 0, 0
        # A gzip body may hold several members one after another, and zeros after the last. Each
        # member is fed in pieces, so that what follows it is never copied whole: a body of
        # thousands of empty members would otherwise cost time in the square of its size.
        while position < len(view):
            if view[position] == 0:
                if view[position:].tobytes().strip(b"\0"):  # checked once: the zeros end the body
                    raise ConnectError(Code.INVALID_ARGUMENT, "the request's body is not gzip")
                break
            members += 1
            if members > _MAX_MEMBERS:
                raise ConnectError(
                    Code.INVALID_ARGUMENT, f"the request's gzip body has more than {_MAX_MEMBERS} members"
                )
            member = zlib.decompressobj(_GZIP)
            while not member.eof and position < len(view):
                piece = view[position : position + _PIECE]
                try:  # at most one byte past what the limit leaves
                    out += member.decompress(piece, self.limit - len(out) + 1)
                except zlib.error:
                    raise ConnectError(Code.INVALID_ARGUMENT, "the request's body is not gzip") from None
                if len(out) > self.limit:
                    raise ConnectError(
                        Code.RESOURCE_EXHAUSTED, f"the request is larger than {self.limit:,} bytes once decompressed"
                    )
                position += len(piece) - len(member.unused_data)
            if not member.eof:
                raise ConnectError(Code.INVALID_ARGUMENT, "the request's gzip body is cut short")
        return bytes(out)
