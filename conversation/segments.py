"""SMS segment arithmetic: how many billable parts a text becomes on the wire.

A text that fits the GSM 03.38 alphabet travels as 7-bit septets: 160 in a single SMS, or 153 per
part once the 6-byte concatenation header (UDH) is needed. Characters of the GSM extension table
are sent as ESC + code, so they take two septets, and a part cannot end between the two. One
character outside the alphabet switches the whole text to UCS-2, 16-bit UTF-16 code units: 70 in a
single SMS, 67 per part, and a surrogate pair (a character outside the BMP, such as most emoji)
cannot be cut between parts either.

Splitting is greedy, which is what handsets and carriers do; because every character weighs one or
two units, greedy packing also yields the fewest parts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

# GSM 03.38 default alphabet, in code order (0x00-0x7F). 0x1B (ESC) is left out on purpose: it is
# the escape into the extension table, not a character a text can contain.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ"
    "ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each one is sent as ESC + code, two septets.
GSM7_EXTENDED = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


def encoding(text: str) -> Encoding:
    """The encoding a carrier uses for `text`: GSM-7 when every character fits, else UCS-2."""
    for ch in text:
        if ch not in GSM7_BASIC and ch not in GSM7_EXTENDED:
            return "UCS-2"
    return "GSM-7"


def _gsm7_weight(ch: str) -> int:
    return 2 if ch in GSM7_EXTENDED else 1


def _ucs2_weight(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def _weigher(text: str) -> tuple[Callable[[str], int], int, int]:
    if encoding(text) == "GSM-7":
        return _gsm7_weight, GSM7_SINGLE, GSM7_PART
    return _ucs2_weight, UCS2_SINGLE, UCS2_PART


def units(text: str) -> int:
    """The length of `text` in its encoding's units: septets for GSM-7, UTF-16 code units for UCS-2."""
    weight, _, _ = _weigher(text)
    return sum(map(weight, text))


def _part_bounds(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) string indices of each part, greedily filled, never cutting a character."""
    if not text:
        return
    weight, single, part = _weigher(text)
    weights = [weight(ch) for ch in text]
    if sum(weights) <= single:
        yield 0, len(text)
        return
    start, used = 0, 0
    for i, w in enumerate(weights):
        if used + w > part:
            yield start, i
            start, used = i, 0
        used += w
    yield start, len(text)


def count_segments(text: str) -> int:
    """How many SMS parts `text` is sent as (and billed for). The empty text is zero parts."""
    return sum(1 for _ in _part_bounds(text))


def split_segments(text: str) -> list[str]:
    """The parts `text` is sent as, in order; joined, they give `text` back."""
    return [text[start:end] for start, end in _part_bounds(text)]


__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENDED",
    "Encoding",
    "count_segments",
    "encoding",
    "split_segments",
    "units",
]
