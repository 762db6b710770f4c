"""Dead letters: what the pipeline gave up on, kept for an operator to read and replay.

Two streams: inbound (authentic payloads no parser could use, undecodable ingest entries) and
outbound (sends out of attempts). They are listed together, oldest first, merged by entry id,
which is a time: the cursor is the last ``<stream>:<entry id>`` seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import redis.asyncio as aioredis

from conversation.keys import Keys
from conversation.store.streams import StreamEntry

StreamName = Literal["inbound", "outbound"]
STREAMS: tuple[StreamName, ...] = ("inbound", "outbound")


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class DeadLetters:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    def _key(self, stream: StreamName) -> str:
        return self.keys.ingest_dead() if stream == "inbound" else self.keys.outbound_dead()

    async def record(self, fields: Mapping[str, str], stream: StreamName = "inbound") -> str:
        """Keep an authentic but unusable payload (or a send out of attempts)."""
        return _s(await self.redis.xadd(self._key(stream), dict(fields)))  # type: ignore[arg-type]

    async def list(self, *, cursor: str | None = None, limit: int = 50
                   ) -> tuple[list[tuple[StreamName, str, dict[str, str]]], str | None]:
        """Both streams merged oldest first: (stream, entry id, fields), and the next cursor."""
        after: tuple[tuple[int, int], str] | None = None
        if cursor:
            name, _, entry_id = cursor.partition(":")
            if name not in STREAMS or not entry_id:
                raise ValueError("invalid cursor")
            try:
                after = (_id_key(entry_id), name)
            except ValueError:
                raise ValueError("invalid cursor") from None
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in STREAMS:
                if after is None:
                    low = "-"
                else:
                    # Strictly after (id, stream): ties on the id are ordered by stream name.
                    inclusive = stream > after[1]
                    low = ("" if inclusive else "(") + f"{after[0][0]}-{after[0][1]}"
                pipe.xrange(self._key(stream), min=low, count=limit + 1)
            pages: list[list[StreamEntry]] = await pipe.execute()
        rows = [(stream, _s(i), {_s(k): _s(v) for k, v in f.items()})
                for stream, page in zip(STREAMS, pages, strict=True) for i, f in page]
        rows.sort(key=lambda r: (_id_key(r[1]), r[0]))
        page_rows = rows[:limit]
        more = len(rows) > limit
        return page_rows, (f"{page_rows[-1][0]}:{page_rows[-1][1]}" if more and page_rows else None)

    async def get(self, stream: StreamName, entry_id: str) -> dict[str, str] | None:
        rows: list[StreamEntry] = await self.redis.xrange(  # type: ignore[assignment]
            self._key(stream), min=entry_id, max=entry_id)
        if not rows:
            return None
        return {_s(k): _s(v) for k, v in rows[0][1].items()}

    async def delete(self, stream: StreamName, entry_id: str) -> None:
        await self.redis.xdel(self._key(stream), entry_id)


__all__ = ["STREAMS", "DeadLetters", "StreamName"]
