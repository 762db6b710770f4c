"""The one lease primitive: a key one owner holds for a while, renewed while it works.

Ingest partitions, the dispatcher's per-message send locks and the pollers all use it. Taking is
SET NX PX; renewing and releasing are one Lua call each that acts only while the caller still
holds the lease (lua/lease.lua), so a holder whose lease expired and went to someone else can
neither extend nor delete the new owner's. Owners are random tokens per process and purpose.

`Membership` is the roster of live workers that ingest uses to compute fair shares: each member
is scored with the time it stops counting, so a killed worker drops out one lease period after
its last heartbeat, not several.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis.asyncio as aioredis

from conversation.keys import Keys
from conversation.store.scripts import Scripts


class Lease:
    def __init__(self, client: aioredis.Redis, scripts: Scripts, key: str, owner: str, ttl_ms: int) -> None:
        if ttl_ms <= 0:
            raise ValueError("a lease needs a positive TTL")
        self.redis = client
        self.scripts = scripts
        self.key = key
        self.owner = owner
        self.ttl_ms = ttl_ms

    def __repr__(self) -> str:
        return f"Lease({self.key!r}, owner={self.owner!r})"

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it. True also when this owner holds it already."""
        if await self.redis.set(self.key, self.owner, nx=True, px=self.ttl_ms):
            return True
        return await self.renew()

    async def renew(self) -> bool:
        return bool(await self.scripts.run("lease", [self.key], [self.owner, "renew", self.ttl_ms]))

    async def release(self) -> bool:
        """Give the lease back at once; does nothing (False) unless this owner still holds it."""
        return bool(await self.scripts.run("lease", [self.key], [self.owner, "release", 0]))

    async def expires_in_ms(self) -> int | None:
        """Milliseconds until whoever holds it loses it without renewing; None when it is free."""
        ttl = int(await self.redis.pttl(self.key))
        return None if ttl < 0 else ttl


class Leases:
    """Leases by purpose, named in one place (conversation.keys)."""

    def __init__(self, client: aioredis.Redis, scripts: Scripts, keys: Keys) -> None:
        self.redis = client
        self.scripts = scripts
        self.keys = keys

    def partition(self, partition: int, owner: str, ttl_ms: int) -> Lease:
        return Lease(self.redis, self.scripts, self.keys.lease(partition), owner, ttl_ms)

    def poller(self, instance: str, owner: str, ttl_ms: int) -> Lease:
        return Lease(self.redis, self.scripts, self.keys.poll_lease(instance), owner, ttl_ms)

    def sending(self, customer_id: str, seq: int, owner: str, ttl_ms: int) -> Lease:
        return Lease(self.redis, self.scripts, self.keys.send_lock(customer_id, seq), owner, ttl_ms)

    async def renew_all(self, leases: Sequence[Lease]) -> list[bool]:
        """Renew many leases in one round trip; each result says whether it is still held."""
        if not leases:
            return []
        results = await self.scripts.batch("lease", [([lease.key], [lease.owner, "renew", lease.ttl_ms])
                                                     for lease in leases])
        return [bool(r) for r in results]


    async def expiry_all(self, leases: Sequence[Lease]) -> list[int | None]:
        """Lease.expires_in_ms of many leases in one round trip."""
        if not leases:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for lease in leases:
                pipe.pttl(lease.key)
            ttls = await pipe.execute()
        return [None if int(t) < 0 else int(t) for t in ttls]


class Membership:
    """Who is alive in a group of workers, for fair shares."""

    def __init__(self, client: aioredis.Redis, key: str) -> None:
        self.redis = client
        self.key = key

    async def heartbeat(self, member: str, ttl_ms: int) -> int:
        """Count `member` alive for `ttl_ms` more; returns how many members are alive now."""
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.key, {member: now_ms + ttl_ms})
            pipe.zremrangebyscore(self.key, "-inf", now_ms)
            pipe.zcard(self.key)
            _, _, live = await pipe.execute()
        return max(1, int(live))

    async def leave(self, member: str) -> None:
        await self.redis.zrem(self.key, member)


__all__ = ["Lease", "Leases", "Membership"]
