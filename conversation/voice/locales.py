"""A phone number's country as a language hint: the last resort before the brand's default.

Only the languages a brand is likely to support are listed; a country not here gives no hint,
and the brand's default applies. A customer's own locale (set through the API) and what a
channel says (Slack, Telegram, the web chat's browser) come first.
"""

from __future__ import annotations

from conversation.phones import region_of

# Countries where the language is the main one spoken (ISO 3166 alpha-2).
_REGION_LANGUAGE: dict[str, str] = {
    **dict.fromkeys(("ES", "MX", "AR", "CO", "CL", "PE", "VE", "EC", "GT", "CU", "BO", "DO", "HN", "PY", "SV",
                     "NI", "CR", "PA", "UY", "PR", "GQ"), "es"),
    **dict.fromkeys(("US", "GB", "IE", "AU", "NZ", "CA", "ZA", "JM", "TT", "BS", "BB", "SG", "NG", "GH", "KE",
                     "PH", "MT", "GI"), "en"),
    **dict.fromkeys(("PT", "BR", "AO", "MZ"), "pt"),
    **dict.fromkeys(("FR", "BE", "LU", "MC", "SN", "CI"), "fr"),
    **dict.fromkeys(("DE", "AT", "LI"), "de"),
    **dict.fromkeys(("IT", "SM"), "it"),
}


def phone_locale(address: str) -> str | None:
    """The language of the country a phone number belongs to, when there is a clear one."""
    region = region_of(address)
    return _REGION_LANGUAGE.get(region) if region else None


__all__ = ["phone_locale"]
