"""One phone identity per number, whichever way a provider or an agent wrote it."""

from __future__ import annotations

import pytest

from conversation.model import TemplateSpec
from conversation.phones import phone_address, reply_form


@pytest.mark.parametrize(("written", "identity"), [
    ("+34 600 111 222", "+34600111222"),
    ("+1 (555) 000-1111", "+15550001111"),
    # Mexico: the old mobile "1" after +52, which WhatsApp ids still carry
    ("+5215512345678", "+525512345678"),
    ("+52 1 55 1234 5678", "+525512345678"),
    ("+525512345678", "+525512345678"),
    # Brazil: a mobile without its ninth digit (older WhatsApp ids)
    ("+551187654321", "+5511987654321"),
    ("+55 11 98765 4321", "+5511987654321"),
    # a Brazilian landline (2-5) never gains a ninth digit
    ("+551133334444", "+551133334444"),
])
def test_one_number_written_two_ways_is_one_identity(written: str, identity: str) -> None:
    assert phone_address(written) == identity


@pytest.mark.parametrize("impossible", ["+999123", "12", "+0000", "89012"])
def test_a_number_the_library_calls_impossible_is_kept_as_given(impossible: str) -> None:
    # The provider delivered a message from it: it is the customer's address, never refused.
    assert phone_address(impossible) == impossible


def test_replies_go_to_the_form_the_provider_gave() -> None:
    assert reply_form("+5215512345678", phone_address("+5215512345678")) == "+5215512345678"
    assert reply_form("5215512345678", phone_address("+5215512345678")) == "+5215512345678"  # a WhatsApp wa_id
    assert reply_form("+551187654321", phone_address("+551187654321")) == "+551187654321"
    # the same number with blanks is not another form
    assert reply_form("+34 600 111 222", phone_address("+34 600 111 222")) is None


def test_template_parameters_are_text_not_placeholders() -> None:
    spec = TemplateSpec("seguimiento", "es", body="Hola {{1}}, tu pedido {{2}} ya salió")
    assert spec.render(("Ana", "A-17")) == "Hola Ana, tu pedido A-17 ya salió"
    # a value that looks like a placeholder is not filled again
    assert spec.render(("{{2}}", "x")) == "Hola {{2}}, tu pedido x ya salió"
    # a missing value leaves its placeholder for everyone to see, rather than a silent gap
    assert spec.render(("Ana",)) == "Hola Ana, tu pedido {{2}} ya salió"
    assert TemplateSpec("bare", "en").render(("x",)) == "[template bare (en)]"
