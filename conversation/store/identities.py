"""Identities: (kind, normalized address) -> customer, decided race-free, and what is known of
senders (cached provider profiles) and of identities that wrote into a thread not theirs.

The identity keys are global (one slot each), not in any customer's slot: giving an identity to
a customer is SET NX on its key, so two simultaneous first messages make one customer, and the
loser reads the winner's id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis

from conversation.ids import new_customer_id
from conversation.keys import Keys
from conversation.model import Identity, Profile, utcnow_ms

_profile_decoder = msgspec.json.Decoder(Profile)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Identities:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    async def resolve(self, identity: Identity) -> str:
        """The customer id of an identity, created race-free on first contact (SET NX decides)."""
        key = self.keys.identity(identity.kind, identity.address)
        existing = await self.redis.get(key)
        if existing:
            return _s(existing)
        candidate = new_customer_id()
        if await self.redis.set(key, candidate, nx=True):
            return candidate
        return _s(await self.redis.get(key))

    async def resolve_many(self, identities: Sequence[Identity]) -> list[str]:
        """Batch form of resolve: one round trip when every identity is known."""
        if not identities:
            return []
        found = await self.redis.mget([self.keys.identity(i.kind, i.address) for i in identities])
        out: list[str] = []
        for ident, value in zip(identities, found, strict=True):
            out.append(_s(value) if value else await self.resolve(ident))
        return out

    async def known(self, identity: Identity) -> str | None:
        value = await self.redis.get(self.keys.identity(identity.kind, identity.address))
        return _s(value) if value else None

    async def claim(self, identity: Identity, cid: str) -> str:
        """Give an unknown identity to a customer; returns its owner (an earlier one wins)."""
        key = self.keys.identity(identity.kind, identity.address)
        if await self.redis.set(key, cid, nx=True):
            return cid
        return _s(await self.redis.get(key))

    async def referenced_customers(self, instance: str, references: Sequence[str]) -> list[str]:
        """Customers whose threads hold our messages with these provider ids, most recent first."""
        if not references:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for ref in reversed(references):  # References lists oldest first; the newest decides
                pipe.hget(self.keys.provider_message(instance, ref), "loc")
            locs = await pipe.execute()
        return [_s(loc).split(" ")[0] for loc in locs if loc]

    async def index_merge_suggestion(self, identity: Identity, cid: str) -> None:
        """The global list of suggestions (the customer's own record is in its slot)."""
        await self.redis.hset(self.keys.merge_suggestions(), identity.key,
                              json.dumps({"customer_id": cid, "at_ms": utcnow_ms()}))

    async def merge_suggestions(self) -> dict[str, str]:
        raw = await self.redis.hgetall(self.keys.merge_suggestions())
        return {_s(k): json.loads(v)["customer_id"] for k, v in raw.items()}

    async def cached_profiles(self, identities: Sequence[Identity]) -> dict[Identity, Profile | None]:
        """Cached provider profiles of these identities; None for one looked up and found unknown
        (or unreachable), absent for one never looked up or whose cache expired."""
        if not identities:
            return {}
        # One GET per key in a pipeline, not MGET: the keys sit in different cluster slots.
        async with self.redis.pipeline(transaction=False) as pipe:
            for ident in identities:
                pipe.get(self.keys.profile(ident.kind, ident.address))
            found = await pipe.execute()
        out: dict[Identity, Profile | None] = {}
        for ident, raw in zip(identities, found, strict=True):
            if raw is None:
                continue
            try:
                out[ident] = _profile_decoder.decode(raw) if raw else None
            except msgspec.DecodeError:
                continue  # written by another version: look it up again
        return out

    async def cache_profile(self, identity: Identity, profile: Profile | None, ttl: int) -> None:
        await self.redis.set(self.keys.profile(identity.kind, identity.address),
                             msgspec.json.encode(profile) if profile is not None else b"", ex=max(1, ttl))


__all__ = ["Identities"]
