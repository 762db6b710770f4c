"""A local stand-in for the Telegram Bot API, as the telegram connector uses it.

`FakeTelegram` serves `/bot<token>/<method>` (sendMessage, sendPhoto, sendDocument, getFile,
setWebhook, getMe) and file downloads at `/file/bot<token>/<file_path>`. Answers are the Bot
API's: ``{"ok": true, "result": ...}``, or ``{"ok": false, "error_code", "description"}`` with
``parameters.retry_after`` on 429. Request bodies are read with a JSON parser that keeps
integers exact, so a chat id above 2^53 arrives as sent. It also posts updates as Telegram
does, with the secret token header.

    async with FakeTelegram() as telegram:
        settings = {..., "api_base_url": telegram.base_url}
        telegram.block(123456789)             # "Forbidden: bot was blocked by the user"
        telegram.fail_next(429, retry_after=3)
"""

from __future__ import annotations

import itertools
import json
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from connectors.testing.local_server import LocalServer

DEFAULT_BOT_TOKEN = "7000000001:AAFakeTelegramBotTokenFakeTelegram0"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_DESCRIPTIONS: Mapping[int, str] = {
    400: "Bad Request: chat not found",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class ScriptedFailure:
    status: int
    description: str
    retry_after: int | None


class FakeTelegram(LocalServer):
    def __init__(self, bot_token: str = DEFAULT_BOT_TOKEN, *, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.bot_token = bot_token
        self.webhook: dict[str, Any] | None = None
        self.attempts = 0
        self._blocked: set[int] = set()
        self._missing: set[int] = set()
        self._files: dict[str, tuple[bytes, str, str]] = {}
        self._failures: deque[ScriptedFailure] = deque()
        self._ids = itertools.count(1000)
        self._updates = itertools.count(500_000_000)

    def routes(self, app: web.Application) -> None:
        # `messages` holds the accepted send calls, with "_method".
        app.router.add_post("/bot{token}/{method}", self._method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)

    # --- scripting -----------------------------------------------------------------------------

    def fail_next(self, status: int, *, retry_after: float | None = None, description: str | None = None,
                  times: int = 1) -> None:
        if status == 429:
            wait = int(retry_after if retry_after is not None else 1)
            failure = ScriptedFailure(429, description or f"Too Many Requests: retry after {wait}", wait)
        else:
            failure = ScriptedFailure(status, description or _DESCRIPTIONS.get(status, "Error"), None)
        self._failures.extend([failure] * times)

    def block(self, chat_id: int) -> None:
        self._blocked.add(chat_id)

    def forget_chat(self, chat_id: int) -> None:
        self._missing.add(chat_id)

    def add_file(self, file_id: str, data: bytes, mime_type: str, path: str | None = None) -> None:
        self._files[file_id] = (data, mime_type, path or f"documents/file_{len(self._files)}")

    # --- updates, as Telegram sends them --------------------------------------------------------

    def update(self, user_id: int, text: str | None = None, *, chat_type: str = "private", chat_id: int | None = None,
               edited: bool = False, message_id: int | None = None, first_name: str = "Ana",
               last_name: str | None = None, username: str | None = None, update_id: int | None = None,
               language_code: str | None = "es", **content: Any) -> dict[str, Any]:
        """A private-chat `message` (or `edited_message`) update from `user_id`."""
        sender: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if language_code:
            sender["language_code"] = language_code
        if last_name:
            sender["last_name"] = last_name
        if username:
            sender["username"] = username
        chat: dict[str, Any] = {"id": chat_id if chat_id is not None else user_id, "type": chat_type}
        if chat_type == "private":
            chat.update({k: v for k, v in sender.items() if k in ("first_name", "last_name", "username")})
        else:
            chat["title"] = "Customers group"
        message: dict[str, Any] = {"message_id": message_id if message_id is not None else next(self._ids),
                                   "from": sender, "chat": chat, "date": int(time.time()), **content}
        if text is not None:
            message["text"] = text
        if edited:
            message["edit_date"] = int(time.time())
        return {"update_id": update_id if update_id is not None else next(self._updates),
                "edited_message" if edited else "message": message}

    async def post_update(self, url: str, update: Mapping[str, Any], secret_token: str) -> tuple[int, bytes]:
        body = json.dumps(update, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", SECRET_HEADER: secret_token}
        async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.read()

    # --- handlers ------------------------------------------------------------------------------

    @staticmethod
    def _error(status: int, description: str, retry_after: int | None = None) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return web.json_response(body, status=status)

    async def _method(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if request.match_info["token"] != self.bot_token:
            return self._error(401, "Unauthorized")
        method = request.match_info["method"]
        if self._failures and method.startswith("send"):
            f = self._failures.popleft()
            return self._error(f.status, f.description, f.retry_after)
        raw = await request.read()
        try:
            params = json.loads(raw) if raw else {}  # Python's json keeps big integers exact
        except ValueError:
            return self._error(400, "Bad Request: can't parse JSON")
        if not isinstance(params, dict):
            return self._error(400, "Bad Request: parameters must be an object")
        handler = {"sendMessage": self._send, "sendPhoto": self._send, "sendDocument": self._send,
                   "getFile": self._get_file, "setWebhook": self._set_webhook, "getMe": self._get_me}.get(method)
        if handler is None:
            return self._error(404, "Not Found: method not found")
        return await handler(method, params)

    async def _send(self, method: str, params: dict[str, Any]) -> web.Response:
        chat_id = params.get("chat_id")
        if not isinstance(chat_id, int) or isinstance(chat_id, bool):
            return self._error(400, "Bad Request: chat_id is empty" if chat_id is None else
                               "Bad Request: chat_id must be an integer here")
        if chat_id in self._blocked:
            return self._error(403, "Forbidden: bot was blocked by the user")
        if chat_id in self._missing:
            return self._error(400, "Bad Request: chat not found")
        field = {"sendMessage": "text", "sendPhoto": "photo", "sendDocument": "document"}[method]
        if not params.get(field):
            return self._error(400, f"Bad Request: {'message text' if field == 'text' else field} is empty")
        if field == "text" and len(str(params["text"])) > 4096:
            return self._error(400, "Bad Request: message is too long")
        await self.accept({**params, "_method": method})
        result: dict[str, Any] = {"message_id": next(self._ids), "date": int(time.time()),
                                  "chat": {"id": chat_id, "type": "private"},
                                  "from": {"id": int(self.bot_token.split(":")[0]), "is_bot": True,
                                           "first_name": "Support"}}
        if field == "text":
            result["text"] = params["text"]
        return web.json_response({"ok": True, "result": result})

    async def _get_file(self, method: str, params: dict[str, Any]) -> web.Response:
        file_id = str(params.get("file_id") or "")
        if file_id not in self._files:
            return self._error(400, "Bad Request: invalid file_id")
        data, _, path = self._files[file_id]
        return web.json_response({"ok": True, "result": {"file_id": file_id, "file_unique_id": file_id[-8:],
                                                         "file_size": len(data), "file_path": path}})

    async def _set_webhook(self, method: str, params: dict[str, Any]) -> web.Response:
        self.webhook = params
        return web.json_response({"ok": True, "result": True, "description": "Webhook was set"})

    async def _get_me(self, method: str, params: dict[str, Any]) -> web.Response:
        return web.json_response({"ok": True, "result": {"id": int(self.bot_token.split(":")[0]), "is_bot": True,
                                                         "first_name": "Support", "username": "support_bot"}})

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.bot_token:
            return self._error(401, "Unauthorized")
        for data, mime, path in self._files.values():
            if path == request.match_info["path"]:
                return web.Response(body=data, content_type=mime)
        return self._error(404, "Not Found")


__all__ = ["DEFAULT_BOT_TOKEN", "FakeTelegram"]
