"""Bearer tokens: stored hashed, checked on every /v1 request, roles enforced."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from apphelpers import bearer, make_app

from conversation.keys import Keys
from conversation.store.tokens import TokenNameTaken, Tokens, digest
from gateway.auth import Principal, Role, principal_of

Client = TestClient[Any, Any]


@pytest.fixture
async def client(aiohttp_client: Any, redis_client: aioredis.Redis, key_prefix: str) -> Client:
    return await aiohttp_client(make_app(redis_client, key_prefix))  # type: ignore[no-any-return]


def token_store(redis: aioredis.Redis, prefix: str) -> Tokens:
    return Tokens(redis, Keys(prefix))


async def test_a_created_token_authenticates_its_principal(redis_client: aioredis.Redis, key_prefix: str) -> None:
    tokens = token_store(redis_client, key_prefix)
    token = await tokens.create("ana", "supervisor")
    assert token.startswith("ogt_") and len(token) > 40
    assert await principal_of(tokens, token) == Principal("ana", Role.SUPERVISOR)
    assert await principal_of(tokens, token + "x") is None
    assert await principal_of(tokens, "not-a-token") is None
    other = await tokens.create("ben", "supervisor")
    assert other != token  # every token is new


async def test_the_plain_token_is_stored_nowhere(redis_client: aioredis.Redis, key_prefix: str) -> None:
    token = await token_store(redis_client, key_prefix).create("ana", "admin")
    secret = token.encode()
    keys = sorted([k async for k in redis_client.scan_iter(match=f"{key_prefix}:*")])
    assert keys == sorted([f"{key_prefix}:token:{digest(token)}".encode(), f"{key_prefix}:tokens".encode()])
    for key in keys:
        assert secret not in key
        stored = await redis_client.hgetall(key)
        assert all(secret not in k and secret not in v for k, v in stored.items())
    assert set(await redis_client.hgetall(keys[0])) == {b"name", b"role", b"created_ms"}


async def test_revoked_and_unknown_roles(redis_client: aioredis.Redis, key_prefix: str) -> None:
    tokens = token_store(redis_client, key_prefix)
    with pytest.raises(ValueError):
        await tokens.create("ana", "root")
    with pytest.raises(ValueError):
        await tokens.create("  ", "agent")
    token = await tokens.create("ana", Role.AGENT.value)
    assert await tokens.revoke(token)
    assert await tokens.lookup(token) is None


@pytest.mark.parametrize("name", ["me", "ME", " me "])
async def test_reserved_names_get_no_token(redis_client: aioredis.Redis, key_prefix: str, name: str) -> None:
    # "me" means the caller in assign and filters: a principal named "me" would be everyone's.
    with pytest.raises(ValueError, match="reserved"):
        await token_store(redis_client, key_prefix).create(name, "admin")


async def test_a_name_has_one_live_token_until_revoked(redis_client: aioredis.Redis, key_prefix: str) -> None:
    tokens = token_store(redis_client, key_prefix)
    first = await tokens.create("ana", "agent")
    with pytest.raises(TokenNameTaken):
        await tokens.create("ana", "admin")  # not a second valid token behind the first one's back
    assert (await tokens.lookup(first)) is not None
    assert [(r.name, r.role) for r in await tokens.list()] == [("ana", "agent")]
    assert await tokens.revoke_name("ana") == 1
    assert await tokens.lookup(first) is None and await tokens.list() == []
    again = await tokens.create("ana", "admin")
    assert (await principal_of(tokens, again)) == Principal("ana", Role.ADMIN)


def test_roles_are_ordered() -> None:
    agent, supervisor, admin = (Principal("x", r) for r in (Role.AGENT, Role.SUPERVISOR, Role.ADMIN))
    assert agent.can("agent") and not agent.can("supervisor") and not agent.can(Role.ADMIN)
    assert supervisor.can(Role.AGENT) and supervisor.can(Role.SUPERVISOR) and not supervisor.can(Role.ADMIN)
    assert admin.can(Role.AGENT) and admin.can(Role.SUPERVISOR) and admin.can(Role.ADMIN)


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer ogt_forged"},
    {"Authorization": "Basic YWRtaW46YWRtaW4="},
    {"Authorization": "ogt_missing_scheme"},
])
async def test_requests_without_a_valid_token_get_401(client: Client, headers: dict[str, str]) -> None:
    for path in ("/v1/conversations", "/v1/customers/x", "/v1/dead-letters", "/v1/no-such-route"):
        resp = await client.get(path, headers=headers)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        body = await resp.json()
        assert body["error"]["code"] == "unauthorized" and body["error"]["message"]


async def test_a_revoked_token_stops_working(client: Client, redis_client: aioredis.Redis,
                                             key_prefix: str) -> None:
    tokens = token_store(redis_client, key_prefix)
    token = await tokens.create("ana", "agent")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/v1/conversations", headers=headers)).status == 200
    await tokens.revoke(token)
    assert (await client.get("/v1/conversations", headers=headers)).status == 401


async def test_the_bearer_scheme_is_case_insensitive(client: Client, redis_client: aioredis.Redis,
                                                     key_prefix: str) -> None:
    token = await token_store(redis_client, key_prefix).create("ana", "agent")
    assert (await client.get("/v1/conversations", headers={"Authorization": f"bearer {token}"})).status == 200


@pytest.mark.parametrize(("role", "status"), [("agent", 403), ("supervisor", 403), ("admin", 200)])
async def test_dead_letters_are_for_admins(client: Client, redis_client: aioredis.Redis, key_prefix: str,
                                           role: str, status: int) -> None:
    headers = await bearer(redis_client, key_prefix, role)
    resp = await client.get("/v1/dead-letters", headers=headers)
    assert resp.status == status
    if status == 403:
        assert (await resp.json())["error"]["code"] == "forbidden"
        replay = await client.post("/v1/dead-letters/inbound:1-0/replay", headers=headers)
        assert replay.status == 403


@pytest.mark.parametrize("role", ["agent", "supervisor", "admin"])
async def test_every_role_reads_the_inbox(client: Client, redis_client: aioredis.Redis, key_prefix: str,
                                          role: str) -> None:
    headers = await bearer(redis_client, key_prefix, role)
    resp = await client.get("/v1/conversations", headers=headers)
    assert resp.status == 200
    assert await resp.json() == {"items": [], "next_cursor": None}
