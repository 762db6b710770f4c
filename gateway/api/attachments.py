"""Customers' files, any role: the ones the gateway keeps (email attachments, originals) at
GET /v1/attachments/{id}, and every attachment of a message at
GET /v1/messages/{message_id}/attachments/{n}, which fetches files a provider serves only with
our credentials (Slack's url_private) through the connector, and redirects to the others.

Customer-supplied content is served so that a browser cannot run it in our origin: a sandboxing
CSP, nosniff, and `attachment` disposition except for types that are safe to render inline.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from connectors.base import FileUnavailable
from conversation.errors import NotFound
from gateway.api.errors import ApiError
from gateway.api.http import allow_query, seen
from gateway.appkeys import CONNECTORS, STORE

routes = web.RouteTableDef()

_INLINE = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain", "text/html")


@routes.get("/attachments/{id}")
async def get_attachment(request: web.Request) -> web.Response:
    allow_query(request)
    stored = await request.config_dict[STORE].files.get(request.match_info["id"])
    if stored is None:
        raise NotFound(f"no attachment {request.match_info['id']!r}")
    response = _file_response(stored.data, stored.content_type, stored.name)
    # The id is a hash of the content: what it names never changes.
    response.headers["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


@routes.get("/messages/{message_id}/attachments/{n}")
async def get_message_attachment(request: web.Request) -> web.Response:
    allow_query(request)
    mid, n = request.match_info["message_id"], request.match_info["n"]
    message = await request.config_dict[STORE].timeline.get_message(mid)
    await seen(request, message.conversation_id)
    if not n.isdigit() or int(n) >= len(message.attachments):
        raise NotFound(f"message {mid!r} has no attachment {n!r}")
    attachment = message.attachments[int(n)]
    if attachment.refused:
        raise ApiError(410, "attachment_refused", f"this file was not kept: {attachment.refused}")
    connector = request.config_dict[CONNECTORS].get(message.instance or "")
    try:
        fetched = await connector.fetch_file(attachment.url) if connector is not None else None
    except FileUnavailable as exc:
        raise ApiError(502, "provider_unavailable", str(exc)) from None
    if fetched is None:
        # Kept here, or a public provider URL: the client opens it directly.
        raise web.HTTPTemporaryRedirect(attachment.url)
    response = _file_response(fetched.data, attachment.content_type or fetched.content_type, attachment.name)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


def _file_response(data: bytes, content_type: str, name: str | None) -> web.Response:
    """Customer-supplied content, served so that a browser cannot run it in our origin."""
    media = content_type.partition(";")[0].strip().lower() or "application/octet-stream"
    disposition = "inline" if media in _INLINE else "attachment"
    if name:
        ascii_name = name.encode("ascii", "replace").decode().replace('"', "'").replace("\\", "_")
        disposition += f"; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
    response = web.Response(body=data, content_type=media, charset="utf-8" if media.startswith("text/") else None)
    response.headers["Content-Disposition"] = disposition
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = (
        "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'")
    return response
