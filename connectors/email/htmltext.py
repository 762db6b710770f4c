"""HTML for email, both ways: a readable text version of a customer's HTML mail (for agents and
search), nh3 sanitizing of what is kept, and simple HTML for our plain-text replies.

Text extraction is a small html.parser walk rather than a dependency: the sanitizing, which is
where the risk is, is nh3's; this only decides where line breaks go.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import nh3

# Elements that start a new line in rendered mail.
_BLOCK = frozenset({
    "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "fieldset", "figcaption",
    "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "li", "main", "nav", "ol",
    "p", "pre", "section", "table", "tr", "ul",
})
# Those that stand apart as paragraphs (an empty line around them); the rest only break lines,
# as Gmail's one <div> per line does.
_PARAGRAPH = frozenset({"p", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "pre"})
_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript", "xml", "o:p"})
# Outlook puts its quoted-message header after a rule; the underscores are what plain-text Outlook
# writes there, so the reply stripper finds the same separator in both renderings.
_OUTLOOK_RULE = "_" * 32
_SPACE = re.compile(r"[ \t\r\n\f\u00a0\u200b]+")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)\]]", re.IGNORECASE)
_ALLOWED_SCHEMES = {"http", "https", "mailto"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.line = ""
        self.skip = 0
        self.quote = 0
        self.pre = 0
        self.links: list[str | None] = []

    def _break(self, blank: bool = False) -> None:
        """End the current line; `blank` also leaves an empty line (between paragraphs)."""
        text = self.line.strip(" ")
        prefix = "> " * self.quote
        if text:
            self.lines.append(prefix + text)
        if blank and self.lines and self.lines[-1].strip("> "):
            self.lines.append(prefix.rstrip())
        self.line = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
            return
        if tag == "br":
            # A <br> on an empty line is an empty line (Gmail and Outlook write <div><br></div>).
            self._break(blank=not self.line.strip())
        elif tag == "hr":
            self._break(blank=True)
            self.lines.append("> " * self.quote + _OUTLOOK_RULE)
        elif tag in _BLOCK:
            self._break(blank=tag in _PARAGRAPH)
            if tag == "blockquote":
                self.quote += 1
            elif tag == "li":
                self.line = "- "
            elif tag == "pre":
                self.pre += 1
        elif tag in ("td", "th") and self.line.strip():
            self.line += " "
        if tag == "a":
            self.links.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if tag == "a" and self.links:
            href = self.links.pop()
            if href and href.split(":", 1)[0].lower() in ("http", "https") and href not in self.line:
                self.line += f" ({href})"
        if tag in _BLOCK:
            self._break(blank=tag in _PARAGRAPH)
            if tag == "blockquote":
                self.quote = max(0, self.quote - 1)
            elif tag == "pre":
                self.pre = max(0, self.pre - 1)

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre:
            first, *rest = data.split("\n")
            self.line += first
            for more in rest:
                self._break()
                self.line = more
            return
        self.line += _SPACE.sub(" ", data)

    def text(self) -> str:
        self._break()
        while self.lines and not self.lines[-1].strip("> "):
            self.lines.pop()
        return "\n".join(self.lines).strip("\n")


def html_to_text(markup: str) -> str:
    """The text an HTML mail shows, with paragraphs and quotes ("> ") kept as lines."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    return parser.text()


def sanitize(markup: str) -> str:
    """Safe to show in an agent's browser: no scripts, handlers, styles' code or odd URL schemes."""
    return nh3.clean(markup, url_schemes=_ALLOWED_SCHEMES, link_rel="noopener noreferrer nofollow")


def text_to_html(text: str) -> str:
    """Simple HTML for a plain-text reply: escaped, paragraphs as <p>, lines as <br>, URLs as links."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip()) if p.strip()]
    body = "\n".join(f"<p>{'<br>'.join(_linkify(line) for line in p.splitlines())}</p>" for p in paragraphs)
    return sanitize(f"<div>{body}</div>")


def _linkify(line: str) -> str:
    out: list[str] = []
    last = 0
    for m in _URL.finditer(line):
        out.append(html.escape(line[last:m.start()]))
        url = m.group(0)
        href = url if "://" in url else f"https://{url}"
        out.append(f'<a href="{html.escape(href)}">{html.escape(url)}</a>')
        last = m.end()
    out.append(html.escape(line[last:]))
    return "".join(out)


__all__ = ["html_to_text", "sanitize", "text_to_html"]
