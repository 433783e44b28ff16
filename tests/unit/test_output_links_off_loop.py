"""Links a storage signs itself (GCS V4 signed URLs, an RSA signature each) are made off the event
loop: a page of jobs with many outputs held every other call of the replica for seconds."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from gateway.links import OutputLinks
from render.v1 import render_service_pb2 as pb
from renderkit.storage import LocalStorage


class SigningStorage(LocalStorage):
    """A store that signs its own links, as GcsStorage with a key does; records the threads."""

    def __init__(self, root: Path) -> None:
        super().__init__(str(root))
        self.threads: set[int] = set()

    def link_origin(self) -> str | None:
        return "https://storage.example"

    def signed_url(self, key: str, ttl_s: float) -> tuple[str, int] | None:
        self.threads.add(threading.get_ident())
        return f"https://storage.example/{key}?sig=x", 1


def job_with_outputs(storage: LocalStorage, n: int) -> pb.Job:
    job = pb.Job(id="j", state=pb.JOB_STATE_SUCCEEDED)
    for i in range(n):
        job.result.outputs.add(name=f"o{i}", uri=f"local:renders/t/-/j/o{i}.jpg")
    return job


def test_links_a_storage_signs_are_made_off_the_event_loop(tmp_path: Path) -> None:
    storage = SigningStorage(tmp_path)
    links = OutputLinks(storage, None, 3600)

    async def body() -> tuple[list[pb.Job], int]:
        filled = await links.fill_jobs([job_with_outputs(storage, 3), job_with_outputs(storage, 2)])
        event = pb.JobEvent(result=job_with_outputs(storage, 1).result)
        await links.fill_result_async(event.result)
        assert event.result.outputs[0].url
        return filled, threading.get_ident()

    filled, loop_thread = asyncio.run(body())
    assert all(o.url.startswith("https://storage.example/") for job in filled for o in job.result.outputs)
    assert storage.threads and loop_thread not in storage.threads
