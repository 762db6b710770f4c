"""The listing indexes: conversations by status, queue and assignee, in the {ix} slot.

They are derived from thread states (`reindex`, newest version wins, any order and repetition),
so an index that lags behind a crash is repaired by the next change of that thread; listings
check every entry against the thread itself, so a lagging index never shows a conversation
under the wrong filter.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis

from conversation.keys import Keys
from conversation.model import Conversation, ThreadStatus
from conversation.store.scripts import Scripts
from conversation.store.threads import Threads, ThreadState

_encoder = msgspec.msgpack.Encoder()
_card_decoder = msgspec.msgpack.Decoder(Conversation)


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

    async def reindex(self, states: Sequence[ThreadState],
                      also: Callable[[Any], None] | None = None) -> None:
        """Bring the listing indexes up to date with thread states (any order, any repetition).
        `also` adds commands to run after it in the same round trip (the change's events)."""
        states = [st for st in states if st.status]  # an identity listed before its first message
        if not states:
            if also is not None:
                async with self.redis.pipeline(transaction=False) as pipe:
                    also(pipe)
                    await pipe.execute()
            return
        ix = f"{self.keys.prefix}:{{ix}}"
        # One call for the whole batch: every index key is in the {ix} slot. Scores travel as
        # strings, which ZADD reads exactly. The card is what a listing shows of the conversation.
        rows = [(st.customer_id, st.version, st.status, st.queue, st.assignee, str(st.last_message_ms),
                 repr(urgency(st.priority, st.episode_opened_ms or st.last_message_ms)),
                 str(st.episode_opened_ms or st.last_message_ms)) for st in states]
        cards = [_encoder.encode(st.conversation()) for st in states]  # binary: arguments of their own
        if also is None:
            await self.scripts.run("index", [self.keys.ix_state(), self.keys.ix_cards()],
                                   [ix, _encoder.encode(rows), *cards])
        else:
            await self.scripts.run_with("index", [self.keys.ix_state(), self.keys.ix_cards()],
                                        [ix, _encoder.encode(rows), *cards], also)

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
        return [self.keys.ix_all()], False

    async def list_conversations(
        self,
        *,
        status: str | None = None,
        queue: str | None = None,
        assignee: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
        visible: Callable[[Conversation], bool] | None = None,
    ) -> tuple[list[Conversation], str | None]:
        """Conversations matching every filter given (and `visible`: what the caller may see; a
        page may then hold fewer than `limit`, and `next_cursor` goes on). The cursor is opaque.

        What a page shows comes from the conversations' cards in the index, written with their
        version by every change (two round trips a page, whatever its length); a conversation
        without a card (indexed by an older version) is read from its thread.
        """
        sources, ascending = self._sources(status, queue, assignee)
        visible = visible or (lambda _: True)
        after = _decode_cursor(cursor)
        members = await self._members(sources[0], ascending, after, limit + 1)
        if members is None:  # the all-conversations index is not complete yet: merge the statuses
            merged = await self._entries([self.keys.ix_status(s.value) for s in ThreadStatus], False, after,
                                         limit + 1)
            members, scores = [m for m, _ in merged], {m: sc for m, sc in merged}
        else:
            scores = {}
        page = members[:limit]
        more = len(members) > limit
        cards, last_score = await self._cards(page, sources[0] if more and page and not scores else None)
        out: list[Conversation] = []
        for conv in cards:
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
            if not visible(conv):
                continue
            out.append(conv)
        next_cursor = None
        if more and page:
            score = scores.get(page[-1], last_score)
            next_cursor = _encode_cursor(score if score is not None else 0.0, page[-1])
        return out, next_cursor

    async def _members(self, src: str, ascending: bool, after: tuple[float, str] | None, count: int
                       ) -> list[str] | None:
        """The next `count` members of one index after the cursor, without their scores (which
        cost redis-py dearly to parse); None when `src` is the all-conversations index and it does
        not hold every conversation yet (a deployment indexed before it existed).

        A cursor is (score, member). Members sharing the cursor's score are read whole and
        filtered by member, then scores strictly beyond it are read up to `count`: however many
        conversations share one millisecond, paging neither stalls nor skips.
        """
        check = src == self.keys.ix_all()
        async with self.redis.pipeline(transaction=False) as pipe:
            if check:
                pipe.zcard(src)
                pipe.hlen(self.keys.ix_state())
            if after is not None:
                pipe.zrangebyscore(src, after[0], after[0])
            if after is None:
                lo, hi = "-inf", "+inf"
            elif ascending:
                lo, hi = f"({after[0]!r}", "+inf"
            else:
                lo, hi = "-inf", f"({after[0]!r}"
            if ascending:
                pipe.zrangebyscore(src, lo, hi, start=0, num=count)
            else:
                pipe.zrevrangebyscore(src, hi, lo, start=0, num=count)
            replies = await pipe.execute()
        if check:
            indexed, conversations = int(replies[0]), int(replies[1])
            replies = replies[2:]
            if indexed < conversations:
                return None
        out: list[str] = []
        if after is not None:
            ties = sorted((_s(m) for m in replies[0]), reverse=not ascending)  # as Redis orders ties
            out = [m for m in ties if (m > after[1] if ascending else m < after[1])]
            replies = replies[1:]
        out += [_s(m) for m in replies[0]]
        return out[:count]

    async def _cards(self, cids: Sequence[str], score_of_last_in: str | None = None
                     ) -> tuple[list[Conversation | None], float | None]:
        """The cards of `cids`, in order, and the score of the last one in `score_of_last_in`
        (for the next cursor), in one round trip."""
        if not cids:
            return [], None
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.ix_cards(), cids)
            if score_of_last_in is not None:
                pipe.zscore(score_of_last_in, cids[-1])
            replies = await pipe.execute()
        raw = replies[0]
        last_score = float(replies[1]) if score_of_last_in is not None and replies[1] is not None else None
        cards: list[Conversation | None] = []
        missing: list[int] = []
        for i, blob in enumerate(raw):
            try:
                cards.append(_card_decoder.decode(blob.encode() if isinstance(blob, str) else blob)
                             if blob else None)
            except msgspec.DecodeError:
                cards.append(None)
            if cards[-1] is None:
                missing.append(i)
        if missing:
            for i, conv in zip(missing, await self.threads.get_conversations([cids[i] for i in missing]),
                               strict=True):
                cards[i] = conv
        return cards, last_score

    async def _entries(
        self, sources: Sequence[str], ascending: bool, after: tuple[float, str] | None, count: int
    ) -> list[tuple[str, float]]:
        """The next `count` (member, score) entries of several indexes merged, after the cursor
        (as _members does for one)."""
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

    async def next_waiting(self, queue: str, count: int, skip: int = 0) -> list[Conversation]:
        """The `count` most urgent open threads of a queue that nobody holds (after `skip`), as
        their cards: priority first, then who has waited longest."""
        if skip:
            cids = [_s(c) for c in await self.redis.zrange(self.keys.ix_waiting(queue), skip, skip + count - 1)]
            cards, _ = await self._cards(cids)
            return [c for c in cards if c is not None]
        # The common case, one round trip: the top of the set with the cards (lua/waiting_top.lua).
        flat = await self.scripts.run("waiting_top", [self.keys.ix_waiting(queue), self.keys.ix_cards()], [count])
        out: list[Conversation] = []
        missing: list[str] = []
        for i in range(0, len(flat), 2):
            blob = flat[i + 1]
            try:
                card = _card_decoder.decode(blob.encode() if isinstance(blob, str) else blob) if blob else None
            except msgspec.DecodeError:
                card = None
            if card is None:
                missing.append(_s(flat[i]))
            else:
                out.append(card)
        if missing:  # indexed by an older version: read from their threads (order within urgency kept)
            found = [c for c in await self.threads.get_conversations(missing) if c is not None]
            out = sorted(out + found, key=lambda c: [_s(flat[i]) for i in range(0, len(flat), 2)].index(c.id))
        return out

    async def waiting(self, queues: Sequence[str]) -> dict[str, tuple[int, int | None]]:
        """Per queue: how many open threads nobody holds, and since when the oldest has waited
        (ms, None when none waits)."""
        names = sorted(set(queues) | {_s(q) for q in await self.redis.smembers(self.keys.ix_queues())})
        async with self.redis.pipeline(transaction=False) as pipe:
            for q in names:
                pipe.zcard(self.keys.ix_waiting(q))
                pipe.zrange(self.keys.ix_waiting_since(q), 0, 0, withscores=True)
            rows = await pipe.execute()
        out: dict[str, tuple[int, int | None]] = {}
        for i, q in enumerate(names):
            oldest = rows[2 * i + 1]
            out[q] = (int(rows[2 * i]), int(oldest[0][1]) if oldest else None)
        return out

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
