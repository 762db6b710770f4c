"""Delivery state of our outbound messages: forward-only status, attempts, provider ids.

The state of one message is a record in its customer's overlay hash (timeline.Overlay), moved by
lua/delivery.lua, which logs the change (reply_sent, reply_failed...) in the same call. A
provider's id for a message is a small hash in its own slot (keys.provider_message) that leads a
status callback back to the message, and parks callbacks that arrive before we know the id.
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis.asyncio as aioredis

from conversation.activity import Activity, Actor, decode_logged
from conversation.errors import NotFound
from conversation.ids import message_id, split_message_id
from conversation.keys import Keys
from conversation.model import STATUS_RANK, DeliveryStatus, Direction, Identity, StatusUpdate, utcnow_ms
from conversation.store.scripts import Scripts
from conversation.store.timeline import Overlay, Timeline, stored_decoder

PROVIDER_LINK_TTL = 30 * 86_400
WATERMARK_SCAN = 200  # how far back a read/delivered watermark looks for our messages
_RANKS: list[str | int] = [x for name, rank in STATUS_RANK.items() for x in (name.value, rank)]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Delivery:
    def __init__(self, client: aioredis.Redis, scripts: Scripts, keys: Keys, timeline: Timeline) -> None:
        self.redis = client
        self.scripts = scripts
        self.keys = keys
        self.timeline = timeline

    async def update(
        self,
        mid: str,
        status: DeliveryStatus,
        *,
        error: str | None = None,
        provider_id: str | None = None,
        attempts: int | None = None,
        next_attempt_ms: int | None = None,
        last_error: str | None = None,
        dead_letter: bool = False,
    ) -> tuple[bool, Overlay, tuple[Activity, ...]]:
        """Move delivery status forward only (and note attempts and retries); returns whether
        anything changed, the record after it, and the activity logged."""
        cid, seq = split_message_id(mid)
        changed, st, err, pid, tries, logged = await self.scripts.run(
            "delivery",
            [self.keys.overlay(cid), self.keys.thread(cid), self.keys.activity(cid)],
            [seq, status.value, STATUS_RANK[status], error or "", provider_id or "",
             "" if attempts is None else attempts, utcnow_ms(),
             "" if next_attempt_ms is None else next_attempt_ms, last_error or "", "1" if dead_letter else "0",
             *_RANKS],
        )
        if changed == -1:
            raise NotFound(f"no outbound message {mid!r}")
        overlay = Overlay(DeliveryStatus(_s(st)), _s(err) or None, _s(pid) or None, int(tries))
        return bool(changed), overlay, tuple(decode_logged(cid, logged))

    async def requeue(self, mid: str, actor: Actor) -> tuple[bool, tuple[Activity, ...]]:
        """Put a failed send back to queued (an operator's replay). False if it got delivered."""
        cid, seq = split_message_id(mid)
        result, logged = await self.scripts.run("requeue", [self.keys.overlay(cid), self.keys.activity(cid)],
                                                [seq, utcnow_ms(), actor.kind, actor.name or ""])
        if int(result) == -1:
            raise NotFound(f"no outbound message {mid!r}")
        return int(result) == 1, tuple(decode_logged(cid, logged))

    async def link_provider_id(self, mid: str, instance: str, provider_id: str) -> list[StatusUpdate]:
        """Remember which message a provider id belongs to; returns reports that arrived first."""
        cid, seq = split_message_id(mid)
        early = await self.scripts.run("provider_link", [self.keys.provider_message(instance, provider_id)],
                                       [f"{cid} {seq}", PROVIDER_LINK_TTL])
        return [msgspec.json.decode(early[i + 1], type=StatusUpdate) for i in range(0, len(early), 2)]

    async def ours(self, instance: str, provider_ids: list[str]) -> list[bool]:
        """Whether each provider id is one of our sent messages (the echo of a send of ours)."""
        if not provider_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for provider_id in provider_ids:
                pipe.hexists(self.keys.provider_message(instance, provider_id), "loc")
            return [bool(x) for x in await pipe.execute()]

    async def locate(self, update: StatusUpdate) -> str | None:
        """Our message id for a status report, or None after parking the report for later."""
        loc = await self.scripts.run(
            "provider_status", [self.keys.provider_message(update.instance, update.provider_message_id)],
            [update.status.value, msgspec.json.encode(update), PROVIDER_LINK_TTL],
        )
        if not loc:
            return None
        cid, seq = _s(loc).split(" ")
        return message_id(cid, int(seq))

    async def up_to(self, cid: str, instance: str, recipient: Identity, up_to_ms: int) -> list[str]:
        """Our outbound messages to `recipient` on `instance` created at or before `up_to_ms`,
        among the thread's last WATERMARK_SCAN entries: what a read/delivered watermark covers."""
        first, blobs = await self.timeline.recent(cid, WATERMARK_SCAN)
        out = []
        for offset, blob in enumerate(blobs):
            m = stored_decoder.decode(blob)
            if (m.direction == Direction.OUTBOUND.value and m.instance == instance and m.to == recipient.key
                    and m.created_ms <= up_to_ms):
                out.append(message_id(cid, first + offset))
        return out


__all__ = ["PROVIDER_LINK_TTL", "Delivery"]
