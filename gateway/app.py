"""The aiohttp application factory: one `setup(app)` per extension, resources in cleanup_ctx."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
import structlog
from aiohttp import web

from connectors.base import Connector
from connectors.registry import load_registry
from conversation.store import DAY, Store
from gateway import health, webchat, webhooks, workers
from gateway.appkeys import CONFIG, CONNECTORS, REDIS, STORE
from gateway.config import Config, ConfigError, build_connectors
from gateway.logging import REQUEST_ID
from gateway.ratelimit import LocalRateLimiter, local_rate_limit_middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# Request ids: a random per-process prefix and a counter, 32 hex digits like a UUID. Unique across
# processes and restarts without a uuid4 (os.urandom) per request; ids are labels, not secrets.
_RID_PREFIX = os.urandom(8).hex()
_rid_serial = itertools.count(1)


@web.middleware
async def request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request.headers.get("X-Request-Id") or f"{_RID_PREFIX}{next(_rid_serial):016x}"
    token = REQUEST_ID.set(rid)  # every log line while this request is served carries its id
    try:
        response = await handler(request)
    finally:
        REQUEST_ID.reset(token)
    response.headers["X-Request-Id"] = rid
    return response


def create_app(
    config: Config,
    *,
    redis_url: str,
    run_workers: bool = True,
    connectors: dict[str, Connector[Any]] | None = None,
) -> web.Application:
    """Build the gateway. Nothing here does I/O: clients connect on first use, in the app's loop."""
    # Webhooks are limited per client IP in-process: the ack path keeps its one Redis round trip.
    webhook_limit = local_rate_limit_middleware(
        LocalRateLimiter(), limit=config.gateway.webhook_rate_limit_per_minute, path_prefix="/webhooks/"
    )
    app = web.Application(client_max_size=config.gateway.max_body_bytes, middlewares=[request_id, webhook_limit])
    app[CONFIG] = config
    if connectors is None:
        registry = load_registry()
        for problem in registry.problems:  # a broken plugin is named at startup, not discovered later
            structlog.get_logger("gateway.connectors").warning("connector.plugin_problem", problem=problem)
        connectors, errors = build_connectors(config, registry)
        if errors:
            raise ConfigError(errors)
    app[CONNECTORS] = connectors
    client = aioredis.Redis.from_url(redis_url, health_check_interval=30)
    app[REDIS] = client
    app[STORE] = Store(
        client,
        prefix=config.gateway.key_prefix,
        partitions=config.gateway.partitions,
        dedupe_ttl=config.gateway.dedupe_ttl_days * DAY,
    )
    app.cleanup_ctx.append(_resources)

    health.setup(app)
    webhooks.setup(app)
    webchat.setup(app)
    from gateway import api

    api.setup(app)
    if run_workers:
        workers.setup(app)
    return app


async def _resources(app: web.Application) -> AsyncIterator[None]:
    yield
    for connector in app[CONNECTORS].values():
        await connector.aclose()
    await app[REDIS].aclose()
