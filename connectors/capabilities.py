"""Enforcement of a connector's declared limits, done once here for every connector."""

from __future__ import annotations

from collections.abc import Sequence

from connectors.base import Capabilities, OverflowRule, TextUnit
from conversation.model import Attachment


class TextTooLong(ValueError):
    pass


class WindowClosed(ValueError):
    """The channel only allows free-form replies for a while after the customer's last message."""


def measure(text: str, unit: TextUnit) -> int:
    if unit is TextUnit.BYTES:
        return len(text.encode("utf-8"))
    if unit is TextUnit.GSM_SEGMENTS:
        from connectors.sms.segments import count_segments

        return count_segments(text)
    return len(text)


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


def check_window(caps: Capabilities, last_inbound_ms: int | None, now_ms: int) -> None:
    """Refuse a free-form reply outside the channel's reply window, saying what would be allowed."""
    if caps.reply_window_seconds is None:
        return
    if last_inbound_ms is not None and now_ms - last_inbound_ms <= caps.reply_window_seconds * 1000:
        return
    hours = caps.reply_window_seconds / 3600
    allowed = {"template": "an approved message template", "tag": "a message tag"}.get(caps.outside_window or "")
    raise WindowClosed(
        f"the customer last wrote on this channel more than {hours:g} h ago; outside that window the channel "
        + (f"only accepts {allowed}" if allowed else "accepts no reply until the customer writes again")
    )
