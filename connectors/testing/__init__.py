"""The connector test kit: the conformance kit, signers, fake providers and pytest fixtures.

    from connectors.testing import ConnectorConformance, PayloadCase, TwilioSigner

The names are loaded on first use, so that importing one fake (connectors.testing.fake_twilio)
does not pull in pytest, which only the conformance kit needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.testing.conformance import (
        INSTANCE,
        PUBLIC_URL,
        RECEIVED_AT_MS,
        REMOVE,
        ConnectorConformance,
        FakeProvider,
        ForbiddenNetworkAccess,
        InvalidSettings,
        PayloadCase,
        forbid_network,
    )
    from connectors.testing.signers import HmacSha256Signer, SecretTokenSigner, Signer, SlackSigner, TwilioSigner

_EXPORTS = {
    **dict.fromkeys(
        ("INSTANCE", "PUBLIC_URL", "RECEIVED_AT_MS", "REMOVE", "ConnectorConformance", "FakeProvider",
         "ForbiddenNetworkAccess", "InvalidSettings", "PayloadCase", "forbid_network"),
        "connectors.testing.conformance",
    ),
    **dict.fromkeys(
        ("HmacSha256Signer", "SecretTokenSigner", "Signer", "SlackSigner", "TwilioSigner"),
        "connectors.testing.signers",
    ),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'connectors.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "INSTANCE",
    "PUBLIC_URL",
    "RECEIVED_AT_MS",
    "REMOVE",
    "ConnectorConformance",
    "FakeProvider",
    "ForbiddenNetworkAccess",
    "HmacSha256Signer",
    "InvalidSettings",
    "PayloadCase",
    "SecretTokenSigner",
    "Signer",
    "SlackSigner",
    "TwilioSigner",
    "forbid_network",
]
