"""The core's support for threaded and polling channels (email first): replies found by
reference, auto-replies that do not reopen, reply context, and supervised pollers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorSettings,
    Outbound,
    ParseResult,
    PollContext,
    Route,
    WebhookRequest,
)
from conversation.activity import SYSTEM
from conversation.model import Identity, InboundMessage
from conversation.routing import RoutingSettings
from conversation.service import Core
from conversation.store import Store
from gateway.workers.pollers import Pollers

ANA = Identity("email", "ana@example.com")
COLLEAGUE = Identity("email", "bob@example.com")


@pytest.fixture
def store(redis_client: aioredis.Redis, key_prefix: str) -> Store:
    return Store(redis_client, prefix=key_prefix, partitions=2)


async def ingest(store: Store, *messages: InboundMessage) -> None:
    """Record messages as a webhook would, then let an ingest worker apply them."""
    await store.ingest.record(messages)
    core = Core(store, routing=RoutingSettings())
    for p in range(store.partitions):
        await store.ingest.open(p)
        entries = await store.ingest.read(p, "test", 100, 0)
        if entries:
            await core.inbound.apply(p, entries)  # type: ignore[arg-type]


def mail(sender: Identity, pid: str, text: str, **kw: Any) -> InboundMessage:
    return InboundMessage(instance="mail", channel="email", provider_message_id=pid, sender=sender, text=text,
                          received_at_ms=int(time.time() * 1000), **kw)


async def our_reply(store: Store, cid: str, provider_id: str) -> None:
    msg, _, _ = await store.threads.append_outbound(cid, text="Our answer", channel="email", instance="mail", to=ANA,
                                                    author="a")
    await store.delivery.link_provider_id(msg.id, "mail", provider_id)
    await store.threads.note_thread_reference(cid, "mail", provider_id)


async def test_a_reply_from_another_address_lands_in_the_referenced_thread_unlinked(store: Store) -> None:
    await ingest(store, mail(ANA, "<q1@ana>", "Question", subject="Invoice 42"))
    cid = await store.identities.known(ANA)
    assert cid
    await our_reply(store, cid, "<a1@us>")

    await ingest(store, mail(COLLEAGUE, "<r1@bob>", "Replying for Ana", references=("<q1@ana>", "<a1@us>"),
                             link_sender=False))
    messages, _ = await store.timeline.list_messages(cid)
    assert [m.text for m in messages] == ["Question", "Our answer", "Replying for Ana"]
    customer = await store.threads.get_customer(cid)
    assert [i.address for i in customer.identities] == ["ana@example.com"]  # not linked
    assert await store.identities.known(COLLEAGUE) is None
    assert (await store.identities.merge_suggestions()) == {"email:bob@example.com": cid}
    # replies still go to Ana by default
    last = await store.threads.last_inbound(cid)
    assert last is not None and last[2] == ANA


async def test_linking_reply_senders_when_configured(store: Store) -> None:
    await ingest(store, mail(ANA, "<q1@ana>", "Question"))
    cid = await store.identities.known(ANA)
    assert cid
    await our_reply(store, cid, "<a1@us>")
    await ingest(store, mail(COLLEAGUE, "<r1@bob>", "Me too", references=("<a1@us>",), link_sender=True))
    assert await store.identities.known(COLLEAGUE) == cid
    customer = await store.threads.get_customer(cid)
    assert {i.address for i in customer.identities} == {"ana@example.com", "bob@example.com"}
    assert await store.identities.merge_suggestions() == {}


async def test_unknown_references_fall_back_to_the_sender(store: Store) -> None:
    await ingest(store, mail(COLLEAGUE, "<x@bob>", "Hello", references=("<never-sent@us>",)))
    cid = await store.identities.known(COLLEAGUE)
    assert cid and [m.text for m in (await store.timeline.list_messages(cid))[0]] == ["Hello"]


async def test_an_auto_reply_is_stored_but_does_not_reopen(store: Store) -> None:
    await ingest(store, mail(ANA, "<q1@ana>", "Question"))
    cid = await store.identities.known(ANA)
    assert cid
    await store.threads.update(cid, SYSTEM, status="resolved")
    await ingest(store, mail(ANA, "<ooo@ana>", "I am out of office", auto_reply=True))
    conv = await store.threads.get_conversation(cid)
    assert conv.status == "resolved"
    messages, _ = await store.timeline.list_messages(cid)
    assert messages[-1].auto_reply and messages[-1].text == "I am out of office"


async def test_thread_context_keeps_subject_and_recent_references(store: Store) -> None:
    await ingest(store, mail(ANA, "<q1@ana>", "Question", subject="Invoice 42"))
    cid = await store.identities.known(ANA)
    assert cid
    for n in range(12):
        await store.threads.note_thread_reference(cid, "mail", f"<a{n}@us>")
    subject, refs = await store.threads.context(cid, "mail")
    assert subject == "Invoice 42"
    assert refs == [f"<a{n}@us>" for n in range(2, 12)]  # the last ten, oldest first
    assert (await store.timeline.list_messages(cid))[0][0].subject == "Invoice 42"


class _Settings(ConnectorSettings, kw_only=True):
    kind: str = "mailbox"


class _PollingConnector(Connector[_Settings]):
    """Polls a list: records each item, saving its cursor after the durable record."""

    kind = "mailbox"
    channel = "email"
    Settings = _Settings
    capabilities = Capabilities(max_text_length=100_000)
    runs = 0

    def __init__(self, *args: Any, inbox: Sequence[str] = (), crash_first: bool = False, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.inbox = list(inbox)
        self.crash_first = crash_first

    def routes(self) -> Sequence[Route]:
        return ()

    def verify(self, request: WebhookRequest) -> None:
        raise NotImplementedError

    def parse(self, request: WebhookRequest) -> ParseResult:
        raise NotImplementedError

    async def send(self, outbound: Outbound) -> str:
        raise NotImplementedError

    async def poll(self, ctx: PollContext) -> None:
        type(self).runs += 1
        if self.crash_first and type(self).runs == 1:
            raise ConnectionResetError("server closed the connection")
        start = int((await ctx.load_state("cursor")) or b"0")
        for n, text in enumerate(self.inbox[start:], start):
            await ctx.record(ParseResult(messages=[mail(ANA, f"<m{n}@ana>", text)]))
            await ctx.save_state("cursor", str(n + 1).encode())
        await asyncio.Event().wait()


async def test_a_poller_is_restarted_after_a_crash_and_resumes_from_its_cursor(store: Store) -> None:
    _PollingConnector.runs = 0
    conn = _PollingConnector("mail", _Settings(), public_url="http://x", inbox=["one", "two"], crash_first=True)
    assert conn.polls()
    pollers = Pollers(store, {"mail": conn}, lease_ttl=1.0)
    task = asyncio.create_task(pollers.run())
    try:
        deadline = time.monotonic() + 10
        while await store.redis.get(store.keys.poll_state("mail", "cursor")) != b"2":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert _PollingConnector.runs == 2
    finally:
        pollers.stop()
        await asyncio.wait_for(task, 5)
    streams = [store.keys.ingest_stream(p) for p in range(store.partitions)]
    assert sum([await store.redis.xlen(s) for s in streams]) == 2


async def test_only_one_process_polls_an_instance(store: Store) -> None:
    _PollingConnector.runs = 0
    first = Pollers(store, {"mail": _PollingConnector("mail", _Settings(), public_url="http://x")}, lease_ttl=1.0)
    second = Pollers(store, {"mail": _PollingConnector("mail", _Settings(), public_url="http://x")}, lease_ttl=1.0)
    tasks = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
    await asyncio.sleep(1.5)
    assert _PollingConnector.runs == 1
    owner_id = (await store.redis.get(store.keys.poll_lease("mail"))).decode()
    owner, other = (0, 1) if owner_id == first.id else (1, 0)
    pollers = (first, second)
    pollers[owner].stop()  # the owner leaves: the other takes over
    await asyncio.wait_for(tasks[owner], 5)
    deadline = time.monotonic() + 5
    while _PollingConnector.runs < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    pollers[other].stop()
    await asyncio.wait_for(tasks[other], 5)
