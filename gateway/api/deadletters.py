"""Dead letters: payloads and sends the pipeline gave up on, for an admin to inspect and replay."""

from __future__ import annotations

import re
from typing import Literal

from aiohttp import web

from conversation.store import NotFound
from gateway import outbox
from gateway.api.http import allow_query, json_response, query_limit, root_app
from gateway.api.schemas import DeadLetter, DeadLetterPage
from gateway.appkeys import STORE
from gateway.auth import Role, requires

routes = web.RouteTableDef()

_ID = re.compile(r"^(inbound|outbound):(\d+-\d+)$")


@routes.get("/dead-letters")
@requires(Role.ADMIN)
async def list_dead_letters(request: web.Request) -> web.Response:
    allow_query(request, "cursor", "limit")
    rows, cursor = await request.config_dict[STORE].list_dead_letters(
        cursor=request.query.get("cursor") or None, limit=query_limit(request)
    )
    items = [
        DeadLetter(id=f"{stream}:{entry_id}", stream=_stream(stream), entry_id=entry_id, fields=fields)
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
    return json_response(await outbox.replay_dead_letter(root_app(request), m[1], m[2]))


def _stream(name: str) -> Literal["inbound", "outbound"]:
    return "outbound" if name == "outbound" else "inbound"
