"""Typed application state shared by the gateway's extensions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from connectors.base import Connector
from conversation.service import Core
from conversation.store import Store

if TYPE_CHECKING:
    from gateway.config import Config

CONFIG: web.AppKey[Config] = web.AppKey("config")
STORE: web.AppKey[Store] = web.AppKey("store")
CORE: web.AppKey[Core] = web.AppKey("core")
CONNECTORS: web.AppKey[dict[str, Connector[Any]]] = web.AppKey("connectors")
