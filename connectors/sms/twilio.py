"""Twilio Programmable Messaging: SMS and MMS (and WhatsApp numbers hosted at Twilio), kind `twilio`.

Inbound, Twilio posts form-encoded webhooks signed with the account's auth token: new messages to
`/webhooks/{instance}/messages` and delivery reports to `/webhooks/{instance}/status`. Outbound
goes through the official SDK's asyncio client, pointed at `api_base_url` so that tests and egress
proxies can stand in for api.twilio.com.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Literal
from urllib.parse import parse_qsl

import aiohttp
import msgspec
import phonenumbers
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.request_validator import SIGNATURE_HEADER, SIGNATURE_SETTINGS_HEADER, get_signature_algorithm
from twilio.rest import Client

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorSettings,
    MalformedPayload,
    Outbound,
    OverflowRule,
    ParseResult,
    PermanentSendError,
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
from connectors.sms import signature as twilio_signature
from conversation.model import Attachment, DeliveryStatus, Identity, InboundMessage, StatusUpdate, TemplateSpec
from conversation.phones import phone_address, reply_form

# Twilio reads the reply to a messaging webhook as TwiML; an empty document means "no auto-reply",
# and anything else (an empty or plain-text body) is logged as an error in the customer's console.
EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

OptOut = Literal["stop", "start", "help"]

# Twilio's default opt-out keywords, matched against the whole trimmed body, in any case.
OPT_OUT_KEYWORDS: Mapping[str, OptOut] = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"), "stop"),
    **dict.fromkeys(("START", "YES", "UNSTOP"), "start"),
    **dict.fromkeys(("HELP", "INFO"), "help"),
}

MESSAGE_STATUS: Mapping[str, DeliveryStatus] = {
    "accepted": DeliveryStatus.QUEUED,
    "scheduled": DeliveryStatus.QUEUED,
    "queued": DeliveryStatus.QUEUED,
    "sending": DeliveryStatus.QUEUED,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "undelivered": DeliveryStatus.FAILED,
    "failed": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.FAILED,
}

# Status callbacks carry only the numeric ErrorCode. Agents read the failure reason in the inbox,
# so the common delivery errors get Twilio's own wording; others point to Twilio's error page.
ERROR_DESCRIPTIONS: Mapping[str, str] = {
    "21610": "Attempt to send to unsubscribed recipient",
    "30001": "Queue overflow",
    "30002": "Account suspended",
    "30003": "Unreachable destination handset",
    "30004": "Message blocked",
    "30005": "Unknown destination handset",
    "30006": "Landline or unreachable carrier",
    "30007": "Message filtered by the carrier",
    "30008": "Unknown error",
    "30009": "Missing segment",
    "30010": "Message price exceeds max price",
    "63016": "Outside the WhatsApp 24-hour window: a template is required",
}

UNSUBSCRIBED_RECIPIENT = 21610
OUTSIDE_WINDOW = 63016  # WhatsApp free text outside the 24-hour window

# Twilio prefixes channel addresses ("whatsapp:+34600111222"); the number behind it is the same
# phone identity as the plain SMS sender, only the medium differs.
_CHANNEL_PREFIXES: Mapping[str, str] = {"whatsapp": "whatsapp"}


@functools.lru_cache(maxsize=16_384)
def e164(raw: str, default_region: str = "US") -> str:
    """`raw` as an E.164 number ("+34600111222"), or ValueError when it is not a phone number.

    Numbers without a country code are read as `default_region` numbers. Only the number's shape
    is checked (is_possible_number), not its allocation: test ranges such as +1 555 are real
    traffic in staging and must not be turned away as garbage.

    Cached because phonenumbers takes tens of microseconds per number, a large share of the ack
    path, and customers write again and again from the same numbers. Bounded (about 3 MB at
    most); a number that does not parse raises again each time, which is not cached.
    """
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        raise ValueError(f"{raw!r} is not a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise ValueError(f"{raw!r} is not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class TwilioTemplate(TemplateSpec, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An approved WhatsApp template in Twilio's Content API: sent by its ContentSid (HX...)."""

    content_sid: str


class TwilioSettings(ConnectorSettings, kw_only=True):
    """`[connectors.<instance>]` with `kind = "twilio"`."""

    kind: str = "twilio"
    account_sid: str
    auth_token: Secret
    from_number: str | None = None
    messaging_service_sid: str | None = None
    api_base_url: str = "https://api.twilio.com"
    status_callback: bool = True
    default_region: str = "US"
    # The SDK's asyncio client waits forever by default; a stuck send would hold a worker.
    timeout_seconds: float = 15.0
    # WhatsApp templates, the only messages allowed outside the 24-hour window.
    templates: list[TwilioTemplate] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        # msgspec turns ValueError raised here into a ValidationError naming the problem, which
        # `check-config` shows as is: every message names the offending key.
        if not isinstance(self.auth_token, Secret):
            self.auth_token = Secret(self.auth_token)
        if not self.account_sid.startswith("AC"):
            raise ValueError(f"account_sid must start with 'AC' (the account SID), not {self.account_sid!r}")
        if not self.auth_token:
            raise ValueError("auth_token is empty")
        if (self.from_number is None) == (self.messaging_service_sid is None):
            raise ValueError("set exactly one of from_number or messaging_service_sid")
        self.default_region = self.default_region.upper()
        if self.default_region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"default_region {self.default_region!r} is not an ISO 3166 region code")
        if self.from_number is not None:
            try:
                self.from_number = e164(self.from_number, self.default_region)
            except ValueError as exc:
                raise ValueError(f"from_number: {exc}") from None
        if self.messaging_service_sid is not None and not self.messaging_service_sid.startswith("MG"):
            raise ValueError(f"messaging_service_sid must start with 'MG', not {self.messaging_service_sid!r}")
        self.api_base_url = http_url(self.api_base_url)
        if self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        for template in self.templates:
            if not template.content_sid.startswith("HX"):
                raise ValueError(f"templates: {template.name!r} content_sid must start with 'HX' (a Content "
                                 f"API SID), not {template.content_sid!r}")


# The SDK raises TwilioRestException without the response headers, and Retry-After lives there.
# The HTTP client records each response in the calling task's context, so concurrent sends each
# see their own.
_last_response: ContextVar[TwilioResponse | None] = ContextVar("twilio_last_response", default=None)


class _HttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]  # twilio ships no type hints
    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  (the SDK's signature)
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        if auth is not None:
            # aiohttp deprecates BasicAuth objects, which the SDK would build from `auth`.
            headers = {**(headers or {}), "Authorization": _basic_auth(*auth)}
        response: TwilioResponse = await super().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            # The parent ignores its own `timeout` and passes None to aiohttp, meaning no limit.
            timeout=self.timeout if timeout is None else timeout,
            allow_redirects=allow_redirects,
        )
        _last_response.set(response)
        return response


class TwilioConnector(Connector[TwilioSettings]):
    """One Twilio sender (a number or a Messaging Service) and its webhooks."""

    kind = "twilio"
    channel = "sms"
    identity_kind = "phone"  # SMS and WhatsApp reach one phone identity
    Settings = TwilioSettings
    capabilities = Capabilities(
        max_text_length=1600,
        text_unit=TextUnit.CHARACTERS,
        overflow=OverflowRule.SPLIT,
        formats=(TextFormat.PLAIN,),
        attachment_kinds=("image/", "video/", "audio/", "application/pdf", "text/vcard"),
        max_attachment_bytes=5 * 1024 * 1024,
        max_attachments=10,
        # Twilio gives up on a webhook after 15 seconds and logs error 11200.
        ack_deadline_seconds=15,
    )
    # WhatsApp through Twilio: free-form replies only within 24 h of the customer's last message.
    channel_capabilities = {
        "whatsapp": msgspec.structs.replace(
            capabilities, reply_window_seconds=24 * 3600, outside_window="template", formats=(TextFormat.WHATSAPP,),
            attachment_kinds=("image/", "video/", "audio/", "application/pdf"), max_attachments=1,
        ),
    }
    # Twilio logs anything but TwiML on the messages webhook as an error in the console.
    malformed_response = WebhookResponse(200, EMPTY_TWIML, "text/xml")

    def __init__(self, instance: str, settings: TwilioSettings, *, public_url: str) -> None:
        super().__init__(instance, settings, public_url=public_url)
        self._token = settings.auth_token.reveal().encode("utf-8")
        self._http: _HttpClient | None = None
        self._client: Any = None

    def routes(self) -> Sequence[Route]:
        return (Route("POST", "messages"), Route("POST", "status"))

    # --- inbound -------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        signature = request.header(SIGNATURE_HEADER)
        if not signature:
            raise SignatureError(f"missing {SIGNATURE_HEADER} header")
        algorithm = get_signature_algorithm(request.header(SIGNATURE_SETTINGS_HEADER))
        # JSON-bodied webhooks sign the URL alone, and the URL carries the body's SHA-256.
        params = () if twilio_signature.signed_url(request.url).body_sha256 is not None else _signed_params(request)
        try:
            valid = twilio_signature.validate(self._token, request.url, params, request.body, signature, algorithm)
        except twilio_signature.UnsupportedAlgorithm as exc:
            raise SignatureError(str(exc)) from None
        if not valid:
            raise SignatureError(f"{SIGNATURE_HEADER} does not match the request to {request.url}")

    def parse(self, request: WebhookRequest) -> ParseResult:
        form = _strict_form(request)
        if request.path == "messages":
            message = self._parse_message(form, request.received_at_ms)
            return ParseResult(messages=(message,), response=WebhookResponse(200, EMPTY_TWIML, "text/xml"))
        if request.path == "status":
            return ParseResult(statuses=(self._parse_status(form, request.received_at_ms),))
        raise MalformedPayload(f"no Twilio webhook is served at {request.path!r}")

    def _parse_message(self, form: Mapping[str, str], received_at_ms: int) -> InboundMessage:
        sid = _message_sid(form)
        sender = form.get("From")
        if not sender:
            raise MalformedPayload("the message has no From number")
        channel, address = self._address(sender, "From")
        text = form.get("Body", "")
        extra = {"to": form["To"]} if form.get("To") else {}
        return InboundMessage(
            instance=self.instance,
            channel=channel,
            provider_message_id=sid,
            sender=Identity("phone", address),
            reply_address=reply_form(sender.partition(":")[2] or sender, address),
            text=text,
            attachments=_media(form),
            sender_name=form.get("ProfileName") or None,
            received_at_ms=received_at_ms,
            opt_out=_opt_out(form.get("OptOutType"), text),
            extra=extra,
        )

    def _parse_status(self, form: Mapping[str, str], received_at_ms: int) -> StatusUpdate:
        sid = _message_sid(form)
        raw_status = form.get("MessageStatus") or form.get("SmsStatus")
        if not raw_status:
            raise MalformedPayload(f"status callback for {sid} has no MessageStatus")
        status = MESSAGE_STATUS.get(raw_status.lower())
        if status is None:
            raise MalformedPayload(f"status callback for {sid} has an unknown MessageStatus {raw_status!r}")
        return StatusUpdate(
            instance=self.instance,
            provider_message_id=sid,
            status=status,
            error=_error_reason(form.get("ErrorCode"), form.get("ErrorMessage")),
            at_ms=received_at_ms,
            window_closed=form.get("ErrorCode") == str(OUTSIDE_WINDOW),
        )

    def _address(self, raw: str, field: str) -> tuple[str, str]:
        """(channel, phone identity address) of a Twilio address such as "+34600..." or
        "whatsapp:+34600...": E.164, or the number as given when it is not one."""
        channel = self.channel
        prefix, colon, number = raw.partition(":")
        if colon:
            if prefix.lower() not in _CHANNEL_PREFIXES:
                raise MalformedPayload(f"{field} {raw!r} is on a channel this connector does not handle")
            channel = _CHANNEL_PREFIXES[prefix.lower()]
        else:
            number = raw
        if not number.strip():
            raise MalformedPayload(f"{field} {raw!r} has no number")
        # A number the phone library calls impossible is still the customer's: kept as given.
        return channel, phone_address(number, self.settings.default_region)

    # --- outbound ------------------------------------------------------------------------------

    def _sdk_client(self) -> Any:
        if self._client is None:
            self._http = _HttpClient(timeout=self.settings.timeout_seconds)
            client = Client(self.settings.account_sid, self.settings.auth_token.reveal(), http_client=self._http)
            # The SDK builds every URL from the domain's base_url; api_base_url replaces the host
            # and keeps the path (/2010-04-01/Accounts/{sid}/Messages.json). Region and edge would
            # rewrite the host again (they may come from TWILIO_REGION / TWILIO_EDGE in the
            # environment), so api_base_url is made the one place that says where requests go.
            client.api.base_url = self.settings.api_base_url
            client.region = None
            client.edge = None
            self._client = client
        return self._client

    async def send(self, outbound: Outbound) -> str:
        if outbound.to.kind != "phone":
            raise PermanentSendError(f"Twilio texts phone numbers, not {outbound.to.kind} identities")
        # A WhatsApp reply goes to the same number, addressed on Twilio's whatsapp: channel.
        prefix = "whatsapp:" if outbound.channel == "whatsapp" else ""
        params: dict[str, Any] = {"to": prefix + outbound.to.address}
        if outbound.template is not None:
            # Outside the window only an approved template goes, by its Content SID; Twilio
            # fills its {{1}}, {{2}}... from ContentVariables.
            params["content_sid"] = self._template(outbound.template.name, outbound.template.language).content_sid
            params["content_variables"] = json.dumps(
                {str(n): value for n, value in enumerate(outbound.template.parameters, start=1)}, ensure_ascii=False)
        else:
            params["body"] = outbound.text
        if self.settings.from_number is not None:
            params["from_"] = prefix + self.settings.from_number
        else:
            params["messaging_service_sid"] = self.settings.messaging_service_sid
        if outbound.attachments:
            params["media_url"] = [a.url for a in outbound.attachments]
        callback = outbound.status_callback_url or (
            self.webhook_url("status") if self.settings.status_callback else None
        )
        if callback:
            params["status_callback"] = callback

        client = self._sdk_client()
        token = _last_response.set(None)
        try:
            message = await client.messages.create_async(**params)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise _send_error(exc, _last_response.get()) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Twilio may have accepted a message whose answer we never saw; retrying risks a
            # duplicate, giving up risks silence. A customer prefers the duplicate.
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise TransientSendError(f"Twilio unreachable: {detail}") from exc
        finally:
            _last_response.reset(token)
        if not message.sid:
            # Not retried: Twilio answered 2xx, so the message probably exists and would go twice.
            raise PermanentSendError("Twilio accepted the message but returned no sid")
        return str(message.sid)

    def _template(self, name: str, language: str) -> TwilioTemplate:
        for template in self.settings.templates:
            if template.name == name and template.language == language:
                return template
        # The core checks templates when the reply is composed; a config reload may drop one.
        raise PermanentSendError(f"template {name!r} ({language}) is no longer configured on {self.instance!r}")

    async def aclose(self) -> None:
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.close()


# --- helpers --------------------------------------------------------------------------------------


def _basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _signed_params(request: WebhookRequest) -> Sequence[tuple[str, str]]:
    """The form fields as Twilio signed them: decoded, with undecodable bytes replaced.

    Replaced rather than rejected: a forged body still fails the HMAC, and an authentic but broken
    one reaches parse(), which dead-letters it instead of answering 403.
    """
    try:
        return request.form_pairs  # parsed once, shared with parse()
    except UnicodeDecodeError:
        return parse_qsl(request.body.decode("utf-8", errors="replace"), keep_blank_values=True)


def _strict_form(request: WebhookRequest) -> dict[str, str]:
    """The form's fields, or MalformedPayload when the body or a %-escape in it is not UTF-8."""
    try:
        pairs = request.form_pairs
        # form_pairs replaces undecodable %-escapes with U+FFFD; only then is the strict parse
        # needed, to tell an escape that is not UTF-8 from a customer who typed U+FFFD.
        if any("\ufffd" in name or "\ufffd" in value for name, value in pairs):
            pairs = tuple(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, errors="strict"))
    except UnicodeDecodeError as exc:
        raise MalformedPayload(f"the form body is not valid UTF-8 (byte {exc.start}: {exc.reason})") from None
    return dict(pairs)


def _message_sid(form: Mapping[str, str]) -> str:
    sid = form.get("MessageSid") or form.get("SmsSid")
    if not sid:
        raise MalformedPayload("the webhook has no MessageSid")
    return sid


def _media(form: Mapping[str, str]) -> tuple[Attachment, ...]:
    raw_count = form.get("NumMedia") or "0"
    try:
        count = int(raw_count)
    except ValueError:
        raise MalformedPayload(f"NumMedia {raw_count!r} is not a number") from None
    attachments = []
    for i in range(count):
        url = form.get(f"MediaUrl{i}")
        if not url:
            # Dropping a photo the customer sent without a trace is worse than dead-lettering.
            raise MalformedPayload(f"NumMedia is {count} but MediaUrl{i} is missing")
        content_type = form.get(f"MediaContentType{i}") or "application/octet-stream"
        attachments.append(Attachment(url=url, content_type=content_type))
    return tuple(attachments)


def _opt_out(opt_out_type: str | None, body: str) -> OptOut | None:
    # Twilio's Advanced Opt-Out sends its own verdict (custom keywords included); trust it first.
    if opt_out_type:
        verdict = OPT_OUT_KEYWORDS.get(opt_out_type.strip().upper())
        if verdict is not None:
            return verdict
    return OPT_OUT_KEYWORDS.get(body.strip().upper())


def _error_reason(code: str | None, message: str | None) -> str | None:
    if not code:
        return message or None
    description = message or ERROR_DESCRIPTIONS.get(code)
    return f"{code}: {description}" if description else f"{code}: see https://www.twilio.com/docs/errors/{code}"


def _send_error(exc: TwilioRestException | TwilioServiceException, response: TwilioResponse | None) -> SendError:
    status = int(exc.status)
    code = exc.code if exc.code is not None else status
    if isinstance(exc, TwilioServiceException):
        message = exc.detail or exc.title
    else:
        # The SDK prepends its own "Unable to create record: " to Twilio's message.
        message = str(exc.msg).removeprefix("Unable to create record: ")
    reason = f"{code}: {message}"
    if status == 429 or status >= 500:
        headers = response.headers if response is not None and response.headers is not None else {}
        retry_after = retry_after_seconds(headers.get("Retry-After"))
        return TransientSendError(reason, code=str(code), retry_after=retry_after)
    return PermanentSendError(reason, code=str(code), opted_out=code == UNSUBSCRIBED_RECIPIENT,
                              window_closed=code == OUTSIDE_WINDOW)


__all__ = [
    "EMPTY_TWIML",
    "MESSAGE_STATUS",
    "OPT_OUT_KEYWORDS",
    "TwilioConnector",
    "TwilioSettings",
    "TwilioTemplate",
    "e164",
]
