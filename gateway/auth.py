"""Bearer tokens on the inbox API: who is calling, and what their role lets them do.

Tokens are issued, stored (as SHA-256 digests only) and revoked by conversation.store.tokens;
this module turns a request's bearer token into a `Principal` and checks roles.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from functools import wraps

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from conversation.store.tokens import Tokens


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


async def principal_of(tokens: Tokens, token: str) -> Principal | None:
    record = await tokens.lookup(token)
    if record is None:
        return None
    try:
        return Principal(name=record.name, role=Role(record.role))
    except ValueError:
        return None  # a damaged record authenticates nobody


def auth_middleware(get_tokens: Callable[[web.Request], Tokens]) -> Middleware:
    """Authenticate every request of the app it is installed on (the /v1 sub-application)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        token = bearer_token(request)
        principal = await principal_of(get_tokens(request), token) if token else None
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
