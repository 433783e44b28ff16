"""The dispatcher's slots for jobs its own process submits (Dispatcher.claim), against a real Redis:
a slot is lent only while one is free, to a dispatcher that runs, for a kind that takes one."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import redis.asyncio as aioredis

from gateway.dispatcher import Dispatcher
from gateway.ledger import Ledger
from gateway.settings import GatewaySettings
from gateway.subscriptions import Subscriptions


def test_a_slot_is_lent_only_while_one_is_free_to_a_running_dispatcher(redis_url: str) -> None:
    async def body() -> None:
        client = aioredis.Redis.from_url(redis_url + "/4")
        await client.flushdb()
        settings = replace(GatewaySettings.from_env(), redis_url=redis_url + "/4", dispatcher_concurrency=2)
        stubs: Any = None  # no job runs here: storage and stages are never reached
        dispatcher = Dispatcher(Ledger(client), stubs, stubs, settings, Subscriptions(client))
        try:
            assert await dispatcher.claim("material_swap") is None  # not started
            await dispatcher.start()
            first = await dispatcher.claim("material_swap")
            assert first is not None and first.owner == dispatcher.consumer
            assert first.lease_s == settings.lease_s
            assert await dispatcher.claim("room_batch") is None  # a batch takes no slot
            assert await dispatcher.claim("room_render") is not None
            assert await dispatcher.claim("material_swap") is None  # both slots lent
            dispatcher.release()
            assert await dispatcher.claim("texture_edit") is not None  # the slot given back
            dispatcher.release()
            await dispatcher.stop(0.1)
            assert await dispatcher.claim("material_swap") is None  # stopping
        finally:
            await dispatcher.stop(0.1)
            await client.flushdb()
            await client.aclose()

    asyncio.run(body())
