"""Making a change visible: the listing indexes follow the thread state, and live views get the
events derived from the activity the change logged. The one place events are made.

A change spans slots: the thread (its own slot, with its activity, atomically), then the
indexes ({ix}), then the events stream. Each later step is idempotent and repairable: an index
update carries the thread's version (newest wins), and a live view that misses a wake-up rereads
the thread on its next one, so a crash between steps loses nothing that the thread holds.
"""

from __future__ import annotations

from collections.abc import Iterable

from conversation.activity import Activity, event_of
from conversation.store import Change, Store


class Publisher:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def changed(self, changes: Iterable[Change]) -> None:
        changes = list(changes)
        states = [c.state for c in changes if c.state is not None and c.state.applied]
        events = [event_of(a) for c in changes for a in c.activities]
        if states:
            # The indexes, then the events, in one round trip (in that order: a view woken by an
            # event finds the index it rereads up to date).
            await self.store.indexes.reindex(states, also=lambda pipe: self.store.events.add_to(pipe, events))
        else:
            await self.store.events.publish(events)

    async def logged(self, activities: Iterable[Activity]) -> None:
        await self.store.events.publish([event_of(a) for a in activities])


__all__ = ["Publisher"]
