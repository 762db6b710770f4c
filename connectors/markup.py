"""Agents write Markdown; each channel shows its own dialect of it. One converter, and a
`Dialect` per channel saying how bold, italic, strike, code and links are written there (Slack's
mrkdwn, WhatsApp's formatting, plain text).

Code spans and blocks are held aside first, so nothing inside them is read as formatting; so are
links, headings and bold, so the italic pass cannot re-read the asterisks they produce.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_FENCE = re.compile(r"```(.*?)```", re.DOTALL)
_CODE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\[([^\]\n]+)\]\((\S+?)\)")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC_STAR = re.compile(r"(?<![*\w])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![*\w])")
_ITALIC_UNDERSCORE = re.compile(r"(?<![_\w])_(?=\S)([^_\n]+?)(?<=\S)_(?![_\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+", re.MULTILINE)
# Placeholders use characters no one types, so protected spans cannot collide with text.
_HOLD = "\ue000{}\ue001"
_HELD = re.compile("\ue000(\\d+)\ue001")


def _same(text: str) -> str:
    return text


def _readable_link(label: str, url: str) -> str:
    return url if label == url else f"{label} ({url})"


@dataclass(frozen=True)
class Dialect:
    bold: Callable[[str], str] = _same
    italic: Callable[[str], str] = _same
    strike: Callable[[str], str] = _same
    code: Callable[[str], str] = _same  # the span's content, already escaped
    fence: Callable[[str], str] = _same  # the block's content between the fences, escaped
    link: Callable[[str, str], str] = _readable_link  # (label, url)
    escape: Callable[[str], str] = _same  # what the channel would read as markup itself
    bullet: str = "• "


def convert(text: str, dialect: Dialect) -> str:
    held: list[str] = []
    esc = dialect.escape

    def hold(value: str) -> str:
        held.append(value)
        return _HOLD.format(len(held) - 1)

    text = _FENCE.sub(lambda m: hold(dialect.fence(esc(m.group(1)))), text)
    text = _CODE.sub(lambda m: hold(dialect.code(esc(m.group(1)))), text)
    text = _LINK.sub(lambda m: hold(dialect.link(esc(m.group(1)), m.group(2))), text)
    text = esc(text)
    text = _HEADING.sub(lambda m: hold(dialect.bold(m.group(1))), text)
    text = _BOLD.sub(lambda m: hold(dialect.bold(m.group(2))), text)
    text = _ITALIC_STAR.sub(lambda m: hold(dialect.italic(m.group(1))), text)
    text = _ITALIC_UNDERSCORE.sub(lambda m: hold(dialect.italic(m.group(1))), text)
    text = _STRIKE.sub(lambda m: dialect.strike(m.group(1)), text)
    text = _BULLET.sub(lambda m: f"{m.group(1)}{dialect.bullet}", text)
    while _HELD.search(text):  # held spans may contain others (a link inside a heading)
        text = _HELD.sub(lambda m: held[int(m.group(1))], text)
    return text


PLAIN = Dialect(fence=lambda s: s.strip("\n"))
WHATSAPP = Dialect(bold=lambda s: f"*{s}*", italic=lambda s: f"_{s}_", strike=lambda s: f"~{s}~",
                   code=lambda s: f"`{s}`", fence=lambda s: f"```{s}```")


def markdown_to_plain(text: str) -> str:
    """The words without the marks, for channels that show text as typed."""
    return convert(text, PLAIN)


def markdown_to_whatsapp(text: str) -> str:
    """WhatsApp's own formatting: *bold*, _italic_, ~strike~, `code` and ```blocks```."""
    return convert(text, WHATSAPP)


__all__ = ["PLAIN", "WHATSAPP", "Dialect", "convert", "markdown_to_plain", "markdown_to_whatsapp"]
