"""Who sees which conversations: agents their queues' and their own, supervisors also the queues
they supervise, admins everything, a token that is no agent only what is assigned to it; and
while no agent exists at all, everyone sees everything (the demo needs no set-up)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from apphelpers import bearer, make_app, seed

from conversation.routing import RoutingSettings
from conversation.store import Store
from gateway.appkeys import STORE

Client = TestClient[Any, Any]
ROUTING = msgspec.convert({"queues": {"general": {}, "l2": {}}}, RoutingSettings)


@pytest.fixture
async def client(aiohttp_client: Any, redis_client: aioredis.Redis, key_prefix: str) -> Client:
    return await aiohttp_client(make_app(redis_client, key_prefix, routing=ROUTING))  # type: ignore[no-any-return]


@pytest.fixture
def store(client: Client) -> Store:
    assert client.app is not None
    return client.app[STORE]  # type: ignore[no-any-return]


async def status_of(client: Client, method: str, path: str, headers: dict[str, str], json: Any = None) -> int:
    resp = await client.request(method, path, headers=headers, json=json)
    await resp.read()
    return resp.status


async def listed(client: Client, headers: dict[str, str], **query: str) -> set[str]:
    resp = await client.get("/v1/conversations", headers=headers, params=query or None)
    assert resp.status == 200, await resp.text()
    return {c["id"] for c in (await resp.json())["items"]}


async def test_without_agents_everyone_sees_everything(client: Client, store: Store, redis_client: aioredis.Redis,
                                                      key_prefix: str) -> None:
    token = await bearer(redis_client, key_prefix, "agent", "ana")
    a = await seed(store, "+34600200001", queue="general")
    b = await seed(store, "+34600200002", queue="l2")
    assert await listed(client, token) == {a, b}
    assert await status_of(client, "GET", f"/v1/conversations/{b}", token) == 200


async def test_agents_see_their_queues_and_their_own(client: Client, store: Store, redis_client: aioredis.Redis,
                                                     key_prefix: str) -> None:
    admin = await bearer(redis_client, key_prefix, "admin", "root")
    ana = await bearer(redis_client, key_prefix, "agent", "ana")
    sue = await bearer(redis_client, key_prefix, "supervisor", "sue")
    stranger = await bearer(redis_client, key_prefix, "agent", "stranger")
    for body in ({"name": "ana", "queues": ["general"]},
                 {"name": "sue", "role": "supervisor", "queues": [], "supervises": ["l2"]}):
        assert await status_of(client, "POST", "/v1/agents", admin, body) == 201
    general = await seed(store, "+34600200011", queue="general")
    l2 = await seed(store, "+34600200012", queue="l2")
    mine = await seed(store, "+34600200013", queue="l2")
    assert await status_of(client, "POST", f"/v1/conversations/{mine}/assign", admin, {"assignee": "ana"}) == 200
    theirs = await seed(store, "+34600200014", queue="l2")
    assert await status_of(client, "POST", f"/v1/conversations/{theirs}/assign", admin,
                           {"assignee": "stranger"}) == 200

    assert await listed(client, ana) == {general, mine}
    assert await listed(client, ana, status="open") == {general, mine}
    for path in (f"/v1/conversations/{l2}", f"/v1/conversations/{l2}/messages",
                 f"/v1/conversations/{l2}/activity", f"/v1/customers/{l2}"):
        assert await status_of(client, "GET", path, ana) == 403, path
    assert await status_of(client, "POST", f"/v1/conversations/{l2}/messages", ana, {"text": "hola"}) == 403
    assert await status_of(client, "POST", f"/v1/conversations/{l2}/status", ana, {"status": "resolved"}) == 403
    assert await status_of(client, "GET", "/v1/conversations?queue=l2", ana) == 403
    assert await status_of(client, "GET", f"/v1/conversations/{mine}", ana) == 200
    assert await status_of(client, "GET", "/v1/conversations/nobody", ana) == 404  # not found beats forbidden

    assert await listed(client, sue) == {l2, mine, theirs}  # the queue she supervises
    assert await status_of(client, "GET", f"/v1/conversations/{general}", sue) == 403
    assert await listed(client, stranger) == {theirs}  # no agent: only what is assigned to it
    assert await listed(client, admin) == {general, l2, mine, theirs}
