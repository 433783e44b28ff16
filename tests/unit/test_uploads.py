"""A submit's inline images on local storage: each at its key, the request kept without them, and
all of them or none when one cannot be stored."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from gateway.uploads import upload_inputs
from render.v1 import render_service_pb2 as pb
from render_client.client import material_swap_request
from renderkit.storage import LocalStorage, StorageError, StoredObject, together

PHOTO, SWATCH, VARIANT = b"photo bytes", b"swatch bytes", b"variant bytes"


def request() -> pb.SubmitRenderRequest:
    return material_swap_request(PHOTO, SWATCH, quad=[(0, 0), (9, 0), (9, 9), (0, 9)], variant_swatches=[VARIANT])


def test_each_image_is_stored_at_its_key_and_the_request_kept_without_it(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    stored, inputs = asyncio.run(upload_inputs(storage, "job1", request()))
    assert inputs == {
        "material_swap.photo": "uploads/job1/material_swap.photo",
        "material_swap.swatch": "uploads/job1/material_swap.swatch",
        "material_swap.variant_swatches[0]": "uploads/job1/material_swap.variant_swatches-0",
    }
    assert [storage.get(key) for key in inputs.values()] == [PHOTO, SWATCH, VARIANT]
    kept = pb.SubmitRenderRequest.FromString(stored)
    swap = kept.material_swap
    assert (swap.photo.data, swap.swatch.data, swap.variant_swatches[0].data) == (b"", b"", b"")
    assert swap.photo.WhichOneof("source") == "data" and len(swap.hints.quad) == 4  # the rest is kept


class SwatchFails(LocalStorage):
    """Stores every image but the swatch, which fails once the others have landed."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.others_stored = threading.Barrier(3)  # the photo's put, the variant's and the swatch's

    def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        if key.endswith("material_swap.swatch"):
            self.others_stored.wait(10)
            raise StorageError("could not write it: no space left on device")
        stored = super().put(key, data, content_type)
        self.others_stored.wait(10)
        return stored


def test_when_one_image_cannot_be_stored_none_is_kept(tmp_path: Path) -> None:
    storage = SwatchFails(tmp_path)
    with pytest.raises(StorageError, match="no space left"):
        asyncio.run(upload_inputs(storage, "job2", request()))
    # The photo and the variant were stored (the swatch failed only then), and deleted again.
    assert not [path for path in tmp_path.rglob("*") if path.is_file()]


class Slow(LocalStorage):
    """Stores each image only once `go` is set (storage answering slowly)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.go = threading.Event()
        self.started = threading.Semaphore(0)

    def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        self.started.release()
        self.go.wait(10)
        return super().put(key, data, content_type)


def test_a_submit_whose_caller_gives_up_while_its_images_go_up_keeps_none(tmp_path: Path) -> None:
    """The caller's deadline cancels the submit, but the writes on their threads run on and land,
    named by no job (a review found them in the bucket for good): they are deleted once done."""
    storage = Slow(tmp_path)

    async def body() -> None:
        submit = asyncio.create_task(upload_inputs(storage, "job3", request()))
        await asyncio.to_thread(storage.started.acquire, True, 10)  # a write is on its thread
        submit.cancel()  # the caller's deadline
        with pytest.raises(asyncio.CancelledError):
            await submit
        assert together._UNDOING  # the clean-up waits for the writes on their threads
        storage.go.set()  # they land now, and are deleted in the background
        for _ in range(200):
            if not together._UNDOING:
                return
            await asyncio.sleep(0.02)

    asyncio.run(body())
    assert not [path for path in tmp_path.rglob("*") if path.is_file()]
