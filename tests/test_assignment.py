"""Assignment against real Redis: push spreads load evenly, concurrent pulls never over-assign
nor claim a thread twice, the backlog drains when capacity frees, stickiness, key accounts'
managers, transfers, and the pull endpoint's answers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from apphelpers import bearer, make_app, seed

from conversation.activity import agent as agent_actor
from conversation.agents import Agent
from conversation.model import Identity, InboundMessage, ThreadStatus
from conversation.routing import Route, RoutingSettings
from conversation.service import Core
from conversation.service.assignment import AtCapacity
from conversation.store import Change, Store
from gateway.appkeys import CORE

ROUTING = msgspec.convert({"queues": {
    "general": {"assignment": "push", "sticky": True},
    "l2": {"assignment": "pull", "skills": ["technical"]},
    "manual": {"assignment": "manual"}}}, RoutingSettings)
Client = TestClient[Any, Any]


@pytest.fixture
def store(redis_client: aioredis.Redis, key_prefix: str) -> Store:
    return Store(redis_client, prefix=key_prefix)


@pytest.fixture
def core(store: Store) -> Core:
    return Core(store, routing=ROUTING)


async def team(core: Core, count: int, *, queues: tuple[str, ...] = ("general",), capacity: int = 1000,
               online: bool = True, skills: tuple[str, ...] = (), prefix: str = "agent") -> list[str]:
    names = [f"{prefix}-{n}" for n in range(count)]
    for name in names:
        await core.agents.create(Agent(name=name, queues=list(queues), skills=list(skills),
                                       capacity={"sms": capacity}))
        if online:
            await core.store.agents.set_presence(name, "online", int(time.time() * 1000))
    return names


async def waiting(store: Store, count: int, queue: str, series: int = 0) -> list[str]:
    now = int(time.time() * 1000) - 60_000
    return [await seed(store, f"+3469{series}{n:06d}", queue=queue, at_ms=now + n) for n in range(count)]


async def assignees(store: Store, cids: list[str]) -> list[str | None]:
    return [c.assignee if c else None for c in await store.threads.get_conversations(cids)]


async def test_a_thousand_threads_pushed_over_five_agents_differ_by_at_most_one(core: Core, store: Store) -> None:
    names = await team(core, 5)
    cids = await waiting(store, 1000, "general")
    assert await core.assignment.drain(["general"]) == 1000
    held = Counter(await assignees(store, cids))
    assert None not in held and set(held) == set(names)
    assert max(held.values()) - min(held.values()) <= 1
    # The load the agents carry is what they hold: one claim per thread.
    views = {v.name: v for v in await core.agents.everyone()}
    assert {n: views[n].load["sms"] for n in names} == dict(held)
    assert len(await store.agents.claims()) == 1000
    assert (await store.indexes.waiting(["general"]))["general"] == (0, None)


async def test_fifty_concurrent_pulls_by_agents_of_capacity_one_never_over_assign(core: Core, store: Store) -> None:
    names = await team(core, 25, queues=("l2",), capacity=1, skills=("technical",))
    cids = await waiting(store, 30, "l2")

    async def pull(name: str) -> tuple[str, str | None, str]:
        try:
            conv = await core.assignment.pull("l2", name)
        except AtCapacity:
            return name, None, "at_capacity"
        return name, conv.id if conv else None, "ok"

    # Every agent pulls twice at once: 50 claims racing for 30 threads.
    results = await asyncio.gather(*(pull(n) for n in names for _ in range(2)))
    claimed = [(name, cid) for name, cid, _ in results if cid is not None]
    assert len(claimed) == 25  # one each: capacity 1
    assert len({cid for _, cid in claimed}) == 25  # no thread twice
    assert Counter(name for name, _ in claimed) == Counter(names)
    assert sorted(outcome for _, cid, outcome in results if cid is None) == ["at_capacity"] * 25
    by_thread = dict(zip(cids, await assignees(store, cids), strict=True))
    assert sorted(a for a in by_thread.values() if a) == sorted(name for name, _ in claimed)
    assert all(by_thread[cid] == name for name, cid in claimed)
    # Most urgent first: the 25 oldest of equal priority were taken, the 5 newest wait.
    assert all(by_thread[c] is None for c in cids[25:])


async def test_a_pull_needs_membership_skills_and_presence(core: Core, store: Store) -> None:
    from conversation.errors import NotAllowed
    from conversation.service.assignment import NotOnline

    await waiting(store, 1, "l2")
    [member] = await team(core, 1, queues=("l2",), skills=("technical",), online=False)
    [unskilled] = await team(core, 1, queues=("l2",), prefix="unskilled")
    [outsider] = await team(core, 1, queues=("general",), prefix="outsider")
    for name in (unskilled, outsider, "nobody"):
        with pytest.raises(NotAllowed):
            await core.assignment.pull("l2", name)
    with pytest.raises(NotOnline):
        await core.assignment.pull("l2", member)
    await core.agents.set_presence(member, "online", by=member, may_set_others=False)
    assert (await core.assignment.pull("l2", member)) is not None
    assert await core.assignment.pull("l2", member) is None  # nothing else waits


async def test_the_backlog_drains_when_an_agent_comes_online_and_when_they_resolve(core: Core, store: Store) -> None:
    [ana] = await team(core, 1, capacity=1, online=False)
    cids = await waiting(store, 3, "general")
    assert await core.assignment.drain(["general"]) == 0  # nobody online
    await core.agents.set_presence(ana, "online", by=ana, may_set_others=False)
    assert await assignees(store, cids) == [ana, None, None]  # the oldest first, capacity 1
    activity, _ = await store.timeline.activity(cids[0], limit=100)
    [given] = [e for e in activity if e.type.value == "assigned"]
    assert (given.actor.kind, given.actor.name) == ("system", "routing")
    assert given.details == {"agent": ana, "via": "push", "queue": "general"}
    await core.threads.set_status(cids[0], ThreadStatus.RESOLVED, by=agent_actor(ana))
    assert await assignees(store, cids) == [ana, ana, None]  # a resolved thread keeps who handled it
    await core.threads.set_status(cids[1], ThreadStatus.PENDING, by=agent_actor(ana))  # parking frees too
    assert (await assignees(store, cids))[2] == ana
    # Going away keeps what is held.
    await core.agents.set_presence(ana, "away", by=ana, may_set_others=False)
    assert (await assignees(store, cids))[2] == ana


async def test_stickiness_returns_a_customer_to_their_last_agent(core: Core, store: Store) -> None:
    ana, ben = await team(core, 2, capacity=10)
    [cid] = await waiting(store, 1, "general")
    await core.assignment.drain(["general"])
    first = (await store.threads.get_conversation(cid)).assignee
    other = ben if first == ana else ana
    # The other agent now has more room, but the customer goes back to whom they spoke with.
    await waiting(store, 3, "general", series=1)
    await core.assignment.drain(["general"])
    await core.threads.set_status(cid, ThreadStatus.RESOLVED, by=agent_actor(first or ""))
    change = await writes_again(store, "+34690000000", "general")  # the same customer, a new episode
    await core.assignment.opened([change])
    conv = await store.threads.get_conversation(cid)
    assert conv.assignee == first and conv.assignee != other
    activity, _ = await store.timeline.activity(cid, limit=100)
    assert [a.details.get("via") for a in activity if a.type.value == "assigned"][-1] == "sticky"


async def writes_again(store: Store, number: str, queue: str) -> Change:
    """A message from a known customer, appended as the ingest worker appends it: the change,
    which is what the worker hands to assignment."""
    sender = Identity("phone", number)
    cid = await store.identities.resolve(sender)
    msg = InboundMessage(instance="sms", channel="sms", provider_message_id=uuid.uuid4().hex, sender=sender,
                         text="otra vez")
    change = await store.threads.append_inbound(cid, msg, partition=store.ingest.partition_for(sender),
                                                entry_id=f"{int(time.time() * 1000)}-999999", route=Route(queue, 5))
    assert change.state is not None
    await store.indexes.reindex([change.state])
    return change


async def test_a_transfer_to_an_agent_at_capacity_is_refused_and_one_with_room_is_logged(
    core: Core, store: Store
) -> None:
    [ana] = await team(core, 1, capacity=1, prefix="ana")
    [ben] = await team(core, 1, capacity=1, prefix="ben", queues=("manual",))
    a, b = await waiting(store, 2, "general")
    await core.assignment.drain(["general"])
    assert await assignees(store, [a, b]) == [ana, None]
    await core.threads.transfer(b, queue=None, to=ben, note=None, by=agent_actor("sue"))
    with pytest.raises(AtCapacity):  # ben holds one already
        await core.threads.transfer(a, queue=None, to=ben, note="billing question", by=agent_actor(ana))
    assert await assignees(store, [a, b]) == [ana, ben]
    # To a queue: it waits there (manual queues push nothing), and ana's room is free again.
    conv = await core.threads.transfer(a, queue="manual", to=None, note="billing question", by=agent_actor(ana))
    assert (conv.queue, conv.assignee) == ("manual", None)
    assert (await core.agents.view(ana)).load == {"sms": 0}
    activity, _ = await store.timeline.activity(a, limit=100)
    [moved] = [e for e in activity if e.type.value == "transferred"]
    assert moved.actor.name == ana
    assert moved.details == {"from_queue": "general", "queue": "manual", "from_agent": ana, "note": "billing question"}


async def test_the_pull_endpoint_answers(aiohttp_client: Any, redis_client: aioredis.Redis, key_prefix: str) -> None:
    client: Client = await aiohttp_client(make_app(redis_client, key_prefix, routing=ROUTING))
    assert client.app is not None
    core: Core = client.app[CORE]
    admin = await bearer(redis_client, key_prefix, "admin", "root")
    ana = await bearer(redis_client, key_prefix, "agent", "ana")
    resp = await client.post("/v1/agents", json={"name": "ana", "queues": ["l2"], "skills": ["technical"],
                                                 "capacity": {"sms": 1}}, headers=admin)
    assert resp.status == 201
    resp = await client.post("/v1/queues/l2/next", headers=ana)
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "not_online"
    await client.put("/v1/agents/me/presence", json={"status": "online"}, headers=ana)
    resp = await client.post("/v1/queues/l2/next", headers=ana)
    assert resp.status == 204
    cids = await waiting(core.store, 2, "l2")
    resp = await client.post("/v1/queues/l2/next", headers=ana)
    body = await resp.json()
    assert resp.status == 200 and body["id"] == cids[0] and body["assignee"] == "ana"
    resp = await client.get(f"/v1/conversations/{cids[0]}/activity", headers=ana)
    [pulled] = [e for e in (await resp.json())["items"] if e["type"] == "assigned"]
    assert pulled["actor"] == {"kind": "agent", "name": "ana"} and pulled["details"]["via"] == "pull"
    resp = await client.post("/v1/queues/l2/next", headers=ana)
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "at_capacity"
    resp = await client.post("/v1/queues/general/next", headers=ana)
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "forbidden"
    resp = await client.post(f"/v1/conversations/{cids[0]}/transfer", json={"note": "x"}, headers=ana)
    assert resp.status == 400


async def test_a_name_holding_the_claim_separator_is_assigned_reassigned_and_let_go(core: Core, store: Store) -> None:
    """Principals' names are free text: one with "|" (as a fuzzer sent) must not break the
    claims read back when the thread moves on."""
    odd, plain = "a|b||c", "dora"
    [cid] = await waiting(store, 1, "manual")
    await core.threads.assign(cid, odd, by="root", may_reassign=True)
    holder = await store.agents.holder(cid)
    assert holder is not None and (holder.agent, holder.channel) == (odd, "sms")
    assert await store.agents.claim(odd, cid, "sms", 1, int(time.time() * 1000)) == 2  # theirs already
    assert await store.agents.claim(plain, cid, "sms", 1, int(time.time() * 1000)) == -1  # another's
    await core.threads.assign(cid, plain, by="root", may_reassign=True)
    holder = await store.agents.holder(cid)
    assert holder is not None and holder.agent == plain
    seen = await store.agents.presence([odd, plain])
    assert (seen[odd].load, seen[plain].load) == ({"sms": 0}, {"sms": 1})
    await core.threads.set_status(cid, ThreadStatus.RESOLVED, by=agent_actor(plain))
    assert await store.agents.holder(cid) is None
    assert (await store.agents.presence([plain]))[plain].load == {"sms": 0}
