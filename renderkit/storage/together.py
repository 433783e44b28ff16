"""Several objects written at once, all or none: to a remote store each write is a round trip of
its own, so a job's renditions or a submit's images go up together instead of one after the other."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import cast

from renderkit.storage.interface import Storage, StoredObject

log = logging.getLogger(__name__)


# Clean-ups of writes whose caller gave up, held until done (the loop keeps weak references only).
_UNDOING: set[asyncio.Task[None]] = set()


async def put_all(
    storage: Storage,
    items: Sequence[tuple[str, Callable[[], bytes], str]],
    at_once: int,
    *,
    undo_if_cancelled: bool = False,
) -> list[StoredObject]:
    """Writes every (key, its bytes, content type) on worker threads, `at_once` at a time (the
    threads are the loop's default executor's, which other work shares), and returns what each
    stored, in order. The bytes are read in the thread (a protobuf bytes field is copied each time
    it is read). If one write fails, every key is deleted, the failed ones too (a write that
    failed may have landed after all), and the first error is raised. With `undo_if_cancelled`, a
    caller that gives up (a client's deadline) has every key deleted once the writes already on
    their threads end: they run on there and would otherwise land, named by nothing."""
    gate = asyncio.Semaphore(at_once)
    running: list[asyncio.Future[StoredObject]] = []

    async def put(key: str, data: Callable[[], bytes], content_type: str) -> StoredObject:
        async with gate:
            write = asyncio.ensure_future(asyncio.to_thread(lambda: storage.put(key, data(), content_type)))
            running.append(write)
            return await asyncio.shield(write)

    try:
        stored = await asyncio.gather(*(put(*item) for item in items), return_exceptions=True)
    except asyncio.CancelledError:
        if undo_if_cancelled:

            async def undo() -> None:
                await asyncio.gather(*running, return_exceptions=True)
                await delete_all(storage, [key for key, _, _ in items])

            task = asyncio.get_running_loop().create_task(undo())
            _UNDOING.add(task)
            task.add_done_callback(_UNDOING.discard)
        raise
    failed = [result for result in stored if isinstance(result, BaseException)]
    if failed:
        await delete_all(storage, [key for key, _, _ in items])
        raise failed[0]
    return cast(list[StoredObject], stored)


async def delete_all(storage: Storage, keys: Sequence[str]) -> None:
    """Deletes the keys, so that no partial set stays visible. Storage that is still failing keeps
    them (nothing names them): the first failed delete stops the others, each of which would wait
    out the storage's retries too."""
    for done, key in enumerate(keys):
        try:
            await asyncio.to_thread(storage.delete, key)
        except OSError as exc:
            log.warning("%d partial writes left in storage: %s", len(keys) - done, exc)
            return
