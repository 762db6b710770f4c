"""`omnigateway serve` and `omnigateway worker`: process lifecycles around the app and workers.

`serve --processes 1` is one process with HTTP and every worker. With more (the default is one
per CPU), `serve` is a supervisor (gateway.supervisor) running that many web processes on one
port and the workers in processes of their own; each child runs one of the roles below.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
from collections.abc import Collection
from typing import Any

import structlog
from aiohttp import web

from connectors.base import Connector
from connectors.registry import load_registry
from gateway.app import core_for, create_app, store_for
from gateway.appkeys import CONNECTORS
from gateway.banner import print_banner
from gateway.config import Config, ConfigError, build_connectors
from gateway.embedded import resolve_redis_url
from gateway.logging import configure_logging
from gateway.voice import install_sighup

log = structlog.get_logger("gateway.server")

WORKER_ROLES = frozenset({"ingest", "dispatch"})


def install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# Young-generation GC threshold (CPython's default is 700 allocations). Each request allocates a few
# hundred objects, nearly all freed by reference counting before any collection could matter, so
# collecting every 700 allocations is mostly wasted work on the ack path.
GC_GEN0_THRESHOLD = 20_000


def tune_gc() -> None:
    """Keep the cyclic GC off the ack path's tail latency. Call once startup is done.

    After startup the heap holds tens of thousands of long-lived objects (modules, the SDKs, the
    app); every full collection walked all of them, a 50 ms pause seen as the p99 of webhook acks.
    gc.freeze() moves them out of the collector's sight (they stay alive until exit anyway), so
    later collections only walk what was allocated since.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


async def _tune_gc_on_startup(_app: web.Application) -> None:
    tune_gc()


def serve(config: Config, config_path: str | os.PathLike[str] | None = None, processes: int | None = None) -> int:
    """HTTP and workers: in this process (`processes` 1), or under a supervisor of child
    processes. SIGTERM/SIGINT drain in-flight work, then exit."""
    count = processes if processes is not None else (os.cpu_count() or 1)
    if count > 1:
        from gateway.supervisor import supervise

        return supervise(config, config_path, web_processes=count)
    configure_logging(config.gateway.log_level, config.gateway.log_format)
    install_uvloop()
    redis_url, embedded = resolve_redis_url(config)
    try:
        app = create_app(config, redis_url=redis_url, run_workers=True, handle_sighup=True)
        app.on_startup.append(_tune_gc_on_startup)  # after the cleanup contexts: clients, workers
        print_banner(config, config_path, embedded=embedded is not None,
                     webchat=any(c.kind == "webchat" for c in app[CONNECTORS].values()))
        settings = config.gateway
        web.run_app(app, host=settings.host, port=settings.port, print=None,
                    shutdown_timeout=settings.shutdown_grace, access_log=None, handle_signals=True)
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 2
    finally:
        if embedded:
            embedded.stop()
    return 0


def run_web(config: Config, redis_url: str) -> int:
    """One web process of several sharing the port (SO_REUSEPORT): HTTP only, no workers."""
    configure_logging(config.gateway.log_level, config.gateway.log_format)
    install_uvloop()
    settings = config.gateway
    try:
        app = create_app(config, redis_url=redis_url, run_workers=False, handle_sighup=True)
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 2
    app.on_startup.append(_tune_gc_on_startup)
    web.run_app(app, host=settings.host, port=settings.port, print=None, reuse_port=True,
                shutdown_timeout=settings.shutdown_grace, access_log=None, handle_signals=True)
    return 0


def work(config: Config, roles: Collection[str] = WORKER_ROLES, redis_url: str | None = None) -> int:
    """Workers only: ingest and dispatch (with the pollers), or one of them, beside web processes."""
    configure_logging(config.gateway.log_level, config.gateway.log_format)
    install_uvloop()
    connectors, errors = build_connectors(config, load_registry())
    if errors:
        print("configuration error:\n" + "\n".join(errors), file=sys.stderr)
        return 2
    embedded = None
    if redis_url is None:
        redis_url, embedded = resolve_redis_url(config)
    try:
        asyncio.run(_work(config, redis_url, connectors, set(roles)))
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 2
    finally:
        if embedded:
            embedded.stop()
    return 0


async def _work(config: Config, redis_url: str, connectors: dict[str, Connector[Any]], roles: set[str]) -> None:
    from gateway.workers import build_workers, run_workers

    settings = config.gateway
    store = store_for(config, redis_url)
    core = core_for(config, store, connectors)
    workers = build_workers(config, core, connectors, roles=roles)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    install_sighup(core)  # the supervisor passes SIGHUP to every child: reload, never die of it
    log.info("worker.started", roles=sorted(roles))
    tune_gc()
    try:
        async with run_workers(workers, grace=settings.shutdown_grace):
            await stop.wait()
    finally:
        for connector in connectors.values():
            await connector.aclose()
        await store.close()
    log.info("worker.stopped")
