"""`omnigateway serve` and `omnigateway worker`: process lifecycles around the app and workers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import structlog
from aiohttp import web

from connectors.base import Connector
from connectors.registry import load_registry
from conversation.store import DAY, Store
from gateway.app import create_app
from gateway.appkeys import CONNECTORS
from gateway.config import Config, ConfigError, build_connectors
from gateway.embedded import resolve_redis_url
from gateway.logging import configure_logging

log = structlog.get_logger("gateway.server")


def _install_uvloop() -> None:
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


def serve(config: Config, config_path: str | os.PathLike[str] | None = None) -> int:
    """HTTP and workers in one process. SIGTERM/SIGINT drain in-flight work, then exit."""
    configure_logging(config.gateway.log_level, config.gateway.log_format)
    _install_uvloop()
    redis_url, embedded = resolve_redis_url(config)
    try:
        app = create_app(config, redis_url=redis_url, run_workers=True)
        app.on_startup.append(_tune_gc_on_startup)  # after the cleanup contexts: clients, workers
        settings = config.gateway
        url = f"http://{settings.host}:{settings.port}"
        print(f"omnigateway listening on {url} (public URL {settings.public_base_url})", flush=True)
        print(f"redis: {'embedded Valkey under ' + str(settings.data_path) if embedded else 'configured'}",
              flush=True)
        print(f"create an API token:  {_token_command(config_path)}", flush=True)
        if any(c.kind == "webchat" for c in app[CONNECTORS].values()):
            print(f"web chat demo: {url}/  (chat as a customer, watch the thread in the inbox API)", flush=True)
        web.run_app(app, host=settings.host, port=settings.port, print=None,
                    shutdown_timeout=settings.shutdown_grace, access_log=None, handle_signals=True)
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 2
    finally:
        if embedded:
            embedded.stop()
    return 0


def _token_command(config_path: str | os.PathLike[str] | None) -> str:
    """The exact command to paste, even when the venv's bin is not on PATH (as with make run)."""
    exe = Path(sys.argv[0])
    if exe.name != "omnigateway":
        exe = Path(sys.executable).with_name("omnigateway")
    with contextlib.suppress(ValueError):
        exe = exe.resolve().relative_to(Path.cwd())
    shown = str(exe) if exe.is_absolute() or "/" in str(exe) else f"./{exe}" if exe.exists() else str(exe)
    config = f" --config {config_path}" if config_path else ""
    return f"{shown} token create --name me --role admin{config}"


def work(config: Config) -> int:
    """Workers only (ingest and dispatch), for scaling out beside web processes."""
    configure_logging(config.gateway.log_level, config.gateway.log_format)
    _install_uvloop()
    connectors, errors = build_connectors(config, load_registry())
    if errors:
        print("configuration error:\n" + "\n".join(errors), file=sys.stderr)
        return 2
    redis_url, embedded = resolve_redis_url(config)
    try:
        asyncio.run(_work(config, redis_url, connectors))
    finally:
        if embedded:
            embedded.stop()
    return 0


async def _work(config: Config, redis_url: str, connectors: dict[str, Connector[Any]]) -> None:
    from gateway.workers import build_workers, run_workers

    settings = config.gateway
    client = aioredis.Redis.from_url(redis_url, health_check_interval=30)
    store = Store(client, prefix=settings.key_prefix, partitions=settings.partitions,
                  dedupe_ttl=settings.dedupe_ttl_days * DAY)
    workers = build_workers(config, store, connectors)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker.started", ingest=workers.ingest.id, dispatch=workers.dispatch.consumer)
    tune_gc()
    try:
        async with run_workers(workers, grace=settings.shutdown_grace):
            await stop.wait()
    finally:
        for connector in connectors.values():
            await connector.aclose()
        await client.aclose()
    log.info("worker.stopped")
