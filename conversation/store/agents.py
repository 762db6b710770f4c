"""Agents, their presence, heartbeats and load, in the {ag} slot (conversation.keys).

One slot, so that an agent's profile, presence and load can change together with a claim in one
Lua call (capacity checked and taken atomically), and with the push ranking that follows them
(lua/_ranking.lua): every write here that changes an agent's capacity, load, presence or idle
time ranks them again in the same call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis

from conversation.agents import Agent
from conversation.keys import Keys
from conversation.store.scripts import Scripts

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Agent)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class StoredPresence(msgspec.Struct, frozen=True):
    status: str | None
    last_seen_ms: int
    load: dict[str, int]
    last_given_ms: int = 0  # when they were last given a thread: who has been idle longest


def pack_candidates(names: Iterable[str]) -> str:
    """The agents a push may choose from, as `Agents.pick` takes them: each between newlines
    (agent names hold none), so the ranking's walk tests one in a single string search."""
    return "\n" + "".join(f"{name}\n" for name in names)


class Claim(msgspec.Struct, frozen=True):
    agent: str
    channel: str
    at_ms: int


def _claim(raw: bytes | str) -> Claim:
    """A claim as lua/agent_claim.lua writes it: "<agent>|<channel>|<ms>". Read from the right:
    a principal's name may hold "|", a channel kind and a time never do."""
    agent, channel, at = _s(raw).rsplit("|", 2)
    return Claim(agent, channel, int(at or 0))


class Agents:
    def __init__(self, client: aioredis.Redis, keys: Keys, scripts: Scripts) -> None:
        self.redis = client
        self.keys = keys
        self.scripts = scripts

    async def claim(self, agent: str, cid: str, channel: str, capacity: int, now_ms: int, *,
                    force: bool = False) -> int:
        """Take a thread for an agent if they have room on its channel: 1 taken, 2 theirs
        already, 0 at capacity, -1 another agent's. Check and take are one atomic step."""
        keys = self.keys
        return int(await self.scripts.run("agent_claim", [keys.agent_loads(), keys.agent_claims(),
                                                          keys.agent_idle()],
                                          [agent, cid, channel, capacity, now_ms, "1" if force else "0",
                                           keys.agent_slot()]))

    async def pick(self, cid: str, channel: str, candidates: str, now_ms: int,
                   presence_timeout_ms: int) -> tuple[int, str | None]:
        """Push: among `candidates` (`pack_candidates`), the one online with the most room on the
        channel, then idle longest, claimed in the same atomic step: (1, agent), (0, None) when
        nobody has room, (-1, holder) when the thread is held already. It reads the ranking
        (lua/_ranking.lua) from the top, not the whole team."""
        keys = self.keys
        reply = await self.scripts.run("agent_pick", [keys.agent_loads(), keys.agent_claims(), keys.agent_idle(),
                                                      keys.agent_seen()],
                                       [cid, channel, now_ms, presence_timeout_ms, candidates, keys.agent_slot()])
        return int(reply[0]), (_s(reply[1]) if len(reply) > 1 else None)

    async def ranking(self, channel: str) -> list[str]:
        """The agents push ranks for a channel, best first (who declared no capacity: "*")."""
        return [_s(n) for n in await self.redis.zrange(self.keys.agent_ranking(channel), 0, -1)]

    async def release(self, cid: str, agent: str = "") -> str | None:
        """Let go of a held thread (of `agent`, or of whoever holds it): the agent whose
        capacity freed, or None."""
        who = await self.scripts.run("agent_release", [self.keys.agent_claims(), self.keys.agent_loads()],
                                     [cid, agent, self.keys.agent_slot()])
        return _s(who) if who else None

    async def claims(self) -> dict[str, Claim]:
        """Every held thread (conversation id -> claim)."""
        return {_s(cid): _claim(raw) for cid, raw in (await self.redis.hgetall(self.keys.agent_claims())).items()}

    async def holder(self, cid: str) -> Claim | None:
        raw = await self.redis.hget(self.keys.agent_claims(), cid)
        return _claim(raw) if raw else None

    def _profile_call(self, name: str, what: str, agent: Agent | None = None) -> tuple[list[str], list[Any]]:
        keys = self.keys
        return ([keys.agent(name), keys.agent_names(), keys.agent_presence(), keys.agent_seen()],
                [keys.agent_slot(), name, what, _encoder.encode(agent) if agent is not None else b""])

    async def _profile(self, name: str, what: str, agent: Agent | None = None) -> bool:
        return bool(await self.scripts.run("agent_profile", *self._profile_call(name, what, agent)))

    async def create(self, agent: Agent) -> bool:
        """Store a new agent; False when one of that name exists (nothing changes then)."""
        return await self._profile(agent.name, "create", agent)

    async def save(self, agent: Agent) -> None:
        await self._profile(agent.name, "save", agent)

    async def ensure_ranking(self) -> None:
        """Build the push ranking of every agent, once, for a store written before it existed."""
        keys = self.keys
        if await self.redis.exists(keys.agent_ranked()):
            return
        await self.scripts.batch("agent_profile", [self._profile_call(name, "rank") for name in await self.names()])
        await self.redis.set(keys.agent_ranked(), 1)

    async def get(self, name: str) -> Agent | None:
        raw = await self.redis.get(self.keys.agent(name))
        return _decoder.decode(raw.encode() if isinstance(raw, str) else raw) if raw is not None else None

    async def profile_and_presence(self, name: str) -> tuple[Agent | None, str | None, int]:
        """An agent's profile, presence as set and last heartbeat (ms), in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self.keys.agent(name))
            pipe.hget(self.keys.agent_presence(), name)
            pipe.zscore(self.keys.agent_seen(), name)
            raw, status, seen = await pipe.execute()
        agent = _decoder.decode(raw.encode() if isinstance(raw, str) else raw) if raw is not None else None
        return agent, (_s(status) if status else None), int(seen or 0)

    async def delete(self, name: str) -> bool:
        deleted = await self._profile(name, "delete")
        loads = [f for f in await self.redis.hkeys(self.keys.agent_loads()) if _s(f).startswith(f"{name}|")]
        if loads:
            await self.redis.hdel(self.keys.agent_loads(), *loads)
        return bool(deleted)

    async def names(self) -> list[str]:
        return sorted(_s(n) for n in await self.redis.smembers(self.keys.agent_names()))

    async def any(self) -> bool:
        return bool(await self.redis.scard(self.keys.agent_names()))

    async def many(self, names: Sequence[str]) -> list[Agent | None]:
        if not names:
            return []
        raws = await self.redis.mget([self.keys.agent(n) for n in names])
        return [_decoder.decode(raw.encode() if isinstance(raw, str) else raw) if raw is not None else None
                for raw in raws]

    async def presence(self, names: Sequence[str],
                       channels: Mapping[str, Sequence[str]] | None = None) -> dict[str, StoredPresence]:
        """Presence as set, the last heartbeat, and the load of each agent, in one round trip of
        three commands however many agents. `channels` (agent -> the channels of their capacity)
        reads just those loads; without it, every load of the team is read."""
        if not names:
            return {}
        fields = [f"{n}|{ch}" for n in names for ch in channels.get(n, ())] if channels is not None else None
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.agent_presence(), list(names))
            pipe.zmscore(self.keys.agent_seen(), list(names))
            pipe.zmscore(self.keys.agent_idle(), list(names))
            if fields is None:
                pipe.hgetall(self.keys.agent_loads())
            elif fields:
                pipe.hmget(self.keys.agent_loads(), fields)
            rows = await pipe.execute()
        statuses, seen, given = rows[0], rows[1], rows[2]
        if fields is None:
            loads = {_s(k): int(v) for k, v in rows[3].items()}
        else:
            loads = {f: int(v) for f, v in zip(fields, rows[3] if fields else [], strict=True) if v is not None}
        per_agent: dict[str, dict[str, int]] = {n: {} for n in names}
        for field, count in loads.items():
            agent, _, channel = field.rpartition("|")
            if agent in per_agent:
                per_agent[agent][channel] = count
        return {name: StoredPresence(status=_s(statuses[i]) if statuses[i] else None, last_seen_ms=int(seen[i] or 0),
                                     load=per_agent[name], last_given_ms=int(given[i] or 0))
                for i, name in enumerate(names)}

    async def _presence(self, name: str, status: str, now_ms: int) -> str | None:
        keys = self.keys
        reply = await self.scripts.run("agent_presence", [keys.agent_presence(), keys.agent_seen()],
                                       [keys.agent_slot(), name, status, now_ms])
        return _s(reply) if reply else None

    async def set_presence(self, name: str, status: str, now_ms: int) -> None:
        await self._presence(name, status, now_ms)

    async def heartbeat(self, name: str, now_ms: int) -> str | None:
        """Keep an agent's presence alive; an agent away only by silence comes back online.
        Returns the presence as set (None: never set)."""
        return await self._presence(name, "", now_ms)


__all__ = ["Agents", "Claim", "StoredPresence", "pack_candidates"]
