"""Bearer tokens for the inbox API: issued once, stored only as their SHA-256 digest.

A token is 256 random bits, so a plain (unsalted) SHA-256 is enough to make a leaked Redis dump
useless to an attacker, and it keeps lookup to one HGETALL by digest. The plain token is shown
once to whoever created it and is never stored or logged.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import time
from collections.abc import Callable
from functools import wraps

import msgspec
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from conversation.keys import Keys

TOKEN_PREFIX = "ogt_"  # recognisable in secret scanners and support tickets


class Role(enum.StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Role.AGENT: 0, Role.SUPERVISOR: 1, Role.ADMIN: 2}


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: the token's name (also the agent's assignee name) and role."""

    name: str
    role: Role

    def can(self, role: Role | str) -> bool:
        """Whether this principal holds `role` or a higher one."""
        return self.role.rank >= Role(role).rank


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.redis = redis
        self.keys = Keys(prefix)

    async def create(self, name: str, role: Role | str) -> str:
        """Issue a token; the returned string is the only copy of it anywhere."""
        role = Role(role)  # ValueError for an unknown role, before anything is stored
        name = name.strip()
        if not name:
            raise ValueError("a token needs a name")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        await self.redis.hset(
            self.keys.token(digest(token)),
            mapping={"name": name, "role": role.value, "created_ms": int(time.time() * 1000)},
        )
        return token

    async def lookup(self, token: str) -> Principal | None:
        if not token.startswith(TOKEN_PREFIX):
            return None  # spares Redis a round trip for obvious garbage
        raw = await self.redis.hgetall(self.keys.token(digest(token)))
        if not raw:
            return None
        fields = {_text(k): _text(v) for k, v in raw.items()}
        try:
            return Principal(name=fields["name"], role=Role(fields["role"]))
        except (KeyError, ValueError):
            return None  # a damaged record authenticates nobody

    async def revoke(self, token: str) -> bool:
        return bool(await self.redis.delete(self.keys.token(digest(token))))


# --- aiohttp glue -------------------------------------------------------------------------------
# The glue raises; the API's error middleware turns these into the JSON error shape, so this
# module knows nothing of response bodies.

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")


class Unauthorized(Exception):
    pass


class Forbidden(Exception):
    pass


def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def auth_middleware(get_store: Callable[[web.Request], TokenStore]) -> Middleware:
    """Authenticate every request of the app it is installed on (the /v1 sub-application).

    `get_store` finds the TokenStore at request time, because Redis is connected at startup,
    after the middleware is installed.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        token = bearer_token(request)
        principal = await get_store(request).lookup(token) if token else None
        if principal is None:
            raise Unauthorized("a valid bearer token is required (Authorization: Bearer <token>)")
        request[PRINCIPAL] = principal
        return await handler(request)

    return middleware


def requires(role: Role) -> Callable[[Handler], Handler]:
    """Let only principals holding `role` (or higher) reach the handler."""

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            if not request[PRINCIPAL].can(role):
                raise Forbidden(f"this needs the {role.value} role")
            return await handler(request)

        return checked

    return decorate
