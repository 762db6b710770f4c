"""The agents' live stream, `GET /v1/events`: a new message reaches an SSE client within a second
of the webhook's answer even when another gateway process took the webhook, a reconnect with
Last-Event-ID (to another process) misses nothing, and events are filtered to what the token
may see."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from served import Served
from test_pipeline import ACCOUNT_SID, AUTH_TOKEN, BUSINESS, text_in

from connectors.testing.fake_twilio import FakeTwilio
from gateway.api.events import event_name, parse_last_event_id
from gateway.testing import GatewayUnderTest, eventually, free_port

ROUTING: dict[str, Any] = {"default_queue": "general", "queues": {"general": {}, "vip": {}},
                           "rules": [{"queue": "vip", "keyword": "vip"}]}


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


def sms(twilio: FakeTwilio) -> dict[str, Any]:
    return {"sms": {"kind": "twilio", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": BUSINESS,
                    "api_base_url": twilio.base_url}}


class Stream:
    """A Server-Sent Events client, as a browser's EventSource reads the stream."""

    def __init__(self, response: aiohttp.ClientResponse, session: aiohttp.ClientSession) -> None:
        self.response, self.session = response, session
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, base_url: str, token: str, last_event_id: str | None = None) -> Stream:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        headers = {"Authorization": f"Bearer {token}", **({"Last-Event-ID": last_event_id} if last_event_id else {})}
        response = await session.get(base_url + "/v1/events", headers=headers, timeout=aiohttp.ClientTimeout())
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
        stream = cls(response, session)
        await stream.until(lambda e: e.get("comment") == "connected")
        return stream

    async def _read(self) -> None:
        event: dict[str, Any] = {}
        async for raw in self.response.content:
            line = raw.decode().rstrip("\r\n")
            if not line:
                if event:
                    event["at"] = time.monotonic()
                    self.events.append(event)
                event = {}
            elif line.startswith(":"):
                self.events.append({"comment": line[1:].strip(), "at": time.monotonic()})
            else:
                field, _, value = line.partition(":")
                event[field] = json.loads(value.strip()) if field == "data" else value.strip()

    async def until(self, predicate: Any, within: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for event in self.events:
                if predicate(event):
                    return event
            await asyncio.sleep(0.01)
        raise AssertionError(f"no such event within {within} s; got {[e.get('event') for e in self.events]}")

    def of(self, cid: str) -> list[dict[str, Any]]:
        return [e for e in self.events if "data" in e and e["data"]["conversation_id"] == cid]

    async def close(self) -> None:
        self._reader.cancel()
        self.response.close()
        await self.session.close()


def test_event_ids_and_names() -> None:
    assert parse_last_event_id("1733100000000-0-2") == ("1733100000000-0", 2)
    assert parse_last_event_id("garbage") is None and parse_last_event_id(None) is None
    from conversation.model import Event, EventType

    assert event_name(Event(EventType.THREAD_CHANGED, "c", "c.a1", activity="transferred")) == \
        "conversation.transferred"
    assert event_name(Event(EventType.THREAD_CHANGED, "c", "c.a1", activity="unassigned")) == "conversation.assigned"
    assert event_name(Event(EventType.MESSAGE_STATUS, "c", "c.a1", activity="reply_sent")) == "message.status"


async def test_a_new_message_reaches_a_stream_on_another_process_within_a_second_and_resumes(
    tmp_path: Path, redis_url: str, key_prefix: str, twilio: FakeTwilio
) -> None:
    from test_supervisor import config_for

    port = free_port()
    served = Served(tmp_path, config_for(redis_url, key_prefix, port, twilio, tmp_path), port, "--processes", "2")
    served.start()
    # The webhook goes to another gateway process: this one, in the test, on the same Redis.
    gateway = GatewayUnderTest(redis_url, prefix=key_prefix, partitions=16, connectors=sms(twilio))
    await gateway.start()
    try:
        token = await gateway.token("admin")
        stream = await Stream.open(served.base, token)
        try:
            number = "+346" + str(uuid.uuid4().int)[:8]
            status, _ = await text_in(gateway, twilio, number, "¿Dónde está mi pedido?")
            answered = time.monotonic()
            assert status == 200
            created = await stream.until(lambda e: e.get("event") == "message.created")
            assert created["at"] - answered < 1.0, f"{created['at'] - answered:.2f} s after the webhook's answer"
            data = created["data"]
            assert data["message"]["text"] == "¿Dónde está mi pedido?" and data["message"]["direction"] == "inbound"
            cid = data["conversation_id"]
            last_id = created["id"]
        finally:
            await stream.close()

        # While nobody listens: two more messages and a status change.
        for text in ("uno", "dos"):
            assert (await text_in(gateway, twilio, number, text))[0] == 200

        async def applied() -> bool:
            _, page = await gateway.api("GET", f"/v1/conversations/{cid}/messages", token)
            return [m["text"] for m in page["items"]][-2:] == ["uno", "dos"]  # type: ignore[index]

        await eventually(applied, what="both messages in the thread")  # so their events come first
        st, _ = await gateway.api("POST", f"/v1/conversations/{cid}/status", token, json={"status": "pending"})
        assert st == 200

        # Reconnecting (any process: a fresh connection) with the last id seen misses nothing.
        again = await Stream.open(served.base, token, last_event_id=last_id)
        try:
            await again.until(lambda e: e.get("event") == "conversation.status")
            texts = [e["data"]["message"]["text"] for e in again.of(cid) if e.get("event") == "message.created"]
            assert texts == ["uno", "dos"]  # exactly what was missed, in order, nothing twice
            assert all(e["id"] != last_id for e in again.events if "id" in e)
            status_event = next(e for e in again.of(cid) if e.get("event") == "conversation.status")
            assert status_event["data"]["conversation"]["status"] == "pending"
        finally:
            await again.close()
    finally:
        await gateway.close()
        served.kill()


async def test_events_are_filtered_to_what_the_token_may_see(redis_url: str, key_prefix: str,
                                                              twilio: FakeTwilio) -> None:
    async with GatewayUnderTest(redis_url, prefix=key_prefix, partitions=2, connectors=sms(twilio),
                                routing=ROUTING) as gw:
        admin = await gw.token("admin")
        ana = await gw.token("agent", name="ana")
        status, _ = await gw.api("POST", "/v1/agents", admin, json={"name": "ana", "queues": ["general"]})
        assert status == 201
        agent_stream = await Stream.open(gw.base_url, ana)
        admin_stream = await Stream.open(gw.base_url, admin)
        try:
            general = "+346" + str(uuid.uuid4().int)[:8]
            vip = "+346" + str(uuid.uuid4().int)[:8]
            assert (await text_in(gw, twilio, vip, "soy vip"))[0] == 200
            assert (await text_in(gw, twilio, general, "hola"))[0] == 200
            for stream in (admin_stream, agent_stream):
                await stream.until(lambda e: e.get("event") == "message.created"
                                   and e["data"]["message"]["text"] == "hola")
            await admin_stream.until(lambda e: e.get("event") == "message.created"
                                     and e["data"]["message"]["text"] == "soy vip")
            # The agent's stream came after the vip message: it was filtered, not late.
            seen = [e["data"]["message"]["text"] for e in agent_stream.events if e.get("event") == "message.created"]
            assert seen == ["hola"]
        finally:
            await agent_stream.close()
            await admin_stream.close()
