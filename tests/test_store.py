"""The Redis store on a real server: race-free identities, replay-safe appends, forward-only
delivery, versioned indexes, paging, and keys that stay within one Cluster slot per command."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from conversation.activity import SYSTEM
from conversation.model import DeliveryStatus, Identity, InboundMessage, StatusUpdate
from conversation.service import Core
from conversation.store import Route, Store, ThreadState

PHONE = Identity("phone", "+34600111222")
ROUTE = Route("default", 5)


@pytest.fixture
def store(redis_client: aioredis.Redis, key_prefix: str) -> Store:
    return Store(redis_client, prefix=key_prefix, partitions=4)


def inbound(text: str, sid: str, sender: Identity = PHONE, **kw: Any) -> InboundMessage:
    return InboundMessage(instance="sms", channel="sms", provider_message_id=sid, sender=sender, text=text,
                          received_at_ms=int(time.time() * 1000), **kw)


async def test_concurrent_first_contacts_create_one_customer(redis_url: str, key_prefix: str) -> None:
    # Separate connections, so the SET NX calls really race at the server.
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(20)]
    try:
        stores = [Store(c, prefix=key_prefix) for c in clients]
        ids = await asyncio.gather(*(s.identities.resolve(Identity("phone", "+34600999000")) for s in stores))
        assert len(set(ids)) == 1
    finally:
        for c in clients:
            await c.aclose()


async def test_a_linked_identity_is_listed_on_its_customer_before_it_writes(store: Store) -> None:
    cid = await store.identities.resolve(PHONE)
    await store.threads.append_inbound(cid, inbound("hello", "SM1"), partition=1, entry_id="100-0", route=ROUTE)
    email = Identity("email", "ana@example.com")
    core = Core(store)
    assert await core.identities.link(email, cid, "verified_email") == cid
    assert await core.identities.link(email, "someone-else", "verified_email") == cid  # the first link wins
    customer = await store.threads.get_customer(cid)
    assert [i.key for i in customer.identities] == [PHONE.key, email.key]
    # Also for a customer whose thread has no message yet (a web chat session with a verified email).
    fresh = await store.identities.resolve(Identity("webchat", "v-1"))
    await core.identities.link(Identity("email", "bo@example.com"), fresh, "session")
    assert [i.key for i in (await store.threads.get_customer(fresh)).identities] == ["email:bo@example.com"]


async def test_replayed_entry_is_not_appended_twice(store: Store) -> None:
    cid = await store.identities.resolve(PHONE)
    first = await store.threads.append_inbound(cid, inbound("hello", "SM1"), partition=1, entry_id="100-0", route=ROUTE)
    again = await store.threads.append_inbound(cid, inbound("hello", "SM1"), partition=1, entry_id="100-0", route=ROUTE)
    older = await store.threads.append_inbound(cid, inbound("older", "SM0"), partition=1, entry_id="99-5", route=ROUTE)
    later = await store.threads.append_inbound(cid, inbound("later", "SM2"), partition=1, entry_id="100-1", route=ROUTE)
    assert [c.state.applied for c in (first, again, older, later) if c.state] == [True, False, False, True]
    messages, _ = await store.timeline.list_messages(cid)
    assert [m.text for m in messages] == ["hello", "later"]
    # another partition (another identity of the same customer) has its own watermark
    other = await store.threads.append_inbound(cid, inbound("by email", "E1", Identity("email", "a@b.c")),
                                       partition=2, entry_id="50-0", route=ROUTE)
    assert other.state is not None and other.state.applied


async def test_dedupe_and_record_is_one_atomic_call(store: Store, redis_client: aioredis.Redis) -> None:
    msg = inbound("hi", "SMdup")
    assert (await store.ingest.record([msg]))[0] is not None
    assert (await store.ingest.record([msg])) == [None]
    p = store.ingest.partition_for(PHONE)
    assert await redis_client.xlen(store.keys.ingest_stream(p)) == 1
    ttl = await redis_client.ttl(store.keys.dedupe(p, "sms", "SMdup"))
    assert ttl > 7 * 86400  # Meta retries for a week


async def test_delivery_only_moves_forward(store: Store) -> None:
    cid = await store.identities.resolve(PHONE)
    await store.threads.append_inbound(cid, inbound("hi", "SM1"), partition=0, entry_id="1-0", route=ROUTE)
    msg, _, _ = await store.threads.append_outbound(cid, text="yo", channel="sms", instance="sms", to=PHONE, author="a")
    seen = []
    for status in (DeliveryStatus.DELIVERED, DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.READ,
                   DeliveryStatus.DELIVERED):
        _, d, _ = await store.delivery.update(msg.id, status)
        seen.append(d.status)
    assert seen == [DeliveryStatus.DELIVERED] * 3 + [DeliveryStatus.READ] * 2
    # a failure report beats "sent", and keeps the provider's reason
    msg2, _, _ = await store.threads.append_outbound(cid, text="again", channel="sms", instance="sms", to=PHONE,
                                                     author="a")
    await store.delivery.update(msg2.id, DeliveryStatus.SENT, provider_id="SMx")
    changed, d, _ = await store.delivery.update(msg2.id, DeliveryStatus.FAILED, error="30003: Unreachable")
    assert changed and d.status == DeliveryStatus.FAILED and d.error == "30003: Unreachable"


async def test_status_report_before_the_provider_id_is_linked_is_applied_later(store: Store) -> None:
    cid = await store.identities.resolve(PHONE)
    await store.threads.append_inbound(cid, inbound("hi", "SM1"), partition=0, entry_id="1-0", route=ROUTE)
    msg, _, _ = await store.threads.append_outbound(cid, text="yo", channel="sms", instance="sms", to=PHONE, author="a")
    early = StatusUpdate("sms", "SMfast", DeliveryStatus.DELIVERED)
    assert await store.delivery.locate(early) is None  # parked
    parked = await store.delivery.link_provider_id(msg.id, "sms", "SMfast")
    assert parked == [early]
    assert await store.delivery.locate(early) == msg.id


async def test_idempotency_key_returns_the_first_message(store: Store) -> None:
    cid = await store.identities.resolve(PHONE)
    await store.threads.append_inbound(cid, inbound("hi", "SM1"), partition=0, entry_id="1-0", route=ROUTE)
    kw: dict[str, Any] = {"text": "once", "channel": "sms", "instance": "sms", "to": PHONE, "author": "a"}
    first, created, _ = await store.threads.append_outbound(cid, idempotency_key="k", **kw)
    second, created_again, _ = await store.threads.append_outbound(cid, idempotency_key="k", **kw)
    assert created and not created_again and first.id == second.id
    messages, _ = await store.timeline.list_messages(cid)
    assert len(messages) == 2


async def test_index_ignores_older_versions(store: Store) -> None:
    cid = await store.identities.resolve(PHONE)
    opened = await store.threads.append_inbound(cid, inbound("hi", "SM1"), partition=0, entry_id="1-0", route=ROUTE)
    resolved = await store.threads.update(cid, SYSTEM, status="resolved")
    assert resolved.state and opened.state
    await store.indexes.reindex([resolved.state, opened.state])  # the older state arrives last, as after a crash
    assert [c.id for c in (await store.indexes.list_conversations(status="resolved"))[0]] == [cid]
    assert (await store.indexes.list_conversations(status="open"))[0] == []
    assert (await store.indexes.list_conversations(queue="default"))[0] == []


async def test_conversation_paging_visits_each_once(store: Store) -> None:
    states: list[ThreadState] = []
    for i in range(23):
        ident = Identity("phone", f"+3460000{i:04d}")
        cid = await store.identities.resolve(ident)
        change = await store.threads.append_inbound(cid, inbound(f"m{i}", f"SM{i}", ident), partition=0,
                                                    entry_id=f"{i + 1}-0", route=ROUTE)
        assert change.state is not None
        states.append(change.state)
    await store.indexes.reindex(states)
    for filters in ({}, {"status": "open"}, {"queue": "default"}):
        seen: list[str] = []
        cursor = None
        while True:
            page, cursor = await store.indexes.list_conversations(limit=5, cursor=cursor, **filters)
            seen += [c.id for c in page]
            if cursor is None:
                break
        assert sorted(seen) == sorted(s.customer_id for s in states), filters
        assert len(seen) == 23


async def test_an_index_from_before_the_all_conversations_set_still_lists_everything(store: Store) -> None:
    """A deployment indexed by an older version has no {ix}:all yet: the unfiltered listing then
    merges the status indexes, and each conversation joins it on its next change."""
    states: list[ThreadState] = []
    for i in range(7):
        ident = Identity("phone", f"+3460001{i:04d}")
        cid = await store.identities.resolve(ident)
        change = await store.threads.append_inbound(cid, inbound(f"m{i}", f"SMx{i}", ident), partition=0,
                                                    entry_id=f"{i + 1}-0", route=ROUTE)
        assert change.state is not None
        states.append(change.state)
    await store.indexes.reindex(states)
    await store.redis.delete(store.keys.ix_all())
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = await store.indexes.list_conversations(limit=3, cursor=cursor)
        seen += [c.id for c in page]
        if cursor is None:
            break
    assert seen == [s.customer_id for s in reversed(states)]


async def test_message_paging(store: Store) -> None:
    cid = await store.identities.resolve(PHONE)
    for i in range(7):
        await store.threads.append_inbound(cid, inbound(f"m{i}", f"SM{i}"), partition=0, entry_id=f"{i + 1}-0",
                                           route=ROUTE)
    texts: list[str] = []
    after = -1
    while True:
        page, nxt = await store.timeline.list_messages(cid, after=after, limit=3)
        texts += [m.text for m in page]
        if nxt is None:
            break
        after = nxt
    assert texts == [f"m{i}" for i in range(7)]


async def test_episodes_span_open_to_resolved(store: Store) -> None:
    cid = await store.identities.resolve(PHONE)
    await store.threads.append_inbound(cid, inbound("one", "SM1"), partition=0, entry_id="1-0", route=ROUTE)
    answer, _, _ = await store.threads.append_outbound(cid, text="answer", channel="sms", instance="sms", to=PHONE,
                                                       author="a")
    # Queued is not answered: the first reply of an episode is the first one sent.
    assert (await store.threads.episodes(cid))[0].first_response_at is None
    await store.delivery.update(answer.id, DeliveryStatus.SENT, provider_id="SMa")
    await store.threads.update(cid, SYSTEM, status="resolved")
    change = await store.threads.append_inbound(cid, inbound("two", "SM2"), partition=0, entry_id="2-0", route=ROUTE)
    assert change.state is not None and change.state.status == "open" and change.state.episode == 2
    episodes = await store.threads.episodes(cid)
    assert [e.number for e in episodes] == [1, 2]
    assert episodes[0].first_response_at is not None and episodes[0].resolved_at is not None
    assert episodes[1].resolved_at is None and episodes[1].first_response_at is None


class _SlotRecorder:
    """Records the keys of every script call, direct or pipelined."""

    def __init__(self, client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        direct = client.execute_command
        queued = aioredis.client.Pipeline.execute_command

        def note(args: tuple[Any, ...]) -> None:
            name = str(args[0]).upper()
            if name in ("EVALSHA", "EVAL"):
                self.calls.append((name, [_s(k) for k in args[3:3 + int(args[2])]]))

        async def recording(*args: Any, **kw: Any) -> Any:
            note(args)
            return await direct(*args, **kw)

        def recording_queued(pipe: Any, *args: Any, **kw: Any) -> Any:
            note(args)
            return queued(pipe, *args, **kw)

        monkeypatch.setattr(client, "execute_command", recording)
        monkeypatch.setattr(aioredis.client.Pipeline, "execute_command", recording_queued)


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


async def test_every_script_call_stays_in_one_cluster_slot(
    redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    rec = _SlotRecorder(client, monkeypatch)
    store = Store(client, prefix=key_prefix, partitions=4)
    try:
        cid = await store.identities.resolve(PHONE)
        change = await store.threads.append_inbound(cid, inbound("hi", "SM1"), partition=0, entry_id="1-0",
                                                    route=ROUTE)
        assert change.state is not None
        await store.indexes.reindex([change.state])
        msg, _, _ = await store.threads.append_outbound(cid, text="yo", channel="sms", instance="sms", to=PHONE,
                                                        author="a", idempotency_key="k")
        await store.delivery.update(msg.id, DeliveryStatus.SENT, provider_id="SMp")
        await store.delivery.link_provider_id(msg.id, "sms", "SMp")
        await store.delivery.locate(StatusUpdate("sms", "SMp", DeliveryStatus.DELIVERED))
        await store.threads.update(cid, SYSTEM, status="resolved")
        await store.threads.set_opt_out(cid, PHONE, True, SYSTEM)
        await store.ingest.record([inbound("x", "SM9")])
        # Nine calls; more when the server lost its scripts meanwhile (another suite sharing this
        # Redis ran SCRIPT FLUSH) and a call was repeated after loading them.
        assert len(rec.calls) >= 9
        for name, keys in rec.calls:
            assert len({key_slot(k.encode()) for k in keys}) == 1, (name, keys)
    finally:
        keys = [k async for k in client.scan_iter(match=f"{key_prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_batches_survive_a_server_that_lost_its_scripts(store: Store, redis_client: aioredis.Redis) -> None:
    """After a Redis restart the script cache is empty: batched calls load the script and go on."""
    await store.ingest.record([inbound("warm", "SMw1"), inbound("up", "SMw2")])
    await redis_client.script_flush()
    ids = await store.ingest.record([inbound("a", "SMf1"), inbound("b", "SMf2"), inbound("a", "SMf1")])
    assert ids[0] and ids[1] and ids[2] is None
