"""The widget's wire format: what a visitor may send, what the server answers, what is shown.

Pure functions shared by the WebSocket, the HTTP fallback and the connector's webhook route, so
that the three paths accept and refuse exactly the same things.

Client -> server: ``{"type": "message", "text": ..., "client_id": ...}``.
Server -> client: ``{"type": "message", "message": <Message as in the inbox API>}`` and
``{"type": "error", "code": ..., "message": ...}`` (plus ``client_id`` and ``retry_after`` when
they apply, so the widget can mark the one message that was refused).
"""

from __future__ import annotations

import enum
import re
from typing import Any

import msgspec

from connectors.chat.webchat.tokens import Visitor
from conversation.model import DeliveryStatus, Direction, Identity, InboundMessage, Message
from conversation.voice.locales import preferred_language

CHANNEL = "webchat"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_VISIBLE = re.compile(r"\S")


class FrameError(ValueError):
    """A frame the server refuses; `code` is stable and machine-readable, `status` the HTTP one."""

    def __init__(self, code: str, message: str, *, status: int = 400, client_id: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.client_id = client_id
        self.retry_after = retry_after


class ClientFrame(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    text: str = ""
    client_id: str = ""


_frame_decoder = msgspec.json.Decoder(ClientFrame)
_encoder = msgspec.json.Encoder()


def max_frame_bytes(max_chars: int) -> int:
    """The largest raw frame worth decoding: the text at 4 UTF-8 bytes per character (or a
    6-byte JSON escape of one), plus the envelope."""
    return max_chars * 6 + 512


def decode_frame(raw: bytes | str, *, max_chars: int) -> ClientFrame:
    """A valid message frame, or FrameError saying what is wrong with it."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_frame_bytes(max_chars):
        raise FrameError("message_too_long", f"a message may be at most {max_chars} characters", status=413)
    try:
        frame = _frame_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise FrameError("invalid_frame", f"the frame is not a valid message: {exc}") from None
    except msgspec.DecodeError:
        raise FrameError("invalid_frame", "the frame is not JSON") from None
    if frame.type != "message":
        raise FrameError("unsupported_frame", f"unknown frame type {frame.type!r}; send type \"message\"")
    if not _CLIENT_ID.match(frame.client_id):
        raise FrameError("invalid_frame", "client_id must be 1 to 64 letters, digits, '-' or '_'")
    if len(frame.text) > max_chars:
        raise FrameError("message_too_long", f"a message may be at most {max_chars} characters",
                         status=413, client_id=frame.client_id)
    if not _VISIBLE.search(frame.text):
        raise FrameError("empty_message", "the message has no text", client_id=frame.client_id)
    return frame


def provider_message_id(visitor_id: str, client_id: str) -> str:
    # The widget keeps a message's client_id across resends, so a message resent after a
    # reconnect has the same provider id and the core's dedupe stores it once.
    return f"{visitor_id}/{client_id}"


def inbound_message(instance: str, visitor: Visitor, frame: ClientFrame, received_at_ms: int,
                    accept_language: str | None = None) -> InboundMessage:
    """`accept_language`: the browser's Accept-Language, the visitor's language for replies."""
    return InboundMessage(
        instance=instance,
        channel=CHANNEL,
        provider_message_id=provider_message_id(visitor.id, frame.client_id),
        sender=Identity(CHANNEL, visitor.id),
        text=frame.text,
        sender_name=visitor.name,
        received_at_ms=received_at_ms,
        locale=preferred_language(accept_language),
    )


class Visibility(enum.Enum):
    SHOW = "show"
    HOLD = "hold"  # not yet: everything after it waits, so the client's cursor never skips it
    SKIP = "skip"  # never shown in the widget


def visibility(message: Message, instance: str) -> Visibility:
    """What the widget shows of a thread: this instance's chat, both ways; never internal notes,
    nor what was said on other channels (an email thread is not the web visitor's to read).

    An agent's reply is shown once the dispatcher has sent it (webchat's send() is what releases
    it), so "sent" means the same here as on every other channel; a failed one is never shown.
    """
    if message.channel != CHANNEL or message.instance != instance or message.direction is Direction.NOTE:
        return Visibility.SKIP
    if message.direction is Direction.INBOUND:
        return Visibility.SHOW
    if message.status is DeliveryStatus.QUEUED:
        return Visibility.HOLD
    if message.status is DeliveryStatus.FAILED:
        return Visibility.SKIP
    return Visibility.SHOW


def message_frame(message: Message) -> bytes:
    return _encoder.encode({"type": "message", "message": message})


def error_frame(code: str, message: str, **extra: Any) -> bytes:
    return _encoder.encode({"type": "error", "code": code, "message": message,
                            **{k: v for k, v in extra.items() if v is not None}})


__all__ = [
    "CHANNEL",
    "ClientFrame",
    "FrameError",
    "Visibility",
    "decode_frame",
    "error_frame",
    "inbound_message",
    "max_frame_bytes",
    "message_frame",
    "provider_message_id",
    "visibility",
]
