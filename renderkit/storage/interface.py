"""What every storage backend shares: the Storage protocol, what it returns, and its one error."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit


class StorageError(OSError):
    """A storage operation failed; the message is safe to show (no server paths, addresses or
    class names)."""


class StorageMissing(StorageError):
    """The object read is not stored (never was, or was deleted since): unlike the storage being
    away, asking again will not help."""


@dataclass(frozen=True)
class StoredObject:
    """A file written to storage."""

    key: str
    uri: str
    size_bytes: int
    content_type: str
    sha256: str


@dataclass(frozen=True)
class ObjectInfo:
    """What a stored object is, without its bytes."""

    size_bytes: int
    content_type: str
    etag: str  # a quoted HTTP entity tag that changes whenever the object does


class Storage(Protocol):
    """The interface every storage backend implements."""

    def key_of(self, uri: str) -> str:
        """The key of an object from the URI this storage gave it; StorageError for another's URI."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """Describes the object under the key; raises StorageError when there is none."""
        ...

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Reads `length` bytes (all to the end when None) from `offset`; StorageError when missing."""
        ...

    def signed_url(self, key: str, ttl_s: float) -> tuple[str, int] | None:
        """A URL any host can read the object from for ttl_s seconds, and when it expires (unix
        seconds); None when the backend cannot sign URLs itself (the gateway signs its own then)."""
        ...

    def link_origin(self) -> str | None:
        """Where the URLs signed_url makes point (scheme://host[:port]), so that a page showing
        them can allow that origin alone; None when this backend makes none."""
        ...

    def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        """Writes data under the key (replacing what was there) and describes the stored object.
        The write is atomic: readers see the old object or the whole new one, never a part."""
        ...

    def get(self, key: str) -> bytes:
        """Reads the bytes stored under the key; raises StorageError when there are none."""
        ...

    def delete(self, key: str) -> None:
        """Removes the key; missing keys are ignored."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Removes every key under a folder-like prefix ("uploads/<job>/"); returns how many."""
        ...


def origin_of(url: str) -> str:
    """A URL's origin as a page's policy names it: scheme://host[:port], without credentials."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def content_type_of(key: str) -> str:
    """The media type a key's extension names (application/octet-stream when it names none)."""
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


def check_key(key: str) -> None:
    """Refuses a key that is empty, absolute, has empty, "." or ".." segments, or holds a backslash
    or a control character (NUL made the local store raise outside its errors and leave a
    temporary file behind; a backslash is another system's separator)."""
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or "\\" in key
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in key)
    ):
        raise StorageError(f"invalid storage key {key!r}")
