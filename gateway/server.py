"""`omnigateway serve` and `omnigateway worker`: process lifecycles around the app and workers."""

from __future__ import annotations

import asyncio
import contextlib
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
from gateway.config import Config, ConfigError, build_connectors
from gateway.embedded import resolve_redis_url
from gateway.logging import configure_logging

log = structlog.get_logger("gateway.server")


def _install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def serve(config: Config, config_path: str | os.PathLike[str] | None = None) -> int:
    """HTTP and workers in one process. SIGTERM/SIGINT drain in-flight work, then exit."""
    configure_logging(config.gateway.log_level, config.gateway.log_format)
    _install_uvloop()
    redis_url, embedded = resolve_redis_url(config)
    try:
        app = create_app(config, redis_url=redis_url, run_workers=True)
        settings = config.gateway
        url = f"http://{settings.host}:{settings.port}"
        print(f"omnigateway listening on {url} (public URL {settings.public_base_url})", flush=True)
        print(f"redis: {'embedded Valkey under ' + str(settings.data_path) if embedded else 'configured'}",
              flush=True)
        print(f"create an API token:  {_token_command(config_path)}", flush=True)
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
    try:
        async with run_workers(workers, grace=settings.shutdown_grace):
            await stop.wait()
    finally:
        for connector in connectors.values():
            await connector.aclose()
        await client.aclose()
    log.info("worker.stopped")
