"""Background workers: ingest (webhook log -> threads) and dispatch (replies -> providers).

`setup(app)` runs them inside the web process (`omnigateway serve`); `omnigateway worker` runs
the same objects without HTTP. Either way they stop gracefully: batches and sends under way
finish before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection
from typing import TYPE_CHECKING, Any, NamedTuple

from aiohttp import web

from connectors.base import Connector
from conversation.service import Core
from gateway.appkeys import CONFIG, CONNECTORS, CORE
from gateway.workers.dispatch import Dispatcher
from gateway.workers.ingest import IngestWorker
from gateway.workers.pollers import Pollers

__all__ = ["Dispatcher", "IngestWorker", "Pollers", "Workers", "build_workers", "run_workers", "setup"]

if TYPE_CHECKING:
    from gateway.config import Config

WORKERS: web.AppKey[Workers] = web.AppKey("workers")


class Workers(NamedTuple):
    """The workers of one process; a role not run here is None."""

    ingest: IngestWorker | None
    dispatch: Dispatcher | None
    pollers: Pollers | None

    def running(self) -> list[IngestWorker | Dispatcher | Pollers]:
        return [w for w in self if w is not None]

    def stop(self) -> None:
        for worker in self.running():
            worker.stop()


ROLES = frozenset({"ingest", "dispatch"})


def build_workers(config: Config, core: Core, connectors: dict[str, Connector[Any]],
                  roles: Collection[str] = ROLES) -> Workers:
    """Ingest, and dispatch with the pollers (both talk to providers), as `roles` says."""
    settings = config.gateway
    return Workers(
        IngestWorker(core, lease_ttl=settings.lease_ttl) if "ingest" in roles else None,
        Dispatcher(core, connectors) if "dispatch" in roles else None,
        Pollers(core.store, connectors, lease_ttl=settings.lease_ttl) if "dispatch" in roles else None,
    )


@contextlib.asynccontextmanager
async def run_workers(workers: Workers, grace: float = 10.0) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(w.run(), name=type(w).__name__) for w in workers.running()]
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
        app[WORKERS] = build_workers(app[CONFIG], app[CORE], app[CONNECTORS])
        async with run_workers(app[WORKERS], grace=app[CONFIG].gateway.shutdown_grace):
            yield

    app.cleanup_ctx.append(ctx)
