"""The web chat's HTTP side: sessions, the WebSocket, the HTTP fallback, the widget and the demo.

Routes, per instance of a connector declaring the "webchat" transport:
- ``POST /webchat/{instance}/session``: ``{"identity_token"?: JWT, "visitor_token"?: ...}`` ->
  ``{"visitor_token": ..., "customer_id": ...}``. A visitor token given back renews it for the
  same visitor; an identity token names the visitor after the site's user.
- ``GET /webchat/{instance}/ws?visitor_token=...&cursor=...``: the live socket (socket.py).
- ``POST /webchat/{instance}/messages`` (a message frame) and ``GET ...?cursor=`` (history after
  the cursor): the fallback when WebSockets cannot connect; ``Authorization: Bearer <token>``.
- ``GET /webchat/{instance}/widget.js`` and ``widget.css``; ``GET /`` is the demo page.

Messages from the widget take the webhooks' durable path (dedupe plus the ingest stream in one
round trip); the ingest workers append them, and every open tab sees them come back through the
live hub, as it sees agents' replies once they are sent.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import WSCloseCode, web

from connectors.base import Connector
from gateway.appkeys import CONFIG, CORE
from gateway.config import ConfigError
from gateway.webchat import http, socket
from gateway.webchat.runtime import WEBCHAT, VisitorChat, WebchatRuntime

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def mount(app: web.Application, instance: str, connector: Connector[Any]) -> None:
    """Serve the web chat for one instance (gateway.transports calls this)."""
    if not isinstance(connector, VisitorChat):
        raise ConfigError(f"connectors.{instance}: kind {connector.kind!r} declares the webchat transport but "
                          "lacks what it needs (visitor tokens, origins, limits)")
    rt = _runtime(app)
    rt.instances[instance] = connector
    assets = _assets()
    base = f"/webchat/{instance}"
    app.router.add_post(f"{base}/session", _bind(connector, http.session))
    app.router.add_route("OPTIONS", f"{base}/session", _bind(connector, http.preflight))
    app.router.add_get(f"{base}/ws", _bind(connector, socket.websocket))
    app.router.add_post(f"{base}/messages", _bind(connector, http.post_message))
    app.router.add_get(f"{base}/messages", _bind(connector, http.history))
    app.router.add_route("OPTIONS", f"{base}/messages", _bind(connector, http.preflight))
    app.router.add_get(f"{base}/widget.js", _static(assets["widget.js"], "application/javascript"))
    app.router.add_get(f"{base}/widget.css", _static(assets["widget.css"], "text/css"))
    if not any(getattr(r, "canonical", None) == "/" for r in app.router.resources()):
        # The commands on the page name this gateway's own address, not the default one.
        page = (assets["demo.html"].replace(b"{{instance}}", instance.encode())
                .replace(b"http://127.0.0.1:8080", app[CONFIG].gateway.public_base_url.encode()))
        app.router.add_get("/", _static(page, "text/html"))


def _runtime(app: web.Application) -> WebchatRuntime:
    """The process's one runtime, made with the first instance (the app is not frozen yet)."""
    if WEBCHAT in app:
        return app[WEBCHAT]
    rt = app[WEBCHAT] = WebchatRuntime(app[CORE])

    async def running(app: web.Application) -> AsyncIterator[None]:
        for name, connector in rt.instances.items():
            if connector.needs_visitor_key:
                connector.install_visitor_key(await rt.store.state.generated_key(name, "visitor-key"))
        rt.hub.start()
        try:
            yield
        finally:
            await rt.hub.stop()

    async def close_sockets(app: web.Application) -> None:
        # Going away: the widget reconnects (to another process) with its cursor, losing nothing.
        await asyncio.gather(*(s.close(WSCloseCode.GOING_AWAY, b"server shutdown")
                               for s in list(rt.sockets) if isinstance(s, socket.VisitorSocket)),
                             return_exceptions=True)

    app.cleanup_ctx.append(running)
    app.on_shutdown.append(close_sockets)
    return rt


def _bind(connector: VisitorChat,
          handler: Callable[[web.Request, VisitorChat], Awaitable[web.StreamResponse]]) -> Handler:
    async def bound(request: web.Request) -> web.StreamResponse:
        return await handler(request, connector)

    return bound


def _assets() -> dict[str, bytes]:
    folder = resources.files("connectors.chat.webchat") / "static"
    return {name: (folder / name).read_bytes() for name in ("widget.js", "widget.css", "demo.html")}


def _static(body: bytes, content_type: str) -> Handler:
    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'

    async def serve(request: web.Request) -> web.StreamResponse:
        headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)

    return serve


__all__ = ["WEBCHAT", "WebchatRuntime", "mount"]
