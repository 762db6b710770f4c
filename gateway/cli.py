"""The `omnigateway` command.

Exit codes: 0 success; 1 the command ran and failed (Redis unreachable, a gateway answered with an
error, a connector plugin is broken); 2 the configuration or the command line is wrong; 130
interrupted. Answers go to stdout and logs to stderr, so `token create | tail -1` is the token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn

import msgspec
import structlog

from gateway.config import (
    DEFAULT_CONFIG_PATH,
    ENV_PREFIX,
    Config,
    ConfigError,
    build_connectors,
    load_config,
    validate_connectors,
)

log = structlog.get_logger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130
ROLES = ("agent", "supervisor", "admin")


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except _Exit as exc:
        return exc.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omnigateway",
        description="One conversation thread per customer across every channel.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="PATH", default=None,
        help=f"configuration file (default: ${ENV_PREFIX}CONFIG or {DEFAULT_CONFIG_PATH})",
    )

    p = commands.add_parser("serve", parents=[common], help="run the HTTP server and the workers")
    p.set_defaults(handler=cmd_serve)

    p = commands.add_parser("worker", parents=[common], help="run workers only (scale out with more of these)")
    p.set_defaults(handler=cmd_worker)

    p = commands.add_parser("token", help="manage API tokens")
    tokens = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    p = tokens.add_parser("create", parents=[common], help="create an API token; it is the last line printed")
    p.add_argument("--name", required=True, help="who or what holds the token")
    p.add_argument("--role", required=True, choices=ROLES)
    p.set_defaults(handler=cmd_token_create)

    p = commands.add_parser("check-config", parents=[common], help="validate the configuration and exit")
    p.set_defaults(handler=cmd_check_config)

    p = commands.add_parser("connectors", parents=[common],
                            help="list installed connector kinds and configured instances")
    p.set_defaults(handler=cmd_connectors)

    p = commands.add_parser("simulate", parents=[common],
                            help="send a correctly signed sample Twilio webhook to a running gateway")
    p.add_argument("--instance", help="connector instance (default: the first twilio instance)")
    p.add_argument("--from", dest="sender", default="+34600111222", help="the customer's number")
    p.add_argument("--text", default="Hello", help="the message body")
    p.add_argument("--url", help="where to send it (default: the gateway's public URL)")
    p.set_defaults(handler=cmd_simulate)

    p = commands.add_parser("new-connector",
                            help="write a connector package skeleton that passes the conformance kit")
    p.add_argument("name", metavar="NAME", help="the connector kind, e.g. acme_chat (lowercase letters, digits, _)")
    p.add_argument("--dir", metavar="DIR", help="where to write it (default: ./omnigateway-NAME); "
                                                "must not exist or be empty")
    p.set_defaults(handler=cmd_new_connector)
    return parser


# --- commands -----------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    config = _startup(args)
    # Imported here: the server pulls in the whole app, which check-config and friends do not need.
    from gateway import server

    # The server resolves Redis (starting the embedded Valkey), installs uvloop and its signal
    # handlers, drains on SIGTERM/SIGINT, and returns the exit code.
    return server.serve(config, config_path=args.config)


def cmd_worker(args: argparse.Namespace) -> int:
    config = _startup(args)
    from gateway import server

    return server.work(config)


def cmd_token_create(args: argparse.Namespace) -> int:
    if not args.name.strip():
        print("error: --name must not be blank", file=sys.stderr)
        return EXIT_CONFIG
    config = _load(args)
    _configure_logging(config)
    tokens: list[str] = []

    async def create(cfg: Config) -> None:
        import redis.asyncio as aioredis

        from gateway.auth import TokenStore

        assert cfg.gateway.redis_url is not None  # _with_redis fills it in
        client = aioredis.Redis.from_url(cfg.gateway.redis_url)
        try:
            tokens.append(await TokenStore(client, cfg.gateway.key_prefix).create(args.name, args.role))
        finally:
            await client.aclose()

    try:
        code = _with_redis(config, create)
    except ValueError as exc:  # the store refuses a blank name before storing anything
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if code != EXIT_OK or not tokens:
        return code or EXIT_FAILED
    print(f"token for {args.name} ({args.role}):")
    print(tokens[0], flush=True)  # the last line, for scripts: `... | tail -n 1`
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    from connectors.registry import load_registry

    path = _config_path(args)
    config = _load(args)
    registry = load_registry()
    errors = validate_connectors(config, registry)
    if errors:
        _fail_config(path, errors)
    for problem in registry.problems:
        print(f"warning: {problem}", file=sys.stderr)
    g = config.gateway
    instances = ", ".join(f"{name} ({raw.get('kind')})" for name, raw in config.connectors.items())
    print(f"{path}: OK")
    print(f"  listen      http://{g.host}:{g.port}")
    print(f"  public URL  {g.public_base_url}")
    print(f"  redis       {_describe_redis(config)}")
    print(f"  connectors  {instances or 'none configured'}")
    print(f"  routing     default queue '{config.routing.default_queue}', {len(config.routing.rules)} rule(s)")
    return EXIT_OK


def cmd_connectors(args: argparse.Namespace) -> int:
    from connectors.registry import load_registry

    registry = load_registry()
    print("Installed connector kinds:")
    for kind, info in sorted(registry.installed.items()):
        print(f"  {kind:<12} {info.distribution:<32} {info.target}  (channel {getattr(info.cls, 'channel', '?')})")
    if not registry.installed:
        print("  none")
    if registry.problems:
        print("Problems:")
        for problem in registry.problems:
            print(f"  - {problem}")

    path = _config_path(args)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"Configured instances ({path}): the configuration is invalid", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return EXIT_CONFIG
    built, errors = build_connectors(config, registry)
    print(f"Configured instances ({path}):")
    for name, connector in built.items():
        routes = ", ".join(f"{r.method} {connector.webhook_url(r.path)}" for r in connector.routes())
        print(f"  {name:<12} kind {connector.kind:<10} channel {connector.channel:<9} webhooks: {routes or 'none'}")
    for error in errors:
        print(f"  error: {error}")
    if not config.connectors:
        print("  none")
    if errors:
        return EXIT_CONFIG
    return EXIT_FAILED if registry.problems else EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from twilio.request_validator import RequestValidator

    config = _load(args)
    instance = args.instance or next(
        (name for name, raw in config.connectors.items() if raw.get("kind") == "twilio"), None
    )
    if instance is None:
        _fail_config(_config_path(args), ["connectors: no twilio instance configured to simulate"])
    raw = config.connectors.get(instance)
    if raw is None:
        _fail_config(_config_path(args), [f"connectors.{instance}: no such instance "
                                          f"(configured: {', '.join(config.connectors) or 'none'})"])
    if raw.get("kind") != "twilio":
        _fail_config(_config_path(args), [f"connectors.{instance}: simulate supports kind 'twilio', "
                                          f"not {raw.get('kind')!r}"])
    auth_token = raw.get("auth_token")
    if not isinstance(auth_token, str) or not auth_token:
        _fail_config(_config_path(args), [f"connectors.{instance}.auth_token: required to sign the webhook"])

    sid = "SM" + uuid.uuid4().hex
    params = {
        "MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid,
        "AccountSid": str(raw.get("account_sid", "AC" + "0" * 32)),
        "From": args.sender, "To": str(raw.get("from_number", "+15005550006")),
        "Body": args.text, "NumMedia": "0", "NumSegments": "1",
        "SmsStatus": "received", "ApiVersion": "2010-04-01",
    }
    # Twilio signs the URL it was told to call, which the gateway rebuilds from public_url; --url
    # only changes where the request travels (a port-forward, a container's address).
    path = f"/webhooks/{instance}/messages"
    signed_url = config.gateway.public_base_url + path
    target = (args.url.rstrip("/") + path) if args.url else signed_url
    signature = RequestValidator(auth_token).compute_signature(signed_url, params)
    request = urllib.request.Request(
        target, data=urllib.parse.urlencode(params).encode(), method="POST",
        headers={"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded",
                 "User-Agent": "omnigateway-simulate"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"POST {target} failed: {reason}; is `omnigateway serve` running there?", file=sys.stderr)
        return EXIT_FAILED
    print(f"POST {target} (MessageSid {sid}) -> {status}")
    return EXIT_OK if 200 <= status < 300 else EXIT_FAILED


def cmd_new_connector(args: argparse.Namespace) -> int:
    from pathlib import Path

    from connectors.registry import load_registry
    from connectors.scaffold import Names, ScaffoldError, default_directory, write_skeleton

    try:
        names = Names.of(args.name)
        target = Path(args.dir) if args.dir else default_directory(args.name)
        installed = load_registry().installed.get(names.kind)
        if installed is not None:
            # Two packages providing one kind disable both, so say it now rather than at startup.
            print(f"warning: connector kind '{names.kind}' is already provided by {installed.distribution}; "
                  "installing this package beside it would disable both. Choose another NAME unless you are "
                  "replacing that package", file=sys.stderr)
        files = write_skeleton(args.name, target)
    except ScaffoldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"error: cannot write {exc.filename or args.dir}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"Wrote connector kind '{names.kind}' ({names.cls}) to {target}/:")
    for path in files:
        print(f"  {path.relative_to(target)}")
    print("Next:")
    print(f"  cd {target}")
    print("  pip install -e '.[test]'")
    print("  pytest -rs        # the conformance kit; it passes as written")
    print("Then make verify(), parse() and send() speak your provider's wire format (see README.md).")
    return EXIT_OK


# --- helpers ------------------------------------------------------------------------------------


def _config_path(args: argparse.Namespace) -> str:
    return str(args.config or os.environ.get(f"{ENV_PREFIX}CONFIG") or DEFAULT_CONFIG_PATH)


def _load(args: argparse.Namespace) -> Config:
    try:
        return load_config(args.config)
    except ConfigError as exc:
        _fail_config(_config_path(args), exc.errors)


def _fail_config(path: str, errors: Sequence[str]) -> NoReturn:
    print(f"{path}: invalid configuration", file=sys.stderr)
    for error in errors:
        print(f"  {error}", file=sys.stderr)
    raise _Exit(EXIT_CONFIG)


def _configure_logging(config: Config) -> None:
    from gateway.logging import configure_logging

    configure_logging(config.gateway.log_level, config.gateway.log_format)


def _startup(args: argparse.Namespace) -> Config:
    """Load, log and validate everything before any socket opens: bad config exits 2 at once."""
    from connectors.registry import load_registry

    config = _load(args)
    _configure_logging(config)
    registry = load_registry()
    for problem in registry.problems:
        log.warning("connector plugin problem", problem=problem)
    errors = validate_connectors(config, registry)
    if errors:
        _fail_config(_config_path(args), errors)
    return config


def _with_redis(config: Config, main: Callable[[Config], Coroutine[Any, Any, None]]) -> int:
    """Run `main` with a reachable redis_url, starting (and finally stopping) the embedded Valkey."""
    import redis

    from gateway.embedded import EmbeddedValkeyError, resolve_redis_url

    try:
        url, embedded = resolve_redis_url(config)
    except EmbeddedValkeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    config = msgspec.structs.replace(config, gateway=msgspec.structs.replace(config.gateway, redis_url=url))
    try:
        _run(main(config))
    except redis.RedisError as exc:
        print(f"error: Redis at {_safe_url(url)}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except asyncio.CancelledError:
        return EXIT_INTERRUPTED
    finally:
        if embedded is not None:
            embedded.stop()
    return EXIT_OK


def _run(coro: Coroutine[Any, Any, None]) -> None:
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


def _describe_redis(config: Config) -> str:
    if config.gateway.redis_url:
        return _safe_url(config.gateway.redis_url)
    return f"embedded Valkey, data in {config.gateway.data_path / 'valkey'}"


def _safe_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url


def _version() -> str:
    try:
        return version("omnichannel-gateway")
    except PackageNotFoundError:
        return "unknown"
