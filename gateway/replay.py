"""A webhook request kept whole in a dead letter, and parsed again on an operator's replay.

The fields are everything needed to rebuild the request as the connector first saw it: method,
the URL the provider signed, headers, query, and the body byte for byte (latin-1 maps every byte
to one code point, so any body round-trips exactly).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.base import Connector, MalformedPayload, WebhookRequest
from conversation.errors import NoChannel, StillMalformed
from conversation.model import InboundMessage, StatusUpdate
from conversation.service.deadletters import Reparse


def dead_letter_fields(instance: str, request: WebhookRequest, reason: str) -> dict[str, str]:
    """What is kept of an authentic but unusable request: everything needed to replay it."""
    return {
        "instance": instance,
        "method": request.method,
        "url": request.url,
        "path": request.path,
        "headers": json.dumps(dict(request.headers)),
        "query": json.dumps(dict(request.query)),
        "body": request.body.decode("latin-1"),
        "reason": reason,
        "received_at_ms": str(request.received_at_ms),
    }


def polled_dead_letter_fields(instance: str, raw: bytes, reason: str, received_at_ms: int) -> dict[str, str]:
    """The same for a payload a polling connector fetched (a raw email)."""
    return {
        "instance": instance, "method": "POLL", "url": "", "path": "poll",
        "headers": json.dumps({"Content-Type": "message/rfc822"}), "query": "{}",
        "body": raw.decode("latin-1"), "reason": reason, "received_at_ms": str(received_at_ms),
    }


def reparser(connectors: Mapping[str, Connector[Any]]) -> Reparse:
    """The core's Reparse for these connectors: rebuild the request, parse it again."""

    def reparse(fields: dict[str, str]) -> tuple[Sequence[InboundMessage], Sequence[StatusUpdate]]:
        connector = connectors.get(fields.get("instance", ""))
        if connector is None:
            raise NoChannel(f"connector instance {fields.get('instance')!r} is not configured")
        request = WebhookRequest(
            method=fields.get("method", "POST"),
            url=fields["url"],
            path=fields["path"],
            headers=json.loads(fields.get("headers", "{}")),
            query=json.loads(fields.get("query", "{}")),
            body=fields["body"].encode("latin-1"),
            received_at_ms=int(fields.get("received_at_ms", "0")),
        )
        try:
            result = connector.parse(request)
        except MalformedPayload as exc:
            raise StillMalformed(str(exc)) from None
        return result.messages, result.statuses

    return reparse


__all__ = ["dead_letter_fields", "polled_dead_letter_fields", "reparser"]
