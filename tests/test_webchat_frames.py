"""The web chat's pure parts: what the widget is shown, frame checks and tokens."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from connectors.chat.webchat.frames import FrameError, Visibility, decode_frame, visibility
from connectors.chat.webchat.tokens import (
    TokenError,
    Visitor,
    identified_id,
    issue_visitor_token,
    sign_identity_token,
    verify_identity_token,
    verify_visitor_token,
)
from conversation.model import DeliveryStatus, Direction, Message

KEY = b"k" * 32
SECRET = "identity-secret-for-unit-tests-0000"


def msg(direction: Direction, status: DeliveryStatus, channel: str = "webchat",
        instance: str | None = "chat") -> Message:
    return Message(id="c.0", conversation_id="c", direction=direction, channel=channel, instance=instance,
                   text="t", attachments=[], status=status, error=None, created_at=datetime.now(UTC))


@pytest.mark.parametrize(("message", "seen"), [
    (msg(Direction.INBOUND, DeliveryStatus.RECEIVED), Visibility.SHOW),
    (msg(Direction.OUTBOUND, DeliveryStatus.QUEUED), Visibility.HOLD),
    (msg(Direction.OUTBOUND, DeliveryStatus.SENT), Visibility.SHOW),
    (msg(Direction.OUTBOUND, DeliveryStatus.DELIVERED), Visibility.SHOW),
    (msg(Direction.OUTBOUND, DeliveryStatus.FAILED), Visibility.SKIP),
    (msg(Direction.NOTE, DeliveryStatus.RECEIVED, channel="note", instance=None), Visibility.SKIP),
    (msg(Direction.OUTBOUND, DeliveryStatus.SENT, channel="sms", instance="sms"), Visibility.SKIP),
    (msg(Direction.INBOUND, DeliveryStatus.RECEIVED, instance="other-site"), Visibility.SKIP),
])
def test_the_widget_shows_only_this_chat_and_replies_once_sent(message: Message, seen: Visibility) -> None:
    assert visibility(message, "chat") is seen


@pytest.mark.parametrize(("raw", "code"), [
    (b"{", "invalid_frame"),
    (b'{"type":"message","text":"hi","client_id":"a","extra":1}', "invalid_frame"),
    (b'{"type":"message","text":"hi","client_id":"has space"}', "invalid_frame"),
    (b'{"type":"message","text":"hi"}', "invalid_frame"),
    (b'{"type":"typing","client_id":"a"}', "unsupported_frame"),
    (b'{"type":"message","text":" \\n\\t","client_id":"a"}', "empty_message"),
    (b'{"type":"message","text":"' + b"x" * 11 + b'","client_id":"a"}', "message_too_long"),
    (b"x" * 10_000, "message_too_long"),
])
def test_bad_frames_are_refused_with_a_code(raw: bytes, code: str) -> None:
    with pytest.raises(FrameError) as refused:
        decode_frame(raw, max_chars=10)
    assert refused.value.code == code


def test_visitor_tokens_expire_and_belong_to_one_instance() -> None:
    token = issue_visitor_token(KEY, "chat", Visitor("a:x", name="Ann"), ttl_seconds=60)
    assert verify_visitor_token(KEY, "chat", token) == Visitor("a:x", "Ann", verify_visitor_token(KEY, "chat", token)
                                                               .expires_at)
    with pytest.raises(TokenError):
        verify_visitor_token(KEY, "other", token)
    with pytest.raises(TokenError):
        verify_visitor_token(b"j" * 32, "chat", token)
    stale = issue_visitor_token(KEY, "chat", Visitor("a:x"), ttl_seconds=60, now=time.time() - 120)
    with pytest.raises(TokenError, match="expired"):
        verify_visitor_token(KEY, "chat", stale)
    # An identity token is not a visitor token, even under the same key.
    with pytest.raises(TokenError):
        verify_visitor_token(KEY, "chat", sign_identity_token(KEY.decode(), sub="a:x"))


def test_identity_tokens_verify_and_mark_unverified_emails() -> None:
    ident = verify_identity_token(SECRET, sign_identity_token(SECRET, sub="7", email=" Bo@Example.COM ", name="Bo"))
    assert (ident.sub, ident.email, ident.name) == ("7", "bo@example.com", "Bo")
    unverified = verify_identity_token(SECRET, sign_identity_token(SECRET, sub="7", email="bo@example.com",
                                                                   email_verified=False))
    assert unverified.email is None and unverified.unverified_email == "bo@example.com"
    with pytest.raises(TokenError):
        verify_identity_token(SECRET, sign_identity_token(SECRET + "x", sub="7"))
    with pytest.raises(TokenError):
        verify_identity_token(SECRET, sign_identity_token(SECRET, sub="7", email="not an email"))


def test_identified_visitor_ids_are_safe_in_keys() -> None:
    assert identified_id("chat", "user-42") == "u:chat:user-42"
    odd = identified_id("chat", "{evil} key\n")
    assert "{" not in odd and " " not in odd and odd.startswith("u:chat:h")
