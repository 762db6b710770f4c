"""Golden renders: one intent and one agent text, for every channel, in es and en, checked whole,
with the sample brand the gateway ships (config/voice.toml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.chat.slack import SlackConnector
from connectors.chat.webchat.connector import WebchatConnector
from connectors.email.connector import EmailConnector
from connectors.sms.twilio import TwilioConnector
from connectors.social import MessengerConnector, TelegramConnector, WhatsAppConnector
from conversation.segments import count_segments, encoding
from conversation.voice import Context, MissingVariable, UnknownIntent, Voice, load_voice

SAMPLE = Path(__file__).parent.parent / "config" / "voice.toml"
CHANNELS: dict[str, Any] = {
    "email": EmailConnector, "sms": TwilioConnector, "slack": SlackConnector, "whatsapp": WhatsAppConnector,
    "webchat": WebchatConnector, "messenger": MessengerConnector, "telegram": TelegramConnector,
}
AGENT_TEXT = "Tu pedido **A-17** sale hoy — te aviso “pronto”… {{ 7*7 }}"


@pytest.fixture(scope="module")
def voice() -> Voice:
    return Voice(load_voice(SAMPLE))


def render(voice: Voice, channel: str, locale: str, *, first: bool = True, name: str | None = "Lucía Gómez",
           **what: Any) -> Any:
    context = Context(customer_name=name, agent_name="Marta", reference="ab12cd34", channel=channel,
                      variables=what.pop("variables", {}))
    return voice.render(channel=channel, caps=CHANNELS[channel].capabilities, context=context, locale=locale,
                        first_reply=first, **what)


RESOLVED = {
    ("es", "email"): "Estimado/a Lucía Gómez:\n\nDamos por resuelta tu consulta ab12cd34. Si necesitas algo más, "
                     "escríbenos.\n\nAtentamente,\nMarta\nTienda Sol",
    ("en", "email"): "Dear Lucía Gómez,\n\nWe have marked your request ab12cd34 as solved. Write to us if you need "
                     "anything else.\n\nKind regards,\nMarta\nTienda Sol",
    ("es", "sms"): "Consulta ab12cd34 resuelta. ¿Necesitas algo? Responde a este SMS. - Tienda Sol",
    ("en", "sms"): "Request ab12cd34 solved. Anything else? Reply to this SMS. - Tienda Sol",
    **{("es", ch): "¡Hola, Lucía!\n\nDamos por resuelta tu consulta ab12cd34. Si necesitas algo más, escríbenos."
       for ch in ("slack", "whatsapp", "webchat", "messenger", "telegram")},
    **{("en", ch): "Hi Lucía!\n\nWe have marked your request ab12cd34 as solved. Write to us if you need anything "
                   "else." for ch in ("slack", "whatsapp", "webchat", "messenger", "telegram")},
}


@pytest.mark.parametrize(("locale", "channel"), sorted(RESOLVED))
def test_an_intent_on_every_channel(voice: Voice, locale: str, channel: str) -> None:
    rendered = render(voice, channel, locale, intent="resolved")
    assert rendered.text == RESOLVED[(locale, channel)]
    assert (rendered.intent, rendered.composed, rendered.locale) == ("resolved", None, locale)
    if channel == "sms":
        assert encoding(rendered.text) == "GSM-7" and count_segments(rendered.text) == 1
        assert rendered.warnings == ()


AGENT = {
    "email": "Estimado/a Lucía Gómez:\n\nTu pedido A-17 sale hoy — te aviso “pronto”… {{ 7*7 }}\n\n"
             "Atentamente,\nMarta\nTienda Sol",
    "sms": 'Tu pedido A-17 sale hoy - te aviso "pronto"... {{ 7*7 }} - Tienda Sol',
    "slack": "¡Hola, Lucía!\n\nTu pedido *A-17* sale hoy — te aviso “pronto”… {{ 7*7 }}",
    "whatsapp": "¡Hola, Lucía!\n\nTu pedido *A-17* sale hoy — te aviso “pronto”… {{ 7*7 }}",
    "webchat": "¡Hola, Lucía!\n\nTu pedido A-17 sale hoy — te aviso “pronto”… {{ 7*7 }}",
    "messenger": "¡Hola, Lucía!\n\nTu pedido A-17 sale hoy — te aviso “pronto”… {{ 7*7 }}",
    "telegram": "¡Hola, Lucía!\n\nTu pedido A-17 sale hoy — te aviso “pronto”… {{ 7*7 }}",
}


@pytest.mark.parametrize("channel", sorted(AGENT))
def test_agent_text_on_every_channel_is_never_a_template(voice: Voice, channel: str) -> None:
    rendered = render(voice, channel, "es", text=AGENT_TEXT)
    assert rendered.text == AGENT[channel]
    assert rendered.composed == AGENT_TEXT and rendered.intent is None
    assert "{{ 7*7 }}" in rendered.text and "49" not in rendered.text


def test_english_agent_text_takes_the_english_greeting_and_sign_off(voice: Voice) -> None:
    assert render(voice, "email", "en", text="Your refund is on its way.").text == (
        "Dear Lucía Gómez,\n\nYour refund is on its way.\n\nKind regards,\nMarta\nTienda Sol")
    assert render(voice, "telegram", "en", text="Your refund is on its way.").text == (
        "Hi Lucía!\n\nYour refund is on its way.")


def test_email_gets_html_with_a_plain_alternative(voice: Voice) -> None:
    rendered = render(voice, "email", "es", text="Tu pedido **A-17**:\n\n- sale hoy\n- [seguimiento](https://t.example/1)")
    assert rendered.text == ("Estimado/a Lucía Gómez:\n\nTu pedido A-17:\n\n- sale hoy\n- seguimiento "
                             "(https://t.example/1)\n\nAtentamente,\nMarta\nTienda Sol")
    assert rendered.html == ('<p>Estimado/a Lucía Gómez:</p>\n<p>Tu pedido <strong>A-17</strong>:</p>\n'
                             '<ul><li>sale hoy</li><li><a href="https://t.example/1" rel="noopener noreferrer">'
                             'seguimiento</a></li></ul>\n<p>Atentamente,<br>Marta<br>Tienda Sol</p>')


def test_chat_greets_on_the_first_reply_of_an_episode_only(voice: Voice) -> None:
    assert render(voice, "webchat", "es", text="Claro.", first=True).text == "¡Hola, Lucía!\n\nClaro."
    assert render(voice, "webchat", "es", text="Claro.", first=False).text == "Claro."
    assert render(voice, "email", "es", text="Claro.", first=False).text.startswith("Estimado/a")


def test_an_unknown_name_is_said_as_the_brand_chooses(voice: Voice) -> None:
    rendered = render(voice, "email", "es", text="Claro.", name=None)
    assert rendered.text.startswith("Estimado/a cliente:")
    assert [w.code for w in rendered.warnings] == ["missing_personalization"]


def test_variables_fill_an_intent_and_a_missing_one_is_named(voice: Voice) -> None:
    rendered = render(voice, "whatsapp", "es", first=False, intent="order_shipped",
                      variables={"order": "A-17", "tracking_url": "https://t.example/1"})
    assert rendered.text == "Tu pedido *A-17* ya está en camino. Puedes seguirlo aquí: https://t.example/1"
    with pytest.raises(MissingVariable, match="tracking_url"):
        render(voice, "whatsapp", "es", intent="order_shipped", variables={"order": "A-17"})
    with pytest.raises(UnknownIntent, match="order_shipped"):
        render(voice, "whatsapp", "es", intent="nope")


def test_the_neutral_voice_sends_text_as_typed_in_the_channel_s_format() -> None:
    neutral = Voice()
    assert render(neutral, "email", "es", text="Claro, **hoy**.").text == "Claro, hoy."
    assert render(neutral, "slack", "es", text="Claro, **hoy**.").text == "Claro, *hoy*."
    assert render(neutral, "sms", "es", text="Claro — “hoy”.").text == "Claro — “hoy”."


def test_whatsapp_window_fallback_maps_the_intent_to_its_template(voice: Voice) -> None:
    mapping = voice.template_for("resolved", "es", Context(customer_name="Lucía Gómez", reference="ab12cd34"))
    assert mapping is not None
    template, parameters = mapping
    assert (template.name, parameters) == ("consulta_resuelta", ("Lucía", "ab12cd34"))
    assert voice.template_for("survey", "es", Context()) is None


@pytest.mark.parametrize(("hint", "want"), [("en-GB", "en"), ("es_MX", "es"), ("fr", "es"), (None, "es")])
def test_locale_from_the_channel_else_the_brand_default(voice: Voice, hint: str | None, want: str) -> None:
    assert voice.locale_for(None, hint) == want
    assert voice.locale_for("en", "es") == "en"  # the customer's own beats the channel's
