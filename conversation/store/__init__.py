"""The Redis store behind the core, split by concern; `Store` bundles the repositories.

- identities: identity -> customer (SET NX), profiles, merge suggestions      (identities.py)
- threads and timeline: the thread state and every change to it, messages,
  the activity log                                                              (threads.py, timeline.py)
- delivery: forward-only status of our messages, provider ids                  (delivery.py)
- indexes: listings by status, queue, assignee                                 (indexes.py)
- streams: ingest partitions, the outbound queue, live events                  (streams.py)
- dead letters                                                                  (deadletters.py)
- leases: the one lease primitive, and the worker roster                       (leases.py)
- tokens, rate limits, kept files, small state                                 (tokens.py, ratelimit.py,
                                                                                files.py, state.py)

Key layout (conversation.keys): every key of one customer carries the hash tag {c:<id>}, so one
thread's keys sit in one Cluster slot and change together in one Lua call; the global indexes
have slots of their own. Nothing outside conversation/ talks to Redis: adapters go through here.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from conversation.errors import NotFound
from conversation.keys import Keys
from conversation.model import Customer, Identity
from conversation.routing import Route
from conversation.store.agents import Agents
from conversation.store.connection import DEFAULT_MAX_CONNECTIONS, DEFAULT_POOL_TIMEOUT, connect
from conversation.store.deadletters import DeadLetters
from conversation.store.delivery import Delivery
from conversation.store.files import AttachmentStore
from conversation.store.handling import Handling
from conversation.store.identities import Identities
from conversation.store.indexes import Indexes
from conversation.store.leases import Lease, Leases, Membership
from conversation.store.ratelimit import RateLimiter
from conversation.store.scripts import Scripts
from conversation.store.state import State
from conversation.store.streams import Events, IngestLog, OutboundQueue, StreamEntry
from conversation.store.threads import Change, Threads, ThreadState
from conversation.store.timeline import Timeline
from conversation.store.tokens import Tokens

DAY = 86_400


class Store:
    """Every repository of one deployment (key prefix) over one client."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "og", partitions: int = 16,
                 dedupe_ttl: int = 8 * DAY, public_url: str = "") -> None:
        self.redis = client
        self.keys = keys = Keys(prefix)
        self.partitions = partitions
        self.scripts = scripts = Scripts(client)
        self.timeline = Timeline(client, keys)
        self.threads = Threads(client, scripts, keys, self.timeline)
        self.identities = Identities(client, keys)
        self.delivery = Delivery(client, scripts, keys, self.timeline)
        self.indexes = Indexes(client, scripts, keys, self.threads)
        self.ingest = IngestLog(client, scripts, keys, partitions=partitions, dedupe_ttl=dedupe_ttl)
        self.outbox = OutboundQueue(client, scripts, keys)
        self.events = Events(client, keys)
        self.dead_letters = DeadLetters(client, keys)
        self.leases = Leases(client, scripts, keys)
        self.tokens = Tokens(client, keys)
        self.rate_limits = RateLimiter(client, keys)
        self.files = AttachmentStore(client, keys, public_url=public_url)
        self.state = State(client, keys)
        self.agents = Agents(client, keys, scripts)
        self.handling = Handling(client, scripts, keys, self.timeline)

    async def find_customer(self, identity: Identity) -> Customer | None:
        """The customer behind an identity, or None (also before its first message is in)."""
        cid = await self.identities.known(identity)
        if cid is None:
            return None
        try:
            return await self.threads.get_customer(cid)
        except NotFound:
            return None

    def membership(self, group: str) -> Membership:
        return Membership(self.redis, self.keys.workers(group))

    async def close(self) -> None:
        await self.redis.aclose()


def open_store(
    url: str,
    *,
    prefix: str = "og",
    partitions: int = 16,
    dedupe_ttl: int = 8 * DAY,
    public_url: str = "",
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    pool_timeout: float = DEFAULT_POOL_TIMEOUT,
) -> Store:
    """The store at `url`, over a pool of `max_connections` that waits `pool_timeout` seconds
    for a free connection. No I/O happens here."""
    client = connect(url, max_connections=max_connections, pool_timeout=pool_timeout)
    return Store(client, prefix=prefix, partitions=partitions, dedupe_ttl=dedupe_ttl, public_url=public_url)


__all__ = [
    "DAY",
    "Change",
    "Lease",
    "Membership",
    "Route",
    "Store",
    "StreamEntry",
    "ThreadState",
    "open_store",
]
