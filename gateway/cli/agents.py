"""`omnigateway agent create | list | delete`: the team, managed from the shell as by the API."""

from __future__ import annotations

import argparse
import sys

import msgspec

from conversation.agents import Agent
from conversation.service.agents import AgentDirectory, AgentExists
from conversation.store import Store
from gateway.cli.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, configure_logging, fail, load, with_store

ROLES = ("agent", "supervisor", "admin")


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("agent", help="manage agents (the principals of tokens of the same name)")
    agents = p.add_subparsers(dest="agent_command", required=True, metavar="ACTION")
    p = agents.add_parser("create", parents=[common], help="create an agent")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--role", choices=ROLES, default="agent")
    p.add_argument("--queues", default="", help="comma-separated queue names, e.g. general,l2")
    p.add_argument("--supervises", default="", help="comma-separated queues this agent supervises")
    p.add_argument("--skills", default="", help="comma-separated skills, e.g. technical,billing")
    p.add_argument("--languages", default="", help="comma-separated languages, e.g. es,en")
    p.add_argument("--capacity", default="", help="threads at once per channel, e.g. webchat=4,email=10")
    p.add_argument("--timezone", default=None, help="IANA time zone, e.g. Europe/Madrid")
    p.set_defaults(handler=cmd_create)
    p = agents.add_parser("list", parents=[common], help="list agents with presence, queues and load")
    p.set_defaults(handler=cmd_list)
    p = agents.add_parser("delete", parents=[common], help="delete an agent (its tokens stay until revoked)")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=cmd_delete)


def _words(raw: str) -> list[str]:
    return [w.strip() for w in raw.split(",") if w.strip()]


def parse_capacity(raw: str) -> dict[str, int]:
    """`webchat=4,email=10` as {"webchat": 4, "email": 10}; a readable error otherwise."""
    out: dict[str, int] = {}
    for item in _words(raw):
        channel, sep, number = item.partition("=")
        if not sep or not number.strip().isdigit():
            raise ValueError(f"--capacity takes channel=number pairs, e.g. webchat=4,email=10 (not {item!r})")
        out[channel.strip()] = int(number)
    return out


def cmd_create(args: argparse.Namespace) -> int:
    try:
        agent = msgspec.convert({
            "name": args.name, "role": args.role, "queues": _words(args.queues),
            "supervises": _words(args.supervises), "skills": _words(args.skills),
            "languages": _words(args.languages), "capacity": parse_capacity(args.capacity),
            "timezone": args.timezone,
        }, Agent)
    except (ValueError, msgspec.ValidationError) as exc:
        fail(str(exc))
    config = load(args)
    configure_logging(config)

    async def create(store: Store) -> None:
        await AgentDirectory(store, config.routing).create(agent)

    try:
        code = with_store(config, create)
    except AgentExists as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if code == EXIT_OK:
        capacity = ", ".join(f"{k}={v}" for k, v in agent.capacity.items()) or "none"
        print(f"agent {agent.name} ({agent.role}): queues {', '.join(agent.queues) or 'none'}; capacity {capacity}")
    return code


def cmd_list(args: argparse.Namespace) -> int:
    config = load(args)
    configure_logging(config)

    async def show(store: Store) -> None:
        for a in await AgentDirectory(store, config.routing).everyone():
            load_ = ", ".join(f"{k} {a.load.get(k, 0)}/{v}" for k, v in a.capacity.items()) or "-"
            print(f"{a.name:<20} {a.role:<10} {a.presence:<8} queues {','.join(a.queues) or '-':<20} {load_}")

    return with_store(config, show)


def cmd_delete(args: argparse.Namespace) -> int:
    config = load(args)
    configure_logging(config)
    found: list[bool] = []

    async def delete(store: Store) -> None:
        found.append(await store.agents.delete(args.name))

    code = with_store(config, delete)
    if code == EXIT_OK and not found[0]:
        print(f"error: no agent {args.name!r}", file=sys.stderr)
        return EXIT_FAILED
    return code
