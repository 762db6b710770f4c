"""The connector conformance kit: one class an integrator subclasses to prove a connector.

    from connectors.testing import ConnectorConformance, HmacSha256Signer, PayloadCase

    class TestAcmeConformance(ConnectorConformance):
        connector_class = AcmeConnector
        settings = {"api_token": "t", "webhook_secret": "s"}
        signer = HmacSha256Signer("s", header="X-Signature-256")
        payload_cases = [PayloadCase.json("a message", "events", {...}, messages=[InboundMessage(...)])]

        def fake_provider(self) -> FakeAcme:
            return FakeAcme()

The inherited tests are plain pytest tests. Async ones carry `pytest.mark.asyncio`, so they run
under pytest-asyncio's strict mode as well as its auto mode. The gateway tests take a `redis_url`
fixture, which the kit's pytest plugin provides (127.0.0.1:6379 if it answers, else a private
Valkey) unless the project defines its own.

A test that needs something the subclass did not supply (payload cases, a fake provider) is
skipped with a reason that says what to add; ``pytest -rs`` lists them. A failure says what to fix.
"""

from __future__ import annotations

from connectors.testing.cases import (
    INSTANCE,
    PUBLIC_URL,
    RECEIVED_AT_MS,
    REMOVE,
    FakeProvider,
    InvalidSettings,
    PayloadCase,
)
from connectors.testing.kit_gateway import GatewayTests
from connectors.testing.kit_send import SendTests
from connectors.testing.kit_structure import StructureTests
from connectors.testing.kit_webhooks import WebhookTests
from connectors.testing.netguard import ForbiddenNetworkAccess, forbid_network


class ConnectorConformance(StructureTests, WebhookTests, SendTests, GatewayTests):
    """Subclass as ``TestXxxConformance`` in a test module; every inherited test then runs.

    Required: `connector_class`, `settings` (valid raw settings, as in gateway.toml; `kind` is
    added), and for webhook connectors a `signer`. Recommended: `payload_cases` (real payloads),
    `fake_provider()` (the send tests) and `invalid_settings`. The rest has defaults.

    The tests come by topic from the mixins: what the connector declares (kit_structure), its
    webhooks (kit_webhooks), send() (kit_send), and the gateway end to end (kit_gateway); what a
    subclass sets and overrides is in _kit_base.KitBase.
    """


__all__ = [
    "INSTANCE",
    "PUBLIC_URL",
    "RECEIVED_AT_MS",
    "REMOVE",
    "ConnectorConformance",
    "FakeProvider",
    "ForbiddenNetworkAccess",
    "InvalidSettings",
    "PayloadCase",
    "forbid_network",
]
