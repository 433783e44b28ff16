"""A one-off migration after a rolling upgrade from a gateway older than c015757: notes for the
reaper the storage folders of ended jobs that no step noted.

Before that change an end noted nothing: a queued job's cancel left its uploads/{job}/ for good (no
dispatcher ever ran it), and so did a dispatcher killed as its job ended. Replicas of the older
version keep doing so until the roll completes. Run this once after it (with REDIS_URL), while the
ended jobs are still within JOB_RETENTION_SECONDS:

    python -m gateway.note_ended_folders

Every ended job's uploads/ and work/ folders are added to storage:releases_due; the dispatchers'
reaper deletes them (a folder already gone costs it one listing).
"""

from __future__ import annotations

import asyncio
import json

from gateway import folders
from gateway.ledger import connect, keys
from gateway.ledger.jobs import State
from renderkit.settings import env_str

_ENDED = {state.value for state in State if state.terminal}


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else value or ""


async def note_ended_folders(redis_url: str) -> int:
    """Notes the folders of every ended job still in the ledger; how many folders it noted."""
    client = connect(redis_url, max_connections=2, role="migration")
    noted = 0
    try:
        async for key in client.scan_iter(match=keys.JOB_TEMPLATE % "*", count=1000, _type="hash"):
            state, inputs, job = (_text(value) for value in await client.hmget(key, ["state", "inputs", "id"]))
            if state not in _ENDED or not job:
                continue
            due = [folders.work(job)]
            if folders.has_uploads(job, json.loads(inputs or "{}")):
                due.append(folders.uploads(job))
            noted += int(await client.sadd(keys.RELEASES_DUE, *due))
    finally:
        await client.aclose()
    return noted


def main() -> None:
    noted = asyncio.run(note_ended_folders(env_str("REDIS_URL", "redis://127.0.0.1:6390/0")))
    print(f"{noted} folders noted for the reaper")


if __name__ == "__main__":
    main()
