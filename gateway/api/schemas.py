"""The API's request and response bodies, as msgspec Structs.

The resources themselves (Conversation, Customer, Message) are the domain model's Structs; this
module adds the envelopes around them and the request bodies. The same types decode requests,
encode responses and generate the OpenAPI components, so the document cannot drift from the code.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from conversation.model import Attachment, Conversation, Customer, Message, ThreadStatus

MAX_TEXT = 10_000
MAX_NAME = 200

# "Has a visible character". Python's \s also covers \x1c-\x1f and \x85, ECMA-262's (which
# OpenAPI clients use) covers \ufeff: naming them all makes the server and the document agree.
_VISIBLE = r"[^\s\x1c-\x1f\x85\ufeff]"
ReplyText = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT, pattern=_VISIBLE)]
Assignee = Annotated[str, Meta(min_length=1, max_length=MAX_NAME, pattern=_VISIBLE)]


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
    instance: Annotated[
        str | None, Meta(description="Connector instance to send through; default: where the customer last wrote.")
    ] = None
    private: Annotated[bool, Meta(description="An internal note for agents, never sent.")] = False
    attachments: Annotated[
        list[Attachment],
        Meta(max_length=10, description="Files by URL; those the channel cannot carry are sent as links."),
    ] = msgspec.field(default_factory=list)


class AssignRequest(msgspec.Struct, forbid_unknown_fields=True):
    assignee: Annotated[
        Assignee | None, Meta(description="Principal name, `me`, or null to unassign.")
    ]


class StatusRequest(msgspec.Struct, forbid_unknown_fields=True):
    status: ThreadStatus
