"""Where a customer's language comes from when they never said: the browser's Accept-Language,
and a phone number's country as the last resort before the brand's default.

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


def preferred_language(accept_language: str | None) -> str | None:
    """The language an Accept-Language header prefers (by q, then order), or None when it names
    none: "es-ES,es;q=0.9,en;q=0.8" is "es-ES"."""
    best: tuple[float, int, str] | None = None
    for n, item in enumerate((accept_language or "").split(",")):
        tag, _, params = item.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*" or len(tag) > 35:
            continue
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        if q > 0 and (best is None or (q, -n) > (best[0], best[1])):
            best = (q, -n, tag)
    return best[2] if best else None


def phone_locale(address: str) -> str | None:
    """The language of the country a phone number belongs to, when there is a clear one."""
    region = region_of(address)
    return _REGION_LANGUAGE.get(region) if region else None


__all__ = ["phone_locale", "preferred_language"]
