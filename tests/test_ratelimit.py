"""Rate limits: GCRA in Redis for the API (per principal), in process for public endpoints."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from apphelpers import bearer, make_app

from conversation.keys import Keys
from conversation.store import Store
from conversation.store.ratelimit import RateLimiter
from gateway.ratelimit import LocalRateLimiter, local_rate_limit_middleware


async def test_redis_limiter_allows_the_limit_then_says_when(redis_client: aioredis.Redis,
                                                             key_prefix: str) -> None:
    limiter = RateLimiter(redis_client, Keys(key_prefix))
    results = [await limiter.hit("ana", 5, 1.0) for _ in range(6)]
    assert [ok for ok, _ in results] == [True] * 5 + [False]
    retry = results[-1][1]
    assert 0 < retry <= 0.2  # one request every window/limit = 200 ms
    assert (await limiter.hit("ben", 5, 1.0))[0]  # others are not affected
    await asyncio.sleep(retry + 0.02)
    assert (await limiter.hit("ana", 5, 1.0))[0]
    assert not (await limiter.hit("ana", 5, 1.0))[0]


async def test_redis_limiter_keys_expire(redis_client: aioredis.Redis, key_prefix: str) -> None:
    await RateLimiter(redis_client, Keys(key_prefix)).hit("ana", 10, 60)
    ttl = await redis_client.pttl(f"{key_prefix}:rl:ana")
    assert 0 < ttl <= 6_000  # one emission interval: an idle subject costs nothing for long


async def test_redis_limiter_is_shared_by_every_process(redis_client: aioredis.Redis, redis_url: str,
                                                        key_prefix: str) -> None:
    other = aioredis.Redis.from_url(redis_url)
    try:
        a, b = RateLimiter(redis_client, Keys(key_prefix)), RateLimiter(other, Keys(key_prefix))
        assert [(await lim.hit("ana", 4, 60))[0] for lim in (a, b, a, b, a, b)] == [True] * 4 + [False] * 2
    finally:
        await other.aclose()


def test_local_limiter_is_the_same_algorithm_without_io() -> None:
    now = [100.0]
    limiter = LocalRateLimiter(clock=lambda: now[0])
    assert [limiter.hit("1.2.3.4", 3, 3.0)[0] for _ in range(4)] == [True, True, True, False]
    allowed, retry_after = limiter.hit("1.2.3.4", 3, 3.0)
    assert not allowed and retry_after == pytest.approx(1.0)
    assert limiter.hit("5.6.7.8", 3, 3.0)[0]
    now[0] += 1.0
    assert limiter.hit("1.2.3.4", 3, 3.0)[0]
    assert not limiter.hit("1.2.3.4", 3, 3.0)[0]


def test_local_limiter_memory_is_bounded() -> None:
    now = [0.0]
    limiter = LocalRateLimiter(max_keys=100, clock=lambda: now[0])
    for n in range(1000):
        limiter.hit(f"10.0.{n // 256}.{n % 256}", 10, 1.0)
        now[0] += 0.001
    assert len(limiter._tat) <= 100


def test_bad_limits_are_refused_up_front() -> None:
    with pytest.raises(ValueError):
        local_rate_limit_middleware(LocalRateLimiter(), limit=0)


async def test_the_webhook_middleware_limits_per_ip_and_only_its_paths(aiohttp_client: Any) -> None:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(middlewares=[local_rate_limit_middleware(LocalRateLimiter(), limit=3)])
    app.router.add_post("/webhooks/sms/messages", ok)
    app.router.add_get("/healthz", ok)
    client = await aiohttp_client(app)
    statuses = [(await client.post("/webhooks/sms/messages")).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    resp = await client.post("/webhooks/sms/messages")
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    assert (await resp.json())["error"]["code"] == "rate_limited"
    assert all([(await client.get("/healthz")).status == 200 for _ in range(10)])


async def test_the_api_limits_each_principal(aiohttp_client: Any, redis_client: aioredis.Redis,
                                             key_prefix: str) -> None:
    client = await aiohttp_client(make_app(redis_client, key_prefix, api_rate_limit_per_minute=3))
    ana = await bearer(redis_client, key_prefix, "agent", "ana")
    ben = await bearer(redis_client, key_prefix, "agent", "ben")
    statuses = [(await client.get("/v1/conversations", headers=ana)).status for _ in range(3)]
    assert statuses == [200, 200, 200]
    resp = await client.get("/v1/conversations", headers=ana)
    assert resp.status == 429
    assert 1 <= int(resp.headers["Retry-After"]) <= 20  # 3 per minute: one every 20 s
    body = await resp.json()
    assert body["error"]["code"] == "rate_limited" and body["error"]["message"]
    assert (await client.get("/v1/conversations", headers=ben)).status == 200
    # a new token of the same principal (the old one revoked) shares the limit
    await Store(redis_client, prefix=key_prefix).tokens.revoke_name("ana")
    ana_again = await bearer(redis_client, key_prefix, "agent", "ana")
    assert (await client.get("/v1/conversations", headers=ana_again)).status == 429
