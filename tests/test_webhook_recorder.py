"""Webhooks arriving together share one Redis round trip, and each still gets its own answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from connectors.base import ParseResult
from conversation.model import DeliveryStatus, Identity, InboundMessage, StatusUpdate
from conversation.store import Store
from conversation.store.streams import IngestLog
from gateway.webhooks import Recorder


def message(sid: str, sender: str = "+34600111222", text: str = "hola") -> InboundMessage:
    return InboundMessage(instance="sms", channel="sms", provider_message_id=sid, sender=Identity("phone", sender),
                          text=text, received_at_ms=int(time.time() * 1000))


def status(sid: str) -> StatusUpdate:
    return StatusUpdate(instance="sms", provider_message_id=sid, status=DeliveryStatus.DELIVERED, at_ms=1)


class CountingLog(IngestLog):
    """The real ingest log, counting record calls (each is one round trip)."""

    calls = 0

    async def record(
        self, messages: Sequence[InboundMessage], statuses: Sequence[StatusUpdate] = ()
    ) -> list[str | None]:
        self.calls += 1
        return await super().record(messages, statuses)


class CountingStore(Store):
    ingest: CountingLog

    def __init__(self, client: aioredis.Redis, *, prefix: str, partitions: int) -> None:
        super().__init__(client, prefix=prefix, partitions=partitions)
        self.ingest = CountingLog(client, self.scripts, self.keys, partitions=partitions, dedupe_ttl=86_400 * 8)

    @property
    def calls(self) -> int:
        return self.ingest.calls


@pytest.fixture
def store(redis_client: aioredis.Redis, key_prefix: str) -> CountingStore:
    return CountingStore(redis_client, prefix=key_prefix, partitions=4)


async def test_concurrent_webhooks_are_recorded_in_one_round_trip(store: CountingStore) -> None:
    recorder = Recorder(store)
    results = [
        ParseResult(messages=(message("SM1"),)),
        ParseResult(statuses=(status("SM0"),)),
        ParseResult(messages=(message("SM2", "+34600111333"), message("SM3"))),
        ParseResult(messages=(message("SM1"),)),  # a retry of the first, in the same batch
    ]
    answers = await asyncio.gather(*(recorder.record(r) for r in results))

    assert store.calls == 1
    assert [len(a) for a in answers] == [1, 0, 2, 1]
    [first], _, [second, third], [retry] = answers
    assert first and second and third and retry is None
    # Everything is in the ingest streams, in arrival order per sender, and the retry is not.
    entries = []
    for p in range(store.partitions):
        entries += [store.ingest.decode(fields) for _, fields in await store.redis.xrange(store.keys.ingest_stream(p))]
    sids = [e.provider_message_id for e in entries if isinstance(e, InboundMessage)]
    assert sorted(sids) == ["SM1", "SM2", "SM3"]
    same_sender = [s for s in sids if s in ("SM1", "SM3")]
    assert same_sender == ["SM1", "SM3"]


async def test_a_lone_webhook_is_recorded_at_once(store: CountingStore) -> None:
    recorder = Recorder(store)
    for i in range(3):
        [entry] = await recorder.record(ParseResult(messages=(message(f"SM{i}"),)))
        assert entry
    assert store.calls == 3


async def test_when_redis_fails_every_webhook_of_the_batch_gets_the_error(key_prefix: str) -> None:
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0")  # nothing listens there
    recorder = Recorder(Store(client, prefix=key_prefix, partitions=4))
    try:
        answers = await asyncio.gather(
            *(recorder.record(ParseResult(messages=(message(f"SM{i}"),))) for i in range(5)),
            return_exceptions=True,
        )
    finally:
        await client.aclose()
    assert all(isinstance(a, RedisConnectionError) for a in answers)


async def test_a_cancelled_webhook_does_not_hold_up_the_others(store: CountingStore) -> None:
    recorder = Recorder(store)
    gone = asyncio.ensure_future(recorder.record(ParseResult(messages=(message("SM1"),))))
    kept = asyncio.ensure_future(recorder.record(ParseResult(messages=(message("SM2"),))))
    await asyncio.sleep(0)
    gone.cancel()
    [entry] = await kept
    assert entry
    assert gone.cancelled()
