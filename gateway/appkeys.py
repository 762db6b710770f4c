"""Typed application state shared by the gateway's extensions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from aiohttp import web

from connectors.base import Connector
from conversation.store import Store

if TYPE_CHECKING:
    from gateway.config import Config

CONFIG: web.AppKey[Config] = web.AppKey("config")
REDIS: web.AppKey[aioredis.Redis] = web.AppKey("redis")
STORE: web.AppKey[Store] = web.AppKey("store")
CONNECTORS: web.AppKey[dict[str, Connector[Any]]] = web.AppKey("connectors")
