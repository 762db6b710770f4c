"""Who sees which conversations.

- An admin sees everything.
- An agent sees the conversations of their queues and those assigned to them; a supervisor also
  those of the queues they supervise.
- A token whose name is no agent's sees only what is assigned to it (a supervisor's such token
  sees everything: supervising without a profile is how small teams start).
- While no agent exists at all (a fresh install, the demo), everyone keeps the whole view.
"""

from __future__ import annotations

import msgspec

from conversation.errors import NotAllowed
from conversation.model import Conversation
from conversation.store import Store


class Scope(msgspec.Struct, frozen=True):
    everything: bool = False
    queues: frozenset[str] = frozenset()
    assignee: str | None = None

    def allows(self, conv: Conversation) -> bool:
        return self.everything or (conv.queue in self.queues) or (
            self.assignee is not None and conv.assignee == self.assignee)

    def allows_queue(self, queue: str) -> bool:
        return self.everything or queue in self.queues


EVERYTHING = Scope(everything=True)


class Access:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def scope(self, name: str, role: str) -> Scope:
        if role == "admin":
            return EVERYTHING
        agent = await self.store.agents.get(name)
        if agent is None:
            if role == "supervisor" or not await self.store.agents.any():
                return EVERYTHING
            return Scope(assignee=name)
        queues = set(agent.queues) | (set(agent.supervises) if role == "supervisor" else set())
        return Scope(queues=frozenset(queues), assignee=name)

    async def conversation(self, cid: str, name: str, role: str) -> Conversation:
        """The conversation if the principal may see it; NotAllowed otherwise (NotFound first)."""
        conv = await self.store.threads.get_conversation(cid)
        if not (await self.scope(name, role)).allows(conv):
            raise NotAllowed(f"conversation {cid} is in queue {conv.queue!r}, not one of yours")
        return conv


__all__ = ["EVERYTHING", "Access", "Scope"]
