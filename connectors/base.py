"""The connector interface: what a channel must provide, and nothing of the web framework.

A connector turns a provider's webhook into normalized messages and sends our replies through the
provider's API. It never sees Redis or aiohttp: the gateway hands it a `WebhookRequest` (raw bytes
plus the URL the provider signed) and stores whatever `parse` returns. Limits are declared as data
in `Capabilities` so that the core enforces them once, for every connector.
"""

from __future__ import annotations

import abc
import email.utils
import functools
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar
from urllib.parse import parse_qsl, urlsplit

import msgspec
from multidict import CIMultiDict, CIMultiDictProxy

from conversation.capabilities import Capabilities, OverflowRule, TextFormat, TextUnit
from conversation.model import Identity, InboundMessage, Outbound, Profile, StatusUpdate, Template, TemplateSpec


class Secret(str):
    """A string that never shows itself in repr, logs or tracebacks."""

    def __repr__(self) -> str:
        return "Secret('**********')" if self else "Secret('')"

    def reveal(self) -> str:
        return str.__str__(self)


class ConnectorSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every connector's typed settings. `kind` is the entry-point name."""

    kind: str

    def __repr__(self) -> str:  # secrets are Secret instances, whose repr is masked
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__struct_fields__)
        return f"{type(self).__name__}({fields})"


class WebhookRequest(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """A framework-free view of one inbound HTTP request.

    `url` is the public URL the provider called, rebuilt from the configured public_url, because
    that is what providers sign; the gateway may sit behind a proxy that rewrites host and scheme.

    The parsed form is cached on the instance (`dict=True` gives it a __dict__ for that), so
    verify and parse share one parse of the body; the fields stay frozen.
    """

    method: str
    url: str
    path: str  # the route below /webhooks/{instance}/, e.g. "messages"
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    received_at_ms: int = 0

    def header(self, name: str) -> str | None:
        if isinstance(self.headers, CIMultiDictProxy | CIMultiDict):
            return self.headers.get(name)
        lname = name.lower()
        for k, v in self.headers.items():
            if k.lower() == lname:
                return v
        return None

    @functools.cached_property
    def form_pairs(self) -> tuple[tuple[str, str], ...]:
        """The body's application/x-www-form-urlencoded fields in order, parsed once.

        Raises UnicodeDecodeError when the body is not UTF-8 (not cached: raised on each use).
        """
        return tuple(parse_qsl(self.body.decode("utf-8", errors="strict"), keep_blank_values=True))

    def form(self) -> dict[str, str]:
        """The body as application/x-www-form-urlencoded fields (last value wins)."""
        return dict(self.form_pairs)

    def form_multi(self) -> list[tuple[str, str]]:
        return list(self.form_pairs)


class WebhookResponse(msgspec.Struct, frozen=True):
    """What the gateway answers the provider once the parse result is durably recorded."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"


class ParseResult(msgspec.Struct, frozen=True):
    """What one webhook request holds. `skipped` names, one reason each, the authentic items
    acknowledged and deliberately left out (another page's entry, a group chat, our own echo):
    counted in /metrics, so that a misrouted subscription shows."""

    messages: Sequence[InboundMessage] = ()
    statuses: Sequence[StatusUpdate] = ()
    response: WebhookResponse = WebhookResponse()
    skipped: Sequence[str] = ()


class Route(msgspec.Struct, frozen=True):
    """A webhook route the connector serves under /webhooks/{instance}/."""

    method: str
    path: str


class PollContext(Protocol):
    """What the gateway lends a polling connector (IMAP): durable state and the ingest path.

    The connector still knows nothing of Redis: it loads and saves its own cursor by name, and
    hands parsed results to `record`, which returns once they are durably recorded (entry ids,
    None for duplicates), so a cursor saved after `record` never skips a message.
    """

    instance: str

    async def load_state(self, name: str) -> bytes | None: ...

    async def save_state(self, name: str, value: bytes) -> None: ...

    async def record(self, result: ParseResult) -> list[str | None]: ...

    async def dead_letter(self, raw: bytes, reason: str) -> None: ...

    async def keep_attachment(self, name: str | None, content_type: str, data: bytes) -> str:
        """Store a file the provider only hands over inline (email); returns the URL agents use."""
        ...


# --- errors -------------------------------------------------------------------------------------


class ConnectorError(Exception):
    pass


class SignatureError(ConnectorError):
    """The request is forged, stale or unsigned: answer 403 and store nothing."""


class MalformedPayload(ConnectorError):
    """Authentic but unusable: acknowledge, and keep the raw payload in the dead-letter stream."""


class SendError(ConnectorError):
    def __init__(self, reason: str, *, code: str | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.retry_after = retry_after


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from an HTTP Retry-After header (delay-seconds or an HTTP date), for
    TransientSendError(retry_after=...); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class TransientSendError(SendError):
    """Timeouts, 5xx, 429: try again later (after `retry_after` seconds when the provider said)."""


class PermanentSendError(SendError):
    """Invalid address, unsubscribed, window closed: fail at once with the provider's reason.

    `opted_out` tells the core the recipient has opted out at the provider (e.g. Twilio 21610);
    `window_closed` that the provider refused free text outside its reply window (WhatsApp
    131047, Twilio 63016), so the core stops offering it until the customer writes again.
    """

    def __init__(self, reason: str, *, code: str | None = None, opted_out: bool = False,
                 window_closed: bool = False):
        super().__init__(reason, code=code)
        self.opted_out = opted_out
        self.window_closed = window_closed


class FileUnavailable(ConnectorError):
    """A customer's file could not be fetched from the provider (gone, refused, unreachable)."""


class ProviderFile(msgspec.Struct, frozen=True):
    """A customer's file as the provider handed it over to us, for an agent to open."""

    data: bytes
    content_type: str = "application/octet-stream"


class SettingsError(ConnectorError):
    pass


# --- the connector ------------------------------------------------------------------------------

S = TypeVar("S", bound=ConnectorSettings)


class Connector(abc.ABC, Generic[S]):
    """One configured instance of a channel (two Twilio numbers are two instances).

    `channel` is the medium shown on messages (sms, email...); `kind` is the plugin name.
    """

    kind: ClassVar[str]
    channel: ClassVar[str]
    # The kind of identity its customers write from and are answered at (phone for SMS and
    # WhatsApp, email, a provider's user ids...); unset, it is the channel's name. Replies on
    # this instance go to the customer's identity of this kind.
    identity_kind: ClassVar[str | None] = None
    # Ways in beyond webhook routes that the gateway serves for each instance, by name (the
    # web chat's "webchat": visitor sessions, a WebSocket, an HTTP fallback, the widget). The
    # gateway mounts every name it knows and refuses to start on one it does not.
    transports: ClassVar[tuple[str, ...]] = ()
    Settings: ClassVar[type[ConnectorSettings]]
    capabilities: ClassVar[Capabilities]
    # Media that differ from the connector's main one (Twilio: WhatsApp beside SMS) may declare
    # their own limits, e.g. a reply window.
    channel_capabilities: ClassVar[Mapping[str, Capabilities]] = {}
    # What the provider is answered when parse() refused an authentic payload (it was
    # dead-lettered): some providers flag anything but their usual answer as an error.
    malformed_response: ClassVar[WebhookResponse] = WebhookResponse(200, b"", "text/plain")

    def __init__(self, instance: str, settings: S, *, public_url: str) -> None:
        self.instance = instance
        self.settings = settings
        self.public_url = public_url.rstrip("/")

    @classmethod
    def from_config(cls, instance: str, raw: Mapping[str, Any], *, public_url: str) -> Connector[Any]:
        try:
            settings = msgspec.convert(dict(raw), cls.Settings, strict=False, dec_hook=_dec_hook)
        except msgspec.ValidationError as exc:
            raise SettingsError(f"connectors.{instance}: {exc}") from None
        return cls(instance, settings, public_url=public_url)  # type: ignore[arg-type]

    def capabilities_for(self, channel: str) -> Capabilities:
        """The limits of one of its media. An instance may refine them from its settings
        (Messenger's HUMAN_AGENT tag window exists only where the page enables it)."""
        return self.channel_capabilities.get(channel, self.capabilities)

    @classmethod
    def identity_kind_for(cls, channel: str) -> str:
        return cls.identity_kind or cls.channel

    @classmethod
    def media(cls) -> tuple[str, ...]:
        """Every medium it speaks: its channel, then those with limits of their own."""
        return (cls.channel, *(c for c in cls.channel_capabilities if c != cls.channel))

    def templates(self) -> Sequence[TemplateSpec]:
        """The approved templates configured on this instance (settings `templates`), for sends
        outside a reply window."""
        return tuple(getattr(self.settings, "templates", ()) or ())

    def setup_steps(self, *, reveal: bool = False) -> Sequence[str]:
        """What to do at the provider to point it at this instance (`omnigateway connectors`
        prints them): a setWebhook call, the fields to subscribe. Secrets appear as placeholders
        unless `reveal` (the operator asked for a command to paste)."""
        return ()

    def webhook_url(self, path: str) -> str:
        return f"{self.public_url}/webhooks/{self.instance}/{path}"

    @abc.abstractmethod
    def routes(self) -> Sequence[Route]: ...

    @abc.abstractmethod
    def verify(self, request: WebhookRequest) -> None:
        """Raise SignatureError unless the request is authentic. Runs before anything else."""

    @abc.abstractmethod
    def parse(self, request: WebhookRequest) -> ParseResult:
        """Pure: no I/O. Raise MalformedPayload for authentic requests that cannot be used."""

    @abc.abstractmethod
    async def send(self, outbound: Outbound) -> str:
        """Send one message and return the provider's message id."""

    async def poll(self, ctx: PollContext) -> None:
        """For channels that pull (IMAP): run until cancelled, under the gateway's supervision
        (one poller per instance across all processes; restarted with backoff if it raises).
        Push-only channels leave this alone."""
        raise NotImplementedError(f"{self.kind} does not poll")

    async def fetch_file(self, url: str) -> ProviderFile | None:
        """A customer's file (an attachment's `url`) that the provider serves only with our
        credentials, such as Slack's url_private with the bot token: fetched for an agent who
        opens it. None (the default) means the URL needs no credentials and agents open it
        directly. Raise FileUnavailable when the provider refuses or cannot be reached."""
        return None

    def polls(self) -> bool:
        """Whether the gateway should run poll() for this instance. Per instance, because some
        connectors pull only in one mode (Slack: Socket Mode instead of the Events API)."""
        return type(self).poll is not Connector.poll

    async def profile(self, identity: Identity) -> Profile | None:
        """Who is behind a sender identity, from the provider's API (Slack users.info).

        The ingest worker asks, off the ack path, for senders whose profile is not cached (the
        core caches the answer with a TTL), before it resolves the sender to a customer: the
        name fills in `sender_name`, and a verified email links an unknown sender to the customer
        who owns that email. None: nothing known. Errors are logged and read as None; they never
        hold up the message.
        """
        return None

    def has_profiles(self) -> bool:
        return type(self).profile is not Connector.profile

    async def aclose(self) -> None:
        """Release clients and sockets. Must be safe to call twice."""


def http_url(value: str, name: str = "api_base_url") -> str:
    """A settings URL without its trailing slash; ValueError naming `name` unless it is http(s).
    (Raised in a Settings' __post_init__, it reaches the operator as a SettingsError.)"""
    url = urlsplit(value)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ValueError(f"{name} must be an http(s) URL, not {value!r}")
    return value.rstrip("/")


def non_empty_secret(value: str, name: str) -> Secret:
    """A credential from settings as a Secret (masked in repr), refused when empty."""
    secret = value if isinstance(value, Secret) else Secret(value)
    if not secret:
        raise ValueError(f"{name} is empty")
    return secret


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Secret:
        if isinstance(obj, str):
            return Secret(obj)
        # A TypeError becomes msgspec's ValidationError naming the key (so a SettingsError);
        # NotImplementedError would escape from_config as a bare crash.
        raise TypeError(f"expected a string, got {type(obj).__name__}")
    raise NotImplementedError(f"no decoder for {type_!r}")


__all__ = [
    "Capabilities",
    "Connector",
    "ConnectorError",
    "ConnectorSettings",
    "FileUnavailable",
    "MalformedPayload",
    "Outbound",
    "OverflowRule",
    "ParseResult",
    "PermanentSendError",
    "PollContext",
    "Profile",
    "ProviderFile",
    "Route",
    "Secret",
    "SendError",
    "SettingsError",
    "SignatureError",
    "StatusUpdate",
    "Template",
    "TemplateSpec",
    "TextFormat",
    "TextUnit",
    "TransientSendError",
    "WebhookRequest",
    "WebhookResponse",
    "http_url",
    "non_empty_secret",
    "retry_after_seconds",
]
