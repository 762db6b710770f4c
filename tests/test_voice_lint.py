"""Each tone-lint warning, in es and en."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.email.connector import EmailConnector
from connectors.sms.twilio import TwilioConnector
from conversation.voice import Context, Voice, load_voice

SAMPLE = Path(__file__).parent.parent / "config" / "voice.toml"


@pytest.fixture(scope="module")
def voice() -> Voice:
    return Voice(load_voice(SAMPLE))


def warnings(voice: Voice, text: str, *, channel: str = "webchat", locale: str = "es", lang: str = "es",
             name: str | None = "Lucía", caps: Any = None) -> dict[str, Any]:
    caps = caps or (TwilioConnector.capabilities if channel == "sms" else EmailConnector.capabilities)
    rendered = voice.render(channel=channel, caps=caps, context=Context(customer_name=name, agent_name="Marta"),
                            locale=locale, text=text, first_reply=True, lang=lang)
    return {w.code: w for w in rendered.warnings}


@pytest.mark.parametrize(("lang", "want"), [
    ("es", "El carácter «á» obliga a enviar el SMS en UCS-2: 2 segmentos en vez de 1."),
    ("en", "The character “á” forces the SMS into UCS-2: 2 segments instead of 1."),
])
def test_ucs2_names_the_character_and_the_segments(voice: Voice, lang: str, want: str) -> None:
    text = "Tu pedido ya está preparado en la tienda de la calle Mayor; puedes pasar a recogerlo hoy"
    assert warnings(voice, text, channel="sms", lang=lang)["ucs2"].message == want
    # € is GSM-7 (its extension table), and typographic quotes become GSM-7 on a gsm_safe tone.
    assert "ucs2" not in warnings(voice, "Son 10 € “en efectivo”", channel="sms", lang=lang)


@pytest.mark.parametrize(("locale", "text", "phrase", "suggestion", "lang", "want"), [
    ("es", "Lo siento, no podemos cambiarlo.", "no podemos", "lo que sí podemos hacer es", "es", "no va con el tono"),
    ("en", "You must send the form.", "you must", "please", "en", "does not fit the brand's tone"),
    ("es", "No podemos hoy.", "no podemos", "lo que sí podemos hacer es", "en", "does not fit the brand's tone"),
])
def test_banned_phrases_come_with_their_suggestion(voice: Voice, locale: str, text: str, phrase: str,
                                                   suggestion: str, lang: str, want: str) -> None:
    found = warnings(voice, text, locale=locale, lang=lang)["banned_phrase"]
    assert phrase in found.message.lower() and want in found.message
    assert found.suggestion == suggestion


def test_a_phrase_banned_in_one_locale_is_fine_in_another(voice: Voice) -> None:
    assert "banned_phrase" not in warnings(voice, "you must be joking", locale="es")


@pytest.mark.parametrize(("lang", "want"), [("es", "Palabras en mayúsculas se leen como gritos: URGENTE, AHORA"),
                                            ("en", "Words in capitals read as shouting: URGENTE, AHORA")])
def test_shouting(voice: Voice, lang: str, want: str) -> None:
    assert warnings(voice, "Es URGENTE, responde AHORA por SMS", lang=lang)["shouting"].message == want + "."
    assert "shouting" not in warnings(voice, "Tu código es ABC por SMS o VIP", lang=lang)


@pytest.mark.parametrize(("lang", "want"), [("es", "Demasiados signos de exclamación (3)."),
                                            ("en", "Too many exclamation marks (3).")])
def test_exclamations(voice: Voice, lang: str, want: str) -> None:
    assert warnings(voice, "¡Genial! ¡Gracias! ¡Hasta pronto!", lang=lang)["exclamations"].message == want
    assert "exclamations" not in warnings(voice, "¡Gracias!", lang=lang)


@pytest.mark.parametrize(("lang", "want"), [
    ("es", "El saludo usa el nombre del cliente, pero no lo conocemos: dirá «cliente»."),
    ("en", "The greeting uses the customer's name, which is not known: it will say “cliente”."),
])
def test_missing_personalization(voice: Voice, lang: str, want: str) -> None:
    assert warnings(voice, "Claro.", channel="email", name=None, lang=lang)["missing_personalization"].message == want
    assert "missing_personalization" not in warnings(voice, "Claro.", channel="email", name="Lucía", lang=lang)
    assert "missing_personalization" not in warnings(voice, "Claro.", channel="sms", name=None, lang=lang)


@pytest.mark.parametrize(("lang", "want"), [
    ("es", "Supera el límite del canal (1600 caracteres): se enviará en 2 partes."),
    ("en", "Over the channel's limit (1600 characters): it will go in 2 parts."),
])
def test_too_long_on_sms_counts_its_parts(voice: Voice, lang: str, want: str) -> None:
    text = " ".join(["Frase con algunos detalles del pedido."] * 50)  # 1,949 characters
    assert warnings(voice, text, channel="sms", lang=lang)["too_long"].message == want
    assert "too_long" not in warnings(voice, "Frase corta.", channel="sms", lang=lang)
