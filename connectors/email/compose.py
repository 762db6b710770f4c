"""Outbound email: an agent's reply as a message that threads in the customer's mail client.

multipart/alternative (the text, and the same as simple sanitized HTML), with attachments making
it multipart/mixed; a fresh Message-ID on our domain; In-Reply-To and References naming the
thread's earlier messages, so Gmail, Outlook and Apple Mail file it under the conversation; From
and Reply-To our address; a "Re:" subject with the case reference kept exactly once.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, NamedTuple

from connectors.base import Outbound
from connectors.email.htmltext import text_to_html

if TYPE_CHECKING:
    from connectors.email.settings import EmailSettings


class FileToAttach(NamedTuple):
    name: str
    content_type: str
    data: bytes


# Reply and forward markers mail clients put in front of a subject, in several languages, and the
# automatic-reply ones: answering "Automatic reply: Invoice" must not say "Re: Automatic reply:".
_REPLY_PREFIX = re.compile(
    r"^\s*(?:(?:re|aw|sv|vs|antw|ref|rif|atb|odp)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*"
    r"|(?:automatic reply|auto(?:matic)?[ -]?(?:reply|response)|autoreply|out of (?:the )?office)\s*:\s*)+",
    re.IGNORECASE,
)
_CASE_REFERENCE = re.compile(r"\s*\[#[A-Za-z0-9]{4,32}\]")


def case_reference(message_id: str) -> str:
    """A short reference for the conversation (the first characters of its id), e.g. "ab12cd34".

    The conversation id is the part of our message id before its last "."; its first 8 base32
    characters are what an agent can recognise and search for.
    """
    cid = message_id.rpartition(".")[0] or message_id
    return cid[:8]


def reply_subject(subject: str | None, reference: str, default: str) -> str:
    """ "Re: <subject> [#ref]": one "Re:", and the case reference exactly once, at the end."""
    base = _CASE_REFERENCE.sub("", subject or "")
    base = _REPLY_PREFIX.sub("", base).strip() or default
    return f"Re: {base} [#{reference}]"


def compose(
    outbound: Outbound,
    settings: EmailSettings,
    *,
    files: list[FileToAttach] | tuple[FileToAttach, ...] = (),
    automatic: bool = False,
    now: datetime | None = None,
) -> EmailMessage:
    """The message for one reply. `automatic` marks messages no agent wrote (acknowledgements,
    autoresponders: none exist yet) with Auto-Submitted, so other robots do not answer them."""
    msg = EmailMessage(policy=policy.SMTP)
    local, _, domain = settings.address.partition("@")
    msg["From"] = Address(display_name=settings.from_name or "", username=local, domain=domain)
    msg["To"] = outbound.to.address
    msg["Reply-To"] = settings.address
    msg["Subject"] = reply_subject(outbound.subject, case_reference(outbound.message_id), settings.default_subject)
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=settings.domain)
    references = list(dict.fromkeys(outbound.references))
    if outbound.reply_to_provider_id:
        msg["In-Reply-To"] = outbound.reply_to_provider_id
        if outbound.reply_to_provider_id not in references:
            references.append(outbound.reply_to_provider_id)
    if references:
        msg["References"] = " ".join(references)
    if automatic:
        msg["Auto-Submitted"] = "auto-replied"
    msg.set_content(outbound.text)
    # The voice's HTML rendering when the core made one; else the plain text, linked and escaped.
    msg.add_alternative(outbound.html or text_to_html(outbound.text), subtype="html")
    for f in files:
        maintype, _, subtype = f.content_type.partition(";")[0].strip().partition("/")
        # message/* may not be base64-encoded (RFC 2046) and multipart/* is no file: both go as
        # octet streams, which every client saves under their name (a .eml opens as mail).
        if not subtype or maintype.lower() in ("message", "multipart"):
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(f.data, maintype=maintype, subtype=subtype, filename=f.name)
    return msg


__all__ = ["FileToAttach", "case_reference", "compose", "reply_subject"]
