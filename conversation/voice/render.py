"""Every outbound message through one voice: an agent's text or a named intent, rendered for its
channel and locale before it is queued, so the thread shows what the customer received.

In order: the body (the agent's words, literally, or the intent's template), the greeting and
sign-off the channel's tone asks for, emoji where the tone allows none removed, the channel's
format (Slack mrkdwn, WhatsApp, plain, or HTML email with its plain alternative), the brand tag,
and on GSM-safe SMS typographic characters as their GSM-7 equivalents. Then the lint.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2

from conversation.capabilities import Capabilities, TextFormat, TextUnit
from conversation.voice.config import DEFAULT_ANONYMOUS, NEUTRAL, TemplateMapping, Tone, VoiceConfig
from conversation.voice.lint import LintWarning, lint
from conversation.voice.markup import markdown_to_html, markdown_to_mrkdwn, markdown_to_plain, markdown_to_whatsapp
from conversation.voice.templates import Key, Templates

# Typographic characters that would force an SMS into UCS-2, as their GSM-7 equivalents.
GSM_SAFE = str.maketrans({
    "\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-", "\u2026": "...",
    "\u00a0": " ", "\u202f": " ", "\u00ab": '"', "\u00bb": '"', "\u201a": ",", "\u201e": '"',
})
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\uFE0F\u200D]")
_NAME_VARIABLES = ("customer.name", "customer.first_name")


class UnknownIntent(ValueError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(f"no intent {name!r}; the voice has {', '.join(sorted(known))}")
        self.known = sorted(known)


class MissingVariable(ValueError):
    """An intent needs a variable the request did not give."""


class RenderFailed(ValueError):
    """An intent's template failed on the values the request gave (a number where it does sums
    on text, say): said to the agent, never sent half-rendered."""


@dataclass(frozen=True)
class Context:
    """What is known when a message is composed."""

    customer_name: str | None = None
    customer_locale: str | None = None
    tier: str = "standard"
    agent_name: str | None = None
    reference: str = ""
    queue: str | None = None
    channel: str = ""
    variables: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rendered:
    text: str
    locale: str
    html: str | None = None
    composed: str | None = None  # what the agent typed (None for an intent)
    intent: str | None = None
    greeted: bool = False
    warnings: tuple[LintWarning, ...] = ()


class Voice:
    """A loaded voice (or, with no file, the neutral one: text as typed, only formatted)."""

    def __init__(self, config: VoiceConfig | None = None) -> None:
        self.config = config
        self.templates = Templates(config) if config is not None else None

    @property
    def default_locale(self) -> str:
        return self.config.brand.default_locale if self.config is not None else "en"

    @property
    def locales(self) -> tuple[str, ...]:
        return tuple(self.config.brand.locales) if self.config is not None else ("en",)

    def tone(self, channel: str) -> Tone:
        return self.config.tone(channel) if self.config is not None else NEUTRAL

    def locale_for(self, customer_locale: str | None, hint: str | None) -> str:
        """The customer's own locale, else what the channel told, else the brand's default."""
        for candidate in (customer_locale, hint):
            if candidate:
                base = candidate.replace("_", "-").split("-")[0].lower()
                if base in self.locales:
                    return base
        return self.default_locale

    def intents(self) -> list[str]:
        return sorted(self.config.intents) if self.config is not None else []

    def greets(self, channel: str, first_reply: bool) -> bool:
        tone = self.tone(channel)
        return tone.greeting == "always" or (tone.greeting == "first" and first_reply)

    def render(self, *, channel: str, caps: Capabilities, context: Context, locale: str, text: str | None = None,
               intent: str | None = None, first_reply: bool = False, lang: str | None = None) -> Rendered:
        tone = self.tone(channel)
        values = self._values(context, locale)
        body = text if intent is None else self._intent(intent, locale, channel, values)
        parts: list[str] = []
        greeted, missing_name = False, None
        if self.config is not None and self.greets(channel, first_reply):
            key = Key("greeting", tone.register, locale)
            if self.templates is not None and self.templates.has(key):
                parts.append(self.templates.render(key, values))
                greeted = True
                if not context.customer_name and self._uses_name(key):
                    missing_name = values["customer"]["name"]
        parts.append(body or "")
        if self.config is not None and tone.sign_off:
            key = Key("sign_off", tone.register, locale)
            if self.templates is not None and self.templates.has(key):
                parts.append(self.templates.render(key, values))
        markdown = "\n\n".join(p for p in parts if p)
        if self.config is not None and not tone.emoji:
            markdown = _EMOJI.sub("", markdown)
        formats = caps.formats or (TextFormat.PLAIN,)
        sent = _format(markdown, formats[0])
        html = markdown_to_html(markdown) if TextFormat.HTML in formats else None
        if self.config is not None and tone.brand_tag:
            sent += self.config.tag
        if self.config is not None and tone.gsm_safe:
            sent = sent.translate(GSM_SAFE)
        warnings = lint(body or "", sent, caps=caps, sms=caps.text_unit is TextUnit.GSM_SEGMENTS or channel == "sms",
                        locale=locale, banned=self.config.banned if self.config is not None else (),
                        missing_name=missing_name, lang=self._lang(lang))
        return Rendered(text=sent, locale=locale, html=html, composed=text if intent is None else None,
                        intent=intent, greeted=greeted, warnings=tuple(warnings))

    def template_for(self, intent: str, locale: str,
                     context: Context) -> tuple[TemplateMapping, tuple[str, ...]] | None:
        """The approved template an intent maps to, with its parameters filled, if it has one."""
        if self.config is None or intent not in self.config.intents:
            return None
        mapping = self.config.intents[intent].template
        if mapping is None:
            return None
        values = self._values(context, locale)
        params = []
        for path in mapping.parameters:
            value: Any = values
            for part in path.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
            params.append("" if value is None else str(value))
        return mapping, tuple(params)

    def _lang(self, lang: str | None) -> str:
        return self.locale_for(None, lang) if lang else self.default_locale

    def _intent(self, name: str, locale: str, channel: str, values: Mapping[str, Any]) -> str:
        if self.config is None or self.templates is None or name not in self.config.intents:
            raise UnknownIntent(name, self.intents())
        for key in (Key("intent", name, locale, channel), Key("intent", name, locale),
                    Key("intent", name, self.default_locale, channel), Key("intent", name, self.default_locale)):
            if self.templates.has(key):
                try:
                    return self.templates.render(key, values)
                except jinja2.UndefinedError as exc:
                    raise MissingVariable(f"intent {name!r} needs a variable the request did not give: {exc}") from None
                except Exception as exc:  # the sandbox, a filter on the wrong type...
                    raise RenderFailed(f"{key} failed on these variables: "
                                       f"{type(exc).__name__}: {exc}") from None
        raise UnknownIntent(name, self.intents())  # pragma: no cover - parse_voice requires a default text

    def _uses_name(self, key: Key) -> bool:
        assert self.config is not None
        source = self.config.greetings.get(key.name, {}).get(key.locale, "")
        return any(v in source for v in _NAME_VARIABLES)

    def _values(self, context: Context, locale: str) -> dict[str, Any]:
        anonymous = (self.config.brand.anonymous if self.config is not None else {}).get(locale) \
            or DEFAULT_ANONYMOUS.get(locale, DEFAULT_ANONYMOUS["en"])
        name = context.customer_name or anonymous
        return {
            "customer": {"name": name, "first_name": (context.customer_name or anonymous).split()[0],
                         "locale": locale, "tier": context.tier},
            "agent": {"name": context.agent_name or (self.config.brand.name if self.config else "")},
            "conversation": {"reference": context.reference, "queue": context.queue, "channel": context.channel},
            "brand": {"name": self.config.brand.name if self.config is not None else ""},
            "variables": dict(context.variables),
        }


def _format(markdown: str, fmt: TextFormat) -> str:
    if fmt is TextFormat.SLACK_MRKDWN:
        return markdown_to_mrkdwn(markdown)
    if fmt is TextFormat.WHATSAPP:
        return markdown_to_whatsapp(markdown)
    if fmt is TextFormat.MARKDOWN:
        return markdown
    return markdown_to_plain(markdown)  # PLAIN, and HTML's plain-text alternative


__all__ = ["GSM_SAFE", "Context", "MissingVariable", "RenderFailed", "Rendered", "UnknownIntent", "Voice"]
