"""Slack's mrkdwn, both ways: agents' Markdown out, customers' mrkdwn in as plain text.

Slack reads its own dialect (``*bold*``, ``_italic_``, ``~strike~``, ``<url|label>``) and
treats ``&``, ``<`` and ``>`` as control characters. Agents write ordinary Markdown; the inbox
shows customers' words as plain text. Code spans and blocks pass through untouched, since Slack
renders them as code too.
"""

from __future__ import annotations

import re

from connectors.markup import Dialect, convert


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


SLACK = Dialect(bold=lambda s: f"*{s}*", italic=lambda s: f"_{s}_", strike=lambda s: f"~{s}~",
                code=lambda s: f"`{s}`", fence=lambda s: f"```{s}```", link=lambda label, url: f"<{url}|{label}>",
                escape=_escape)


def markdown_to_mrkdwn(text: str) -> str:
    """Agents' Markdown as Slack mrkdwn."""
    return convert(text, SLACK)


_ANGLE = re.compile(r"<([^<>]+)>")


def mrkdwn_to_text(text: str) -> str:
    """A customer's Slack message as plain text: mentions and links readable, entities decoded."""

    def angle(m: re.Match[str]) -> str:
        inner = m.group(1)
        target, _, label = inner.partition("|")
        if target.startswith(("@", "#")):  # <@U123>, <#C123|general>
            return f"{target[0]}{label}" if label else target
        if target.startswith("!"):  # <!here>, <!subteam^S123|@team>, <!date^...|fallback>
            if label:
                return label
            return "@" + target[1:].split("^")[0]
        if label and label != target:
            return f"{label} ({target.removeprefix('mailto:')})"
        return target.removeprefix("mailto:")

    text = _ANGLE.sub(angle, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


__all__ = ["markdown_to_mrkdwn", "mrkdwn_to_text"]
