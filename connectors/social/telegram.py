"""Telegram, kind `telegram`: one bot, its private chats with customers.

Telegram posts each update to `/webhooks/{instance}/updates` with the secret token we gave
setWebhook in `X-Telegram-Bot-Api-Secret-Token` (it signs nothing else). Customers are Telegram
user ids (identity kind `telegram`); group chats are not customers and are skipped. Files stay
at Telegram and are fetched through getFile when an agent opens them. Replies go through the Bot
API's sendMessage, sendPhoto and sendDocument.

Ids: chat and user ids may exceed 2^53, so they are read as integers by a JSON decoder that
never goes through a float, kept as decimal strings, and sent back as integers.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import msgspec

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
    ProviderFile,
    Route,
    Secret,
    SendError,
    SignatureError,
    TextFormat,
    TextUnit,
    TransientSendError,
    WebhookRequest,
    http_url,
    non_empty_secret,
)
from conversation.model import Attachment, Identity, InboundMessage, MessageEdit

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# A file URL of ours: the bot token is never part of what is stored or shown.
FILE_SCHEME = "telegram-file:"
MAX_FILE_BYTES = 20 * 1024 * 1024  # what getFile lets a bot download
# The update kinds we subscribe to in setWebhook.
ALLOWED_UPDATES = ("message", "edited_message")


class TelegramSettings(ConnectorSettings, kw_only=True):
    """`[connectors.<instance>]` with `kind = "telegram"`."""

    kind: str = "telegram"
    bot_token: Secret
    secret_token: Secret
    api_base_url: str = "https://api.telegram.org"
    timeout_seconds: float = 15.0

    def __post_init__(self) -> None:
        self.bot_token = non_empty_secret(self.bot_token, "bot_token")
        self.secret_token = non_empty_secret(self.secret_token, "secret_token")
        bot_id, colon, _ = self.bot_token.reveal().partition(":")
        if not (colon and bot_id.isdigit()):
            raise ValueError("bot_token must be the token BotFather gave, '<bot id>:<secret>'")
        secret = self.secret_token.reveal()
        # Telegram's rule for secret_token: 1-256 characters of A-Z, a-z, 0-9, _ and -.
        if not (1 <= len(secret) <= 256 and all(c.isascii() and (c.isalnum() or c in "_-") for c in secret)):
            raise ValueError("secret_token must be 1-256 characters of A-Z, a-z, 0-9, '_' and '-'")
        self.api_base_url = http_url(self.api_base_url)
        if self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")


class BotApiError(Exception):
    def __init__(self, status: int, description: str, retry_after: float | None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def as_send_error(self) -> SendError:
        reason = f"{self.status}: {self.description}"
        if self.status == 429 or self.status >= 500:
            return TransientSendError(reason, code=str(self.status), retry_after=self.retry_after)
        # 400 chat not found, 403 blocked by the user or deactivated: retrying changes nothing.
        return PermanentSendError(reason, code=str(self.status))


class TelegramConnector(Connector[TelegramSettings]):
    kind = "telegram"
    channel = "telegram"
    Settings = TelegramSettings
    capabilities = Capabilities(
        max_text_length=4096,
        text_unit=TextUnit.CHARACTERS,
        overflow=OverflowRule.SPLIT,
        formats=(TextFormat.PLAIN,),
        attachment_kinds=("image/", "application/", "text/", "audio/", "video/"),
        max_attachment_bytes=20 * 1024 * 1024,  # sending by URL: 5 MB photos, 20 MB other files
        max_attachments=10,
        ack_deadline_seconds=10,
    )

    def __init__(self, instance: str, settings: TelegramSettings, *, public_url: str) -> None:
        super().__init__(instance, settings, public_url=public_url)
        self._secret = settings.secret_token.reveal().encode()
        self._session: aiohttp.ClientSession | None = None

    def routes(self) -> Sequence[Route]:
        return (Route("POST", "updates"),)

    def setup_steps(self, *, reveal: bool = False) -> Sequence[str]:
        """The setWebhook call that points the bot at this gateway with its secret token."""
        token = self.settings.bot_token.reveal() if reveal else "<bot_token>"
        secret = self.settings.secret_token.reveal() if reveal else "<secret_token>"
        params = {"url": self.webhook_url("updates"), "secret_token": secret,
                  "allowed_updates": json.dumps(list(ALLOWED_UPDATES))}
        call = f"curl -sS {self.settings.api_base_url}/bot{token}/setWebhook " + " ".join(
            f"--data-urlencode {k}={_shell(v)}" for k, v in params.items())
        return (call,)

    # --- inbound -------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        given = (request.header(SECRET_HEADER) or "").encode()
        if not given or not hmac.compare_digest(given, self._secret):
            raise SignatureError(f"{SECRET_HEADER} does not match the configured secret_token")

    def parse(self, request: WebhookRequest) -> ParseResult:
        try:
            update = msgspec.json.decode(request.body)  # integers stay integers, however large
        except msgspec.DecodeError as exc:
            raise MalformedPayload(f"the update is not JSON: {exc}") from None
        if not isinstance(update, Mapping) or not isinstance(update.get("update_id"), int):
            raise MalformedPayload("the update has no update_id")
        update_id = update["update_id"]
        for kind in ALLOWED_UPDATES:
            message = update.get(kind)
            if isinstance(message, Mapping):
                break
        else:
            return ParseResult(skipped=("unsupported_update",))  # channel posts, callback queries...
        chat = message.get("chat")
        sender = message.get("from")
        if not isinstance(chat, Mapping) or not isinstance(chat.get("id"), int):
            raise MalformedPayload(f"update {update_id}: the message has no chat.id")
        if chat.get("type") != "private":
            return ParseResult(skipped=("group_chat",))  # groups and channels are not customers
        if not isinstance(sender, Mapping) or not isinstance(sender.get("id"), int):
            raise MalformedPayload(f"update {update_id}: the message has no from.id")
        if sender.get("is_bot"):
            return ParseResult(skipped=("bot",))
        message_id = message.get("message_id")
        if not isinstance(message_id, int):
            raise MalformedPayload(f"update {update_id}: the message has no message_id")
        chat_id = str(chat["id"])
        key = f"{chat_id}:{message_id}"
        text, attachments = _content(message)
        sent_ms = int(message.get("date") or 0) * 1000
        extra = {"chat_id": chat_id, "update_id": str(update_id)}
        if sender.get("username"):
            extra["username"] = str(sender["username"])
        edit = None
        provider_id = key
        if kind == "edited_message":
            # Each edit is its own update: the edit dedupes on update_id, and lands on its message.
            provider_id = f"{key}~edit:{update_id}"
            edit = MessageEdit(target=key, at_ms=int(message.get("edit_date") or 0) * 1000)
        return ParseResult(messages=(InboundMessage(
            instance=self.instance, channel=self.channel, provider_message_id=provider_id,
            sender=Identity("telegram", str(sender["id"])), text=text, attachments=attachments,
            sender_name=_name(sender), received_at_ms=request.received_at_ms, sent_at_ms=sent_ms,
            extra=extra, edit=edit,
            # The language of the user's Telegram app (IETF tag): replies use it unless they set one.
            locale=str(sender["language_code"]) if isinstance(sender.get("language_code"), str) else None,
        ),))

    # --- outbound ------------------------------------------------------------------------------

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds))
        return self._session

    async def call(self, method: str, params: Mapping[str, Any]) -> Any:
        """One Bot API method; its `result`, or BotApiError with Telegram's description."""
        url = f"{self.settings.api_base_url}/bot{self.settings.bot_token.reveal()}/{method}"
        try:
            async with self._open().post(url, json=params) as resp:
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            # The URL holds the bot token: never let aiohttp's message (which names it) through.
            raise TransientSendError(f"Telegram could not be reached: {detail}".replace(
                self.settings.bot_token.reveal(), "<bot_token>")) from None
        try:
            body = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            body = None
        if isinstance(body, Mapping) and body.get("ok") is True:
            return body.get("result")
        if not isinstance(body, Mapping):
            raise BotApiError(resp.status, f"HTTP {resp.status} without a Bot API answer", None)
        parameters = body.get("parameters") if isinstance(body.get("parameters"), Mapping) else {}
        retry_after = parameters.get("retry_after") if isinstance(parameters, Mapping) else None
        raise BotApiError(int(body.get("error_code") or resp.status), str(body.get("description") or "error"),
                          float(retry_after) if isinstance(retry_after, int | float) else None)

    async def send(self, outbound: Outbound) -> str:
        if outbound.to.kind != "telegram" or not outbound.to.address.lstrip("-").isdigit():
            raise PermanentSendError(f"Telegram messages go to telegram user ids, not {outbound.to.key}")
        chat_id = int(outbound.to.address)  # exact: Python ints are not floats
        calls: list[tuple[str, dict[str, Any]]] = []
        if outbound.text:
            calls.append(("sendMessage", {"chat_id": chat_id, "text": outbound.text}))  # plain: rendered by the core
        for attachment in outbound.attachments:
            if attachment.content_type.startswith("image/"):
                calls.append(("sendPhoto", {"chat_id": chat_id, "photo": attachment.url}))
            else:
                calls.append(("sendDocument", {"chat_id": chat_id, "document": attachment.url}))
        if not calls:
            raise PermanentSendError("nothing to send: no text or attachment")
        first: str | None = None
        for method, params in calls:
            try:
                result = await self.call(method, params)
            except BotApiError as exc:
                if first is not None:
                    raise PermanentSendError(f"sent as {first}, but an attachment failed: {exc.description}") from None
                raise exc.as_send_error() from None
            if not isinstance(result, Mapping) or not isinstance(result.get("message_id"), int):
                raise PermanentSendError("Telegram accepted the message but returned no message_id")
            first = first or f"{chat_id}:{result['message_id']}"
        assert first is not None
        return first

    async def fetch_file(self, url: str) -> ProviderFile | None:
        if not url.startswith(FILE_SCHEME):
            return None
        file_id = url.removeprefix(FILE_SCHEME)
        try:
            info = await self.call("getFile", {"file_id": file_id})
        except (BotApiError, TransientSendError) as exc:
            raise FileUnavailable(f"Telegram getFile: {exc}") from None
        path = info.get("file_path") if isinstance(info, Mapping) else None
        if not isinstance(path, str):
            raise FileUnavailable("Telegram gave no file_path (the file may be over 20 MB)")
        download = f"{self.settings.api_base_url}/file/bot{self.settings.bot_token.reveal()}/{path}"
        try:
            async with self._open().get(download) as resp:
                if resp.status != 200:
                    raise FileUnavailable(f"Telegram answered HTTP {resp.status} for the file")
                data = await resp.content.read(MAX_FILE_BYTES + 1)
                if len(data) > MAX_FILE_BYTES:
                    raise FileUnavailable("the file is over 20 MB")
                return ProviderFile(data, resp.headers.get("Content-Type", "application/octet-stream"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FileUnavailable(f"Telegram could not be reached for the file: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _name(user: Mapping[str, Any]) -> str | None:
    name = " ".join(str(user[k]) for k in ("first_name", "last_name") if user.get(k))
    username = user.get("username")
    if name and username:
        return f"{name} (@{username})"
    return name or (f"@{username}" if username else None)


def _content(message: Mapping[str, Any]) -> tuple[str, tuple[Attachment, ...]]:
    text = str(message.get("text") or message.get("caption") or "")
    files: list[Attachment] = []
    photos = message.get("photo")
    if isinstance(photos, list) and photos:
        largest = max((p for p in photos if isinstance(p, Mapping)), key=lambda p: int(p.get("file_size") or 0)
                      or int(p.get("width") or 0) * int(p.get("height") or 0))
        files.append(_file(largest, "image/jpeg"))
    for key, default in (("document", "application/octet-stream"), ("voice", "audio/ogg"), ("audio", "audio/mpeg"),
                         ("video", "video/mp4"), ("video_note", "video/mp4"), ("sticker", "image/webp"),
                         ("animation", "video/mp4")):
        item = message.get(key)
        if isinstance(item, Mapping) and item.get("file_id"):
            if key == "animation" and message.get("document"):
                continue  # an animation also comes as its document
            files.append(_file(item, default))
            if key == "sticker" and item.get("emoji") and not text:
                text = str(item["emoji"])
    if not text and not files:
        kinds = [k for k in ("location", "contact", "poll", "venue", "dice") if k in message]
        text = _other(message, kinds[0] if kinds else "message")
    return text, tuple(files)


def _file(item: Mapping[str, Any], default_type: str) -> Attachment:
    size = item.get("file_size")
    return Attachment(url=FILE_SCHEME + str(item["file_id"]), content_type=str(item.get("mime_type") or default_type),
                      name=str(item["file_name"]) if item.get("file_name") else None,
                      size=size if isinstance(size, int) else None)


def _other(message: Mapping[str, Any], kind: str) -> str:
    body = message.get(kind)
    if kind in ("location", "venue") and isinstance(body, Mapping):
        where = body.get("location") if kind == "venue" else body
        if isinstance(where, Mapping):
            label = f"{body.get('title')}, {body.get('address')}\n" if kind == "venue" else ""
            return f"📍 {label}https://www.google.com/maps/search/?api=1&query={where.get('latitude')}," \
                   f"{where.get('longitude')}"
    if kind == "contact" and isinstance(body, Mapping):
        name = " ".join(str(body[k]) for k in ("first_name", "last_name") if body.get(k))
        return f"👤 {name}\nphone: {body.get('phone_number')}"
    return f"[The customer sent a Telegram {kind} that cannot be shown here]"


def _shell(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


__all__ = ["TelegramConnector", "TelegramSettings"]
