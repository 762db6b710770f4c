"""Supervision of polling connectors (IMAP and the like).

One poller per connector instance across every gateway process: a lease decides which process
runs it, and the owner renews it. A poller that raises is restarted with backoff; one whose
lease is lost is cancelled, so two processes never read one mailbox at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Mapping
from typing import Any

import structlog
from redis.exceptions import RedisError

from connectors.base import Connector, ParseResult
from conversation.store import Store
from gateway.attachments import AttachmentStore

log = structlog.get_logger("gateway.pollers")

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class StorePollContext:
    """PollContext backed by the store: state under the instance's keys, records via ingest."""

    def __init__(self, store: Store, instance: str, attachments: AttachmentStore | None = None) -> None:
        self.store = store
        self.instance = instance
        # Without the deployment's public URL, kept files get URLs relative to the gateway.
        self.attachments = attachments or AttachmentStore(store.redis, store.keys.prefix, public_url="")

    async def load_state(self, name: str) -> bytes | None:
        value = await self.store.redis.get(self.store.keys.poll_state(self.instance, name))
        if value is None:
            return None
        return value if isinstance(value, bytes) else value.encode()

    async def save_state(self, name: str, value: bytes) -> None:
        await self.store.redis.set(self.store.keys.poll_state(self.instance, name), value)

    async def record(self, result: ParseResult) -> list[str | None]:
        return await self.store.record_inbound(result.messages, result.statuses)

    async def dead_letter(self, raw: bytes, reason: str) -> None:
        await self.store.record_dead_letter({
            "instance": self.instance, "method": "POLL", "url": "", "path": "poll", "headers": "{}",
            "query": "{}", "body": raw.decode("latin-1"), "reason": reason, "received_at_ms": "0",
        })

    async def keep_attachment(self, name: str | None, content_type: str, data: bytes) -> str:
        return await self.attachments.keep(name, content_type, data)


class Pollers:
    def __init__(self, store: Store, connectors: Mapping[str, Connector[Any]], *, lease_ttl: float = 10.0,
                 attachments: AttachmentStore | None = None) -> None:
        self.store = store
        self.attachments = attachments
        self.connectors = {name: c for name, c in connectors.items() if c.polls()}
        self.lease_ms = int(lease_ttl * 1000)
        self.id = f"p-{uuid.uuid4().hex[:10]}"
        self._stopping = asyncio.Event()
        self._renew = store.redis.register_script(_RENEW)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        if not self.connectors:
            return
        await asyncio.gather(*(self._supervise(name, c) for name, c in self.connectors.items()))

    async def _supervise(self, instance: str, connector: Connector[Any]) -> None:
        lease = self.store.keys.poll_lease(instance)
        failures = 0
        while not self._stopping.is_set():
            try:
                owned = await self.store.redis.set(lease, self.id, nx=True, px=self.lease_ms)
            except RedisError:
                owned = False
            if not owned:
                await self._sleep(self.lease_ms / 2000)
                continue
            log.info("poller.started", instance=instance)
            task = asyncio.create_task(connector.poll(StorePollContext(self.store, instance, self.attachments)))
            try:
                while not task.done() and not self._stopping.is_set():
                    await asyncio.wait([task], timeout=self.lease_ms / 3000)
                    try:
                        kept = await self._renew(keys=[lease], args=[self.id, self.lease_ms])
                    except RedisError:
                        kept = 0
                    if not kept:
                        log.warning("poller.lease_lost", instance=instance)
                        break
            finally:
                task.cancel()
                await asyncio.wait([task])  # its outcome is read below, not raised here
                with contextlib.suppress(RedisError):
                    if await self.store.redis.get(lease) == self.id.encode():
                        await self.store.redis.delete(lease)
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
