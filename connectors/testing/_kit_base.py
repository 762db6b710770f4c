"""The conformance kit's base: what a subclass sets, its hooks, and the building blocks the
tests share (building the connector, signed requests, the recipient, the fake provider)."""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode

import pytest

from connectors.base import (
    Connector,
    Outbound,
    Route,
    WebhookRequest,
)
from connectors.testing.signers import Signer
from conversation.model import Attachment, Identity

if TYPE_CHECKING:
    pass
from connectors.testing._kit_helpers import _webhook_request
from connectors.testing.cases import INSTANCE, PUBLIC_URL, FakeProvider, InvalidSettings, PayloadCase


class KitBase:
    """Subclass as ``TestXxxConformance`` in a test module; every inherited test then runs.

    Required: `connector_class`, `settings` (valid raw settings, as in gateway.toml; `kind` is
    added), and for webhook connectors a `signer`. Recommended: `payload_cases` (real payloads),
    `fake_provider()` (the send tests) and `invalid_settings`. The rest has defaults.
    """

    connector_class: ClassVar[type[Connector[Any]]]
    settings: ClassVar[Mapping[str, Any]]
    invalid_settings: ClassVar[Sequence[InvalidSettings]] = ()
    signer: ClassVar[Signer | None] = None
    payload_cases: ClassVar[Sequence[PayloadCase]] = ()
    # Whom the send tests write to; by default the sender of the first payload case's message.
    recipient: ClassVar[Identity | None] = None
    reply_channel: ClassVar[str | None] = None
    # Settings fields whose names look like credentials but are not (e.g. a public key id).
    not_secret_fields: ClassVar[Collection[str]] = ()
    transient_statuses: ClassVar[Sequence[int]] = (429, 500, 503)
    permanent_statuses: ClassVar[Sequence[int]] = (400, 403, 404)
    instance: ClassVar[str] = INSTANCE
    public_url: ClassVar[str] = PUBLIC_URL

    # --- hooks a subclass may override ---------------------------------------------------------

    def fake_provider(self) -> FakeProvider | None:
        """A new, not yet started fake of the provider's API; None skips the send tests."""
        return None

    def provider_settings(self, base_url: str) -> dict[str, Any]:
        """The valid settings pointed at a provider API at `base_url`."""
        return {**self.settings, "api_base_url": base_url}

    def tamper(self, body: bytes) -> bytes:
        """A forged variant of a signed body; the default appends one byte, which any MAC over the
        body (or over the parameters parsed from it) must notice."""
        return body + b"x"

    # --- building blocks -----------------------------------------------------------------------

    @property
    def connector_name(self) -> str:
        return self._cls().__name__

    def build(self, settings: Mapping[str, Any] | None = None, *, public_url: str | None = None) -> Connector[Any]:
        """An instance from raw settings, through `from_config` as the gateway builds it."""
        cls = self._cls()
        raw = dict(self._settings() if settings is None else settings)
        raw.setdefault("kind", cls.kind)
        return cls.from_config(self.instance, raw, public_url=public_url or self.public_url)

    def request(self, connector: Connector[Any], case: PayloadCase, *, now: float | None = None,
                sign: bool = True) -> WebhookRequest:
        """`case` as the gateway would hand it to the connector; signed by `signer` unless told not."""
        url = connector.webhook_url(case.path) + (f"?{urlencode(dict(case.query))}" if case.query else "")
        headers = dict(case.headers)
        if case.content_type and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = case.content_type
        request = _webhook_request(case, url, headers, case.body)
        if sign and case.signed and self.signer is not None:
            signed = self.signer.headers(request, now=time.time() if now is None else now)
            request = _webhook_request(case, url, {**headers, **signed}, case.body)
        return request

    def _cls(self) -> type[Connector[Any]]:
        cls = getattr(self, "connector_class", None)
        if cls is None:
            pytest.fail(f"{type(self).__name__} must set `connector_class = YourConnector`", pytrace=False)
        if not (inspect.isclass(cls) and issubclass(cls, Connector)):
            pytest.fail(f"{type(self).__name__}.connector_class is {cls!r}, not a subclass of "
                        "connectors.base.Connector", pytrace=False)
        return cls

    def _settings(self) -> Mapping[str, Any]:
        settings = getattr(self, "settings", None)
        if not isinstance(settings, Mapping):
            pytest.fail(f"{type(self).__name__} must set `settings = {{...}}`: valid settings for "
                        f"{self.connector_name}, as in a [connectors.<instance>] table", pytrace=False)
        return settings

    def _routes(self, connector: Connector[Any]) -> list[Route]:
        return list(connector.routes())

    def _probe(self, connector: Connector[Any]) -> PayloadCase:
        """A stand-in request for the signature tests when no payload case is given."""
        routes = self._routes(connector)
        post = next((r for r in routes if r.method.upper() == "POST"), routes[0])
        return PayloadCase.json("probe", post.path, {"conformance": "probe"}, method=post.method.upper())

    def _auth_case(self, connector: Connector[Any]) -> PayloadCase:
        for case in self.payload_cases:
            if case.signed and case.body and not case.handshake:
                return case
        return self._probe(connector)

    def _need_routes(self, connector: Connector[Any]) -> None:
        if not self._routes(connector):
            pytest.skip(f"{self.connector_name} serves no webhook routes (it polls): nothing to verify or post")

    def _need_signer(self) -> Signer:
        if self.signer is None:
            pytest.fail(f"{type(self).__name__} has no `signer`: set `signer = ...` to a "
                        "connectors.testing Signer that signs requests as the provider does "
                        "(TwilioSigner, SlackSigner, HmacSha256Signer, SecretTokenSigner, or your own "
                        "subclass); every webhook the gateway accepts must be authenticated", pytrace=False)
        return self.signer

    def _recipient(self) -> tuple[Identity, str]:
        channel = self.reply_channel
        if self.recipient is not None:
            return self.recipient, channel or self._cls().channel
        for case in self.payload_cases:
            for message in case.messages:
                return message.sender, channel or message.channel
        pytest.skip(f"no recipient for the send tests: set `recipient = Identity(...)` on "
                    f"{type(self).__name__}, or add a payload case whose message has a sender")

    def _outbound(self, text: str, attachments: Sequence[Attachment] = ()) -> Outbound:
        to, channel = self._recipient()
        return Outbound(message_id=f"conformance-{uuid.uuid4().hex}", channel=channel, to=to, text=text,
                        attachments=tuple(attachments))

    def _need_provider(self, why: str) -> FakeProvider:
        provider = self.fake_provider()
        if provider is None:
            pytest.skip(f"{why}: no fake provider; override `fake_provider()` in {type(self).__name__} to "
                        "return a local fake of the provider's API (see connectors.testing.FakeProvider)")
        return provider
