"""A local stand-in for Meta's Graph API, as the WhatsApp, Messenger and Instagram connectors use it.

`FakeGraph` serves, under `/{version}/`:
- `POST /{phone_number_id}/messages`: WhatsApp Cloud API sends (text, media by link, template),
  answered ``{"messaging_product": "whatsapp", "contacts": [...], "messages": [{"id": "wamid..."}]}``;
- `POST /me/messages`: the Messenger Platform Send API (Messenger and Instagram), answered
  ``{"recipient_id", "message_id"}``;
- `GET /{id}`: a media object's metadata (``url``, ``mime_type``...) or a user's profile fields;
- the media download behind a media URL, which, like Meta's, needs the bearer token.

Errors are Graph's: ``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``
(WhatsApp adds ``error_data``). It also signs and posts webhooks as Meta does
(X-Hub-Signature-256 over the raw body) and builds their payloads.

    async with FakeGraph(access_token="EAAG...") as graph:
        settings = {..., "api_base_url": graph.base_url}
        graph.fail_next(400, code=131047)      # the next send: outside the 24-hour window
        graph.add_media("1234", b"...", "image/jpeg")
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from connectors.testing.local_server import LocalServer

DEFAULT_TOKEN = "EAAGfakegraphaccesstoken0000000000"
DEFAULT_VERSION = "v21.0"

# Graph's wording for the codes tests script most.
ERRORS: Mapping[int, tuple[str, str]] = {
    1: ("OAuthException", "An unknown error occurred"),
    2: ("OAuthException", "Service temporarily unavailable"),
    4: ("OAuthException", "(#4) Application request limit reached"),
    10: ("OAuthException", "(#10) This message is sent outside of allowed window."),
    100: ("OAuthException", "(#100) Invalid parameter"),
    190: ("OAuthException", "Invalid OAuth access token - Cannot parse access token"),
    200: ("OAuthException", "(#200) Permissions error"),
    551: ("OAuthException", "(#551) This person isn't available right now."),
    613: ("OAuthException", "(#613) Calls to this api have exceeded the rate limit."),
    130429: ("OAuthException", "(#130429) Rate limit hit"),
    131026: ("OAuthException", "(#131026) Message undeliverable"),
    131047: ("OAuthException", "(#131047) Re-engagement message"),
    132001: ("OAuthException", "(#132001) Template name does not exist in the translation"),
}
_DETAILS: Mapping[int, str] = {
    130429: "Cloud API message throughput has been reached.",
    131047: "Message failed to send because more than 24 hours have passed since the customer last "
            "replied to this number.",
    132001: "template name (x) does not exist in es",
}
_CODE_FOR_STATUS = {400: 100, 401: 190, 403: 200, 404: 100, 429: 130429, 500: 2, 503: 2}


@dataclass(frozen=True)
class ScriptedFailure:
    status: int
    code: int
    subcode: int | None
    message: str | None
    retry_after: str | None


def sign(app_secret: str, body: bytes) -> str:
    """The X-Hub-Signature-256 header Meta sends with `body`."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


class FakeGraph(LocalServer):
    def __init__(self, access_token: str = DEFAULT_TOKEN, *, version: str = DEFAULT_VERSION,
                 host: str = "127.0.0.1", text_limit: int = 4096) -> None:
        super().__init__(host)
        self.access_token = access_token
        self.version = version
        self.text_limit = text_limit
        self.attempts = 0
        self.templates: set[tuple[str, str]] | None = None  # None: any template is approved
        self.profiles: dict[str, dict[str, str]] = {}
        self._media: dict[str, tuple[bytes, str]] = {}
        self._failures: deque[ScriptedFailure] = deque()

    def routes(self, app: web.Application) -> None:
        # `messages` holds every accepted send body, with its "_path".
        app.router.add_post("/{version}/me/messages", self._page_send)
        app.router.add_post("/{version}/{number}/messages", self._whatsapp_send)
        app.router.add_get("/download/{media_id}", self._download)
        app.router.add_get("/{version}/{id}", self._get)

    # --- scripting -----------------------------------------------------------------------------

    def fail_next(self, status: int, *, code: int | None = None, subcode: int | None = None,
                  message: str | None = None, retry_after: float | None = None, times: int = 1) -> None:
        """Answer the next `times` sends with a Graph error: `code` defaults to Graph's usual one
        for the status (429 -> 130429, 500 -> 2, 400 -> 100...)."""
        failure = ScriptedFailure(status, code if code is not None else _CODE_FOR_STATUS.get(status, 1), subcode,
                                  message, None if retry_after is None else f"{retry_after:g}")
        self._failures.extend([failure] * times)

    def add_media(self, media_id: str, data: bytes, mime_type: str) -> None:
        self._media[media_id] = (data, mime_type)

    def add_profile(self, user_id: str, **fields: str) -> None:
        self.profiles[user_id] = {"id": user_id, **fields}

    # --- webhooks, as Meta sends them ------------------------------------------------------------

    @staticmethod
    def signed(app_secret: str, payload: Any) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        return body, {"Content-Type": "application/json", "X-Hub-Signature-256": sign(app_secret, body)}

    async def post_webhook(self, url: str, app_secret: str, payload: Any) -> tuple[int, bytes]:
        body, headers = self.signed(app_secret, payload)
        async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.read()

    @staticmethod
    async def subscribe(url: str, verify_token: str, challenge: str) -> tuple[int, str]:
        """Meta's GET verification of a webhook URL."""
        params = {"hub.mode": "subscribe", "hub.verify_token": verify_token, "hub.challenge": challenge}
        async with aiohttp.ClientSession() as http, http.get(url, params=params) as resp:
            return resp.status, await resp.text()

    # --- handlers ------------------------------------------------------------------------------

    def _error(self, status: int, code: int, subcode: int | None = None, message: str | None = None,
               **headers: str) -> web.Response:
        kind, default = ERRORS.get(code, ("OAuthException", "An unknown error occurred"))
        error: dict[str, Any] = {"message": message or default, "type": kind, "code": code,
                                 "fbtrace_id": "A" + secrets.token_hex(10)}
        if subcode is not None:
            error["error_subcode"] = subcode
        if code in _DETAILS:
            error["error_data"] = {"messaging_product": "whatsapp", "details": _DETAILS[code]}
        return web.json_response({"error": error}, status=status, headers=headers)

    def _authorized(self, request: web.Request) -> bool:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        given = given or request.query.get("access_token", "")
        return bool(given) and secrets.compare_digest(given, self.access_token)

    async def _gate(self, request: web.Request) -> tuple[dict[str, Any] | None, web.Response | None]:
        self.attempts += 1
        if not self._authorized(request):
            return None, self._error(401, 190)
        if request.match_info["version"] != self.version:
            return None, self._error(400, 2635, message=f"(#2635) version {request.match_info['version']} "
                                                         "is deprecated or unknown")
        if self._failures:
            f = self._failures.popleft()
            headers = {"Retry-After": f.retry_after} if f.retry_after is not None else {}
            return None, self._error(f.status, f.code, f.subcode, f.message, **headers)
        try:
            body = json.loads(await request.read())  # exact integers, as Graph's parser
        except ValueError:
            return None, self._error(400, 100, message="(#100) The parameter body is not valid JSON")
        if not isinstance(body, dict):
            return None, self._error(400, 100)
        return body, None

    async def _accept(self, body: dict[str, Any], path: str) -> None:
        await self.accept({**body, "_path": path})

    async def _whatsapp_send(self, request: web.Request) -> web.Response:
        body, refused = await self._gate(request)
        if refused is not None:
            return refused
        assert body is not None
        if body.get("messaging_product") != "whatsapp":
            return self._error(400, 100, message="(#100) The parameter messaging_product is required.")
        to = str(body.get("to") or "")
        if not to.lstrip("+").isdigit():
            return self._error(400, 100, message="(#100) Invalid parameter to")
        kind = body.get("type", "text")
        content = body.get(kind)
        if kind == "text":
            text = content.get("body") if isinstance(content, dict) else None
            if not text:
                return self._error(400, 100, message="(#100) The parameter text['body'] is required.")
            if len(text) > self.text_limit:
                return self._error(400, 100, message=f"(#100) Param text['body'] must be at most "
                                                     f"{self.text_limit} characters long.")
        elif kind in ("image", "video", "audio", "document", "sticker"):
            if not isinstance(content, dict) or not (content.get("link") or content.get("id")):
                return self._error(400, 100, message=f"(#100) The parameter {kind}['link'] is required.")
        elif kind == "template":
            if (not isinstance(content, dict) or not content.get("name")
                    or not isinstance(content.get("language"), dict)):
                return self._error(400, 100, message="(#100) The parameter template['name'] is required.")
            wanted = (content["name"], content["language"].get("code"))
            if self.templates is not None and wanted not in self.templates:
                return self._error(404, 132001)
        else:
            return self._error(400, 100, message=f"(#100) Param type must be one of a supported message type, "
                                                 f"not {kind}")
        await self._accept(body, request.path)
        wa_id = to.lstrip("+")
        return web.json_response({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": wa_id}],
                                  "messages": [{"id": "wamid." + uuid.uuid4().hex.upper()}]})

    async def _page_send(self, request: web.Request) -> web.Response:
        body, refused = await self._gate(request)
        if refused is not None:
            return refused
        assert body is not None
        recipient = body.get("recipient")
        if not isinstance(recipient, dict) or not recipient.get("id"):
            return self._error(400, 100, message="(#100) The parameter recipient is required")
        kind = body.get("messaging_type")
        if kind not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
            return self._error(400, 100, message="(#100) messaging_type must be RESPONSE, UPDATE or MESSAGE_TAG")
        if kind == "MESSAGE_TAG" and not body.get("tag"):
            return self._error(400, 100, message="(#100) Param tag is required with messaging_type MESSAGE_TAG")
        message = body.get("message")
        if not isinstance(message, dict) or not (message.get("text") or message.get("attachment")):
            return self._error(400, 100, message="(#100) Must send either message or state")
        if len(str(message.get("text") or "")) > self.text_limit:
            return self._error(400, 100, 2018109, message="(#100) Length of param message[text] must be less "
                                                          f"than or equal to {self.text_limit}")
        await self._accept(body, request.path)
        return web.json_response({"recipient_id": recipient["id"], "message_id": "m_" + secrets.token_urlsafe(24)})

    async def _get(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, 190)
        object_id = request.match_info["id"]
        if object_id in self._media:
            data, mime = self._media[object_id]
            return web.json_response({
                "messaging_product": "whatsapp", "url": f"{self.base_url}/download/{object_id}?ext={int(time.time())}",
                "mime_type": mime, "sha256": hashlib.sha256(data).hexdigest(), "file_size": str(len(data)),
                "id": object_id,
            })
        if object_id in self.profiles:
            wanted = [f for f in request.query.get("fields", "").split(",") if f]
            profile = self.profiles[object_id]
            return web.json_response({k: v for k, v in profile.items() if k == "id" or not wanted or k in wanted})
        return self._error(400, 100, 33, message=f"Unsupported get request. Object with ID '{object_id}' does not "
                                                 "exist, cannot be loaded due to missing permissions, or does not "
                                                 "support this operation.")

    async def _download(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401, text="Unauthorized")
        media = self._media.get(request.match_info["media_id"])
        if media is None:
            return web.Response(status=404)
        return web.Response(body=media[0], content_type=media[1])


# --- payloads, as Meta sends them -----------------------------------------------------------------


def whatsapp_payload(phone_number_id: str, *, messages: Sequence[Mapping[str, Any]] = (),
                     statuses: Sequence[Mapping[str, Any]] = (), contacts: Sequence[tuple[str, str]] = (),
                     waba_id: str = "102290129340398", display_number: str = "15550783881",
                     field: str = "messages") -> dict[str, Any]:
    """One `whatsapp_business_account` webhook with one change; `contacts` are (wa_id, name)."""
    value: dict[str, Any] = {"messaging_product": "whatsapp",
                             "metadata": {"display_phone_number": display_number, "phone_number_id": phone_number_id}}
    if contacts:
        value["contacts"] = [{"profile": {"name": name}, "wa_id": wa_id} for wa_id, name in contacts]
    if field == "smb_message_echoes":
        value["message_echoes"] = list(messages)
    elif messages:
        value["messages"] = list(messages)
    if statuses:
        value["statuses"] = list(statuses)
    return {"object": "whatsapp_business_account", "entry": [{"id": waba_id, "changes": [{"value": value,
                                                                                          "field": field}]}]}


def whatsapp_message(wa_id: str, kind: str, content: Any, *, wamid: str | None = None,
                     timestamp: int | None = None, **more: Any) -> dict[str, Any]:
    return {"from": wa_id, "id": wamid or "wamid." + uuid.uuid4().hex.upper(),
            "timestamp": str(timestamp if timestamp is not None else int(time.time())), "type": kind, kind: content,
            **more}


def whatsapp_status(wamid: str, status: str, recipient: str, *, timestamp: int | None = None,
                    errors: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"id": wamid, "status": status,
                           "timestamp": str(timestamp if timestamp is not None else int(time.time())),
                           "recipient_id": recipient}
    if status in ("sent", "delivered"):
        out["conversation"] = {"id": uuid.uuid4().hex, "origin": {"type": "service"}}
        out["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service"}
    if errors:
        out["errors"] = list(errors)
    return out


def page_payload(object_kind: str, page_id: str, events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A Messenger (`page`) or Instagram (`instagram`) webhook with one entry."""
    return {"object": object_kind, "entry": [{"id": page_id, "time": int(time.time() * 1000),
                                             "messaging": list(events)}]}


def page_message(sender: str, recipient: str, message: Mapping[str, Any], *,
                 timestamp: int | None = None) -> dict[str, Any]:
    return {"sender": {"id": sender}, "recipient": {"id": recipient},
            "timestamp": timestamp if timestamp is not None else int(time.time() * 1000),
            "message": {"mid": "m_" + secrets.token_urlsafe(24), **message}}


__all__ = [
    "DEFAULT_TOKEN",
    "DEFAULT_VERSION",
    "FakeGraph",
    "page_message",
    "page_payload",
    "sign",
    "whatsapp_message",
    "whatsapp_payload",
    "whatsapp_status",
]
