"""Agents' Markdown in each channel's own dialect."""

from __future__ import annotations

from conversation.voice.markup import markdown_to_plain, markdown_to_whatsapp

AGENT = "# Tu pedido\n\n- **Llega mañana** y *sin coste*\n- ~~martes~~ [seguimiento](https://t.example/1)\n" \
        "- `A-17` y snake_case_word"


def test_whatsapp_gets_its_own_bold_and_italic() -> None:
    assert markdown_to_whatsapp(AGENT) == ("*Tu pedido*\n\n• *Llega mañana* y _sin coste_\n"
                                           "• ~martes~ seguimiento (https://t.example/1)\n• `A-17` y snake_case_word")
    assert markdown_to_whatsapp("__negrita__ y _cursiva_") == "*negrita* y _cursiva_"
    assert markdown_to_whatsapp("```\n1 * 2 * 3\n```") == "```\n1 * 2 * 3\n```"


def test_plain_channels_get_the_words_without_the_marks() -> None:
    assert markdown_to_plain(AGENT) == ("Tu pedido\n\n- Llega mañana y sin coste\n"
                                        "- martes seguimiento (https://t.example/1)\n- A-17 y snake_case_word")
    assert markdown_to_plain("[https://t.example](https://t.example)") == "https://t.example"
    assert markdown_to_plain("2 * 3 * 4 = 24") == "2 * 3 * 4 = 24"  # arithmetic is not emphasis
