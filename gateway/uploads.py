"""A submit's inline images, moved to storage so that the ledger keeps only references: uploaded
together, and deleted again when the submit records no job (at once when the ledger refused it,
once the ledger can say so when the ledger's write failed)."""

from __future__ import annotations

import asyncio
import logging
import time

from gateway import folders
from gateway.context import UPLOADS_AT_ONCE
from gateway.ledger import Ledger
from gateway.ledger.connection import MAX_BLOCK_MS
from gateway.requests import image_fields
from render.v1 import render_service_pb2 as pb
from renderkit.errors import DependencyUnavailable
from renderkit.storage import Storage, StorageError
from renderkit.storage.together import put_all

log = logging.getLogger(__name__)


def upload_key(job_id: str, field_path: str) -> str:
    """Where a job's inline image is kept until the job ends."""
    return folders.uploads(job_id) + field_path.replace("[", "-").replace("]", "")


async def upload_inputs(storage: Storage, job_id: str, request: pb.SubmitRenderRequest) -> tuple[bytes, dict[str, str]]:
    """The request as the ledger keeps it (its inline images' bytes left out) and each uploaded
    field's key. The images go up together, UPLOADS_AT_ONCE at a time; if one cannot be stored,
    the others are deleted and its error raised: a submit keeps all of its images or none (one
    whose caller gives up while they go up keeps none either)."""
    inline = [(path, source) for path, source in image_fields(request) if source.WhichOneof("source") == "data"]
    inputs = {path: upload_key(job_id, path) for path, _ in inline}
    items = [
        (inputs[path], lambda source=source: source.data, "application/octet-stream")  # type: ignore[misc]
        for path, source in inline
    ]
    stored_request, _ = await asyncio.gather(
        asyncio.to_thread(_without_inline_images, request),
        put_all(storage, items, UPLOADS_AT_ONCE, undo_if_cancelled=True),
    )
    return stored_request, inputs


def drop_uploads(storage: Storage, job_id: str, inputs: dict[str, str]) -> None:
    """Deletes what a submit uploaded (never an asset: other jobs may use it)."""
    for key in inputs.values():
        if key.startswith(folders.uploads(job_id)):
            storage.delete(key)


def _without_inline_images(request: pb.SubmitRenderRequest) -> bytes:
    copy = pb.SubmitRenderRequest()
    copy.CopyFrom(request)
    for _, source in image_fields(copy):
        if source.WhichOneof("source") == "data":
            source.data = b""
    return copy.SerializeToString()


# A submit whose ledger write failed (Redis away past the retries, or the caller gone while it was
# in flight) may have recorded its job with the reply lost, or not: its uploads are kept until the
# ledger can say. UNRECORDED_CHECK_DELAY_S after the failure (a write in flight has landed by then),
# and every UNRECORDED_CHECK_INTERVAL_S after while Redis is still away, a job that was never
# recorded has its uploads deleted. A gateway that stops first leaves them (docs/architecture.md).
UNRECORDED_CHECK_DELAY_S = 60.0
UNRECORDED_CHECK_INTERVAL_S = 30.0
MOST_UNRECORDED = 10_000  # failed submits a gateway remembers; past it, their uploads stay


def check_delay_s(retry_s: float, floor: float = UNRECORDED_CHECK_DELAY_S) -> float:
    """How long after a failed submit its job is asked about: past any write of it still in
    flight. Dispatcher.submit_here goes on with the write after its caller has left, for the
    ledger's whole retry budget (REDIS_RETRY_SECONDS, which has no maximum) and its last attempt's
    bound; asked sooner, the ledger says "no such job" just before it records one, whose inputs
    would be gone."""
    return max(floor, retry_s + MAX_BLOCK_MS / 1000 + 1.0)


class UnrecordedUploads:
    """The uploads of submits that may not have recorded their jobs, deleted once the ledger says
    those jobs do not exist."""

    def __init__(
        self,
        ledger: Ledger,
        storage: Storage,
        delay_s: float = UNRECORDED_CHECK_DELAY_S,
        interval_s: float = UNRECORDED_CHECK_INTERVAL_S,
    ) -> None:
        self.ledger, self.storage = ledger, storage
        self.delay_s, self.interval_s = delay_s, interval_s
        self._due: dict[str, float] = {}  # job id -> when to ask about it (monotonic)

    def note(self, job_id: str) -> None:
        """Remembers a job whose submit failed after its uploads were stored."""
        if len(self._due) < MOST_UNRECORDED:
            self._due[job_id] = time.monotonic() + self.delay_s

    def pending(self) -> list[str]:
        return list(self._due)

    async def run(self) -> None:
        """Asks about the due jobs, every interval, until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.settle_due()
            except Exception:  # one round's surprise must not end the collection for good
                log.warning("settling unrecorded uploads failed; trying again later", exc_info=True)

    async def settle_due(self) -> None:
        """Deletes the uploads of the due jobs the ledger does not have; forgets those it has.
        Redis or the storage away: the rest wait for the next round."""
        now = time.monotonic()
        for job_id in [j for j, due in self._due.items() if due <= now]:
            try:
                recorded = await self.ledger.get(job_id) is not None
                if not recorded:
                    removed = await asyncio.to_thread(self.storage.delete_prefix, folders.uploads(job_id))
                    log.info("job %s was never recorded: %d uploaded inputs deleted", job_id, removed)
            except (DependencyUnavailable, StorageError) as exc:
                log.info("unrecorded uploads wait for the next round: %s", exc)
                return
            del self._due[job_id]
