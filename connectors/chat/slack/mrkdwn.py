"""Slack's mrkdwn, both ways: agents' Markdown out, customers' mrkdwn in as plain text.

Slack reads its own dialect (``*bold*``, ``_italic_``, ``~strike~``, ``<url|label>``) and
treats ``&``, ``<`` and ``>`` as control characters. Agents write ordinary Markdown; the inbox
shows customers' words as plain text. Code spans and blocks pass through untouched, since Slack
renders them as code too.
"""

from __future__ import annotations

import re

from conversation.voice.markup import markdown_to_mrkdwn

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
