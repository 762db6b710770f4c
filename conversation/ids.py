"""Identifiers: customers, messages and activity entries. The one place that knows their shape.

A message id is ``<customer id>.<index in the timeline>``; an activity id is
``<customer id>.a<index in the activity log>``. Both carry their conversation, so any id an
adapter holds leads to its customer's hash slot without a lookup.
"""

from __future__ import annotations

import base64
import secrets

from conversation.errors import NotFound


def new_customer_id() -> str:
    # 80 random bits, lowercase base32: short in keys, safe in URLs, no separator characters.
    return base64.b32encode(secrets.token_bytes(10)).decode().lower()


def message_id(customer_id: str, seq: int) -> str:
    return f"{customer_id}.{seq}"


def split_message_id(mid: str) -> tuple[str, int]:
    """(customer id, timeline index) of a message id; NotFound when it is not one."""
    cid, _, seq = mid.rpartition(".")
    if not cid or not seq.isdigit():
        raise NotFound(f"no message {mid!r}")
    return cid, int(seq)


def conversation_of(mid: str) -> str:
    return split_message_id(mid)[0]


def activity_id(customer_id: str, index: int) -> str:
    return f"{customer_id}.a{index}"


def split_activity_id(aid: str) -> tuple[str, int]:
    cid, _, rest = aid.rpartition(".")
    if not cid or not rest.startswith("a") or not rest[1:].isdigit():
        raise NotFound(f"no activity entry {aid!r}")
    return cid, int(rest[1:])


__all__ = ["activity_id", "conversation_of", "message_id", "new_customer_id", "split_activity_id",
           "split_message_id"]
