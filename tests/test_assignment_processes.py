"""Capacity holds across processes: `omnigateway serve --processes 2` answers pulls from two web
processes on one port, and agents of capacity 1 pulling at once through both never hold more
than one thread each, nor share one."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from apphelpers import seed
from served import Served
from test_supervisor import ACCOUNT_SID, AUTH_TOKEN, config_for

from connectors.testing.fake_twilio import FakeTwilio
from conversation.store import Store, open_store
from gateway.testing import eventually, free_port

AGENTS = 20
THREADS = 30


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
async def store(redis_url: str, key_prefix: str) -> AsyncIterator[Store]:
    s = open_store(redis_url, prefix=key_prefix)
    yield s
    await s.close()


async def test_two_gateway_processes_never_over_assign(tmp_path: Path, redis_url: str, key_prefix: str,
                                                       twilio: FakeTwilio, store: Store) -> None:
    port = free_port()
    config = config_for(redis_url, key_prefix, port, twilio, tmp_path)
    config = config.replace("[connectors.sms]", '[routing.queues.l2]\nassignment = "pull"\n\n[connectors.sms]')
    served = Served(tmp_path, config, port, "--processes", "2")
    served.start()
    try:
        await eventually(lambda: len(served.children()) == 4, what="two web processes and the workers")
        admin = await store.tokens.create("root", "admin")
        tokens = {f"agent-{n}": await store.tokens.create(f"agent-{n}", "agent") for n in range(AGENTS)}
        # Fresh connections, so that the kernel spreads them over both web processes.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            async def call(method: str, path: str, token: str, json: object = None) -> tuple[int, object, str]:
                async with http.request(method, served.base + path, json=json,
                                        headers={"Authorization": f"Bearer {token}"}) as resp:
                    body = await resp.json() if resp.status not in (204,) else None
                    return resp.status, body, resp.headers.get("X-Request-Id", "")[:16]

            async def both_up() -> bool:
                # Each web process stamps its own request-id prefix: wait until both answer.
                seen = {(await call("GET", "/v1/queues", admin))[2] for _ in range(8)}
                return len(seen) == 2

            await eventually(both_up, within=30, what="both web processes listening")
            for name, token in tokens.items():
                status, body, _ = await call("POST", "/v1/agents", admin,
                                             {"name": name, "queues": ["l2"], "capacity": {"sms": 1}})
                assert status == 201, body
                assert (await call("PUT", "/v1/agents/me/presence", token, {"status": "online"}))[0] == 200
            now = int(time.time() * 1000) - 60_000
            cids = [await seed(store, f"+3469{n:07d}", queue="l2", at_ms=now + n) for n in range(THREADS)]

            results = await asyncio.gather(*(call("POST", "/v1/queues/l2/next", token)
                                             for token in tokens.values() for _ in range(2)))
        processes = {rid for _, _, rid in results}
        claimed = [(body["assignee"], body["id"]) for status, body, _ in results if status == 200]  # type: ignore[index]
        refused = [body["error"]["code"] for status, body, _ in results if status == 409]  # type: ignore[index]
        assert len(processes) == 2, "both web processes answered pulls"
        assert len(claimed) == AGENTS and refused == ["at_capacity"] * AGENTS
        assert Counter(agent for agent, _ in claimed) == Counter(list(tokens))  # one each: capacity 1
        assert len({cid for _, cid in claimed}) == AGENTS  # no thread twice
        held = [c.assignee for c in await store.threads.get_conversations(cids) if c is not None]
        assert sorted(a for a in held if a) == sorted(tokens)
        claims = await store.agents.claims()
        assert Counter(c.agent for c in claims.values()) == Counter(list(tokens))
        assert served.terminate(timeout=30) == 0
    finally:
        served.kill()
