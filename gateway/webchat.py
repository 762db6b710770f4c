"""The web chat's HTTP side: sessions, the WebSocket, the HTTP fallback, the widget and the demo.

Routes, per webchat instance:
- ``POST /webchat/{instance}/session``: ``{"identity_token"?: JWT, "visitor_token"?: ...}`` ->
  ``{"visitor_token": ..., "customer_id": ...}``. A visitor token given back renews it for the
  same visitor; an identity token names the visitor after the site's user.
- ``GET /webchat/{instance}/ws?visitor_token=...&cursor=...``: the live socket.
- ``POST /webchat/{instance}/messages`` (a message frame) and ``GET ...?cursor=`` (history after
  the cursor): the fallback when WebSockets cannot connect; ``Authorization: Bearer <token>``.
- ``GET /webchat/{instance}/widget.js`` and ``widget.css``; ``GET /`` is the demo page.

Messages from the widget take the webhooks' durable path (store.record_inbound: dedupe plus the
ingest stream in one round trip); the ingest workers append them, and every open tab sees them
come back through the live hub, as it sees agents' replies once they are sent.

Limits: per visitor (Redis, so a visitor's tabs on several processes share one budget) and per
IP (in process, like the webhooks' flood limit). An over-limit message gets an error frame and
the socket stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources

import msgspec
import structlog
from aiohttp import WSCloseCode, WSMsgType, web
from redis.exceptions import RedisError

from connectors.chat.webchat.connector import WebchatConnector, bearer
from connectors.chat.webchat.frames import (
    CHANNEL,
    FrameError,
    Visibility,
    decode_frame,
    error_frame,
    inbound_message,
    max_frame_bytes,
    message_frame,
    visibility,
)
from connectors.chat.webchat.tokens import TokenError, Visitor, identified_id, new_anonymous_id
from conversation.model import DeliveryStatus, Direction, Event, EventType, Identity, Message
from conversation.store import NotFound, Store, split_message_id
from gateway.appkeys import CONFIG, CONNECTORS, REDIS, STORE
from gateway.errors import error_response
from gateway.live import LiveHub
from gateway.ratelimit import LocalRateLimiter, RateLimiter, client_ip

log = structlog.get_logger("gateway.webchat")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Reads of the HTTP fallback (a widget polling every few seconds) per IP and minute.
HISTORY_READS_PER_MINUTE = 240
PAGE = 100
# Close codes the widget understands: start a new session, or back off.
CLOSE_INVALID_TOKEN = 4401
CLOSE_TOO_MANY = 4429


class SessionRequest(msgspec.Struct, forbid_unknown_fields=True):
    identity_token: str | None = None
    visitor_token: str | None = None


class WebchatRuntime:
    """What the web chat routes share in one process."""

    def __init__(self, store: Store, limiter: RateLimiter) -> None:
        self.store = store
        self.limiter = limiter
        self.local = LocalRateLimiter()
        self.hub = LiveHub(store)
        self.sockets: set[VisitorSocket] = set()
        self.per_visitor: dict[tuple[str, str], int] = {}


WEBCHAT: web.AppKey[WebchatRuntime] = web.AppKey("webchat")


def setup(app: web.Application) -> None:
    instances = {name: c for name, c in app[CONNECTORS].items() if isinstance(c, WebchatConnector)}
    if not instances:
        return
    assets = _assets()
    for name, connector in instances.items():
        base = f"/webchat/{name}"
        app.router.add_post(f"{base}/session", _bind(connector, session))
        app.router.add_route("OPTIONS", f"{base}/session", _bind(connector, preflight))
        app.router.add_get(f"{base}/ws", _bind(connector, websocket))
        app.router.add_post(f"{base}/messages", _bind(connector, post_message))
        app.router.add_get(f"{base}/messages", _bind(connector, history))
        app.router.add_route("OPTIONS", f"{base}/messages", _bind(connector, preflight))
        app.router.add_get(f"{base}/widget.js", _static(assets["widget.js"], "application/javascript"))
        app.router.add_get(f"{base}/widget.css", _static(assets["widget.css"], "text/css"))
    if not any(getattr(r, "canonical", None) == "/" for r in app.router.resources()):
        first = next(iter(instances))
        # The commands on the page name this gateway's own address, not the default one.
        page = (assets["demo.html"].replace(b"{{instance}}", first.encode())
                .replace(b"http://127.0.0.1:8080", app[CONFIG].gateway.public_base_url.encode()))
        app.router.add_get("/", _static(page, "text/html"))

    # Built now (no I/O happens here) because the application's state is frozen once it starts.
    rt = WebchatRuntime(app[STORE], RateLimiter(app[REDIS], app[CONFIG].gateway.key_prefix))
    app[WEBCHAT] = rt

    async def runtime(app: web.Application) -> AsyncIterator[None]:
        for name, connector in instances.items():
            if connector.needs_visitor_key:
                connector.install_visitor_key(await _generated_key(rt.store, name))
        rt.hub.start()
        try:
            yield
        finally:
            await rt.hub.stop()

    async def close_sockets(app: web.Application) -> None:
        # Going away: the widget reconnects (to another process) with its cursor, losing nothing.
        await asyncio.gather(*(s.close(WSCloseCode.GOING_AWAY, b"server shutdown") for s in list(rt.sockets)),
                             return_exceptions=True)

    app.cleanup_ctx.append(runtime)
    app.on_shutdown.append(close_sockets)


async def _generated_key(store: Store, instance: str) -> bytes:
    """The visitor-token key of an instance configured without secrets: random, made once, kept
    in Redis so that every gateway process (and restarts) accept the same tokens."""
    key = f"{store.keys.prefix}:webchat:{instance}:visitor-key"
    await store.redis.set(key, secrets.token_hex(32), nx=True)
    value = await store.redis.get(key)
    assert value is not None
    return bytes.fromhex(value.decode() if isinstance(value, bytes) else str(value))


def _bind(connector: WebchatConnector, handler: Callable[[web.Request, WebchatConnector], Awaitable[web.StreamResponse]]
          ) -> Handler:
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


def masked(visitor_id: str) -> str:
    """A visitor in logs: enough to follow one visitor's lines, not to identify them."""
    return "v#" + hashlib.sha256(visitor_id.encode()).hexdigest()[:10]


# --- CORS and origin --------------------------------------------------------------------------


def _cors(request: web.Request) -> dict[str, str]:
    origin = request.headers.get("Origin")
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}


def _origin_refused(request: web.Request, connector: WebchatConnector) -> web.Response | None:
    if connector.origin_allowed(request.headers.get("Origin")):
        return None
    log.warning("webchat.origin_refused", instance=connector.instance, origin=request.headers.get("Origin"))
    return error_response(403, "origin_not_allowed", "this site is not allowed to use the chat widget "
                                                      "(add its origin to allowed_origins)")


def _with(response: web.Response, headers: dict[str, str]) -> web.Response:
    response.headers.update(headers)
    return response


async def preflight(request: web.Request, connector: WebchatConnector) -> web.StreamResponse:
    refused = _origin_refused(request, connector)
    if refused is not None:
        return refused
    return web.Response(status=204, headers={
        **_cors(request),
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, Content-Type",
        "Access-Control-Max-Age": "600",
    })


def _ip_limited(request: web.Request, connector: WebchatConnector, bucket: str, limit: int) -> float | None:
    allowed, retry_after = request.app[WEBCHAT].local.hit(f"{connector.instance}:{bucket}:{client_ip(request)}",
                                                         limit, 60.0)
    return None if allowed else retry_after


# --- sessions ---------------------------------------------------------------------------------


async def session(request: web.Request, connector: WebchatConnector) -> web.StreamResponse:
    refused = _origin_refused(request, connector)
    if refused is not None:
        return refused
    cors = _cors(request)
    wait = _ip_limited(request, connector, "session", connector.settings.sessions_per_minute_per_ip)
    if wait is not None:
        return _with(error_response(429, "rate_limited", "too many sessions from this address; retry later",
                                    retry_after=wait), cors)
    raw = await request.read()
    try:
        body = msgspec.json.decode(raw, type=SessionRequest) if raw.strip() else SessionRequest()
    except msgspec.DecodeError as exc:
        return _with(error_response(400, "invalid_request", f"the body is not a valid session request: {exc}"), cors)
    store = request.app[STORE]
    email: str | None = None
    if body.identity_token:
        try:
            identity = connector.verify_identity_token(body.identity_token)
        except TokenError as exc:
            # Nothing of a refused token is used: its claims are an attacker's words.
            log.warning("webchat.identity_refused", instance=connector.instance, reason=str(exc))
            return _with(error_response(403, "invalid_identity_token", "the identity token does not verify"), cors)
        visitor = Visitor(id=identified_id(connector.instance, identity.sub), name=identity.name)
        email = identity.email
    else:
        visitor = Visitor(id=new_anonymous_id())
        if body.visitor_token:
            with contextlib.suppress(TokenError):  # expired or foreign: a new anonymous visitor
                old = connector.verify_visitor_token(body.visitor_token)
                visitor = Visitor(id=old.id, name=old.name)
    try:
        customer_id = await _customer_for(store, visitor.id, email)
    except RedisError:
        return _with(error_response(503, "unavailable", "storage is unavailable; retry later", retry_after=5), cors)
    log.info("webchat.session", instance=connector.instance, visitor=masked(visitor.id),
             identified=bool(body.identity_token), linked_email=email is not None)
    return web.json_response({"visitor_token": connector.issue_visitor_token(visitor), "customer_id": customer_id},
                             headers=cors)


async def _customer_for(store: Store, visitor_id: str, email: str | None) -> str:
    """The visitor's customer. Only a verified email reaches here: it links the visitor to the
    customer who has that email, or gives a new customer both identities."""
    webchat = Identity(CHANNEL, visitor_id)
    known = await store.known_customer(webchat)
    if email is None:
        return known or await store.resolve_customer(webchat)
    email_identity = Identity("email", email)
    owner = await store.known_customer(email_identity)
    if known is not None:
        if owner is None:
            await store.link_identity(email_identity, known)
        elif owner != known:
            await store.suggest_merge(webchat, owner)  # two customers already: an agent decides
        return known
    if owner is not None:
        return await store.link_identity(webchat, owner)
    cid = await store.resolve_customer(webchat)
    await store.link_identity(email_identity, cid)
    return cid


async def _visitor_customer(store: Store, visitor: Visitor) -> str:
    webchat = Identity(CHANNEL, visitor.id)
    return await store.known_customer(webchat) or await store.resolve_customer(webchat)


# --- what the widget sees ---------------------------------------------------------------------


async def visible_after(store: Store, cid: str, instance: str, after: int, *, limit: int = 500
                        ) -> tuple[list[Message], int]:
    """The widget's messages after index `after`, oldest first, and the index reached.

    Stops at an agent's reply that is not sent yet, so that nothing after it is delivered first
    and a client's cursor can never pass over it.
    """
    shown: list[Message] = []
    while len(shown) < limit:
        try:
            page, more = await store.list_messages(cid, after=after, limit=PAGE)
        except NotFound:  # no thread yet: the visitor has not written
            return shown, after
        for message in page:
            seen = visibility(message, instance)
            if seen is Visibility.HOLD:
                return shown, after
            if seen is Visibility.SHOW:
                shown.append(message)
            after = split_message_id(message.id)[1]
        if more is None:
            break
    return shown, after


def _cursor_index(cid: str, cursor: str | None) -> int | None:
    """The timeline index of the client's cursor; None when it is not a message of this thread."""
    if not cursor:
        return -1
    try:
        owner, seq = split_message_id(cursor)
    except NotFound:
        return None
    return seq if owner == cid else None


async def _mark_delivered(store: Store, messages: list[Message]) -> None:
    """An agent's reply that reached an open widget is delivered: agents see it in the inbox."""
    events = []
    for m in messages:
        if m.direction is Direction.OUTBOUND and m.status is DeliveryStatus.SENT:
            changed, _ = await store.update_delivery(m.id, DeliveryStatus.DELIVERED)
            if changed:
                events.append(Event(EventType.MESSAGE_STATUS, m.conversation_id, f"{m.id}:delivered",
                                    message_id=m.id, status="delivered", at_ms=int(time.time() * 1000)))
    await store.publish(events)


# --- inbound from the visitor -----------------------------------------------------------------


async def accept(request: web.Request, connector: WebchatConnector, visitor: Visitor, raw: bytes | str
                 ) -> tuple[str, bool]:
    """Check limits and record one message frame durably: (client_id, was a duplicate).

    Raises FrameError (size, shape, rate, storage) with the code the visitor is told.
    """
    settings = connector.settings
    frame = decode_frame(raw, max_chars=settings.max_message_chars)
    rt = request.app[WEBCHAT]
    allowed, wait = rt.local.hit(f"{connector.instance}:msg-ip:{client_ip(request)}",
                                 settings.messages_per_minute_per_ip, 60.0)
    if allowed:
        try:
            allowed, wait = await rt.limiter.hit(f"webchat:{connector.instance}:v:{visitor.id}",
                                                 settings.messages_per_minute, 60.0)
        except RedisError:
            raise FrameError("unavailable", "the chat is unavailable; retry shortly", status=503,
                             client_id=frame.client_id, retry_after=5) from None
    if not allowed:
        log.info("webchat.rate_limited", instance=connector.instance, visitor=masked(visitor.id))
        raise FrameError("rate_limited", f"too many messages; wait {max(1, round(wait))} s before sending more",
                         status=429, client_id=frame.client_id, retry_after=max(1, round(wait)))
    message = inbound_message(connector.instance, visitor, frame, int(time.time() * 1000))
    try:
        ids = await request.app[STORE].record_inbound([message])
    except RedisError:
        raise FrameError("unavailable", "the chat is unavailable; retry shortly", status=503,
                         client_id=frame.client_id, retry_after=5) from None
    return frame.client_id, ids[0] is None


def _visitor(request: web.Request, connector: WebchatConnector, token: str | None) -> Visitor | web.Response:
    try:
        return connector.verify_visitor_token(token)
    except TokenError as exc:
        return _with(error_response(401, "invalid_token", f"{exc}; start a new session"), _cors(request))


async def post_message(request: web.Request, connector: WebchatConnector) -> web.StreamResponse:
    refused = _origin_refused(request, connector)
    if refused is not None:
        return refused
    visitor = _visitor(request, connector, bearer(request.headers.get("Authorization")))
    if isinstance(visitor, web.Response):
        return visitor
    cors = _cors(request)
    try:
        raw = await request.read()
        client_id, duplicate = await accept(request, connector, visitor, raw)
    except web.HTTPRequestEntityTooLarge:
        return _with(error_response(413, "message_too_long", "the request is too large"), cors)
    except FrameError as exc:
        return _with(error_response(exc.status, exc.code, exc.message, retry_after=exc.retry_after), cors)
    return web.json_response({"client_id": client_id, "duplicate": duplicate}, status=202, headers=cors)


async def history(request: web.Request, connector: WebchatConnector) -> web.StreamResponse:
    refused = _origin_refused(request, connector)
    if refused is not None:
        return refused
    cors = _cors(request)
    wait = _ip_limited(request, connector, "history", HISTORY_READS_PER_MINUTE)
    if wait is not None:
        return _with(error_response(429, "rate_limited", "too many requests; retry later", retry_after=wait), cors)
    visitor = _visitor(request, connector, bearer(request.headers.get("Authorization")))
    if isinstance(visitor, web.Response):
        return visitor
    store = request.app[STORE]
    try:
        cid = await _visitor_customer(store, visitor)
        after = _cursor_index(cid, request.query.get("cursor"))
        if after is None:
            return _with(error_response(400, "invalid_cursor", "cursor is not a message of this conversation"), cors)
        items, reached = await visible_after(store, cid, connector.instance, after)
        await _mark_delivered(store, items)
    except RedisError:
        return _with(error_response(503, "unavailable", "storage is unavailable; retry later", retry_after=5), cors)
    # next_cursor may be past messages the widget never shows (notes, other channels), so a
    # poller does not read them again; it is never past one it has not been given.
    next_cursor = f"{cid}.{reached}" if reached >= 0 else request.query.get("cursor")
    return web.Response(body=msgspec.json.encode({"items": items, "next_cursor": next_cursor}),
                        content_type="application/json", headers=cors)


# --- the WebSocket ----------------------------------------------------------------------------


class VisitorSocket:
    """One open tab: a pump task sends the thread after the socket's cursor whenever woken."""

    def __init__(self, ws: web.WebSocketResponse, store: Store, instance: str, cid: str, after: int) -> None:
        self.ws = ws
        self.store = store
        self.instance = instance
        self.cid = cid
        self.after = after
        self._woken = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._woken.set()

    def start(self) -> None:
        self.wake()  # the backlog after the client's cursor first
        self._task = asyncio.create_task(self._pump(), name=f"webchat-socket-{self.cid}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # _pump logged its own failure
                await self._task

    async def send(self, frame: bytes) -> None:
        async with self._send_lock:  # the reader's error frames and the pump's messages interleave
            await self.ws.send_str(frame.decode())

    async def close(self, code: int, message: bytes) -> None:
        await self.ws.close(code=code, message=message)

    async def _pump(self) -> None:
        while not self.ws.closed:
            await self._woken.wait()
            self._woken.clear()
            try:
                messages, self.after = await visible_after(self.store, self.cid, self.instance, self.after)
                for m in messages:
                    await self.send(message_frame(m))
                await _mark_delivered(self.store, messages)
            except RedisError as exc:
                log.warning("webchat.pump_failed", error=str(exc))
                await asyncio.sleep(1)
                self.wake()
            except ConnectionError:
                return
            except Exception:
                # Closing makes the widget reconnect with its cursor: nothing is lost, and a bug
                # here cannot leave a tab silently deaf.
                log.exception("webchat.pump_crashed")
                with contextlib.suppress(Exception):
                    await self.close(WSCloseCode.INTERNAL_ERROR, b"internal error")
                return


async def websocket(request: web.Request, connector: WebchatConnector) -> web.StreamResponse:
    refused = _origin_refused(request, connector)
    if refused is not None:
        return refused
    settings = connector.settings
    wait = _ip_limited(request, connector, "session", settings.sessions_per_minute_per_ip)
    if wait is not None:
        return error_response(429, "rate_limited", "too many connections from this address; retry later",
                              retry_after=wait)
    ws = web.WebSocketResponse(heartbeat=25.0, max_msg_size=4 * max_frame_bytes(settings.max_message_chars))
    await ws.prepare(request)
    try:
        visitor = connector.verify_visitor_token(request.query.get("visitor_token"))
    except TokenError as exc:
        await ws.send_str(error_frame("invalid_token", f"{exc}; start a new session").decode())
        await ws.close(code=CLOSE_INVALID_TOKEN, message=b"invalid visitor token")
        return ws
    rt = request.app[WEBCHAT]
    store = request.app[STORE]
    slot = (connector.instance, visitor.id)
    if rt.per_visitor.get(slot, 0) >= settings.max_sockets_per_visitor:
        await ws.send_str(error_frame("too_many_connections", "too many open chat windows; close some").decode())
        await ws.close(code=CLOSE_TOO_MANY, message=b"too many connections")
        return ws
    try:
        cid = await _visitor_customer(store, visitor)
    except RedisError:
        await ws.send_str(error_frame("unavailable", "the chat is unavailable; retry shortly").decode())
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"unavailable")
        return ws
    after = _cursor_index(cid, request.query.get("cursor"))
    sock = VisitorSocket(ws, store, connector.instance, cid, -1 if after is None else after)
    if after is None:
        # A cursor from another thread (e.g. storage was reset): resend it all; the client
        # dedupes by id, so nothing shows twice.
        await sock.send(error_frame("invalid_cursor", "cursor is not a message of this conversation; "
                                    "sending the whole conversation"))
    rt.per_visitor[slot] = rt.per_visitor.get(slot, 0) + 1
    rt.sockets.add(sock)
    # Subscribe before the first read: an event in between only causes one more read.
    rt.hub.subscribe(cid, sock)
    sock.start()
    log.info("webchat.connected", instance=connector.instance, visitor=masked(visitor.id))
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await _on_frame(request, connector, visitor, sock, msg.data)
            elif msg.type is WSMsgType.BINARY:
                await sock.send(error_frame("unsupported_frame", "send JSON text frames"))
            elif msg.type is WSMsgType.ERROR:
                break
    finally:
        rt.hub.unsubscribe(cid, sock)
        rt.sockets.discard(sock)
        left = rt.per_visitor.get(slot, 1) - 1
        if left > 0:
            rt.per_visitor[slot] = left
        else:
            rt.per_visitor.pop(slot, None)
        await sock.stop()
    return ws


async def _on_frame(request: web.Request, connector: WebchatConnector, visitor: Visitor, sock: VisitorSocket,
                    data: str) -> None:
    try:
        await accept(request, connector, visitor, data)
    except FrameError as exc:
        # The socket stays open: the visitor is told which message was refused and why.
        await sock.send(error_frame(exc.code, exc.message, client_id=exc.client_id, retry_after=exc.retry_after))


__all__ = ["LiveHub", "WebchatRuntime", "setup", "visible_after"]
