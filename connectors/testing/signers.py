"""Signers: a provider's side of webhook authentication, for tests of a connector's `verify`.

The conformance kit builds a webhook request, asks the signer for the headers the provider would
add, and then checks that `verify` accepts it and refuses every variation an attacker could send
(tampered body, missing or altered headers, a stale timestamp). The one method takes the whole
unsigned request because providers sign different parts of it:

- Twilio signs the URL it called plus the sorted form parameters (`TwilioSigner`);
- Slack signs ``v0:{timestamp}:{body}`` and sends the timestamp beside it (`SlackSigner`);
- Meta signs the raw body (``X-Hub-Signature-256: sha256=...``, `HmacSha256Signer`);
- Telegram echoes a secret token in a header and signs nothing (`SecretTokenSigner`).

A provider that is none of these gets a `Signer` subclass of a few lines.
"""

from __future__ import annotations

import abc
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import parse_qsl

from multidict import MultiDict
from twilio.request_validator import RequestValidator

from connectors.base import WebhookRequest


class Signer(abc.ABC):
    """Signs a raw webhook request exactly as the provider does.

    `max_age_seconds`: for schemes that sign a timestamp, how old a signature may be before the
    connector must refuse it (Slack: 300). None means the scheme has no timestamp, and the kit
    skips its stale-timestamp test. `signs_body` is False for schemes that authenticate the sender
    but not the payload (Telegram's secret token): the kit then cannot expect a tampered body to
    be refused, and says so.
    """

    max_age_seconds: float | None = None
    signs_body: bool = True

    @abc.abstractmethod
    def headers(self, request: WebhookRequest, *, now: float) -> Mapping[str, str]:
        """The headers the provider would add to `request`, signing it at Unix time `now`.

        `request.url` is the public URL the provider called (query string included), `request.body`
        the raw bytes, `request.headers` what the provider sends besides the signature.
        """


class HmacSha256Signer(Signer):
    """Hex HMAC-SHA256 of the raw body under a shared secret, in one header.

    Meta's ``X-Hub-Signature-256: sha256=<hex>`` is the default; the `omnigateway new-connector`
    skeleton uses the same scheme under ``X-Signature-256``.
    """

    def __init__(self, secret: str, *, header: str = "X-Hub-Signature-256", prefix: str = "sha256=") -> None:
        self.secret = secret
        self.header = header
        self.prefix = prefix

    def headers(self, request: WebhookRequest, *, now: float) -> Mapping[str, str]:
        digest = hmac.new(self.secret.encode(), request.body, hashlib.sha256).hexdigest()
        return {self.header: self.prefix + digest}


class SlackSigner(Signer):
    """Slack's v0 request signing: HMAC-SHA256 of ``v0:{timestamp}:{body}``, five-minute window."""

    max_age_seconds = 300.0

    def __init__(self, signing_secret: str) -> None:
        self.signing_secret = signing_secret

    def headers(self, request: WebhookRequest, *, now: float) -> Mapping[str, str]:
        timestamp = str(int(now))
        base = b"v0:" + timestamp.encode() + b":" + request.body
        digest = hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": "v0=" + digest}


class SecretTokenSigner(Signer):
    """A shared secret echoed in a header, as Telegram's ``X-Telegram-Bot-Api-Secret-Token``."""

    signs_body = False

    def __init__(self, token: str, *, header: str = "X-Telegram-Bot-Api-Secret-Token") -> None:
        self.token = token
        self.header = header

    def headers(self, request: WebhookRequest, *, now: float) -> Mapping[str, str]:
        return {self.header: self.token}


class TwilioSigner(Signer):
    """Twilio's X-Twilio-Signature: HMAC-SHA1 of the URL plus the form parameters, by the auth token."""

    def __init__(self, auth_token: str) -> None:
        self.auth_token = auth_token

    def headers(self, request: WebhookRequest, *, now: float) -> Mapping[str, str]:
        # Twilio signs the decoded parameters; a repeated name contributes each of its values.
        params = MultiDict(parse_qsl(request.body.decode("utf-8", errors="replace"), keep_blank_values=True))
        signature = RequestValidator(self.auth_token).compute_signature(request.url, params)
        return {"X-Twilio-Signature": str(signature)}


__all__ = ["HmacSha256Signer", "SecretTokenSigner", "Signer", "SlackSigner", "TwilioSigner"]
