"""Inbound email: raw RFC 5322 bytes -> what the gateway records. `parse_email` is pure (no I/O).

API (for the IMAP poller and the SMTP listener)
-----------------------------------------------
The one call most callers need; it returns once everything is durably recorded::

    ids = await ingest_email(raw, ctx, settings, received_at_ms=...)

It parses, stores the files (`ctx.keep_attachment`), then records (`ctx.record`). Mail that can
never be used is dead-lettered (`ctx.dead_letter`) and `[]` returned: the caller moves on (advance
the IMAP cursor, answer 250). Anything else it raises (Redis down: RedisError, OSError...) means
nothing was recorded: do not advance the cursor / answer 451, and try again later. Duplicates
(the same Message-ID on this instance) are deduplicated by `record` and come back as None.

The same in two phases, for a caller that wants to look in between::

    parsed = parse_email(raw, instance=ctx.instance, settings=settings, received_at_ms=...)
    #        ^ raises MalformedPayload for unusable mail (no sender address at all, not an email,
    #          a loop from our own address)
    result = await parsed.keep(ctx)  # ctx.keep_attachment(name, type, data) per file -> ParseResult
    await ctx.record(result)

`ParsedEmail` fields: `message_id` (the Message-ID with its angle brackets, or a stable
"<sha256-of-the-raw-bytes@omnigateway.invalid>" when the mail has none, so a re-read dedupes),
`message` (the customer's InboundMessage, None for a delivery report), `statuses` (delivery
reports: a bounce is FAILED for OUR original Message-ID, the one `send()` returned), `files` (what
`keep` stores, in order: attachments, the sanitized "message.html", the whole "original.eml") and
`result(urls)`, which binds one stored URL per file without I/O.

What the parse decides
----------------------
- Sender: the From address, lowercased; Reply-To instead when it is one person's address (not a
  no-reply, role, list or our own address). Mail from our own address is refused as a loop.
- Text: the new part only: quoted history and signatures stripped (mail-parser-reply) from the
  plain part, or from a text rendering of an HTML-only mail. The HTML itself is kept sanitized
  (nh3) as "message.html"; the full original as "original.eml" (message/rfc822).
- Attachments: every file part (any MIME nesting), with name, type and size; one over
  max_attachment_bytes is recorded with `refused` instead of a URL, never dropped silently.
- Threading: `references` = References then In-Reply-To message ids, oldest first; `link_sender`
  from link_reply_senders; `subject` kept as written (decoded).
- Loops: Auto-Submitted other than "no", Precedence bulk/list/junk, List-* headers,
  X-Autoreply/X-Autorespond, a null or MAILER-DAEMON sender, or an out-of-office subject make
  `auto_reply=True`: stored, but they never reopen a thread nor get an automatic answer.
- Reports: multipart/report delivery-status -> StatusUpdate FAILED (Action: failed, with the
  Status code and Diagnostic-Code as the error) or DELIVERED, for the original Message-ID;
  disposition-notification "displayed" -> READ. A report whose original cannot be found is kept
  as an automatic message instead, so nothing is lost.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser, HeaderParser
from typing import NamedTuple

import msgspec

from connectors.base import MalformedPayload, ParseResult, PollContext
from connectors.email.headers import (
    _sender,
    _unescape,
    automatic_reason,
    first_message_id,
    header_addresses,
    header_text,
    message_ids,
    references,
    synthetic_message_id,
)
from connectors.email.htmltext import html_to_text, sanitize
from connectors.email.quoting import strip_quoted
from connectors.email.settings import EmailSettings
from conversation.model import Attachment, DeliveryStatus, Identity, InboundMessage, StatusUpdate

CHANNEL = "email"
ORIGINAL_NAME = "original.eml"
HTML_NAME = "message.html"

_ASCII_LABELS = {"us-ascii", "ascii", "ansi_x3.4-1968", "646"}
# WHATWG: a document labelled Latin-1 is decoded as Windows-1252 (which mail clients really send:
# curly quotes and the euro sign live in 0x80-0x9F, which Latin-1 leaves as control codes).
_LATIN1_LABELS = {"iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "cp819", "iso_8859-1", "windows-1252"}
_PARSER = BytesParser(policy=policy.default)


class FileToKeep(NamedTuple):
    name: str | None
    content_type: str
    data: bytes


class ParsedEmail(NamedTuple):
    """One parsed mail, before its files are stored. See the module docstring."""

    message_id: str
    message: InboundMessage | None
    statuses: tuple[StatusUpdate, ...]
    files: tuple[FileToKeep, ...]

    def result(self, urls: Sequence[str]) -> ParseResult:
        """The ParseResult to record, with `urls[i]` the stored location of `files[i]`."""
        if len(urls) != len(self.files):
            raise ValueError(f"{len(self.files)} files but {len(urls)} URLs")
        if self.message is None:
            return ParseResult(statuses=self.statuses)
        # parse_email left each file to keep as a placeholder without URL, in the mail's order,
        # between the refused ones; the files follow the same order.
        pending = iter(urls)
        attachments = tuple(
            msgspec.structs.replace(a, url=next(pending)) if not a.url and a.refused is None else a
            for a in self.message.attachments
        )
        message = msgspec.structs.replace(self.message, attachments=attachments)
        return ParseResult(messages=(message,), statuses=self.statuses)

    async def keep(self, ctx: PollContext) -> ParseResult:
        """Store every file through the gateway, then return the ParseResult to record."""
        urls = [await ctx.keep_attachment(f.name, f.content_type, f.data) for f in self.files]
        return self.result(urls)


async def ingest_email(raw: bytes, ctx: PollContext, settings: EmailSettings, *, received_at_ms: int
                       ) -> list[str | None]:
    """Parse, keep files, record durably. Unusable mail is dead-lettered and [] returned."""
    try:
        parsed = parse_email(raw, instance=ctx.instance, settings=settings, received_at_ms=received_at_ms)
    except MalformedPayload as exc:
        await ctx.dead_letter(raw, str(exc))
        return []
    except Exception as exc:
        # The parse is pure: whatever it raised is about this message and would recur on every
        # retry. Dead-lettered, it waits for a fixed parser and a replay instead of blocking mail.
        await ctx.dead_letter(raw, f"the parser failed: {type(exc).__name__}: {exc}")
        return []
    result = await parsed.keep(ctx)
    if not result.messages and not result.statuses:
        return []  # e.g. a "delivery delayed" notice: nothing changes anywhere
    return await ctx.record(result)


def parse_email(raw: bytes, *, instance: str, settings: EmailSettings, received_at_ms: int) -> ParsedEmail:
    """Pure: no I/O. Raises MalformedPayload for mail that can never be used."""
    if not raw.strip():
        raise MalformedPayload("the message is empty")
    try:
        msg = _PARSER.parsebytes(raw)
    except Exception as exc:  # the stdlib parser is lenient; this is a last resort
        raise MalformedPayload(f"not a parseable email: {exc}") from None
    assert isinstance(msg, EmailMessage)
    if not msg.keys():
        raise MalformedPayload("not an email: no header fields")
    message_id = first_message_id(header_text(msg, "Message-ID")) or synthetic_message_id(raw)

    if msg.get_content_type() == "multipart/report":
        statuses = _report(msg, instance, received_at_ms)
        if statuses is not None:
            return ParsedEmail(message_id, None, statuses, ())

    sender, name, from_address = _sender(msg, settings)
    subject = header_text(msg, "Subject")
    automatic = automatic_reason(msg, subject, from_address)

    body = _Body()
    _walk(msg, body)
    html = "\n".join(body.html)
    full_text = "\n\n".join(t.strip("\n") for t in body.plain if t.strip()) or (html_to_text(html) if html else "")
    text = strip_quoted(full_text, settings.reply_languages)

    attachments: list[Attachment] = []
    files: list[FileToKeep] = []

    def add(f: FileToKeep, limit: int) -> None:
        if len(f.data) > limit:
            attachments.append(Attachment(url="", content_type=f.content_type, name=f.name, size=len(f.data),
                                          refused=f"over the {_size(limit)} limit"))
        else:
            attachments.append(Attachment(url="", content_type=f.content_type, name=f.name, size=len(f.data)))
            files.append(f)

    for f in body.files:
        add(f, settings.max_attachment_bytes)
    if html:
        add(FileToKeep(HTML_NAME, "text/html", sanitize(html).encode()), settings.max_message_bytes)
    if settings.keep_original:
        add(FileToKeep(ORIGINAL_NAME, "message/rfc822", raw), settings.max_message_bytes)

    extra = {"from": from_address} if from_address and from_address != sender else {}
    if automatic:
        extra["auto_reason"] = automatic
    message = InboundMessage(
        instance=instance,
        channel=CHANNEL,
        provider_message_id=message_id,
        sender=Identity("email", sender),
        text=text,
        attachments=tuple(attachments),
        sender_name=name or None,
        received_at_ms=received_at_ms,
        subject=subject if subject is not None else "",
        references=references(msg),
        link_sender=settings.link_reply_senders,
        auto_reply=automatic is not None,
        extra=extra,
    )
    return ParsedEmail(message_id, message, (), tuple(files))


# --- bodies and files ---------------------------------------------------------------------------


class _Body:
    def __init__(self) -> None:
        self.plain: list[str] = []
        self.html: list[str] = []
        self.files: list[FileToKeep] = []


def _walk(part: Message, body: _Body) -> None:
    ctype = part.get_content_type()
    if ctype in ("message/rfc822", "message/global"):
        # A forwarded message: kept whole, as the customer sent it.
        inner = part.get_payload()
        data = inner[0].as_bytes() if isinstance(inner, list) and inner and isinstance(inner[0], Message) \
            else _payload(part)
        body.files.append(FileToKeep(_filename(part) or "forwarded.eml", "message/rfc822", data))
        return
    if part.is_multipart():
        children = [p for p in part.get_payload() if isinstance(p, Message)]
        if ctype == "multipart/alternative":
            _alternative(children, body)
        else:
            for child in children:
                _walk(child, body)
        return
    disposition = part.get_content_disposition()
    name = _filename(part)
    if ctype in ("text/plain", "text/html") and disposition != "attachment" and not name:
        (body.plain if ctype == "text/plain" else body.html).append(decode_text(part))
        return
    data = _payload(part)
    if not data and not name:
        return  # an empty part that is no file (e.g. an empty text/enriched alternative)
    body.files.append(FileToKeep(name, ctype, data))


def _alternative(children: list[Message], body: _Body) -> None:
    """Alternatives render one content: take the plain text from the first that has it and the
    HTML from the richest (last) that has it, with the files of the ones taken."""
    versions = []
    for child in children:
        version = _Body()
        _walk(child, version)
        versions.append(version)
    plain = next((v for v in versions if v.plain), None)
    html = next((v for v in reversed(versions) if v.html), None)
    taken: list[_Body] = []
    for v in (plain, html):
        if v is not None and all(v is not t for t in taken):
            taken.append(v)
    if not taken and versions:
        taken = [versions[-1]]
    for v in taken:
        if v is plain:
            body.plain += v.plain
        if v is html:
            body.html += v.html
        body.files += v.files


def _payload(part: Message) -> bytes:
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _filename(part: Message) -> str | None:
    try:
        raw = part.get_filename()
    except Exception:
        return None
    if not raw:
        return None
    # Only the last path component, no control characters: names are shown and downloaded.
    name = _unescape(raw).replace("\\", "/").rpartition("/")[2]
    name = "".join(ch for ch in name if ch.isprintable()).strip().lstrip(".")
    return name[:255] or None


def decode_text(part: Message) -> str:
    return decode_bytes(_payload(part), part.get_content_charset())


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Text in the declared charset, with the fallbacks real mail needs: ASCII-labelled parts
    that are UTF-8, Latin-1 labels that mean Windows-1252, unknown labels, invalid bytes."""
    label = (charset or "").strip().lower()
    if label in _LATIN1_LABELS:
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            return data.decode("latin-1")  # the five bytes cp1252 leaves undefined
    if label and label not in _ASCII_LABELS:
        try:
            codecs.lookup(label)
            return data.decode(label)
        except (LookupError, UnicodeDecodeError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


# --- delivery and read reports ------------------------------------------------------------------


def _report(msg: EmailMessage, instance: str, at_ms: int) -> tuple[StatusUpdate, ...] | None:
    """Status updates from a multipart/report, or None when it is not one we can attribute."""
    report_type = str(msg.get_param("report-type", "", header="content-type") or "").lower()
    original: str | None = None
    blocks: list[Message] = []
    for part in msg.iter_parts():
        ctype = part.get_content_type()
        if ctype in ("message/delivery-status", "message/global-delivery-status",
                     "message/disposition-notification", "message/global-disposition-notification"):
            blocks = _field_blocks(part)
        elif ctype in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                original = first_message_id(header_text(inner[0], "Message-ID"))
        elif ctype in ("text/rfc822-headers", "message/global-headers"):
            headers = HeaderParser(policy=policy.default).parsestr(decode_text(part))
            original = first_message_id(header_text(headers, "Message-ID"))
    if report_type == "disposition-notification":
        fields = blocks[0] if blocks else None
        original = first_message_id(header_text(fields, "Original-Message-ID") if fields else None) or original
        disposition = (header_text(fields, "Disposition") or "").lower() if fields else ""
        if original is None:
            return None
        if "displayed" in disposition.rpartition(";")[2]:
            return (StatusUpdate(instance, original, DeliveryStatus.READ, at_ms=at_ms),)
        return ()
    if report_type != "delivery-status":
        return None
    if original is None:
        # Some servers quote only In-Reply-To/References of the bounce itself.
        refs = references(msg)
        original = refs[-1] if refs else None
    if original is None:
        return None
    failures: list[str] = []
    delivered = False
    for fields in blocks[1:]:  # the first block is per-message, the rest per-recipient
        action = (header_text(fields, "Action") or "").lower()
        if action == "failed":
            failures.append(_failure_reason(fields))
        elif action == "delivered":
            delivered = True
    if failures:
        return (StatusUpdate(instance, original, DeliveryStatus.FAILED, error="; ".join(failures), at_ms=at_ms),)
    if delivered:
        return (StatusUpdate(instance, original, DeliveryStatus.DELIVERED, at_ms=at_ms),)
    return ()  # delayed, relayed, expanded: nothing to change yet


def _field_blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    # Types the stdlib does not split into blocks (the message/global-* ones): split by hand.
    text = decode_text(part).replace("\r\n", "\n")
    return [HeaderParser(policy=policy.default).parsestr(chunk) for chunk in re.split(r"\n\s*\n", text)
            if chunk.strip()]


def _failure_reason(fields: Message) -> str:
    status = header_text(fields, "Status") or ""
    diagnostic = header_text(fields, "Diagnostic-Code") or ""
    kind, semi, rest = diagnostic.partition(";")
    if semi and kind.strip().lower() in ("smtp", "x-postfix", "x-unix", "x-local"):
        diagnostic = rest.strip()
    recipient = (header_text(fields, "Final-Recipient") or header_text(fields, "Original-Recipient") or "")
    recipient = recipient.rpartition(";")[2].strip()
    reason = " ".join(p for p in (status, diagnostic) if p) or "delivery failed"
    return f"{reason} ({recipient})" if recipient and recipient.lower() not in reason.lower() else reason


def _size(n: int) -> str:
    mb = 1024 * 1024
    if n >= mb and n % mb == 0:
        return f"{n // mb} MB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KB"
    return f"{n} bytes"


__all__ = [
    "FileToKeep",
    "ParsedEmail",
    "decode_bytes",
    "header_addresses",
    "header_text",
    "ingest_email",
    "message_ids",
    "parse_email",
    "strip_quoted",
    "synthetic_message_id",
]
