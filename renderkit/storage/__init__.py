"""Where outputs, uploaded inputs and assets live: a local directory, or a Google Cloud Storage
bucket under a prefix, behind one interface (`Storage`). `open_storage` opens the one STORAGE_URL
names; the GCS backend (and google-cloud-storage) is loaded only when a gs:// URL is opened."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from renderkit.storage.interface import (
    ObjectInfo,
    Storage,
    StorageError,
    StorageMissing,
    StoredObject,
    check_key,
    content_type_of,
    origin_of,
)
from renderkit.storage.local import LOCAL_SCHEME, LocalStorage, key_of, local_uri

if TYPE_CHECKING:
    from renderkit.storage.gcs import GcsStorage

__all__ = [
    "LOCAL_SCHEME",
    "GcsStorage",
    "LocalStorage",
    "ObjectInfo",
    "Storage",
    "StorageError",
    "StorageMissing",
    "StoredObject",
    "check_key",
    "content_type_of",
    "key_of",
    "local_uri",
    "open_storage",
    "origin_of",
]


def open_storage(url: str, env: Mapping[str, str] | None = None) -> Storage:
    """Opens the backend a STORAGE_URL names: a directory path or file:// URL, or gs://bucket/prefix
    (configured by STORAGE_EMULATOR_HOST, STORAGE_RETRY_SECONDS and GOOGLE_APPLICATION_CREDENTIALS
    from `env`, the process environment when None)."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return LocalStorage(unquote(parsed.path) if parsed.scheme else url)
    if parsed.scheme == "gs":
        from renderkit.storage.gcs import open_gcs

        return open_gcs(url, env)
    raise StorageError(
        f"STORAGE_URL scheme {parsed.scheme!r} is not supported (use a directory, file:// or gs://bucket/prefix)"
    )


def __getattr__(name: str) -> Any:
    """`from renderkit.storage import GcsStorage` works, loading google-cloud-storage only then."""
    if name == "GcsStorage":
        from renderkit.storage.gcs import GcsStorage

        return GcsStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
