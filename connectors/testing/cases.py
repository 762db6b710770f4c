"""What a conformance subclass supplies: payload cases, invalid settings, a fake provider;
and the constants the kit builds every request with."""

from __future__ import annotations

import json as jsonlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode

from connectors.base import (
    WebhookResponse,
)
from conversation.model import InboundMessage, StatusUpdate

if TYPE_CHECKING:
    pass


# The instance name and receive time the kit uses for every request it builds, so that a payload
# case can spell out the exact InboundMessage / StatusUpdate it must become.
INSTANCE = "conformance"
RECEIVED_AT_MS = 1_700_000_000_000
PUBLIC_URL = "https://gateway.example.test"

_FORM = "application/x-www-form-urlencoded"
_HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
# Settings names that almost always hold a credential; typed plain `str` they would leak in logs.
_SECRET_NAME = re.compile(r"(secret|token|password|passwd|api_key|apikey|private_key|credential)", re.IGNORECASE)
_KIND = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
# How long the kit waits for an ingested message to show up in a customer's thread.
_THREAD_WAIT_SECONDS = 15.0


class _Remove:
    def __repr__(self) -> str:
        return "REMOVE"


REMOVE: Any = _Remove()
"""In `InvalidSettings.changes`: drop this key from the valid settings."""


@dataclass(frozen=True)
class InvalidSettings:
    """Settings that must be refused at construction: the valid ones with `changes` applied.

    `expect` is a fragment the SettingsError message must contain, so that the message an operator
    reads names the key and the problem (e.g. "account_sid must start with 'AC'").
    """

    changes: Mapping[str, Any]
    expect: str


@dataclass(frozen=True)
class PayloadCase:
    """One real webhook the provider sends, and what `parse` must make of it.

    Exactly one expectation kind: `messages` and/or `statuses` (plus `response` if the provider
    reads the answer), `handshake=True` with the `response` to give, or `malformed` with a
    fragment of the MalformedPayload message (an authentic payload that must be dead-lettered).
    `signed=False` for requests the provider does not sign (Meta's GET hub.challenge, which
    carries its own verify token): the kit then sends them as they are.
    """

    name: str
    path: str
    body: bytes = b""
    method: str = "POST"
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    messages: Sequence[InboundMessage] = ()
    statuses: Sequence[StatusUpdate] = ()
    response: WebhookResponse | None = None
    handshake: bool = False
    malformed: str | None = None
    signed: bool = True

    @classmethod
    def form(
        cls, name: str, path: str, fields: Mapping[str, str] | Sequence[tuple[str, str]], **expect: Any
    ) -> PayloadCase:
        """A form-encoded POST (Twilio, Slack slash commands), fields in the order given."""
        items = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
        return cls(name, path, urlencode(items).encode(), content_type=_FORM, **expect)

    @classmethod
    def json(cls, name: str, path: str, payload: Any, **expect: Any) -> PayloadCase:
        """A JSON POST (Slack events, Meta, Telegram); `payload` is encoded compactly."""
        body = jsonlib.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(name, path, body, content_type="application/json", **expect)

    @property
    def expects_content(self) -> bool:
        return bool(self.messages or self.statuses)


class FakeProvider(Protocol):
    """A local stand-in for the provider's API, started with ``async with``.

    `base_url` goes into the connector's `api_base_url`; `messages` lists what the provider
    accepted; `fail_next(status, retry_after=...)` makes the next request fail with that HTTP
    status (and a Retry-After header when given), in the provider's own error format.
    connectors.testing.fake_twilio.FakeTwilio is one.
    """

    @property
    def base_url(self) -> str: ...

    @property
    def messages(self) -> Sequence[Any]: ...

    def fail_next(self, status: int, *, retry_after: float | None = None) -> None: ...

    async def __aenter__(self) -> object: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
