"""The conformance kit on the Telegram connector, with updates shaped as the Bot API sends them."""

from __future__ import annotations

from typing import Any

from connectors.social import TelegramConnector
from connectors.testing import (
    INSTANCE,
    RECEIVED_AT_MS,
    REMOVE,
    ConnectorConformance,
    InvalidSettings,
    PayloadCase,
    SecretTokenSigner,
)
from connectors.testing.fake_telegram import DEFAULT_BOT_TOKEN, FakeTelegram
from conversation.model import Attachment, Identity, InboundMessage, MessageEdit

SECRET = "s3cret_token-for-the-webhook"
USER = 2**53 + 7  # above what a float holds exactly
DATE = 1_700_000_000
SENDER = {"id": USER, "is_bot": False, "first_name": "Lucía", "last_name": "Gómez", "username": "lugo",
          "language_code": "es"}
CHAT = {"id": USER, "first_name": "Lucía", "last_name": "Gómez", "username": "lugo", "type": "private"}


def update(update_id: int, kind: str = "message", **message: Any) -> dict[str, Any]:
    return {"update_id": update_id, kind: {"message_id": 42, "from": SENDER, "chat": CHAT, "date": DATE, **message}}


def inbound(update_id: int, text: str, **fields: Any) -> InboundMessage:
    values: dict[str, Any] = {
        "instance": INSTANCE, "channel": "telegram", "provider_message_id": f"{USER}:42",
        "sender": Identity("telegram", str(USER)), "text": text, "sender_name": "Lucía Gómez (@lugo)",
        "received_at_ms": RECEIVED_AT_MS, "sent_at_ms": DATE * 1000,
        "extra": {"chat_id": str(USER), "update_id": str(update_id), "username": "lugo"},
        "locale": "es",  # the user's Telegram app language: replies use it
    }
    values.update(fields)
    return InboundMessage(**values)


class TestTelegramConformance(ConnectorConformance):
    connector_class = TelegramConnector
    settings = {"bot_token": DEFAULT_BOT_TOKEN, "secret_token": SECRET, "api_base_url": "http://127.0.0.1:9"}
    invalid_settings = [
        InvalidSettings({"bot_token": "not-a-token"}, "bot_token must be the token BotFather gave"),
        InvalidSettings({"secret_token": "has spaces"}, "secret_token must be 1-256 characters"),
        InvalidSettings({"secret_token": REMOVE}, "secret_token"),
        InvalidSettings({"api_base_url": "api.telegram.org"}, "api_base_url must be an http(s) URL"),
    ]
    signer = SecretTokenSigner(SECRET)
    payload_cases = [
        PayloadCase.json("a text", "updates", update(10, text="Hola, ¿tenéis envío a Canarias?"),
                         messages=[inbound(10, "Hola, ¿tenéis envío a Canarias?")]),
        PayloadCase.json("a photo with a caption", "updates", update(11, caption="Así llegó", photo=[
            {"file_id": "AgAC-small", "file_unique_id": "s1", "file_size": 1200, "width": 90, "height": 67},
            {"file_id": "AgAC-large", "file_unique_id": "l1", "file_size": 84000, "width": 1280, "height": 960}]),
            messages=[inbound(11, "Así llegó", attachments=(
                Attachment("telegram-file:AgAC-large", "image/jpeg", size=84000),))]),
        PayloadCase.json("an edit", "updates", update(12, "edited_message", text="Hola, ¿y a Ceuta?",
                                                      edit_date=DATE + 60),
                         messages=[inbound(12, "Hola, ¿y a Ceuta?", provider_message_id=f"{USER}:42~edit:12",
                                           edit=MessageEdit(target=f"{USER}:42", at_ms=(DATE + 60) * 1000))]),
        PayloadCase.json("a group chat is skipped", "updates", {"update_id": 13, "message": {
            "message_id": 7, "from": SENDER, "chat": {"id": -1001234567890, "title": "Fans", "type": "supergroup"},
            "date": DATE, "text": "hola"}}),
        PayloadCase.json("a callback query is skipped", "updates", {"update_id": 14, "callback_query": {
            "id": "4382bfdwdsb323b2d9", "from": SENDER, "data": "more", "chat_instance": "-1"}}),
        PayloadCase.json("no update_id", "updates", {"message": {"message_id": 1}}, malformed="no update_id"),
    ]

    def fake_provider(self) -> FakeTelegram:
        return FakeTelegram()
