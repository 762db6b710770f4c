"""The Redis connection pool under bursts: callers wait for a free connection instead of failing,
and a pool that stays exhausted is reported as busy, never as Redis being down."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from apphelpers import seed

from conversation.errors import StoreBusy
from conversation.model import Identity, InboundMessage
from conversation.service import Core
from conversation.store import open_store
from gateway.api.errors import error_middleware
from gateway.testing import GatewayUnderTest, eventually
from gateway.workers.ingest import IngestWorker


async def test_150_simultaneous_api_calls_all_succeed(redis_url: str, key_prefix: str) -> None:
    # redis-py's default pool holds 100 connections and raised at once beyond that: a burst of
    # agents' requests got 503 "the store is unreachable" while Redis was fine.
    async with GatewayUnderTest(redis_url, prefix=key_prefix, connectors={}, run_workers=False,
                                api_rate_limit_per_minute=100_000) as gw:
        await seed(gw.store, "+34600100100")
        token = await gw.token("agent")
        connector = aiohttp.TCPConnector(limit=0)  # really 150 at once, not aiohttp's 100
        async with aiohttp.ClientSession(connector=connector) as http:
            async def call() -> int:
                async with http.get(gw.url("/v1/conversations"), headers={"Authorization": f"Bearer {token}"}) as r:
                    await r.read()
                    return r.status

            statuses = await asyncio.gather(*(call() for _ in range(150)))
    assert statuses == [200] * 150


async def _hold(client: aioredis.Redis, key: str, seconds: float) -> None:
    # BLPOP on a key nobody pushes to keeps its connection checked out for `seconds`.
    await client.blpop([key], timeout=seconds)


async def test_an_exhausted_pool_waits_then_says_busy_not_down(redis_url: str, key_prefix: str) -> None:
    store = open_store(redis_url, prefix=key_prefix, max_connections=2, pool_timeout=0.3)
    try:
        holders = [asyncio.create_task(_hold(store.redis, f"{key_prefix}:nothing", 2)) for _ in range(2)]
        pool = store.redis.connection_pool
        await eventually(lambda: len(pool._in_use_connections) == 2,  # type: ignore[attr-defined]
                         what="both connections taken")
        started = time.monotonic()
        with pytest.raises(StoreBusy) as caught:
            await store.state.ping()
        assert time.monotonic() - started >= 0.25  # it waited for a connection to come back
        assert "redis_max_connections" in str(caught.value)
        # A caller that waits a little less than the holders get their connection back.
        await asyncio.gather(*holders)
        assert await store.state.ping()
    finally:
        await store.close()


async def test_the_api_answers_busy_with_retry_after_when_the_pool_stays_full(aiohttp_client: Any) -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        raise StoreBusy("all 2 Redis connections of this process stayed busy for 0.3 s")

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/x", handler)
    client = await aiohttp_client(app)
    resp = await client.get("/x")
    body = await resp.json()
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert body["error"]["code"] == "busy" and "unreachable" not in body["error"]["message"]


async def test_ingest_consumers_outlive_an_exhausted_pool(redis_url: str, key_prefix: str) -> None:
    store = open_store(redis_url, prefix=key_prefix, partitions=2, max_connections=3, pool_timeout=0.2)
    worker = IngestWorker(Core(store), lease_ttl=2.0, block_ms=200)
    holders = [asyncio.create_task(_hold(store.redis, f"{key_prefix}:nothing", 1.5)) for _ in range(3)]
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.gather(*holders)  # every connection was busy while the worker started
        sender = Identity("phone", "+34600200200")
        await store.ingest.record([InboundMessage(instance="sms", channel="sms", provider_message_id="SMpool",
                                                  sender=sender, text="still here?")])

        async def landed() -> bool:
            cid = await store.identities.known(sender)
            return bool(cid) and bool((await store.timeline.list_messages(cid))[0])

        await eventually(landed, within=15, what="the message applied once the pool had room again")
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
        await store.close()
