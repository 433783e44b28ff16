"""Local storage: objects as files under a directory, named in results by `local:<key>` URIs."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from renderkit.storage.interface import (
    ObjectInfo,
    StorageError,
    StorageMissing,
    StoredObject,
    check_key,
    content_type_of,
)

LOCAL_SCHEME = "local:"
# A put whose folder a concurrent delete removed (its last file gone) makes it again, this many times.
FOLDER_TRIES = 5


def local_uri(key: str) -> str:
    """The URI a result gives for an object in local storage: its key, never the server's path."""
    return LOCAL_SCHEME + key


def key_of(uri: str) -> str:
    """The storage key of a local: URI (what a client on the same machine joins to STORAGE_URL)."""
    if not uri.startswith(LOCAL_SCHEME):
        raise StorageError("not a local storage URI")
    return uri[len(LOCAL_SCHEME) :]


class LocalStorage:
    """Stores objects as files under a root directory; writes are atomic (temp file + rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file that holds a key."""
        check_key(key)
        return self.root / key

    def key_of(self, uri: str) -> str:
        key = key_of(uri)
        check_key(key)
        return key

    def stat(self, key: str) -> ObjectInfo:
        try:
            status = self.path(key).stat()
        except FileNotFoundError as exc:
            raise StorageMissing(f"could not read {key}: no such object") from exc
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
        except FileNotFoundError as exc:
            raise StorageMissing(f"could not read {key}: no such object") from exc
        except OSError as exc:
            raise StorageError(f"could not read {key}: {exc.strerror or exc}") from exc

    def signed_url(self, key: str, ttl_s: float) -> tuple[str, int] | None:
        return None  # the gateway's HTTP port serves local files under its own signed links

    def link_origin(self) -> str | None:
        return None

    def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        path = self.path(key)
        tmp = ""
        try:
            fd, tmp = self._temporary_in(path.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
            tmp = ""
        except OSError as exc:
            raise StorageError(f"could not write {key}: {exc.strerror or exc}") from exc
        finally:
            if tmp:  # a write that failed (a full disk, or anything else) leaves no part of itself behind
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        return StoredObject(
            key=key,
            uri=local_uri(key),
            size_bytes=len(data),
            content_type=content_type,
            sha256=hashlib.sha256(data).hexdigest(),
        )

    @staticmethod
    def _temporary_in(folder: Path) -> tuple[int, str]:
        """A new temporary file in the folder, made if missing: a delete of the folder's last file
        removes the folder (delete, below), maybe between this mkdir and the file's creation."""
        tries = 1
        while True:
            folder.mkdir(parents=True, exist_ok=True)
            try:
                return tempfile.mkstemp(dir=folder, prefix=".tmp-")
            except FileNotFoundError:
                if tries == FOLDER_TRIES:
                    raise
                tries += 1

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError as exc:
            raise StorageMissing(f"could not read {key}: no such object") from exc
        except OSError as exc:
            raise StorageError(f"could not read {key}: {exc.strerror or exc}") from exc

    def delete_prefix(self, prefix: str) -> int:
        folder = self.path(prefix.rstrip("/"))
        if not folder.is_dir():
            return 0
        removed = 0
        try:
            try:
                paths = sorted(folder.rglob("*"), reverse=True)
            except FileNotFoundError:  # another delete of the prefix removed it while it was listed
                return 0
            for path in paths:
                if path.is_dir():
                    with contextlib.suppress(FileNotFoundError):  # another delete of the prefix got there first
                        path.rmdir()
                else:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                        removed += 1
            with contextlib.suppress(FileNotFoundError):
                folder.rmdir()
        except OSError as exc:  # (a file written meanwhile keeps its folder): no server path in the message
            raise StorageError(f"could not delete {prefix}: {exc.strerror or 'an error'}") from exc
        return removed

    def delete(self, key: str) -> None:
        path = self.path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # read-only, or refused: a StorageError like every other failure, no path
            raise StorageError(f"could not delete {key}: {exc.strerror or 'an error'}") from exc
        # Remove folders the key leaves empty, up to the root.
        for parent in path.parents:
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()
            except OSError:
                break
