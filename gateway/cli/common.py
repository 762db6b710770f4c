"""What every command shares: exit codes, loading the configuration, reaching the store."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import urllib.parse
from collections.abc import Callable, Coroutine, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn

import msgspec
import structlog

from conversation.errors import StoreError
from conversation.store import Store
from gateway.config import DEFAULT_CONFIG_PATH, ENV_PREFIX, Config, ConfigError, load_config, validate_connectors

log = structlog.get_logger("gateway.cli")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130


class Exit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def config_path(args: argparse.Namespace) -> str:
    return str(args.config or os.environ.get(f"{ENV_PREFIX}CONFIG") or DEFAULT_CONFIG_PATH)


def load(args: argparse.Namespace) -> Config:
    try:
        return load_config(args.config)
    except ConfigError as exc:
        fail_config(config_path(args), exc.errors)


def fail_config(path: str, errors: Sequence[str]) -> NoReturn:
    print(f"{path}: invalid configuration", file=sys.stderr)
    for error in errors:
        print(f"  {error}", file=sys.stderr)
    raise Exit(EXIT_CONFIG)


def fail(message: str, code: int = EXIT_CONFIG) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise Exit(code)


def configure_logging(config: Config) -> None:
    from gateway.logging import configure_logging as configure

    configure(config.gateway.log_level, config.gateway.log_format)


def startup(args: argparse.Namespace) -> Config:
    """Load, log and validate everything before any socket opens: bad config exits 2 at once."""
    from connectors.registry import load_registry

    config = load(args)
    configure_logging(config)
    registry = load_registry()
    for problem in registry.problems:
        log.warning("connector plugin problem", problem=problem)
    errors = validate_connectors(config, registry)
    if errors:
        fail_config(config_path(args), errors)
    return config


def with_store(config: Config, main: Callable[[Store], Coroutine[Any, Any, None]]) -> int:
    """Run `main` against the deployment's store, starting (and finally stopping) the embedded
    Valkey when no redis_url is configured."""
    from gateway.app import store_for
    from gateway.embedded import EmbeddedValkeyError, resolve_redis_url

    try:
        url, embedded = resolve_redis_url(config)
    except EmbeddedValkeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    config = msgspec.structs.replace(config, gateway=msgspec.structs.replace(config.gateway, redis_url=url))

    async def session() -> None:
        store = store_for(config, url)
        try:
            await main(store)
        finally:
            await store.close()

    try:
        run(session())
    except StoreError as exc:
        print(f"error: Redis at {safe_url(url)}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except asyncio.CancelledError:
        return EXIT_INTERRUPTED
    finally:
        if embedded is not None:
            embedded.stop()
    return EXIT_OK


def run(coro: Coroutine[Any, Any, None]) -> None:
    """asyncio.run on uvloop when installed, with SIGTERM cancelling the work as Ctrl-C does,
    so `finally` blocks (closing clients, stopping the embedded Valkey) run rather than vanish."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop

    async def guarded() -> None:
        task = asyncio.current_task()
        if task is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await coro

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(guarded())


def describe_redis(config: Config) -> str:
    if config.gateway.redis_url:
        return safe_url(config.gateway.redis_url)
    return f"embedded Valkey, data in {config.gateway.data_path / 'valkey'}"


def safe_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url


def package_version() -> str:
    try:
        return version("omnichannel-gateway")
    except PackageNotFoundError:
        return "unknown"
