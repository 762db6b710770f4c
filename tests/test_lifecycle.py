"""The gateway as a user runs it: `omnigateway serve` from a config file, stopped and started.

- SIGTERM while a reply is on its way to Twilio: the send finishes before the process exits.
- With no redis_url, the embedded Valkey keeps its data under data_dir across a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from served import Served

from connectors.testing.fake_twilio import FakeTwilio, inbound_message_params
from conversation.model import DeliveryStatus
from conversation.store import Store
from gateway.testing import eventually, free_port

ACCOUNT_SID = "AC" + "3" * 32
AUTH_TOKEN = "d" * 32
BUSINESS = "+15550002222"


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
def served_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Served] = []

    def make(config: str, port: int) -> Served:
        s = Served(tmp_path, config, port)
        made.append(s)
        return s

    yield make
    for s in made:
        s.kill()


def twilio_section(twilio: FakeTwilio) -> str:
    return f"""
[connectors.sms]
kind = "twilio"
account_sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"
from_number = "{BUSINESS}"
api_base_url = "{twilio.base_url}"
"""


async def customer_conversation(session: aiohttp.ClientSession, base: str, token: str, number: str) -> str | None:
    url = f"{base}/v1/customers?identity=phone:{number.replace('+', '%2B')}"
    async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        items = (await resp.json())["items"] if resp.status == 200 else []
    return items[0]["id"] if items else None



async def test_sigterm_drains_a_send_in_flight(
    served_factory: Any, twilio: FakeTwilio, redis_url: str, key_prefix: str, redis_client: aioredis.Redis,
    tmp_path: Path,
) -> None:
    port = free_port()
    gw: Served = served_factory(f"""
[gateway]
port = {port}
public_url = "http://127.0.0.1:{port}"
redis_url = "{redis_url}"
key_prefix = "{key_prefix}"
data_dir = "{tmp_path / 'var'}"
shutdown_grace = 20
{twilio_section(twilio)}""", port)
    gw.start()
    token = gw.token()
    number = "+34611222333"
    params = inbound_message_params(number, BUSINESS, "where is my parcel?", account_sid=ACCOUNT_SID)
    assert (await twilio.post_webhook(gw.base + "/webhooks/sms/messages", params))[0] == 200
    async with aiohttp.ClientSession() as session:
        cid = await eventually(lambda: customer_conversation(session, gw.base, token, number), within=15)
        twilio.delay(2.0)  # the reply will be in flight when the signal comes
        async with session.post(f"{gw.base}/v1/conversations/{cid}/messages", json={"text": "On its way"},
                                headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 202
            mid = (await resp.json())["id"]
    await eventually(lambda: twilio.attempts >= 1, within=15, what="the send to start")
    assert twilio.messages == []
    code = await asyncio.to_thread(gw.terminate)
    assert code == 0
    assert [m["Body"] for m in twilio.messages] == ["On its way"]
    store = Store(redis_client, prefix=key_prefix)
    assert (await store.timeline.get_message(mid)).status == DeliveryStatus.SENT



async def test_embedded_valkey_keeps_data_across_a_restart(
    served_factory: Any, twilio: FakeTwilio, tmp_path: Path
) -> None:
    port = free_port()
    gw: Served = served_factory(f"""
[gateway]
port = {port}
public_url = "http://127.0.0.1:{port}"
data_dir = "{tmp_path / 'var'}"
{twilio_section(twilio)}""", port)
    gw.start()
    token = gw.token()
    number = "+34622333444"
    params = inbound_message_params(number, BUSINESS, "remember me", account_sid=ACCOUNT_SID)
    assert (await twilio.post_webhook(gw.base + "/webhooks/sms/messages", params))[0] == 200
    async with aiohttp.ClientSession() as session:
        cid = await eventually(lambda: customer_conversation(session, gw.base, token, number), within=15)
    assert await asyncio.to_thread(gw.terminate) == 0
    assert (tmp_path / "var" / "valkey").is_dir()

    gw.start()
    async with aiohttp.ClientSession() as session:
        assert await customer_conversation(session, gw.base, token, number) == cid
        async with session.get(f"{gw.base}/v1/conversations/{cid}/messages",
                               headers={"Authorization": f"Bearer {token}"}) as resp:
            assert [m["text"] for m in (await resp.json())["items"]] == ["remember me"]
    assert await asyncio.to_thread(gw.terminate) == 0
