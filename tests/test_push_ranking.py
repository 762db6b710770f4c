"""Push's choice of agent against real Redis: the one online with the most room on the thread's
channel, then idle longest, then by name, read from a ranking that every change of profile,
presence, heartbeat, claim and release keeps (lua/_ranking.lua).

The property test drives random sequences of those changes and checks every push decision
against the rule computed from scratch, as the decision was made before the ranking existed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

import hypothesis.strategies as st
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings

from conversation.agents import Agent
from conversation.service.assignment import capacity_for
from conversation.store import Store
from conversation.store.agents import pack_candidates

AGENTS = ("ana", "bo", "cy", "di")
CHANNELS = ("sms", "email")
TIMEOUT_MS = 100
ROOM_STEPS = 1024  # room beyond this ranks as equal (lua/_ranking.lua)
IDLE_EPOCH = 1_700_000_000_000


@dataclass
class Mirror:
    """What the store holds, as plain Python: the rule is computed from it."""

    now: int
    profiles: dict[str, Agent] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    loads: dict[tuple[str, str], int] = field(default_factory=dict)
    idle: dict[str, int] = field(default_factory=dict)
    claims: dict[str, tuple[str, str]] = field(default_factory=dict)

    def room(self, name: str, channel: str) -> int:
        return capacity_for(self.profiles[name], channel) - self.loads.get((name, channel), 0)

    def expected_pick(self, channel: str, eligible: set[str]) -> str | None:
        fit = [n for n in sorted(eligible) if n in self.profiles and self.status.get(n) == "online"
               and self.now - self.seen.get(n, -10**15) <= TIMEOUT_MS and self.room(n, channel) > 0]
        if not fit:
            return None
        return min(fit, key=lambda n: (-min(self.room(n, channel), ROOM_STEPS),
                                       max(0, self.idle.get(n, 0) - IDLE_EPOCH), n))

    def took(self, name: str, cid: str, channel: str) -> None:
        self.loads[(name, channel)] = self.loads.get((name, channel), 0) + 1
        self.claims[cid] = (name, channel)
        self.idle[name] = self.now


capacities = st.one_of(st.just({}), st.dictionaries(st.sampled_from(CHANNELS), st.integers(0, 3)))
agents = st.sampled_from(AGENTS)
operations = st.lists(st.one_of(
    st.tuples(st.just("save"), agents, capacities),
    st.tuples(st.just("delete"), agents),
    st.tuples(st.just("presence"), agents, st.sampled_from(["online", "online", "away", "offline"])),
    st.tuples(st.just("beat"), agents),
    st.tuples(st.just("wait"), st.one_of(st.integers(0, TIMEOUT_MS // 4), st.integers(0, 2 * TIMEOUT_MS))),
    st.tuples(st.just("claim"), agents, st.sampled_from(CHANNELS), st.booleans()),
    st.tuples(st.just("release"), st.integers(0, 50)),
    st.tuples(st.just("pick"), st.sampled_from(CHANNELS), st.sets(agents, min_size=1)),
    st.tuples(st.just("pick"), st.sampled_from(CHANNELS), st.just(set(AGENTS))),
    st.tuples(st.just("pick"), st.just("sms"), st.just(set(AGENTS))),
), min_size=10, max_size=60)
# Every example starts from a team online with capacities drawn, so the changes that follow act
# on agents that can be chosen.
teams = st.lists(capacities, min_size=len(AGENTS), max_size=len(AGENTS))


async def _replay(redis_url: str, team: list[dict[str, int]], ops: list[tuple]) -> None:  # type: ignore[type-arg]
    ops = [op for name, capacity in zip(AGENTS, team, strict=True)
           for op in (("save", name, capacity), ("presence", name, "online"))] + ops
    client = aioredis.Redis.from_url(redis_url)
    prefix = f"t{uuid.uuid4().hex[:12]}"
    store = Store(client, prefix=prefix)
    agents_ = store.agents
    mirror = Mirror(now=int(time.time() * 1000))
    try:
        for n, op in enumerate(ops):
            mirror.now += 1
            kind, *args = op
            if kind == "save":
                name, capacity = args
                agent = Agent(name=name, capacity=capacity)
                await agents_.save(agent)
                mirror.profiles[name] = agent
            elif kind == "delete":
                await agents_.delete(args[0])
                mirror.profiles.pop(args[0], None)
                mirror.status.pop(args[0], None)
                mirror.seen.pop(args[0], None)
                mirror.loads = {k: v for k, v in mirror.loads.items() if k[0] != args[0]}
            elif kind == "presence":
                await agents_.set_presence(args[0], args[1], mirror.now)
                mirror.status[args[0]], mirror.seen[args[0]] = args[1], mirror.now
            elif kind == "beat":
                await agents_.heartbeat(args[0], mirror.now)
                mirror.seen[args[0]] = mirror.now
            elif kind == "wait":
                mirror.now += args[0]
            elif kind == "claim":
                name, channel, force = args
                capacity = capacity_for(mirror.profiles[name], channel) if name in mirror.profiles else 0
                cid = f"c{n}"
                outcome = await agents_.claim(name, cid, channel, capacity, mirror.now, force=force)
                assert outcome == (1 if force or mirror.loads.get((name, channel), 0) < capacity else 0)
                if outcome == 1:
                    mirror.took(name, cid, channel)
            elif kind == "release":
                if mirror.claims:
                    cid = sorted(mirror.claims)[args[0] % len(mirror.claims)]
                    name, channel = mirror.claims.pop(cid)
                    assert await agents_.release(cid) == name
                    if mirror.loads.get((name, channel), 0) > 0:
                        mirror.loads[(name, channel)] -= 1
            else:
                channel, eligible = args
                cid = f"c{n}"
                expected = mirror.expected_pick(channel, eligible)
                outcome, chosen = await agents_.pick(cid, channel, pack_candidates(sorted(eligible)), mirror.now,
                                                     TIMEOUT_MS)
                assert (outcome, chosen) == ((1, expected) if expected else (0, None)), (op, mirror)
                if expected:
                    mirror.took(expected, cid, channel)
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(teams, operations)
def test_every_push_decision_follows_the_rule_whatever_came_before(
        redis_url: str, team: list[dict[str, int]], ops: list[tuple]) -> None:  # type: ignore[type-arg]
    asyncio.run(_replay(redis_url, team, ops))


@pytest.fixture
def store(redis_client: aioredis.Redis, key_prefix: str) -> Store:
    return Store(redis_client, prefix=key_prefix)


async def _online(store: Store, *agents: Agent, at: int) -> None:
    for agent in agents:
        await store.agents.create(agent)
        await store.agents.set_presence(agent.name, "online", at)


async def test_the_most_room_wins_then_who_has_waited_longest(store: Store) -> None:
    now = int(time.time() * 1000)
    await _online(store, Agent(name="ana", capacity={"sms": 3}), Agent(name="bo", capacity={"sms": 2}),
                  Agent(name="cy", capacity={"email": 5}), at=now)
    everyone = pack_candidates(["ana", "bo", "cy"])
    assert await store.agents.ranking("sms") == ["ana", "bo"]  # cy takes no SMS
    assert await store.agents.pick("c1", "sms", everyone, now, 60_000) == (1, "ana")  # 3 free against 2
    # Both have 2 free now: bo has waited longer (never given one).
    assert await store.agents.pick("c2", "sms", everyone, now + 1, 60_000) == (1, "bo")
    assert await store.agents.pick("c3", "sms", everyone, now + 2, 60_000) == (1, "ana")
    assert await store.agents.pick("c4", "sms", everyone, now + 3, 60_000) == (1, "bo")
    assert await store.agents.pick("c5", "sms", everyone, now + 4, 60_000) == (1, "ana")
    assert await store.agents.ranking("sms") == []  # both full: ranked nowhere
    assert await store.agents.pick("c6", "sms", everyone, now + 5, 60_000) == (0, None)
    await store.agents.release("c2")  # bo resolves one: room again, ranked again
    assert await store.agents.ranking("sms") == ["bo"]
    assert await store.agents.pick("c7", "sms", everyone, now + 6, 60_000) == (1, "bo")


async def test_an_agent_silent_past_the_timeout_is_passed_over_until_their_next_heartbeat(store: Store) -> None:
    now = int(time.time() * 1000)
    await _online(store, Agent(name="ana", capacity={"sms": 5}), at=now)
    await _online(store, Agent(name="bo", capacity={"sms": 1}), at=now + 50)
    both = pack_candidates(["ana", "bo"])
    # ana has the most room, but her last heartbeat is older than the timeout: bo is chosen.
    assert await store.agents.pick("c1", "sms", both, now + 150, 100) == (1, "bo")
    assert await store.agents.ranking("sms") == []  # ana dropped as silent, bo full
    assert await store.agents.pick("c2", "sms", both, now + 151, 100) == (0, None)
    assert await store.agents.heartbeat("ana", now + 152) == "online"
    assert await store.agents.pick("c3", "sms", both, now + 153, 100) == (1, "ana")


async def test_going_away_an_edit_of_capacity_and_removal_move_the_ranking(store: Store) -> None:
    now = int(time.time() * 1000)
    await _online(store, Agent(name="ana", capacity={"sms": 1}), Agent(name="bo"), at=now)
    assert await store.agents.ranking("sms") == ["ana"]
    assert await store.agents.ranking("*") == ["bo"]  # no capacity declared: any channel, no limit
    await store.agents.set_presence("ana", "away", now)
    assert await store.agents.ranking("sms") == []
    await store.agents.set_presence("ana", "online", now)
    await store.agents.save(Agent(name="ana", capacity={"email": 2}))
    assert (await store.agents.ranking("sms"), await store.agents.ranking("email")) == ([], ["ana"])
    await store.agents.delete("bo")
    assert await store.agents.ranking("*") == []
    assert await store.agents.pick("c1", "sms", pack_candidates(["ana", "bo"]), now, 60_000) == (0, None)


async def test_a_store_written_before_the_ranking_has_it_built_on_first_use(store: Store) -> None:
    now = int(time.time() * 1000)
    await _online(store, Agent(name="ana", capacity={"sms": 2}), Agent(name="bo", capacity={"sms": 2}), at=now)
    await store.agents.claim("ana", "c0", "sms", 2, now)
    # As an older version left it: profiles, presence and loads, no ranking.
    leftovers = [k async for k in store.redis.scan_iter(match=f"{store.keys.agent_slot()}:*")
                 if b":rank:" in k or b":caps:" in k or k.endswith(b":ranked")]
    await store.redis.delete(*leftovers)
    assert await store.agents.ranking("sms") == []
    await store.agents.ensure_ranking()
    assert await store.agents.ranking("sms") == ["bo", "ana"]  # bo has more room
    assert await store.agents.pick("c1", "sms", pack_candidates(["ana", "bo"]), now, 60_000) == (1, "bo")

