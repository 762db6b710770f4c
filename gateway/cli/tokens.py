"""`omnigateway token create | list | revoke`: API tokens, stored hashed, managed by name."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from conversation.store import Store
from conversation.store.tokens import TokenNameTaken, TokenRecord, check_name
from gateway.cli.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, configure_logging, fail, load, with_store

ROLES = ("agent", "supervisor", "admin")


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("token", help="manage API tokens")
    tokens = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    p = tokens.add_parser("create", parents=[common], help="create an API token; it is the last line printed")
    p.add_argument("--name", required=True, help="who or what holds the token (one live token per name)")
    p.add_argument("--role", required=True, choices=ROLES)
    p.set_defaults(handler=cmd_create)
    p = tokens.add_parser("list", parents=[common], help="list token names, roles and creation times (no secrets)")
    p.set_defaults(handler=cmd_list)
    p = tokens.add_parser("revoke", parents=[common], help="revoke every token of a name")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=cmd_revoke)


def cmd_create(args: argparse.Namespace) -> int:
    try:
        name = check_name(args.name)
    except ValueError as exc:
        fail(str(exc))
    config = load(args)
    configure_logging(config)
    issued: list[str] = []

    async def create(store: Store) -> None:
        issued.append(await store.tokens.create(name, args.role))

    try:
        code = with_store(config, create)
    except TokenNameTaken as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if code != EXIT_OK or not issued:
        return code or EXIT_FAILED
    print(f"token for {name} ({args.role}):")
    print(issued[0], flush=True)  # the last line, for scripts: `... | tail -n 1`
    return EXIT_OK


def _when(record: TokenRecord) -> str:
    if not record.created_ms:
        return "-"
    return datetime.fromtimestamp(record.created_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def cmd_list(args: argparse.Namespace) -> int:
    config = load(args)
    configure_logging(config)
    found: list[TokenRecord] = []

    async def listing(store: Store) -> None:
        found.extend(await store.tokens.list())

    code = with_store(config, listing)
    if code != EXIT_OK:
        return code
    if not found:
        print("no tokens")
        return EXIT_OK
    width = max(len("NAME"), *(len(r.name) for r in found))
    print(f"{'NAME':<{width}}  {'ROLE':<10}  CREATED")
    for record in found:
        print(f"{record.name:<{width}}  {record.role:<10}  {_when(record)}")
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    config = load(args)
    configure_logging(config)
    revoked: list[int] = []

    async def revoke(store: Store) -> None:
        revoked.append(await store.tokens.revoke_name(args.name))

    code = with_store(config, revoke)
    if code != EXIT_OK:
        return code
    if not revoked or not revoked[0]:
        print(f"error: no token named {args.name!r}", file=sys.stderr)
        return EXIT_FAILED
    print(f"revoked {revoked[0]} token(s) of {args.name}")
    return EXIT_OK
