"""What the web chat's routes share in one process, and what they need of a connector.

The gateway serves the "webchat" transport for any connector that declares it and has the shape
below (`VisitorChat`): visitor tokens, identity tokens, allowed origins and limits. It never
looks at the connector's class.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from aiohttp import web

from connectors.chat.webchat.tokens import VerifiedIdentity, Visitor
from conversation.service import Core
from gateway.live import LiveHub
from gateway.ratelimit import LocalRateLimiter


class ChatLimits(Protocol):
    @property
    def max_message_chars(self) -> int: ...
    @property
    def messages_per_minute(self) -> int: ...
    @property
    def messages_per_minute_per_ip(self) -> int: ...
    @property
    def sessions_per_minute_per_ip(self) -> int: ...
    @property
    def max_sockets_per_visitor(self) -> int: ...


@runtime_checkable
class VisitorChat(Protocol):
    """A connector instance the web chat transport can serve."""

    @property
    def instance(self) -> str: ...
    @property
    def settings(self) -> ChatLimits: ...
    @property
    def needs_visitor_key(self) -> bool: ...
    def install_visitor_key(self, key: bytes) -> None: ...
    def issue_visitor_token(self, visitor: Visitor, *, now: float | None = None) -> str: ...
    def verify_visitor_token(self, token: str | None) -> Visitor: ...
    def verify_identity_token(self, token: str) -> VerifiedIdentity: ...
    def origin_allowed(self, origin: str | None) -> bool: ...


class WebchatRuntime:
    """Shared by every web chat instance of one process."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.store = core.store
        self.local = LocalRateLimiter()
        self.hub = LiveHub(core.store.events)
        self.sockets: set[object] = set()
        self.per_visitor: dict[tuple[str, str], int] = {}
        self.instances: dict[str, VisitorChat] = {}


WEBCHAT: web.AppKey[WebchatRuntime] = web.AppKey("webchat")

__all__ = ["WEBCHAT", "ChatLimits", "VisitorChat", "WebchatRuntime"]
