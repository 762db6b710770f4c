"""End to end through the whole gateway: a signed SMS in, the thread through the API, a reply out
through the real twilio SDK to a local fake Twilio, and Twilio's status callbacks coming back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest

from connectors.testing.fake_twilio import FakeTwilio, inbound_message_params
from gateway.testing import GatewayUnderTest, eventually

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "f" * 32
BUSINESS = "+15550001111"



@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
async def gateway(redis_url: str, key_prefix: str, twilio: FakeTwilio, redis_client: Any
                  ) -> AsyncIterator[GatewayUnderTest]:
    gw = GatewayUnderTest(
        redis_url,
        prefix=key_prefix,
        connectors={"sms": {"kind": "twilio", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN,
                            "from_number": BUSINESS, "api_base_url": twilio.base_url}},
        partitions=4,
        lease_ttl=2.0,
        send_visibility_timeout=2.0,
        send_max_attempts=3,
    )
    async with gw:
        yield gw


def new_number() -> str:
    return "+346" + str(uuid.uuid4().int)[:8]


async def text_in(gw: GatewayUnderTest, twilio: FakeTwilio, number: str, body: str, **kw: Any) -> tuple[int, bytes]:
    params = inbound_message_params(number, BUSINESS, body, account_sid=ACCOUNT_SID, **kw)
    return await twilio.post_webhook(gw.url("/webhooks/sms/messages"), params)


async def thread_of(gw: GatewayUnderTest, token: str, number: str) -> dict[str, Any] | None:
    status, body = await gw.api("GET", f"/v1/customers?identity=phone:{number.replace('+', '%2B')}", token)
    items = body.get("items") if status == 200 and isinstance(body, dict) else None
    if not items:
        return None
    status, conv = await gw.api("GET", f"/v1/conversations/{items[0]['id']}", token)
    return conv if status == 200 and isinstance(conv, dict) else None


async def messages_of(gw: GatewayUnderTest, token: str, conv_id: str) -> list[dict[str, Any]]:
    status, page = await gw.api("GET", f"/v1/conversations/{conv_id}/messages?limit=100", token)
    assert status == 200, page
    assert isinstance(page, dict)
    return list(page["items"])


async def test_happy_path_from_webhook_to_delivered(gateway: GatewayUnderTest, twilio: FakeTwilio) -> None:
    token = await gateway.token("agent")
    number = new_number()
    status, body = await text_in(gateway, twilio, number, "My order has not arrived")
    assert status == 200 and b"<Response" in body

    conv = await eventually(lambda: thread_of(gateway, token, number))
    assert conv["status"] == "open" and conv["queue"] == "default"
    assert {"kind": "phone", "address": number} in [
        {"kind": i["kind"], "address": i["address"]} for i in conv["customer"]["identities"]]
    status, listing = await gateway.api("GET", "/v1/conversations?queue=default", token)
    assert status == 200 and conv["id"] in [c["id"] for c in listing["items"]]  # type: ignore[index]

    status, reply = await gateway.api("POST", f"/v1/conversations/{conv['id']}/messages", token,
                                      json={"text": "Sorry! It ships today."})
    assert status == 202 and isinstance(reply, dict)
    assert reply["status"] == "queued" and reply["direction"] == "outbound" and reply["channel"] == "sms"

    sent = await twilio.wait_for_messages(1)
    assert sent[0]["To"] == number and sent[0]["Body"] == "Sorry! It ships today."
    assert sent[0]["From"] == BUSINESS
    assert sent[0]["StatusCallback"] == gateway.url("/webhooks/sms/status")

    async def status_is(want: str) -> bool:
        msgs = await messages_of(gateway, token, conv["id"])
        return any(m["id"] == reply["id"] and m["status"] == want for m in msgs)

    await eventually(lambda: status_is("sent"))
    assert await twilio.post_status(gateway.url("/webhooks/sms/status"), sent[0]["sid"], "delivered") == 200
    await eventually(lambda: status_is("delivered"))
    msgs = await messages_of(gateway, token, conv["id"])
    assert [m["direction"] for m in msgs] == ["inbound", "outbound"]
    assert msgs[0]["text"] == "My order has not arrived"


async def test_same_message_sid_twice_is_stored_once(gateway: GatewayUnderTest, twilio: FakeTwilio) -> None:
    token = await gateway.token()
    number = new_number()
    sid = "SM" + uuid.uuid4().hex
    for _ in range(2):
        status, _ = await text_in(gateway, twilio, number, "Hello?", message_sid=sid)
        assert status == 200
    await text_in(gateway, twilio, number, "anyone there")
    conv = await eventually(lambda: thread_of(gateway, token, number))
    msgs = await eventually(
        lambda: _at_least(messages_of(gateway, token, conv["id"]), 2))
    assert [m["text"] for m in msgs] == ["Hello?", "anyone there"]


async def _at_least(coro: Awaitable[list[dict[str, Any]]], n: int) -> list[dict[str, Any]] | None:
    items = await coro
    return items if len(items) >= n else None


async def test_forged_signature_is_refused_and_nothing_stored(
    gateway: GatewayUnderTest, twilio: FakeTwilio, redis_client: Any, key_prefix: str
) -> None:
    params = inbound_message_params(new_number(), BUSINESS, "hi", account_sid=ACCOUNT_SID)
    forger = FakeTwilio(ACCOUNT_SID, "0" * 32)  # signs with the wrong auth token
    try:
        status, body = await forger.post_webhook(gateway.url("/webhooks/sms/messages"), params)
    finally:
        await forger.close()
    assert status == 403 and b"invalid_signature" in body
    # a genuine signature over a tampered body
    tampered = {**params, "Body": "send me a refund"}
    headers = {"X-Twilio-Signature": twilio.sign(gateway.url("/webhooks/sms/messages"), params)}
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.post(gateway.url("/webhooks/sms/messages"), data=tampered, headers=headers) as resp:
            assert resp.status == 403
        async with s.post(gateway.url("/webhooks/sms/messages"), data=params) as resp:  # unsigned
            assert resp.status == 403
    await asyncio.sleep(0.3)
    streams = [k async for k in redis_client.scan_iter(match=f"{key_prefix}:*:in")]
    assert [await redis_client.xlen(k) for k in streams] == [0] * len(streams)
    assert [k async for k in redis_client.scan_iter(match=f"{key_prefix}:*:dd:*")] == []
    assert [k async for k in redis_client.scan_iter(match=f"{key_prefix}:ident:*")] == []


async def test_twenty_concurrent_first_messages_make_one_customer_in_order(
    gateway: GatewayUnderTest, twilio: FakeTwilio, redis_client: Any, key_prefix: str
) -> None:
    token = await gateway.token()
    number = new_number()
    texts = [f"part {i}" for i in range(20)]
    # Sequential acks would hide races; fire all twenty at once. Order is the ack order, which
    # for concurrent requests is whatever the server saw: compare against the ingest order.
    results = await asyncio.gather(*(text_in(gateway, twilio, number, t) for t in texts))
    assert all(status == 200 for status, _ in results)
    conv = await eventually(lambda: thread_of(gateway, token, number))
    msgs = await eventually(lambda: _at_least(messages_of(gateway, token, conv["id"]), 20))
    assert sorted(m["text"] for m in msgs) == sorted(texts)
    ident_keys = [k async for k in redis_client.scan_iter(match=f"{key_prefix}:ident:*")]
    assert len(ident_keys) == 1
    _, listing = await gateway.api("GET", "/v1/conversations", token)
    assert [c["customer"]["id"] for c in listing["items"]].count(conv["customer"]["id"]) == 1  # type: ignore[index]
    # in order: timestamps never go backwards along the thread
    stamps = [m["created_at"] for m in msgs]
    assert stamps == sorted(stamps)


async def test_messages_keep_arrival_order(gateway: GatewayUnderTest, twilio: FakeTwilio) -> None:
    token = await gateway.token()
    number = new_number()
    texts = [f"line {i}" for i in range(30)]
    for t in texts:
        assert (await text_in(gateway, twilio, number, t))[0] == 200
    conv = await eventually(lambda: thread_of(gateway, token, number))
    msgs = await eventually(lambda: _at_least(messages_of(gateway, token, conv["id"]), 30))
    assert [m["text"] for m in msgs] == texts


async def test_idempotent_reply_sends_once(gateway: GatewayUnderTest, twilio: FakeTwilio) -> None:
    token = await gateway.token()
    number = new_number()
    await text_in(gateway, twilio, number, "hi")
    conv = await eventually(lambda: thread_of(gateway, token, number))
    key = {"Idempotency-Key": str(uuid.uuid4())}
    replies = [await gateway.api("POST", f"/v1/conversations/{conv['id']}/messages", token,
                                 json={"text": "hello there"}, headers=key) for _ in range(3)]
    assert {s for s, _ in replies} == {202}
    assert len({r["id"] for _, r in replies}) == 1  # type: ignore[index]
    await twilio.wait_for_messages(1)
    await asyncio.sleep(0.5)
    assert len([m for m in twilio.messages if m["To"] == number]) == 1
    msgs = await messages_of(gateway, token, conv["id"])
    assert [m["direction"] for m in msgs] == ["inbound", "outbound"]


async def test_status_callbacks_out_of_order_only_move_forward(
    gateway: GatewayUnderTest, twilio: FakeTwilio
) -> None:
    token = await gateway.token()
    number = new_number()
    await text_in(gateway, twilio, number, "hi")
    conv = await eventually(lambda: thread_of(gateway, token, number))
    _, reply = await gateway.api("POST", f"/v1/conversations/{conv['id']}/messages", token, json={"text": "yo"})
    sent = await twilio.wait_for_messages(1)
    sid = sent[0]["sid"]
    status_url = gateway.url("/webhooks/sms/status")

    async def current() -> dict[str, Any]:
        return next(m for m in await messages_of(gateway, token, conv["id"]) if m["id"] == reply["id"])  # type: ignore[index]

    await eventually(lambda: _status(current(), "sent"))
    assert await twilio.post_status(status_url, sid, "delivered") == 200
    await eventually(lambda: _status(current(), "delivered"))
    # late, stale reports arrive after delivery: they must not move it back
    for late in ("sent", "queued", "sending"):
        assert await twilio.post_status(status_url, sid, late) == 200
    assert await twilio.post_status(status_url, sid, "read") == 200
    await eventually(lambda: _status(current(), "read"))
    assert await twilio.post_status(status_url, sid, "delivered") == 200
    await asyncio.sleep(0.3)
    assert (await current())["status"] == "read"


async def _status(coro: Awaitable[dict[str, Any]], want: str) -> bool:
    return (await coro)["status"] == want


async def test_failed_status_keeps_the_error_code(gateway: GatewayUnderTest, twilio: FakeTwilio) -> None:
    token = await gateway.token()
    number = new_number()
    await text_in(gateway, twilio, number, "hi")
    conv = await eventually(lambda: thread_of(gateway, token, number))
    _, reply = await gateway.api("POST", f"/v1/conversations/{conv['id']}/messages", token, json={"text": "yo"})
    sent = await twilio.wait_for_messages(1)

    async def failed() -> dict[str, Any] | None:
        m = next(m for m in await messages_of(gateway, token, conv["id"]) if m["id"] == reply["id"])  # type: ignore[index]
        return m if m["status"] == "failed" else None

    await eventually(lambda: _status(_one(gateway, token, conv["id"], reply["id"]), "sent"))  # type: ignore[index]
    assert await twilio.post_status(gateway.url("/webhooks/sms/status"), sent[0]["sid"], "undelivered", 30003) == 200
    m = await eventually(failed)
    assert "30003" in m["error"]


async def _one(gw: GatewayUnderTest, token: str, conv_id: str, mid: str) -> dict[str, Any]:
    return next(m for m in await messages_of(gw, token, conv_id) if m["id"] == mid)


async def test_opt_out_refuses_replies_until_start(gateway: GatewayUnderTest, twilio: FakeTwilio) -> None:
    token = await gateway.token()
    number = new_number()
    await text_in(gateway, twilio, number, "hi")
    conv = await eventually(lambda: thread_of(gateway, token, number))
    await text_in(gateway, twilio, number, "STOP")

    async def opted_out() -> bool:
        c = await thread_of(gateway, token, number)
        return bool(c) and any(i.get("opted_out") for i in c["customer"]["identities"])  # type: ignore[index]

    await eventually(opted_out)
    status, body = await gateway.api("POST", f"/v1/conversations/{conv['id']}/messages", token,
                                     json={"text": "are you sure?"})
    assert status == 409 and body["error"]["code"] == "opted_out"  # type: ignore[index]
    await asyncio.sleep(0.3)
    assert twilio.messages == []

    await text_in(gateway, twilio, number, "start")

    async def opted_in() -> bool:
        c = await thread_of(gateway, token, number)
        return bool(c) and not any(i.get("opted_out") for i in c["customer"]["identities"])  # type: ignore[index]

    await eventually(opted_in)
    status, _ = await gateway.api("POST", f"/v1/conversations/{conv['id']}/messages", token,
                                  json={"text": "welcome back"})
    assert status == 202
    await twilio.wait_for_messages(1)


async def test_a_sender_the_phone_library_calls_impossible_still_reaches_a_thread(
    gateway: GatewayUnderTest, twilio: FakeTwilio
) -> None:
    # Twilio delivered it, so somebody wrote from it: it used to go to the dead letters.
    token = await gateway.token("admin")
    number = "+1234" + str(uuid.uuid4().int)[:1]  # too short to be possible anywhere
    status, _ = await text_in(gateway, twilio, number, "short code reply")
    assert status == 200
    conv = await eventually(lambda: thread_of(gateway, token, number), what="the impossible number's thread")
    assert conv["customer"]["identities"] == [{"kind": "phone", "address": number, "opted_out": False}]
    status, page = await gateway.api("GET", "/v1/dead-letters", token)
    assert status == 200 and page["items"] == []  # type: ignore[index]


async def test_malformed_payload_is_dead_lettered_and_replayable(
    gateway: GatewayUnderTest, twilio: FakeTwilio
) -> None:
    token = await gateway.token("admin")
    params = inbound_message_params(new_number(), BUSINESS, "hello from nowhere", account_sid=ACCOUNT_SID)
    params["NumMedia"] = "two"  # authentic, but no parser can use it
    status, _ = await twilio.post_webhook(gateway.url("/webhooks/sms/messages"), params)
    assert status == 200  # acknowledged: retrying cannot help
    status, listing = await gateway.api("GET", "/v1/dead-letters", token)
    assert status == 200
    items = listing["items"]  # type: ignore[index]
    assert len(items) == 1 and items[0]["stream"] == "inbound"
    # The operator reads it as sent: the form as its fields, with why and when.
    letter = items[0]
    assert letter["payload"]["Body"] == "hello from nowhere" and letter["payload"]["NumMedia"] == "two"
    assert letter["content_type"] == "application/x-www-form-urlencoded"
    assert "NumMedia 'two' is not a number" in letter["reason"] and letter["instance"] == "sms"
    assert letter["received_at"].startswith("20")
    assert "hello+from+nowhere" in letter["fields"]["body"]  # and the raw request, for the replay

    # Replaying it as it is fails clearly and keeps it.
    status, body = await gateway.api("POST", f"/v1/dead-letters/{items[0]['id']}/replay", token)
    assert status == 422, body
    status, listing = await gateway.api("GET", "/v1/dead-letters", token)
    assert len(listing["items"]) == 1  # type: ignore[index]

    # An agent may not see dead letters.
    agent = await gateway.token("agent")
    assert (await gateway.api("GET", "/v1/dead-letters", agent))[0] == 403


async def test_redis_down_answers_503(twilio: FakeTwilio, key_prefix: str) -> None:
    from gateway.testing import RedisProcess

    redis = RedisProcess()
    redis.start()
    gw = GatewayUnderTest(
        redis.url, prefix=key_prefix,
        connectors={"sms": {"kind": "twilio", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN,
                            "from_number": BUSINESS, "api_base_url": twilio.base_url}},
    )
    async with gw:
        assert (await text_in(gw, twilio, new_number(), "before"))[0] == 200
        redis.stop()
        status, body = await text_in(gw, twilio, new_number(), "while redis is down")
        assert status == 503 and b"unavailable" in body
        import aiohttp

        async with aiohttp.ClientSession() as s, s.get(gw.url("/readyz")) as resp:
            assert resp.status == 503


async def test_resolved_thread_reopens_on_new_message(gateway: GatewayUnderTest, twilio: FakeTwilio) -> None:
    token = await gateway.token("supervisor")
    number = new_number()
    await text_in(gateway, twilio, number, "first problem")
    conv = await eventually(lambda: thread_of(gateway, token, number))
    status, body = await gateway.api("POST", f"/v1/conversations/{conv['id']}/status", token,
                                     json={"status": "resolved"})
    assert status == 200 and body["status"] == "resolved"  # type: ignore[index]
    status, listing = await gateway.api("GET", "/v1/conversations?queue=default", token)
    assert conv["id"] not in [c["id"] for c in listing["items"]]  # type: ignore[index]

    await text_in(gateway, twilio, number, "second problem")

    async def reopened() -> dict[str, Any] | None:
        c = await thread_of(gateway, token, number)
        return c if c and c["status"] == "open" else None

    again = await eventually(reopened)
    assert again["id"] == conv["id"]  # one thread per customer, reopened, not a new one
    status, listing = await gateway.api("GET", "/v1/conversations?queue=default", token)
    assert conv["id"] in [c["id"] for c in listing["items"]]  # type: ignore[index]
    assert len(await messages_of(gateway, token, conv["id"])) == 2


async def test_reply_outside_the_whatsapp_window_is_refused(
    gateway: GatewayUnderTest, twilio: FakeTwilio, redis_client: Any
) -> None:
    token = await gateway.token()
    number = new_number()
    params = inbound_message_params(f"whatsapp:{number}", f"whatsapp:{BUSINESS}", "hola", account_sid=ACCOUNT_SID)
    assert (await twilio.post_webhook(gateway.url("/webhooks/sms/messages"), params))[0] == 200
    conv = await eventually(lambda: thread_of(gateway, token, number))
    status, reply = await gateway.api("POST", f"/v1/conversations/{conv['id']}/messages", token, json={"text": "hi"})
    assert status == 202 and reply["channel"] == "whatsapp"  # type: ignore[index]
    sent = await twilio.wait_for_messages(1)
    assert sent[0]["To"] == f"whatsapp:{number}"

    # 25 hours pass without the customer writing on WhatsApp
    thread_key = gateway.store.keys.thread(conv["id"])
    await redis_client.hset(thread_key, "in:sms:whatsapp", int((time.time() - 25 * 3600) * 1000))
    status, body = await gateway.api("POST", f"/v1/conversations/{conv['id']}/messages", token,
                                     json={"text": "still there?"})
    assert status == 409 and body["error"]["code"] == "window_closed"  # type: ignore[index]
    assert "template" in body["error"]["message"]  # type: ignore[index]
    assert body["error"]["templates"] == []  # type: ignore[index]  # none configured on this instance
    await asyncio.sleep(0.3)
    assert len(twilio.messages) == 1


async def test_attachments_the_channel_cannot_carry_go_as_links(
    gateway: GatewayUnderTest, twilio: FakeTwilio
) -> None:
    token = await gateway.token()
    number = new_number()
    await text_in(gateway, twilio, number, "send me the invoice and a photo")
    conv = await eventually(lambda: thread_of(gateway, token, number))
    attachments = [
        {"url": "https://files.example.com/photo.jpg", "content_type": "image/jpeg", "size": 200_000},
        {"url": "https://files.example.com/invoice.zip", "content_type": "application/zip", "name": "invoice.zip"},
        {"url": "https://files.example.com/huge.png", "content_type": "image/png", "size": 50_000_000},
    ]
    status, reply = await gateway.api("POST", f"/v1/conversations/{conv['id']}/messages", token,
                                      json={"text": "Here you are", "attachments": attachments})
    assert status == 202, reply
    (sent,) = await twilio.wait_for_messages(1)
    assert sent["MediaUrl"] == ["https://files.example.com/photo.jpg"]
    assert sent["Body"] == (
        "Here you are\n\ninvoice.zip: https://files.example.com/invoice.zip\n\nhttps://files.example.com/huge.png"
    )


async def test_text_longer_than_sms_allows_is_split_at_sentences(
    gateway: GatewayUnderTest, twilio: FakeTwilio
) -> None:
    token = await gateway.token()
    number = new_number()
    await text_in(gateway, twilio, number, "tell me everything")
    conv = await eventually(lambda: thread_of(gateway, token, number))
    sentences = [f"Sentence number {i} explains one more detail of your order." for i in range(60)]
    status, _ = await gateway.api("POST", f"/v1/conversations/{conv['id']}/messages", token,
                                  json={"text": " ".join(sentences)})
    assert status == 202
    await twilio.wait_for_messages(3)
    await asyncio.sleep(0.3)
    bodies = [m["Body"] for m in twilio.messages]
    assert all(len(b) <= 1600 for b in bodies) and len(bodies) == 3
    assert all(b.endswith(".") for b in bodies)  # cut between sentences, never inside one
    assert " ".join(bodies) == " ".join(sentences)
    msgs = await messages_of(gateway, token, conv["id"])
    assert [m["text"] for m in msgs if m["direction"] == "outbound"] == bodies


async def test_oversize_webhook_is_refused_with_413(gateway: GatewayUnderTest, twilio: FakeTwilio,
                                                    redis_client: Any, key_prefix: str) -> None:
    params = inbound_message_params(new_number(), BUSINESS, "x" * 2_000_000, account_sid=ACCOUNT_SID)
    status, body = await twilio.post_webhook(gateway.url("/webhooks/sms/messages"), params)
    assert status == 413 and b"payload_too_large" in body
    streams = [k async for k in redis_client.scan_iter(match=f"{key_prefix}:*:in")]
    assert [await redis_client.xlen(k) for k in streams] == [0] * len(streams)
