"""The web chat's WebSocket: one open tab, fed the thread after its cursor whenever woken.

A frame too large to be a message (up to HARD_FRAME_LIMIT) gets an error frame and the socket
stays open; only a frame beyond that limit closes it (1009), because reading it would let one
visitor make the gateway buffer without bound.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from connectors.chat.webchat.frames import FrameError, error_frame, message_frame
from connectors.chat.webchat.tokens import TokenError, Visitor
from conversation.errors import StoreError
from conversation.service import Core
from gateway.errors import error_response
from gateway.webchat.http import (
    accept,
    cursor_index,
    ip_limited,
    masked,
    origin_refused,
    visible_after,
    visitor_customer,
)
from gateway.webchat.runtime import WEBCHAT, VisitorChat

log = structlog.get_logger("gateway.webchat")

# Close codes the widget understands: start a new session, or back off.
CLOSE_INVALID_TOKEN = 4401
CLOSE_TOO_MANY = 4429
# The largest frame read at all; anything up to it that is not a valid message gets an error frame.
HARD_FRAME_LIMIT = 1024 * 1024

__all__ = ["HARD_FRAME_LIMIT", "VisitorSocket", "websocket"]


class VisitorSocket:
    """One open tab: a pump task sends the thread after the socket's cursor whenever woken."""

    def __init__(self, ws: web.WebSocketResponse, core: Core, instance: str, cid: str, after: int) -> None:
        self.ws = ws
        self.core = core
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
                messages, self.after = await visible_after(self.core.store, self.cid, self.instance, self.after)
                for m in messages:
                    await self.send(message_frame(m))
                await self.core.deliveries.shown(messages)
            except StoreError as exc:
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


async def websocket(request: web.Request, connector: VisitorChat) -> web.StreamResponse:
    refused = origin_refused(request, connector)
    if refused is not None:
        return refused
    settings = connector.settings
    wait = ip_limited(request, connector, "session", settings.sessions_per_minute_per_ip)
    if wait is not None:
        return error_response(429, "rate_limited", "too many connections from this address; retry later",
                              retry_after=wait)
    ws = web.WebSocketResponse(heartbeat=25.0, max_msg_size=HARD_FRAME_LIMIT)
    await ws.prepare(request)
    try:
        visitor = connector.verify_visitor_token(request.query.get("visitor_token"))
    except TokenError as exc:
        await ws.send_str(error_frame("invalid_token", f"{exc}; start a new session").decode())
        await ws.close(code=CLOSE_INVALID_TOKEN, message=b"invalid visitor token")
        return ws
    rt = request.app[WEBCHAT]
    slot = (connector.instance, visitor.id)
    if rt.per_visitor.get(slot, 0) >= settings.max_sockets_per_visitor:
        await ws.send_str(error_frame("too_many_connections", "too many open chat windows; close some").decode())
        await ws.close(code=CLOSE_TOO_MANY, message=b"too many connections")
        return ws
    try:
        cid = await visitor_customer(rt.store, visitor)
    except StoreError:
        await ws.send_str(error_frame("unavailable", "the chat is unavailable; retry shortly").decode())
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"unavailable")
        return ws
    after = cursor_index(cid, request.query.get("cursor"))
    sock = VisitorSocket(ws, rt.core, connector.instance, cid, -1 if after is None else after)
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


async def _on_frame(request: web.Request, connector: VisitorChat, visitor: Visitor, sock: VisitorSocket,
                    data: str) -> None:
    try:
        await accept(request, connector, visitor, data)
    except FrameError as exc:
        # The socket stays open: the visitor is told which message was refused and why.
        await sock.send(error_frame(exc.code, exc.message, client_id=exc.client_id, retry_after=exc.retry_after))
