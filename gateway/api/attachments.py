"""Files the gateway keeps (email attachments, originals): GET /v1/attachments/{id}, any role.

Customer-supplied content is served so that a browser cannot run it in our origin: a sandboxing
CSP, nosniff, and `attachment` disposition except for types that are safe to render inline.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from conversation.store import NotFound
from gateway.api.http import allow_query
from gateway.appkeys import CONFIG, STORE
from gateway.attachments import AttachmentStore

routes = web.RouteTableDef()

_INLINE = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain", "text/html")


def attachment_store(request: web.Request) -> AttachmentStore:
    config = request.config_dict[CONFIG]
    return AttachmentStore(request.config_dict[STORE].redis, config.gateway.key_prefix,
                           public_url=config.gateway.public_base_url)


@routes.get("/attachments/{id}")
async def get_attachment(request: web.Request) -> web.Response:
    allow_query(request)
    stored = await attachment_store(request).get(request.match_info["id"])
    if stored is None:
        raise NotFound(f"no attachment {request.match_info['id']!r}")
    media = stored.content_type.partition(";")[0].strip().lower() or "application/octet-stream"
    disposition = "inline" if media in _INLINE else "attachment"
    if stored.name:
        ascii_name = stored.name.encode("ascii", "replace").decode().replace('"', "'").replace("\\", "_")
        disposition += f"; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(stored.name, safe='')}"
    response = web.Response(body=stored.data, content_type=media,
                            charset="utf-8" if media.startswith("text/") else None)
    response.headers["Content-Disposition"] = disposition
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = (
        "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'")
    # The id is a hash of the content: what it names never changes.
    response.headers["Cache-Control"] = "private, max-age=31536000, immutable"
    return response
