"""Phone numbers as identities: one canonical form per number, whatever way it was written.

E.164 ("+34600111222") when the phonenumbers library can read the number; otherwise the number
is kept as the provider gave it (blanks and punctuation removed), never refused: a provider that
delivered a message from it knows better than our tables whether it exists, and refusing it would
lose the customer's message. Only the shape is checked (is_possible_number), not allocation:
test ranges such as +1 555 are real traffic in staging.

Two countries write one mobile number two ways, and both forms still arrive (WhatsApp ids carry
the old ones). Both map to today's form, so that an SMS and a WhatsApp message of one person are
one identity:
- Mexico: the "1" after +52 that mobiles used to need (+52 1 55 1234 5678 is +52 55 1234 5678);
- Brazil: a mobile's ninth digit, added in 2012-2016 (+55 11 8765 4321 is +55 11 98765 4321).
Replies still go to the form the provider gave (connectors keep it): only matching is canonical.
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
    canonical = e164_or_none(_national_reform(raw), default_region)
    if canonical is not None:
        return canonical
    kept = _PUNCTUATION.sub("", raw.strip())
    return kept or raw.strip()


_DIGITS = re.compile(r"\D")


def _national_reform(raw: str) -> str:
    """Today's form of a Mexican or Brazilian mobile written the old way; anything else as given."""
    text = raw.strip()
    if not text.startswith("+"):
        return raw
    digits = _DIGITS.sub("", text)
    if digits.startswith("521") and len(digits) == 13:  # +52 1 + ten digits
        return "+52" + digits[3:]
    if digits.startswith("55") and len(digits) == 12 and digits[4] in "6789":  # +55 AA + eight, a mobile
        reformed = "+55" + digits[2:4] + "9" + digits[4:]
        if e164_or_none(reformed) is not None:
            return reformed
    return raw


def reply_form(raw: str, address: str) -> str | None:
    """The number as the provider wrote it when that is another number than its identity
    address (an old Mexican or Brazilian form), for replies to go where the provider said;
    None when it is the same number written with blanks or punctuation."""
    written = _PUNCTUATION.sub("", raw.strip())
    if _DIGITS.sub("", written) == _DIGITS.sub("", address):
        return None
    return written if written.startswith("+") or not written.isdigit() else "+" + written


def e164_or_none(raw: str, default_region: str | None = None) -> str | None:
    """E.164 of `raw`, or None when it is not a number the library can call possible."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


@functools.lru_cache(maxsize=16_384)
def region_of(address: str) -> str | None:
    """The country (ISO 3166 alpha-2) a phone number belongs to, when the library knows it."""
    try:
        number = phonenumbers.parse(address, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(number)
    return region if region and region != "ZZ" else None


__all__ = ["e164_or_none", "phone_address", "region_of", "reply_form"]
