"""Conversations and their messages: the agent's inbox."""

from __future__ import annotations

import msgspec
from aiohttp import web
from msgspec import UnsetType

from conversation.activity import agent
from conversation.errors import NotAllowed, NotFound
from conversation.ids import message_id, split_message_id
from conversation.model import Template, ThreadStatus
from gateway.api.errors import invalid_body, invalid_parameter
from gateway.api.http import (
    MAX_IDEMPOTENCY_KEY,
    accept_language,
    allow_query,
    json_response,
    principal,
    query_choice,
    query_limit,
    read_json,
    scope,
    seen,
)
from gateway.api.schemas import (
    AssignRequest,
    ConversationPage,
    MessagePage,
    ReplyAccepted,
    ReplyRequest,
    StatusRequest,
    TransferRequest,
)
from gateway.appkeys import CORE, STORE
from gateway.auth import Role

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
    queue = request.query.get("queue") or None
    allowed = await scope(request)
    if queue is not None and not allowed.allows_queue(queue) and assignee != me.name:
        raise NotAllowed(f"queue {queue!r} is not one of yours")
    try:
        items, cursor = await request.config_dict[STORE].indexes.list_conversations(
            status=status,
            queue=queue,
            assignee=assignee,
            cursor=request.query.get("cursor") or None,
            limit=limit,
            visible=None if allowed.everything else allowed.allows,
        )
    except ValueError:
        raise invalid_parameter("cursor is not one this API gave out") from None
    return json_response(ConversationPage(items=items, next_cursor=cursor))


@routes.get("/conversations/{id}")
async def get_conversation(request: web.Request) -> web.Response:
    allow_query(request)
    cid = request.match_info["id"]
    conversation = await seen(request, cid)
    windows = await request.config_dict[CORE].replies.windows(cid)
    return json_response(msgspec.structs.replace(conversation, reply_windows=windows))


@routes.get("/conversations/{id}/messages")
async def list_messages(request: web.Request) -> web.Response:
    allow_query(request, "cursor", "limit")
    cid = request.match_info["id"]
    await seen(request, cid)
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
    items, last = await request.config_dict[STORE].timeline.list_messages(cid, after=after, limit=limit)
    return json_response(MessagePage(items=items, next_cursor=None if last is None else message_id(cid, last)))


@routes.post("/conversations/{id}/messages")
async def post_message(request: web.Request) -> web.Response:
    allow_query(request)
    await seen(request, request.match_info["id"])
    body = await read_json(request, ReplyRequest)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise invalid_parameter(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    text = None if isinstance(body.text, UnsetType) else body.text
    requested = None if isinstance(body.template, UnsetType) else body.template
    intent = None if isinstance(body.intent, UnsetType) else body.intent
    if sum(x is not None for x in (text, requested, intent)) != 1:
        raise invalid_body("give one of text, template or intent")
    if body.private and text is None:
        raise invalid_body("a note is text, not a template or an intent")
    if body.variables and intent is None:
        raise invalid_body("variables go with an intent")
    template = None if requested is None else Template(requested.name, requested.language,
                                                       tuple(requested.parameters))
    reply = await request.config_dict[CORE].replies.compose(
        request.match_info["id"],
        text=text,
        intent=intent,
        variables=body.variables,
        instance=body.instance,
        private=body.private,
        author=principal(request).name,
        idempotency_key=key,
        attachments=body.attachments,
        template=template,
        lang=accept_language(request),
    )
    accepted = ReplyAccepted(**msgspec.structs.asdict(reply.message), warnings=list(reply.warnings))
    return json_response(accepted, status=202)


@routes.post("/conversations/{id}/assign")
async def assign(request: web.Request) -> web.Response:
    allow_query(request)
    await seen(request, request.match_info["id"])
    body = await read_json(request, AssignRequest)
    me = principal(request)
    target = me.name if body.assignee == "me" else body.assignee
    return json_response(await request.config_dict[CORE].threads.assign(
        request.match_info["id"], target, by=me.name, may_reassign=me.can(Role.SUPERVISOR)))


@routes.post("/conversations/{id}/reroute")
async def reroute(request: web.Request) -> web.Response:
    """Run the routing rules again (the customer's tier changed, the thread was misrouted)."""
    allow_query(request)
    await seen(request, request.match_info["id"])
    return json_response(await request.config_dict[CORE].threads.reroute(
        request.match_info["id"], by=agent(principal(request).name)))


@routes.post("/conversations/{id}/transfer")
async def transfer(request: web.Request) -> web.Response:
    """To another queue, another agent, or both; the note goes on the activity log."""
    allow_query(request)
    await seen(request, request.match_info["id"])
    body = await read_json(request, TransferRequest)
    if body.queue is None and body.agent is None:
        raise invalid_body("give a queue, an agent, or both")
    return json_response(await request.config_dict[CORE].threads.transfer(
        request.match_info["id"], queue=body.queue, to=body.agent, note=body.note,
        by=agent(principal(request).name)))


@routes.post("/conversations/{id}/status")
async def set_status(request: web.Request) -> web.Response:
    allow_query(request)
    await seen(request, request.match_info["id"])
    body = await read_json(request, StatusRequest)
    return json_response(await request.config_dict[CORE].threads.set_status(
        request.match_info["id"], body.status, by=agent(principal(request).name)))
