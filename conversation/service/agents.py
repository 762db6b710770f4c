"""Agents are created, edited and removed; they come online, go away, keep their presence alive;
managers read who is there and how the queues stand.

Presence is what the agent set, except that an agent online whose heartbeats stopped for the
routing's `presence_timeout` reads as away. Going offline or away keeps the threads already held.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import msgspec

from conversation.agents import Agent, AgentView, Presence, effective_presence
from conversation.errors import NotAllowed, NotFound
from conversation.model import from_ms
from conversation.routing import RoutingSettings
from conversation.service.assignment import Assignment
from conversation.store import Store


class AgentExists(ValueError):
    """An agent of that name exists already."""


class QueueView(msgspec.Struct, kw_only=True):
    name: str
    assignment: str
    depth: int  # open threads in the queue that nobody holds
    oldest_wait_seconds: int  # 0 when nothing waits
    agents_online: int
    skills: list[str]
    languages: list[str]


def _now_ms() -> int:
    return int(time.time() * 1000)


class AgentDirectory:
    def __init__(self, store: Store, routing: RoutingSettings, assignment: Assignment | None = None) -> None:
        self.store = store
        self.routing = routing
        self.assignment = assignment

    async def create(self, agent: Agent) -> AgentView:
        if not await self.store.agents.create(agent):
            raise AgentExists(f"an agent named {agent.name!r} exists; PATCH it instead")
        self._changed()
        return await self.view(agent.name)

    async def update(self, name: str, changes: Mapping[str, Any]) -> AgentView:
        """Change some of an agent's fields (the name stays)."""
        agent = await self._get(name)
        merged = {**msgspec.structs.asdict(agent), **changes, "name": agent.name}
        await self.store.agents.save(msgspec.convert(merged, Agent))
        self._changed()
        return await self.view(name)

    async def delete(self, name: str) -> None:
        if not await self.store.agents.delete(name):
            raise NotFound(f"no agent {name!r}")
        self._changed()

    async def view(self, name: str) -> AgentView:
        return (await self._views([await self._get(name)]))[0]

    async def everyone(self) -> list[AgentView]:
        agents = [a for a in await self.store.agents.many(await self.store.agents.names()) if a is not None]
        return await self._views(agents)

    async def set_presence(self, name: str, status: Presence, *, by: str, may_set_others: bool) -> AgentView:
        """An agent sets their own presence; a supervisor anyone's."""
        if name != by and not may_set_others:
            raise NotAllowed("agents set only their own presence")
        await self._get(name)
        await self.store.agents.set_presence(name, status, _now_ms())
        if status == "online" and self.assignment is not None:
            await self.assignment.agent_online(name)  # the backlog drains into their room
        return await self.view(name)

    async def heartbeat(self, name: str) -> AgentView:
        """Keep an agent online (one whose heartbeats had stopped is online again)."""
        await self._get(name)
        await self.store.agents.heartbeat(name, _now_ms())
        return await self.view(name)

    async def queues(self) -> list[QueueView]:
        """Every configured queue, and every queue a thread is in: depth, oldest wait, who is on."""
        waiting = await self.store.indexes.waiting(list(self.routing.queues))
        agents = await self.everyone()
        now = _now_ms()
        out = []
        for name, (depth, since) in waiting.items():
            settings = self.routing.queue(name)
            online = sum(1 for a in agents if a.presence == "online" and name in a.queues)
            out.append(QueueView(name=name, assignment=settings.assignment, depth=depth,
                                 oldest_wait_seconds=max(0, (now - since) // 1000) if since else 0,
                                 agents_online=online, skills=list(settings.skills),
                                 languages=list(settings.languages)))
        return out

    def _changed(self) -> None:
        if self.assignment is not None:
            self.assignment.forget_profiles()

    async def _get(self, name: str) -> Agent:
        agent = await self.store.agents.get(name)
        if agent is None:
            raise NotFound(f"no agent {name!r}")
        return agent

    async def _views(self, agents: list[Agent]) -> list[AgentView]:
        presence = await self.store.agents.presence([a.name for a in agents])
        now = _now_ms()
        out = []
        for agent in agents:
            p = presence[agent.name]
            out.append(AgentView(
                name=agent.name, role=agent.role, queues=list(agent.queues), supervises=list(agent.supervises),
                skills=list(agent.skills), languages=list(agent.languages), capacity=dict(agent.capacity),
                load={channel: p.load.get(channel, 0) for channel in sorted(set(agent.capacity) | set(p.load))},
                timezone=agent.timezone,
                presence=effective_presence(p.status, p.last_seen_ms, now, self.routing.presence_timeout),
                last_seen_at=from_ms(p.last_seen_ms).isoformat() if p.last_seen_ms else None,
            ))
        return out


__all__ = ["AgentDirectory", "AgentExists", "QueueView"]
