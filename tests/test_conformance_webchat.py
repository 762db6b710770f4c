"""The conformance kit on the web chat connector.

Web chat has no provider: its "webhook" is the widget's HTTP fallback for sending, authenticated
by a visitor token (VisitorTokenSigner), and "stale" is an expired token. The send tests are
skipped (no provider API to fake): webchat's send() only releases the reply to the visitor's open
tabs, which tests/test_webchat.py covers through the real dispatcher.
"""

from __future__ import annotations

import json

from connectors.base import WebhookResponse
from connectors.chat.webchat import WebchatConnector
from connectors.chat.webchat.testing import VisitorTokenSigner
from connectors.chat.webchat.tokens import visitor_key
from connectors.testing import INSTANCE, RECEIVED_AT_MS, ConnectorConformance, InvalidSettings, PayloadCase
from conversation.model import Identity, InboundMessage

SECRET = "conformance-identity-secret-0123456789abcdef"
VISITOR = "a:conformancevisitor0000000"
TTL_DAYS = 30
_derived = visitor_key(INSTANCE, visitor_secret=None, identity_secret=SECRET)
assert _derived is not None
KEY: bytes = _derived


def _answer(status: int, payload: object) -> WebhookResponse:
    return WebhookResponse(status, json.dumps(payload, separators=(",", ":")).encode(), "application/json")


def _error(status: int, code: str, message: str) -> WebhookResponse:
    return _answer(status, {"error": {"code": code, "message": message}})


def inbound(client_id: str, text: str) -> InboundMessage:
    return InboundMessage(instance=INSTANCE, channel="webchat", provider_message_id=f"{VISITOR}/{client_id}",
                          sender=Identity("webchat", VISITOR), text=text, received_at_ms=RECEIVED_AT_MS)


class TestWebchatConformance(ConnectorConformance):
    connector_class = WebchatConnector
    settings = {"identity_secret": SECRET, "allowed_origins": ["https://shop.example.com"],
                "visitor_token_ttl_days": TTL_DAYS, "max_message_chars": 100}
    invalid_settings = [
        InvalidSettings({"identity_secret": "short"}, "identity_secret must be at least 16 characters"),
        InvalidSettings({"visitor_secret": "short"}, "visitor_secret must be at least 16 characters"),
        InvalidSettings({"allowed_origins": ["https://shop.example.com/path"]}, "allowed_origins"),
        InvalidSettings({"allowed_origins": "https://shop.example.com"}, "allowed_origins"),
        InvalidSettings({"visitor_token_ttl_days": 0}, "visitor_token_ttl_days"),
        InvalidSettings({"messages_per_minute": 0}, "messages_per_minute"),
    ]
    not_secret_fields = ("visitor_token_ttl_days",)  # a lifetime, not a token
    signer = VisitorTokenSigner(KEY, INSTANCE, VISITOR, ttl_seconds=TTL_DAYS * 86_400)
    payload_cases = [
        PayloadCase.json("a visitor's message", "messages",
                         {"type": "message", "text": "Do you ship to Spain?", "client_id": "k1"},
                         messages=[inbound("k1", "Do you ship to Spain?")], response=_answer(202, {"client_id": "k1"})),
        PayloadCase.json("unicode and newlines kept", "messages",
                         {"type": "message", "text": "¿Y a Canarias?\nGracias 🙂", "client_id": "k2"},
                         messages=[inbound("k2", "¿Y a Canarias?\nGracias 🙂")],
                         response=_answer(202, {"client_id": "k2"})),
        PayloadCase.json("over max_message_chars", "messages",
                         {"type": "message", "text": "x" * 101, "client_id": "k3"},
                         response=_error(413, "message_too_long", "a message may be at most 100 characters")),
        PayloadCase.json("blank text", "messages", {"type": "message", "text": "  \n", "client_id": "k4"},
                         response=_error(400, "empty_message", "the message has no text")),
        PayloadCase.json("unknown frame type", "messages", {"type": "typing", "client_id": "k5"},
                         response=_error(400, "unsupported_frame",
                                         "unknown frame type 'typing'; send type \"message\"")),
    ]
