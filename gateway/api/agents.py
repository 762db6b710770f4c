"""Agents and queues: the team's profiles (admins manage them), presence and heartbeats (each
agent their own), and how every queue stands."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import UNSET, Meta, UnsetType

from conversation.agents import Agent, AgentRole, AgentView, Capacity, Presence, Word
from conversation.service.agents import QueueView
from gateway.api.errors import invalid_body
from gateway.api.http import allow_query, json_response, principal, read_json
from gateway.appkeys import CORE
from gateway.auth import Role, requires

routes = web.RouteTableDef()


class AgentPatch(msgspec.Struct, forbid_unknown_fields=True):
    role: AgentRole | UnsetType = UNSET
    skills: list[Word] | UnsetType = UNSET
    languages: list[Annotated[str, Meta(min_length=2, max_length=16)]] | UnsetType = UNSET
    queues: list[Word] | UnsetType = UNSET
    supervises: list[Word] | UnsetType = UNSET
    capacity: Capacity | UnsetType = UNSET
    timezone: Annotated[str, Meta(min_length=1, max_length=64)] | UnsetType | None = UNSET


class PresenceRequest(msgspec.Struct, forbid_unknown_fields=True):
    status: Presence


class AgentList(msgspec.Struct):
    items: list[AgentView]
    next_cursor: str | None = None


class QueueList(msgspec.Struct):
    items: list[QueueView]
    next_cursor: str | None = None


def _name(request: web.Request) -> str:
    name = request.match_info["name"]
    return principal(request).name if name == "me" else name


@routes.post("/agents")
@requires(Role.ADMIN)
async def create_agent(request: web.Request) -> web.Response:
    allow_query(request)
    agent = await read_json(request, Agent)
    if agent.name == "me":
        raise invalid_body("'me' stands for the caller; choose another name")
    return json_response(await request.config_dict[CORE].agents.create(agent), status=201)


@routes.get("/agents")
async def list_agents(request: web.Request) -> web.Response:
    allow_query(request)
    return json_response(AgentList(items=await request.config_dict[CORE].agents.everyone()))


@routes.get("/agents/{name}")
async def get_agent(request: web.Request) -> web.Response:
    allow_query(request)
    return json_response(await request.config_dict[CORE].agents.view(_name(request)))


@routes.patch("/agents/{name}")
@requires(Role.ADMIN)
async def patch_agent(request: web.Request) -> web.Response:
    allow_query(request)
    body = await read_json(request, AgentPatch)
    changes = {f: getattr(body, f) for f in body.__struct_fields__ if not isinstance(getattr(body, f), UnsetType)}
    if not changes:
        raise invalid_body("give at least one field to change")
    return json_response(await request.config_dict[CORE].agents.update(_name(request), changes))


@routes.delete("/agents/{name}")
@requires(Role.ADMIN)
async def delete_agent(request: web.Request) -> web.Response:
    allow_query(request)
    await request.config_dict[CORE].agents.delete(_name(request))
    return web.Response(status=204)


@routes.put("/agents/{name}/presence")
async def set_presence(request: web.Request) -> web.Response:
    """An agent sets their own (`me`); a supervisor anyone's."""
    allow_query(request)
    body = await read_json(request, PresenceRequest)
    me = principal(request)
    return json_response(await request.config_dict[CORE].agents.set_presence(
        _name(request), body.status, by=me.name, may_set_others=me.can(Role.SUPERVISOR)))


@routes.post("/agents/me/heartbeat")
async def heartbeat(request: web.Request) -> web.Response:
    allow_query(request)
    return json_response(await request.config_dict[CORE].agents.heartbeat(principal(request).name))


@routes.post("/queues/{name}/next")
async def next_in_queue(request: web.Request) -> web.StreamResponse:
    """Claim the most urgent thread of the queue the caller may take: 200 with it, 204 when none."""
    allow_query(request)
    conv = await request.config_dict[CORE].assignment.pull(request.match_info["name"], principal(request).name)
    return json_response(conv) if conv is not None else web.Response(status=204)


@routes.get("/queues")
async def list_queues(request: web.Request) -> web.Response:
    allow_query(request)
    return json_response(QueueList(items=await request.config_dict[CORE].agents.queues()))
