"""Slack's mrkdwn, both ways: agents' Markdown out, customers' mrkdwn in as plain text.

Slack reads its own dialect (``*bold*``, ``_italic_``, ``~strike~``, ``<url|label>``) and
treats ``&``, ``<`` and ``>`` as control characters. Agents write ordinary Markdown; the inbox
shows customers' words as plain text. Code spans and blocks pass through untouched, since Slack
renders them as code too.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"```.*?```", re.DOTALL)
_CODE = re.compile(r"`[^`\n]+`")
_LINK = re.compile(r"\[([^\]\n]+)\]\((\S+?)\)")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC = re.compile(r"(?<![*\w])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![*\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+", re.MULTILINE)
# Placeholders use characters no one types, so protected spans cannot collide with text.
_HOLD = "\ue000{}\ue001"
_HELD = re.compile("\ue000(\\d+)\ue001")


def markdown_to_mrkdwn(text: str) -> str:
    """Agents' Markdown as Slack mrkdwn."""
    held: list[str] = []

    def hold(value: str) -> str:
        held.append(value)
        return _HOLD.format(len(held) - 1)

    # Code first: nothing inside it is formatting, and Slack wants its content unescaped
    # except for its three control characters.
    text = _FENCE.sub(lambda m: hold(_escape(m.group(0))), text)
    text = _CODE.sub(lambda m: hold(_escape(m.group(0))), text)
    text = _LINK.sub(lambda m: hold(f"<{m.group(2)}|{_escape(m.group(1))}>"), text)
    text = _escape(text)
    text = _HEADING.sub(lambda m: hold(f"*{m.group(1)}*"), text)
    text = _BOLD.sub(lambda m: hold(f"*{m.group(2)}*"), text)
    text = _ITALIC.sub(lambda m: f"_{m.group(1)}_", text)
    text = _STRIKE.sub(lambda m: f"~{m.group(1)}~", text)
    text = _BULLET.sub(lambda m: f"{m.group(1)}• ", text)
    while _HELD.search(text):  # held spans may contain others (a link inside a heading)
        text = _HELD.sub(lambda m: held[int(m.group(1))], text)
    return text


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
