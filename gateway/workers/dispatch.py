"""The outbound dispatcher: a consumer group on the outbound queue that sends through connectors.

This is the adapter: it reads entries, asks the core whether and what to send
(conversation.service.delivery: the send lease, attempt checks, pacing, backoff, dead letters),
calls the connector, and reports the outcome back to the core. A crashed dispatcher's pending
entries are reclaimed with XAUTOCLAIM once idle past the visibility timeout. The one window this
cannot close: a dispatcher that dies after the provider accepted a message but before the
provider id was written; the provider has no idempotency key to ask with.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Mapping
from typing import Any

import structlog

from connectors.base import Connector, PermanentSendError, TransientSendError
from conversation.errors import StoreError
from conversation.ids import conversation_of
from conversation.service import Core, SendJob
from gateway import metrics

log = structlog.get_logger("gateway.dispatch")


class Dispatcher:
    def __init__(
        self,
        core: Core,
        connectors: Mapping[str, Connector[Any]],
        *,
        consumer: str | None = None,
        concurrency: int = 32,
        block_ms: int = 1000,
    ) -> None:
        self.core = core
        self.store = core.store
        self.connectors = connectors
        self.consumer = consumer or f"d-{uuid.uuid4().hex[:10]}"
        self.policy = core.deliveries.policy
        self.visibility_ms = int(self.policy.visibility_timeout * 1000)
        self.block_ms = block_ms
        self._slots = asyncio.Semaphore(concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        # The last send queued per conversation: a customer's replies (and the parts of a long
        # one) leave in the order they were queued, not in whatever order concurrency allows.
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        outbox = self.store.outbox
        reclaim_at = 0.0
        opened = False
        try:
            while not self._stopping.is_set():
                try:
                    if not opened:
                        await outbox.open()
                        opened = True
                    await outbox.promote_due(int(time.time() * 1000))
                    if time.monotonic() >= reclaim_at:
                        await self._reclaim()
                        reclaim_at = time.monotonic() + self.visibility_ms / 4000
                    entries = await outbox.read(self.consumer, 32, min(self.block_ms, 250))
                except StoreError as exc:
                    log.warning("dispatch.redis_error", error=str(exc))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), 1)
                    continue
                for entry_id, fields in entries:
                    await self._spawn(entry_id, fields, reclaimed=False)
        finally:
            # Drain: sends under way finish (or time out) before the worker exits.
            if self._inflight:
                await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _spawn(self, entry_id: bytes, fields: dict[bytes, bytes], *, reclaimed: bool) -> None:
        await self._slots.acquire()
        cid = fields[b"c"].decode() if b"c" in fields else conversation_of(fields[b"m"].decode())
        task = asyncio.create_task(self._handle(entry_id, fields, reclaimed, after=self._tails.get(cid)))
        self._inflight.add(task)
        self._tails[cid] = task

        def done(t: asyncio.Task[None]) -> None:
            self._inflight.discard(t)
            if self._tails.get(cid) is t:
                del self._tails[cid]
            self._slots.release()

        task.add_done_callback(done)

    async def _reclaim(self) -> None:
        start = "0-0"
        while True:
            start, entries = await self.store.outbox.reclaim(self.consumer, self.visibility_ms, start, 32)
            for entry_id, fields in entries:
                log.info("dispatch.reclaimed", entry=entry_id)
                await self._spawn(entry_id, fields, reclaimed=True)
            if start == "0-0":
                return

    async def _handle(
        self, entry_id: bytes, fields: dict[bytes, bytes], reclaimed: bool, after: asyncio.Task[None] | None
    ) -> None:
        if after is not None:
            await asyncio.wait([after])
        try:
            mid = await self.core.deliveries.message_of(fields)
            if mid is not None:
                await self.send_entry(mid, int(fields.get(b"a", b"0")), reclaimed=reclaimed)
        except StoreError as exc:
            # Left pending: reclaimed after the visibility timeout, by us or another dispatcher.
            log.warning("dispatch.redis_error", error=str(exc))
            return
        except Exception:
            log.exception("dispatch.crashed")
            return
        await self.store.outbox.ack(entry_id)

    async def send_entry(self, mid: str, attempt: int, *, reclaimed: bool = False) -> str:
        """Send one message if this entry is still the right one to do it. Returns what happened."""
        deliveries = self.core.deliveries
        outcome, job = await deliveries.begin(mid, attempt, reclaimed=reclaimed)
        if job is None:
            if outcome == "failed":
                metrics.outbound("unknown", "failed")
            return outcome
        channel = job.message.channel
        try:
            connector = self.connectors.get(job.instance)
            if connector is None:  # configured when the core looked, gone now: fail it, do not guess
                await deliveries.failed(job, f"connector instance {job.instance!r} is not configured")
                metrics.outbound(channel, "failed")
                return "failed"
            try:
                provider_id = await asyncio.wait_for(connector.send(job.outbound), self.policy.send_timeout)
            except TimeoutError:
                return await self._retry(job, channel, "provider timed out", None)
            except TransientSendError as exc:
                return await self._retry(job, channel, exc.reason, exc.retry_after)
            except PermanentSendError as exc:
                await deliveries.failed(job, exc.reason, opted_out=exc.opted_out, window_closed=exc.window_closed)
                metrics.outbound(channel, "failed")
                return "failed"
            await deliveries.sent(job, provider_id)
            metrics.outbound(channel, "sent")
            return "sent"
        finally:
            with contextlib.suppress(StoreError):
                await job.lease.release()

    async def _retry(self, job: SendJob, channel: str, reason: str, retry_after: float | None) -> str:
        outcome = await self.core.deliveries.retry(job, reason, retry_after)
        metrics.outbound(channel, "dead" if outcome == "dead" else "retried")
        return outcome

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        return self.core.deliveries.backoff(attempt, retry_after)


__all__ = ["Dispatcher"]
