"""What WhatsApp, Messenger and Instagram share: Meta's webhook (the hub.challenge handshake and
X-Hub-Signature-256), its batched payloads, the Graph client and Meta's settings.

One POST may carry several `entry[]` items, each with several changes or messaging events; the
parser turns all of them into one ParseResult, so the gateway records them together and acks
the POST once they are all durable. Entries for another page or number than the instance's are
skipped (and counted): one Meta app often serves several.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import msgspec

from connectors.base import (
    Connector,
    ConnectorSettings,
    MalformedPayload,
    ParseResult,
    ProviderFile,
    Route,
    Secret,
    SignatureError,
    WebhookRequest,
    WebhookResponse,
    http_url,
    non_empty_secret,
)
from connectors.social.graph import GraphClient
from conversation.model import InboundMessage, StatusUpdate

SIGNATURE_HEADER = "X-Hub-Signature-256"
_VERSION = re.compile(r"^v\d+\.\d+$")
# Where Graph hands out media downloads (WhatsApp's lookaside, Messenger's CDN).
MEDIA_HOSTS = frozenset({"facebook.com", "fbsbx.com", "fbcdn.net", "whatsapp.net", "cdninstagram.com"})


class MetaSettings(ConnectorSettings, kw_only=True):
    """Settings every Meta connector takes."""

    app_secret: Secret
    verify_token: Secret
    api_base_url: str = "https://graph.facebook.com"
    api_version: str = "v21.0"
    timeout_seconds: float = 15.0

    def __post_init__(self) -> None:
        self.app_secret = non_empty_secret(self.app_secret, "app_secret")
        self.verify_token = non_empty_secret(self.verify_token, "verify_token")
        self.api_base_url = http_url(self.api_base_url)
        if not _VERSION.match(self.api_version):
            raise ValueError(f"api_version must look like 'v21.0', not {self.api_version!r}")
        if self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")


@dataclass
class Batch:
    """What one webhook POST yields, gathered across its entries."""

    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def result(self) -> ParseResult:
        return ParseResult(messages=tuple(self.messages), statuses=tuple(self.statuses),
                           skipped=tuple(self.skipped))


S = TypeVar("S", bound=MetaSettings)


class MetaConnector(Connector[S], Generic[S]):
    """The webhook half of a Meta connector; subclasses parse their entries and send."""

    # The payload's `object` for this product ("whatsapp_business_account", "page", "instagram").
    meta_object: ClassVar[str]

    def __init__(self, instance: str, settings: S, *, public_url: str) -> None:
        super().__init__(instance, settings, public_url=public_url)
        self._secret = settings.app_secret.reveal().encode()
        self._verify_token = settings.verify_token.reveal().encode()
        self.graph = GraphClient(settings.api_base_url, settings.api_version, self.access_token(),
                                 timeout=settings.timeout_seconds)

    # The webhook fields to subscribe in the Meta app for this product.
    webhook_fields: ClassVar[tuple[str, ...]]

    def access_token(self) -> str:
        raise NotImplementedError

    def setup_steps(self, *, reveal: bool = False) -> Sequence[str]:
        token = self.settings.verify_token.reveal() if reveal else "<verify_token>"
        return (f"Meta app > Webhooks > {self.meta_object}: callback URL {self.webhook_url('events')}, "
                f"verify token {token}",
                f"subscribe to the fields: {', '.join(self.webhook_fields)}")

    def routes(self) -> Sequence[Route]:
        return (Route("GET", "events"), Route("POST", "events"))

    def verify(self, request: WebhookRequest) -> None:
        if request.method == "GET":
            # The subscription handshake carries the verify token we gave Meta instead of a signature.
            token = (request.query.get("hub.verify_token") or "").encode()
            if request.query.get("hub.mode") != "subscribe" or not hmac.compare_digest(token, self._verify_token):
                raise SignatureError("hub.verify_token does not match the configured verify_token")
            return
        header = request.header(SIGNATURE_HEADER) or ""
        if not header.startswith("sha256="):
            raise SignatureError(f"missing or malformed {SIGNATURE_HEADER} header")
        expected = hmac.new(self._secret, request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(header.removeprefix("sha256=").strip().lower().encode(), expected.encode()):
            raise SignatureError(f"{SIGNATURE_HEADER} does not match the body")

    def parse(self, request: WebhookRequest) -> ParseResult:
        if request.method == "GET":
            challenge = request.query.get("hub.challenge") or ""
            return ParseResult(response=WebhookResponse(200, challenge.encode(), "text/plain"))
        try:
            payload = msgspec.json.decode(request.body)
        except msgspec.DecodeError as exc:
            raise MalformedPayload(f"the webhook body is not JSON: {exc}") from None
        if not isinstance(payload, Mapping):
            raise MalformedPayload("the webhook body is not a JSON object")
        if payload.get("object") != self.meta_object:
            raise MalformedPayload(f"object {payload.get('object')!r} is not {self.meta_object!r}: is the Meta app's "
                                   "webhook for another product pointed here?")
        entries = payload.get("entry")
        if not isinstance(entries, list):
            raise MalformedPayload("the webhook has no entry list")
        batch = Batch()
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise MalformedPayload("an entry is not an object")
            self.parse_entry(entry, request.received_at_ms, batch)
        return batch.result()

    def parse_entry(self, entry: Mapping[str, Any], received_at_ms: int, batch: Batch) -> None:
        raise NotImplementedError

    async def fetch_media(self, url: str) -> ProviderFile:
        return await self.graph.download(url, allowed_hosts=MEDIA_HOSTS)

    async def aclose(self) -> None:
        await self.graph.aclose()


def require(obj: Mapping[str, Any], key: str, what: str) -> Any:
    value = obj.get(key)
    if value is None or value == "":
        raise MalformedPayload(f"{what} has no {key!r}")
    return value


def seconds_ms(value: Any) -> int:
    """WhatsApp's `timestamp` (Unix seconds, as a string) in milliseconds; 0 when unreadable."""
    try:
        return int(float(value) * 1000)
    except (TypeError, ValueError):
        return 0


__all__ = ["MEDIA_HOSTS", "Batch", "MetaConnector", "MetaSettings", "require", "seconds_ms"]
