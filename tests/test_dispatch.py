"""The outbound dispatcher against a fake Twilio through the real SDK: retries, permanent
failures, dead letters, and crashed workers whose sends are reclaimed without double sends."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from connectors.base import Connector
from connectors.sms.twilio import TwilioConnector
from connectors.testing.fake_twilio import FakeTwilio
from conversation.ids import conversation_of
from conversation.model import DeliveryStatus, Identity, InboundMessage
from conversation.service import Core, DeliveryPolicy, ReplyIntent
from conversation.store import Route, Store
from conversation.store.streams import OUTBOUND_GROUP as GROUP
from gateway.workers.dispatch import Dispatcher

ACCOUNT_SID = "AC" + "2" * 32
AUTH_TOKEN = "e" * 32
CUSTOMER = Identity("phone", "+34600123456")


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
def store(redis_client: Any, key_prefix: str) -> Store:
    return Store(redis_client, prefix=key_prefix, partitions=2)


@pytest.fixture
async def connector(twilio: FakeTwilio) -> AsyncIterator[TwilioConnector]:
    conn = TwilioConnector.from_config(
        "sms",
        {"kind": "twilio", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": "+15550001111",
         "api_base_url": twilio.base_url},
        public_url="http://127.0.0.1:9",
    )
    assert isinstance(conn, TwilioConnector)
    yield conn
    await conn.aclose()


def dispatcher_for(store: Store, connectors: dict[str, Connector[Any]], *, consumer: str | None = None,
                   **policy: Any) -> Dispatcher:
    core = Core(store, channels=connectors, delivery=DeliveryPolicy(**policy))
    return Dispatcher(core, connectors, consumer=consumer)


async def enqueue_send(store: Store, mid: str, attempt: int = 0) -> None:
    await store.outbox.enqueue({"m": mid, "a": str(attempt)})


async def enqueue_reply(store: Store, intent: ReplyIntent) -> None:
    await store.outbox.enqueue({"c": intent.conversation_id, "r": msgspec.json.encode(intent), "a": "0"})


async def queued_reply(store: Store, text: str = "Your refund is on its way") -> str:
    """A customer who wrote once, and an agent's reply to them, queued for the dispatcher."""
    cid = await store.identities.resolve(CUSTOMER)
    await store.threads.append_inbound(
        cid,
        InboundMessage(instance="sms", channel="sms", provider_message_id=f"SMin{time.time_ns()}", sender=CUSTOMER,
                       text="refund?"),
        partition=0, entry_id=f"{int(time.time() * 1000)}-0", route=Route("default", 5),
    )
    msg, _, _ = await store.threads.append_outbound(cid, text=text, channel="sms", instance="sms", to=CUSTOMER,
                                                    author="ana")
    await enqueue_send(store, msg.id)
    return msg.id


async def run_until(dispatcher: Dispatcher, done: Any, within: float = 10.0) -> None:
    task = asyncio.create_task(dispatcher.run())
    try:
        deadline = time.monotonic() + within
        while not await done():
            assert time.monotonic() < deadline, "dispatcher did not get there in time"
            await asyncio.sleep(0.05)
    finally:
        dispatcher.stop()
        await asyncio.wait_for(task, 5)


async def status_of(store: Store, mid: str) -> DeliveryStatus:
    return (await store.timeline.get_message(mid)).status


async def test_transient_errors_are_retried_after_retry_after(
    store: Store, connector: TwilioConnector, twilio: FakeTwilio
) -> None:
    mid = await queued_reply(store)
    twilio.fail_next(429, retry_after=1)
    twilio.fail_next(503)
    dispatcher = dispatcher_for(store, {"sms": connector}, backoff_base=0.05, visibility_timeout=5)
    started = time.monotonic()

    async def sent() -> bool:
        return await status_of(store, mid) == DeliveryStatus.SENT

    await run_until(dispatcher, sent)
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was honoured
    assert twilio.attempts == 3 and len(twilio.messages) == 1
    msg = await store.timeline.get_message(mid)
    assert msg.provider_message_id == twilio.messages[0]["sid"]


async def test_a_reply_being_retried_shows_its_attempts_error_and_next_attempt(
    store: Store, connector: TwilioConnector, twilio: FakeTwilio
) -> None:
    mid = await queued_reply(store)
    twilio.fail_next(503)
    dispatcher = dispatcher_for(store, {"sms": connector}, backoff_base=60)  # the retry waits a minute
    started = time.time()

    async def waiting() -> bool:
        return (await store.timeline.get_message(mid)).last_error is not None

    await run_until(dispatcher, waiting)
    message = await store.timeline.get_message(mid)
    shown = msgspec.json.decode(msgspec.json.encode(message))  # as the API shows it
    assert shown["status"] == "queued" and shown["attempts"] == 1 and shown["error"] is None
    assert shown["last_error"] == "20500: Internal Server Error"  # Twilio's words for the 503
    assert shown["next_attempt_at"] is not None and message.next_attempt_at is not None
    assert started + 29 < message.next_attempt_at.timestamp() < started + 61  # the upper half of 60 s
    assert twilio.messages == []


async def test_permanent_error_fails_at_once_with_the_reason(
    store: Store, connector: TwilioConnector, twilio: FakeTwilio
) -> None:
    mid = await queued_reply(store)
    twilio.fail_next(400, 21211)
    dispatcher = dispatcher_for(store, {"sms": connector}, backoff_base=0.05)

    async def failed() -> bool:
        return await status_of(store, mid) == DeliveryStatus.FAILED

    await run_until(dispatcher, failed)
    msg = await store.timeline.get_message(mid)
    assert msg.error and "21211" in msg.error
    assert twilio.attempts == 1 and twilio.messages == []
    log, _ = await store.timeline.activity(conversation_of(mid), limit=50)
    assert [(a.type, a.actor.kind, a.details) for a in log if a.type == "reply_failed"] == [
        ("reply_failed", "system", {"message_id": mid, "error": msg.error})]


async def test_unsubscribed_recipient_is_marked_opted_out(
    store: Store, connector: TwilioConnector, twilio: FakeTwilio
) -> None:
    mid = await queued_reply(store)
    twilio.fail_next(400, 21610)
    dispatcher = dispatcher_for(store, {"sms": connector}, backoff_base=0.05)

    async def failed() -> bool:
        return await status_of(store, mid) == DeliveryStatus.FAILED

    await run_until(dispatcher, failed)
    customer = await store.threads.get_customer(conversation_of(mid))
    assert [i.opted_out for i in customer.identities if i.address == CUSTOMER.address] == [True]


async def test_out_of_attempts_goes_to_the_dead_letter_stream(
    store: Store, connector: TwilioConnector, twilio: FakeTwilio
) -> None:
    mid = await queued_reply(store)
    twilio.fail_next(500, times=3)
    dispatcher = dispatcher_for(store, {"sms": connector}, backoff_base=0.02, max_attempts=3)

    async def failed() -> bool:
        return await status_of(store, mid) == DeliveryStatus.FAILED

    await run_until(dispatcher, failed)
    msg = await store.timeline.get_message(mid)
    assert msg.error and "gave up after 3 attempts" in msg.error
    letters, _ = await store.dead_letters.list()
    assert [(stream, fields["message_id"]) for stream, _, fields in letters] == [("outbound", mid)]
    assert twilio.attempts == 3 and twilio.messages == []
    log, _ = await store.timeline.activity(conversation_of(mid), limit=50)
    assert [a.details for a in log if a.type == "reply_failed"] == [
        {"message_id": mid, "error": msg.error, "dead_letter": True}]


async def test_a_recorded_provider_id_is_never_sent_twice(
    store: Store, connector: TwilioConnector, twilio: FakeTwilio
) -> None:
    """Worker A sends and records the provider id, then dies before acknowledging the entry."""
    mid = await queued_reply(store)
    stream = store.keys.outbound_stream()
    await store.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    reply = await store.redis.xreadgroup(GROUP, "worker-a", {stream: ">"}, count=1)
    assert reply and reply[0][1][0][1][b"m"].decode() == mid
    a = dispatcher_for(store, {"sms": connector}, consumer="worker-a", visibility_timeout=0.5)
    assert await a.send_entry(mid, 0) == "sent"  # ... and worker A never acks: it crashed here

    b = dispatcher_for(store, {"sms": connector}, consumer="worker-b", visibility_timeout=0.5)

    async def reclaimed() -> bool:
        pending = await store.redis.xpending(stream, GROUP)
        return int(pending["pending"]) == 0

    await asyncio.sleep(0.6)
    await run_until(b, reclaimed)
    assert len(twilio.messages) == 1


async def test_duplicate_entries_send_once(store: Store, connector: TwilioConnector, twilio: FakeTwilio) -> None:
    mid = await queued_reply(store)
    for _ in range(3):  # e.g. a retried API request queued it again
        await enqueue_send(store, mid)
    dispatcher = dispatcher_for(store, {"sms": connector})
    await store.redis.xgroup_create(store.keys.outbound_stream(), GROUP, id="0", mkstream=True)

    async def drained() -> bool:
        pending = await store.redis.xpending(store.keys.outbound_stream(), GROUP)
        return await status_of(store, mid) == DeliveryStatus.SENT and int(pending["pending"]) == 0

    await run_until(dispatcher, drained)
    await asyncio.sleep(0.3)
    assert len(twilio.messages) == 1


async def test_a_reply_whose_writer_died_before_storing_it_is_stored_and_sent_once(
        store: Store, connector: TwilioConnector, twilio: FakeTwilio) -> None:
    """The API queues a reply (the outbox entry) before storing it. A process that dies in
    between loses nothing: the dispatcher stores the reply from the entry, then sends it; the
    client's retry with the same Idempotency-Key meets the same message and sends nothing more."""
    mid = await queued_reply(store)  # the customer, who wrote in once
    cid = conversation_of(mid)
    intent = ReplyIntent(conversation_id=cid, key="req-7", text="Your parcel left today", channel="sms",
                         instance="sms", to=CUSTOMER, author="ana")
    await enqueue_reply(store, intent)  # ...and the API process died here
    dispatcher = dispatcher_for(store, {"sms": connector})
    await store.redis.xgroup_create(store.keys.outbound_stream(), GROUP, id="0", mkstream=True)

    async def recovered() -> list[str]:
        messages, _ = await store.timeline.list_messages(cid)
        return [m.id for m in messages if m.text == intent.text and m.status == DeliveryStatus.SENT]

    await run_until(dispatcher, recovered)
    # The client retries the request: the same key finds the stored reply.
    await enqueue_reply(store, intent)
    again, created = await Core(store).replies.store_intent(intent)
    assert not created and [again.id] == await recovered()
    dispatcher = dispatcher_for(store, {"sms": connector})

    async def drained() -> bool:
        return int((await store.redis.xpending(store.keys.outbound_stream(), GROUP))["pending"]) == 0

    await run_until(dispatcher, drained)
    await asyncio.sleep(0.3)
    assert [m["Body"] for m in twilio.messages].count(intent.text) == 1
    assert [m.text for m in (await store.timeline.list_messages(cid))[0]].count(intent.text) == 1


async def test_worker_killed_mid_send_is_recovered_by_another_without_double_send(
    store: Store, connector: TwilioConnector, twilio: FakeTwilio, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    """A real `omnigateway worker` process is SIGKILLed while its request to Twilio is in flight;
    another worker reclaims the send after the visibility timeout and sends it exactly once."""
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
[gateway]
redis_url = "{redis_url}"
key_prefix = "{key_prefix}"
partitions = 2
send_visibility_timeout = 2.0
data_dir = "{tmp_path / 'var'}"

[connectors.sms]
kind = "twilio"
account_sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"
from_number = "+15550001111"
api_base_url = "{twilio.base_url}"
""")
    twilio.delay(3)  # the first request hangs at "Twilio" until the worker dies
    mid = await queued_reply(store)
    exe = Path(sys.executable).with_name("omnigateway")
    proc = await asyncio.create_subprocess_exec(str(exe), "worker", "--config", str(config),
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while twilio.attempts == 0:
            assert time.monotonic() < deadline, "the worker never reached Twilio"
            assert proc.returncode is None, "the worker exited"
            await asyncio.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
    twilio.delay(0)
    assert await status_of(store, mid) == DeliveryStatus.QUEUED
    assert twilio.messages == []

    rescuer = dispatcher_for(store, {"sms": connector}, consumer="rescuer", visibility_timeout=2.0)

    async def sent() -> bool:
        return await status_of(store, mid) == DeliveryStatus.SENT

    await run_until(rescuer, sent, within=15)
    await asyncio.sleep(0.3)
    assert len(twilio.messages) == 1 and twilio.attempts == 2
    assert (await store.timeline.get_message(mid)).provider_message_id == twilio.messages[0]["sid"]
