"""The `omnigateway` command.

Exit codes: 0 success; 1 the command ran and failed (Redis unreachable, a gateway answered with an
error, a connector plugin is broken); 2 the configuration or the command line is wrong; 130
interrupted. Answers go to stdout and logs to stderr, so `token create | tail -1` is the token.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from gateway.cli import agents, simulate, tokens
from gateway.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Exit,
    config_path,
    describe_redis,
    fail_config,
    package_version,
    startup,
)
from gateway.config import (
    DEFAULT_CONFIG_PATH,
    ENV_PREFIX,
    ConfigError,
    build_connectors,
    check_config,
    load_config,
)

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except Exit as exc:
        return exc.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omnigateway",
        description="One conversation thread per customer across every channel.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="PATH", default=None,
        help=f"configuration file (default: ${ENV_PREFIX}CONFIG or {DEFAULT_CONFIG_PATH})",
    )

    p = commands.add_parser("serve", parents=[common], help="run the HTTP server and the workers")
    p.add_argument("--processes", type=int, default=None, metavar="N",
                   help="web processes on one port, beside ingest and dispatch worker processes "
                        "(default: the number of CPUs; 1 runs everything in this one process)")
    p.set_defaults(handler=cmd_serve)

    p = commands.add_parser("worker", parents=[common], help="run workers only (scale out with more of these)")
    p.set_defaults(handler=cmd_worker)

    tokens.add_parsers(commands, common)
    agents.add_parsers(commands, common)

    p = commands.add_parser("check-config", parents=[common], help="validate the configuration and exit")
    p.set_defaults(handler=cmd_check_config)

    p = commands.add_parser("connectors", parents=[common],
                            help="list installed connector kinds and configured instances")
    p.add_argument("--reveal", action="store_true",
                   help="fill the secrets into the provider set-up steps (a command to paste)")
    p.set_defaults(handler=cmd_connectors)

    simulate.add_parser(commands, common)

    p = commands.add_parser("new-connector",
                            help="write a connector package skeleton that passes the conformance kit")
    p.add_argument("name", metavar="NAME", help="the connector kind, e.g. acme_chat (lowercase letters, digits, _)")
    p.add_argument("--dir", metavar="DIR", help="where to write it (default: ./omnigateway-NAME); "
                                                "must not exist or be empty")
    p.set_defaults(handler=cmd_new_connector)
    return parser


# --- commands -----------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    config = startup(args)
    if args.processes is not None and args.processes < 1:
        print("error: --processes must be at least 1", file=sys.stderr)
        return EXIT_CONFIG
    # Imported here: the server pulls in the whole app, which check-config and friends do not need.
    from gateway import server

    # The server resolves Redis (starting the embedded Valkey), installs uvloop and its signal
    # handlers, drains on SIGTERM/SIGINT, and returns the exit code.
    return server.serve(config, config_path=args.config, processes=args.processes)


def cmd_worker(args: argparse.Namespace) -> int:
    config = startup(args)
    from gateway import server

    return server.work(config)


def cmd_check_config(args: argparse.Namespace) -> int:
    from connectors.registry import load_registry

    path = config_path(args)
    registry = load_registry()
    try:
        config, errors = check_config(args.config, registry)
    except ConfigError as exc:
        fail_config(path, exc.errors)
    if config is not None:
        from gateway.voice import voice_problems  # proved by rendering every template

        errors += voice_problems(config)
    if errors or config is None:
        fail_config(path, errors)
    for problem in registry.problems:
        print(f"warning: {problem}", file=sys.stderr)
    g = config.gateway
    instances = ", ".join(f"{name} ({raw.get('kind')})" for name, raw in config.connectors.items())
    print(f"{path}: OK")
    print(f"  listen      http://{g.host}:{g.port}")
    print(f"  public URL  {g.public_base_url}")
    print(f"  redis       {describe_redis(config)}")
    print(f"  connectors  {instances or 'none configured'}")
    print(f"  routing     default queue '{config.routing.default_queue}', {len(config.routing.rules)} rule(s)")
    print(f"  voice       {g.voice_file or 'neutral (no voice file: replies go as typed)'}")
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

    path = config_path(args)
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
        for step in connector.setup_steps(reveal=args.reveal):
            print(f"    provider set-up: {step}")
    for error in errors:
        print(f"  error: {error}")
    if not config.connectors:
        print("  none")
    if errors:
        return EXIT_CONFIG
    return EXIT_FAILED if registry.problems else EXIT_OK


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
