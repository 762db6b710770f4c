"""SMS segment counting: what a business is billed, and where a long text is cut on the phone."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from conversation.segments import (
    GSM7_BASIC,
    GSM7_EXTENDED,
    count_segments,
    encoding,
    split_segments,
    units,
)

GSM_CHARS = "".join(sorted(GSM7_BASIC | GSM7_EXTENDED))
ESC = 0x1B


def reference_parts(text: str) -> list[int]:
    """Segment sizes by an independent method: cut the encoded unit stream in fixed chunks.

    GSM-7 text becomes septets (ESC + code for the extension table), anything else UTF-16 code
    units; a chunk may not end on an ESC or a high surrogate, which then opens the next chunk.
    """
    if not text:
        return []
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in text):
        stream = [u for ch in text for u in ((ESC, ord(ch)) if ch in GSM7_EXTENDED else (ord(ch),))]
        single, size, openers = 160, 153, range(ESC, ESC + 1)
    else:
        raw = text.encode("utf-16-be")
        stream = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
        single, size, openers = 70, 67, range(0xD800, 0xDC00)  # high surrogates
    if len(stream) <= single:
        return [len(stream)]
    parts: list[int] = []
    i = 0
    while i < len(stream):
        end = min(i + size, len(stream))
        if end < len(stream) and stream[end - 1] in openers:
            end -= 1
        parts.append(end - i)
        i = end
    return parts


@pytest.mark.parametrize(
    ("text", "expected_encoding", "expected_segments"),
    [
        ("", "GSM-7", 0),
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("中" * 70, "UCS-2", 1),
        ("中" * 71, "UCS-2", 2),
        ("中" * 134, "UCS-2", 2),
        ("中" * 135, "UCS-2", 3),
        # The euro sign is two septets: 79 letters and one euro are 81 septets, one SMS...
        ("a" * 79 + "€", "GSM-7", 1),
        # ...but 159 letters and a euro are 161 septets: two.
        ("a" * 159 + "€", "GSM-7", 2),
        ("{" * 80, "GSM-7", 1),
        ("{" * 81, "GSM-7", 2),
        # An ESC pair cannot straddle parts: 152 + 2 does not fit 153, so the euro opens part 2,
        # which then overflows into a third although 306 septets would fit two parts.
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 3),
        # One non-GSM character turns the whole text into UCS-2: 160 letters + "ç" is 3 parts.
        ("a" * 160 + "ç", "UCS-2", 3),
        # An emoji is a surrogate pair: two units in UCS-2.
        ("😀" * 35, "UCS-2", 1),
        ("😀" * 35 + "a", "UCS-2", 2),
        # A surrogate pair cannot straddle parts either.
        ("中" * 66 + "😀" + "中" * 66, "UCS-2", 3),
        # Accented capitals and Greek capitals in the GSM alphabet stay GSM-7.
        ("ÇÉÄÖÑÜΔΦΓΛΩΠΨΣΘΞ¿¡§£¥", "GSM-7", 1),
    ],
)
def test_known_texts(text: str, expected_encoding: str, expected_segments: int) -> None:
    assert encoding(text) == expected_encoding
    assert count_segments(text) == expected_segments
    assert len(split_segments(text)) == expected_segments


def test_split_puts_the_euro_wholly_in_the_second_part() -> None:
    parts = split_segments("a" * 152 + "€" + "b" * 10)
    assert parts == ["a" * 152, "€" + "b" * 10]


def test_split_moves_an_emoji_whole_to_the_next_part() -> None:
    parts = split_segments("中" * 66 + "😀" + "中" * 10)
    assert parts == ["中" * 66, "😀" + "中" * 10]


@pytest.mark.parametrize("ch", ["ç", "á", "í", "ó", "ú", "ê", "\x1b", "`", "\u2019", "\u201c", "\t", "\u00a0"])
def test_common_lookalikes_outside_gsm_switch_to_ucs2(ch: str) -> None:
    # Lowercase ç, Spanish acute vowels and smart quotes are not in GSM 03.38: a single one of them
    # in a Spanish text cuts each part from 153 to 67 characters.
    assert encoding("Hola " + ch) == "UCS-2"


def test_every_gsm_character_is_gsm7_and_extension_ones_weigh_two() -> None:
    assert len(GSM7_BASIC) == 127  # 128 codes minus ESC
    for ch in GSM7_BASIC:
        assert encoding(ch) == "GSM-7" and units(ch) == 1
    for ch in GSM7_EXTENDED:
        assert encoding(ch) == "GSM-7" and units(ch) == 2


gsm_text = st.text(alphabet=GSM_CHARS, max_size=700)
extension_heavy = st.text(alphabet="a€{}[]~|^\\\f", max_size=700)
any_text = st.text(max_size=400)
emoji_heavy = st.text(alphabet=st.sampled_from("a中é😀🎉\U0001f9d1"), max_size=400)
texts = st.one_of(gsm_text, extension_heavy, any_text, emoji_heavy)


@given(texts)
@example("a" * 152 + "€" * 80)
@example("中" * 66 + "😀" * 40)
def test_split_agrees_with_an_independent_unit_stream_cut(text: str) -> None:
    parts = split_segments(text)
    assert "".join(parts) == text
    assert count_segments(text) == len(parts) == len(reference_parts(text))
    assert [units_as(p, encoding(text)) for p in parts] == reference_parts(text)


def units_as(part: str, enc: str) -> int:
    # A part of a UCS-2 text may itself be all-GSM; it is still sent as UCS-2.
    return len(part.encode("utf-16-le")) // 2 if enc == "UCS-2" else units(part)


@given(texts)
def test_parts_fit_and_are_greedy(text: str) -> None:
    enc = encoding(text)
    parts = split_segments(text)
    if len(parts) == 1:
        assert units_as(parts[0], enc) <= (160 if enc == "GSM-7" else 70)
    elif parts:
        limit = 153 if enc == "GSM-7" else 67
        assert all(units_as(p, enc) <= limit for p in parts)
        # Greedy: no part could have taken the next character, so no text uses more parts than needed.
        for part, following in itertools.pairwise(parts):
            assert units_as(part + following[0], enc) > limit


@given(texts)
def test_ucs2_units_are_utf16_code_units(text: str) -> None:
    if encoding(text) == "UCS-2":
        assert units(text) == len(text.encode("utf-16-le")) // 2


@given(texts)
def test_segment_count_is_bounded_by_the_unit_count(text: str) -> None:
    n = units(text)
    single, part = (160, 153) if encoding(text) == "GSM-7" else (70, 67)
    if n == 0:
        assert count_segments(text) == 0
    elif n <= single:
        assert count_segments(text) == 1
    else:
        # Each part loses at most one unit to an indivisible pair at its end.
        assert math.ceil(n / part) <= count_segments(text) <= math.ceil(n / (part - 1))


@given(gsm_text, st.characters(codec="utf-8"))
def test_appending_never_lowers_the_count(text: str, ch: str) -> None:
    assert count_segments(text + ch) >= count_segments(text)


@given(gsm_text, st.characters(codec="utf-8").filter(lambda c: encoding(c) == "UCS-2"))
def test_one_non_gsm_character_switches_the_whole_text(text: str, ch: str) -> None:
    mixed = text[: len(text) // 2] + ch + text[len(text) // 2 :]
    assert encoding(mixed) == "UCS-2"
    assert units(mixed) == len(mixed.encode("utf-16-le")) // 2
