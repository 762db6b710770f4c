"""What a channel can carry, declared as data by its connector, and enforced here once for all.

A connector states its limits (`Capabilities`: text length in its own unit, what happens to
longer text, attachment kinds and sizes, a reply window, a send rate); the core fits every reply
to them before it is queued, so no connector re-implements splitting or window checks, and a
plugin gets them for free. The text measure is chosen by the declared `TextUnit` from the table
below; no channel's module is imported for it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Literal

import msgspec

from conversation.model import Attachment
from conversation.segments import count_segments


class TextUnit(enum.StrEnum):
    CHARACTERS = "characters"
    BYTES = "bytes"
    GSM_SEGMENTS = "gsm_segments"


class TextFormat(enum.StrEnum):
    PLAIN = "plain"
    MARKDOWN = "markdown"
    SLACK_MRKDWN = "slack_mrkdwn"
    WHATSAPP = "whatsapp"  # *bold*, _italic_, ~strike~, ```code```
    HTML = "html"


class OverflowRule(enum.StrEnum):
    """What the core does with text longer than the channel allows."""

    SPLIT = "split"
    TRUNCATE = "truncate"
    REFUSE = "refuse"


class Capabilities(msgspec.Struct, frozen=True, kw_only=True):
    """A channel's limits, as data the core enforces."""

    max_text_length: int
    text_unit: TextUnit = TextUnit.CHARACTERS
    overflow: OverflowRule = OverflowRule.SPLIT
    formats: tuple[TextFormat, ...] = (TextFormat.PLAIN,)
    attachment_kinds: tuple[str, ...] = ()  # MIME prefixes, e.g. ("image/", "video/")
    max_attachment_bytes: int = 0
    max_attachments: int = 0
    threads: bool = False
    reply_window_seconds: int | None = None
    outside_window: Literal["template", "tag", "none"] | None = None
    # With outside_window "tag": the provider's tag (Messenger's HUMAN_AGENT) that lets a human
    # agent's reply through for this long after the customer last wrote, beyond the window.
    window_tag: str | None = None
    tag_window_seconds: int | None = None
    ack_deadline_seconds: float = 10.0
    # Sends per second the provider accepts on one instance (a Twilio long code: 1). The
    # dispatcher paces sends to it across every process; None: no pacing.
    rate_limit_per_second: float | None = None


class TextTooLong(ValueError):
    pass


class WindowClosed(ValueError):
    """The channel only allows free-form replies for a while after the customer's last message.
    `templates` names what may be sent instead (the instance's approved templates)."""

    def __init__(self, message: str, templates: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.templates = list(templates)


def _utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


MEASURES: dict[TextUnit, Callable[[str], int]] = {
    TextUnit.CHARACTERS: len,
    TextUnit.BYTES: _utf8_bytes,
    TextUnit.GSM_SEGMENTS: count_segments,
}


def measure(text: str, unit: TextUnit) -> int:
    return MEASURES[unit](text)


def fit_text(caps: Capabilities, text: str) -> list[str]:
    """The text as the parts the channel accepts, by its declared overflow rule.

    Splits prefer paragraph, then line, then sentence, then word boundaries, so a long answer
    reads naturally as several messages.
    """
    limit = caps.max_text_length
    if measure(text, caps.text_unit) <= limit:
        return [text]
    if caps.overflow is OverflowRule.REFUSE:
        raise TextTooLong(f"text is longer than the channel allows ({limit} {caps.text_unit.value})")
    if caps.overflow is OverflowRule.TRUNCATE:
        return [_longest_prefix(text, caps)[:-1] + "…"]
    parts: list[str] = []
    rest = text
    while rest:
        if measure(rest, caps.text_unit) <= limit:
            parts.append(rest)
            break
        head = _longest_prefix(rest, caps)
        cut = _boundary(head)
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return [p for p in parts if p]


def _longest_prefix(text: str, caps: Capabilities) -> str:
    lo, hi = 1, len(text)
    while lo < hi:  # binary search: measure() is monotonic in the prefix length
        mid = (lo + hi + 1) // 2
        if measure(text[:mid], caps.text_unit) <= caps.max_text_length:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


def _boundary(head: str) -> int:
    floor = len(head) // 2  # never cut so early that parts become tiny
    for sep in ("\n\n", "\n", ". ", "! ", "? ", " "):
        at = head.rfind(sep)
        if at >= floor:
            return at + len(sep)
    return len(head)


def fit_attachments(caps: Capabilities, text: str, attachments: Sequence[Attachment]) -> tuple[str, list[Attachment]]:
    """Attachments the channel can carry stay attachments; the rest become links in the text,
    so the customer still gets them (a PDF over SMS, a file over the size limit)."""
    kept: list[Attachment] = []
    links: list[str] = []
    for att in attachments:
        fits_kind = any(att.content_type.startswith(kind) for kind in caps.attachment_kinds)
        fits_size = att.size is None or att.size <= caps.max_attachment_bytes
        if fits_kind and fits_size and len(kept) < caps.max_attachments:
            kept.append(att)
        else:
            links.append(f"{att.name}: {att.url}" if att.name else att.url)
    if links:
        text = "\n\n".join([text, *links]) if text else "\n".join(links)
    return text, kept


def window_open(caps: Capabilities, last_inbound_ms: int | None, now_ms: int) -> bool:
    if caps.reply_window_seconds is None:
        return True
    return last_inbound_ms is not None and now_ms - last_inbound_ms <= caps.reply_window_seconds * 1000


def window_closes_at_ms(caps: Capabilities, last_inbound_ms: int | None) -> int | None:
    """When free text stops being allowed (None: the channel has no window, or no message yet)."""
    if caps.reply_window_seconds is None or last_inbound_ms is None:
        return None
    return last_inbound_ms + caps.reply_window_seconds * 1000


def check_window(caps: Capabilities, last_inbound_ms: int | None, now_ms: int,
                 templates: Sequence[str] = ()) -> str | None:
    """Whether a free-form reply may go now: None inside the window, the tag to send it with in
    the tag window beyond it; else WindowClosed, saying what would be allowed."""
    if window_open(caps, last_inbound_ms, now_ms):
        return None
    assert caps.reply_window_seconds is not None
    if (caps.outside_window == "tag" and caps.window_tag and caps.tag_window_seconds and last_inbound_ms is not None
            and now_ms - last_inbound_ms <= caps.tag_window_seconds * 1000):
        return caps.window_tag
    hours = caps.reply_window_seconds / 3600
    if caps.outside_window == "template":
        allowed = "an approved message template" + (f" ({', '.join(templates)})" if templates else
                                                    " (none is configured on this instance)")
    elif caps.outside_window == "tag" and caps.window_tag and caps.tag_window_seconds:
        allowed = f"nothing more: its {caps.window_tag} tag allows {caps.tag_window_seconds / 86400:g} days"
    else:
        allowed = ""
    raise WindowClosed(
        f"the customer last wrote on this channel more than {hours:g} h ago; outside that window the channel "
        + (f"only accepts {allowed}" if allowed else "accepts no reply until the customer writes again"),
        templates if caps.outside_window == "template" else (),
    )


__all__ = [
    "MEASURES",
    "Capabilities",
    "OverflowRule",
    "TextFormat",
    "TextTooLong",
    "TextUnit",
    "WindowClosed",
    "check_window",
    "fit_attachments",
    "fit_text",
    "measure",
    "window_closes_at_ms",
    "window_open",
]
