"""A minimal gateway application around the inbox API, and data seeded through the Store.

Shared by the API, auth, rate-limit and OpenAPI tests; it builds only what the API needs, so
these tests do not depend on the full app factory.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

import redis.asyncio as aioredis
from aiohttp import web

from conversation.model import Identity, InboundMessage
from conversation.routing import RoutingSettings
from conversation.service import Core
from conversation.store import Route, Store
from gateway import api
from gateway.appkeys import CONFIG, CONNECTORS, CORE, STORE
from gateway.auth import Role
from gateway.config import Config, GatewaySettings

_entry = itertools.count(1)


def make_app(redis: aioredis.Redis, prefix: str, connectors: dict[str, Any] | None = None, *,
             core: Callable[[Store], Core] | None = None, routing: RoutingSettings | None = None,
             **gateway: Any) -> web.Application:
    """`core` builds the core over the store (default: one over `connectors` alone)."""
    app = web.Application()
    app[CONFIG] = Config(gateway=GatewaySettings(key_prefix=prefix, **gateway), routing=routing or RoutingSettings())
    app[STORE] = store = Store(redis, prefix=prefix)
    app[CORE] = core(store) if core is not None else Core(store, channels=connectors or {}, routing=routing)
    app[CONNECTORS] = connectors or {}
    api.setup(app)
    return app


async def bearer(redis: aioredis.Redis, prefix: str, role: Role | str = Role.ADMIN,
                 name: str | None = None) -> dict[str, str]:
    token = await Store(redis, prefix=prefix).tokens.create(name or f"{Role(role).value}-{uuid.uuid4().hex[:6]}",
                                                            Role(role).value)
    return {"Authorization": f"Bearer {token}"}


async def seed(store: Store, who: str | Identity, text: str = "hello", *, queue: str = "default",
               priority: int = 5, name: str | None = None, instance: str = "sms", channel: str = "sms",
               at_ms: int | None = None, opt_out: Literal["stop", "start"] | None = None) -> str:
    """One inbound message from `who` (a phone number or any identity), recorded as the pipeline
    would record it. Returns the conversation id."""
    sender = Identity("phone", who) if isinstance(who, str) else who
    cid = await store.identities.resolve(sender)
    at_ms = at_ms or int(time.time() * 1000)
    msg = InboundMessage(instance=instance, channel=channel, provider_message_id="SM" + uuid.uuid4().hex,
                         sender=sender, text=text, sender_name=name, received_at_ms=at_ms, opt_out=opt_out)
    # The ingest entry id is the message's time and, per partition, its replay watermark: it must
    # grow, which the counter guarantees even for messages of the same millisecond.
    entry = f"{at_ms}-{next(_entry)}"
    change = await store.threads.append_inbound(cid, msg, partition=store.ingest.partition_for(sender),
                                                entry_id=entry, route=Route(queue, priority))
    assert change.state is not None
    await store.indexes.reindex([change.state])
    return cid
