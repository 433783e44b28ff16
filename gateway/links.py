"""Links to a job's outputs that any host can open without credentials.

A storage that signs its own URLs (Google Cloud Storage's V4 signed URLs) is asked for one; for
any other, the gateway signs a link to its own HTTP port: `/files/<key>?expires=<unix>&kid=<id>&
sig=<HMAC-SHA256>`, the HMAC over the key id, the expiry and the storage key. Several signing keys
may be configured: the first signs, every one verifies, so a key is rotated by putting a new one
first and dropping the old once the links it signed have expired. Links are made afresh each time
a job is read, so a client that reads a job late still gets a link that works.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from google.protobuf.timestamp_pb2 import Timestamp

from render.v1 import render_service_pb2 as pb
from renderkit.settings import SettingsError
from renderkit.storage import Storage, StorageError

FILES_PATH = "/files/"
MIN_SECRET_CHARS = 32
_KID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


class LinkError(ValueError):
    """A link that must not be served; the message says why, in words safe to show."""


@dataclass(frozen=True)
class SigningKey:
    """A key that signs links: its public id (carried in the link) and its secret."""

    kid: str
    secret: bytes


def parse_signing_keys(text: str, variable: str = "URL_SIGNING_KEYS") -> list[SigningKey]:
    """`id:secret,id:secret`: the first signs, all verify. Ids are letters, digits, _ and -."""
    keys: list[SigningKey] = []
    for item in text.split(","):
        if not item.strip():
            continue
        kid, sep, secret = item.strip().partition(":")
        if not sep or not kid or not set(kid) <= _KID_CHARS or len(kid) > 32:
            raise SettingsError(f"{variable}: each key is id:secret with an id of 1-32 letters, digits, _ or -")
        if len(secret) < MIN_SECRET_CHARS:
            raise SettingsError(f"{variable}: the secret of key {kid} must have at least {MIN_SECRET_CHARS} characters")
        keys.append(SigningKey(kid, secret.encode()))
    if len({k.kid for k in keys}) != len(keys):
        raise SettingsError(f"{variable}: two keys have the same id")
    return keys


def new_signing_key(kid: str = "k1") -> str:
    """A fresh `id:secret` for URL_SIGNING_KEYS (256 random bits)."""
    return f"{kid}:{secrets.token_urlsafe(32)}"


def _signature(key: SigningKey, storage_key: str, expires: int) -> str:
    mac = hmac.new(key.secret, f"{key.kid}\n{expires}\n{storage_key}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


class LinkSigner:
    """Signs and checks links to the gateway's `/files/` route."""

    def __init__(
        self,
        keys: Sequence[SigningKey],
        base_url: str,
        ttl_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not keys:
            raise ValueError("a link signer needs at least one key")
        self.keys = {key.kid: key for key in keys}
        self.signing = keys[0]
        self.base_url = base_url.rstrip("/")
        self.ttl_s = ttl_s
        self.clock = clock

    def link(self, storage_key: str) -> tuple[str, int]:
        """A link to the object and when it expires (unix seconds)."""
        expires = int(self.clock() + self.ttl_s)
        query = urlencode(
            {"expires": expires, "kid": self.signing.kid, "sig": _signature(self.signing, storage_key, expires)}
        )
        return f"{self.base_url}{FILES_PATH}{quote(storage_key)}?{query}", expires

    def verify(self, storage_key: str, expires: str, kid: str, sig: str) -> None:
        """Raises LinkError unless the link was signed by one of the keys and has not expired."""
        key = self.keys.get(kid)
        if key is None or not (expires.isascii() and expires.isdigit()) or len(expires) > 12 or not sig.isascii():
            raise LinkError("this link is not valid")  # (compare_digest refuses a str that is not ASCII)
        if not hmac.compare_digest(_signature(key, storage_key, int(expires)), sig):
            raise LinkError("this link is not valid")
        if int(expires) < self.clock():
            raise LinkError("this link has expired; read the job again for a new one")


class OutputLinks:
    """Fills in the `url` of every output of a result: the storage's own signed URL, else a link
    signed for the gateway's HTTP port, else nothing (no HTTP port is published)."""

    def __init__(self, storage: Storage, signer: LinkSigner | None, ttl_s: float) -> None:
        self.storage = storage
        self.signer = signer
        self.ttl_s = ttl_s

    def fill_output(self, output: pb.OutputFile) -> None:
        """Sets the output's url and its expiry (left empty when no link can be made)."""
        try:
            key = self.storage.key_of(output.uri)
            made = self.storage.signed_url(key, self.ttl_s)
        except StorageError:
            return
        if made is None and self.signer is not None:
            made = self.signer.link(key)
        if made is None:
            return
        output.url = made[0]
        output.url_expire_time.CopyFrom(Timestamp(seconds=made[1]))

    def fill_result(self, result: pb.JobResult) -> None:
        for output in result.outputs:
            self.fill_output(output)
        for child in result.batch.children:
            for output in child.outputs:
                self.fill_output(output)

    def fill_job(self, job: pb.Job) -> pb.Job:
        """The job with links in its result (the message is changed in place and returned)."""
        if job.HasField("result"):
            self.fill_result(job.result)
        return job

    def _signs_itself(self) -> bool:
        """Whether the storage makes the links (GCS V4 signed URLs: an RSA signature each, ~1 ms,
        where the gateway's own HMAC link costs microseconds)."""
        return self.storage.link_origin() is not None

    async def fill_jobs(self, jobs: Sequence[pb.Job]) -> list[pb.Job]:
        """fill_job of each job, off the event loop when the storage signs the links: a page of
        jobs with many outputs (a batch's rooms, a swap's variants) is thousands of signatures,
        which held every other call of the replica for seconds."""
        if not self._signs_itself() or not any(job.HasField("result") for job in jobs):
            return [self.fill_job(job) for job in jobs]
        return await asyncio.to_thread(lambda: [self.fill_job(job) for job in jobs])

    async def fill_job_async(self, job: pb.Job) -> pb.Job:
        """fill_job, off the event loop when the storage signs the links (fill_jobs)."""
        return (await self.fill_jobs([job]))[0]

    async def fill_result_async(self, result: pb.JobResult) -> None:
        """fill_result, off the event loop when the storage signs the links (fill_jobs)."""
        if self._signs_itself():
            await asyncio.to_thread(self.fill_result, result)
        else:
            self.fill_result(result)
