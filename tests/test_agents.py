"""Agents through the API and the CLI: profiles managed by admins, presence set by each agent and
kept alive by heartbeats (silence reads as away), and the queues' depth, oldest wait and agents
online."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from apphelpers import bearer, make_app, seed

from conversation.routing import RoutingSettings
from conversation.store import Store
from gateway.appkeys import STORE
from gateway.cli import main

Client = TestClient[Any, Any]
ROUTING = msgspec.convert({"presence_timeout": 90, "queues": {
    "general": {"assignment": "push", "languages": ["es", "en"], "sticky": True},
    "l2": {"assignment": "pull", "skills": ["technical"]}}}, RoutingSettings)
ANA = {"name": "ana", "role": "agent", "skills": ["technical"], "languages": ["es", "en"], "queues": ["general", "l2"],
       "capacity": {"webchat": 4, "email": 10}, "timezone": "Europe/Madrid"}


@pytest.fixture
async def client(aiohttp_client: Any, redis_client: aioredis.Redis, key_prefix: str) -> Client:
    return await aiohttp_client(make_app(redis_client, key_prefix, routing=ROUTING))  # type: ignore[no-any-return]


@pytest.fixture
def store(client: Client) -> Store:
    assert client.app is not None
    return client.app[STORE]  # type: ignore[no-any-return]


async def call(client: Client, method: str, path: str, headers: dict[str, str], json: Any = None,
               expect: int = 200) -> Any:
    resp = await client.request(method, path, json=json, headers=headers)
    body = await resp.json() if resp.status != 204 else None
    assert resp.status == expect, body
    return body


async def test_admins_manage_agents_and_everyone_reads_them(client: Client, redis_client: aioredis.Redis,
                                                            key_prefix: str) -> None:
    admin = await bearer(redis_client, key_prefix, "admin", "root")
    ana = await bearer(redis_client, key_prefix, "agent", "ana")
    created = await call(client, "POST", "/v1/agents", admin, ANA, expect=201)
    assert created["presence"] == "offline" and created["load"] == {"email": 0, "webchat": 0}
    assert (created["capacity"], created["queues"], created["timezone"]) == (
        {"webchat": 4, "email": 10}, ["general", "l2"], "Europe/Madrid")
    again = await call(client, "POST", "/v1/agents", admin, ANA, expect=409)
    assert again["error"]["code"] == "agent_exists"
    assert (await call(client, "POST", "/v1/agents", ana, {**ANA, "name": "eve"}, expect=403)
            )["error"]["code"] == "forbidden"
    for bad in ({**ANA, "name": "has space"}, {**ANA, "capacity": {"webchat": -1}}, {**ANA, "rol": "agent"}):
        assert (await call(client, "POST", "/v1/agents", admin, bad, expect=400))["error"]["code"] == "invalid_body"

    listing = await call(client, "GET", "/v1/agents", ana)
    assert [a["name"] for a in listing["items"]] == ["ana"] and listing["next_cursor"] is None
    assert (await call(client, "GET", "/v1/agents/me", ana))["name"] == "ana"
    changed = await call(client, "PATCH", "/v1/agents/ana", admin, {"capacity": {"webchat": 2}, "queues": ["l2"]})
    assert changed["capacity"] == {"webchat": 2} and changed["queues"] == ["l2"] and changed["skills"] == ["technical"]
    await call(client, "PATCH", "/v1/agents/ana", ana, {"capacity": {"webchat": 9}}, expect=403)
    # JSON has one kind of number: 3.0 is the integer 3, 3.5 is refused.
    assert (await call(client, "PATCH", "/v1/agents/ana", admin, {"capacity": {"webchat": 3.0}}))["capacity"] == {
        "webchat": 3}
    await call(client, "PATCH", "/v1/agents/ana", admin, {"capacity": {"webchat": 3.5}}, expect=400)
    await call(client, "DELETE", "/v1/agents/ana", admin, expect=204)
    assert (await call(client, "GET", "/v1/agents/ana", admin, expect=404))["error"]["code"] == "not_found"


async def test_presence_is_the_agent_s_own_and_silence_reads_as_away(
    client: Client, store: Store, redis_client: aioredis.Redis, key_prefix: str
) -> None:
    admin = await bearer(redis_client, key_prefix, "admin", "root")
    ana = await bearer(redis_client, key_prefix, "agent", "ana")
    sue = await bearer(redis_client, key_prefix, "supervisor", "sue")
    await call(client, "POST", "/v1/agents", admin, ANA, expect=201)
    await call(client, "POST", "/v1/agents", admin, {**ANA, "name": "ben"}, expect=201)
    assert (await call(client, "PUT", "/v1/agents/me/presence", ana, {"status": "online"}))["presence"] == "online"
    refused = await call(client, "PUT", "/v1/agents/ben/presence", ana, {"status": "offline"}, expect=403)
    assert refused["error"]["code"] == "forbidden"
    assert (await call(client, "PUT", "/v1/agents/ben/presence", sue, {"status": "away"}))["presence"] == "away"
    await call(client, "PUT", "/v1/agents/me/presence", ana, {"status": "busy"}, expect=400)

    # Heartbeats stop for longer than presence_timeout: online reads as away...
    await redis_client.zadd(store.keys.agent_seen(), {"ana": int((time.time() - 91) * 1000)})
    assert (await call(client, "GET", "/v1/agents/ana", ana))["presence"] == "away"
    # ...until the next heartbeat.
    beat = await call(client, "POST", "/v1/agents/me/heartbeat", ana)
    assert beat["presence"] == "online" and beat["last_seen_at"]
    # A token whose name is no agent's has no presence to keep.
    stranger = await bearer(redis_client, key_prefix, "agent", "stranger")
    await call(client, "POST", "/v1/agents/me/heartbeat", stranger, expect=404)


async def test_queues_show_depth_oldest_wait_and_agents_online(
    client: Client, store: Store, redis_client: aioredis.Redis, key_prefix: str
) -> None:
    admin = await bearer(redis_client, key_prefix, "admin", "root")
    ana = await bearer(redis_client, key_prefix, "agent", "ana")
    await call(client, "POST", "/v1/agents", admin, ANA, expect=201)
    await call(client, "PUT", "/v1/agents/me/presence", ana, {"status": "online"})
    ten_minutes_ago = int((time.time() - 600) * 1000)
    waiting = [await seed(store, f"+3460011{n:04d}", queue="general", at_ms=ten_minutes_ago + n) for n in range(3)]
    await seed(store, "+34600119999", queue="l2")
    # One of them is taken: it no longer waits.
    await call(client, "POST", f"/v1/conversations/{waiting[0]}/assign", ana, {"assignee": "me"})

    queues = {q["name"]: q for q in (await call(client, "GET", "/v1/queues", ana))["items"]}
    general, l2 = queues["general"], queues["l2"]
    assert (general["assignment"], general["depth"], general["agents_online"]) == ("push", 2, 1)
    assert 595 <= general["oldest_wait_seconds"] <= 700
    assert (l2["assignment"], l2["depth"], l2["agents_online"], l2["skills"]) == ("pull", 1, 1, ["technical"])
    assert l2["oldest_wait_seconds"] < 60
    # Resolving the taken one and reopening nothing leaves the depth as it was.
    await call(client, "POST", f"/v1/conversations/{waiting[0]}/status", ana, {"status": "resolved"})
    general = {q["name"]: q for q in (await call(client, "GET", "/v1/queues", ana))["items"]}["general"]
    assert general["depth"] == 2


def test_the_cli_creates_an_agent(tmp_path: Path, redis_url: str, key_prefix: str,
                                  capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\nredis_url = "{redis_url}"\nkey_prefix = "{key_prefix}"\n')
    assert main(["agent", "create", "lucia", "--queues", "general,l2", "--capacity", "webchat=4,email=10",
                 "--role", "supervisor", "--config", str(config)]) == 0
    assert "agent lucia (supervisor): queues general, l2; capacity webchat=4, email=10" in capsys.readouterr().out
    assert main(["agent", "create", "lucia", "--config", str(config)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["agent", "create", "x", "--capacity", "webchat", "--config", str(config)]) == 2
    assert "channel=number" in capsys.readouterr().err
    assert main(["agent", "list", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "lucia" in out and "offline" in out and "webchat 0/4" in out
    assert main(["agent", "delete", "lucia", "--config", str(config)]) == 0
    assert main(["agent", "delete", "lucia", "--config", str(config)]) == 1
