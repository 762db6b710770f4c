"""Reading an email's headers: decoded text and addresses, Message-IDs and references, who wrote
it, and whether it is an automatic message that must never be answered."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from email import policy
from email.headerregistry import Address
from email.message import Message

from connectors.base import MalformedPayload
from connectors.email.settings import EmailSettings

SYNTHETIC_DOMAIN = "omnigateway.invalid"
MAX_REFERENCES = 20

_MSGID = re.compile(r"<[^<>\s]+>")
_OOO_SUBJECT = re.compile(
    r"^\s*(?:auto(?:matic)?[ -]?(?:reply|response|antwort)|autoreply|out of (?:the )?office|auto:"
    r"|abwesenheitsnotiz|réponse automatique|respuesta automática|risposta automatica"
    r"|automatisch antwoord|resposta automática)",
    re.IGNORECASE,
)
# Local parts that are machines or shared boxes, not a person to answer.
_NOT_A_PERSON = re.compile(
    r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|mailer[-_.]?daemon|postmaster|bounces?|notifications?"
    r"|auto[-_.]?reply)(?:[-+_.].*)?$",
    re.IGNORECASE,
)


def _raw_header(msg: Message, name: str) -> str | None:
    lname = name.lower()
    for key, value in msg.raw_items():
        if key.lower() == lname:
            return _unescape(str(value))
    return None


def _unescape(value: str) -> str:
    """Header bytes that were not ASCII (raw UTF-8 or Latin-1 sent without encoded words) reach
    us as surrogate escapes; read them as UTF-8, else Windows-1252, rather than as U+FFFD."""
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def header_text(msg: Message, name: str) -> str | None:
    """An unstructured header decoded (encoded words, raw 8-bit), unfolded; None when absent."""
    raw = _raw_header(msg, name)
    if raw is None:
        return None
    try:
        value = str(policy.default.header_factory(name, raw))
    except Exception:  # a header the stdlib cannot parse is still better shown raw than lost
        value = raw
    return " ".join(value.split())


def header_addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    """(display name, lowercase address) of each usable address in a header."""
    raw = _raw_header(msg, name)
    if raw is None:
        return []
    try:
        addresses: Iterable[Address] = policy.default.header_factory(name, raw).addresses
    except Exception:
        return []
    out = []
    for a in addresses:
        if a.username and a.domain and not any(ch.isspace() for ch in a.addr_spec):
            out.append((" ".join(a.display_name.split()), f"{a.username}@{a.domain}".lower()))
    return out


def first_message_id(value: str | None) -> str | None:
    ids = message_ids(value)
    return ids[0] if ids else None


def message_ids(value: str | None) -> list[str]:
    """The <id@host> tokens of a Message-ID / In-Reply-To / References value, in order."""
    if not value:
        return []
    found = _MSGID.findall(value)
    if found:
        return list(found)
    # Some clients drop the angle brackets; an id still needs its "@".
    return [f"<{token.strip('<>')}>" for token in value.split() if "@" in token]


def synthetic_message_id(raw: bytes) -> str:
    """A stable id for mail without a Message-ID, so that reading it twice dedupes."""
    return f"<{hashlib.sha256(raw).hexdigest()[:40]}@{SYNTHETIC_DOMAIN}>"


def references(msg: Message) -> tuple[str, ...]:
    """References then In-Reply-To, oldest first, each once; the last MAX_REFERENCES."""
    seen: dict[str, None] = {}
    for name in ("References", "In-Reply-To"):
        for mid in message_ids(header_text(msg, name)):
            seen.pop(mid, None)
            seen[mid] = None
    return tuple(seen)[-MAX_REFERENCES:]


def _sender(msg: Message, settings: EmailSettings) -> tuple[str, str, str | None]:
    """(identity address, display name, From address)."""
    from_ = header_addresses(msg, "From") or header_addresses(msg, "Sender")
    reply_to = header_addresses(msg, "Reply-To")
    from_address = from_[0][1] if from_ else None
    if from_address == settings.address:
        raise MalformedPayload(f"the message is from our own address {settings.address}: a mail loop")
    # Reply-To is where the writer asked to be answered (a web form sending as no-reply on a
    # customer's behalf); honoured only when it names exactly one person.
    if len(reply_to) == 1 and is_person(reply_to[0][1], msg, settings):
        name = reply_to[0][0] or (from_[0][0] if from_ and from_[0][1] == reply_to[0][1] else "")
        return reply_to[0][1], name, from_address
    if from_:
        return from_[0][1], from_[0][0], from_address
    raise MalformedPayload("the message has no sender address (From, Sender or Reply-To)")


def is_person(address: str, msg: Message, settings: EmailSettings) -> bool:
    local = address.partition("@")[0]
    if address == settings.address or _NOT_A_PERSON.match(local):
        return False
    list_post = header_text(msg, "List-Post") or ""
    return address not in list_post.lower()


def automatic_reason(msg: Message, subject: str | None, from_address: str | None) -> str | None:
    """Why this mail was sent by a machine (never to be answered automatically), or None."""
    auto_submitted = (header_text(msg, "Auto-Submitted") or "").split(";")[0].strip().lower()
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted}"
    precedence = (header_text(msg, "Precedence") or "").strip().lower()
    if precedence in ("bulk", "list", "junk"):
        return f"Precedence: {precedence}"
    for key in msg:
        if key.lower().startswith("list-"):
            return f"{key} header"
    for key in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        if msg.get(key) is not None:
            return f"{key} header"
    return_path = _raw_header(msg, "Return-Path")
    if return_path is not None and return_path.strip() in ("<>", ""):
        return "null sender"
    if from_address and from_address.partition("@")[0] in ("mailer-daemon", "postmaster"):
        return "MAILER-DAEMON sender"
    if subject and _OOO_SUBJECT.match(subject):
        return "out-of-office subject"
    return None
