"""The listing indexes: conversations by status, queue and assignee, in the {ix} slot.

They are derived from thread states (`reindex`, newest version wins, any order and repetition),
so an index that lags behind a crash is repaired by the next change of that thread; listings
check every entry against the thread itself, so a lagging index never shows a conversation
under the wrong filter.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis

from conversation.keys import Keys
from conversation.model import Conversation, ThreadStatus
from conversation.store.scripts import Scripts
from conversation.store.threads import Threads, ThreadState

_encoder = msgspec.msgpack.Encoder()


def urgency(priority: int, waiting_since_ms: int) -> float:
    """Queue order: higher priority first, then who has waited longest."""
    return (9 - max(0, min(9, priority))) * 1e13 + waiting_since_ms


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Indexes:
    def __init__(self, client: aioredis.Redis, scripts: Scripts, keys: Keys, threads: Threads) -> None:
        self.redis = client
        self.scripts = scripts
        self.keys = keys
        self.threads = threads

    async def reindex(self, states: Sequence[ThreadState]) -> None:
        """Bring the listing indexes up to date with thread states (any order, any repetition)."""
        if not states:
            return
        ix = f"{self.keys.prefix}:{{ix}}"
        # One call for the whole batch: every index key is in the {ix} slot. Scores travel as
        # strings, which ZADD reads exactly.
        rows = [(st.customer_id, st.version, st.status, st.queue, st.assignee, str(st.last_message_ms),
                 repr(urgency(st.priority, st.episode_opened_ms or st.last_message_ms))) for st in states]
        await self.scripts.run("index", [self.keys.ix_state()], [ix, _encoder.encode(rows)])

    def _sources(self, status: str | None, queue: str | None, assignee: str | None) -> tuple[list[str], bool]:
        """Which sorted sets hold the answer, and whether they read ascending (queues: most
        urgent first) or descending (everything else: most recent first)."""
        resolved = status == ThreadStatus.RESOLVED.value
        if queue:
            return [self.keys.ix_queue(queue, resolved)], not resolved
        if assignee:
            return [self.keys.ix_assignee(assignee, resolved)], False
        if status:
            return [self.keys.ix_status(status)], False
        return [self.keys.ix_status(s.value) for s in ThreadStatus], False

    async def list_conversations(
        self,
        *,
        status: str | None = None,
        queue: str | None = None,
        assignee: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[Conversation], str | None]:
        """Conversations matching every filter given. The cursor is opaque."""
        sources, ascending = self._sources(status, queue, assignee)
        after = _decode_cursor(cursor)
        entries = await self._entries(sources, ascending, after, limit + 1)
        page = entries[:limit]
        more = len(entries) > limit
        out: list[Conversation] = []
        for conv in await self.threads.get_conversations([cid for cid, _ in page]):
            if conv is None:
                continue
            if status and conv.status != status:
                continue
            if queue and conv.queue != queue:
                continue
            if queue and not status and conv.status == ThreadStatus.RESOLVED:
                continue  # a queue without a status filter is its live work
            if assignee and conv.assignee != assignee:
                continue
            if assignee and not status and not queue and conv.status == ThreadStatus.RESOLVED:
                continue
            out.append(conv)
        next_cursor = _encode_cursor(page[-1][1], page[-1][0]) if more and page else None
        return out, next_cursor

    async def _entries(
        self, sources: Sequence[str], ascending: bool, after: tuple[float, str] | None, count: int
    ) -> list[tuple[str, float]]:
        """The next `count` (member, score) entries of the merged sources after the cursor.

        A cursor is (score, member). Members sharing the cursor's score are read whole and
        filtered by member, then scores strictly beyond it are read up to `count`: however many
        conversations share one millisecond, paging neither stalls nor skips.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            for src in sources:
                if after is None:
                    lo, hi = "-inf", "+inf"
                elif ascending:
                    pipe.zrangebyscore(src, after[0], after[0], withscores=True)
                    lo, hi = f"({after[0]!r}", "+inf"
                else:
                    pipe.zrangebyscore(src, after[0], after[0], withscores=True)
                    lo, hi = "-inf", f"({after[0]!r}"
                if ascending:
                    pipe.zrangebyscore(src, lo, hi, start=0, num=count, withscores=True)
                else:
                    pipe.zrevrangebyscore(src, hi, lo, start=0, num=count, withscores=True)
            pages = await pipe.execute()
        if len(pages) == 1:  # one source, no cursor: already in order
            return [(_s(m), float(sc)) for m, sc in pages[0]]
        found = {(_s(m), float(sc)) for page in pages for m, sc in page}
        if after is not None:
            a_score, a_member = after
            found = {e for e in found if e[1] != a_score or (e[0] > a_member if ascending else e[0] < a_member)}
        # Ties in score are ordered by member, the same way in both directions, as Redis does.
        ordered = sorted(found, key=lambda e: (e[1], e[0]), reverse=not ascending)
        return ordered[:count]

    async def queue_depths(self) -> dict[str, int]:
        queues = sorted(_s(q) for q in await self.redis.smembers(self.keys.ix_queues()))
        async with self.redis.pipeline(transaction=False) as pipe:
            for q in queues:
                pipe.zcard(self.keys.ix_queue(q))
            counts = await pipe.execute()
        return dict(zip(queues, (int(c) for c in counts), strict=True))


def _encode_cursor(score: float, member: str) -> str:
    return base64.urlsafe_b64encode(f"{score!r}|{member}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[float, str] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, member = raw.split("|", 1)
        return float(score), member
    except (ValueError, UnicodeDecodeError):
        raise ValueError("invalid cursor") from None


__all__ = ["Indexes", "urgency"]
