"""A local stand-in for Twilio's REST API and webhooks, speaking Twilio's wire format.

`FakeTwilio` serves `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` the way api.twilio.com
does: HTTP Basic auth with the account SID and auth token, form-encoded parameters (MediaUrl
repeated), 201 with a Message resource in JSON, and errors as `{"code", "message", "more_info",
"status"}`. Point the real twilio SDK at it through the connector's `api_base_url`.

Tests script it: queue failures (`fail_next`), mark numbers as unsubscribed, slow every request
down (`delay`), read what was accepted (`messages`), and play Twilio's side of the webhooks with
correctly signed status callbacks and inbound messages.

    async with FakeTwilio() as twilio:
        settings = {..., "api_base_url": twilio.base_url}
        twilio.fail_next(429, retry_after=2)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import secrets
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from types import TracebackType
from typing import Any

from aiohttp import ClientSession, web
from twilio.request_validator import RequestValidator

from conversation.segments import count_segments

DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
# The business number inbound messages are addressed to unless a test says otherwise.
DEFAULT_NUMBER = "+15550001111"
API_VERSION = "2010-04-01"

# Twilio's own wording for the errors tests most often script.
ERROR_MESSAGES: Mapping[int, str] = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    21211: "Invalid 'To' Phone Number",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21655: "The ContentSid is Invalid",
    21656: "The ContentVariables Parameter is invalid",
    63016: "Failed to send freeform message because you are outside the allowed window. If you are using "
           "WhatsApp, please use a Message Template.",
}
_DEFAULT_CODE_FOR_STATUS = {401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20500}


def sign_twilio_request(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """The X-Twilio-Signature Twilio sends with a form-encoded webhook of `params` to `url`."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))


def inbound_message_params(
    from_: str,
    to: str,
    body: str,
    *,
    media: Iterable[tuple[str, str]] = (),
    message_sid: str | None = None,
    account_sid: str = DEFAULT_ACCOUNT_SID,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The form Twilio posts for an incoming SMS/MMS; `media` is (url, content type) pairs."""
    sid = message_sid or _sid("SM")
    params = {
        "ToCountry": "US",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": body,
        "To": to,
        "NumSegments": str(max(1, count_segments(body))),
        "MessageSid": sid,
        "AccountSid": account_sid,
        "From": from_,
        "ApiVersion": API_VERSION,
    }
    items = list(media)
    params["NumMedia"] = str(len(items))
    for i, (url, content_type) in enumerate(items):
        params[f"MediaUrl{i}"] = url
        params[f"MediaContentType{i}"] = content_type
    params.update(extra or {})
    return params


@dataclass(frozen=True)
class ScriptedFailure:
    """One scripted error answer. `code` is Twilio's error code, in the body."""

    status: int
    code: int
    message: str
    retry_after: str | None = None


def _sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def _rfc2822_now() -> str:
    return format_datetime(datetime.now(UTC), usegmt=True)


class FakeTwilio:
    """Twilio's Messages API on a local port, plus Twilio's side of the webhooks."""

    def __init__(
        self,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.host = host
        self.port = port
        # Messages Twilio accepted (201), in order: the form as sent (MediaUrl as a list) plus "sid".
        self.messages: list[dict[str, Any]] = []
        # Every request that reached the Messages endpoint, answered or not: counts retries.
        self.attempts = 0
        self.unsubscribed: set[str] = set()
        self.request_delay = 0.0
        self._failures: deque[ScriptedFailure] = deque()
        self._accepted = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._base_url: str | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> str:
        """Start serving and return the base URL to use as `api_base_url`."""
        app = web.Application()
        app.router.add_post(f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json", self._create_message)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = int(self._runner.addresses[0][1])
        self._base_url = f"http://{self.host}:{self.port}"
        return self._base_url

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTwilio:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("FakeTwilio is not started")
        return self._base_url

    # --- scripting -----------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        code: int | None = None,
        message: str | None = None,
        *,
        retry_after: float | str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests with this error instead of creating a message.

        `code` defaults to Twilio's code for the status (429 -> 20429, 500 -> 20500...), and
        `message` to Twilio's wording for the code.
        """
        code = code if code is not None else _DEFAULT_CODE_FOR_STATUS.get(status, status)
        failure = ScriptedFailure(
            status=status,
            code=code,
            message=message or ERROR_MESSAGES.get(code, "Error"),
            retry_after=None if retry_after is None else str(retry_after),
        )
        self._failures.extend([failure] * times)

    def delay(self, seconds: float) -> None:
        """Hold every request this long before answering.

        A client that hangs up during the delay gets no message created, as when a worker dies
        before its request reached Twilio; a client that waits gets the normal answer.
        """
        self.request_delay = seconds

    async def wait_for_messages(self, count: int, within: float = 5.0) -> list[dict[str, Any]]:
        """Wait up to `within` seconds for at least `count` accepted messages; return them all."""
        async with asyncio.timeout(within), self._accepted:
            await self._accepted.wait_for(lambda: len(self.messages) >= count)
        return list(self.messages)

    # --- Twilio's side of the webhooks --------------------------------------------------------

    def sign(self, url: str, params: Mapping[str, str]) -> str:
        return sign_twilio_request(self.auth_token, url, params)

    async def post_webhook(self, url: str, params: Mapping[str, str]) -> tuple[int, bytes]:
        """POST a signed form webhook to `url`, as Twilio does; return the status and body."""
        if self._session is None:
            self._session = ClientSession()
        headers = {"X-Twilio-Signature": self.sign(url, params), "User-Agent": "TwilioProxy/1.1"}
        async with self._session.post(url, data=dict(params), headers=headers) as resp:
            return resp.status, await resp.read()

    async def post_status(self, url: str, message_sid: str, status: str, error_code: int | str | None = None) -> int:
        """Send a signed status callback for `message_sid` to `url`; return the HTTP status."""
        sent = next((m for m in self.messages if m["sid"] == message_sid), {})
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "MessageSid": message_sid,
            "SmsSid": message_sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "From": str(sent.get("From", "")),
            "To": str(sent.get("To", "")),
        }
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        status_code, _ = await self.post_webhook(url, params)
        return status_code

    async def post_inbound(
        self,
        url: str,
        from_: str,
        body: str,
        *,
        to: str = DEFAULT_NUMBER,
        media: Iterable[tuple[str, str]] = (),
        message_sid: str | None = None,
    ) -> tuple[int, bytes]:
        """Deliver a signed incoming SMS/MMS webhook to `url`."""
        params = inbound_message_params(
            from_, to, body, media=media, message_sid=message_sid, account_sid=self.account_sid
        )
        return await self.post_webhook(url, params)

    # --- the Messages API ----------------------------------------------------------------------

    def _error(self, status: int, code: int, message: str | None = None, **headers: str) -> web.Response:
        body = {
            "code": code,
            "message": message or ERROR_MESSAGES.get(code, "Error"),
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        return web.json_response(body, status=status, headers=headers)

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, self.account_sid) and secrets.compare_digest(password, self.auth_token)

    async def _create_message(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.request_delay:
            await asyncio.sleep(self.request_delay)
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=499)  # nobody is listening; create nothing
        if not self._authorized(request):
            return self._error(401, 20003)
        if request.match_info["account_sid"] != self.account_sid:
            return self._error(404, 20404)
        if self._failures:
            failure = self._failures.popleft()
            headers = {"Retry-After": failure.retry_after} if failure.retry_after is not None else {}
            return self._error(failure.status, failure.code, failure.message, **headers)

        form = await request.post()
        fields: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str) and k != "MediaUrl"}
        media = [v for v in form.getall("MediaUrl", []) if isinstance(v, str)]
        if media:
            fields["MediaUrl"] = media
        problem = self._validate(fields)
        if problem is not None:
            return self._error(400, problem)

        sid = _sid("SM")
        fields["sid"] = sid
        async with self._accepted:
            self.messages.append(fields)
            self._accepted.notify_all()
        return web.json_response(self._resource(sid, fields), status=201)

    def _validate(self, fields: Mapping[str, Any]) -> int | None:
        """Twilio's error code for an unacceptable request, checked in Twilio's order."""
        to = fields.get("To")
        if not to:
            return 21604
        if not fields.get("From") and not fields.get("MessagingServiceSid"):
            return 21603
        if not fields.get("Body") and not fields.get("MediaUrl") and not fields.get("ContentSid"):
            return 21602
        if fields.get("ContentSid"):
            if not str(fields["ContentSid"]).startswith("HX"):
                return 21655
            try:
                variables = json.loads(str(fields.get("ContentVariables") or "{}"))
            except ValueError:
                return 21656
            if not isinstance(variables, dict):
                return 21656
        number = str(to).removeprefix("whatsapp:")
        if not (number.startswith("+") and number[1:].isdigit() and 8 <= len(number) <= 16):
            return 21211
        if number in self.unsubscribed:
            return 21610
        if len(str(fields.get("Body", ""))) > 1600:
            return 21617
        return None

    def _resource(self, sid: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        now = _rfc2822_now()
        body = str(fields.get("Body", ""))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": fields.get("From"),
            "messaging_service_sid": fields.get("MessagingServiceSid"),
            "num_media": str(len(fields.get("MediaUrl", []))),
            "num_segments": str(max(1, count_segments(body))),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            # With a Messaging Service and no From, Twilio picks the sender later: "accepted".
            "status": "queued" if fields.get("From") else "accepted",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": fields.get("To"),
            "uri": f"{uri}.json",
        }


__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_AUTH_TOKEN",
    "DEFAULT_NUMBER",
    "FakeTwilio",
    "ScriptedFailure",
    "inbound_message_params",
    "sign_twilio_request",
]
