"""The brand voice as configured in voice.toml: the brand, a tone profile per channel, greetings
and sign-offs per register and locale, banned phrases, and named intents.

Loading never half-succeeds: a file that does not parse, a key that does not fit, or a template
that does not render against a sample context raises VoiceError naming the file, the line where
one is known, and the reason, so a bad file stops the start (and `check-config`) before any
customer reads a broken message.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

Register = Literal["formal", "neutral", "conversational"]
GreetingRule = Literal["always", "first", "never"]
REGISTERS: tuple[Register, ...] = ("formal", "neutral", "conversational")
# What every brand can send by name; a brand may add its own, and override these texts.
STANDARD_INTENTS = ("acknowledge", "out_of_hours", "waiting_on_customer", "escalated", "resolved", "survey",
                    "window_closed")


class VoiceError(ValueError):
    """The voice file cannot be used: `str()` says where and why."""


class Brand(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    default_locale: str = "en"
    locales: list[str] = msgspec.field(default_factory=lambda: ["en"])
    # Ends messages on channels whose tone has brand_tag; default " — <name>".
    tag: str | None = None
    # Said instead of the customer's name when it is not known yet, per locale.
    anonymous: dict[str, str] = msgspec.field(default_factory=dict)


class Tone(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    register: Register = "neutral"
    greeting: GreetingRule = "never"
    sign_off: bool = False
    brand_tag: bool = False
    emoji: bool = True
    gsm_safe: bool = False


NEUTRAL = Tone()


class Banned(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    locale: str
    phrase: str
    suggestion: str | None = None


class TemplateMapping(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An intent sent as an approved template where the window is closed: its name, language
    (default: the message's locale) and the context paths of its parameters in order."""

    name: str
    language: str | None = None
    parameters: list[str] = msgspec.field(default_factory=list)


class Intent(msgspec.Struct, frozen=True):
    name: str
    texts: dict[str, str]  # locale -> template source
    channels: dict[str, dict[str, str]]  # channel -> locale -> template source
    template: TemplateMapping | None = None


class VoiceFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    brand: Brand
    tone: dict[str, Tone] = msgspec.field(default_factory=dict)
    greetings: dict[Register, dict[str, str]] = msgspec.field(default_factory=dict)
    sign_offs: dict[Register, dict[str, str]] = msgspec.field(default_factory=dict)
    banned: list[Banned] = msgspec.field(default_factory=list)
    intents: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)


class VoiceConfig(msgspec.Struct, frozen=True):
    brand: Brand
    tones: dict[str, Tone]
    greetings: dict[str, dict[str, str]]
    sign_offs: dict[str, dict[str, str]]
    banned: tuple[Banned, ...]
    intents: dict[str, Intent]
    source: str  # the file it came from, for messages
    text: str = ""  # the file's text, to point at lines

    def tone(self, channel: str) -> Tone:
        return self.tones.get(channel, NEUTRAL)

    @property
    def tag(self) -> str:
        return self.brand.tag if self.brand.tag is not None else f" — {self.brand.name}"


# Texts every brand gets unless its file says otherwise.
DEFAULT_INTENTS: Mapping[str, Mapping[str, str]] = {
    "acknowledge": {"es": "Hemos recibido tu mensaje y te respondemos enseguida.",
                    "en": "We have your message and will answer shortly."},
    "out_of_hours": {"es": "Ahora mismo estamos fuera de horario; te respondemos en cuanto abramos.",
                     "en": "We are outside our opening hours right now; we will answer as soon as we open."},
    "waiting_on_customer": {"es": "Quedamos a la espera de tu respuesta para seguir.",
                            "en": "We are waiting for your answer to carry on."},
    "escalated": {"es": "Hemos pasado tu consulta a un especialista, que te escribirá pronto.",
                  "en": "A specialist now has your request and will write to you soon."},
    "resolved": {"es": "Damos por resuelta tu consulta {{ conversation.reference }}. Si necesitas algo más, "
                       "escríbenos.",
                 "en": "We have marked your request {{ conversation.reference }} as solved. Write to us if you "
                       "need anything else."},
    "survey": {"es": "¿Qué tal te hemos atendido? Tu opinión nos ayuda a mejorar.",
               "en": "How did we do? Your opinion helps us improve."},
    "window_closed": {"es": "Para seguir por este canal, respóndenos a este mensaje.",
                      "en": "To carry on here, reply to this message."},
}
DEFAULT_ANONYMOUS = {"es": "cliente", "en": "customer"}
_LINE = re.compile(r"at line (\d+)")


def parse_voice(text: str, source: str) -> VoiceConfig:
    """The voice in `text` (a voice.toml), or VoiceError. Templates are not checked here
    (templates.compile_voice does that)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _LINE.search(str(exc))
        raise VoiceError(f"{source}{f':{line.group(1)}' if line else ''}: not valid TOML: {exc}") from None
    tones: dict[str, Tone] = {}
    raw_tones = raw.pop("tone", {})
    if not isinstance(raw_tones, dict):
        raise VoiceError(f"{source}{line_of(text, 'tone')}: tone must be tables, one per channel ([tone.sms])")
    for channel, table in raw_tones.items():
        try:  # one by one, so that a message names the channel (msgspec says tone[...])
            tones[channel] = msgspec.convert(table, Tone)
        except msgspec.ValidationError as exc:
            where = f"tone.{channel}"
            raise VoiceError(f"{source}{line_of(text, where)}: {_readable(exc, where)}") from None
    try:
        file = msgspec.convert(raw, VoiceFile)
    except msgspec.ValidationError as exc:
        raise VoiceError(f"{source}: {_readable(exc)}") from None
    file.tone = tones
    locales = file.brand.locales
    if file.brand.default_locale not in locales:
        raise VoiceError(f"{source}: brand.default_locale {file.brand.default_locale!r} is not one of brand.locales "
                         f"{locales}")
    intents = {name: _intent(name, {k: v for k, v in DEFAULT_INTENTS[name].items() if k in locales}, source)
               for name in STANDARD_INTENTS}
    for name, body in file.intents.items():
        intents[name] = _merge(intents.get(name), _intent(name, body, source))
    for intent in intents.values():
        if file.brand.default_locale not in intent.texts:
            raise VoiceError(f"{source}{_where(text, f'intents.{intent.name}')}: intent {intent.name!r} has no text in "
                             f"the default locale {file.brand.default_locale!r}")
    for banned in file.banned:
        if banned.locale not in locales:
            raise VoiceError(f"{source}: a banned phrase ({banned.phrase!r}) is for locale {banned.locale!r}, which is "
                             f"not one of brand.locales {locales}")
    return VoiceConfig(
        brand=file.brand, tones=file.tone, greetings={str(k): v for k, v in file.greetings.items()},
        sign_offs={str(k): v for k, v in file.sign_offs.items()},
        banned=tuple(file.banned), intents=intents, source=source, text=text,
    )


def load_voice(path: Path) -> VoiceConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VoiceError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VoiceError(f"{path}: cannot be read: {exc}") from None
    return parse_voice(text, str(path))


def _intent(name: str, body: Mapping[str, Any], source: str) -> Intent:
    texts: dict[str, str] = {}
    channels: dict[str, dict[str, str]] = {}
    template: TemplateMapping | None = None
    for key, value in body.items():
        if isinstance(value, str):
            texts[key] = value
        elif key == "whatsapp_template" and isinstance(value, Mapping):
            try:
                template = msgspec.convert(dict(value), TemplateMapping)
            except msgspec.ValidationError as exc:
                raise VoiceError(f"{source}: intents.{name}.whatsapp_template: {_readable(exc)}") from None
        elif isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values()):
            channels[key] = dict(value)
        else:
            raise VoiceError(f"{source}: intents.{name}.{key} must be a text per locale (es = \"...\") or a channel "
                             "table of them ([intents.<name>.sms])")
    return Intent(name, texts, channels, template)


def _merge(base: Intent | None, override: Intent) -> Intent:
    if base is None:
        return override
    return Intent(override.name, {**base.texts, **override.texts}, {**base.channels, **override.channels},
                  override.template or base.template)


def _readable(exc: msgspec.ValidationError, table: str = "") -> str:
    """msgspec's "Expected `bool`, got `str` - at `$.emoji`" as "tone.sms.emoji: Expected `bool`..."."""
    message = str(exc)
    found = re.search(r"at `\$\.?([^`]*)`", message)
    path = ".".join(p for p in (table, found.group(1) if found else "") if p)
    reason = message[:found.start()].strip().rstrip("-").strip() if found else message
    unknown = re.search(r"unknown field `([^`]+)`", reason)
    if unknown:
        return f"{'.'.join(p for p in (path, unknown.group(1)) if p)}: unknown key"
    return f"{path}: {reason}" if path else reason


def _where(text: str, table: str) -> str:
    """":<line>" of the table's header in the file, when it has one."""
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip().startswith(f"[{table}]") or line.strip().startswith(f"[{table}."):
            return f":{n}"
    return ""


def line_of(text: str, table: str, key: str | None = None) -> str:
    """":<line>" where `key` is set under `[table]` (or the table's header), or "" if not found."""
    lines = text.splitlines()
    header = next((n for n, line in enumerate(lines) if line.strip() == f"[{table}]"), None)
    if header is None:
        return ""
    if key is not None:
        for n in range(header + 1, len(lines)):
            stripped = lines[n].strip()
            if stripped.startswith("["):
                break
            if re.match(rf"{re.escape(key)}\s*=", stripped):
                return f":{n + 1}"
    return f":{header + 1}"


__all__ = ["DEFAULT_ANONYMOUS", "REGISTERS", "STANDARD_INTENTS", "Banned", "Brand", "Intent", "TemplateMapping",
           "Tone", "VoiceConfig", "VoiceError", "line_of", "load_voice", "parse_voice"]
