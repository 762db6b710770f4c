"""A local stand-in for Slack: the Web API methods the connector calls, and Socket Mode.

`FakeSlack` serves `/api/<method>` as slack.com does: a bearer token (or `token` parameter),
form, query or JSON parameters, answers `{"ok": true, ...}` or `{"ok": false, "error": ...}` with
HTTP 200, and 429 with Retry-After when rate limited. Methods: auth.test, users.info,
chat.postMessage, apps.connections.open (with the app-level token). Point slack_sdk's clients at
it through the connector's `api_base_url` (`fake.base_url`).

Socket Mode: apps.connections.open returns a `ws://` URL on the same server. A connection gets
`hello`; `push_event(payload)` sends an `events_api` envelope and keeps it pending until the app
answers `{"envelope_id": ...}`; unacknowledged envelopes are delivered again on the next
connection with `retry_attempt` raised, as Slack does. `disconnect()` sends Slack's
`{"type": "disconnect"}` asking the app to reconnect.

    async with FakeSlack() as slack:
        settings = {..., "api_base_url": slack.base_url}
        slack.add_user("U123", name="Ana", email="ana@example.com")
        slack.fail_next(429, retry_after=2)
        slack.fail_next_error("channel_not_found")
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import WSMsgType, web

DEFAULT_BOT_TOKEN = "xoxb-0000000000-0000000000000-fakebottokenfakebottoken"
DEFAULT_APP_TOKEN = "xapp-1-A0000000000-0000000000000-fakeapptokenfakeapptoken"
DEFAULT_TEAM = "T0FAKE0001"
DEFAULT_BOT_USER = "U0FAKEBOT1"

# What Slack answers with an HTTP error status (its Web API keeps errors in the JSON body).
_STATUS_ERRORS: Mapping[int, str] = {
    400: "invalid_arguments", 401: "invalid_auth", 403: "not_allowed_token_type", 404: "unknown_method",
    429: "ratelimited",
}


@dataclass(frozen=True)
class ScriptedFailure:
    status: int
    error: str | None  # None: a non-JSON body, as Slack's edge answers 5xx
    retry_after: str | None
    method: str | None  # None: whichever method is called next


@dataclass
class Envelope:
    envelope_id: str
    payload: dict[str, Any]
    retry_attempt: int = 0


class FakeSlack:
    """Slack's Web API and Socket Mode on a local port."""

    def __init__(
        self,
        *,
        bot_token: str = DEFAULT_BOT_TOKEN,
        app_token: str = DEFAULT_APP_TOKEN,
        team_id: str = DEFAULT_TEAM,
        bot_user_id: str = DEFAULT_BOT_USER,
        host: str = "127.0.0.1",
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.host = host
        # chat.postMessage requests Slack accepted, in order: the parameters plus "ts" and "channel".
        self.messages: list[dict[str, Any]] = []
        # Every Web API call, answered or not: (method, parameters).
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.call_times: list[tuple[str, float]] = []  # (method, time.monotonic()) of each call
        self.users: dict[str, dict[str, Any]] = {}
        self.files: dict[str, tuple[bytes, str]] = {}  # url_private path -> (content, mimetype)
        self.file_requests: list[str | None] = []  # the Authorization header of each file download
        # Socket Mode
        self.acks: list[str] = []
        self.connections_opened = 0
        self.lose_acks = False  # pretend acks never arrived (a crash before acking)
        self._pending: dict[str, Envelope] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self._failures: deque[ScriptedFailure] = deque()
        self._ts = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._base: str | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link/", self._socket)
        app.router.add_get("/files-pri/{key}/{name}", self._file)
        app.router.add_get("/signin", self._signin)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, 0).start()
        port = int(self._runner.addresses[0][1])
        self._base = f"http://{self.host}:{port}"
        return self.base_url

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """The Web API base, as the connector's api_base_url (ends in /api/ like slack.com's)."""
        if self._base is None:
            raise RuntimeError("FakeSlack is not started")
        return f"{self._base}/api/"

    # --- scripting -----------------------------------------------------------------------------

    def add_file(self, name: str, content: bytes, mimetype: str = "application/octet-stream") -> dict[str, Any]:
        """A file a user shared; returns Slack's file object for an event's `files`. Its
        url_private answers only with the bot token, as files.slack.com does."""
        file_id = "F" + uuid.uuid4().hex[:10].upper()
        path = f"/files-pri/{self.team_id}-{file_id}/{name}"
        self.files[path] = (content, mimetype)
        url = f"{self._base}{path}"
        return {"id": file_id, "name": name, "title": name, "mimetype": mimetype, "filetype": name.rpartition(".")[2],
                "size": len(content), "mode": "hosted", "url_private": url, "url_private_download": url + "?dl=1"}

    async def _signin(self, request: web.Request) -> web.Response:
        return web.Response(text="<html>Sign in to Slack</html>", content_type="text/html")

    async def _file(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization")
        self.file_requests.append(auth)
        found = self.files.get(request.path)
        if found is None:
            raise web.HTTPNotFound()
        if auth != f"Bearer {self.bot_token}":
            # What files.slack.com does without a valid token: send the browser to sign in.
            raise web.HTTPFound("/signin")
        return web.Response(body=found[0], content_type=found[1])


    def add_user(self, user_id: str, *, name: str, email: str | None = None, confirmed: bool = True,
                 team_id: str | None = None, locale: str = "en-US") -> None:
        """A user users.info knows; the email shows only as with the users:read.email scope, the
        locale only when asked for (include_locale), as Slack does."""
        profile: dict[str, Any] = {"real_name": name, "display_name": name}
        if email is not None:
            profile["email"] = email
        self.users[user_id] = {
            "id": user_id, "team_id": team_id or self.team_id, "name": name.lower().replace(" ", "."),
            "real_name": name, "is_bot": False, "is_email_confirmed": confirmed, "profile": profile,
            "_locale": locale,
        }

    def fail_next(self, status: int, *, retry_after: float | None = None, times: int = 1,
                  method: str | None = None) -> None:
        """Answer the next `times` calls (of `method`, or any) with this HTTP status, in Slack's format."""
        error = _STATUS_ERRORS.get(status) if status < 500 else None
        failure = ScriptedFailure(status, error, None if retry_after is None else f"{retry_after:g}", method)
        self._failures.extend([failure] * times)

    def fail_next_error(self, error: str, *, method: str | None = "chat.postMessage", times: int = 1) -> None:
        """Answer the next `times` calls with HTTP 200 `{"ok": false, "error": error}`."""
        self._failures.extend([ScriptedFailure(200, error, None, method)] * times)

    async def wait_for_messages(self, count: int, within: float = 5.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.messages) >= count)
        return list(self.messages)

    # --- Socket Mode ---------------------------------------------------------------------------

    async def push_event(self, payload: Mapping[str, Any]) -> str:
        """Send an events_api envelope on the open connection; returns its envelope id."""
        envelope = Envelope(str(uuid.uuid4()), dict(payload))
        self._pending[envelope.envelope_id] = envelope
        await self._deliver(await self._open_socket(), envelope)
        return envelope.envelope_id

    async def wait_for_ack(self, envelope_id: str, within: float = 5.0) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: envelope_id in self.acks)

    async def wait_for_connections(self, count: int, within: float = 5.0) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(
                lambda: self.connections_opened >= count and any(not ws.closed for ws in self._sockets))

    async def disconnect(self, reason: str = "refresh_requested") -> None:
        """Slack's request that the app reconnect (it does so before the socket is dropped)."""
        ws = await self._open_socket()
        await ws.send_str(json.dumps({"type": "disconnect", "reason": reason,
                                      "debug_info": {"host": "fake-slack"}}))

    @property
    def pending(self) -> list[str]:
        return list(self._pending)

    async def _open_socket(self, within: float = 5.0) -> web.WebSocketResponse:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: any(not ws.closed for ws in self._sockets))
        return next(ws for ws in reversed(self._sockets) if not ws.closed)

    async def _deliver(self, ws: web.WebSocketResponse, envelope: Envelope) -> None:
        await ws.send_str(json.dumps({
            "envelope_id": envelope.envelope_id, "payload": envelope.payload, "type": "events_api",
            "accepts_response_payload": False, "retry_attempt": envelope.retry_attempt,
            "retry_reason": "timeout" if envelope.retry_attempt else "",
        }))

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        async with self._changed:
            self.connections_opened += 1
            self._changed.notify_all()
        await ws.send_str(json.dumps({
            "type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0FAKEAPP1"},
            "debug_info": {"host": "fake-slack", "approximate_connection_time": 18060},
        }))
        # What the last connection left unacknowledged comes again, marked as a retry.
        for old_id, envelope in list(self._pending.items()):
            del self._pending[old_id]
            again = Envelope(str(uuid.uuid4()), envelope.payload, envelope.retry_attempt + 1)
            self._pending[again.envelope_id] = again
            await self._deliver(ws, again)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
            except ValueError:
                continue
            envelope_id = data.get("envelope_id") if isinstance(data, dict) else None
            if envelope_id and not self.lose_acks:
                self._pending.pop(envelope_id, None)
                async with self._changed:
                    self.acks.append(envelope_id)
                    self._changed.notify_all()
        return ws

    # --- the Web API ---------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    params.update(body)
            else:
                params.update(await request.post())
        self.calls.append((method, dict(params)))
        self.call_times.append((method, time.monotonic()))
        token = params.pop("token", None) or request.headers.get("Authorization", "").removeprefix("Bearer ")
        failure = self._next_failure(method)
        if failure is not None:
            return self._fail(failure)
        wanted = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != wanted:
            error = "not_allowed_token_type" if token in (self.app_token, self.bot_token) else "invalid_auth"
            return _answer({"ok": False, "error": error})
        handler = {
            "auth.test": self._auth_test,
            "users.info": self._users_info,
            "chat.postMessage": self._post_message,
            "apps.connections.open": self._connections_open,
        }.get(method)
        if handler is None:
            return _answer({"ok": False, "error": "unknown_method"}, status=404)
        return await handler(params)

    def _next_failure(self, method: str) -> ScriptedFailure | None:
        for i, failure in enumerate(self._failures):
            if failure.method in (None, method):
                del self._failures[i]
                return failure
        return None

    def _fail(self, failure: ScriptedFailure) -> web.Response:
        headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
        if failure.error is None:
            return web.Response(status=failure.status, text="<html><body>Service Unavailable</body></html>",
                                content_type="text/html", headers=headers)
        return _answer({"ok": False, "error": failure.error}, status=failure.status, headers=headers)

    async def _auth_test(self, params: dict[str, Any]) -> web.Response:
        return _answer({"ok": True, "url": "https://fake.slack.test/", "team": "Fake", "user": "bot",
                        "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": "B0FAKEBOT1"})

    async def _users_info(self, params: dict[str, Any]) -> web.Response:
        user = self.users.get(str(params.get("user", "")))
        if user is None:
            return _answer({"ok": False, "error": "user_not_found"})
        shown = {k: v for k, v in user.items() if k != "_locale"}
        if str(params.get("include_locale", "")).lower() in ("1", "true"):
            shown["locale"] = user["_locale"]
        return _answer({"ok": True, "user": shown})

    async def _post_message(self, params: dict[str, Any]) -> web.Response:
        channel = str(params.get("channel") or "")
        if not channel:
            return _answer({"ok": False, "error": "channel_not_found"})
        if not params.get("text") and not params.get("blocks"):
            return _answer({"ok": False, "error": "no_text"})
        if channel.startswith("U"):  # a user id: the app's direct message with that user
            channel = "D" + channel[1:]
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        accepted = {**params, "channel": channel, "ts": ts}
        async with self._changed:
            self.messages.append(accepted)
            self._changed.notify_all()
        message = {"type": "message", "user": self.bot_user_id, "bot_id": "B0FAKEBOT1", "text": params.get("text"),
                   "ts": ts}
        if params.get("thread_ts"):
            message["thread_ts"] = params["thread_ts"]
        return _answer({"ok": True, "channel": channel, "ts": ts, "message": message})

    async def _connections_open(self, params: dict[str, Any]) -> web.Response:
        assert self._base is not None
        url = self._base.replace("http://", "ws://") + f"/link/?ticket={uuid.uuid4()}"
        return _answer({"ok": True, "url": url})


def _answer(body: Mapping[str, Any], *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(dict(body), status=status, headers=dict(headers or {}))


def event_payload(event: Mapping[str, Any], *, team_id: str = DEFAULT_TEAM, bot_user_id: str = DEFAULT_BOT_USER,
                  event_id: str | None = None, api_app_id: str = "A0FAKEAPP1") -> dict[str, Any]:
    """An `event_callback` as Slack wraps an event, over HTTP or in a Socket Mode envelope."""
    return {
        "token": "verification-token-unused", "team_id": team_id, "context_team_id": team_id,
        "api_app_id": api_app_id, "event": dict(event), "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}", "event_time": int(time.time()),
        "authorizations": [{"enterprise_id": None, "team_id": team_id, "user_id": bot_user_id, "is_bot": True,
                            "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
    }


__all__ = ["DEFAULT_APP_TOKEN", "DEFAULT_BOT_TOKEN", "DEFAULT_BOT_USER", "DEFAULT_TEAM", "FakeSlack",
           "event_payload"]
