"""Tone lint: what an agent may want to change before a message goes, said in their language.

Warnings never block a send. They come back with the reply's 202 and from the preview.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec

from conversation.capabilities import Capabilities, OverflowRule, TextTooLong, TextUnit, fit_text, measure
from conversation.segments import GSM7_BASIC, GSM7_EXTENDED, count_segments
from conversation.voice.config import Banned


class LintWarning(msgspec.Struct, frozen=True, omit_defaults=True):
    code: str
    message: str
    suggestion: str | None = None


_MESSAGES: dict[str, dict[str, str]] = {
    "ucs2": {
        "es": "El carácter «{char}» obliga a enviar el SMS en UCS-2: {segments} segmentos en vez de {gsm}.",
        "en": "The character “{char}” forces the SMS into UCS-2: {segments} segments instead of {gsm}.",
    },
    "banned_phrase": {
        "es": "«{phrase}» no va con el tono de la marca.",
        "en": "“{phrase}” does not fit the brand's tone.",
    },
    "shouting": {
        "es": "Palabras en mayúsculas se leen como gritos: {words}.",
        "en": "Words in capitals read as shouting: {words}.",
    },
    "exclamations": {
        "es": "Demasiados signos de exclamación ({count}).",
        "en": "Too many exclamation marks ({count}).",
    },
    "missing_personalization": {
        "es": "El saludo usa el nombre del cliente, pero no lo conocemos: dirá «{anonymous}».",
        "en": "The greeting uses the customer's name, which is not known: it will say “{anonymous}”.",
    },
    "too_long": {
        "es": "Supera el límite del canal ({limit} {unit}): se enviará en {parts} partes.",
        "en": "Over the channel's limit ({limit} {unit}): it will go in {parts} parts.",
    },
    "too_long_refused": {
        "es": "Supera el límite del canal ({limit} {unit}) y el canal no admite partes.",
        "en": "Over the channel's limit ({limit} {unit}), and the channel takes no parts.",
    },
}
_UNITS = {"es": {"characters": "caracteres", "bytes": "bytes", "gsm_segments": "segmentos"},
          "en": {"characters": "characters", "bytes": "bytes", "gsm_segments": "segments"}}
_CAPITALS = re.compile(r"\b[^\W\d_a-zß-ÿ]{4,}\b")
# GSM's limit on concatenated SMS as Twilio applies it.
SMS_LIMIT = 1600


def _say(code: str, lang: str, **values: object) -> str:
    table = _MESSAGES[code]
    return table.get(lang, table["en"]).format(**values)


def lint(body: str, sent: str, *, caps: Capabilities, sms: bool, locale: str, banned: Sequence[Banned],
         missing_name: str | None, lang: str) -> list[LintWarning]:
    """Warnings on one rendered message: `body` is what the agent or the intent wrote, `sent` what
    the customer will receive; `missing_name` is what the greeting says instead of an unknown
    name (None: nothing missing)."""
    out: list[LintWarning] = []
    if sms:
        odd = next((ch for ch in sent if ch not in GSM7_BASIC and ch not in GSM7_EXTENDED), None)
        if odd is not None:
            gsm_equivalent = "".join(ch if ch in GSM7_BASIC or ch in GSM7_EXTENDED else "?" for ch in sent)
            out.append(LintWarning("ucs2", _say("ucs2", lang, char=odd, segments=count_segments(sent),
                                                gsm=count_segments(gsm_equivalent))))
    lowered = body.lower()
    for rule in banned:
        if rule.locale == locale and rule.phrase.lower() in lowered:
            out.append(LintWarning("banned_phrase", _say("banned_phrase", lang, phrase=rule.phrase), rule.suggestion))
    shouted = list(dict.fromkeys(_CAPITALS.findall(body)))
    if shouted:
        out.append(LintWarning("shouting", _say("shouting", lang, words=", ".join(shouted[:5]))))
    marks = body.count("!")
    if marks > 2 or "!!" in body:
        out.append(LintWarning("exclamations", _say("exclamations", lang, count=marks)))
    if missing_name is not None:
        out.append(LintWarning("missing_personalization", _say("missing_personalization", lang,
                                                               anonymous=missing_name)))
    limit = SMS_LIMIT if sms and caps.text_unit is not TextUnit.BYTES else caps.max_text_length
    unit = TextUnit.CHARACTERS if sms else caps.text_unit
    if measure(sent, unit) > limit:
        unit_name = _UNITS.get(lang, _UNITS["en"])[unit.value]
        try:
            parts = len(fit_text(msgspec.structs.replace(caps, max_text_length=limit, text_unit=unit), sent))
        except TextTooLong:
            parts = 0
        if caps.overflow is OverflowRule.REFUSE or not parts:
            out.append(LintWarning("too_long", _say("too_long_refused", lang, limit=limit, unit=unit_name)))
        else:
            out.append(LintWarning("too_long", _say("too_long", lang, limit=limit, unit=unit_name, parts=parts)))
    return out


__all__ = ["SMS_LIMIT", "LintWarning", "lint"]
