"""Google Cloud Storage: objects in a bucket under a prefix, named in results by gs:// URIs.

`renderkit.storage` imports this module (and with it google-cloud-storage) only when a gs:// URL is
opened, so processes on local storage never load the library.

Every object is written by one upload, which GCS makes visible only once complete. Uploads are
conditional (`if_generation_match`): a retried upload whose first attempt landed gets 412, which is
then recognised by the object's MD5, so the library's retries are safe for writes too.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests

from renderkit.settings import env_float, env_str
from renderkit.storage.interface import (
    ObjectInfo,
    StorageError,
    StorageMissing,
    StoredObject,
    check_key,
    content_type_of,
    origin_of,
)

# grpcio stays at 1.81 for tritonclient (see DESIGN.md); the Google libraries warn about that on
# import, which says nothing to whoever runs the gateway.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r".*Post-Quantum Cryptography", category=FutureWarning)
    from google.api_core import exceptions as api_exceptions
    from google.auth import default as default_credentials
    from google.auth import exceptions as auth_exceptions
    from google.auth.credentials import AnonymousCredentials, Credentials, Signing
    from google.cloud import storage as gcs  # type: ignore[import-untyped]
    from google.cloud.storage.exceptions import DataCorruption, InvalidResponse  # type: ignore[import-untyped]
    from google.cloud.storage.retry import DEFAULT_RETRY  # type: ignore[import-untyped]
    from google.oauth2 import service_account

log = logging.getLogger(__name__)

SCHEME = "gs"
SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)
GCS_ENDPOINT = "https://storage.googleapis.com"  # where signed URLs point outside an emulator
MAX_SIGNED_URL_S = 7 * 24 * 3600  # the longest a V4 signed URL may last
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
# What a call into the library raises when the service, the network or the credentials fail.
_FAILURES: tuple[type[BaseException], ...] = (
    api_exceptions.GoogleAPIError,
    auth_exceptions.GoogleAuthError,
    requests.RequestException,
    InvalidResponse,
    DataCorruption,
    OSError,
)


def parse_gs_url(url: str) -> tuple[str, str]:
    """The bucket and the prefix (without slashes at its ends; may be empty) of gs://bucket/prefix."""
    parsed = urlparse(url)
    if parsed.scheme != SCHEME or not _BUCKET_NAME.fullmatch(parsed.netloc) or parsed.query or parsed.fragment:
        raise StorageError("a GCS STORAGE_URL is gs://bucket or gs://bucket/prefix")
    prefix = parsed.path.strip("/")
    if prefix:
        check_key(prefix)
    return parsed.netloc, prefix


def _failure(doing: str, exc: BaseException, missing: str = "no such object") -> StorageError:
    """The StorageError a failed library call stands for, its message safe to show: what failed and
    why in words, never the bucket, an address or an exception's class (those stay in its cause)."""
    if isinstance(exc, api_exceptions.NotFound):
        if missing == "no such object":
            return StorageMissing(f"could not {doing}: {missing}")
        reason = missing
    elif isinstance(exc, (api_exceptions.Forbidden, api_exceptions.Unauthorized, auth_exceptions.RefreshError)):
        reason = "the storage refused access"
    elif isinstance(exc, api_exceptions.PreconditionFailed):
        reason = "it was changed by another writer meanwhile"
    elif isinstance(exc, DataCorruption):
        reason = "the transfer was corrupted"
    elif isinstance(exc, api_exceptions.ClientError) and exc.code is not None:
        reason = f"the storage refused the request (HTTP {int(exc.code)})"
    else:
        reason = "the storage service is unavailable"
    return StorageError(f"could not {doing}: {reason}")


def _md5(data: bytes) -> str:
    """An object's MD5 as GCS reports it (base64)."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


class GcsStorage:
    """Stores objects in a Google Cloud Storage bucket, key `k` as object `{prefix}/k`.

    `credentials` authenticate the requests and sign URLs (V4, with the service account's private
    key); None takes Application Default Credentials, which read GOOGLE_APPLICATION_CREDENTIALS.
    With `emulator_host` (STORAGE_EMULATOR_HOST) requests go to that emulator without credentials,
    and signed URLs point at it, signed with `credentials` when given. Idempotent calls are retried
    by the library's policy for `retry_s` seconds in all.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        credentials: Credentials | None = None,
        emulator_host: str = "",
        retry_s: float = 30.0,
        timeout_s: float = 60.0,
    ) -> None:
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
        self._retry = DEFAULT_RETRY.with_timeout(retry_s)
        self._timeout = timeout_s
        if emulator_host:
            endpoint = emulator_host if "://" in emulator_host else f"http://{emulator_host}"
            client = gcs.Client(
                project=None,
                credentials=AnonymousCredentials(),
                client_options={"api_endpoint": endpoint},
                use_auth_w_custom_endpoint=False,
            )
            self._signing_endpoint: str | None = endpoint
        else:
            if credentials is None:
                credentials = _default_credentials()
            client = gcs.Client(project=None, credentials=credentials)
            self._signing_endpoint = None  # the library's own: https://storage.googleapis.com
        # Only credentials holding a private key (or able to have one sign) make signed URLs.
        self._signer = credentials if isinstance(credentials, Signing) else None
        self._client = client
        self._bucket = client.bucket(bucket)
        self._uri_head = f"{SCHEME}://{bucket}/" + (f"{self.prefix}/" if self.prefix else "")

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _calls(self) -> dict[str, Any]:
        return {"timeout": self._timeout, "retry": self._retry}

    def uri(self, key: str) -> str:
        """The gs:// URI of a key."""
        return f"{SCHEME}://{self.bucket_name}/{self._name(key)}"

    def key_of(self, uri: str) -> str:
        if not uri.startswith(self._uri_head):
            raise StorageError("not a URI of this storage")
        key = uri[len(self._uri_head) :]
        check_key(key)
        return key

    def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        blob = self._bucket.blob(self._name(key))
        try:
            try:
                # Create-only: a retry of an upload that landed gets 412 instead of writing twice.
                self._upload(blob, data, content_type, generation=0)
            except api_exceptions.PreconditionFailed:
                # The object exists: this upload's own earlier attempt (same bytes), or an older
                # object, replaced only if it is still the generation just read.
                try:
                    blob.reload(**self._calls())
                except api_exceptions.NotFound:  # deleted since
                    self._upload(blob, data, content_type, generation=0)
                else:
                    if blob.md5_hash != _md5(data) or blob.content_type != content_type:
                        self._replace(blob, data, content_type)
        except _FAILURES as exc:
            raise _failure(f"write {key}", exc, missing="the bucket does not exist") from exc
        return StoredObject(
            key=key,
            uri=self.uri(key),
            size_bytes=len(data),
            content_type=content_type,
            sha256=hashlib.sha256(data).hexdigest(),
        )

    def _upload(self, blob: Any, data: bytes, content_type: str, generation: int) -> None:
        blob.upload_from_string(data, content_type=content_type, if_generation_match=generation, **self._calls())

    def _replace(self, blob: Any, data: bytes, content_type: str) -> None:
        """Replaces the object if it is still the generation `blob` read. A retry of a replace
        that landed with its answer lost gets 412 (the write moved the generation on): the object
        then holding these bytes is this write's own, as for a create (put)."""
        try:
            self._upload(blob, data, content_type, generation=blob.generation)
        except api_exceptions.PreconditionFailed:
            current = self._bucket.get_blob(blob.name, **self._calls())
            if current is None or current.md5_hash != _md5(data) or current.content_type != content_type:
                raise

    def stat(self, key: str) -> ObjectInfo:
        try:
            blob = self._bucket.get_blob(self._name(key), **self._calls())
        except _FAILURES as exc:
            raise _failure(f"read {key}", exc) from exc
        if blob is None:
            raise StorageMissing(f"could not read {key}: no such object")
        # GCS's etag changes with every generation and metadata change; MD5 as the fallback.
        tag = blob.etag or blob.md5_hash or str(blob.generation)
        return ObjectInfo(
            size_bytes=int(blob.size or 0),
            content_type=blob.content_type or content_type_of(key),
            etag=f'"{tag}"',
        )

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        if offset < 0 or (length is not None and length < 0):
            raise StorageError(f"could not read {key}: invalid range")
        if length == 0:
            self.stat(key)  # still fails for a missing object
            return b""
        blob = self._bucket.blob(self._name(key))
        end = None if length is None else offset + length - 1  # the library's end is inclusive
        try:
            data: bytes = blob.download_as_bytes(start=offset or None, end=end, **self._calls())
        except api_exceptions.RequestRangeNotSatisfiable:
            return b""  # offset at or past the end, as a file read there gives
        except _FAILURES as exc:
            raise _failure(f"read {key}", exc) from exc
        return data

    def get(self, key: str) -> bytes:
        return self.read(key)

    def delete(self, key: str) -> None:
        try:
            self._bucket.delete_blob(self._name(key), **self._calls())
        except api_exceptions.NotFound:
            pass
        except _FAILURES as exc:
            raise _failure(f"delete {key}", exc) from exc

    def delete_prefix(self, prefix: str) -> int:
        # A folder: "uploads/job1/" must not take "uploads/job10/..." along.
        folder = self._name(prefix.rstrip("/")) + "/"
        removed = 0
        try:
            for blob in self._client.list_blobs(self._bucket, prefix=folder, **self._calls()):
                try:
                    blob.delete(**self._calls())
                    removed += 1
                except api_exceptions.NotFound:
                    continue  # removed meanwhile
        except _FAILURES as exc:
            raise _failure(f"delete {prefix}", exc) from exc
        return removed

    def link_origin(self) -> str | None:
        if self._signer is None:
            return None
        return origin_of(self._signing_endpoint or GCS_ENDPOINT)

    def signed_url(self, key: str, ttl_s: float) -> tuple[str, int] | None:
        """A V4 signed GET URL and its expiry; None without credentials that can sign (the
        gateway then links to its own HTTP port, which reads the object through this storage)."""
        if self._signer is None:
            return None
        seconds = max(1, min(int(ttl_s), MAX_SIGNED_URL_S))
        blob = self._bucket.blob(self._name(key))
        try:
            url: str = blob.generate_signed_url(
                version="v4",
                expiration=seconds,
                method="GET",
                credentials=self._signer,
                api_access_endpoint=self._signing_endpoint,
            )
        except (*_FAILURES, ValueError, AttributeError) as exc:
            log.warning("could not sign a URL for %s: %s", key, type(exc).__name__)
            return None
        # The expiry counts from the moment the library stamped into the URL.
        signed_at = parse_qs(urlparse(url).query)["X-Goog-Date"][0]
        start = datetime.strptime(signed_at, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        return url, int(start.timestamp()) + seconds


def _default_credentials() -> Credentials:
    try:
        credentials, _ = default_credentials(scopes=SCOPES)
    except auth_exceptions.DefaultCredentialsError as exc:
        raise StorageError(
            "gs:// storage needs Google credentials: set GOOGLE_APPLICATION_CREDENTIALS to a "
            "service-account key file, or run with a service account attached"
        ) from exc
    return credentials  # type: ignore[no-any-return]


def open_gcs(url: str, env: Mapping[str, str] | None = None) -> GcsStorage:
    """The GcsStorage a gs://bucket/prefix STORAGE_URL names, configured from the environment."""
    bucket, prefix = parse_gs_url(url)
    emulator = env_str("STORAGE_EMULATOR_HOST", "", env)
    retry_s = env_float("STORAGE_RETRY_SECONDS", 30.0, env, minimum=0)
    credentials: Credentials | None = None
    key_file = env_str("GOOGLE_APPLICATION_CREDENTIALS", "", env)
    # Outside an emulator Application Default Credentials read the same file (and more sources);
    # with one they are never asked for, so its key file is loaded here, to sign URLs only.
    if emulator and key_file:
        try:
            credentials = service_account.Credentials.from_service_account_file(key_file, scopes=SCOPES)
        except (OSError, ValueError, KeyError) as exc:
            raise StorageError("GOOGLE_APPLICATION_CREDENTIALS is not a readable service-account key file") from exc
    return GcsStorage(bucket, prefix, credentials=credentials, emulator_host=emulator, retry_s=retry_s)
