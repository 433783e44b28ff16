"""An UploadAsset whose caller gives up, or whose gateway stops, while its file is being written
leaves nothing unrecorded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from devstack import scenes
from gateway import assets
from gateway.assets import AssetStore, asset_id_of
from gateway.ledger import Ledger, connect
from gateway.server import Gateway
from gateway.settings import GatewaySettings
from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from renderkit import imaging
from renderkit.storage.local import LocalStorage
from tests.conftest import LoopThread, RedisServer, gateway_settings
from tests.credentials import bearer, key_for

WRITE_S = 1.0


def test_an_upload_whose_caller_gave_up_is_recorded_or_deleted(
    own_redis: RedisServer,
    stages: dict[str, str],
    start_own_gateway: Callable[[GatewaySettings], Gateway],
    loop_thread: LoopThread,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An UploadAsset whose caller's deadline passed while its file was being written (a large photo
    on a slow bucket, a browser tab closed) left the file in assets/{tenant}/ with no record of it in
    the ledger: no sweep ever deleted it, and it stayed past ASSET_RETENTION_SECONDS for good."""
    storage = tmp_path / "storage"
    base = gateway_settings(own_redis.url, storage, stages)
    gateway = start_own_gateway(replace(base, http=replace(base.http, asset_retention_s=1.0)))
    key = key_for(own_redis.url, "uploader")
    put = LocalStorage.put

    def slow_put(self: LocalStorage, key: str, data: bytes, content_type: str):  # type: ignore[no-untyped-def]
        if key.startswith("assets/"):
            time.sleep(WRITE_S)  # a large photo going up to a slow bucket
        return put(self, key, data, content_type)

    monkeypatch.setattr(LocalStorage, "put", slow_put)
    photo = imaging.encode(scenes.room_scene(160, 120).photo)[0]
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.UploadAsset(pb.UploadAssetRequest(data=photo, name="p.png"), metadata=bearer(key), timeout=0.5)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(WRITE_S + 1.5)  # the write landed; the asset's retention (1 s) has passed too
    store = AssetStore(gateway.ledger, LocalStorage(storage), base.limits, 1.0, 1000, 1.0)
    loop_thread.run(store.sweep())
    path = storage / "assets" / "uploader" / asset_id_of(photo)
    recorded = loop_thread.run(gateway.ledger.assets("uploader", [asset_id_of(photo)], 0))
    # Either outcome is fine but one: the upload finished (recorded, so a sweep deletes it once it
    # expires: it has by now) or it was undone. A file nothing names stays for ever.
    assert not path.exists(), f"left in storage, recorded: {bool(recorded)}"


def test_an_upload_in_flight_when_the_gateway_stops_is_recorded(
    own_redis: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM during an UploadAsset whose file is going up to a slow bucket: the drain cancels the
    call, closes Redis and returns, and asyncio.run (edge.serve) cancels the shielded write and
    record still under way; the write's thread lands the file anyway, with no record naming it, and
    no sweep ever deleted it. The drain waits for them (assets.finish_storing, a close hook)."""
    put = LocalStorage.put

    def slow_put(self: LocalStorage, key: str, data: bytes, content_type: str):  # type: ignore[no-untyped-def]
        time.sleep(WRITE_S)  # a large photo going up to a slow bucket
        return put(self, key, data, content_type)

    monkeypatch.setattr(LocalStorage, "put", slow_put)
    photo = imaging.encode(scenes.room_scene(160, 120).photo)[0]
    limits = GatewaySettings.from_env().limits

    async def serve_and_stop() -> None:
        ledger = Ledger(connect(own_redis.url))
        store = AssetStore(ledger, LocalStorage(tmp_path / "storage"), limits, 3600, 1000, 3600)
        call = asyncio.create_task(store.upload("t1", photo, "p.png"))
        await asyncio.sleep(WRITE_S / 2)  # the drain's grace passes: the call is cancelled
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        await assets.finish_storing()  # the gateway's close hooks, in their order
        await ledger.aclose()

    asyncio.run(serve_and_stop())

    async def recorded() -> bool:
        ledger = Ledger(connect(own_redis.url))
        try:
            return bool(await ledger.assets("t1", [asset_id_of(photo)], 0))
        finally:
            await ledger.aclose()

    path = tmp_path / "storage" / "assets" / "t1" / asset_id_of(photo)
    assert asyncio.run(recorded()) or not path.exists(), "the file is in storage and nothing names it"
