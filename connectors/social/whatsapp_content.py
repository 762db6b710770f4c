"""What a WhatsApp message says, whatever its type: the text agents read, the files it carries
(Graph media ids, fetched on demand), and the details worth keeping (what it replies or reacts
to, a button's payload).

Every type becomes a message. One we do not know (or WhatsApp's own `unsupported`) says what
arrived, so nothing a customer sent vanishes without a trace.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from connectors.base import MalformedPayload
from conversation.model import Attachment

MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")


@dataclass(frozen=True)
class Content:
    text: str
    attachments: tuple[Attachment, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)


def content_of(message: Mapping[str, Any], media_url: Callable[[str], str]) -> Content:
    """The content of one `messages[]` (or `message_echoes[]`) item; `media_url` makes the Graph
    URL of a media id."""
    kind = str(message.get("type") or "")
    body = message.get(kind) if kind else None
    extra: dict[str, str] = {"type": kind} if kind else {}
    context = message.get("context")
    if isinstance(context, Mapping) and context.get("id"):
        extra["reply_to"] = str(context["id"])  # the customer answered one of the earlier messages
    referral = message.get("referral")
    if isinstance(referral, Mapping) and referral.get("source_url"):
        extra["referral"] = str(referral["source_url"])  # came from an ad or a post

    if kind == "text" and isinstance(body, Mapping):
        return Content(str(body.get("body") or ""), extra=extra)
    if kind in MEDIA_TYPES and isinstance(body, Mapping):
        media_id = body.get("id")
        if not media_id:
            raise MalformedPayload(f"a WhatsApp {kind} has no media id")
        if kind == "audio" and body.get("voice"):
            extra["voice"] = "true"
        name = body.get("filename")
        attachment = Attachment(url=media_url(str(media_id)),
                                content_type=str(body.get("mime_type") or _default_type(kind)),
                                name=str(name) if name else None)
        return Content(str(body.get("caption") or ""), (attachment,), extra)
    if kind == "location" and isinstance(body, Mapping):
        return Content(_location(body), extra=extra)
    if kind == "contacts" and isinstance(body, list):
        return Content("\n\n".join(_contact(c) for c in body if isinstance(c, Mapping)), extra=extra)
    if kind == "interactive" and isinstance(body, Mapping):
        reply = body.get(str(body.get("type") or ""))
        if isinstance(reply, Mapping) and body.get("type") in ("button_reply", "list_reply"):
            extra["reply_id"] = str(reply.get("id") or "")
            return Content(str(reply.get("title") or reply.get("id") or ""), extra=extra)
    if kind == "button" and isinstance(body, Mapping):
        extra["payload"] = str(body.get("payload") or "")
        return Content(str(body.get("text") or body.get("payload") or ""), extra=extra)
    if kind == "reaction" and isinstance(body, Mapping):
        extra["reaction_to"] = str(body.get("message_id") or "")
        emoji = str(body.get("emoji") or "")
        if not emoji:
            extra["reaction_removed"] = "true"
        return Content(emoji, extra=extra)
    return Content(_unsupported(kind, message), extra=extra)


def _default_type(kind: str) -> str:
    return {"image": "image/jpeg", "sticker": "image/webp", "audio": "audio/ogg", "video": "video/mp4"}.get(
        kind, "application/octet-stream")


def _location(body: Mapping[str, Any]) -> str:
    lat, lng = body.get("latitude"), body.get("longitude")
    label = ", ".join(str(body[k]) for k in ("name", "address") if body.get(k))
    link = "https://www.google.com/maps/search/?" + urlencode({"api": "1", "query": f"{lat},{lng}"})
    return f"📍 {label}\n{link}" if label else f"📍 {link}"


def _contact(card: Mapping[str, Any]) -> str:
    name = card.get("name")
    lines = [str(name.get("formatted_name") or "") if isinstance(name, Mapping) else ""]
    for phone in card.get("phones") or ():
        if isinstance(phone, Mapping) and phone.get("phone"):
            lines.append(f"{phone.get('type') or 'phone'}: {phone['phone']}")
    for email in card.get("emails") or ():
        if isinstance(email, Mapping) and email.get("email"):
            lines.append(f"{email.get('type') or 'email'}: {email['email']}")
    return "👤 " + "\n".join(line for line in lines if line)


def _unsupported(kind: str, message: Mapping[str, Any]) -> str:
    errors = message.get("errors")
    reason = ""
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        first = errors[0]
        data = first.get("error_data")
        reason = str((data.get("details") if isinstance(data, Mapping) else None) or first.get("title") or "")
    what = kind or "unknown"
    return f"[The customer sent a WhatsApp {what} message, which cannot be shown here" + (
        f": {reason}]" if reason else "]")


__all__ = ["Content", "content_of"]
