"""The inbox API: JSON under /v1 for agents, supervisors and admins, described at /openapi.json.

`setup(app)` mounts it as a sub-application, so its middlewares (error shape, bearer auth, the
per-principal rate limit) apply to /v1 only and never to webhooks or health checks. Handlers
decode the request, call one use case of the core (app[CORE]) or read the store (app[STORE]),
and encode the answer.
"""

from __future__ import annotations

from aiohttp import web

from gateway.api import activity, agents, attachments, customers, deadletters, events, inbox, openapi, voice
from gateway.api.errors import error_middleware
from gateway.api.http import principal
from gateway.appkeys import CONFIG, STORE
from gateway.auth import auth_middleware
from gateway.ratelimit import redis_rate_limit_middleware

__all__ = ["setup"]


def setup(app: web.Application) -> None:
    api = web.Application(middlewares=[
        error_middleware,
        auth_middleware(lambda request: request.config_dict[STORE].tokens),
        redis_rate_limit_middleware(
            lambda request: request.config_dict[STORE].rate_limits,
            key=lambda request: f"api:{principal(request).name}",
            limit=lambda request: request.config_dict[CONFIG].gateway.api_rate_limit_per_minute,
        ),
    ])
    for table in (inbox.routes, activity.routes, customers.routes, deadletters.routes, attachments.routes,
                  voice.routes, agents.routes, events.routes):
        api.router.add_routes(table)
    app.add_subapp("/v1", api)
    events.setup(app)
    app.router.add_get("/openapi.json", openapi.serve)
