"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

from aiohttp import web

from conversation.errors import StoreError
from gateway import metrics
from gateway.appkeys import STORE
from gateway.errors import error_response


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        await request.app[STORE].state.ping()
    except (StoreError, OSError):
        return error_response(503, "unavailable", "redis is not reachable")
    return web.json_response({"status": "ready"})


async def metrics_view(request: web.Request) -> web.StreamResponse:
    # Queue depth is read at scrape time: always current, and no background poller to run.
    try:
        for queue, depth in (await request.app[STORE].indexes.queue_depths()).items():
            metrics.set_queue_depth(queue, depth)
    except (StoreError, OSError):
        pass
    return await metrics.metrics_handler(request)


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
