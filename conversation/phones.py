"""Phone numbers as identities: one canonical form per number, whatever way it was written.

E.164 ("+34600111222") when the phonenumbers library can read the number; otherwise the number
is kept as the provider gave it (blanks and punctuation removed), never refused: a provider that
delivered a message from it knows better than our tables whether it exists, and refusing it would
lose the customer's message. Only the shape is checked (is_possible_number), not allocation:
test ranges such as +1 555 are real traffic in staging.
"""

from __future__ import annotations

import functools
import re

import phonenumbers

_PUNCTUATION = re.compile(r"[\s().\-/]")


@functools.lru_cache(maxsize=16_384)
def phone_address(raw: str, default_region: str | None = None) -> str:
    """The identity address of a phone number. Numbers without a country code are read as
    `default_region` numbers.

    Cached because phonenumbers takes tens of microseconds per number, a large share of the ack
    path, and customers write again and again from the same numbers (bounded: about 3 MB).
    """
    canonical = e164_or_none(raw, default_region)
    if canonical is not None:
        return canonical
    kept = _PUNCTUATION.sub("", raw.strip())
    return kept or raw.strip()


def e164_or_none(raw: str, default_region: str | None = None) -> str | None:
    """E.164 of `raw`, or None when it is not a number the library can call possible."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


__all__ = ["e164_or_none", "phone_address"]
