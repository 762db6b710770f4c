"""Ingest workers: from the partitioned ingest log into customers' threads, in order.

Each partition stream holds the messages of the senders hashed to it. Exactly one worker at a
time owns a partition, through a lease it renews (conversation.store.leases); a consumer group
alone would spread one stream's entries over several consumers and lose per-customer order.
More worker processes own more partitions, a fair share each. A dead worker stops counting one
lease period after its last heartbeat and its leases expire as fast; a worker short of its share
wakes right when the next foreign lease would expire, so a killed worker's partitions flow again
within about one lease period. The next owner first claims what the old one left pending, in
stream order. What a batch does to the threads is the core's (conversation.service.inbound).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid

import structlog

from conversation.errors import StoreError
from conversation.service import Core
from conversation.store import Lease
from gateway import metrics

log = structlog.get_logger("gateway.ingest")


class IngestWorker:
    """Owns a fair share of the ingest partitions and applies their entries in order."""

    def __init__(
        self,
        core: Core,
        *,
        worker_id: str | None = None,
        lease_ttl: float = 5.0,
        batch: int = 200,
        block_ms: int = 1000,
    ) -> None:
        self.core = core
        self.store = core.store
        self.id = worker_id or f"w-{uuid.uuid4().hex[:10]}"
        self.lease_ttl_ms = int(lease_ttl * 1000)
        self.batch = batch
        self.block_ms = block_ms
        self.membership = self.store.membership("ingest")
        self._owned: dict[int, tuple[Lease, asyncio.Task[None]]] = {}
        # Consumers stop at their next loop turn (reads block at most block_ms): a cancel that
        # lands inside redis-py's blocking read can be lost, so cancelling is only the fallback.
        self._halts: dict[int, asyncio.Event] = {}
        self._stopping = asyncio.Event()

    @property
    def owned(self) -> set[int]:
        return set(self._owned)

    async def run(self) -> None:
        """Balance leases until stopped; consumers run as tasks per owned partition."""
        tick = self.lease_ttl_ms / 3000
        try:
            while not self._stopping.is_set():
                wait = tick
                try:
                    wait = min(tick, await self._balance())
                except StoreError as exc:
                    log.warning("ingest.redis_error", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), max(0.05, wait))
        finally:
            await self._shutdown()

    def stop(self) -> None:
        self._stopping.set()

    async def _balance(self) -> float:
        """Renew, give back, take; returns the seconds until the next balance is worth doing."""
        store = self.store
        live = await self.membership.heartbeat(self.id, self.lease_ttl_ms)
        fair = math.ceil(store.partitions / live)
        before = set(self._owned)

        owned = sorted(self._owned)
        kept = await store.leases.renew_all([self._owned[p][0] for p in owned])
        for p, ok in zip(owned, kept, strict=True):
            if not ok or self._owned[p][1].done():
                log.warning("ingest.lease_lost", partition=p)
                await self._drop(p, release=ok)
        # Give back partitions above the fair share so a new worker gets some.
        for p in sorted(self._owned)[fair:]:
            await self._drop(p, release=True)

        next_in = self.lease_ttl_ms / 3000
        if len(self._owned) < fair:
            candidates = [p for p in range(store.partitions) if p not in self._owned]
            leases = [store.leases.partition(p, self.id, self.lease_ttl_ms) for p in candidates]
            expiry = await store.leases.expiry_all(leases)
            free = [lease for lease, ttl in zip(leases, expiry, strict=True) if ttl is None]
            for lease in free[: fair - len(self._owned)]:
                if await lease.acquire():
                    self._start(candidates[leases.index(lease)], lease)
            held = [ttl for ttl in expiry if ttl is not None]
            if len(self._owned) < fair and held:
                # Come back just after the soonest foreign lease lapses (a dead worker's).
                next_in = min(next_in, min(held) / 1000 + 0.05)
        if set(self._owned) != before:
            log.info("ingest.partitions", worker=self.id, owned=sorted(self._owned), workers=live)
        return next_in

    def _start(self, p: int, lease: Lease) -> None:
        log.debug("ingest.lease_taken", partition=p, worker=self.id)
        self._halts[p] = asyncio.Event()
        self._owned[p] = (lease, asyncio.create_task(self._consume(p), name=f"ingest-{p}"))

    async def _drop(self, p: int, *, release: bool) -> None:
        lease, task = self._owned.pop(p)
        self._halts.pop(p).set()
        _, pending = await asyncio.wait([task], timeout=self.block_ms / 1000 + 5)
        for t in pending:
            t.cancel()
        await asyncio.wait([task])
        if release:
            with contextlib.suppress(StoreError):
                await lease.release()

    async def _shutdown(self) -> None:
        # Drain: each consumer finishes its current batch, then leases are handed back at once
        # instead of making the next owner wait for them to expire.
        await asyncio.gather(*(self._drop(p, release=True) for p in list(self._owned)))
        with contextlib.suppress(StoreError):
            await self.membership.leave(self.id)

    async def _consume(self, p: int) -> None:
        halt = self._halts[p]
        while not halt.is_set():
            try:
                await self._drain(p, halt)
            except StoreError as exc:
                # Redis away, or this process's pool busy. What the failed batch held stays
                # pending and is claimed again first, so the partition's order holds.
                log.warning("ingest.consumer_error", partition=p, error=str(exc))
                await _pause(halt, 1.0)

    async def _drain(self, p: int, halt: asyncio.Event) -> None:
        ingest = self.store.ingest
        await ingest.open(p)
        # First what earlier owners (or this consumer before an error) left pending, in order.
        start = "0-0"
        while not halt.is_set():
            start, entries = await ingest.claim_pending(p, self.id, start, self.batch)
            if entries:
                await self._apply(p, entries)
            if start == "0-0":
                break
        while not halt.is_set():
            entries = await ingest.read(p, self.id, self.batch, self.block_ms)
            if entries:
                await self._apply(p, entries)

    async def _apply(self, p: int, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        # A batch is finished even when the worker is told to stop mid-way (graceful drain).
        applied = await asyncio.shield(self.core.inbound.apply(p, entries))
        now_ms = time.time() * 1000
        for entry_id in applied.messages:
            metrics.observe_latency("routed", max(0.0, now_ms - int(entry_id.partition("-")[0])) / 1000)


async def _pause(halt: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(halt.wait(), seconds)


__all__ = ["IngestWorker"]
