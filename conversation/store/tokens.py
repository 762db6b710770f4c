"""API tokens: issued once, stored only as their SHA-256 digest, listed and revoked by name.

A token is 256 random bits, so a plain (unsalted) SHA-256 is enough to make a leaked Redis dump
useless to an attacker, and it keeps lookup to one HGETALL by digest. The plain token is shown
once to whoever created it and is never stored or logged. A name has at most one live token
(create refuses a second), and names that mean something else in the API (`me`) are reserved.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

import msgspec
import redis.asyncio as aioredis

from conversation.keys import Keys

TOKEN_PREFIX = "ogt_"  # recognisable in secret scanners and support tickets
RESERVED_NAMES = frozenset({"me"})  # `assignee=me`, `{"assignee": "me"}`
ROLES = ("agent", "supervisor", "admin")


class TokenRecord(msgspec.Struct, frozen=True):
    name: str
    role: str
    created_ms: int


class TokenNameTaken(ValueError):
    pass


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValueError("a token needs a name")
    if name.lower() in RESERVED_NAMES:
        raise ValueError(f"{name!r} is a reserved word of the API (assignee=me); choose another name")
    return name


class Tokens:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    async def create(self, name: str, role: str) -> str:
        """Issue a token; the returned string is the only copy of it anywhere."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        name = check_name(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        key = digest(token)
        # The name is claimed first: two concurrent creates of one name cannot both win.
        if not await self.redis.hsetnx(self.keys.token_names(), name, json.dumps([key])):
            raise TokenNameTaken(f"{name!r} already has a token; revoke it first (token revoke {name})")
        await self.redis.hset(self.keys.token(key),
                              mapping={"name": name, "role": role, "created_ms": int(time.time() * 1000)})
        return token

    async def lookup(self, token: str) -> TokenRecord | None:
        if not token.startswith(TOKEN_PREFIX):
            return None  # spares Redis a round trip for obvious garbage
        raw = await self.redis.hgetall(self.keys.token(digest(token)))
        if not raw:
            return None
        fields = {_s(k): _s(v) for k, v in raw.items()}
        try:
            return TokenRecord(fields["name"], fields["role"], int(fields.get("created_ms") or 0))
        except (KeyError, ValueError):
            return None  # a damaged record authenticates nobody

    async def list(self) -> list[TokenRecord]:
        names = await self.redis.hgetall(self.keys.token_names())
        digests = [(d, _s(n)) for n, ds in names.items() for d in json.loads(ds)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for d, _ in digests:
                pipe.hgetall(self.keys.token(d))
            rows = await pipe.execute()
        out = []
        for (_, name), raw in zip(digests, rows, strict=True):
            fields = {_s(k): _s(v) for k, v in raw.items()}
            if fields:
                out.append(TokenRecord(name, fields.get("role", "?"), int(fields.get("created_ms") or 0)))
        return sorted(out, key=lambda r: (r.name, r.created_ms))

    async def revoke_name(self, name: str) -> int:
        """Revoke every token of `name`; returns how many there were."""
        raw = await self.redis.hget(self.keys.token_names(), name)
        if raw is None:
            return 0
        digests = json.loads(raw)
        async with self.redis.pipeline(transaction=True) as pipe:
            for d in digests:
                pipe.delete(self.keys.token(d))
            pipe.hdel(self.keys.token_names(), name)
            results = await pipe.execute()
        return sum(int(r) for r in results[:-1])

    async def revoke(self, token: str) -> bool:
        record = await self.lookup(token)
        if record is None:
            return False
        return await self.revoke_name(record.name) > 0


__all__ = ["RESERVED_NAMES", "ROLES", "TOKEN_PREFIX", "TokenNameTaken", "TokenRecord", "Tokens", "check_name",
           "digest"]
