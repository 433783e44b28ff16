"""Where outputs and uploaded inputs live: a local directory, or a GCS bucket behind the same interface."""

from __future__ import annotations

import hashlib
import mimetypes
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse


class StorageError(OSError):
    """A storage operation failed."""


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

    def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        """Writes data under the key (replacing what was there) and describes the stored object."""
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


LOCAL_SCHEME = "local:"


def local_uri(key: str) -> str:
    """The URI a result gives for an object in local storage: its key, never the server's path."""
    return LOCAL_SCHEME + key


def key_of(uri: str) -> str:
    """The storage key of a local: URI (what a client on the same machine joins to STORAGE_URL)."""
    if not uri.startswith(LOCAL_SCHEME):
        raise StorageError("not a local storage URI")
    return uri[len(LOCAL_SCHEME) :]


def content_type_of(key: str) -> str:
    """The media type a key's extension names (application/octet-stream when it names none)."""
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


def _check_key(key: str) -> None:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"invalid storage key {key!r}")


class LocalStorage:
    """Stores objects as files under a root directory; writes are atomic (temp file + rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file that holds a key."""
        _check_key(key)
        return self.root / key

    def key_of(self, uri: str) -> str:
        key = key_of(uri)
        _check_key(key)
        return key

    def stat(self, key: str) -> ObjectInfo:
        try:
            status = self.path(key).stat()
        except OSError as exc:
            raise StorageError(f"could not read {key}: {exc.strerror or exc}") from exc
        return ObjectInfo(
            size_bytes=status.st_size,
            content_type=content_type_of(key),
            etag=f'"{status.st_size:x}-{status.st_mtime_ns:x}"',
        )

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        try:
            with self.path(key).open("rb") as f:
                f.seek(offset)
                return f.read() if length is None else f.read(length)
        except OSError as exc:
            raise StorageError(f"could not read {key}: {exc.strerror or exc}") from exc

    def signed_url(self, key: str, ttl_s: float) -> tuple[str, int] | None:
        return None  # the gateway's HTTP port serves local files under its own signed links

    def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise StorageError(f"could not write {key}: {exc.strerror or exc}") from exc
        return StoredObject(
            key=key,
            uri=local_uri(key),
            size_bytes=len(data),
            content_type=content_type,
            sha256=hashlib.sha256(data).hexdigest(),
        )

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except OSError as exc:
            raise StorageError(f"could not read {key}: {exc.strerror or exc}") from exc

    def delete_prefix(self, prefix: str) -> int:
        folder = self.path(prefix.rstrip("/"))
        if not folder.is_dir():
            return 0
        removed = 0
        for path in sorted(folder.rglob("*"), reverse=True):
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()
                removed += 1
        folder.rmdir()
        return removed

    def delete(self, key: str) -> None:
        path = self.path(key)
        path.unlink(missing_ok=True)
        # Remove folders the key leaves empty, up to the root.
        for parent in path.parents:
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()
            except OSError:
                break


def open_storage(url: str) -> Storage:
    """Opens the backend a STORAGE_URL names: a directory path or file:// URL."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return LocalStorage(unquote(parsed.path) if parsed.scheme else url)
    raise StorageError(f"STORAGE_URL scheme {parsed.scheme!r} is not supported (use a directory or file://)")
