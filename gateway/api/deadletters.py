"""Dead letters: payloads and sends the pipeline gave up on, for an admin to inspect and replay."""

from __future__ import annotations

import re

from aiohttp import web

from conversation.activity import agent
from conversation.errors import NotFound
from conversation.service.deadletters import readable
from conversation.store.deadletters import StreamName
from gateway.api.errors import invalid_parameter
from gateway.api.http import allow_query, json_response, principal, query_limit
from gateway.api.schemas import DeadLetter, DeadLetterPage
from gateway.appkeys import CONNECTORS, CORE, STORE
from gateway.auth import Role, requires
from gateway.replay import reparser

routes = web.RouteTableDef()

_ID = re.compile(r"^(inbound|outbound):(\d+-\d+)$")


@routes.get("/dead-letters")
@requires(Role.ADMIN)
async def list_dead_letters(request: web.Request) -> web.Response:
    allow_query(request, "cursor", "limit")
    try:
        rows, cursor = await request.config_dict[STORE].dead_letters.list(
            cursor=request.query.get("cursor") or None, limit=query_limit(request))
    except ValueError:
        raise invalid_parameter("cursor is not one this API gave out") from None
    items = [
        DeadLetter(id=f"{stream}:{entry_id}", stream=stream, entry_id=entry_id, fields=fields,
                   **readable(fields))
        for stream, entry_id, fields in rows
    ]
    return json_response(DeadLetterPage(items=items, next_cursor=cursor))


@routes.post("/dead-letters/{id}/replay")
@requires(Role.ADMIN)
async def replay(request: web.Request) -> web.Response:
    allow_query(request)
    m = _ID.match(request.match_info["id"])
    if m is None:
        raise NotFound(f"no dead letter {request.match_info['id']!r}")
    stream: StreamName = "outbound" if m[1] == "outbound" else "inbound"
    connectors = request.config_dict[CONNECTORS]
    return json_response(await request.config_dict[CORE].dead_letters.replay(
        stream, m[2], reparse=reparser(connectors), actor=agent(principal(request).name)))
