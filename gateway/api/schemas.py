"""The API's request and response bodies, as msgspec Structs.

The resources themselves (Conversation, Customer, Message) are the domain model's Structs; this
module adds the envelopes around them and the request bodies. The same types decode requests,
encode responses and generate the OpenAPI components, so the document cannot drift from the code.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from conversation.model import Attachment, Conversation, Customer, Message, ThreadStatus, Tier
from conversation.service.voice import IntentSummary, PreviewItem
from conversation.voice import LintWarning

MAX_TEXT = 10_000
MAX_NAME = 200

# "Has a visible character". Python's \s also covers \x1c-\x1f and \x85, ECMA-262's (which
# OpenAPI clients use) covers \ufeff: naming them all makes the server and the document agree.
_VISIBLE = r"[^\s\x1c-\x1f\x85\ufeff]"
ReplyText = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT, pattern=_VISIBLE)]
Assignee = Annotated[str, Meta(min_length=1, max_length=MAX_NAME, pattern=_VISIBLE)]
IntentName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Locale = Annotated[str, Meta(min_length=2, max_length=16, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")]
VariableValue = Annotated[str, Meta(max_length=1024)] | int | float | bool
Variables = Annotated[dict[Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")],
                           VariableValue], Meta(max_length=50)]


class ErrorDetail(msgspec.Struct):
    code: Annotated[str, Meta(description="Stable, machine-readable: e.g. not_found, invalid_parameter.")]
    message: Annotated[str, Meta(description="For humans; wording may change.")]


class Error(msgspec.Struct):
    """Every error answer of the API."""

    error: ErrorDetail


class ConversationPage(msgspec.Struct):
    items: list[Conversation]
    next_cursor: str | None


class MessagePage(msgspec.Struct):
    items: list[Message]
    next_cursor: str | None


class CustomerList(msgspec.Struct):
    items: list[Customer]
    next_cursor: str | None = None


class DeadLetter(msgspec.Struct, omit_defaults=True):
    id: Annotated[str, Meta(description="`<stream>:<entry id>`, as the replay path expects it.")]
    stream: Literal["inbound", "outbound"]
    entry_id: str
    fields: Annotated[dict[str, str], Meta(description="Everything kept, raw: what a replay parses again.")]
    reason: Annotated[str, Meta(description="Why the pipeline gave up on it.")] = ""
    received_at: Annotated[str | None, Meta(description="When it arrived (RFC 3339), if known.")] = None
    instance: str | None = None
    method: str | None = None
    path: str | None = None
    content_type: str | None = None
    payload: Annotated[Any, Meta(description="The body as sent, readable: a form as its fields (a field sent "
                                             "twice as a list), JSON as JSON, anything else as text.")] = None
    message_id: Annotated[str | None, Meta(description="Outbound: the message that ran out of attempts.")] = None
    attempts: str | None = None
    partition: str | None = None
    ingest_entry_id: Annotated[str | None, Meta(description="An undecodable ingest entry's id.")] = None


class DeadLetterPage(msgspec.Struct):
    items: list[DeadLetter]
    next_cursor: str | None


class TemplateRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=512)]
    language: Annotated[str, Meta(min_length=2, max_length=16)]
    parameters: Annotated[list[Annotated[str, Meta(max_length=1024)]], Meta(max_length=20)] = msgspec.field(
        default_factory=list)


class ReplyRequest(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[ReplyText | UnsetType, Meta(description="The reply; or give `template` instead.")] = UNSET
    template: Annotated[
        TemplateRequest | UnsetType,
        Meta(description="One of the instance's approved templates (WhatsApp), sent whatever the reply window."),
    ] = UNSET
    intent: Annotated[
        IntentName | UnsetType,
        Meta(description="A named message of the brand voice (GET /v1/voice/templates), rendered for the channel "
                         "and the customer's locale; outside a reply window it goes as the approved template "
                         "the voice maps it to."),
    ] = UNSET
    variables: Annotated[
        Variables, Meta(description="Values the intent's text uses as `{{ variables.<name> }}`.")
    ] = msgspec.field(default_factory=dict)
    instance: Annotated[
        str | None, Meta(description="Connector instance to send through; default: where the customer last wrote.")
    ] = None
    private: Annotated[bool, Meta(description="An internal note for agents, never sent.")] = False
    attachments: Annotated[
        list[Attachment],
        Meta(max_length=10, description="Files by URL; those the channel cannot carry are sent as links."),
    ] = msgspec.field(default_factory=list)


class ReplyAccepted(Message):
    """The queued reply (its first part when it was split), with the tone lint's warnings."""

    warnings: list[LintWarning] = msgspec.field(default_factory=list)


class CustomerPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[
        Annotated[str, Meta(max_length=MAX_NAME, pattern=_VISIBLE)] | UnsetType | None,
        Meta(description="How the customer is named, in greetings too; null clears it."),
    ] = UNSET
    locale: Annotated[
        Locale | UnsetType | None,
        Meta(description="The language they are answered in (es, en...); null: what their channel tells."),
    ] = UNSET
    tier: Annotated[Tier | UnsetType, Meta(description="standard, vip or key_account; needs a supervisor.")] = UNSET
    account_manager: Annotated[
        Assignee | UnsetType | None,
        Meta(description="The agent who manages the account (a key account's TAM); needs a supervisor. Routing "
                         "rules with to_account_manager send the customer's threads to them."),
    ] = UNSET


class PreviewRequest(msgspec.Struct, forbid_unknown_fields=True):
    conversation_id: Annotated[
        Annotated[str, Meta(min_length=1, max_length=64)] | None,
        Meta(description="Render for this conversation's customer."),
    ] = None
    channels: Annotated[
        list[Annotated[str, Meta(min_length=1, max_length=64)]],
        Meta(max_length=20, description="Media (sms, email...) or instance names; default: those the customer is "
                                        "reachable on, or every configured one."),
    ] = msgspec.field(default_factory=list)
    text: Annotated[ReplyText | UnsetType, Meta(description="An agent's text; or give `intent`.")] = UNSET
    intent: IntentName | UnsetType = UNSET
    variables: Variables = msgspec.field(default_factory=dict)
    locale: Annotated[Locale | None, Meta(description="Render in this locale, whatever the customer's.")] = None


class PreviewPage(msgspec.Struct):
    items: list[PreviewItem]


class VoiceTemplateList(msgspec.Struct):
    items: list[IntentSummary]
    default_locale: str
    locales: list[str]


class VoiceReloaded(msgspec.Struct):
    reloaded: bool
    intents: int
    file: str | None


class AssignRequest(msgspec.Struct, forbid_unknown_fields=True):
    assignee: Annotated[
        Assignee | None, Meta(description="Principal name, `me`, or null to unassign.")
    ]


class TransferRequest(msgspec.Struct, forbid_unknown_fields=True):
    queue: Annotated[
        Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")] | None,
        Meta(description="The queue it goes to (it waits there, or is pushed to an agent)."),
    ] = None
    agent: Annotated[Assignee | None, Meta(description="The agent it goes to; they need room for it.")] = None
    note: Annotated[Annotated[str, Meta(max_length=2000)] | None, Meta(description="Why, for the activity log.")] = None


class StatusRequest(msgspec.Struct, forbid_unknown_fields=True):
    status: ThreadStatus
