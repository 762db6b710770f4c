"""The inbox API: JSON under /v1 for agents, supervisors and admins, described at /openapi.json.

`setup(app)` mounts it as a sub-application, so its middlewares (error shape, bearer auth, the
per-principal rate limit) apply to /v1 only and never to webhooks or health checks. Call it
before the application starts; app[REDIS], app[STORE] and app[CONFIG] must be set by the time
it starts (plain assignment, or an on_startup/cleanup_ctx registered before setup).
"""

from __future__ import annotations

from aiohttp import web

from gateway.api import attachments, customers, deadletters, inbox, openapi
from gateway.api.errors import error_middleware
from gateway.api.http import LIMITER, ROOT_APP, TOKENS, principal
from gateway.appkeys import CONFIG, REDIS
from gateway.auth import TokenStore, auth_middleware
from gateway.ratelimit import RateLimiter, redis_rate_limit_middleware

__all__ = ["setup"]


def setup(app: web.Application) -> None:
    api = web.Application(middlewares=[
        error_middleware,
        auth_middleware(lambda request: request.app[TOKENS]),
        redis_rate_limit_middleware(
            lambda request: request.app[LIMITER],
            key=lambda request: f"api:{principal(request).name}",
            limit=lambda request: request.config_dict[CONFIG].gateway.api_rate_limit_per_minute,
        ),
    ])
    api[ROOT_APP] = app
    for table in (inbox.routes, customers.routes, deadletters.routes, attachments.routes):
        api.router.add_routes(table)

    async def connect(api: web.Application) -> None:
        redis, prefix = app[REDIS], app[CONFIG].gateway.key_prefix
        api[TOKENS] = TokenStore(redis, prefix)
        api[LIMITER] = RateLimiter(redis, prefix)

    api.on_startup.append(connect)
    app.add_subapp("/v1", api)
    app.router.add_get("/openapi.json", openapi.serve)
