"""The outbound dispatcher: a consumer group on the outbound stream that sends through connectors.

Each stream entry names a message and the attempt it stands for, or carries a whole reply that
the API queued before storing it (gateway.outbox.ReplyIntent): the dispatcher stores that reply
first if its writer died before doing so, then sends it like any other. Before sending, a worker takes
the message's send lock and checks the attempt against the message's own count, so duplicates of
an entry (a retried API request, a reclaimed entry whose first owner only stalled) send nothing.
A message whose provider id is recorded is never sent again.

Failures: transient ones (timeouts, 5xx, 429) come back after a backoff with full jitter, never
sooner than the provider's Retry-After; permanent ones fail the message at once with the
provider's reason; the last allowed attempt failing sends the message to the dead-letter stream.
A crashed worker's pending entries are reclaimed with XAUTOCLAIM once idle past the visibility
timeout. The one window this cannot close: a worker that dies after the provider accepted a
message but before the provider id was written; the provider has no idempotency key to ask with.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any, Literal

import msgspec
import structlog
from redis.exceptions import RedisError, ResponseError

from connectors.base import Connector, Outbound, PermanentSendError, TransientSendError
from conversation.model import DeliveryStatus, Event, EventType, Identity
from conversation.store import NotFound, OptedOut, Store, StreamEntry, split_message_id
from gateway import metrics
from gateway.outbox import ReplyIntent, publish_created, store_intent
from gateway.workers.ingest import apply_status

log = structlog.get_logger("gateway.dispatch")

GROUP = "dispatch"

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Dispatcher:
    def __init__(
        self,
        store: Store,
        connectors: Mapping[str, Connector[Any]],
        *,
        consumer: str | None = None,
        max_attempts: int = 8,
        visibility_timeout: float = 30.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 300.0,
        concurrency: int = 32,
        block_ms: int = 1000,
    ) -> None:
        self.store = store
        self.connectors = connectors
        self.consumer = consumer or f"d-{uuid.uuid4().hex[:10]}"
        self.max_attempts = max_attempts
        self.visibility_ms = int(visibility_timeout * 1000)
        # A send must end well before another worker may reclaim it.
        self.send_timeout = visibility_timeout * 0.8
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.block_ms = block_ms
        self._slots = asyncio.Semaphore(concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        # The last send queued per conversation: a customer's replies (and the parts of a long
        # one) leave in the order they were queued, not in whatever order concurrency allows.
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._release = store.redis.register_script(_RELEASE)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        redis, stream = self.store.redis, self.store.keys.outbound_stream()
        with contextlib.suppress(ResponseError):
            await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        reclaim_at = 0.0
        try:
            while not self._stopping.is_set():
                try:
                    await self._promote_due()
                    if time.monotonic() >= reclaim_at:
                        await self._reclaim()
                        reclaim_at = time.monotonic() + self.visibility_ms / 4000
                    reply: list[tuple[bytes, list[StreamEntry]]] = await redis.xreadgroup(  # type: ignore[assignment]
                        GROUP, self.consumer, {stream: ">"}, count=32, block=min(self.block_ms, 250))
                except RedisError as exc:
                    log.warning("dispatch.redis_error", error=str(exc))
                    await asyncio.sleep(1)
                    continue
                for _, entries in reply or []:
                    for entry_id, fields in entries:
                        await self._spawn(entry_id, fields, reclaimed=False)
        finally:
            # Drain: sends under way finish (or time out) before the worker exits.
            if self._inflight:
                await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _spawn(self, entry_id: bytes, fields: dict[bytes, bytes], *, reclaimed: bool) -> None:
        await self._slots.acquire()
        cid = fields[b"c"].decode() if b"c" in fields else fields[b"m"].decode().rpartition(".")[0]
        task = asyncio.create_task(self._handle(entry_id, fields, reclaimed, after=self._tails.get(cid)))
        self._inflight.add(task)
        self._tails[cid] = task

        def done(t: asyncio.Task[None]) -> None:
            self._inflight.discard(t)
            if self._tails.get(cid) is t:
                del self._tails[cid]
            self._slots.release()

        task.add_done_callback(done)

    async def _promote_due(self) -> None:
        keys = self.store.keys
        await self.store._scripts["promote_delayed"](
            keys=[keys.outbound_delayed(), keys.outbound_stream()], args=[int(time.time() * 1000), 100]
        )

    async def _reclaim(self) -> None:
        redis, stream = self.store.redis, self.store.keys.outbound_stream()
        start = "0-0"
        while True:
            reply = await redis.xautoclaim(stream, GROUP, self.consumer, min_idle_time=self.visibility_ms,
                                           start_id=start, count=32)
            start = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
            for entry_id, fields in reply[1]:
                if fields:
                    log.info("dispatch.reclaimed", entry=entry_id)
                    await self._spawn(entry_id, fields, reclaimed=True)
                else:
                    await redis.xack(stream, GROUP, entry_id)
            if start == "0-0":
                return

    async def _handle(
        self, entry_id: bytes, fields: dict[bytes, bytes], reclaimed: bool, after: asyncio.Task[None] | None
    ) -> None:
        if after is not None:
            await asyncio.wait([after])
        try:
            mid = await self._message_of(fields)
            if mid is not None:
                await self.send_entry(mid, int(fields.get(b"a", b"0")), reclaimed=reclaimed)
        except RedisError as exc:
            # Left pending: reclaimed after the visibility timeout, by us or another worker.
            log.warning("dispatch.redis_error", error=str(exc))
            return
        except Exception:
            log.exception("dispatch.crashed")
            return
        await self.store.redis.xack(self.store.keys.outbound_stream(), GROUP, entry_id)

    async def _message_of(self, fields: dict[bytes, bytes]) -> str | None:
        """The message an entry sends: named, or stored now from the reply the entry carries."""
        if b"m" in fields:
            return fields[b"m"].decode()
        try:
            intent = msgspec.json.decode(fields[b"r"], type=ReplyIntent)
        except (KeyError, msgspec.DecodeError) as exc:
            log.error("dispatch.unreadable_entry", error=str(exc))
            return None
        try:
            msg, created = await store_intent(self.store, intent)
        except (OptedOut, NotFound):
            return None  # refused when the API tried too, and the request failed: nothing to send
        if created:
            # Its writer died between queueing and storing: the reply is stored here instead.
            log.warning("dispatch.reply_recovered", message_id=msg.id)
            await publish_created(self.store, msg)
        return msg.id

    async def send_entry(self, mid: str, attempt: int, *, reclaimed: bool = False) -> str:
        """Send one message if this entry is still the right one to do it. Returns what happened."""
        store = self.store
        cid, seq = split_message_id(mid)
        lock = f"{store.keys.prefix}:{{c:{cid}}}:sending:{seq}"
        token = uuid.uuid4().hex
        if not await store.redis.set(lock, token, nx=True, px=self.visibility_ms):
            return "busy"  # another worker is sending it right now
        try:
            try:
                msg = await store.get_message(mid)
            except NotFound:
                return "gone"
            if msg.provider_message_id or msg.status != DeliveryStatus.QUEUED:
                return "done"
            _, delivery = await store.update_delivery(mid, DeliveryStatus.QUEUED)
            # A fresh entry stands for attempt `attempts`; a reclaimed one may redo the attempt
            # its crashed owner started. Anything else is a duplicate entry.
            expected = {delivery.attempts, delivery.attempts - 1} if reclaimed else {delivery.attempts}
            if attempt not in expected:
                return "stale"
            connector = self.connectors.get(msg.instance or "")
            channel = msg.channel
            if connector is None:
                await self._fail(mid, channel, f"connector instance {msg.instance!r} is not configured")
                return "failed"
            await store.update_delivery(mid, DeliveryStatus.QUEUED, attempts=attempt + 1)
            kind, _, address = (msg.to or "").partition(":")
            subject, references = (
                await store.thread_context(cid, msg.instance or "") if connector.capabilities.threads else (None, [])
            )
            outbound = Outbound(
                message_id=mid, channel=channel, to=Identity(kind, address), text=msg.text,
                attachments=tuple(msg.attachments), subject=subject, references=tuple(references),
                reply_to_provider_id=references[-1] if references else None,
            )
            try:
                provider_id = await asyncio.wait_for(connector.send(outbound), self.send_timeout)
            except TimeoutError:
                return await self._retry(mid, channel, attempt, TransientSendError("provider timed out"))
            except TransientSendError as exc:
                return await self._retry(mid, channel, attempt, exc)
            except PermanentSendError as exc:
                if exc.opted_out and kind:
                    await store.set_opt_out(cid, Identity(kind, address), True)
                await self._fail(mid, channel, exc.reason)
                return "failed"
            await store.update_delivery(mid, DeliveryStatus.SENT, provider_id=provider_id)
            if connector.capabilities.threads:
                await store.note_thread_reference(cid, msg.instance or "", provider_id)
            metrics.outbound(channel, "sent")
            now_ms = int(time.time() * 1000)
            events = [Event(EventType.MESSAGE_STATUS, cid, f"{mid}:sent", message_id=mid, status="sent", at_ms=now_ms)]
            assert msg.instance is not None
            for early in await store.link_provider_id(mid, msg.instance, provider_id):
                event = await apply_status(store, mid, early)
                if event:
                    events.append(event)
            await store.publish(events)
            return "sent"
        finally:
            with contextlib.suppress(RedisError):
                await self._release(keys=[lock], args=[token])

    async def _retry(self, mid: str, channel: str, attempt: int, exc: TransientSendError) -> str:
        if attempt + 1 >= self.max_attempts:
            reason = f"gave up after {attempt + 1} attempts: {exc.reason}"
            await self.store.redis.xadd(self.store.keys.outbound_dead(),
                                        {"message_id": mid, "reason": reason, "attempts": str(attempt + 1)})
            await self._fail(mid, channel, reason, outcome="dead")
            return "dead"
        delay = self.backoff(attempt, exc.retry_after)
        due_ms = int((time.time() + delay) * 1000)
        await self.store.redis.zadd(self.store.keys.outbound_delayed(), {f"{mid}|{attempt + 1}": due_ms})
        metrics.outbound(channel, "retried")
        log.info("dispatch.retry", attempt=attempt + 1, delay=round(delay, 3), reason=exc.reason)
        return "retry"

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Jitter over the upper half of an exponential ceiling (retries spread out, yet never
        bunch at zero), and never sooner than the provider asked."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2**attempt)
        delay = random.uniform(ceiling / 2, ceiling)
        return max(delay, retry_after or 0.0)

    async def _fail(
        self, mid: str, channel: str, reason: str, outcome: Literal["failed", "dead"] = "failed"
    ) -> None:
        _, delivery = await self.store.update_delivery(mid, DeliveryStatus.FAILED, error=reason)
        metrics.outbound(channel, outcome)
        cid = mid.rpartition(".")[0]
        await self.store.publish([Event(EventType.MESSAGE_STATUS, cid, f"{mid}:failed", message_id=mid,
                                         status=delivery.status.value, at_ms=int(time.time() * 1000))])
