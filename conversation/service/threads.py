"""A thread changes hands or status: assignment and status transitions, and who may make them.

Each transition is one Lua call that changes the thread and logs it (assigned, unassigned,
status_changed, reopened); then the indexes and live views follow (Publisher). Later issues add
theirs here: transfers, re-routing, service-level warnings.
"""

from __future__ import annotations

from conversation.activity import Actor, agent
from conversation.errors import NoChannel, NotAllowed, NotFound
from conversation.model import Conversation, Customer, ThreadStatus
from conversation.routing import RoutingFacts, RoutingSettings
from conversation.service.assignment import Assignment, AtCapacity, capacity_for, now_ms
from conversation.service.publisher import Publisher
from conversation.store import Store


class ThreadChanges:
    def __init__(self, store: Store, publisher: Publisher, routing: RoutingSettings | None = None,
                 assignment: Assignment | None = None) -> None:
        self.store = store
        self.publisher = publisher
        self.routing = routing or RoutingSettings()
        self.assignment = assignment or Assignment(store, publisher, self.routing)

    async def transfer(self, cid: str, *, queue: str | None, to: str | None, note: str | None,
                       by: Actor) -> Conversation:
        """Pass a thread to another queue (it waits there, or goes to whoever the queue pushes it
        to) or to an agent, who must have room for it (AtCapacity otherwise); logged
        `transferred` with the note. The previous holder's capacity frees."""
        if queue is None and to is None:
            raise ValueError("transfer to a queue, an agent, or both")
        threads = self.store.threads
        current = await threads.get_conversation(cid)
        target = await self.store.agents.get(to) if to is not None else None
        if to is not None and target is None:
            raise NotFound(f"no agent {to!r}")
        previous = await self.store.agents.holder(cid)
        if previous is not None:
            await self.store.agents.release(cid, previous.agent)
        if to is not None and target is not None:
            channel = current.channel or ""
            if await self.store.agents.claim(to, cid, channel, capacity_for(target, channel), now_ms()) == 0:
                if previous is not None:  # put things back as they were
                    await self.store.agents.claim(previous.agent, cid, previous.channel, 0, now_ms(), force=True)
                raise AtCapacity(f"{to} holds as many {channel or 'such'} threads as their capacity allows")
        change = await self.store.handling.transfer(cid, by, queue=queue, agent=to, note=note)
        await self.publisher.changed([change])
        drain = [queue or current.queue or ""] if to is None else []
        if previous is not None and previous.agent != to:
            agent_ = await self.store.agents.get(previous.agent)
            drain += agent_.queues if agent_ is not None else []
        await self.assignment.drain([q for q in drain if q])
        return await threads.get_conversation(cid)

    async def reroute(self, cid: str, *, by: Actor) -> Conversation:
        """Run the routing rules again on the customer's latest message and what is known of
        them now (a changed tier, new tags): the thread moves to the queue they pick."""
        threads = self.store.threads
        latest = await self.store.handling.latest_inbound(cid)
        if latest is None:
            await threads.get_conversation(cid)  # NotFound when there is no thread at all
            raise NoChannel("the customer has written nothing the rules could read")
        facts = (await self.store.handling.routing_facts([cid]))[cid]
        route = self.routing.pick(RoutingFacts(channel=latest.channel, instance=latest.instance, text=latest.text,
                                               tier=facts.tier, language=facts.language, tags=facts.tags,
                                               account_manager=facts.account_manager))
        change = await self.store.handling.reroute(cid, by, route)
        await self.publisher.changed([change])
        conv = await threads.get_conversation(cid)
        if conv.assignee is None and conv.status == ThreadStatus.OPEN:
            await self.assignment.drain([route.queue])
        return conv

    async def assign(self, cid: str, assignee: str | None, *, by: str, may_reassign: bool) -> Conversation:
        """Give the conversation to `assignee` (None: to nobody). Without `may_reassign` (an
        agent, not a supervisor), `by` may only take it or let it go, and only while it is theirs
        or nobody's."""
        if not may_reassign:
            current = (await self.store.threads.get_conversation(cid)).assignee
            if assignee is not None and assignee != by:
                raise NotAllowed("agents may assign conversations only to themselves")
            if current not in (None, by):
                raise NotAllowed(f"assigned to {current}; a supervisor can reassign it")
        conv = await self._change(cid, agent(by), assignee=assignee)
        if assignee is None:
            await self.assignment.let_go(cid)
            if conv.status == ThreadStatus.OPEN and conv.queue:
                await self.assignment.drain([conv.queue])
        else:
            await self.assignment.held_by(cid, assignee, conv.channel or "")
        return conv

    async def set_status(self, cid: str, status: ThreadStatus, *, by: Actor) -> Conversation:
        """Open, pending or resolved. Resolving closes the episode; reopening starts one.
        Resolving or parking a thread frees its agent's capacity, which their push queues fill."""
        conv = await self._change(cid, by, status=status.value)
        if status in (ThreadStatus.RESOLVED, ThreadStatus.PENDING):
            await self.assignment.let_go(cid)
        elif conv.assignee is None and conv.queue:
            await self.assignment.drain([conv.queue])
        elif conv.assignee is not None:
            await self.assignment.held_by(cid, conv.assignee, conv.channel or "")
        return conv

    async def update_customer(self, cid: str, *, by: Actor, may_set_tier: bool, **details: str | None) -> Customer:
        """Set the customer's name, locale or tier (None clears name and locale). Agents set
        name and locale; the tier, which routing and the voice read, needs a supervisor
        (`may_set_tier`)."""
        for field in ("tier", "account_manager"):
            if field in details and not may_set_tier:
                raise NotAllowed(f"the {field.replace('_', ' ')} needs a supervisor")
        if details.get("tier") is None and "tier" in details:
            details["tier"] = "standard"
        if details.get("locale"):
            details["locale"] = str(details["locale"]).replace("_", "-").lower()
        change = await self.store.threads.update_customer(cid, by, **details)
        await self.publisher.changed([change])  # the listings show the customer's name
        return await self.store.threads.get_customer(cid)

    async def _change(self, cid: str, actor: Actor, **changes: str | None) -> Conversation:
        change = await self.store.threads.update(cid, actor, **changes)
        await self.publisher.changed([change])
        return await self.store.threads.get_conversation(cid)


__all__ = ["ThreadChanges"]
