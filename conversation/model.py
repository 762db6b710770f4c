"""The normalized conversation model every channel is turned into.

One customer has many identities (a phone number, an email address, a Slack user...) and exactly
one thread. The thread is the customer's whole timeline, whatever the channel. These types are
the wire shapes of the inbox API too, so they are msgspec Structs: one definition serves storage,
JSON and the OpenAPI schema.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

# Timestamps are always timezone-aware UTC; the annotation makes the JSON schema say date-time.
UtcDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    NOTE = "note"


class DeliveryStatus(enum.StrEnum):
    """Where a message stands. Inbound messages are `received`; outbound ones move forward only."""

    RECEIVED = "received"
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    DELIVERED = "delivered"
    READ = "read"


# Forward-only ordering of outbound status. `failed` ranks above `sent` (a failure report beats a
# stale "sent"), but below `delivered`: a later delivery receipt is proof the message arrived.
STATUS_RANK: dict[DeliveryStatus, int] = {
    DeliveryStatus.RECEIVED: 0,
    DeliveryStatus.QUEUED: 1,
    DeliveryStatus.SENT: 2,
    DeliveryStatus.FAILED: 3,
    DeliveryStatus.DELIVERED: 4,
    DeliveryStatus.READ: 5,
}


class ThreadStatus(enum.StrEnum):
    OPEN = "open"
    PENDING = "pending"
    RESOLVED = "resolved"


IdentityKind = Literal["phone", "email", "slack", "webchat", "messenger", "instagram", "telegram"]


class Identity(msgspec.Struct, frozen=True):
    """How a customer is reached: a kind and a normalized address (E.164, lowercase email, ids)."""

    kind: str
    address: str
    opted_out: bool = False

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.address}"


class Attachment(msgspec.Struct, frozen=True, omit_defaults=True):
    url: str
    content_type: str = "application/octet-stream"
    name: str | None = None
    size: int | None = None
    # Why the file was not kept (e.g. over the size limit): recorded, never silently dropped.
    refused: str | None = None


Tier = Literal["standard", "vip", "key_account"]
TIERS: tuple[Tier, ...] = ("standard", "vip", "key_account")


class Customer(msgspec.Struct):
    id: str
    name: str | None
    identities: list[Identity]
    created_at: UtcDatetime
    # The language the customer is answered in, when set through the API (else what their
    # channel tells, else the brand's default: conversation.voice).
    locale: str | None = None
    tier: Tier = "standard"
    # The agent who manages this customer's account (a key account's TAM): routing rules with
    # to_account_manager send their threads straight to them.
    account_manager: str | None = None


class Message(msgspec.Struct):
    """One entry of a customer's timeline, as agents see it."""

    id: str
    conversation_id: str
    direction: Direction
    channel: str
    instance: str | None
    text: str
    attachments: list[Attachment]
    status: DeliveryStatus
    error: str | None
    created_at: UtcDatetime
    author: str | None = None
    provider_message_id: str | None = None
    to: str | None = None
    subject: str | None = None
    # An automatic answer (out-of-office, autoresponder): shown, but it did not reopen the thread.
    auto_reply: bool = False
    # The customer changed the message at the provider (Slack message_changed): `text` is the
    # latest version. A deleted message keeps its place in the timeline but loses its content.
    edited_at: UtcDatetime | None = None
    deleted: bool = False
    # While a send is being retried: how many attempts were made, why the last one failed, and
    # when the next one is due. A failed message's final reason is `error`.
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: UtcDatetime | None = None
    # A reply sent as an approved template; `text` is what the customer read when it is known.
    template: Template | None = None
    # What the agent typed, when the voice layer changed it on its way (`text` is what the
    # customer was sent), and the named intent it was rendered from; an email's HTML part.
    composed: str | None = None
    intent: str | None = None
    html: str | None = None


class Conversation(msgspec.Struct):
    """The customer's one thread with its routing state."""

    id: str
    customer: Customer
    status: ThreadStatus
    queue: str | None
    assignee: str | None
    priority: int
    last_message_at: UtcDatetime | None
    episode: int = 1
    tags: list[str] = msgspec.field(default_factory=list)
    # The medium the customer last wrote on (where a reply goes by default; what an agent's
    # capacity counts).
    channel: str | None = None
    # Where free text may go now (GET /v1/conversations/{id}); null in listings, which do not
    # compute them.
    reply_windows: list[ReplyWindow] | None = None


class Episode(msgspec.Struct, frozen=True):
    """One open -> resolved span of a thread: the unit of response-time metrics."""

    number: int
    opened_at: UtcDatetime
    first_response_at: UtcDatetime | None
    resolved_at: UtcDatetime | None


class MessageEdit(msgspec.Struct, frozen=True, omit_defaults=True):
    """An InboundMessage that changes an earlier one instead of adding to the thread.

    `target` is the provider id of the edited message on the same instance; the carrying
    message's text is the new text. It travels the ingest path of ordinary messages (dedupe on
    its own provider id, the sender's partition, so after the message it edits).
    """

    target: str
    deleted: bool = False
    at_ms: int = 0


class Profile(msgspec.Struct, frozen=True, omit_defaults=True):
    """Who is behind a sender identity, as the provider knows them (Slack users.info).

    `email_verified`: the provider vouches for the address and the connector instance allows
    linking by it; only then does the core join the sender to a customer with that email.
    """

    name: str | None = None
    email: str | None = None
    email_verified: bool = False
    # The person's language as the provider knows it (Slack's locale, "es-ES").
    locale: str | None = None


class InboundMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a connector's parse() yields for a customer message: pure data, no storage ids yet."""

    instance: str
    channel: str
    provider_message_id: str
    sender: Identity
    text: str = ""
    attachments: tuple[Attachment, ...] = ()
    sender_name: str | None = None
    received_at_ms: int = 0
    # Set by parsers for keyword commands (STOP/START/HELP...) so the core can record them.
    opt_out: Literal["stop", "start", "help"] | None = None
    subject: str | None = None
    # Provider ids of our earlier messages this one answers (email In-Reply-To / References):
    # the core threads it to their customer even when it comes from an address it does not know.
    references: tuple[str, ...] = ()
    # Whether a sender found only through `references` may be linked to that customer; if not,
    # the message still lands in that thread, and a merge is suggested instead.
    link_sender: bool = True
    auto_reply: bool = False
    extra: dict[str, str] = {}
    # Threaded chat channels (Slack): where a reply to this message goes (channel and thread),
    # kept as the thread's reply context on this instance, handed back to send() as references.
    thread_ref: str | None = None
    # Set when this is not a new message but a change to an earlier one.
    edit: MessageEdit | None = None
    # When the provider says the customer sent it (Meta's `timestamp`): reply windows count from
    # it, never from later than the message arrived. 0: when it arrived.
    sent_at_ms: int = 0
    # The sender's address as the provider wrote it, when that differs from the canonical
    # identity (a WhatsApp id in Mexico's old +52 1 form): replies on this instance go there.
    reply_address: str | None = None
    # Not the customer's words but ours, sent from outside the gateway (the WhatsApp Business
    # app, the Page inbox): recorded as an outbound message to `sender`, already sent.
    echo: bool = False
    # The sender's language as the channel tells it (Slack's locale, Telegram's language_code,
    # the web chat's browser language): replies use it when the customer has none of their own.
    locale: str | None = None


class StatusUpdate(msgspec.Struct, frozen=True, omit_defaults=True):
    """A provider's delivery report for one of our outbound messages.

    Or a watermark (Messenger and Instagram `delivery` / `read`): with `up_to_ms` set and no
    provider message id, it marks every earlier outbound message of the instance to `recipient`.
    """

    instance: str
    provider_message_id: str = ""
    status: DeliveryStatus = DeliveryStatus.DELIVERED
    error: str | None = None
    at_ms: int = 0
    recipient: Identity | None = None
    up_to_ms: int = 0
    # The provider refused the message as outside its reply window (WhatsApp 131047, Twilio
    # 63016): the window is closed, whatever our clock said.
    window_closed: bool = False

    @property
    def is_watermark(self) -> bool:
        return self.up_to_ms > 0 and self.recipient is not None


class Template(msgspec.Struct, frozen=True, omit_defaults=True):
    """An approved message template of the provider (WhatsApp), for sends outside the reply
    window: its name, language and the values of its parameters in order."""

    name: str
    language: str
    parameters: tuple[str, ...] = ()


_PLACEHOLDER = re.compile(r"\{\{\s*(\d+)\s*\}\}")


class TemplateSpec(msgspec.Struct, frozen=True, omit_defaults=True):
    """A template configured on an instance: its name and language, and its body with {{1}},
    {{2}}... where the parameters go, when known (the thread then shows the text sent)."""

    name: str
    language: str
    body: str | None = None

    def render(self, parameters: tuple[str, ...]) -> str:
        if self.body is None:
            return f"[template {self.name} ({self.language})]"
        def value(match: re.Match[str]) -> str:
            n = int(match.group(1))
            return parameters[n - 1] if 1 <= n <= len(parameters) else match.group(0)

        # One pass: a parameter is text, never read again for placeholders of its own.
        return _PLACEHOLDER.sub(value, self.body)


class ReplyWindow(msgspec.Struct, frozen=True):
    """Whether free text may be sent on one instance and medium the customer is reachable on."""

    instance: str
    channel: str
    open: bool
    closes_at: UtcDatetime | None


class Outbound(msgspec.Struct, frozen=True, kw_only=True):
    """A rendered reply the dispatcher hands to a connector's `send`, already within the
    channel's limits.

    `channel` is the medium to reply on, for connectors that speak several (Twilio: SMS and
    WhatsApp reach the same phone identity).
    """

    message_id: str
    channel: str
    to: Identity
    text: str
    attachments: tuple[Attachment, ...] = ()
    # Threaded channels (capabilities.threads): the conversation's subject and our and the
    # customer's earlier provider ids on this instance, oldest first, for reply headers.
    subject: str | None = None
    references: tuple[str, ...] = ()
    reply_to_provider_id: str | None = None
    status_callback_url: str | None = None
    # Outside a reply window: the approved template to send instead of free text, or the
    # provider's message tag (Messenger's HUMAN_AGENT) that allows this message there.
    template: Template | None = None
    tag: str | None = None
    # The voice layer's HTML rendering of `text`, for channels that declare HTML (email): sent
    # as the alternative part, with `text` as the plain one.
    html: str | None = None


class EventType(enum.StrEnum):
    MESSAGE_CREATED = "message.created"
    MESSAGE_STATUS = "message.status"
    MESSAGE_UPDATED = "message.updated"
    THREAD_CHANGED = "thread.changed"


class Event(msgspec.Struct, frozen=True, omit_defaults=True):
    """Published for agents' live views and outgoing webhooks. `id` makes replays recognisable."""

    type: EventType
    conversation_id: str
    id: str
    message_id: str | None = None
    status: str | None = None
    at_ms: int = 0
    # The activity entry (its type) the event was derived from.
    activity: str | None = None


def utcnow_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
