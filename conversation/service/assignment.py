"""Threads reach agents: pulled by an agent (`next`), pushed to the best agent for it, returned to
a customer's last agent (stickiness), and let go when an agent resolves, parks or passes one on.

Capacity is held in the {ag} slot: an agent's load per channel and a claim per held thread. A
claim checks the capacity and takes it in one Lua call (lua/agent_claim.lua), so capacity holds
however many processes claim at once, and a thread is claimed by one agent only. The thread is
then given to the agent in its own slot (lua/thread_claim.lua, logged `assigned` with how); a
thread that stopped waiting meanwhile gives its claim back. A crash between the two steps
leaves a claim with no assignee, which `repair` lets go (it runs whenever an agent finds itself
at capacity), so capacity is never lost for long.

Eligible for a queue's thread: a member of the queue, with the queue's skills and the
customer's language (when both are known). Push picks, among eligible agents online, the one
with the most free capacity for the thread's channel, then the one idle longest: the choice and
the claim are one Lua call (lua/agent_pick.lua), so it sees the load as it is, in every process.
It reads a ranking of the agents with room, best first, that every change of load, presence or
capacity keeps in the same call (lua/_ranking.lua): a decision costs the same with 5 agents
or 500.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Sequence

import structlog

from conversation.activity import Actor
from conversation.activity import agent as agent_actor
from conversation.agents import Agent, effective_presence
from conversation.errors import NotAllowed, NotFound
from conversation.model import Conversation
from conversation.routing import RoutingSettings
from conversation.service.publisher import Publisher
from conversation.store import Change, Store
from conversation.store.agents import pack_candidates

log = structlog.get_logger(__name__)

UNLIMITED = 1_000_000  # an agent who declares no capacity at all takes any number of threads
FIRST = 4  # candidates read first: the most urgent is usually taken
SCAN = 20  # then more at a time, when those could not be
MAX_SCAN = 200  # how deep one claim looks past threads this agent cannot take
REPAIR_AFTER_MS = 30_000  # a claim this old whose thread is not the agent's is let go
ROUTING = Actor("system", "routing")
PROFILE_TTL = 1.0  # seconds a process reuses the team's profiles for push decisions


class AtCapacity(Exception):
    """The agent has no room for any thread waiting in the queue."""


class NotOnline(Exception):
    """Pulling needs the caller to be online."""


def capacity_for(agent: Agent, channel: str) -> int:
    """Threads of a channel the agent takes at once: none declared at all is unlimited; a
    channel left out of a declared capacity is one they do not take."""
    if not agent.capacity:
        return UNLIMITED
    return agent.capacity.get(channel, 0)


def _base(language: str) -> str:
    return language.replace("_", "-").split("-")[0].lower()


def speaks(agent: Agent, conv: Conversation) -> bool:
    locale = conv.customer.locale
    if not locale or not agent.languages:
        return True
    return _base(locale) in {_base(lang) for lang in agent.languages}


class Assignment:
    def __init__(self, store: Store, publisher: Publisher, routing: RoutingSettings) -> None:
        self.store = store
        self.publisher = publisher
        self.routing = routing
        self._team: tuple[float, list[Agent]] = (0.0, [])
        self._eligible: dict[tuple[str, str, str], str] = {}  # (queue, channel, language) -> packed
        self._members: dict[str, list[Agent]] = {}  # queue -> its eligible members

    def member(self, agent: Agent, queue: str) -> bool:
        return queue in agent.queues and set(self.routing.queue(queue).skills) <= set(agent.skills)

    # --- pull ------------------------------------------------------------------------------------

    async def pull(self, queue: str, name: str) -> Conversation | None:
        """The most urgent thread of `queue` the agent may take, claimed for them; None when there
        is none. NotAllowed (not a member, or lacking the queue's skills), NotOnline, AtCapacity."""
        # Who is asking and what waits are read at once: one round trip's wait, not two.
        (agent, status, seen_ms), first = await asyncio.gather(
            self.store.agents.profile_and_presence(name), self.store.indexes.next_waiting(queue, FIRST))
        if agent is None:
            raise NotAllowed(f"{name!r} is no agent: only agents pull threads")
        if not self.member(agent, queue):
            raise NotAllowed(f"{name} is not a member of queue {queue!r}"
                             + (" with its skills" if queue in agent.queues else ""))
        if effective_presence(status, seen_ms, now_ms(), self.routing.presence_timeout) != "online":
            raise NotOnline(f"{name} is not online: set presence online to pull threads")
        full = False
        async for conv in self._waiting(queue, first):
            if not speaks(agent, conv):
                continue
            outcome, change = await self._try(agent, conv, queue, via="pull", actor=agent_actor(name))
            if change is not None and change.state is not None:
                return change.state.conversation()
            full = full or outcome == "full"
        if full:
            if await self.repair(name):
                return await self.pull(queue, name)
            raise AtCapacity(f"{name} holds as many threads as their capacity allows")
        return None

    # --- push ------------------------------------------------------------------------------------

    async def drain(self, queues: Iterable[str]) -> int:
        """Give waiting threads of the push queues among `queues` to eligible agents online, while
        any has room. Returns how many were given."""
        given = 0
        for queue in dict.fromkeys(queues):
            if self.routing.queue(queue).assignment == "push":
                given += await self._drain(queue)
        return given

    async def push_next(self, queue: str) -> bool:
        """One push: the queue's most urgent waiting thread that an agent online can take, to
        the best of them. False when nothing could be given."""
        return await self._push(queue, 1) == 1

    async def decide(self, queue: str) -> tuple[Conversation, str] | None:
        """The push decision alone: the most urgent waiting thread someone can take, and who,
        claimed for them (the choice and the claim are one Lua call). `give` completes it."""
        async for decision in self._decisions(queue):
            return decision
        return None

    async def give(self, conv: Conversation, agent: str, queue: str) -> bool:
        """Give a thread decided for an agent (its activity, indexes, events); False, with the
        claim given back, when it stopped waiting meanwhile."""
        try:
            change = await self.store.handling.claim(conv.id, agent, ROUTING, via="push", queue=queue)
        except NotFound:
            change = None
        if change is None:
            await self.store.agents.release(conv.id, agent)
            return False
        await self.publisher.changed([change])
        return True

    async def _drain(self, queue: str) -> int:
        return await self._push(queue, None)

    async def _push(self, queue: str, most: int | None) -> int:
        """Give up to `most` (None: every) waiting thread to the best agent for it."""
        given = 0
        async for conv, agent in self._decisions(queue):
            if await self.give(conv, agent, queue):
                given += 1
                if most is not None and given >= most:
                    break
        return given

    async def _decisions(self, queue: str) -> AsyncIterator[tuple[Conversation, str]]:
        """Waiting threads with the agent each was claimed for, most urgent first. What nobody
        could take on a channel stops the threads that need the same agents on it from being
        tried again in this pass."""
        profiles = await self._profiles()
        members = self._members.get(queue)
        if members is None:  # judged once per queue while the profiles hold
            members = self._members[queue] = [a for a in profiles if self.member(a, queue)]
        if not members:
            return
        nobody: set[tuple[str, str]] = set()
        async for conv in self._waiting(queue):
            channel = conv.channel or ""
            key = (channel, _base(conv.customer.locale or ""))
            if key in nobody:
                continue
            candidates = self._eligible.get((queue, *key))
            if candidates is None:  # packed once per queue, channel and language while profiles hold
                candidates = pack_candidates(a.name for a in members
                                             if speaks(a, conv) and capacity_for(a, channel) > 0)
                self._eligible[(queue, *key)] = candidates
            outcome, agent = await self.store.agents.pick(conv.id, channel, candidates, now_ms(),
                                                          self.routing.presence_timeout * 1000)
            if outcome == 0:
                nobody.add(key)
            elif outcome == 1 and agent is not None:
                yield conv, agent
            # -1: another process holds it, and is giving it

    async def _waiting(self, queue: str, first: list[Conversation] | None = None) -> AsyncIterator[Conversation]:
        """The queue's waiting threads, most urgent first, each once (`first`: the top FIRST,
        already read).

        Read from the top again each time rather than by offset: threads leave the set as they
        are given (here and in other processes), and an offset would skip over the ones behind
        them."""
        tried: set[str] = set()
        window = FIRST
        while window <= MAX_SCAN:  # at most MAX_SCAN threads nobody could take are looked past
            if first is not None:
                candidates, first = first, None
            else:
                candidates = await self.store.indexes.next_waiting(queue, window)
            fresh = [c for c in candidates if c.id not in tried]
            if not fresh:
                if len(candidates) < window:
                    return
                window = max(SCAN, window * 2)  # everything on top was tried: look further down
                continue
            for conv in fresh:
                tried.add(conv.id)
                yield conv

    async def _profiles(self) -> list[Agent]:
        """Every agent's profile, read at most once a second per process: profiles change
        rarely, and a push decision reads the whole team. Presence and load are always read."""
        expires, cached = self._team
        if time.monotonic() < expires:
            return cached
        await self.store.agents.ensure_ranking()
        names = await self.store.agents.names()
        agents = [a for a in await self.store.agents.many(names) if a is not None]
        self._team = (time.monotonic() + PROFILE_TTL, agents)
        self._eligible = {}
        self._members = {}
        return agents

    def forget_profiles(self) -> None:
        """An agent was created, changed or removed here: read the team afresh."""
        self._team = (0.0, [])
        self._eligible = {}
        self._members = {}

    # --- episodes opening, capacity freeing ---------------------------------------------------------

    async def opened(self, changes: Sequence[Change]) -> None:
        """After threads were appended: count what a rule gave an account manager, send
        returning customers of sticky queues back to their last agent, and drain push queues."""
        queues: list[str] = []
        for change in changes:
            st = change.state
            if st is None or not st.applied:
                continue
            types = {a.type.value for a in change.activities}
            if "assigned" in types and st.assignee and st.channel:
                await self.store.agents.claim(st.assignee, st.customer_id, st.channel, UNLIMITED, now_ms(),
                                              force=True)
            if "routed" in types and not st.assignee and st.status == "open":
                if self.routing.queue(st.queue).sticky and await self._sticky(st.customer_id, st.queue):
                    continue
                queues.append(st.queue)
        if queues:
            await self.drain(queues)

    async def _sticky(self, cid: str, queue: str) -> bool:
        last = await self.store.handling.last_agent(cid)
        if last is None:
            return False
        agent = await self.store.agents.get(last)
        if agent is None or not self.member(agent, queue):
            return False
        presence = (await self.store.agents.presence([last]))[last]
        if effective_presence(presence.status, presence.last_seen_ms, now_ms(),
                              self.routing.presence_timeout) != "online":
            return False
        conv = await self.store.threads.get_conversation(cid)
        return (await self._try(agent, conv, queue, via="sticky", actor=ROUTING))[0] == "given"

    async def let_go(self, cid: str) -> str | None:
        """The thread no longer counts against whoever held it (resolved, parked, passed on,
        unassigned); their push queues drain into the room. Returns that agent."""
        freed = await self.store.agents.release(cid)
        if freed is not None:
            agent = await self.store.agents.get(freed)
            if agent is not None:
                await self.drain(agent.queues)
        return freed

    async def held_by(self, cid: str, name: str, channel: str) -> None:
        """Count a thread an agent was given by hand (a supervisor, or the agent themselves)."""
        holder = await self.store.agents.holder(cid)
        if holder is not None and holder.agent != name:
            await self.let_go(cid)
        await self.store.agents.claim(name, cid, channel, UNLIMITED, now_ms(), force=True)

    async def agent_online(self, name: str) -> None:
        agent = await self.store.agents.get(name)
        if agent is not None:
            await self.drain(agent.queues)

    async def repair(self, name: str | None = None) -> int:
        """Let go of claims whose thread is not the claiming agent's (a crash between the claim
        and the thread change, or a change made elsewhere), older than REPAIR_AFTER_MS."""
        claims = await self.store.agents.claims()
        stale = [(cid, c) for cid, c in claims.items()
                 if (name is None or c.agent == name) and now_ms() - c.at_ms > REPAIR_AFTER_MS]
        if not stale:
            return 0
        convs = await self.store.threads.get_conversations([cid for cid, _ in stale])
        freed = 0
        for (cid, claim), conv in zip(stale, convs, strict=True):
            mine = conv is not None and conv.assignee == claim.agent and conv.status == "open"
            if not mine and await self.store.agents.release(cid, claim.agent):
                freed += 1
        if freed:
            log.info("assignment.repaired", claims=freed)
        return freed

    async def _try(self, agent: Agent, conv: Conversation, queue: str, *, via: str,
                   actor: Actor) -> tuple[str, Change | None]:
        """Claim then give one thread: ("given", the change), or "full" (no room on its channel),
        "taken" (another agent's), "gone" (it stopped waiting)."""
        channel = conv.channel or ""
        outcome = await self.store.agents.claim(agent.name, conv.id, channel, capacity_for(agent, channel), now_ms())
        if outcome == 0:
            return "full", None
        if outcome != 1:
            # Another agent's, or this agent's own claim in flight (a second pull at the same
            # time): the claim that made it gives the thread, or gives it back.
            return "taken", None
        try:
            change = await self.store.handling.claim(conv.id, agent.name, actor, via=via, queue=queue)
        except NotFound:
            change = None
        if change is None:  # it stopped waiting meanwhile: give the claim back
            await self.store.agents.release(conv.id, agent.name)
            return "gone", None
        await self.publisher.changed([change])
        return "given", change


def now_ms() -> int:
    return int(time.time() * 1000)


__all__ = ["Assignment", "AtCapacity", "NotOnline", "capacity_for", "now_ms"]
