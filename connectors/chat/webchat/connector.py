"""The web chat connector (kind `webchat`): a website's chat widget as a channel.

There is no provider: the gateway itself is the chat server. The connector holds what is pure
(settings, capabilities, tokens, frame validation) and the aiohttp side lives in gateway.webchat
(session endpoint, WebSocket, HTTP fallback, widget files) and gateway.live (the fan-out of
thread events to open sockets).

Webhook route: ``POST /webhooks/{instance}/messages`` takes one message frame authenticated by a
visitor token (``Authorization: Bearer <visitor_token>``): the same contract as the widget's HTTP
fallback, for integrations posting on a visitor's behalf, and the route the conformance kit
exercises. Its answer is 202 with ``{"client_id": ...}``, or a 4xx error body the sender can act
on. Refused frames are answered, not dead-lettered: the sender is the visitor, who can fix them,
and a public endpoint must not let anyone fill the operators' dead-letter list.

send(): replies are not pushed by the connector. The reply is already in the customer's thread;
returning from send() marks it `sent`, and that is what releases it to the visitor's open tabs
(gateway.live wakes them through the events stream, whichever process they are connected to).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Annotated

import msgspec
from msgspec import Meta

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorSettings,
    Outbound,
    OverflowRule,
    ParseResult,
    PermanentSendError,
    Route,
    Secret,
    SignatureError,
    TextFormat,
    WebhookRequest,
    WebhookResponse,
)
from connectors.chat.webchat import tokens
from connectors.chat.webchat.frames import CHANNEL, FrameError, decode_frame, inbound_message
from connectors.chat.webchat.tokens import TokenError, Visitor

_ORIGIN = re.compile(r"^https?://[^/\s?#]+$")
MIN_SECRET_LENGTH = 16


class WebchatSettings(ConnectorSettings, kw_only=True, forbid_unknown_fields=True):
    # Signs sites' identity tokens (HS256). Unset: the widget only takes anonymous visitors.
    identity_secret: Secret | None = None
    # Signs visitor tokens. Unset: derived from identity_secret; with neither, the gateway keeps a
    # generated key in Redis, so `make run` works with no secret at all.
    visitor_secret: Secret | None = None
    # Sites allowed to embed the widget, as origins ("https://shop.example.com"), or "*". The
    # gateway's own origin (the demo page) is always allowed.
    allowed_origins: list[str] = msgspec.field(default_factory=list)
    visitor_token_ttl_days: Annotated[int, Meta(ge=1, le=365)] = 30
    max_message_chars: Annotated[int, Meta(ge=1, le=100_000)] = 2000
    messages_per_minute: Annotated[int, Meta(ge=1)] = 20  # per visitor, across every process
    messages_per_minute_per_ip: Annotated[int, Meta(ge=1)] = 120  # per process
    sessions_per_minute_per_ip: Annotated[int, Meta(ge=1)] = 30  # sessions and WebSocket connects
    max_sockets_per_visitor: Annotated[int, Meta(ge=1)] = 20  # per process: tabs of one visitor

    def __post_init__(self) -> None:
        for name in ("identity_secret", "visitor_secret"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, Secret):
                value = Secret(value)
                setattr(self, name, value)
            if len(value) < MIN_SECRET_LENGTH:
                raise ValueError(f"{name} must be at least {MIN_SECRET_LENGTH} characters (HS256 keys "
                                 "should be long and random, e.g. `openssl rand -hex 32`)")
        cleaned = []
        for origin in self.allowed_origins:
            origin = origin.strip().rstrip("/")
            if origin != "*" and not _ORIGIN.match(origin):
                raise ValueError(f"allowed_origins: {origin!r} is not an origin like https://shop.example.com "
                                 "(scheme and host[:port], no path) or \"*\"")
            cleaned.append(origin.lower())
        self.allowed_origins = cleaned


class WebchatConnector(Connector[WebchatSettings]):
    kind = "webchat"
    channel = CHANNEL
    transports = ("webchat",)  # sessions, the WebSocket, the HTTP fallback, the widget (gateway.webchat)
    Settings = WebchatSettings
    capabilities = Capabilities(
        # The widget shows any length; long replies are still split at paragraph boundaries so a
        # wall of text arrives as readable bubbles.
        max_text_length=4000,
        overflow=OverflowRule.SPLIT,
        formats=(TextFormat.PLAIN,),
        threads=False,
        ack_deadline_seconds=10.0,
    )

    def __init__(self, instance: str, settings: WebchatSettings, *, public_url: str) -> None:
        super().__init__(instance, settings, public_url=public_url)
        self._visitor_key = tokens.visitor_key(
            instance,
            visitor_secret=settings.visitor_secret.reveal() if settings.visitor_secret else None,
            identity_secret=settings.identity_secret.reveal() if settings.identity_secret else None,
        )

    def __repr__(self) -> str:
        return f"WebchatConnector({self.instance!r}, {self.settings!r})"

    # --- keys and tokens --------------------------------------------------------------------------

    @property
    def needs_visitor_key(self) -> bool:
        """True until a key is installed when the configuration names no secret."""
        return self._visitor_key is None

    def install_visitor_key(self, key: bytes) -> None:
        """The gateway's generated key, for instances configured without secrets."""
        if len(key) < 32:
            raise ValueError("a visitor key must be at least 32 bytes")
        self._visitor_key = key

    def _key(self) -> bytes:
        if self._visitor_key is None:
            raise RuntimeError(f"webchat instance {self.instance!r} has no visitor key yet (the gateway "
                               "installs one at startup)")
        return self._visitor_key

    @property
    def token_ttl_seconds(self) -> int:
        return self.settings.visitor_token_ttl_days * 86_400

    def issue_visitor_token(self, visitor: Visitor, *, now: float | None = None) -> str:
        return tokens.issue_visitor_token(self._key(), self.instance, visitor, ttl_seconds=self.token_ttl_seconds,
                                          now=now)

    def verify_visitor_token(self, token: str | None) -> Visitor:
        """The token's visitor; TokenError when it is missing, forged, expired or another instance's."""
        return tokens.verify_visitor_token(self._key(), self.instance, token)

    def verify_identity_token(self, token: str) -> tokens.VerifiedIdentity:
        if self.settings.identity_secret is None:
            raise TokenError(f"webchat instance {self.instance!r} has no identity_secret: it cannot verify "
                             "identity tokens")
        return tokens.verify_identity_token(self.settings.identity_secret.reveal(), token)

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether a browser on `origin` may use the widget. Requests without an Origin header are
        not from a browser page, which is what the check protects; tokens still apply to them."""
        if origin is None:
            return True
        origin = origin.rstrip("/").lower()
        allowed = self.settings.allowed_origins
        return "*" in allowed or origin in allowed or origin == _origin_of(self.public_url)

    # --- the webhook route ------------------------------------------------------------------------

    def routes(self) -> Sequence[Route]:
        return [Route("POST", "messages")]

    def verify(self, request: WebhookRequest) -> None:
        try:
            self.verify_visitor_token(bearer(request.header("Authorization")))
        except TokenError as exc:
            raise SignatureError(str(exc)) from None

    def parse(self, request: WebhookRequest) -> ParseResult:
        try:
            visitor = self.verify_visitor_token(bearer(request.header("Authorization")))
            frame = decode_frame(request.body, max_chars=self.settings.max_message_chars)
        except TokenError as exc:  # verify() ran first; this only guards a direct parse() call
            return ParseResult(response=_error_response(401, "invalid_token", str(exc)))
        except FrameError as exc:
            return ParseResult(response=_error_response(exc.status, exc.code, exc.message))
        message = inbound_message(self.instance, visitor, frame, request.received_at_ms,
                                  request.header("Accept-Language"))
        body = json.dumps({"client_id": frame.client_id}, separators=(",", ":")).encode()
        return ParseResult(messages=[message], response=WebhookResponse(202, body, "application/json"))

    # --- outbound -----------------------------------------------------------------------------

    async def send(self, outbound: Outbound) -> str:
        if outbound.to.kind != CHANNEL:
            raise PermanentSendError(f"webchat cannot reach a {outbound.to.kind} identity", code="wrong_identity")
        # The id only has to be unique per instance: the message id is.
        return f"wc-{outbound.message_id}"


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _origin_of(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}".lower()


def _error_response(status: int, code: str, message: str) -> WebhookResponse:
    body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode()
    return WebhookResponse(status, body, "application/json")


__all__ = ["WebchatConnector", "WebchatSettings", "bearer"]
