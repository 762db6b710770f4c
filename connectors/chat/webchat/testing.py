"""Test helpers for the web chat connector: the kit's Signer is the widget holding a visitor token."""

from __future__ import annotations

import time
from collections.abc import Mapping

from connectors.base import WebhookRequest
from connectors.chat.webchat import tokens
from connectors.testing.signers import Signer


class VisitorTokenSigner(Signer):
    """Attaches ``Authorization: Bearer <visitor token>`` as the widget does.

    A visitor token authenticates the visitor, not the body (like Telegram's secret token), so
    the kit cannot expect a tampered body to be refused. A token issued `ttl_seconds` before the
    kit's "stale" time has expired, which is the stale case.
    """

    signs_body = False

    def __init__(self, key: bytes, instance: str, visitor_id: str, *, ttl_seconds: int,
                 name: str | None = None) -> None:
        self.key = key
        self.instance = instance
        self.visitor = tokens.Visitor(id=visitor_id, name=name)
        self.ttl_seconds = ttl_seconds
        self.max_age_seconds = float(ttl_seconds)

    def headers(self, request: WebhookRequest, *, now: float) -> Mapping[str, str]:
        token = tokens.issue_visitor_token(self.key, self.instance, self.visitor, ttl_seconds=self.ttl_seconds,
                                           now=now if now else time.time())
        return {"Authorization": f"Bearer {token}"}


__all__ = ["VisitorTokenSigner"]
