"""The activity log: what happened to a conversation, who did it, and when.

Every change of a thread (a message in, a reply queued, sent or failed, a routing decision, an
assignment, a status change...) appends one entry to the conversation's log in the same Lua call
that makes the change, so the log and the thread can never disagree, even across a crash. The log
is a Redis List in the customer's slot, append-only, each entry a small positional msgpack array
written by the scripts (`lua/_activity.lua`, generated from the tables below):

    [type code, at_ms, actor kind code, actor name or "", {details}]

A List, not a Stream: a Stream's head node preallocates stream-node-max-bytes (4 KB) per key, and
one log per conversation would spend that a million times over. Entry ids are the list index
(`conversation.ids.activity_id`), which gives cursors in both directions for free.

Live events are derived from the entries a change appended (`event_of`), never built apart from
them, and future reports read the same log.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

from conversation.ids import activity_id, message_id, split_activity_id
from conversation.model import Event, EventType, UtcDatetime, from_ms


class ActivityType(enum.StrEnum):
    MESSAGE_RECEIVED = "message_received"
    REPLY_QUEUED = "reply_queued"
    REPLY_SENT = "reply_sent"
    REPLY_FAILED = "reply_failed"
    ROUTED = "routed"
    ASSIGNED = "assigned"
    UNASSIGNED = "unassigned"
    STATUS_CHANGED = "status_changed"
    REOPENED = "reopened"
    IDENTITY_LINKED = "identity_linked"
    MERGE_SUGGESTED = "merge_suggested"
    NOTE_ADDED = "note_added"
    REPLY_DELIVERED = "reply_delivered"
    REPLY_READ = "reply_read"
    MESSAGE_EDITED = "message_edited"
    MESSAGE_DELETED = "message_deleted"
    REPLY_REQUEUED = "reply_requeued"
    OPT_OUT_CHANGED = "opt_out_changed"
    # Ours, sent from the provider's own app (the WhatsApp Business app, the Page inbox).
    OUTSIDE_REPLY = "outside_reply"
    # Name, language or tier set through the API.
    CUSTOMER_UPDATED = "customer_updated"
    # The routing rules ran again on an agent's request.
    REROUTED = "rerouted"
    TRANSFERRED = "transferred"


# Stored codes: append new types at the end, never renumber (entries already written keep theirs).
TYPE_CODES: dict[ActivityType, int] = {t: i for i, t in enumerate(ActivityType, start=1)}
_TYPES_BY_CODE = {code: t for t, code in TYPE_CODES.items()}

ActorKind = Literal["agent", "customer", "system", "rule"]
ACTOR_CODES: dict[ActorKind, int] = {"agent": 1, "customer": 2, "system": 3, "rule": 4}
_ACTORS_BY_CODE: dict[int, ActorKind] = {code: kind for kind, code in ACTOR_CODES.items()}

# Details are stored under their API names, except the message, kept as its timeline index ("m")
# because its id is the conversation's id plus that index.
_MESSAGE_SEQ = "m"


class Actor(msgspec.Struct, frozen=True):
    """Who made a change. `name` is the agent's or rule's name, the customer's id, or None for
    the system."""

    kind: ActorKind
    name: str | None = None


SYSTEM = Actor("system")


def agent(name: str) -> Actor:
    return Actor("agent", name)


def rule(name: str) -> Actor:
    return Actor("rule", name)


class Activity(msgspec.Struct, frozen=True):
    """One entry of a conversation's activity log, as the API shows it."""

    id: str
    type: ActivityType
    at: UtcDatetime
    actor: Actor
    details: dict[str, Any]

    @property
    def conversation_id(self) -> str:
        return split_activity_id(self.id)[0]

    @property
    def message_id(self) -> str | None:
        value = self.details.get("message_id")
        return value if isinstance(value, str) else None


class ActivityPage(msgspec.Struct):
    items: list[Activity]
    next_cursor: str | None


_decoder = msgspec.msgpack.Decoder()


def decode_entry(cid: str, index: int, blob: bytes | str) -> Activity | None:
    """An entry as stored; None for a type this version does not know (a newer gateway wrote it)."""
    raw = _decoder.decode(blob.encode() if isinstance(blob, str) else blob)
    code, at_ms, actor_code, name = int(raw[0]), int(raw[1]), int(raw[2]), raw[3]
    stored = raw[4] if len(raw) > 4 else {}
    kind = _ACTORS_BY_CODE.get(actor_code, "system")
    if code not in _TYPES_BY_CODE:
        return None
    details: dict[str, Any] = {}
    if isinstance(stored, Mapping):  # an entry without details is packed as an empty array
        for key, value in stored.items():
            if key == _MESSAGE_SEQ:
                details["message_id"] = message_id(cid, int(value))
            else:
                details[str(key)] = value
    return Activity(
        id=activity_id(cid, index),
        type=_TYPES_BY_CODE[code],
        at=from_ms(at_ms),
        actor=Actor(kind, cid if kind == "customer" else (name or None)),
        details=details,
    )


def decode_logged(cid: str, flat: Sequence[Any] | None) -> list[Activity]:
    """The entries a script reports it appended, as [index, blob, index, blob, ...]."""
    if not flat:
        return []
    entries = (decode_entry(cid, int(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2))
    return [e for e in entries if e is not None]


# --- live events, derived from the log ---------------------------------------------------------

_EVENT_TYPES: dict[ActivityType, EventType] = {
    ActivityType.MESSAGE_RECEIVED: EventType.MESSAGE_CREATED,
    ActivityType.REPLY_QUEUED: EventType.MESSAGE_CREATED,
    ActivityType.NOTE_ADDED: EventType.MESSAGE_CREATED,
    ActivityType.OUTSIDE_REPLY: EventType.MESSAGE_CREATED,
    ActivityType.REPLY_SENT: EventType.MESSAGE_STATUS,
    ActivityType.REPLY_FAILED: EventType.MESSAGE_STATUS,
    ActivityType.REPLY_DELIVERED: EventType.MESSAGE_STATUS,
    ActivityType.REPLY_READ: EventType.MESSAGE_STATUS,
    ActivityType.REPLY_REQUEUED: EventType.MESSAGE_STATUS,
    ActivityType.MESSAGE_EDITED: EventType.MESSAGE_UPDATED,
    ActivityType.MESSAGE_DELETED: EventType.MESSAGE_UPDATED,
}
_STATUS_OF: dict[ActivityType, str] = {
    ActivityType.REPLY_SENT: "sent",
    ActivityType.REPLY_FAILED: "failed",
    ActivityType.REPLY_DELIVERED: "delivered",
    ActivityType.REPLY_READ: "read",
    ActivityType.REPLY_REQUEUED: "queued",
    ActivityType.MESSAGE_EDITED: "edited",
    ActivityType.MESSAGE_DELETED: "deleted",
}


def event_of(entry: Activity) -> Event:
    """The live event an activity entry stands for: what changed, for views to reread."""
    kind = _EVENT_TYPES.get(entry.type, EventType.THREAD_CHANGED)
    status = _STATUS_OF.get(entry.type)
    if entry.type is ActivityType.STATUS_CHANGED:
        status = str(entry.details.get("to") or "") or None
    elif entry.type is ActivityType.REOPENED:
        status = "open"
    return Event(
        type=kind,
        conversation_id=entry.conversation_id,
        id=entry.id,
        message_id=entry.message_id,
        status=status,
        at_ms=int(entry.at.timestamp() * 1000),
        activity=entry.type.value,
    )


# --- the Lua side ------------------------------------------------------------------------------


def lua_prelude() -> str:
    """The helper every thread-changing script is loaded with (conversation/lua/_activity.lua).

    Generated from TYPE_CODES and ACTOR_CODES, so Python and Lua cannot disagree on a code.
    """
    types = ", ".join(f"{t.value} = {code}" for t, code in TYPE_CODES.items())
    actors = ", ".join(f"{kind} = {code}" for kind, code in ACTOR_CODES.items())
    return f"local ACTIVITY_TYPE = {{{types}}}\nlocal ACTOR = {{{actors}}}\n"


__all__ = [
    "ACTOR_CODES",
    "SYSTEM",
    "TYPE_CODES",
    "Activity",
    "ActivityPage",
    "ActivityType",
    "Actor",
    "ActorKind",
    "agent",
    "decode_entry",
    "decode_logged",
    "event_of",
    "lua_prelude",
    "rule",
]
