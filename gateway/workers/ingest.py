"""Ingest workers: from the partitioned ingest streams into customers' threads, in order.

Each partition stream holds the messages of the senders hashed to it. Exactly one worker at a
time owns a partition, through a lease it renews; a consumer group alone would spread one
stream's entries over several consumers and lose per-customer order. More worker processes own
more partitions; a dead worker's lease expires, and the next owner first claims what the old one
left pending, in stream order.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import structlog
from redis.exceptions import RedisError, ResponseError

from connectors.base import Connector
from conversation.model import Event, EventType, Identity, InboundMessage, Profile, StatusUpdate
from conversation.routing import RoutingSettings
from conversation.store import Store, StreamEntry, ThreadState
from gateway import metrics

log = structlog.get_logger("gateway.ingest")

GROUP = "ingest"

PROFILE_TTL = 86_400  # a sender's provider profile is looked up again after a day
PROFILE_MISS_TTL = 300  # an unknown or unreachable profile: ask again after a few minutes

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class IngestWorker:
    """Owns a fair share of the ingest partitions and applies their entries in order."""

    def __init__(
        self,
        store: Store,
        routing: RoutingSettings,
        *,
        worker_id: str | None = None,
        lease_ttl: float = 10.0,
        batch: int = 200,
        block_ms: int = 1000,
        connectors: Mapping[str, Connector[Any]] | None = None,
        profile_timeout: float = 3.0,
    ) -> None:
        self.store = store
        self.routing = routing
        # Connectors that tell who a sender is (Slack users.info), by instance.
        self.profilers = {name: c for name, c in (connectors or {}).items() if c.has_profiles()}
        self.profile_timeout = profile_timeout
        self.id = worker_id or f"w-{uuid.uuid4().hex[:10]}"
        self.lease_ttl_ms = int(lease_ttl * 1000)
        self.batch = batch
        self.block_ms = block_ms
        self._owned: dict[int, asyncio.Task[None]] = {}
        # Consumers stop at their next loop turn (reads block at most block_ms): a cancel that
        # lands inside redis-py's blocking read can be lost, so cancelling is only the fallback.
        self._halts: dict[int, asyncio.Event] = {}
        self._renew = store.redis.register_script(_RENEW)
        self._release = store.redis.register_script(_RELEASE)
        self._stopping = asyncio.Event()

    @property
    def owned(self) -> set[int]:
        return set(self._owned)

    async def run(self) -> None:
        """Balance leases until stopped; consumers run as tasks per owned partition."""
        try:
            while not self._stopping.is_set():
                try:
                    await self._balance()
                except RedisError as exc:
                    log.warning("ingest.redis_error", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.lease_ttl_ms / 3000)
        finally:
            await self._shutdown()

    def stop(self) -> None:
        self._stopping.set()

    async def _balance(self) -> None:
        redis, keys = self.store.redis, self.store.keys
        now = time.time()
        members = f"{keys.prefix}:workers"
        await redis.zadd(members, {self.id: now})
        await redis.zremrangebyscore(members, "-inf", now - 3 * self.lease_ttl_ms / 1000)
        live = max(1, await redis.zcard(members))
        fair = math.ceil(self.store.partitions / live)

        for p in list(self._owned):
            task = self._owned[p]
            kept = not task.done() and await self._renew(
                keys=[keys.lease(p)], args=[self.id, self.lease_ttl_ms]
            )
            if not kept:
                log.info("ingest.lease_lost", partition=p)
                await self._drop(p)
        # Give back partitions above the fair share so a new worker gets some.
        for p in sorted(self._owned)[fair:]:
            await self._drop(p)
            await self._release(keys=[keys.lease(p)], args=[self.id])
        for p in range(self.store.partitions):
            if len(self._owned) >= fair:
                break
            if p in self._owned:
                continue
            if await redis.set(keys.lease(p), self.id, nx=True, px=self.lease_ttl_ms):
                log.info("ingest.lease_taken", partition=p, worker=self.id)
                self._halts[p] = asyncio.Event()
                self._owned[p] = asyncio.create_task(self._consume(p), name=f"ingest-{p}")

    async def _drop(self, p: int) -> None:
        task = self._owned.pop(p)
        self._halts.pop(p).set()
        _, pending = await asyncio.wait([task], timeout=self.block_ms / 1000 + 5)
        for t in pending:
            t.cancel()
        await asyncio.wait([task])

    async def _shutdown(self) -> None:
        # Drain: each consumer finishes its current batch, then leases are handed back at once
        # instead of making the next owner wait for them to expire.
        owned = list(self._owned)
        await asyncio.gather(*(self._drop(p) for p in owned))
        for p in owned:
            with contextlib.suppress(RedisError):
                await self._release(keys=[self.store.keys.lease(p)], args=[self.id])
        with contextlib.suppress(RedisError):
            await self.store.redis.zrem(f"{self.store.keys.prefix}:workers", self.id)

    async def _consume(self, p: int) -> None:
        halt = self._halts[p]
        redis = self.store.redis
        stream = self.store.keys.ingest_stream(p)
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
            await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        # First what earlier owners (or this worker before a restart) left pending, in order.
        start = "0-0"
        while not halt.is_set():
            start, entries, _ = await _autoclaim(redis, stream, self.id, start, self.batch)
            if entries:
                await self._shielded(p, entries)
            if start == "0-0":
                break
        while not halt.is_set():
            try:
                reply: list[tuple[bytes, list[StreamEntry]]] = await redis.xreadgroup(  # type: ignore[assignment]
                    GROUP, self.id, {stream: ">"}, count=self.batch, block=self.block_ms)
            except RedisError as exc:
                log.warning("ingest.read_failed", partition=p, error=str(exc))
                await asyncio.sleep(1)
                continue
            for _, entries in reply or []:
                await self._shielded(p, entries)

    async def _shielded(self, p: int, entries: list[StreamEntry]) -> None:
        # A batch is finished even when the worker is told to stop mid-way (graceful drain).
        await asyncio.shield(self.process(p, entries))

    async def process(self, p: int, entries: Sequence[tuple[bytes | str, dict[bytes, bytes]]]) -> None:
        """Apply one batch: identities, thread appends (one pipeline), indexes, events, ack."""
        store = self.store
        messages: list[tuple[str, InboundMessage]] = []
        statuses: list[tuple[str, StatusUpdate]] = []
        dead: list[tuple[str, str]] = []
        for raw_id, fields in entries:
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
            try:
                item = store.decode_entry(fields)
            except Exception as exc:  # a payload no version of us can read: keep it, move on
                dead.append((entry_id, f"undecodable ingest entry: {exc}"))
                continue
            if isinstance(item, InboundMessage):
                messages.append((entry_id, item))
            else:
                statuses.append((entry_id, item))

        edits = [(e, m) for e, m in messages if m.edit is not None]
        messages = [(e, m) for e, m in messages if m.edit is None]
        if messages and self.profilers:
            messages = await self._with_profiles(messages)

        states: list[ThreadState] = []
        events: list[Event] = []
        if messages:
            cids = await store.resolve_customers([m.sender for _, m in messages if not m.references])
            targets: list[tuple[str, bool]] = []
            for _, msg in messages:
                targets.append(await self._by_reference(msg) if msg.references else (cids.pop(0), True))
            states = await store.append_inbound_batch([
                (cid, msg, p, entry_id, self.routing.route(msg), link)
                for (cid, link), (entry_id, msg) in zip(targets, messages, strict=True)
            ])
            await store.reindex(states)
            now_ms = int(time.time() * 1000)
            for (entry_id, _), st in zip(messages, states, strict=True):
                if st.applied and st.message_id:
                    events.append(Event(EventType.MESSAGE_CREATED, st.customer_id, f"{st.message_id}:created",
                                        message_id=st.message_id, at_ms=now_ms))
                    metrics.observe_latency("routed", max(0.0, now_ms - _entry_ms(entry_id)) / 1000)
        for _, edit in edits:  # after the batch's appends: an edit follows its message in the stream
            event = await self._apply_edit(edit)
            if event:
                events.append(event)
        for _, update in statuses:
            event = await self._apply_status(update)
            if event:
                events.append(event)
        await store.publish(events)
        for entry_id, reason in dead:
            await store.record_dead_letter({"reason": reason, "partition": str(p), "entry_id": entry_id})
        ids = [e[0] for e in entries]
        async with store.redis.pipeline(transaction=False) as pipe:
            pipe.xack(store.keys.ingest_stream(p), GROUP, *ids)
            pipe.xdel(store.keys.ingest_stream(p), *ids)
            await pipe.execute()

    async def _with_profiles(self, messages: list[tuple[str, InboundMessage]]) -> list[tuple[str, InboundMessage]]:
        """Fill in sender names from provider profiles, and link unknown senders whose verified
        profile email belongs to a customer, before identities are resolved."""
        store = self.store
        senders = list(dict.fromkeys(m.sender for _, m in messages if m.instance in self.profilers))
        if not senders:
            return messages
        profiles = await store.cached_profiles(senders)
        instance_of = {m.sender: m.instance for _, m in reversed(messages) if m.instance in self.profilers}
        missing = [s for s in senders if s not in profiles]
        if missing:
            fetched = await asyncio.gather(*(self._fetch_profile(instance_of[s], s) for s in missing))
            profiles.update(zip(missing, fetched, strict=True))
        for sender, profile in profiles.items():
            if profile is not None and profile.email and profile.email_verified:
                await self._link_by_email(sender, profile.email)
        out = []
        for entry_id, msg in messages:
            profile = profiles.get(msg.sender)
            if profile is not None and profile.name and not msg.sender_name:
                msg = msgspec.structs.replace(msg, sender_name=profile.name)
            out.append((entry_id, msg))
        return out

    async def _fetch_profile(self, instance: str, sender: Identity) -> Profile | None:
        connector = self.profilers[instance]
        profile: Profile | None = None
        try:
            profile = await asyncio.wait_for(connector.profile(sender), self.profile_timeout)
        except Exception as exc:  # the message goes on without a profile, whatever went wrong
            # No address in the log: it identifies a customer; the error type says enough.
            log.warning("ingest.profile_failed", instance=instance, error=type(exc).__name__)
            with contextlib.suppress(RedisError):
                await self.store.cache_profile(sender, None, PROFILE_MISS_TTL)
            return None
        await self.store.cache_profile(sender, profile, PROFILE_TTL if profile is not None else PROFILE_MISS_TTL)
        return profile

    async def _link_by_email(self, sender: Identity, email: str) -> None:
        store = self.store
        address = Identity("email", email.strip().lower())
        known, owner = await store.known_customer(sender), await store.known_customer(address)
        if owner is None:
            # The verified address is nobody's yet: it becomes the sender's customer's, so that a
            # later email from it joins the same thread.
            await store.link_identity(address, known or await store.resolve_customer(sender))
        elif known is None:
            # SET NX: if the sender got a customer of its own meanwhile, that one stays.
            await store.link_identity(sender, owner)
            log.info("ingest.linked_by_email", kind=sender.kind)

    async def _apply_edit(self, msg: InboundMessage) -> Event | None:
        assert msg.edit is not None
        cid = await self.store.known_customer(msg.sender)
        mid = None
        if cid is not None:
            mid = await self.store.apply_edit(cid, msg.instance, msg.edit.target, text=msg.text,
                                              deleted=msg.edit.deleted, at_ms=msg.edit.at_ms)
        if mid is None or cid is None:
            # An edit of a message we never stored (sent before the app was installed, or by
            # someone we do not track): nothing to change.
            log.info("ingest.edit_dropped", instance=msg.instance, deleted=msg.edit.deleted)
            return None
        return Event(EventType.MESSAGE_UPDATED, cid, f"{mid}:edit:{msg.provider_message_id}", message_id=mid,
                     status="deleted" if msg.edit.deleted else "edited", at_ms=int(time.time() * 1000))

    async def _by_reference(self, msg: InboundMessage) -> tuple[str, bool]:
        """The thread a reply to one of our messages belongs in, and whether to link its sender.

        A reply lands in the thread of the message it answers, whoever sends it. Its sender is
        linked to that customer only when it is unknown and the connector allows it; otherwise a
        merge is suggested, and an agent decides.
        """
        store = self.store
        referenced = await store.referenced_customers(msg.instance, msg.references)
        owner = await store.known_customer(msg.sender)
        if not referenced:
            return (owner or await store.resolve_customer(msg.sender)), True
        cid = referenced[0]
        if owner == cid:
            return cid, True
        if owner is None and msg.link_sender and await store.link_identity(msg.sender, cid) == cid:
            return cid, True
        await store.suggest_merge(msg.sender, cid)
        return cid, False

    async def _apply_status(self, update: StatusUpdate) -> Event | None:
        mid = await self.store.locate_provider_message(update)
        if mid is None:
            # The callback outran our own record of the send; it is parked and applied when the
            # dispatcher links the provider id.
            log.info("ingest.status_parked", instance=update.instance)
            return None
        return await apply_status(self.store, mid, update)


async def apply_status(store: Store, mid: str, update: StatusUpdate) -> Event | None:
    changed, delivery = await store.update_delivery(mid, update.status, error=update.error)
    if not changed:
        return None
    cid = mid.rpartition(".")[0]
    return Event(EventType.MESSAGE_STATUS, cid, f"{mid}:{delivery.status.value}", message_id=mid,
                 status=delivery.status.value, at_ms=update.at_ms or int(time.time() * 1000))


async def _autoclaim(redis: Any, stream: str, consumer: str, start: str, count: int
                     ) -> tuple[str, list[StreamEntry], list[Any]]:
    reply = await redis.xautoclaim(stream, GROUP, consumer, min_idle_time=0, start_id=start, count=count)
    next_start = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
    # Entries deleted while pending come back as (id, None); they have nothing left to apply.
    entries = [(i, f) for i, f in reply[1] if f]
    gone = [i for i, f in reply[1] if not f]
    if gone:
        await redis.xack(stream, GROUP, *gone)
    return next_start, entries, reply[2] if len(reply) > 2 else []


def _entry_ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])
