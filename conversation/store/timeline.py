"""Reading a thread: its messages with their delivery state, and its activity log.

The timeline is a List, append-only, each message a small positional msgpack array
(`StoredMessage`) whose id is ``<customer>.<index>``; outbound delivery state lives beside it in
the overlay hash keyed by index, so the timeline itself never changes on a status report. A List
was chosen over a Stream because a Stream's head node preallocates stream-node-max-bytes (4 KB)
per key, which alone would blow the per-conversation memory budget (bench/inbound.py).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import redis.asyncio as aioredis

from conversation.activity import Activity, decode_entry
from conversation.errors import NotFound
from conversation.ids import message_id, split_message_id
from conversation.keys import Keys
from conversation.model import Attachment, DeliveryStatus, Direction, Message, Template, from_ms


class StoredMessage(msgspec.Struct, array_like=True, omit_defaults=True):
    """A timeline entry as stored: positional msgpack, so field names cost no memory (and
    trailing fields at their defaults cost nothing either)."""

    direction: str
    channel: str
    instance: str | None
    created_ms: int
    text: str
    provider_id: str | None = None
    author: str | None = None
    attachments: tuple[Attachment, ...] = ()
    to: str | None = None  # recipient identity key of an outbound message
    subject: str | None = None
    auto_reply: bool = False
    edited_ms: int = 0
    deleted: bool = False
    template: Template | None = None  # sent as an approved template (text: what it reads)
    tag: str | None = None  # the provider's tag it was sent with (Messenger's HUMAN_AGENT)
    to_address: str | None = None  # the recipient's address as its provider writes it, if otherwise
    composed: str | None = None  # what the agent typed (None for an intent or a template)
    intent: str | None = None  # the voice intent it was rendered from
    html: str | None = None  # the HTML part (email)


class Overlay(msgspec.Struct, frozen=True):
    """An outbound message's delivery record (the overlay hash's JSON array, positions fixed)."""

    status: DeliveryStatus
    error: str | None = None
    provider_id: str | None = None
    attempts: int = 0
    next_attempt_ms: int = 0
    last_error: str | None = None


def decode_overlay(raw: bytes | str) -> Overlay:
    rec: list[Any] = json.loads(raw)
    rec += [None] * (6 - len(rec))  # written by an older version: fewer positions
    return Overlay(DeliveryStatus(rec[0]), rec[1] or None, rec[2] or None, int(rec[3] or 0), int(rec[4] or 0),
                   rec[5] or None)


def queued_overlay() -> str:
    return json.dumps([DeliveryStatus.QUEUED.value, None, None, 0, 0, None])


encoder = msgspec.msgpack.Encoder()
stored_decoder = msgspec.msgpack.Decoder(StoredMessage)


def to_message(cid: str, seq: int, m: StoredMessage, overlay: bytes | str | None) -> Message:
    attempts, last_error, next_at = 0, None, None
    if overlay is not None:
        o = decode_overlay(overlay)
        status, error, provider_id = o.status, o.error, o.provider_id or m.provider_id
        attempts = o.attempts
        if o.status is DeliveryStatus.QUEUED:  # while it waits for a retry
            last_error = o.last_error
            next_at = from_ms(o.next_attempt_ms) if o.next_attempt_ms else None
    elif m.direction == Direction.INBOUND.value:
        status, error, provider_id = DeliveryStatus.RECEIVED, None, m.provider_id
    else:  # notes are never delivered anywhere
        status, error, provider_id = DeliveryStatus.RECEIVED, None, None
    return Message(
        id=message_id(cid, seq),
        conversation_id=cid,
        direction=Direction(m.direction),
        channel=m.channel,
        instance=m.instance,
        text=m.text,
        attachments=list(m.attachments),
        status=status,
        error=error,
        created_at=from_ms(m.created_ms),
        author=m.author,
        provider_message_id=provider_id,
        to=m.to,
        subject=m.subject,
        auto_reply=m.auto_reply,
        edited_at=from_ms(m.edited_ms) if m.edited_ms else None,
        deleted=m.deleted,
        attempts=attempts,
        last_error=last_error,
        next_attempt_at=next_at,
        template=m.template,
        composed=m.composed,
        intent=m.intent,
        html=m.html,
    )


class Timeline:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    async def list_messages(self, cid: str, *, after: int = -1, limit: int = 50) -> tuple[list[Message], int | None]:
        """Messages oldest first, after the given index. Returns the page and the next cursor."""
        start = after + 1
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(self.keys.thread(cid))
            pipe.lrange(self.keys.timeline(cid), start, start + limit)  # one extra: is there more?
            pipe.hgetall(self.keys.overlay(cid))
            exists, blobs, overlay = await pipe.execute()
        if not exists:
            raise NotFound(f"no conversation {cid!r}")
        more = len(blobs) > limit
        blobs = blobs[:limit]
        deliveries = {int(k): v for k, v in overlay.items()}
        messages = [
            to_message(cid, start + i, stored_decoder.decode(b), deliveries.get(start + i))
            for i, b in enumerate(blobs)
        ]
        return messages, (start + len(blobs) - 1 if more else None)

    async def get_message(self, mid: str) -> Message:
        return (await self.get_stored(mid))[0]

    async def get_stored(self, mid: str) -> tuple[Message, StoredMessage]:
        """A message, and the entry it was read from (what a send needs beyond the API's view)."""
        cid, seq = split_message_id(mid)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lindex(self.keys.timeline(cid), seq)
            pipe.hget(self.keys.overlay(cid), str(seq))
            blob, overlay = await pipe.execute()
        if blob is None:
            raise NotFound(f"no message {mid!r}")
        stored = stored_decoder.decode(blob)
        return to_message(cid, seq, stored, overlay), stored

    async def recent(self, cid: str, count: int) -> tuple[int, list[bytes]]:
        """(index of the first, blobs) of the last `count` timeline entries."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.llen(self.keys.timeline(cid))
            pipe.lrange(self.keys.timeline(cid), -count, -1)
            length, blobs = await pipe.execute()
        return int(length) - len(blobs), list(blobs)

    async def activity(
        self, cid: str, *, after: int | None = None, descending: bool = False, limit: int = 50
    ) -> tuple[list[Activity], int | None]:
        """The activity log oldest (or newest) first, after the index `after` in that order.

        Returns the page and the index to continue after, or None at the end.
        """
        key = self.keys.activity(cid)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.exists(self.keys.thread(cid))
            pipe.llen(key)
            exists, length = await pipe.execute()
        if not exists:
            raise NotFound(f"no conversation {cid!r}")
        length = int(length)
        if descending:
            hi = (length - 1) if after is None else after - 1
            lo = max(0, hi - limit)  # one extra: is there more?
            blobs = list(reversed(await self.redis.lrange(key, lo, hi))) if hi >= 0 else []
            indexes = list(range(hi, hi - len(blobs), -1))
        else:
            lo = 0 if after is None else after + 1
            blobs = await self.redis.lrange(key, lo, lo + limit)
            indexes = list(range(lo, lo + len(blobs)))
        more = len(blobs) > limit
        entries = [decode_entry(cid, i, b) for i, b in zip(indexes[:limit], blobs[:limit], strict=True)]
        items = [e for e in entries if e is not None]
        return items, (indexes[limit - 1] if more else None)


__all__ = ["Overlay", "StoredMessage", "Timeline", "decode_overlay", "encoder", "queued_overlay",
           "stored_decoder", "to_message"]
