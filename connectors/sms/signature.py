"""Twilio's webhook signature (X-Twilio-Signature), checked with one HMAC per authentic request.

This is the algorithm of twilio's `RequestValidator.validate`, which the tests hold this module to
(tests/test_twilio_signature.py compares the two on generated requests). It exists because the
SDK's validator costs about as much as the rest of the ack path together: it re-parses the URL,
computes the HMAC twice (the URL with and without its port) and compares in a Python loop.
Here the URL work is cached per URL, the variant Twilio most likely signed is tried first, and the
second HMAC is only computed when the first does not match.

Twilio's algorithm (https://www.twilio.com/docs/usage/webhooks/webhooks-security):
- form-encoded webhooks: the full URL, then every parameter name followed by its value, sorted by
  name (the SDK also sorts and de-duplicates repeated names' values); HMAC of that with the auth
  token, base64;
- JSON webhooks: the URL alone is signed, and it carries `bodySHA256`, the body's hex SHA-256;
- SHA-1 unless the X-Twilio-Webhooks-Signature-Settings header names another algorithm
  (SharedKey-signed webhooks may use HMAC_SHA256).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import parse_qs, urlparse

from twilio.request_validator import HMAC_SHA1, HMAC_SHA256, add_port, remove_port

_DIGESTS = {HMAC_SHA1: "sha1", HMAC_SHA256: "sha256"}


@functools.lru_cache(maxsize=16)
def _keyed(token: bytes, digest: str) -> hmac.HMAC:
    # Copying an HMAC keyed once costs half of hmac.digest, which with OpenSSL 3 looks the digest
    # up again on every call. Cached per (auth token, algorithm): one or two per connector.
    return hmac.new(token, digestmod=digest)


def _hmac(token: bytes, digest: str, message: bytes) -> bytes:
    mac = _keyed(token, digest).copy()
    mac.update(message)
    return mac.digest()


class UnsupportedAlgorithm(ValueError):
    """The signature settings name an algorithm this version does not know."""


class SignedUrl(NamedTuple):
    """What the signature depends on in a URL, worked out once per URL."""

    variants: tuple[str, str]  # the URL as Twilio most likely signed it first, then the other form
    body_sha256: str | None  # the bodySHA256 query parameter of a JSON webhook


@functools.lru_cache(maxsize=256)
def signed_url(url: str) -> SignedUrl:
    """The two spellings of `url` Twilio may have signed: with and without the port.

    Twilio signs the URL exactly as configured, but has not always spelled the default port the
    same way, so the SDK accepts either; the spelling of `url` itself is tried first. Cached: a
    gateway serves a handful of webhook URLs (the bound keeps odd query strings from growing it).
    """
    parsed = urlparse(url)
    with_port, without_port = add_port(parsed), remove_port(parsed)
    variants = (with_port, without_port) if parsed.port else (without_port, with_port)
    body_sha256 = parse_qs(parsed.query).get("bodySHA256", [None])[0]
    return SignedUrl(variants, body_sha256)


def compute_signature(token: bytes, url: str, params: Iterable[tuple[str, str]], algorithm: str = HMAC_SHA1) -> str:
    """X-Twilio-Signature of a request to `url` with form `params` (name, value pairs)."""
    digest = _DIGESTS.get(algorithm.upper())
    if digest is None:
        raise UnsupportedAlgorithm(f"unsupported webhook signature algorithm {algorithm!r}")
    return base64.b64encode(_hmac(token, digest, (url + _params_string(params)).encode())).decode()


def _params_string(params: Iterable[tuple[str, str]]) -> str:
    # Sorting the distinct (name, value) pairs is the SDK's order: names sorted, and a repeated
    # name's distinct values sorted under it.
    return "".join(name + value for name, value in sorted(set(params)))


def validate(
    token: bytes,
    url: str,
    params: Iterable[tuple[str, str]],
    body: bytes,
    signature: str,
    algorithm: str = HMAC_SHA1,
) -> bool:
    """Whether `signature` is Twilio's for this request; raises UnsupportedAlgorithm.

    `params` are the form's fields (ignored for a JSON webhook, whose URL carries bodySHA256, and
    whose raw `body` is hashed instead).
    """
    digest = _DIGESTS.get(algorithm.upper())
    if digest is None:
        raise UnsupportedAlgorithm(f"unsupported webhook signature algorithm {algorithm!r}")
    target = signed_url(url)
    if target.body_sha256 is not None:
        if not hmac.compare_digest(hashlib.sha256(body).hexdigest().encode(), target.body_sha256.encode()):
            return False
        suffix = ""
    else:
        suffix = _params_string(params)
    expected = signature.encode("utf-8", errors="replace")
    for variant in target.variants:
        mac = _hmac(token, digest, (variant + suffix).encode())
        if hmac.compare_digest(base64.b64encode(mac), expected):
            return True
    return False


__all__ = ["SignedUrl", "UnsupportedAlgorithm", "compute_signature", "signed_url", "validate"]
