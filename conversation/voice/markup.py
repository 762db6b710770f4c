"""Agents write Markdown; each channel shows its own dialect of it. One converter, and a
`Dialect` per channel saying how bold, italic, strike, code and links are written there (Slack's
mrkdwn, WhatsApp's formatting, plain text); and HTML for email, block by block.

Code spans and blocks are held aside first, so nothing inside them is read as formatting; so are
links, headings and bold, so the italic pass cannot re-read the asterisks they produce.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass

import nh3

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


# Plain bullets stay "- ": "•" is not GSM-7, and would double an SMS's segment count.
PLAIN = Dialect(fence=lambda s: s.strip("\n"), bullet="- ")
WHATSAPP = Dialect(bold=lambda s: f"*{s}*", italic=lambda s: f"_{s}_", strike=lambda s: f"~{s}~",
                   code=lambda s: f"`{s}`", fence=lambda s: f"```{s}```")


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


SLACK = Dialect(bold=lambda s: f"*{s}*", italic=lambda s: f"_{s}_", strike=lambda s: f"~{s}~",
                code=lambda s: f"`{s}`", fence=lambda s: f"```{s}```", link=lambda label, url: f"<{url}|{label}>",
                escape=_slack_escape)


def _html_link(label: str, url: str) -> str:
    if not url.lower().startswith(("http://", "https://", "mailto:")):
        return f"{label} ({html.escape(url)})"
    return f'<a href="{html.escape(url, quote=True)}">{label}</a>'


_HTML_INLINE = Dialect(bold=lambda s: f"<strong>{s}</strong>", italic=lambda s: f"<em>{s}</em>",
                       strike=lambda s: f"<s>{s}</s>", code=lambda s: f"<code>{s}</code>",
                       fence=lambda s: f"<pre>{s.strip(chr(10))}</pre>", link=_html_link,
                       escape=lambda s: html.escape(s, quote=False), bullet="")
_LIST_ITEM = re.compile(r"^[ \t]*[-*+][ \t]+(.*)$")
_BLANK_LINES = re.compile(r"\n[ \t]*\n+")
_ALLOWED_TAGS = {"p", "br", "strong", "em", "s", "a", "ul", "li", "code", "pre"}


def markdown_to_html(text: str) -> str:
    """Simple, sanitized HTML: paragraphs, line breaks, lists, bold, italic, links, code."""
    fences: list[str] = []

    def hold_fence(m: re.Match[str]) -> str:
        fences.append(convert(m.group(0), _HTML_INLINE))
        return f"\ue002{len(fences) - 1}\ue003"

    text = _FENCE.sub(hold_fence, text.strip())
    blocks: list[str] = []
    for block in _BLANK_LINES.split(text):
        lines = [line for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        if all(_LIST_ITEM.match(line) for line in lines):
            items = "".join(f"<li>{convert(_LIST_ITEM.match(line).group(1), _HTML_INLINE)}</li>"  # type: ignore[union-attr]
                            for line in lines)
            blocks.append(f"<ul>{items}</ul>")
        elif len(lines) == 1 and re.fullmatch("\ue002\\d+\ue003", lines[0].strip()):
            blocks.append(lines[0].strip())
        else:
            blocks.append("<p>" + "<br>".join(convert(line, _HTML_INLINE) for line in lines) + "</p>")
    out = "\n".join(blocks)
    out = re.sub("\ue002(\\d+)\ue003", lambda m: fences[int(m.group(1))], out)
    return nh3.clean(out, tags=_ALLOWED_TAGS, attributes={"a": {"href"}}, url_schemes={"http", "https", "mailto"})


def markdown_to_mrkdwn(text: str) -> str:
    """Slack's mrkdwn: *bold*, _italic_, ~strike~, <url|label>, with & < > escaped."""
    return convert(text, SLACK)


def markdown_to_plain(text: str) -> str:
    """The words without the marks, for channels that show text as typed."""
    return convert(text, PLAIN)


def markdown_to_whatsapp(text: str) -> str:
    """WhatsApp's own formatting: *bold*, _italic_, ~strike~, `code` and ```blocks```."""
    return convert(text, WHATSAPP)


__all__ = ["PLAIN", "SLACK", "WHATSAPP", "Dialect", "convert", "markdown_to_html", "markdown_to_mrkdwn",
           "markdown_to_plain", "markdown_to_whatsapp"]
