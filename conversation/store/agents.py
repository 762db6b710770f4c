"""Agents, their presence, heartbeats and load, in the {ag} slot (conversation.keys).

One slot, so that an agent's profile, presence and load can change together with a claim in one
Lua call (capacity checked and taken atomically).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis

from conversation.agents import Agent
from conversation.keys import Keys

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Agent)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class StoredPresence(msgspec.Struct, frozen=True):
    status: str | None
    last_seen_ms: int
    load: dict[str, int]


class Agents:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    async def create(self, agent: Agent) -> bool:
        """Store a new agent; False when one of that name exists (nothing changes then)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.agent(agent.name), _encoder.encode(agent), nx=True)
            pipe.sadd(self.keys.agent_names(), agent.name)
            created, _ = await pipe.execute()
        return bool(created)

    async def save(self, agent: Agent) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.agent(agent.name), _encoder.encode(agent))
            pipe.sadd(self.keys.agent_names(), agent.name)
            await pipe.execute()

    async def get(self, name: str) -> Agent | None:
        raw = await self.redis.get(self.keys.agent(name))
        return _decoder.decode(raw.encode() if isinstance(raw, str) else raw) if raw is not None else None

    async def delete(self, name: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.agent(name))
            pipe.srem(self.keys.agent_names(), name)
            pipe.hdel(self.keys.agent_presence(), name)
            pipe.zrem(self.keys.agent_seen(), name)
            pipe.delete(self.keys.agent_load(name))
            deleted, *_ = await pipe.execute()
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

    async def presence(self, names: Sequence[str]) -> dict[str, StoredPresence]:
        """Presence as set, the last heartbeat, and the load of each agent, in one round trip."""
        if not names:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.agent_presence(), list(names))
            for n in names:
                pipe.zscore(self.keys.agent_seen(), n)
                pipe.hgetall(self.keys.agent_load(n))
            rows = await pipe.execute()
        statuses = rows[0]
        out: dict[str, StoredPresence] = {}
        for i, name in enumerate(names):
            seen, load = rows[1 + 2 * i], rows[2 + 2 * i]
            out[name] = StoredPresence(status=_s(statuses[i]) if statuses[i] else None,
                                       last_seen_ms=int(seen or 0),
                                       load={_s(k): int(v) for k, v in (load or {}).items()})
        return out

    async def set_presence(self, name: str, status: str, now_ms: int) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.agent_presence(), name, status)
            pipe.zadd(self.keys.agent_seen(), {name: now_ms})
            await pipe.execute()

    async def heartbeat(self, name: str, now_ms: int) -> str | None:
        """Keep an agent's presence alive; an agent away only by silence comes back online.
        Returns the presence as set (None: never set)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.keys.agent_seen(), {name: now_ms})
            pipe.hget(self.keys.agent_presence(), name)
            _, status = await pipe.execute()
        return _s(status) if status else None


__all__ = ["Agents", "StoredPresence"]
