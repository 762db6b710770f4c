"""Conversations and their messages: the agent's inbox."""

from __future__ import annotations

import time

from aiohttp import web

from conversation.model import Conversation, Event, EventType, ThreadStatus
from conversation.store import NotFound, Store, ThreadState, message_id, split_message_id
from gateway import outbox
from gateway.api.errors import invalid_parameter
from gateway.api.http import (
    MAX_IDEMPOTENCY_KEY,
    allow_query,
    json_response,
    principal,
    query_choice,
    query_limit,
    read_json,
    root_app,
)
from gateway.api.schemas import AssignRequest, ConversationPage, MessagePage, ReplyRequest, StatusRequest
from gateway.appkeys import STORE
from gateway.auth import Forbidden, Role

routes = web.RouteTableDef()

STATUSES = [s.value for s in ThreadStatus]


@routes.get("/conversations")
async def list_conversations(request: web.Request) -> web.Response:
    allow_query(request, "queue", "status", "assignee", "cursor", "limit")
    me = principal(request)
    assignee = request.query.get("assignee") or None
    if assignee == "me":
        assignee = me.name
    status = query_choice(request, "status", STATUSES)
    limit = query_limit(request)
    try:
        items, cursor = await request.config_dict[STORE].list_conversations(
            status=status,
            queue=request.query.get("queue") or None,
            assignee=assignee,
            cursor=request.query.get("cursor") or None,
            limit=limit,
        )
    except ValueError:
        raise invalid_parameter("cursor is not one this API gave out") from None
    return json_response(ConversationPage(items=items, next_cursor=cursor))


@routes.get("/conversations/{id}")
async def get_conversation(request: web.Request) -> web.Response:
    allow_query(request)
    return json_response(await request.config_dict[STORE].get_conversation(request.match_info["id"]))


@routes.get("/conversations/{id}/messages")
async def list_messages(request: web.Request) -> web.Response:
    allow_query(request, "cursor", "limit")
    cid = request.match_info["id"]
    limit = query_limit(request)
    after = -1
    if cursor := request.query.get("cursor"):
        # The cursor is the id of the last message seen; the store pages by its index.
        try:
            cursor_cid, after = split_message_id(cursor)
        except NotFound:
            cursor_cid = ""
        if cursor_cid != cid:
            raise invalid_parameter("cursor is not a message of this conversation")
    items, last = await request.config_dict[STORE].list_messages(cid, after=after, limit=limit)
    return json_response(MessagePage(items=items, next_cursor=None if last is None else message_id(cid, last)))


@routes.post("/conversations/{id}/messages")
async def post_message(request: web.Request) -> web.Response:
    allow_query(request)
    body = await read_json(request, ReplyRequest)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise invalid_parameter(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    message = await outbox.queue_reply(
        root_app(request),
        request.match_info["id"],
        text=body.text,
        instance=body.instance,
        private=body.private,
        author=principal(request).name,
        idempotency_key=key,
        attachments=body.attachments,
    )
    return json_response(message, status=202)


@routes.post("/conversations/{id}/assign")
async def assign(request: web.Request) -> web.Response:
    allow_query(request)
    cid = request.match_info["id"]
    body = await read_json(request, AssignRequest)
    me = principal(request)
    store = request.config_dict[STORE]
    target = me.name if body.assignee == "me" else body.assignee
    if not me.can(Role.SUPERVISOR):
        current = (await store.get_conversation(cid)).assignee
        if target is not None and target != me.name:
            raise Forbidden("agents may assign conversations only to themselves")
        if current not in (None, me.name):
            raise Forbidden(f"assigned to {current}; a supervisor can reassign it")
    state = await store.update_thread(cid, assignee=target)
    return json_response(await _changed(store, state))


@routes.post("/conversations/{id}/status")
async def set_status(request: web.Request) -> web.Response:
    allow_query(request)
    body = await read_json(request, StatusRequest)
    store = request.config_dict[STORE]
    state = await store.update_thread(request.match_info["id"], status=body.status.value)
    return json_response(await _changed(store, state))


async def _changed(store: Store, state: ThreadState) -> Conversation:
    """Make a thread change visible: in the listings, to live views, and in the answer."""
    await store.reindex([state])
    await store.publish([Event(
        EventType.THREAD_CHANGED, state.customer_id, f"{state.customer_id}:v{state.version}",
        status=state.status, at_ms=int(time.time() * 1000),
    )])
    return await store.get_conversation(state.customer_id)
