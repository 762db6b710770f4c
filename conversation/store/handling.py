"""Who handles a thread: what routing rules read of a customer, a thread given to the agent who
claimed it, passed on to another queue or agent, or routed again. Each change is one Lua call in
the customer's slot with its activity entry, like every thread change (store/threads.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis

from conversation.activity import Actor
from conversation.errors import NotFound
from conversation.keys import Keys
from conversation.model import Direction, utcnow_ms
from conversation.routing import Route
from conversation.store.scripts import Scripts
from conversation.store.threads import EDIT_SCAN, Change, change_from
from conversation.store.timeline import Timeline, stored_decoder


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class InboundText(msgspec.Struct, frozen=True):
    channel: str
    instance: str
    text: str


class CustomerFacts(msgspec.Struct, frozen=True):
    """What routing rules know of a customer: tier, language, the thread's tags, account manager."""

    tier: str = "standard"
    language: str | None = None
    tags: tuple[str, ...] = ()
    account_manager: str | None = None


class Handling:
    def __init__(self, client: aioredis.Redis, scripts: Scripts, keys: Keys, timeline: Timeline) -> None:
        self.redis = client
        self.scripts = scripts
        self.keys = keys
        self.timeline = timeline

    async def routing_facts(self, cids: Sequence[str]) -> dict[str, CustomerFacts]:
        """What routing rules may look at, for many customers in one round trip."""
        unique = list(dict.fromkeys(cids))
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in unique:
                pipe.hmget(self.keys.thread(cid), ["tier", "loc", "lh", "tags", "am"])
            rows = await pipe.execute()
        out: dict[str, CustomerFacts] = {}
        for cid, (tier, loc, hint, tags, am) in zip(unique, rows, strict=True):
            out[cid] = CustomerFacts(tier=_s(tier) if tier else "standard",
                                     language=_s(loc) if loc else (_s(hint) if hint else None),
                                     tags=tuple(json.loads(tags)) if tags else (),
                                     account_manager=_s(am) if am else None)
        return out

    async def claim(self, cid: str, agent: str, actor: Actor, *, via: str, queue: str = "") -> Change | None:
        """Give an open, unheld thread (still in `queue`, when given) to `agent`, logged
        `assigned` with how; None when it is no longer waiting there."""
        result = await self.scripts.run("thread_claim", [self.keys.thread(cid), self.keys.activity(cid)],
                                        [utcnow_ms(), actor.kind, actor.name or "", agent, via, queue])
        if result[0] == -2:
            raise NotFound(f"no conversation {cid!r}")
        return change_from(cid, result) if int(result[0]) == 1 else None

    async def transfer(self, cid: str, actor: Actor, *, queue: str | None, agent: str | None,
                       note: str | None) -> Change:
        result = await self.scripts.run("thread_transfer", [self.keys.thread(cid), self.keys.activity(cid)],
                                        [utcnow_ms(), actor.kind, actor.name or "", queue or "", agent or "",
                                         note or ""])
        if result[0] == -2:
            raise NotFound(f"no conversation {cid!r}")
        return change_from(cid, result)

    async def last_agent(self, cid: str) -> str | None:
        raw = await self.redis.hget(self.keys.thread(cid), "last_agent")
        return _s(raw) if raw else None

    async def reroute(self, cid: str, actor: Actor, route: Route) -> Change:
        """Put the thread where the rules now send it, logged `rerouted` with the rule."""
        result = await self.scripts.run("thread_reroute", [self.keys.thread(cid), self.keys.activity(cid)], [
            utcnow_ms(), actor.kind, actor.name or "", route.queue, route.priority, route.rule,
            json.dumps(list(route.tags))])
        if result[0] == -2:
            raise NotFound(f"no conversation {cid!r}")
        return change_from(cid, result)

    async def latest_inbound(self, cid: str, scan: int = EDIT_SCAN) -> InboundText | None:
        """The customer's latest message among the thread's last `scan` entries (what a re-route
        reads), or None."""
        _, blobs = await self.timeline.recent(cid, scan)
        for blob in reversed(blobs):
            stored = stored_decoder.decode(blob)
            if stored.direction == Direction.INBOUND.value and not stored.deleted:
                return InboundText(channel=stored.channel, instance=stored.instance or "", text=stored.text)
        return None


__all__ = ["CustomerFacts", "Handling", "InboundText"]
