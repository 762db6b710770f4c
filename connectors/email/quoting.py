"""The newest part of a reply: quoted history, signatures and disclaimers stripped.

mail-parser-reply does most of it, for the languages given (the brand's: es and en by default).
Its Spanish "wrote" pattern wants two blanks before "escribió:", so Gmail's Spanish header
("El dom, 22 nov 2026 a las 9:14, Soporte (<soporte@acme.example>) escribió:") slips through;
`_WROTE` below recognises those headers first, also when the client wrapped them over two lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mailparser_reply import EmailMessage as ReplyMessage

# "On <date>, <who> wrote:" in the languages whose library pattern misses real clients' headers.
_WROTE = {
    "es": re.compile(r"^[ \t>]*El\s[^\r\n]+?(?:\r?\n[^\r\n]+?)?\sescribi(?:ó|o):[ \t\r]*$", re.MULTILINE),
}


def _before_wrote_header(text: str, languages: Sequence[str]) -> str | None:
    """The text before the first quoted-history header we recognise ourselves, or None."""
    cuts = [m.start() for lang in languages if (p := _WROTE.get(lang)) and (m := p.search(text))]
    return text[:min(cuts)] if cuts else None


# Signature markers that are certain ("-- ", "Sent from my iPhone"). Word openers ("Thanks,",
# "Best regards") are trusted only when what follows looks like a sign-off: a name at most on the
# opener's line, then a few short lines; "Thanks, but the parcel is damaged." is news, not a
# signature.
_SURE_SIGNATURE = re.compile(r"^\s*(?:[-_]{2}|sent from|get outlook)", re.IGNORECASE)
_OPENER = re.compile(r"^\W*(?:best regards|kind regards|regards|thanks|thank you|best|all the best)\b\W*(.*)$",
                     re.IGNORECASE)


def _is_signature(block: str) -> bool:
    if _SURE_SIGNATURE.match(block):
        return True
    lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
    if not lines:
        return False
    opener = _OPENER.match(lines[0])
    rest = opener.group(1) if opener else lines[0]
    if len(rest.split()) > 3 or rest.rstrip().endswith((".", "?", "!")):
        return False
    return len(lines) <= 10 and all(len(line) <= 80 for line in lines[1:])


def strip_quoted(text: str, languages: Sequence[str] = ("es", "en")) -> str:
    """The newest reply of a mail body: without quoted history, signature and disclaimers."""
    if not text.strip():
        return ""
    head = _before_wrote_header(text, languages)
    if head is not None and head.strip():
        text = head  # the history after the header is gone; the library still strips signatures
    parsed = ReplyMessage(text=text, languages=list(languages), keep_hyphen_lists=True).read()
    if not parsed.replies:
        return text.strip()
    latest = parsed.replies[0]
    if len(parsed.replies) == 1 and not latest.signatures and not latest.disclaimers:
        return text.strip()  # nothing to strip: keep the writer's own layout (indentation too)
    content = latest.content
    for disclaimer in latest.disclaimers:
        content = content.replace(disclaimer, "")
    signature = latest.signatures
    if signature and _is_signature(signature):
        content = content.replace(signature, "")
    if latest.headers:
        content = content.replace(latest.headers, "")
    content = content.strip()
    # A mail that is only quoted history (or only a signature) still says something.
    return content or text.strip()


__all__ = ["strip_quoted"]
