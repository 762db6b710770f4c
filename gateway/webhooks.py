"""The thin aiohttp adapter in front of connectors: verify, parse, record, ack.

The per-message cost here is CPU (signature, parse) plus one Redis round trip: the dedupe key and
the ingest stream entry are written by one Lua call per message, pipelined for the request. What
happens next (identity, thread, routing, events) is the ingest workers' job, after the ack.

Under load, webhooks handled in the same event-loop turn share that round trip (`Recorder`): one
pipeline for all of them instead of one Redis command each, which is most of what redis-py costs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from connectors.base import Connector, MalformedPayload, ParseResult, Route, SignatureError, WebhookRequest
from conversation.errors import StoreError
from conversation.store import Store
from gateway import metrics
from gateway.appkeys import CONFIG, CONNECTORS, STORE
from gateway.errors import error_response
from gateway.replay import dead_letter_fields

log = structlog.get_logger("gateway.webhooks")


class Recorder:
    """Records parse results in the ingest log, coalescing concurrent webhooks.

    Webhooks handled in the same event-loop turn are recorded together, by one IngestLog.record
    call (one pipeline, one round trip) that runs once the turn's handlers have had their say;
    each gets its own entry ids back. Alone, a webhook waits one loop turn more and nothing else.
    Per-sender order is kept: the pipeline runs the calls in arrival order. When Redis fails,
    every webhook of the batch gets the error (and answers 503), as each would have alone; the
    provider's retries are deduplicated.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[tuple[ParseResult, asyncio.Future[list[str | None]]]] = []
        self._running: set[asyncio.Task[None]] = set()  # strong references until done

    async def record(self, result: ParseResult) -> list[str | None]:
        """The ingest entry id of each of `result.messages`, None for a duplicate."""
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._flush)
        future: asyncio.Future[list[str | None]] = loop.create_future()
        self._pending.append((result, future))
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[ParseResult, asyncio.Future[list[str | None]]]]) -> None:
        try:
            ids = await self.store.ingest.record([m for r, _ in batch for m in r.messages],
                                                 [s for r, _ in batch for s in r.statuses])
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    if isinstance(exc, asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        at = 0
        for result, future in batch:  # ids are the messages', in order, then the statuses'
            if not future.done():  # a handler cancelled meanwhile no longer waits
                future.set_result(ids[at:at + len(result.messages)])
            at += len(result.messages)


def setup(app: web.Application) -> None:
    """Register every connector instance's routes under /webhooks/{instance}/."""
    public_url = app[CONFIG].gateway.public_base_url
    recorder = Recorder(app[STORE])
    for instance, connector in app[CONNECTORS].items():
        for route in connector.routes():
            app.router.add_route(
                route.method, f"/webhooks/{instance}/{route.path}",
                _handler(instance, connector, route, app[STORE], recorder, public_url),
            )


def _handler(
    instance: str, connector: Connector[Any], route: Route, store: Store, recorder: Recorder, public_url: str
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    # Everything that does not change per request is looked up once, here: this is the ack path.
    channel = connector.channel
    verify, parse = connector.verify, connector.parse
    path = route.path

    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, "payload_too_large", "the request body is larger than this gateway accepts")
        wr = WebhookRequest(
            method=request.method,
            # Providers sign the URL they called; behind a proxy only public_url knows it.
            url=public_url + request.path_qs,
            path=path,
            headers=request.headers,
            query=request.query,
            body=body,
            received_at_ms=int(time.time() * 1000),
        )
        try:
            verify(wr)
        except SignatureError as exc:
            metrics.inbound(channel, "forged")
            log.warning("webhook.forged", instance=instance, reason=str(exc))
            return error_response(403, "invalid_signature", "the request signature does not verify")

        try:
            result = parse(wr)
        except MalformedPayload as exc:
            try:
                await store.dead_letters.record(dead_letter_fields(instance, wr, str(exc)))
            except StoreError:
                return _unavailable(channel)
            metrics.inbound(channel, "malformed")
            log.warning("webhook.malformed", instance=instance, reason=str(exc))
            # Acknowledged: the provider retrying an unparseable payload helps no one.
            ack = connector.malformed_response
            return web.Response(status=ack.status, body=ack.body, content_type=ack.content_type)

        try:
            ids = await recorder.record(result)
        except StoreError:
            return _unavailable(channel)
        if result.skipped:
            metrics.skipped(instance, result.skipped)
        stored = sum(1 for i in ids if i)
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
