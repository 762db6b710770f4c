"""Background workers: ingest (webhook log -> threads) and dispatch (replies -> providers).

`setup(app)` runs them inside the web process (`omnigateway serve`); `omnigateway worker` runs
the same objects without HTTP. Either way they stop gracefully: batches and sends under way
finish before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, NamedTuple

from aiohttp import web

from connectors.base import Connector
from conversation.store import Store
from gateway.appkeys import CONFIG, CONNECTORS, STORE
from gateway.attachments import AttachmentStore
from gateway.workers.dispatch import Dispatcher
from gateway.workers.ingest import IngestWorker
from gateway.workers.pollers import Pollers

__all__ = ["Dispatcher", "IngestWorker", "Pollers", "Workers", "build_workers", "run_workers", "setup"]

if TYPE_CHECKING:
    from gateway.config import Config

WORKERS: web.AppKey[Workers] = web.AppKey("workers")


class Workers(NamedTuple):
    ingest: IngestWorker
    dispatch: Dispatcher
    pollers: Pollers

    def stop(self) -> None:
        for worker in self:
            worker.stop()


def build_workers(config: Config, store: Store, connectors: dict[str, Connector[Any]]) -> Workers:
    settings = config.gateway
    return Workers(
        IngestWorker(store, config.routing, lease_ttl=settings.lease_ttl, connectors=connectors),
        Dispatcher(
            store, connectors,
            max_attempts=settings.send_max_attempts,
            visibility_timeout=settings.send_visibility_timeout,
        ),
        Pollers(store, connectors, lease_ttl=settings.lease_ttl,
                attachments=AttachmentStore(store.redis, settings.key_prefix, public_url=settings.public_base_url)),
    )


@contextlib.asynccontextmanager
async def run_workers(workers: Workers, grace: float = 10.0) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(w.run(), name=type(w).__name__) for w in workers]
    try:
        yield
    finally:
        workers.stop()
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def setup(app: web.Application) -> None:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[WORKERS] = build_workers(app[CONFIG], app[STORE], app[CONNECTORS])
        async with run_workers(app[WORKERS], grace=app[CONFIG].gateway.shutdown_grace):
            yield

    app.cleanup_ctx.append(ctx)
