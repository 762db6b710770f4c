"""The live hub: one reader of the events stream per web process, waking whoever watches a thread.

Agents' replies may be queued by one process, sent by a dispatcher in another (`omnigateway
worker`) and watched from sockets held by a third, so live delivery goes through Redis: every web
process runs one hub that follows the capped events stream with a blocking XREAD and wakes the
local subscribers of the event's conversation.

A wake-up carries no data. Subscribers read what they need from the thread itself, after their
own cursor, so an event that is missed, repeated or out of order costs at most one extra read and
never loses or duplicates a message. It also bounds memory per subscriber to one flag: a slow
socket only delays itself, and any number of events while it is busy coalesce into one wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Protocol

import structlog

from conversation.errors import StoreError
from conversation.store.streams import Events

log = structlog.get_logger("gateway.live")


class Subscriber(Protocol):
    def wake(self) -> None: ...


class LiveHub:
    def __init__(self, events: Events, *, block_ms: int = 500, batch: int = 500) -> None:
        self.events = events
        self.block_ms = block_ms
        self.batch = batch
        self._subs: dict[str, set[Subscriber]] = {}
        self._everything: set[Subscriber] = set()  # woken by any event (the agents' event stream)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    def subscribe(self, conversation_id: str, sub: Subscriber) -> None:
        self._subs.setdefault(conversation_id, set()).add(sub)

    def unsubscribe(self, conversation_id: str, sub: Subscriber) -> None:
        subs = self._subs.get(conversation_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[conversation_id]

    def subscribe_all(self, sub: Subscriber) -> None:
        self._everything.add(sub)

    def unsubscribe_all(self, sub: Subscriber) -> None:
        self._everything.discard(sub)

    def subscribers(self, conversation_id: str) -> int:
        return len(self._subs.get(conversation_id, ()))

    @property
    def started(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="live-hub")

    async def stop(self) -> None:
        # The read blocks at most block_ms; stopping at the next turn avoids cancelling inside
        # redis-py's blocking read, which can leave the connection in an unknown state.
        self._stopping.set()
        if self._task is not None:
            _, pending = await asyncio.wait([self._task], timeout=self.block_ms / 1000 + 2)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def run(self) -> None:
        last: str | None = None
        while not self._stopping.is_set():
            try:
                if last is None:
                    # Start at the current end: "$" in a loop would skip what arrives between two
                    # reads. Subscribers read their backlog themselves when they subscribe.
                    last = await self.events.last_id()
                    self.ready.set()
                entries = await self.events.follow(last, self.batch, self.block_ms)
            except StoreError as exc:
                log.warning("live.read_failed", error=str(exc))
                await asyncio.sleep(1)
                # Events may have been trimmed or missed meanwhile: everyone rereads.
                self._wake(list(self._subs) or ["*"])
                continue
            woken: set[str] = set()
            for entry_id, event in entries:
                last = entry_id
                if event is not None:
                    woken.add(event.conversation_id)
            self._wake(woken)

    def _wake(self, conversation_ids: Iterable[str]) -> None:
        conversation_ids = list(conversation_ids)
        if conversation_ids:
            for sub in list(self._everything):
                sub.wake()
        for cid in conversation_ids:
            for sub in list(self._subs.get(cid, ())):
                sub.wake()


__all__ = ["LiveHub", "Subscriber"]
