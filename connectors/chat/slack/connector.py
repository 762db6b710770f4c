"""Slack, kind `slack`: DMs to the company's Slack app and Slack Connect channels shared with customers.

Inbound arrives either as Events API webhooks at `/webhooks/{instance}/events` (signed with the
app's signing secret, v0 scheme, five-minute window) or, with `socket_mode = true`, over a Socket
Mode WebSocket the gateway opens itself (for deployments without a public URL). Both go through
the same pure parser (events.py). Outbound is chat.postMessage through slack_sdk's AsyncWebClient,
pointed at `api_base_url`; users.info tells who a sender is.

Rate limits are retried by our dispatcher (which honours Retry-After and keeps a customer's
replies in order), so the SDK client is built with no retry handlers of its own: two retry layers
would multiply the waits and could send one reply twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorSettings,
    FileUnavailable,
    MalformedPayload,
    Outbound,
    OverflowRule,
    ParseResult,
    PermanentSendError,
    PollContext,
    ProviderFile,
    Route,
    Secret,
    SendError,
    SignatureError,
    TextFormat,
    TextUnit,
    TransientSendError,
    WebhookRequest,
    WebhookResponse,
    http_url,
    retry_after_seconds,
)
from connectors.chat.slack.events import parse_event_callback
from connectors.chat.slack.socket import run_socket_mode
from conversation.model import Identity, Profile

MAX_AGE_SECONDS = 300  # Slack's own rule for X-Slack-Request-Timestamp
# What an agent may open through the gateway; Slack itself takes files of up to 1 GB.
MAX_FILE_BYTES = 50 * 1024 * 1024

# ok:false errors that say "later", not "never".
TRANSIENT_ERRORS = frozenset({
    "ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout", "team_added_to_org",
})

# The SDK logs request and response bodies (customers' words) at debug level; its records go
# through our masking handler, but the bodies are better never produced.
_sdk_log = logging.getLogger("connectors.chat.slack.sdk")
_sdk_log.setLevel(logging.INFO)


class SlackSettings(ConnectorSettings, kw_only=True):
    """`[connectors.<instance>]` with `kind = "slack"`."""

    kind: str = "slack"
    signing_secret: Secret | None = None
    bot_token: Secret
    socket_mode: bool = False
    app_token: Secret | None = None
    api_base_url: str = "https://slack.com/api/"
    link_by_email: bool = True
    # Our bot's user id; events name it in `authorizations` too, so this is only a fallback.
    bot_user_id: str | None = None
    timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        for name in ("signing_secret", "bot_token", "app_token"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Secret):
                setattr(self, name, Secret(value))
        if not self.bot_token.startswith("xoxb-"):
            raise ValueError("bot_token must be the app's bot token (xoxb-...), from OAuth & Permissions")
        if self.socket_mode:
            if not self.app_token:
                raise ValueError("socket_mode = true needs app_token (an app-level token, xapp-...)")
            if not self.app_token.startswith("xapp-"):
                raise ValueError("app_token must be an app-level token (xapp-...) with connections:write")
        elif not self.signing_secret:
            raise ValueError("signing_secret is required for the Events API (or set socket_mode = true)")
        # The SDK joins method names onto the base URL, which must end in a slash.
        self.api_base_url = http_url(self.api_base_url) + "/"
        if self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")


class SlackConnector(Connector[SlackSettings]):
    kind = "slack"
    channel = "slack"
    Settings = SlackSettings
    capabilities = Capabilities(
        # chat.postMessage truncates at 40,000 characters, but Slack asks for at most 4,000 for
        # readable messages; the core splits longer replies at paragraph boundaries.
        max_text_length=4000,
        text_unit=TextUnit.CHARACTERS,
        overflow=OverflowRule.SPLIT,
        formats=(TextFormat.SLACK_MRKDWN, TextFormat.MARKDOWN, TextFormat.PLAIN),
        # Uploading files takes Slack's multi-step external upload; replies carry links instead.
        attachment_kinds=(),
        threads=True,
        ack_deadline_seconds=3,
    )

    def __init__(self, instance: str, settings: SlackSettings, *, public_url: str) -> None:
        super().__init__(instance, settings, public_url=public_url)
        secret = settings.signing_secret
        self._verifier = SignatureVerifier(secret.reveal()) if secret else None
        self._session: aiohttp.ClientSession | None = None
        self._client: AsyncWebClient | None = None

    def routes(self) -> Sequence[Route]:
        return (Route("POST", "events"),) if self._verifier is not None else ()

    def polls(self) -> bool:
        return self.settings.socket_mode

    # --- inbound -------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        if self._verifier is None:
            raise SignatureError("this instance has no signing_secret (Socket Mode only)")
        timestamp = request.header("X-Slack-Request-Timestamp")
        signature = request.header("X-Slack-Signature")
        if not timestamp or not signature:
            raise SignatureError("missing X-Slack-Request-Timestamp or X-Slack-Signature")
        if not timestamp.isdigit():
            raise SignatureError("X-Slack-Request-Timestamp is not a Unix time")
        if abs(time.time() - int(timestamp)) > MAX_AGE_SECONDS:
            raise SignatureError("X-Slack-Request-Timestamp is more than five minutes off: a replay or a stale retry")
        try:
            valid = self._verifier.is_valid(request.body, timestamp, signature)
        except UnicodeDecodeError:
            valid = False  # Slack sends UTF-8 JSON; these bytes were not signed by it
        if not valid:
            raise SignatureError("X-Slack-Signature does not match the body")

    def parse(self, request: WebhookRequest) -> ParseResult:
        try:
            payload = json.loads(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedPayload(f"the body is not JSON: {exc}") from None
        return self.parse_payload(payload, request.received_at_ms)

    def parse_payload(self, payload: Any, received_at_ms: int) -> ParseResult:
        """One Events API payload, from a webhook or a Socket Mode envelope."""
        if not isinstance(payload, dict):
            raise MalformedPayload("the payload is not a JSON object")
        kind = payload.get("type")
        if kind == "url_verification":
            challenge = payload.get("challenge")
            if not isinstance(challenge, str):
                raise MalformedPayload("url_verification without a challenge")
            return ParseResult(response=WebhookResponse(200, challenge.encode(), "text/plain"))
        if kind == "event_callback":
            return ParseResult(messages=parse_event_callback(
                payload, instance=self.instance, received_at_ms=received_at_ms,
                bot_user_id=self.settings.bot_user_id,
            ))
        if kind == "app_rate_limited":
            return ParseResult()  # Slack tells us it dropped events; nothing to store
        raise MalformedPayload(f"unhandled Slack payload type {kind!r}")

    async def poll(self, ctx: PollContext) -> None:
        """Socket Mode: hold the WebSocket open and record every event it brings."""
        app_token = self.settings.app_token
        assert app_token is not None  # the settings refuse socket_mode without it
        await run_socket_mode(instance=self.instance, app_token=app_token.reveal(),
                              web_client=self.web_client(token=app_token.reveal()),
                              parse_payload=self.parse_payload, ctx=ctx)

    # --- outbound ------------------------------------------------------------------------------

    def web_client(self, token: str | None = None) -> AsyncWebClient:
        """The SDK client at api_base_url (bot token unless told), with no retry handlers."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds))
            self._client = None
        if token is not None:
            return AsyncWebClient(token=token, base_url=self.settings.api_base_url, session=self._session,
                                  timeout=int(self.settings.timeout_seconds), retry_handlers=[], logger=_sdk_log)
        if self._client is None:
            self._client = AsyncWebClient(
                token=self.settings.bot_token.reveal(), base_url=self.settings.api_base_url, session=self._session,
                timeout=int(self.settings.timeout_seconds), retry_handlers=[], logger=_sdk_log,
            )
        return self._client

    async def send(self, outbound: Outbound) -> str:
        if outbound.to.kind != "slack":
            raise PermanentSendError(f"Slack writes to Slack users, not {outbound.to.kind} identities")
        channel, thread_ts = reply_target(outbound.reply_to_provider_id, outbound.to)
        params: dict[str, Any] = {"channel": channel, "text": outbound.text}  # mrkdwn: the core rendered it
        if thread_ts:
            params["thread_ts"] = thread_ts
        try:
            response = await self.web_client().chat_postMessage(**params)
        except SlackApiError as exc:
            raise send_error(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise TransientSendError(f"Slack unreachable: {detail}") from exc
        ts = response.get("ts")
        if not ts:
            raise PermanentSendError("Slack accepted the message but returned no ts")
        # Our id carries the thread it went to, so that the next reply (handed this id back as
        # the thread's latest reference) lands in the same place.
        return f"{response.get('channel') or channel}:{ts}/{thread_ts or ''}"

    async def profile(self, identity: Identity) -> Profile | None:
        if identity.kind != "slack":
            return None
        _, _, user_id = identity.address.partition(":")
        response = await self.web_client().users_info(user=user_id, include_locale=True)
        user = response.get("user")
        if not isinstance(user, dict):
            return None
        prof = user.get("profile") if isinstance(user.get("profile"), dict) else {}
        assert isinstance(prof, dict)
        name = prof.get("display_name") or prof.get("real_name") or user.get("real_name") or user.get("name")
        address = prof.get("email")  # present only with the users:read.email scope
        email = address.strip().lower() if isinstance(address, str) and address.strip() else None
        return Profile(
            name=str(name) if name else None,
            email=email,
            # Slack confirms the address a person signs up with; unconfirmed ones never link.
            email_verified=bool(email) and self.settings.link_by_email and user.get("is_email_confirmed") is True,
            locale=str(user["locale"]) if isinstance(user.get("locale"), str) and user["locale"] else None,
        )

    async def fetch_file(self, url: str) -> ProviderFile | None:
        """A file a customer shared: Slack serves url_private only with the bot token. The token
        goes only to Slack's own hosts (or the configured API's, for a proxy or a test)."""
        host = (urlsplit(url).hostname or "").lower()
        api_host = (urlsplit(self.settings.api_base_url).hostname or "").lower()
        if not (host == "slack.com" or host.endswith(".slack.com") or host == api_host):
            raise FileUnavailable(f"not a Slack file URL (host {host!r}); the bot token is not sent there")
        self.web_client()  # opens the shared session
        assert self._session is not None
        headers = {"Authorization": f"Bearer {self.settings.bot_token.reveal()}"}
        try:
            async with self._session.get(url, headers=headers) as resp:
                if resp.status != 200:
                    raise FileUnavailable(f"Slack answered HTTP {resp.status} for the file")
                if resp.history and resp.content_type == "text/html":
                    # Slack redirects a request it does not accept to its sign-in page.
                    raise FileUnavailable("Slack redirected to its sign-in page: the bot token cannot read this file")
                data = await resp.content.read(MAX_FILE_BYTES + 1)
                if len(data) > MAX_FILE_BYTES:
                    raise FileUnavailable(f"the file is over {MAX_FILE_BYTES // (1024 * 1024)} MB")
                return ProviderFile(data, resp.headers.get("Content-Type", "application/octet-stream"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FileUnavailable(f"Slack could not be reached for the file: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        session, self._session, self._client = self._session, None, None
        if session is not None:
            await session.close()


def reply_target(ref: str | None, to: Identity) -> tuple[str, str | None]:
    """(channel, thread_ts) to post a reply to, from the thread's latest reference.

    References are the customer's `thread_ref`s (``C:thread`` or ``C``) and our own message ids
    (``C:ts/thread`` or ``C:ts/``). Without one, the reply opens (or continues) the app's direct
    message with the user: chat.postMessage accepts a user id as the channel.
    """
    if not ref:
        return to.address.partition(":")[2], None
    if "/" in ref:
        head, _, thread = ref.partition("/")
        return head.partition(":")[0], thread or None
    channel, _, ts = ref.partition(":")
    return channel, ts or None


def send_error(exc: SlackApiError) -> SendError:
    response: Any = exc.response
    status = int(getattr(response, "status_code", None) or getattr(response, "status", None) or 0)
    data = getattr(response, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    headers = getattr(response, "headers", None) or {}
    reason = str(error) if error else f"HTTP {status} from Slack"
    if status == 429 or error == "ratelimited":
        retry_after = retry_after_seconds(headers.get("Retry-After"))
        return TransientSendError(reason, code=str(error or status), retry_after=retry_after)
    if status >= 500 or error in TRANSIENT_ERRORS:
        return TransientSendError(reason, code=str(error or status))
    return PermanentSendError(reason, code=str(error or status))


__all__ = ["SlackConnector", "SlackSettings", "reply_target", "send_error"]
