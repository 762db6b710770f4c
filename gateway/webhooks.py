"""The thin aiohttp adapter in front of connectors: verify, parse, record, ack.

The per-message cost here is CPU (signature, parse) plus one Redis round trip: the dedupe key and
the ingest stream entry are written by one Lua call per message, pipelined for the request. What
happens next (identity, thread, routing, events) is the ingest workers' job, after the ack.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from connectors.base import Connector, MalformedPayload, Route, SignatureError, WebhookRequest
from gateway import metrics
from gateway.appkeys import CONFIG, CONNECTORS, STORE
from gateway.errors import error_response
from gateway.outbox import dead_letter_fields

log = structlog.get_logger("gateway.webhooks")


def setup(app: web.Application) -> None:
    """Register every connector instance's routes under /webhooks/{instance}/."""
    for instance, connector in app[CONNECTORS].items():
        for route in connector.routes():
            app.router.add_route(
                route.method, f"/webhooks/{instance}/{route.path}", _handler(instance, connector, route)
            )


def _handler(
    instance: str, connector: Connector[Any], route: Route
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    channel = connector.channel

    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        app = request.app
        public_url = app[CONFIG].gateway.public_base_url
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, "payload_too_large", "the request body is larger than this gateway accepts")
        wr = WebhookRequest(
            method=request.method,
            # Providers sign the URL they called; behind a proxy only public_url knows it.
            url=public_url + request.path_qs,
            path=route.path,
            headers=request.headers,
            query=request.query,
            body=body,
            received_at_ms=int(time.time() * 1000),
        )
        try:
            connector.verify(wr)
        except SignatureError as exc:
            metrics.inbound(channel, "forged")
            log.warning("webhook.forged", instance=instance, reason=str(exc))
            return error_response(403, "invalid_signature", "the request signature does not verify")

        store = app[STORE]
        try:
            result = connector.parse(wr)
        except MalformedPayload as exc:
            try:
                await store.record_dead_letter(dead_letter_fields(instance, wr, str(exc)))
            except RedisError:
                return _unavailable(channel)
            metrics.inbound(channel, "malformed")
            log.warning("webhook.malformed", instance=instance, reason=str(exc))
            # Acknowledged: the provider retrying an unparseable payload helps no one.
            ack = connector.malformed_response
            return web.Response(status=ack.status, body=ack.body, content_type=ack.content_type)

        try:
            ids = await store.record_inbound(result.messages, result.statuses)
        except RedisError:
            return _unavailable(channel)
        stored = sum(1 for i in ids[: len(result.messages)] if i)
        if stored:
            metrics.inbound(channel, "stored", stored)
        if len(result.messages) - stored:
            metrics.inbound(channel, "duplicate", len(result.messages) - stored)
        metrics.observe_latency("ack", time.perf_counter() - started)
        response = result.response
        return web.Response(status=response.status, body=response.body, content_type=response.content_type)

    return handle


def _unavailable(channel: str) -> web.Response:
    metrics.inbound(channel, "unavailable")
    log.error("webhook.redis_unavailable")
    # 503 makes the provider retry later: nothing is lost while Redis is away.
    return error_response(503, "unavailable", "storage is unavailable; retry later", retry_after=5)
