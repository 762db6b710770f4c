"""Ways in beyond webhooks that connectors declare (`Connector.transports`), mounted by name.

A connector says what it needs as data (the web chat: "webchat", its sessions, WebSocket, HTTP
fallback and widget files); the gateway owns the aiohttp side of each transport and mounts it
for every instance that declares it, without knowing the connector's class. A name the gateway
does not serve stops the start with a clear error rather than leaving an instance unreachable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from connectors.base import Connector
from gateway import webchat
from gateway.appkeys import CONNECTORS
from gateway.config import ConfigError

Mount = Callable[[web.Application, str, Connector[Any]], None]

TRANSPORTS: dict[str, Mount] = {
    "webchat": webchat.mount,
}


def setup(app: web.Application) -> None:
    errors = []
    for instance, connector in app[CONNECTORS].items():
        for name in connector.transports:
            mount = TRANSPORTS.get(name)
            if mount is None:
                errors.append(f"connectors.{instance}: kind {connector.kind!r} needs transport {name!r}, which "
                              f"this gateway does not serve (it serves: {', '.join(sorted(TRANSPORTS))})")
                continue
            mount(app, instance, connector)
    if errors:
        raise ConfigError(errors)


__all__ = ["TRANSPORTS", "setup"]
