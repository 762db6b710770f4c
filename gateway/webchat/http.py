"""The web chat over plain HTTP: sessions, posting a message, reading the thread (the fallback
when WebSockets cannot connect), and what both ways share: limits, the durable record of a
visitor's message, and what of the thread a widget may see.

Limits: per visitor (Redis, so a visitor's tabs on several processes share one budget) and per
IP (in process, like the webhooks' flood limit). An over-limit message gets an error, and a
socket stays open.
"""

from __future__ import annotations

import contextlib
import hashlib
import time

import msgspec
import structlog
from aiohttp import web

from connectors.chat.webchat.connector import bearer
from connectors.chat.webchat.frames import CHANNEL, FrameError, Visibility, decode_frame, inbound_message, visibility
from connectors.chat.webchat.tokens import TokenError, Visitor, identified_id, new_anonymous_id
from conversation.errors import NotFound, StoreError
from conversation.ids import message_id, split_message_id
from conversation.model import Identity, Message
from conversation.store import Store
from gateway.errors import error_response
from gateway.ratelimit import client_ip
from gateway.webchat.runtime import WEBCHAT, VisitorChat

log = structlog.get_logger("gateway.webchat")

# Reads of the HTTP fallback (a widget polling every few seconds) per IP and minute.
HISTORY_READS_PER_MINUTE = 240
PAGE = 100


class SessionRequest(msgspec.Struct, forbid_unknown_fields=True):
    identity_token: str | None = None
    visitor_token: str | None = None


def masked(visitor_id: str) -> str:
    """A visitor in logs: enough to follow one visitor's lines, not to identify them."""
    return "v#" + hashlib.sha256(visitor_id.encode()).hexdigest()[:10]


# --- CORS and origin --------------------------------------------------------------------------


def cors(request: web.Request) -> dict[str, str]:
    origin = request.headers.get("Origin")
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}


def origin_refused(request: web.Request, connector: VisitorChat) -> web.Response | None:
    if connector.origin_allowed(request.headers.get("Origin")):
        return None
    log.warning("webchat.origin_refused", instance=connector.instance, origin=request.headers.get("Origin"))
    return error_response(403, "origin_not_allowed", "this site is not allowed to use the chat widget "
                                                      "(add its origin to allowed_origins)")


def _with(response: web.Response, headers: dict[str, str]) -> web.Response:
    response.headers.update(headers)
    return response


async def preflight(request: web.Request, connector: VisitorChat) -> web.StreamResponse:
    refused = origin_refused(request, connector)
    if refused is not None:
        return refused
    return web.Response(status=204, headers={
        **cors(request),
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, Content-Type",
        "Access-Control-Max-Age": "600",
    })


def ip_limited(request: web.Request, connector: VisitorChat, bucket: str, limit: int) -> float | None:
    allowed, retry_after = request.app[WEBCHAT].local.hit(f"{connector.instance}:{bucket}:{client_ip(request)}",
                                                         limit, 60.0)
    return None if allowed else retry_after


# --- sessions ---------------------------------------------------------------------------------


async def session(request: web.Request, connector: VisitorChat) -> web.StreamResponse:
    refused = origin_refused(request, connector)
    if refused is not None:
        return refused
    headers = cors(request)
    wait = ip_limited(request, connector, "session", connector.settings.sessions_per_minute_per_ip)
    if wait is not None:
        return _with(error_response(429, "rate_limited", "too many sessions from this address; retry later",
                                    retry_after=wait), headers)
    raw = await request.read()
    try:
        body = msgspec.json.decode(raw, type=SessionRequest) if raw.strip() else SessionRequest()
    except msgspec.DecodeError as exc:
        return _with(error_response(400, "invalid_request", f"the body is not a valid session request: {exc}"),
                     headers)
    email: str | None = None
    if body.identity_token:
        try:
            identity = connector.verify_identity_token(body.identity_token)
        except TokenError as exc:
            # Nothing of a refused token is used: its claims are an attacker's words.
            log.warning("webchat.identity_refused", instance=connector.instance, reason=str(exc))
            return _with(error_response(403, "invalid_identity_token", "the identity token does not verify"),
                         headers)
        visitor = Visitor(id=identified_id(connector.instance, identity.sub), name=identity.name)
        email = identity.email
    else:
        visitor = Visitor(id=new_anonymous_id())
        if body.visitor_token:
            with contextlib.suppress(TokenError):  # expired or foreign: a new anonymous visitor
                old = connector.verify_visitor_token(body.visitor_token)
                visitor = Visitor(id=old.id, name=old.name)
    try:
        customer_id = await request.app[WEBCHAT].core.identities.session_customer(Identity(CHANNEL, visitor.id),
                                                                                  email)
    except StoreError:
        return _with(error_response(503, "unavailable", "storage is unavailable; retry later", retry_after=5),
                     headers)
    log.info("webchat.session", instance=connector.instance, visitor=masked(visitor.id),
             identified=bool(body.identity_token), linked_email=email is not None)
    return web.json_response({"visitor_token": connector.issue_visitor_token(visitor), "customer_id": customer_id},
                             headers=headers)


async def visitor_customer(store: Store, visitor: Visitor) -> str:
    return await store.identities.resolve(Identity(CHANNEL, visitor.id))


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
            page, more = await store.timeline.list_messages(cid, after=after, limit=PAGE)
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


def cursor_index(cid: str, cursor: str | None) -> int | None:
    """The timeline index of the client's cursor; None when it is not a message of this thread."""
    if not cursor:
        return -1
    try:
        owner, seq = split_message_id(cursor)
    except NotFound:
        return None
    return seq if owner == cid else None


# --- inbound from the visitor -----------------------------------------------------------------


async def accept(request: web.Request, connector: VisitorChat, visitor: Visitor, raw: bytes | str
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
            allowed, wait = await rt.store.rate_limits.hit(f"webchat:{connector.instance}:v:{visitor.id}",
                                                           settings.messages_per_minute, 60.0)
        except StoreError:
            raise FrameError("unavailable", "the chat is unavailable; retry shortly", status=503,
                             client_id=frame.client_id, retry_after=5) from None
    if not allowed:
        log.info("webchat.rate_limited", instance=connector.instance, visitor=masked(visitor.id))
        raise FrameError("rate_limited", f"too many messages; wait {max(1, round(wait))} s before sending more",
                         status=429, client_id=frame.client_id, retry_after=max(1, round(wait)))
    message = inbound_message(connector.instance, visitor, frame, int(time.time() * 1000),
                              request.headers.get("Accept-Language"))
    try:
        ids = await rt.store.ingest.record([message])
    except StoreError:
        raise FrameError("unavailable", "the chat is unavailable; retry shortly", status=503,
                         client_id=frame.client_id, retry_after=5) from None
    return frame.client_id, ids[0] is None


def _visitor(request: web.Request, connector: VisitorChat, token: str | None) -> Visitor | web.Response:
    try:
        return connector.verify_visitor_token(token)
    except TokenError as exc:
        return _with(error_response(401, "invalid_token", f"{exc}; start a new session"), cors(request))


async def post_message(request: web.Request, connector: VisitorChat) -> web.StreamResponse:
    refused = origin_refused(request, connector)
    if refused is not None:
        return refused
    visitor = _visitor(request, connector, bearer(request.headers.get("Authorization")))
    if isinstance(visitor, web.Response):
        return visitor
    headers = cors(request)
    try:
        raw = await request.read()
        client_id, duplicate = await accept(request, connector, visitor, raw)
    except web.HTTPRequestEntityTooLarge:
        return _with(error_response(413, "message_too_long", "the request is too large"), headers)
    except FrameError as exc:
        return _with(error_response(exc.status, exc.code, exc.message, retry_after=exc.retry_after), headers)
    return web.json_response({"client_id": client_id, "duplicate": duplicate}, status=202, headers=headers)


async def history(request: web.Request, connector: VisitorChat) -> web.StreamResponse:
    refused = origin_refused(request, connector)
    if refused is not None:
        return refused
    headers = cors(request)
    wait = ip_limited(request, connector, "history", HISTORY_READS_PER_MINUTE)
    if wait is not None:
        return _with(error_response(429, "rate_limited", "too many requests; retry later", retry_after=wait),
                     headers)
    visitor = _visitor(request, connector, bearer(request.headers.get("Authorization")))
    if isinstance(visitor, web.Response):
        return visitor
    rt = request.app[WEBCHAT]
    try:
        cid = await visitor_customer(rt.store, visitor)
        after = cursor_index(cid, request.query.get("cursor"))
        if after is None:
            return _with(error_response(400, "invalid_cursor", "cursor is not a message of this conversation"),
                         headers)
        items, reached = await visible_after(rt.store, cid, connector.instance, after)
        await rt.core.deliveries.shown(items)
    except StoreError:
        return _with(error_response(503, "unavailable", "storage is unavailable; retry later", retry_after=5),
                     headers)
    # next_cursor may be past messages the widget never shows (notes, other channels), so a
    # poller does not read them again; it is never past one it has not been given.
    next_cursor = message_id(cid, reached) if reached >= 0 else request.query.get("cursor")
    return web.Response(body=msgspec.json.encode({"items": items, "next_cursor": next_cursor}),
                        content_type="application/json", headers=headers)


__all__ = ["accept", "cursor_index", "history", "masked", "post_message", "preflight", "session", "visible_after",
           "visitor_customer"]
