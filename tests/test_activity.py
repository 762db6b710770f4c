"""The activity log: every change of a thread appears once, with who made it and the details, in
the same atomic call that makes the change; read by cursor in both orders; live events derive
from it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from connectors.testing.fake_twilio import FakeTwilio
from conversation.activity import SYSTEM, ActivityType, agent
from conversation.model import DeliveryStatus, Identity, InboundMessage, StatusUpdate
from conversation.service import Core
from conversation.store import Route, Store
from gateway.testing import GatewayUnderTest, eventually

ACCOUNT_SID = "AC" + "3" * 32
AUTH_TOKEN = "c" * 32
BUSINESS = "+15550001111"


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
async def gateway(redis_url: str, key_prefix: str, twilio: FakeTwilio) -> AsyncIterator[GatewayUnderTest]:
    async with GatewayUnderTest(
        redis_url, prefix=key_prefix, partitions=2, lease_ttl=2.0, send_visibility_timeout=2.0,
        connectors={"sms": {"kind": "twilio", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN,
                            "from_number": BUSINESS, "api_base_url": twilio.base_url}},
        routing={"rules": [{"name": "refunds", "queue": "billing", "priority": 7, "keyword": "refund"}]},
    ) as gw:
        yield gw


async def activity(gw: GatewayUnderTest, token: str, cid: str, **query: str) -> dict[str, Any]:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    status, page = await gw.api("GET", f"/v1/conversations/{cid}/activity?{qs}", token)
    assert status == 200 and isinstance(page, dict), page
    return page


async def test_every_transition_appears_once_with_its_actor_and_details(
        gateway: GatewayUnderTest, twilio: FakeTwilio) -> None:
    gw = gateway
    ana = await gw.token("agent", "ana")
    sue = await gw.token("supervisor", "sue")
    number = "+346" + str(uuid.uuid4().int)[:8]
    url = gw.url("/webhooks/sms/messages")

    # The customer writes: linked, received, routed by the rule that matched.
    assert (await twilio.post_inbound(url, number, "Where is my refund?", to=BUSINESS))[0] == 200
    customer = await eventually(lambda: gw.store.find_customer(Identity("phone", number)))
    cid = customer.id

    async def entries(count: int) -> list[dict[str, Any]]:
        page = await activity(gw, ana, cid, limit="100")
        return page["items"] if len(page["items"]) >= count else []

    await eventually(lambda: entries(3), what="the first three entries")
    # Ana takes it and answers; Twilio sends it and reports it delivered.
    assert (await gw.api("POST", f"/v1/conversations/{cid}/assign", ana, json={"assignee": "me"}))[0] == 200
    status, reply = await gw.api("POST", f"/v1/conversations/{cid}/messages", ana, json={"text": "On its way"})
    assert status == 202 and isinstance(reply, dict)
    [sent] = await twilio.wait_for_messages(1)
    await eventually(lambda: entries(6), what="the reply sent")
    assert await twilio.post_status(gw.url("/webhooks/sms/status"), sent["sid"], "delivered") == 200
    await eventually(lambda: entries(7), what="the delivery report")
    # Pending, resolved; the customer writes again, which reopens it for a new episode.
    for new_status in ("pending", "resolved"):
        assert (await gw.api("POST", f"/v1/conversations/{cid}/status", ana, json={"status": new_status}))[0] == 200
    assert (await twilio.post_inbound(url, number, "Thanks, got it", to=BUSINESS))[0] == 200
    await eventually(lambda: entries(13), what="the reopening")
    # A supervisor gives it to Ben, then takes it from him; a note; an agent's STOP from the customer.
    await gw.api("POST", f"/v1/conversations/{cid}/assign", sue, json={"assignee": "ben"})
    await gw.api("POST", f"/v1/conversations/{cid}/assign", sue, json={"assignee": None})
    await gw.api("POST", f"/v1/conversations/{cid}/assign", sue, json={"assignee": None})  # no change: no entry
    await gw.api("POST", f"/v1/conversations/{cid}/messages", sue, json={"text": "VIP", "private": True})
    assert (await twilio.post_inbound(url, number, "STOP", to=BUSINESS))[0] == 200
    items = await eventually(lambda: entries(18), what="every entry")

    mid0, mid1 = f"{cid}.0", reply["id"]
    seen = [(e["type"], e["actor"]["kind"], e["actor"]["name"]) for e in items]
    assert seen == [
        ("identity_linked", "system", None),
        ("message_received", "customer", cid),
        ("routed", "rule", "refunds"),
        ("assigned", "agent", "ana"),
        ("reply_queued", "agent", "ana"),
        ("reply_sent", "system", None),
        ("reply_delivered", "system", None),
        ("status_changed", "agent", "ana"),
        ("status_changed", "agent", "ana"),
        ("message_received", "customer", cid),
        ("reopened", "customer", cid),
        ("unassigned", "system", None),
        ("routed", "rule", "default"),
        ("assigned", "agent", "sue"),
        ("unassigned", "agent", "sue"),
        ("note_added", "agent", "sue"),
        ("message_received", "customer", cid),
        ("opt_out_changed", "customer", cid),
        # STOP does not reopen, route or assign anything: nothing more
    ], seen
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in items:
        by_type.setdefault(e["type"], []).append(e["details"])
    assert by_type["identity_linked"] == [{"identity": f"phone:{number}", "via": "first_contact"}]
    assert by_type["message_received"][0] == {"message_id": mid0, "channel": "sms", "instance": "sms"}
    assert by_type["routed"] == [{"queue": "billing", "priority": 7, "rule": "refunds"},
                                 {"queue": "default", "priority": 5, "rule": "default"}]
    assert by_type["assigned"] == [{"agent": "ana"}, {"agent": "ben"}]
    assert by_type["reply_queued"] == [{"message_id": mid1, "channel": "sms", "instance": "sms",
                                        "to": f"phone:{number}"}]
    assert by_type["reply_sent"] == [{"message_id": mid1}] and by_type["reply_delivered"] == [{"message_id": mid1}]
    assert by_type["status_changed"] == [{"from": "open", "to": "pending"}, {"from": "pending", "to": "resolved"}]
    assert by_type["reopened"] == [{"from": "resolved", "to": "open", "episode": 2}]
    assert by_type["unassigned"] == [{"agent": "ana", "reason": "new_episode"}, {"agent": "ben"}]
    assert by_type["opt_out_changed"] == [{"identity": f"phone:{number}", "opted_out": True}]
    assert all(e["at"].endswith("Z") or "+00:00" in e["at"] for e in items)
    assert len({e["id"] for e in items}) == len(items)


async def test_the_log_reads_newest_or_oldest_first_by_cursor(gateway: GatewayUnderTest, twilio: FakeTwilio) -> None:
    gw = gateway
    token = await gw.token("agent")
    number = "+346" + str(uuid.uuid4().int)[:8]
    for i in range(4):
        await twilio.post_inbound(gw.url("/webhooks/sms/messages"), number, f"message {i}", to=BUSINESS)
    customer = await eventually(lambda: gw.store.find_customer(Identity("phone", number)))

    async def all_in() -> list[dict[str, Any]]:
        items = (await activity(gw, token, customer.id, limit="100"))["items"]
        return items if len(items) == 6 else []  # linked, routed, and four received

    everything = await eventually(all_in)
    for order, expected in (("asc", everything), ("desc", everything[::-1])):
        seen: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = await activity(gw, token, customer.id, order=order, limit="4",
                                  **({"cursor": cursor} if cursor else {}))
            seen += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == expected, order
    status, body = await gw.api("GET", f"/v1/conversations/{customer.id}/activity?cursor=nope.a1", token)
    assert status == 400 and isinstance(body, dict) and body["error"]["code"] == "invalid_parameter"
    assert (await gw.api("GET", "/v1/conversations/nobody/activity", token))[0] == 404
    # Live events are the log's entries: each names the entry it came from.
    events = [e for _, e in await gw.store.events.read(count=1000) if e.conversation_id == customer.id]
    assert [e.id for e in events] == [e["id"] for e in everything]
    assert [e.activity for e in events] == [e["type"] for e in everything]


def inbound(sender: Identity, sid: str, text: str = "hi") -> InboundMessage:
    return InboundMessage(instance="sms", channel="sms", provider_message_id=sid, sender=sender, text=text,
                          received_at_ms=int(time.time() * 1000))


class _Commands:
    """Every command the client sends, direct or pipelined, with the keys it names."""

    def __init__(self, client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[tuple[str, tuple[Any, ...]]] = []
        direct = client.execute_command
        queued = aioredis.client.Pipeline.execute_command

        async def recording(*args: Any, **kw: Any) -> Any:
            self.sent.append((str(args[0]).upper(), args))
            return await direct(*args, **kw)

        def recording_queued(pipe: Any, *args: Any, **kw: Any) -> Any:
            self.sent.append((str(args[0]).upper(), args))
            return queued(pipe, *args, **kw)

        monkeypatch.setattr(client, "execute_command", recording)
        monkeypatch.setattr(aioredis.client.Pipeline, "execute_command", recording_queued)

    def touching(self, *keys: str) -> list[tuple[str, tuple[Any, ...]]]:
        wanted = {k.encode() for k in keys} | set(keys)
        return [(name, args) for name, args in self.sent if wanted & set(args[1:])]


async def test_a_change_and_its_entry_are_one_atomic_call(redis_url: str, key_prefix: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """No crash can fall between a change and its activity entry: the only command that writes a
    thread's state, its timeline or its delivery records is the one script call that also appends
    the entry, and Redis runs a script whole."""
    client = aioredis.Redis.from_url(redis_url)
    store = Store(client, prefix=key_prefix, partitions=2)
    core = Core(store)
    phone = Identity("phone", "+34600333444")
    try:
        cid = await store.identities.resolve(phone)
        keys = store.keys
        written = (keys.thread(cid), keys.timeline(cid), keys.overlay(cid), keys.activity(cid), keys.episodes(cid))
        commands = _Commands(client, monkeypatch)
        change = await store.threads.append_inbound(cid, inbound(phone, "SM1"), partition=0, entry_id="1-0",
                                                    route=Route("default", 5))
        await core.threads.assign(cid, "ana", by="ana", may_reassign=False)
        reply, _, _ = await store.threads.append_outbound(cid, text="yo", channel="sms", instance="sms", to=phone,
                                                          author="ana")
        await store.delivery.update(reply.id, DeliveryStatus.SENT, provider_id="SMr")
        await store.delivery.update(reply.id, DeliveryStatus.DELIVERED)
        await core.threads.set_status(cid, _status("resolved"), by=agent("ana"))
        await store.threads.set_opt_out(cid, phone, True, SYSTEM)
        await core.identities.link(Identity("email", "ana@example.com"), cid, "verified_email")
        writes = [(name, args) for name, args in commands.touching(*written) if name not in _READS]
        assert writes, "nothing recorded"
        for name, args in writes:
            assert name in ("EVALSHA", "EVAL"), (name, args)
            script_keys = {k.decode() if isinstance(k, bytes) else k for k in args[3:3 + int(args[2])]}
            assert keys.activity(cid) in script_keys, (name, script_keys)
        log, _ = await store.timeline.activity(cid, limit=100)
        assert len(log) == 10 and change.activities  # each call appended its entries, no more
    finally:
        keys_left = [k async for k in client.scan_iter(match=f"{key_prefix}:*")]
        if keys_left:
            await client.delete(*keys_left)
        await client.aclose()


_READS = {"HMGET", "HGET", "HGETALL", "LRANGE", "LINDEX", "LLEN", "EXISTS", "GET", "MGET", "SCRIPT", "EVALSHA_RO"}


def _status(value: str) -> Any:
    from conversation.model import ThreadStatus

    return ThreadStatus(value)


async def test_merge_suggestions_and_links_are_logged_on_the_customer(redis_client: aioredis.Redis,
                                                                      key_prefix: str) -> None:
    store = Store(redis_client, prefix=key_prefix, partitions=2)
    core = Core(store)
    ana, colleague = Identity("email", "ana@example.com"), Identity("email", "bob@example.com")
    cid = await store.identities.resolve(ana)
    await store.threads.append_inbound(cid, inbound(ana, "<q1>"), partition=0, entry_id="1-0",
                                       route=Route("default", 5))
    await core.identities.suggest_merge(colleague, cid)
    await core.identities.suggest_merge(colleague, cid)  # suggested once, however often it writes
    await core.identities.link(Identity("phone", "+34600555666"), cid, "verified_email")
    log, _ = await store.timeline.activity(cid, limit=100)
    assert [(a.type, a.details) for a in log if a.type in (ActivityType.MERGE_SUGGESTED,
                                                           ActivityType.IDENTITY_LINKED)] == [
        (ActivityType.IDENTITY_LINKED, {"identity": "email:ana@example.com", "via": "first_contact"}),
        (ActivityType.MERGE_SUGGESTED, {"identity": "email:bob@example.com"}),
        (ActivityType.IDENTITY_LINKED, {"identity": "phone:+34600555666", "via": "verified_email"}),
    ]
    assert await store.identities.merge_suggestions() == {"email:bob@example.com": cid}


async def test_watermarks_mark_every_earlier_reply_to_that_recipient(redis_client: aioredis.Redis,
                                                                     key_prefix: str) -> None:
    """Messenger's and Instagram's read and delivery watermarks carry no message id: every earlier
    outbound message of that recipient on the instance moves forward, and none after it."""
    store = Store(redis_client, prefix=key_prefix, partitions=2)
    core = Core(store)
    psid = Identity("messenger", "4411")
    cid = await store.identities.resolve(psid)
    await store.threads.append_inbound(cid, InboundMessage(instance="fb", channel="messenger",
                                                           provider_message_id="m.1", sender=psid, text="hi"),
                                       partition=0, entry_id="1-0", route=Route("default", 5))
    sent = []
    for text in ("one", "two"):
        msg, _, _ = await store.threads.append_outbound(cid, text=text, channel="messenger", instance="fb", to=psid,
                                                        author="ana")
        await store.delivery.update(msg.id, DeliveryStatus.SENT, provider_id=f"m.{text}")
        sent.append(msg)
    await asyncio.sleep(0.01)
    mark = int(time.time() * 1000)
    await asyncio.sleep(0.01)
    later, _, _ = await store.threads.append_outbound(cid, text="later", channel="messenger", instance="fb", to=psid,
                                                      author="ana")
    await store.delivery.update(later.id, DeliveryStatus.SENT, provider_id="m.later")
    await core.deliveries.status_report(StatusUpdate(instance="fb", status=DeliveryStatus.READ, recipient=psid,
                                                     up_to_ms=mark))
    statuses = [(await store.timeline.get_message(m.id)).status for m in (*sent, later)]
    assert statuses == [DeliveryStatus.READ, DeliveryStatus.READ, DeliveryStatus.SENT]
