"""The aiohttp application factory: one `setup(app)` per extension, resources in cleanup_ctx."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from connectors.base import Connector
from connectors.registry import load_registry
from conversation.service import Core, DeliveryPolicy
from conversation.store import DAY, Store, open_store
from gateway import health, transports, voice, webhooks, workers
from gateway.appkeys import CONFIG, CONNECTORS, CORE, STORE
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
    handle_sighup: bool = False,
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
    app[STORE] = store = store_for(config, redis_url)
    app[CORE] = core_for(config, store, connectors)
    app.cleanup_ctx.append(_resources)

    health.setup(app)
    webhooks.setup(app)
    transports.setup(app)
    from gateway import api

    api.setup(app)
    if run_workers:
        workers.setup(app)
    if handle_sighup:  # a process's entry point (serve), never an app embedded in tests
        voice.setup(app)
    return app


def store_for(config: Config, redis_url: str) -> Store:
    settings = config.gateway
    return open_store(
        redis_url,
        prefix=settings.key_prefix,
        partitions=settings.partitions,
        dedupe_ttl=settings.dedupe_ttl_days * DAY,
        public_url=settings.public_base_url,
        max_connections=settings.redis_max_connections,
        pool_timeout=settings.redis_pool_timeout,
    )


def core_for(config: Config, store: Store, connectors: dict[str, Connector[Any]]) -> Core:
    """The core over this deployment's connectors: they are its channels, and those that know
    who a sender is (Slack users.info) are its profile lookups."""
    settings = config.gateway
    return Core(
        store,
        routing=config.routing,
        channels=connectors,
        profiles={name: c.profile for name, c in connectors.items() if c.has_profiles()},
        delivery=DeliveryPolicy(max_attempts=settings.send_max_attempts,
                                visibility_timeout=settings.send_visibility_timeout),
        voice=voice.voice_of(config),
        voice_path=settings.voice_file,
    )


async def _resources(app: web.Application) -> AsyncIterator[None]:
    yield
    for connector in app[CONNECTORS].values():
        await connector.aclose()
    await app[STORE].close()
