"""Messenger and Instagram through the whole gateway: messages and their types, echoes (ours and
the Page inbox's), delivery and read watermarks, profile names, and the RESPONSE / HUMAN_AGENT
windows."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from socialkit import (
    age_window,
    conversation,
    messages,
    reply,
    skipped_count,
    wait_customer,
    wait_messages,
    wait_status,
)

from connectors.testing.fake_graph import FakeGraph, page_message, page_payload
from gateway.testing import GatewayUnderTest, eventually

SECRET = "messenger-app-secret-01"
VERIFY = "messenger-verify-token"
PAGE = "104881234567890"
IG = "17841400000000001"


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    async with FakeGraph(text_limit=2000) as fake:
        yield fake


@pytest.fixture
async def gateway(redis_url: str, key_prefix: str, graph: FakeGraph) -> AsyncIterator[GatewayUnderTest]:
    page = {"app_secret": SECRET, "verify_token": VERIFY, "page_access_token": graph.access_token,
            "api_base_url": graph.base_url}
    gw = GatewayUnderTest(redis_url, prefix=key_prefix, partitions=2, connectors={
        "fb": {"kind": "messenger", "page_id": PAGE, "human_agent_tag": True, **page},
        "ig": {"kind": "instagram", "page_id": IG, **page},
    })
    async with gw:
        yield gw


def psid() -> str:
    return str(uuid.uuid4().int)[:16]


async def post(gw: GatewayUnderTest, graph: FakeGraph, instance: str, events: list[dict[str, Any]]) -> None:
    kind, page = ("page", PAGE) if instance == "fb" else ("instagram", IG)
    status, _ = await graph.post_webhook(gw.url(f"/webhooks/{instance}/events"), SECRET,
                                         page_payload(kind, page, events))
    assert status == 200


async def write(gw: GatewayUnderTest, graph: FakeGraph, instance: str, sender: str, text: str, **kw: Any) -> None:
    page = PAGE if instance == "fb" else IG
    await post(gw, graph, instance, [page_message(sender, page, {"text": text}, **kw)])


async def test_message_types_land_as_the_customer_sent_them(gateway: GatewayUnderTest, graph: FakeGraph) -> None:
    token = await gateway.token()
    user = psid()
    graph.add_profile(user, first_name="Lucía", last_name="Gómez")
    now = int(time.time() * 1000)
    await post(gateway, graph, "fb", [
        page_message(user, PAGE, {"text": "Hola"}, timestamp=now),
        page_message(user, PAGE, {"text": "Rojo", "quick_reply": {"payload": "COLOR_RED"}}, timestamp=now + 1),
        page_message(user, PAGE, {"attachments": [
            {"type": "image", "payload": {"url": "https://scontent.xx.fbcdn.net/v/photo.jpg?oh=1"}},
            {"type": "location", "payload": {"coordinates": {"lat": 40.41, "long": -3.7}}}]}, timestamp=now + 2),
        {"sender": {"id": user}, "recipient": {"id": PAGE}, "timestamp": now + 3,
         "postback": {"mid": "m_pb" + uuid.uuid4().hex, "title": "Hablar con alguien", "payload": "HUMAN"}},
    ])
    cid = await wait_customer(gateway, token, f"messenger:{user}")
    found = await wait_messages(gateway, token, cid, 4)
    assert [m["text"] for m in found] == ["Hola", "Rojo",
                                          "📍 https://www.google.com/maps/search/?api=1&query=40.41,-3.7",
                                          "Hablar con alguien"]
    assert found[2]["attachments"] == [{"url": "https://scontent.xx.fbcdn.net/v/photo.jpg?oh=1",
                                        "content_type": "image/jpeg"}]
    assert {m["channel"] for m in found} == {"messenger"}
    # The name comes from the Graph API profile.
    assert (await conversation(gateway, token, cid))["customer"]["name"] == "Lucía Gómez"


async def test_our_sends_are_not_stored_twice_and_page_inbox_echoes_are_ours(
    gateway: GatewayUnderTest, graph: FakeGraph
) -> None:
    token = await gateway.token()
    user = psid()
    await write(gateway, graph, "fb", user, "hola")
    cid = await wait_customer(gateway, token, f"messenger:{user}")
    sent = await reply(gateway, token, cid, {"text": "¡Hola! ¿En qué te ayudo?"})
    [body] = await graph.wait_for_messages(1)
    assert body["messaging_type"] == "RESPONSE" and body["recipient"] == {"id": user}
    assert body["message"]["metadata"] == f"omnigateway:{sent['id']}"
    mid = (await wait_status(gateway, token, cid, sent["id"], "sent"))["provider_message_id"]
    before = await skipped_count(gateway, "fb", "own_echo")
    now = int(time.time() * 1000)
    await post(gateway, graph, "fb", [
        # Messenger echoes our send back, with our metadata...
        {"sender": {"id": PAGE}, "recipient": {"id": user}, "timestamp": now,
         "message": {"mid": mid, "is_echo": True, "app_id": 1, "metadata": body["message"]["metadata"],
                     "text": body["message"]["text"]}},
        # ...and what a colleague typed in the Page inbox.
        {"sender": {"id": PAGE}, "recipient": {"id": user}, "timestamp": now + 1,
         "message": {"mid": "m_inbox" + uuid.uuid4().hex, "is_echo": True, "app_id": 2, "text": "Te llamo ahora"}},
    ])
    await write(gateway, graph, "fb", user, "vale")
    found = await wait_messages(gateway, token, cid, 4)
    assert [(m["direction"], m["text"]) for m in found] == [
        ("inbound", "hola"), ("outbound", "¡Hola! ¿En qué te ayudo?"), ("outbound", "Te llamo ahora"),
        ("inbound", "vale")]
    assert found[2]["status"] == "sent"
    assert await skipped_count(gateway, "fb", "own_echo") == before + 1


async def test_instagram_echoes_of_our_sends_are_recognised_without_metadata(
    gateway: GatewayUnderTest, graph: FakeGraph
) -> None:
    token = await gateway.token()
    user = psid()
    await write(gateway, graph, "ig", user, "¿tenéis talla S?")
    cid = await wait_customer(gateway, token, f"instagram:{user}")
    sent = await reply(gateway, token, cid, {"text": "Sí"})
    [body] = await graph.wait_for_messages(1)
    assert "metadata" not in body["message"]  # Instagram's Send API takes none
    mid = (await wait_status(gateway, token, cid, sent["id"], "sent"))["provider_message_id"]
    await post(gateway, graph, "ig", [{"sender": {"id": IG}, "recipient": {"id": user},
                                       "timestamp": int(time.time() * 1000),
                                       "message": {"mid": mid, "is_echo": True, "text": "Sí"}}])
    await write(gateway, graph, "ig", user, "gracias")
    found = await wait_messages(gateway, token, cid, 3)
    assert [(m["direction"], m["text"]) for m in found] == [
        ("inbound", "¿tenéis talla S?"), ("outbound", "Sí"), ("inbound", "gracias")]


async def test_watermarks_mark_every_earlier_message(gateway: GatewayUnderTest, graph: FakeGraph) -> None:
    token = await gateway.token()
    user = psid()
    await write(gateway, graph, "fb", user, "hola")
    cid = await wait_customer(gateway, token, f"messenger:{user}")
    first = await reply(gateway, token, cid, {"text": "uno"})
    second = await reply(gateway, token, cid, {"text": "dos"})
    for sent in (first, second):
        await wait_status(gateway, token, cid, sent["id"], "sent")
    now = int(time.time() * 1000) + 1000
    await post(gateway, graph, "fb", [{"sender": {"id": user}, "recipient": {"id": PAGE}, "timestamp": now,
                                       "delivery": {"mids": [], "watermark": now}}])
    for sent in (first, second):
        await wait_status(gateway, token, cid, sent["id"], "delivered")
    await post(gateway, graph, "fb", [{"sender": {"id": user}, "recipient": {"id": PAGE}, "timestamp": now,
                                       "read": {"watermark": now}}])
    for sent in (first, second):
        await wait_status(gateway, token, cid, sent["id"], "read")
    # A later reply is not covered by an earlier watermark.
    await _clock_passes(now)
    stale = int(time.time() * 1000) - 1  # a watermark from before the third was sent, delivered late
    third = await reply(gateway, token, cid, {"text": "tres"})
    await wait_status(gateway, token, cid, third["id"], "sent")
    await post(gateway, graph, "fb", [{"sender": {"id": user}, "recipient": {"id": PAGE}, "timestamp": stale,
                                       "delivery": {"watermark": stale}}])
    await write(gateway, graph, "fb", user, "visto")
    await wait_messages(gateway, token, cid, 5)
    assert [m["status"] for m in await messages(gateway, token, cid) if m["id"] == third["id"]] == ["sent"]


async def _clock_passes(ms: int) -> None:
    """Wait until the wall clock is past `ms` (a watermark set a little ahead)."""
    await eventually(lambda: time.time() * 1000 > ms, within=5)


async def test_human_agent_tag_on_day_3_and_refusal_on_day_8(gateway: GatewayUnderTest, graph: FakeGraph,
                                                             redis_client: Any) -> None:
    token = await gateway.token()
    user = psid()
    await write(gateway, graph, "fb", user, "¿me llamáis?")
    cid = await wait_customer(gateway, token, f"messenger:{user}")
    await age_window(gateway, redis_client, cid, "fb", "messenger", 3 * 24)
    [window] = (await conversation(gateway, token, cid))["reply_windows"]
    assert window["open"] is False  # free text is over; a tagged human reply is still allowed
    sent = await reply(gateway, token, cid, {"text": "Te llamamos mañana"})
    [body] = await graph.wait_for_messages(1)
    assert (body["messaging_type"], body["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")
    await wait_status(gateway, token, cid, sent["id"], "sent")

    await age_window(gateway, redis_client, cid, "fb", "messenger", 8 * 24)
    refused = await reply(gateway, token, cid, {"text": "¿Sigues ahí?"}, expect=409)
    assert refused["error"]["code"] == "window_closed" and refused["error"]["templates"] == []
    assert "HUMAN_AGENT" in refused["error"]["message"]
    assert len(graph.messages) == 1


async def test_instagram_without_the_tag_closes_at_24_hours(gateway: GatewayUnderTest, graph: FakeGraph,
                                                            redis_client: Any) -> None:
    token = await gateway.token()
    user = psid()
    await write(gateway, graph, "ig", user, "hola")
    cid = await wait_customer(gateway, token, f"instagram:{user}")
    await age_window(gateway, redis_client, cid, "ig", "instagram", 30)
    refused = await reply(gateway, token, cid, {"text": "hola"}, expect=409)
    assert refused["error"]["code"] == "window_closed"


async def test_messenger_outside_window_error_closes_the_window(gateway: GatewayUnderTest,
                                                                graph: FakeGraph) -> None:
    token = await gateway.token()
    user = psid()
    await write(gateway, graph, "ig", user, "hola")
    cid = await wait_customer(gateway, token, f"instagram:{user}")
    graph.fail_next(400, code=10, subcode=2018278)
    sent = await reply(gateway, token, cid, {"text": "hola"})
    failed = await wait_status(gateway, token, cid, sent["id"], "failed")
    assert failed["error"].startswith("10/2018278")
    await reply(gateway, token, cid, {"text": "¿hola?"}, expect=409)


async def test_long_replies_are_split_at_each_platform_s_limit(gateway: GatewayUnderTest, graph: FakeGraph) -> None:
    token = await gateway.token()
    fb_user, ig_user = psid(), psid()
    await write(gateway, graph, "fb", fb_user, "cuéntame")
    await write(gateway, graph, "ig", ig_user, "cuéntame")
    text = " ".join(f"Frase número {i} con un detalle más del pedido." for i in range(60))  # ~2,900 chars
    fb = await wait_customer(gateway, token, f"messenger:{fb_user}")
    ig = await wait_customer(gateway, token, f"instagram:{ig_user}")
    await reply(gateway, token, fb, {"text": text})
    await reply(gateway, token, ig, {"text": text})
    sent = await graph.wait_for_messages(5)
    lengths = {user: [len(b["message"]["text"]) for b in sent if b["recipient"]["id"] == user]
               for user in (fb_user, ig_user)}
    assert len(lengths[fb_user]) == 2 and max(lengths[fb_user]) <= 2000
    assert len(lengths[ig_user]) == 3 and max(lengths[ig_user]) <= 1000
