"""WhatsApp Cloud API through the whole gateway: Meta's handshake and signatures, batches, echoes,
statuses, the 24-hour window and templates, media on demand, and one customer with SMS."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from socialkit import (
    age_window,
    conversation,
    customer_id,
    messages,
    reply,
    skipped_count,
    wait_customer,
    wait_messages,
    wait_retry,
    wait_status,
)

from connectors.testing.fake_graph import FakeGraph, whatsapp_message, whatsapp_payload, whatsapp_status
from connectors.testing.fake_twilio import FakeTwilio, inbound_message_params
from gateway.testing import GatewayUnderTest

SECRET = "whatsapp-app-secret-0001"
VERIFY = "whatsapp-verify-token"
NUMBER = "106540352242922"
ACCOUNT_SID = "AC" + "4" * 32
AUTH_TOKEN = "d" * 32
SMS_NUMBER = "+15550003333"


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    async with FakeGraph() as fake:
        yield fake


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
async def gateway(redis_url: str, key_prefix: str, graph: FakeGraph, twilio: FakeTwilio
                  ) -> AsyncIterator[GatewayUnderTest]:
    gw = GatewayUnderTest(redis_url, prefix=key_prefix, partitions=2, connectors={
        "wa": {"kind": "whatsapp", "app_secret": SECRET, "verify_token": VERIFY, "access_token": graph.access_token,
               "phone_number_id": NUMBER, "api_base_url": graph.base_url,
               "templates": [{"name": "seguimiento", "language": "es",
                              "body": "Hola {{1}}, ¿podemos ayudarte con algo más?"}]},
        "sms": {"kind": "twilio", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": SMS_NUMBER,
                "api_base_url": twilio.base_url},
    })
    async with gw:
        yield gw


def wa_id() -> str:
    return "346" + str(uuid.uuid4().int)[:8]


async def write(gw: GatewayUnderTest, graph: FakeGraph, sender: str, text: str, *, name: str = "Ana",
                timestamp: int | None = None, wamid: str | None = None) -> str:
    wamid = wamid or "wamid." + uuid.uuid4().hex
    payload = whatsapp_payload(NUMBER, contacts=[(sender, name)], messages=[
        whatsapp_message(sender, "text", {"body": text}, wamid=wamid, timestamp=timestamp)])
    assert (await graph.post_webhook(gw.url("/webhooks/wa/events"), SECRET, payload))[0] == 200
    return wamid


async def test_the_subscription_handshake(gateway: GatewayUnderTest) -> None:
    status, body = await FakeGraph.subscribe(gateway.url("/webhooks/wa/events"), VERIFY, "1158201444")
    assert (status, body) == (200, "1158201444")
    status, _ = await FakeGraph.subscribe(gateway.url("/webhooks/wa/events"), "guessed", "1158201444")
    assert status == 403


async def test_a_forged_signature_is_403_and_stores_nothing(gateway: GatewayUnderTest, graph: FakeGraph) -> None:
    token = await gateway.token()
    sender = wa_id()
    forged = whatsapp_payload(NUMBER, messages=[whatsapp_message(sender, "text", {"body": "forged"})])
    body, headers = FakeGraph.signed("not-the-app-secret", forged)
    for hdrs in (headers, {"Content-Type": "application/json"}):
        async with aiohttp.ClientSession() as http, http.post(gateway.url("/webhooks/wa/events"), data=body,
                                                              headers=hdrs) as resp:
            assert resp.status == 403
    await write(gateway, graph, sender, "authentic")
    cid = await wait_customer(gateway, token, f"phone:+{sender}")
    assert [m["text"] for m in await messages(gateway, token, cid)] == ["authentic"]


async def test_a_batch_of_entries_is_stored_whole_and_other_numbers_are_counted(
    gateway: GatewayUnderTest, graph: FakeGraph
) -> None:
    token = await gateway.token()
    a, b = wa_id(), wa_id()
    one = whatsapp_payload(NUMBER, contacts=[(a, "Ana"), (b, "Bea")], messages=[
        whatsapp_message(a, "text", {"body": "a1"}), whatsapp_message(b, "text", {"body": "b1"})])
    two = whatsapp_payload(NUMBER, contacts=[(a, "Ana")], messages=[whatsapp_message(a, "text", {"body": "a2"})])
    other = whatsapp_payload("999000111222333", messages=[whatsapp_message(a, "text", {"body": "not ours"})])
    before = await skipped_count(gateway, "wa", "other_number")
    payload = {"object": "whatsapp_business_account",
               "entry": [one["entry"][0], two["entry"][0], other["entry"][0]]}
    assert (await graph.post_webhook(gateway.url("/webhooks/wa/events"), SECRET, payload))[0] == 200
    # Acked only once recorded: both customers' threads fill without any further webhook.
    ca = await wait_customer(gateway, token, f"phone:+{a}")
    cb = await wait_customer(gateway, token, f"phone:+{b}")
    assert [m["text"] for m in await wait_messages(gateway, token, ca, 2)] == ["a1", "a2"]
    assert [m["text"] for m in await wait_messages(gateway, token, cb, 1)] == ["b1"]
    assert (await conversation(gateway, token, ca))["customer"]["name"] == "Ana"
    assert await skipped_count(gateway, "wa", "other_number") == before + 1
    # Meta retries the whole POST: nothing is stored twice.
    assert (await graph.post_webhook(gateway.url("/webhooks/wa/events"), SECRET, payload))[0] == 200
    await write(gateway, graph, a, "a3")
    assert [m["text"] for m in await wait_messages(gateway, token, ca, 3)] == ["a1", "a2", "a3"]


async def test_reply_in_the_window_then_refused_with_templates_then_a_template(
    gateway: GatewayUnderTest, graph: FakeGraph, redis_client: Any
) -> None:
    token = await gateway.token()
    sender = wa_id()
    await write(gateway, graph, sender, "hola")
    cid = await wait_customer(gateway, token, f"phone:+{sender}")
    [window] = [w for w in (await conversation(gateway, token, cid))["reply_windows"] if w["instance"] == "wa"]
    assert window["open"] is True and window["channel"] == "whatsapp"
    closes = datetime.fromisoformat(window["closes_at"].replace("Z", "+00:00")).timestamp()
    assert abs(closes - (time.time() + 24 * 3600)) < 120

    sent = await reply(gateway, token, cid, {"text": "Claro, **mañana** llega. _Gracias_", "instance": "wa"})
    [body] = await graph.wait_for_messages(1)
    assert body["_path"] == f"/v21.0/{NUMBER}/messages" and body["to"] == sender
    assert body["text"]["body"] == "Claro, *mañana* llega. _Gracias_"  # WhatsApp's own bold and italic
    await wait_status(gateway, token, cid, sent["id"], "sent")

    await age_window(gateway, redis_client, cid, "wa", "whatsapp", 25)
    refused = await reply(gateway, token, cid, {"text": "¿Sigues ahí?", "instance": "wa"}, expect=409)
    assert refused["error"]["code"] == "window_closed" and refused["error"]["templates"] == ["seguimiento"]

    templated = await reply(gateway, token, cid, {"instance": "wa", "template": {
        "name": "seguimiento", "language": "es", "parameters": ["Ana"]}})
    assert templated["text"] == "Hola Ana, ¿podemos ayudarte con algo más?"
    [_, body] = await graph.wait_for_messages(2)
    assert body["type"] == "template"
    assert body["template"] == {"name": "seguimiento", "language": {"code": "es"}, "components": [
        {"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]}
    await wait_status(gateway, token, cid, templated["id"], "sent")


async def test_the_window_counts_from_meta_s_timestamp(gateway: GatewayUnderTest, graph: FakeGraph) -> None:
    token = await gateway.token()
    sender = wa_id()
    # Meta retried a day-old message: it arrives now, but the customer wrote 25 hours ago.
    await write(gateway, graph, sender, "ayer", timestamp=int(time.time()) - 25 * 3600)
    cid = await wait_customer(gateway, token, f"phone:+{sender}")
    await wait_messages(gateway, token, cid, 1)
    refused = await reply(gateway, token, cid, {"text": "hola"}, expect=409)
    assert refused["error"]["templates"] == ["seguimiento"]


async def test_graph_131047_is_the_window_closing(gateway: GatewayUnderTest, graph: FakeGraph) -> None:
    token = await gateway.token()
    sender = wa_id()
    await write(gateway, graph, sender, "hola")
    cid = await wait_customer(gateway, token, f"phone:+{sender}")
    graph.fail_next(400, code=131047)
    sent = await reply(gateway, token, cid, {"text": "hola"})
    failed = await wait_status(gateway, token, cid, sent["id"], "failed")
    assert failed["error"].startswith("131047: (#131047) Re-engagement message")
    refused = await reply(gateway, token, cid, {"text": "¿hola?"}, expect=409)
    assert refused["error"]["code"] == "window_closed"


async def test_statuses_move_forward_only_and_read_may_come_alone(gateway: GatewayUnderTest,
                                                                  graph: FakeGraph) -> None:
    token = await gateway.token()
    sender = wa_id()
    await write(gateway, graph, sender, "hola")
    cid = await wait_customer(gateway, token, f"phone:+{sender}")
    first = await reply(gateway, token, cid, {"text": "uno"})
    second = await reply(gateway, token, cid, {"text": "dos"})
    await wait_status(gateway, token, cid, first["id"], "sent")
    await wait_status(gateway, token, cid, second["id"], "sent")
    by_text = {b["text"]["body"]: b for b in graph.messages}
    wamids = {m["text"]: m["provider_message_id"] for m in await messages(gateway, token, cid)
              if m["direction"] == "outbound"}
    assert set(wamids) == set(by_text)
    events = gateway.url("/webhooks/wa/events")
    # The first: read before delivered (out of order), then delivered late. The second: read alone.
    for status in (whatsapp_status(wamids["uno"], "read", sender), whatsapp_status(wamids["uno"], "delivered", sender),
                   whatsapp_status(wamids["dos"], "read", sender)):
        assert (await graph.post_webhook(events, SECRET, whatsapp_payload(NUMBER, statuses=[status])))[0] == 200
    await wait_status(gateway, token, cid, second["id"], "read")
    assert (await wait_status(gateway, token, cid, first["id"], "read"))["status"] == "read"


async def test_business_app_echoes_are_our_messages(gateway: GatewayUnderTest, graph: FakeGraph) -> None:
    token = await gateway.token()
    sender = wa_id()
    await write(gateway, graph, sender, "¿abrís el domingo?")
    cid = await wait_customer(gateway, token, f"phone:+{sender}")
    echo = {"from": "15550783881", "to": sender, "id": "wamid.ECHO" + uuid.uuid4().hex,
            "timestamp": str(int(time.time())), "type": "text", "text": {"body": "Sí, de 10 a 14"}}
    payload = whatsapp_payload(NUMBER, field="smb_message_echoes", messages=[echo])
    for _ in range(2):  # Meta's retry of the echo is not a second message
        assert (await graph.post_webhook(gateway.url("/webhooks/wa/events"), SECRET, payload))[0] == 200
    await write(gateway, graph, sender, "genial")
    found = await wait_messages(gateway, token, cid, 3)
    assert [(m["direction"], m["text"], m["status"]) for m in found] == [
        ("inbound", "¿abrís el domingo?", "received"), ("outbound", "Sí, de 10 a 14", "sent"),
        ("inbound", "genial", "received")]
    assert graph.messages == []  # recorded, not sent again
    # Its read receipt finds it like one of ours.
    read = whatsapp_status(echo["id"], "read", sender)
    assert (await graph.post_webhook(gateway.url("/webhooks/wa/events"), SECRET,
                                     whatsapp_payload(NUMBER, statuses=[read])))[0] == 200
    await wait_status(gateway, token, cid, found[1]["id"], "read")


async def test_media_is_fetched_on_demand_with_the_token(gateway: GatewayUnderTest, graph: FakeGraph) -> None:
    token = await gateway.token()
    sender = wa_id()
    graph.add_media("1479537139650973", b"\xff\xd8\xff-a-photo", "image/jpeg")
    payload = whatsapp_payload(NUMBER, messages=[whatsapp_message(sender, "image", {
        "caption": "así llegó", "mime_type": "image/jpeg", "sha256": "x", "id": "1479537139650973"})])
    assert (await graph.post_webhook(gateway.url("/webhooks/wa/events"), SECRET, payload))[0] == 200
    cid = await wait_customer(gateway, token, f"phone:+{sender}")
    [message] = await wait_messages(gateway, token, cid, 1)
    assert message["text"] == "así llegó"
    async with aiohttp.ClientSession() as http, http.get(
            gateway.url(f"/v1/messages/{message['id']}/attachments/0"),
            headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200
        assert await resp.read() == b"\xff\xd8\xff-a-photo"


async def test_graph_throttling_is_retried_after_what_meta_asked(gateway: GatewayUnderTest,
                                                                 graph: FakeGraph) -> None:
    token = await gateway.token()
    sender = wa_id()
    await write(gateway, graph, sender, "hola")
    cid = await wait_customer(gateway, token, f"phone:+{sender}")
    graph.fail_next(429, retry_after=120)
    before = time.time()
    sent = await reply(gateway, token, cid, {"text": "hola"})

    queued, due = await wait_retry(gateway, token, cid, sent["id"])
    assert queued["status"] == "queued" and "130429" in queued["last_error"]
    assert due >= before + 119


@pytest.mark.parametrize(("sms_form", "wa_form", "identity"), [
    ("+52 55 {n}", "52155{n}", "+5255{n}"),  # Mexico: WhatsApp ids keep the old mobile "1"
    ("+55 11 9{n}", "5511{n}", "+55119{n}"),  # Brazil: older ids lack the ninth digit
])
async def test_sms_and_whatsapp_of_one_person_are_one_customer_and_one_thread(
    gateway: GatewayUnderTest, graph: FakeGraph, twilio: FakeTwilio, sms_form: str, wa_form: str, identity: str
) -> None:
    token = await gateway.token()
    n = "8" + str(uuid.uuid4().int)[:7]
    params = inbound_message_params(sms_form.format(n=n).replace(" ", ""), SMS_NUMBER, "por SMS",
                                    account_sid=ACCOUNT_SID)
    assert (await twilio.post_webhook(gateway.url("/webhooks/sms/messages"), params))[0] == 200
    cid = await wait_customer(gateway, token, "phone:" + identity.format(n=n))
    await write(gateway, graph, wa_form.format(n=n), "por WhatsApp")
    found = await wait_messages(gateway, token, cid, 2)
    assert [(m["channel"], m["text"]) for m in found] == [("sms", "por SMS"), ("whatsapp", "por WhatsApp")]
    assert await customer_id(gateway, token, "phone:+" + wa_form.format(n=n)) == cid
    # The reply goes to WhatsApp (where the customer wrote last), at the id WhatsApp gave.
    await reply(gateway, token, cid, {"text": "hola"})
    [body] = await graph.wait_for_messages(1)
    assert body["to"] == wa_form.format(n=n)
