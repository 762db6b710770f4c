"""The durable queues: the partitioned ingest log, the outbound send queue, and live events.

- Ingest: one stream per partition, with the dedupe keys of its entries in the same slot, so
  dedupe and durable record are one Lua call (lua/ingest.lua) and one round trip per webhook.
  One worker at a time owns a partition (a lease) and reads it with a consumer group, in order.
- Outbound: one stream, a consumer group of dispatchers, and a delay set for retries.
- Events: a capped stream of wake-ups for live views, derived from the activity log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from conversation.keys import Keys, partition_of
from conversation.model import Event, Identity, InboundMessage, StatusUpdate
from conversation.store.scripts import Scripts

EVENTS_MAXLEN = 100_000
INGEST_GROUP = "ingest"
OUTBOUND_GROUP = "dispatch"

# What XRANGE/XREADGROUP give back, as redis-py's loose annotations cannot say.
StreamEntry = tuple[bytes, dict[bytes, bytes]]

_encoder = msgspec.msgpack.Encoder()
_inbound_decoder = msgspec.msgpack.Decoder(InboundMessage)
_status_decoder = msgspec.msgpack.Decoder(StatusUpdate)
_events_encoder = msgspec.msgpack.Encoder()
_events_decoder = msgspec.msgpack.Decoder(list[Event])


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _ensure_group(client: aioredis.Redis, stream: str, group: str) -> None:
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class IngestLog:
    def __init__(self, client: aioredis.Redis, scripts: Scripts, keys: Keys, *, partitions: int,
                 dedupe_ttl: int) -> None:
        self.redis = client
        self.scripts = scripts
        self.keys = keys
        self.partitions = partitions
        self.dedupe_ttl = dedupe_ttl

    def partition_for(self, sender: Identity) -> int:
        return partition_of(sender.key, self.partitions)

    def partition_for_status(self, update: StatusUpdate) -> int:
        if update.is_watermark and update.recipient is not None:
            return partition_of(update.recipient.key, self.partitions)
        return partition_of(f"pm:{update.instance}:{update.provider_message_id}", self.partitions)

    async def record(self, messages: Sequence[InboundMessage], statuses: Sequence[StatusUpdate] = ()
                     ) -> list[str | None]:
        """Dedupe and durably record a webhook's items in one round trip.

        Returns the stream entry id of each message, None for a duplicate (statuses follow the
        messages in the returned list). Raises the store's errors when Redis is unreachable.
        """
        calls: list[tuple[list[str], list[Any]]] = []
        for msg in messages:
            p = self.partition_for(msg.sender)
            calls.append(([self.keys.dedupe(p, msg.instance, msg.provider_message_id), self.keys.ingest_stream(p)],
                          [self.dedupe_ttl, "m", _encoder.encode(msg)]))
        for st in statuses:
            stream = self.keys.ingest_stream(self.partition_for_status(st))
            calls.append(([stream, stream], [0, "s", _encoder.encode(st)]))
        results = await self.scripts.batch("ingest", calls)
        return [_s(r) if r else None for r in results]

    async def open(self, partition: int) -> None:
        await _ensure_group(self.redis, self.keys.ingest_stream(partition), INGEST_GROUP)

    async def claim_pending(self, partition: int, consumer: str, start: str, count: int
                            ) -> tuple[str, list[StreamEntry]]:
        """What earlier owners left pending, from `start`, in stream order: (next start, entries).
        Entries deleted while pending come back as (id, None) and are acknowledged here."""
        stream = self.keys.ingest_stream(partition)
        reply = await self.redis.xautoclaim(stream, INGEST_GROUP, consumer, min_idle_time=0, start_id=start,
                                            count=count)
        entries = [(i, f) for i, f in reply[1] if f]
        gone = [i for i, f in reply[1] if not f]
        if gone:
            await self.redis.xack(stream, INGEST_GROUP, *gone)
        return _s(reply[0]), entries

    async def read(self, partition: int, consumer: str, count: int, block_ms: int) -> list[StreamEntry]:
        """New entries for `consumer`, waiting up to `block_ms` for one (0: not at all)."""
        reply: list[tuple[bytes, list[StreamEntry]]] = await self.redis.xreadgroup(  # type: ignore[assignment]
            INGEST_GROUP, consumer, {self.keys.ingest_stream(partition): ">"}, count=count, block=block_ms or None)
        return [entry for _, entries in reply or [] for entry in entries]

    async def done(self, partition: int, entry_ids: Sequence[bytes | str]) -> None:
        """Acknowledge and delete applied entries: an empty stream is a drained partition."""
        if not entry_ids:
            return
        stream = self.keys.ingest_stream(partition)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xack(stream, INGEST_GROUP, *entry_ids)
            pipe.xdel(stream, *entry_ids)
            await pipe.execute()

    @staticmethod
    def decode(fields: dict[bytes, bytes]) -> InboundMessage | StatusUpdate:
        if b"m" in fields:
            return _inbound_decoder.decode(fields[b"m"])
        return _status_decoder.decode(fields[b"s"])


class OutboundQueue:
    def __init__(self, client: aioredis.Redis, scripts: Scripts, keys: Keys) -> None:
        self.redis = client
        self.scripts = scripts
        self.keys = keys

    async def open(self) -> None:
        await _ensure_group(self.redis, self.keys.outbound_stream(), OUTBOUND_GROUP)

    async def enqueue(self, fields: dict[str, str | bytes]) -> str:
        return _s(await self.redis.xadd(self.keys.outbound_stream(), fields))  # type: ignore[arg-type]

    async def withdraw(self, entry_id: str) -> None:
        await self.redis.xdel(self.keys.outbound_stream(), entry_id)

    async def read(self, consumer: str, count: int, block_ms: int) -> list[StreamEntry]:
        """New entries for `consumer`, waiting up to `block_ms` for one (0: not at all)."""
        reply: list[tuple[bytes, list[StreamEntry]]] = await self.redis.xreadgroup(  # type: ignore[assignment]
            OUTBOUND_GROUP, consumer, {self.keys.outbound_stream(): ">"}, count=count, block=block_ms or None)
        return [entry for _, entries in reply or [] for entry in entries]

    async def reclaim(self, consumer: str, min_idle_ms: int, start: str, count: int
                      ) -> tuple[str, list[StreamEntry]]:
        """Entries another dispatcher took and left idle for `min_idle_ms` (it crashed)."""
        stream = self.keys.outbound_stream()
        reply = await self.redis.xautoclaim(stream, OUTBOUND_GROUP, consumer, min_idle_time=min_idle_ms,
                                            start_id=start, count=count)
        entries = [(i, f) for i, f in reply[1] if f]
        gone = [i for i, f in reply[1] if not f]
        if gone:
            await self.redis.xack(stream, OUTBOUND_GROUP, *gone)
        return _s(reply[0]), entries

    async def ack(self, entry_id: bytes | str) -> None:
        await self.redis.xack(self.keys.outbound_stream(), OUTBOUND_GROUP, entry_id)

    async def delay(self, mid: str, attempt: int, due_ms: int) -> None:
        await self.redis.zadd(self.keys.outbound_delayed(), {f"{mid}|{attempt}": due_ms})

    async def promote_due(self, now_ms: int, batch: int = 100) -> int:
        """Move retries whose time has come back onto the stream."""
        return int(await self.scripts.run("promote_delayed", [self.keys.outbound_delayed(),
                                                              self.keys.outbound_stream()], [now_ms, batch]))


class Events:
    """The live events, capped. One stream entry carries the events of one publish call (the
    activity one change, or one ingest batch, appended), so a batch of 200 messages is one XADD,
    not 200; readers see them one by one, in order, each with the activity id it derives from."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    async def publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        await self.redis.xadd(*self.xadd_args(events), maxlen=EVENTS_MAXLEN, approximate=True)

    def xadd_args(self, events: Sequence[Event]) -> tuple[str, dict[Any, Any]]:
        """The stream and fields of one publish, for a caller that pipelines it with its change."""
        return self.keys.events(), {"b": _events_encoder.encode(list(events))}

    def add_to(self, pipe: Any, events: Sequence[Event]) -> None:
        if events:
            pipe.xadd(*self.xadd_args(events), maxlen=EVENTS_MAXLEN, approximate=True)

    @staticmethod
    def _unpack(rows: Sequence[StreamEntry]) -> list[tuple[str, Event | None]]:
        out: list[tuple[str, Event | None]] = []
        for entry_id, fields in rows:
            try:
                events: list[Event | None] = list(_events_decoder.decode(fields[b"b"]))
            except (KeyError, msgspec.DecodeError):
                events = [None]  # written by another version: a wake-up for nobody in particular
            out += [(_s(entry_id), ev) for ev in events]
        return out

    async def read(self, after: str = "0-0", count: int = 100) -> list[tuple[str, Event]]:
        """Events of the entries after `after` (up to `count` entries), oldest first."""
        rows: list[StreamEntry] = await self.redis.xrange(  # type: ignore[assignment]
            self.keys.events(), min=f"({after}" if after != "0-0" else "-", count=count)
        return [(i, e) for i, e in self._unpack(rows) if e is not None]

    async def last_id(self) -> str:
        tail: list[StreamEntry] = await self.redis.xrevrange(self.keys.events(), count=1)  # type: ignore[assignment]
        return _s(tail[0][0]) if tail else "0-0"

    async def since(self, entry_id: str, index: int, count: int = 100) -> list[tuple[str, int, Event]]:
        """Events from the entry `entry_id` on, past its event at `index` (-1: the whole entry),
        up to `count` entries: (entry id, the event's place in its entry, event). An entry id
        is the stream's, so it means the same on every process."""
        rows: list[StreamEntry] = await self.redis.xrange(  # type: ignore[assignment]
            self.keys.events(), min=entry_id, count=count)
        out: list[tuple[str, int, Event]] = []
        place: dict[str, int] = {}
        for eid, event in self._unpack(rows):
            n = place[eid] = place.get(eid, -1) + 1
            if event is not None and (eid != entry_id or n > index):
                out.append((eid, n, event))
        return out

    async def follow(self, after: str, count: int, block_ms: int) -> list[tuple[str, Event | None]]:
        """Events after the entry `after`, waiting up to `block_ms` for one (None for what this
        version cannot read); the id is the stream entry's, to follow on from."""
        reply: list[tuple[bytes, list[StreamEntry]]] = await self.redis.xread(  # type: ignore[assignment]
            {self.keys.events(): after}, count=count, block=block_ms or None)
        return self._unpack([entry for _, entries in reply or [] for entry in entries])


__all__ = ["EVENTS_MAXLEN", "INGEST_GROUP", "OUTBOUND_GROUP", "Events", "IngestLog", "OutboundQueue",
           "StreamEntry"]
