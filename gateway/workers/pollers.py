"""Supervision of polling connectors (IMAP, Slack's Socket Mode and the like).

One poller per connector instance across every gateway process: a lease decides which process
runs it, and the owner renews it. A poller that raises is restarted with backoff; one whose
lease is lost is cancelled, so two processes never read one mailbox at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any

import structlog

from connectors.base import Connector, ParseResult
from conversation.errors import StoreError
from conversation.store import Store
from conversation.store.files import AttachmentStore
from gateway.replay import polled_dead_letter_fields

log = structlog.get_logger("gateway.pollers")


class StorePollContext:
    """PollContext backed by the store: state under the instance's keys, records via ingest."""

    def __init__(self, store: Store, instance: str, files: AttachmentStore | None = None) -> None:
        self.store = store
        self.instance = instance
        self.files = files or store.files

    async def load_state(self, name: str) -> bytes | None:
        return await self.store.state.load_poll_state(self.instance, name)

    async def save_state(self, name: str, value: bytes) -> None:
        await self.store.state.save_poll_state(self.instance, name, value)

    async def record(self, result: ParseResult) -> list[str | None]:
        return await self.store.ingest.record(result.messages, result.statuses)

    async def dead_letter(self, raw: bytes, reason: str) -> None:
        await self.store.dead_letters.record(
            polled_dead_letter_fields(self.instance, raw, reason, int(time.time() * 1000)))

    async def keep_attachment(self, name: str | None, content_type: str, data: bytes) -> str:
        return await self.files.keep(name, content_type, data)


class Pollers:
    def __init__(self, store: Store, connectors: Mapping[str, Connector[Any]], *, lease_ttl: float = 5.0) -> None:
        self.store = store
        self.connectors = {name: c for name, c in connectors.items() if c.polls()}
        self.lease_ms = int(lease_ttl * 1000)
        self.id = f"p-{uuid.uuid4().hex[:10]}"
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        if not self.connectors:
            return
        await asyncio.gather(*(self._supervise(name, c) for name, c in self.connectors.items()))

    async def _supervise(self, instance: str, connector: Connector[Any]) -> None:
        lease = self.store.leases.poller(instance, self.id, self.lease_ms)
        failures = 0
        while not self._stopping.is_set():
            try:
                owned = await lease.acquire()
            except StoreError:
                owned = False
            if not owned:
                await self._sleep(self.lease_ms / 2000)
                continue
            log.info("poller.started", instance=instance)
            task = asyncio.create_task(connector.poll(StorePollContext(self.store, instance)))
            try:
                while not task.done() and not self._stopping.is_set():
                    await asyncio.wait([task], timeout=self.lease_ms / 3000)
                    try:
                        kept = await lease.renew()
                    except StoreError:
                        kept = False
                    if not kept:
                        log.warning("poller.lease_lost", instance=instance)
                        break
            finally:
                task.cancel()
                await asyncio.wait([task])  # its outcome is read below, not raised here
                with contextlib.suppress(StoreError):
                    await lease.release()  # atomic: never deletes a lease another process took
            if task.cancelled() or self._stopping.is_set():
                failures = 0
                continue
            exc = task.exception()
            failures += 1
            delay = min(60.0, 0.5 * 2**failures) * random.uniform(0.5, 1.0)
            log.error("poller.crashed", instance=instance, error=repr(exc), retry_in=round(delay, 2))
            await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
