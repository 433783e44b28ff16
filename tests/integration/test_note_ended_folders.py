"""The migration after an upgrade from a gateway whose ends noted no folders (gateway.note_ended_folders)."""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis

from gateway import folders
from gateway.ledger import keys
from gateway.note_ended_folders import note_ended_folders

DB = "/25"


def test_ended_jobs_folders_are_noted_for_the_reaper_and_live_jobs_left_alone(redis_url: str) -> None:
    async def main() -> set[str]:
        client = aioredis.Redis.from_url(redis_url + DB)
        await client.flushdb()
        try:
            # As an older gateway left them: ended jobs, one with uploads, and jobs still live.
            uploads = {"material_swap.photo": folders.uploads("a1") + "material_swap.photo"}
            for job, state, inputs in [
                ("a1", "CANCELLED", uploads),
                ("b2", "SUCCEEDED", {"material_swap.photo": "gs://bucket/photo.jpg"}),
                ("c3", "QUEUED", {"material_swap.photo": folders.uploads("c3") + "p"}),
                ("d4", "RUNNING", {}),
            ]:
                await client.hset(keys.job(job), mapping={"id": job, "state": state, "inputs": json.dumps(inputs)})
            await client.set("unrelated", "x")
            assert await note_ended_folders(redis_url + DB) == 3
            assert await note_ended_folders(redis_url + DB) == 0  # run twice: nothing more
            return {str(member, "utf-8") for member in await client.smembers(keys.RELEASES_DUE)}  # type: ignore[arg-type]
        finally:
            await client.flushdb()
            await client.aclose()

    due = asyncio.run(main())
    assert due == {folders.uploads("a1"), folders.work("a1"), folders.work("b2")}
