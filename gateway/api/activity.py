"""A conversation's activity log: who did what to it, and when, by cursor in either order."""

from __future__ import annotations

from aiohttp import web

from conversation.activity import ActivityPage
from conversation.errors import NotFound
from conversation.ids import activity_id, split_activity_id
from gateway.api.errors import invalid_parameter
from gateway.api.http import allow_query, json_response, query_choice, query_limit, seen
from gateway.appkeys import STORE

routes = web.RouteTableDef()


@routes.get("/conversations/{id}/activity")
async def list_activity(request: web.Request) -> web.Response:
    allow_query(request, "order", "cursor", "limit")
    cid = request.match_info["id"]
    await seen(request, cid)
    descending = (query_choice(request, "order", ["asc", "desc"]) or "asc") == "desc"
    after: int | None = None
    if cursor := request.query.get("cursor"):
        # The cursor is the id of the last entry seen.
        try:
            cursor_cid, after = split_activity_id(cursor)
        except NotFound:
            cursor_cid = ""
        if cursor_cid != cid:
            raise invalid_parameter("cursor is not an activity entry of this conversation")
    items, last = await request.config_dict[STORE].timeline.activity(
        cid, after=after, descending=descending, limit=query_limit(request))
    return json_response(ActivityPage(items=items, next_cursor=None if last is None else activity_id(cid, last)))
