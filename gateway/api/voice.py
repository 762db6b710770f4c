"""The brand voice: preview a message on each channel, list the intents, reload the file."""

from __future__ import annotations

from aiohttp import web
from msgspec import UnsetType

from gateway import voice
from gateway.api.errors import ApiError, invalid_body
from gateway.api.http import accept_language, allow_query, json_response, principal, read_json, seen
from gateway.api.schemas import PreviewPage, PreviewRequest, VoiceReloaded, VoiceTemplateList
from gateway.appkeys import CORE
from gateway.auth import Role, requires

routes = web.RouteTableDef()


@routes.post("/voice/preview")
async def preview(request: web.Request) -> web.Response:
    """What the customer would read on each channel, and the lint's warnings, in the caller's
    Accept-Language. Nothing is stored or sent."""
    allow_query(request)
    body = await read_json(request, PreviewRequest)
    text = None if isinstance(body.text, UnsetType) else body.text
    intent = None if isinstance(body.intent, UnsetType) else body.intent
    if (text is None) == (intent is None):
        raise invalid_body("give either text or intent")
    if body.variables and intent is None:
        raise invalid_body("variables go with an intent")
    if body.conversation_id is not None:
        await seen(request, body.conversation_id)
    items = await request.config_dict[CORE].voice.preview(
        conversation_id=body.conversation_id, channels=body.channels, text=text, intent=intent,
        variables=body.variables, locale=body.locale, author=principal(request).name,
        lang=accept_language(request),
    )
    return json_response(PreviewPage(items=items))


@routes.get("/voice/templates")
async def templates(request: web.Request) -> web.Response:
    allow_query(request)
    admin = request.config_dict[CORE].voice
    return json_response(VoiceTemplateList(items=admin.templates(), default_locale=admin.voice.default_locale,
                                           locales=list(admin.voice.locales)))


@routes.post("/voice/reload")
@requires(Role.ADMIN)
async def reload(request: web.Request) -> web.Response:
    """Read the voice file again: all of it or nothing (422 with the reason, the running voice
    stays). Every process of `serve` reloads."""
    allow_query(request)
    core = request.config_dict[CORE]
    if core.voice.path is None:
        raise ApiError(409, "no_voice_file", "no voice file is configured ([gateway] voice_file, or voice.toml "
                                             "beside gateway.toml): the neutral voice has nothing to reload")
    problem = voice.reload(core)
    if problem is not None:
        raise ApiError(422, "invalid_voice", f"the running voice stays: {problem}")
    voice.reload_siblings()
    return json_response(VoiceReloaded(reloaded=True, intents=len(core.voice.voice.intents()),
                                       file=core.voice.path))
