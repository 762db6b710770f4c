"""A bad voice file is refused at load, naming the file, the line and the template."""

from __future__ import annotations

from pathlib import Path

import pytest

from conversation.voice import Voice, VoiceError, load_voice, parse_voice

BASE = """
[brand]
name = "Tienda Sol"
default_locale = "es"
locales = ["es", "en"]

[tone.email]
register = "formal"
greeting = "always"
sign_off = true

[greetings.formal]
es = "Estimado/a {{ customer.name }}:"
en = "Dear {{ customer.name }},"
"""


def voice(extra: str = "") -> Voice:
    return Voice(parse_voice(BASE + extra, "voice.toml"))


def refused(extra: str) -> str:
    with pytest.raises(VoiceError) as raised:
        voice(extra)
    return str(raised.value)


def test_the_shipped_sample_loads() -> None:
    loaded = Voice(load_voice(Path(__file__).parent.parent / "config" / "voice.toml"))
    assert {"resolved", "order_shipped", "acknowledge", "window_closed"} <= set(loaded.intents())


def test_toml_syntax_errors_name_the_line() -> None:
    message = refused('\n[intents.resolved]\nes = "unclosed\n')
    assert message.startswith("voice.toml:17: not valid TOML")


def test_an_unknown_variable_names_the_template_and_the_variable() -> None:
    message = refused('\n[intents.resolved]\nes = "Hola {{ customer.nombre }}"\n')
    assert message == ("voice.toml:17: intent 'resolved' (es) uses the unknown variable 'customer.nombre' "
                       "(customer has first_name, locale, name, tier)")
    message = refused('\n[intents.resolved.sms]\nen = "Hi {{ order }}"\n')
    assert message.startswith("voice.toml:17: intent 'resolved' (en, sms) uses the unknown variable 'order'")
    message = refused('\n[sign_offs.formal]\nen = "Regards, {{ agent.nickname }}"\n')
    assert "sign_off 'formal' (en) uses the unknown variable 'agent.nickname'" in message


def test_a_template_syntax_error_names_the_template() -> None:
    message = refused('\n[intents.survey]\nes = "¿Qué tal? {% if %}"\nen = "How did we do?"\n')
    assert message.startswith("voice.toml:17: intent 'survey' (es) has a syntax error")


def test_a_sandbox_escape_is_refused_at_load() -> None:
    message = refused('\n[intents.survey]\nes = "{{ \'\'.__class__.__mro__ }}"\n')
    assert "intent 'survey' (es) is refused by the sandbox" in message
    assert "__class__" in message


def test_variables_are_any_name_at_load() -> None:
    loaded = voice('\n[intents.custom]\nes = "Pedido {{ variables.order }}"\n')
    assert "custom" in loaded.intents()


@pytest.mark.parametrize(("extra", "fragment"), [
    ('\n[tone.sms]\nregister = "shouty"\n', "voice.toml:16: tone.sms.register: Invalid enum value 'shouty'"),
    ('\n[tone.sms]\ngreetng = "never"\n', "voice.toml:16: tone.sms.greetng: unknown key"),
    ('\n[[banned]]\nlocale = "fr"\nphrase = "non"\n', "locale 'fr', which is not one of brand.locales"),
    ('\n[intents.custom]\nen = "Only English"\n', "intent 'custom' has no text in the default locale 'es'"),
    ('\n[intents.custom]\nes = 5\n', "intents.custom.es must be a text per locale"),
])
def test_keys_that_do_not_fit_are_named(extra: str, fragment: str) -> None:
    assert fragment in refused(extra)


def test_a_default_locale_outside_the_locales_is_refused() -> None:
    with pytest.raises(VoiceError, match=r"default_locale 'fr' is not one of brand\.locales"):
        parse_voice('[brand]\nname = "X"\ndefault_locale = "fr"\nlocales = ["es"]\n', "voice.toml")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(VoiceError, match="no such file"):
        load_voice(tmp_path / "voice.toml")
