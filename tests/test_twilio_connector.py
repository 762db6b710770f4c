"""The Twilio connector: signed webhooks in, the real twilio SDK out, against a fake Twilio."""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import importlib.metadata
import re
import socket
import warnings
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from connectors.base import (
    MalformedPayload,
    Outbound,
    PermanentSendError,
    SettingsError,
    SignatureError,
    TransientSendError,
    WebhookRequest,
)
from connectors.sms.twilio import EMPTY_TWIML, TwilioConnector, TwilioSettings
from connectors.testing.fake_twilio import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    FakeTwilio,
    inbound_message_params,
    sign_twilio_request,
)
from conversation.model import Attachment, DeliveryStatus, Identity

PUBLIC_URL = "https://gw.example.com"
BUSINESS = "+15550001111"
CUSTOMER = "+34600111222"
RECEIVED_AT = 1_700_000_000_123


def make_connector(**overrides: Any) -> TwilioConnector:
    raw: dict[str, Any] = {
        "kind": "twilio",
        "account_sid": DEFAULT_ACCOUNT_SID,
        "auth_token": DEFAULT_AUTH_TOKEN,
        "from_number": BUSINESS,
        "api_base_url": "http://127.0.0.1:9",  # nothing listens: a send would fail loudly
    }
    raw.update(overrides)
    raw = {k: v for k, v in raw.items() if v is not None}
    connector = TwilioConnector.from_config("sms", raw, public_url=PUBLIC_URL)
    assert isinstance(connector, TwilioConnector)
    return connector


@pytest.fixture
def connector() -> TwilioConnector:
    return make_connector()


@pytest.fixture
async def live(fake_twilio: FakeTwilio) -> AsyncIterator[TwilioConnector]:
    connector = make_connector(api_base_url=fake_twilio.base_url)
    yield connector
    await connector.aclose()


def webhook(
    path: str,
    params: Mapping[str, str],
    *,
    url: str | None = None,
    signed_url: str | None = None,
    token: str = DEFAULT_AUTH_TOKEN,
    body: bytes | None = None,
    signature: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> WebhookRequest:
    """A request as the gateway hands it to the connector, signed as Twilio would sign it."""
    url = url or f"{PUBLIC_URL}/webhooks/sms/{path}"
    if signature is None:
        signature = sign_twilio_request(token, signed_url or url, params)
    all_headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
    all_headers.update(headers or {})
    return WebhookRequest(
        method="POST",
        url=url,
        path=path,
        headers=all_headers,
        query={},
        body=urlencode(params).encode() if body is None else body,
        received_at_ms=RECEIVED_AT,
    )


def sms(body: str = "Hola, ¿tenéis cita mañana?", **extra: str) -> dict[str, str]:
    return inbound_message_params(CUSTOMER, BUSINESS, body, message_sid="SM" + "a" * 32, extra=extra)


def status(message_status: str, **extra: str) -> dict[str, str]:
    params = {
        "MessageSid": "SM" + "b" * 32,
        "SmsSid": "SM" + "b" * 32,
        "MessageStatus": message_status,
        "SmsStatus": message_status,
        "AccountSid": DEFAULT_ACCOUNT_SID,
        "From": BUSINESS,
        "To": CUSTOMER,
        "ApiVersion": "2010-04-01",
    }
    params.update(extra)
    return params


def outbound(text: str = "Gracias, te escribimos enseguida.", **kw: Any) -> Outbound:
    kw.setdefault("channel", "sms")
    return Outbound(message_id="msg-1", to=Identity("phone", CUSTOMER), text=text, **kw)


# --- settings -------------------------------------------------------------------------------------


def test_the_entry_point_loads_this_connector() -> None:
    (entry,) = importlib.metadata.entry_points(group="omnigateway.connectors", name="twilio")
    assert entry.load() is TwilioConnector
    assert TwilioConnector.kind == "twilio" and TwilioConnector.channel == "sms"


def test_from_number_is_normalized_to_e164() -> None:
    assert make_connector(from_number="(415) 555-0100").settings.from_number == "+14155550100"
    assert make_connector(from_number="600 111 222", default_region="es").settings.from_number == CUSTOMER


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"from_number": None}, "set exactly one of from_number or messaging_service_sid"),
        ({"messaging_service_sid": "MG" + "1" * 32}, "set exactly one of from_number or messaging_service_sid"),
        ({"from_number": "not-a-number"}, "from_number: 'not-a-number' is not a phone number"),
        ({"messaging_service_sid": "XX1", "from_number": None}, "messaging_service_sid must start with 'MG'"),
        ({"account_sid": "SK123"}, "account_sid must start with 'AC'"),
        ({"auth_token": ""}, "auth_token is empty"),
        ({"default_region": "XX"}, "default_region 'XX'"),
        ({"api_base_url": "api.twilio.com"}, "api_base_url must be an http(s) URL"),
        ({"timeout_seconds": 0}, "timeout_seconds must be positive"),
        ({"from_numbr": BUSINESS}, "unknown field `from_numbr`"),
        ({"account_sid": None}, "missing required field `account_sid`"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        make_connector(**overrides)
    assert str(info.value).startswith("connectors.sms: ")
    assert message in str(info.value)


def test_a_messaging_service_may_replace_the_number() -> None:
    settings = make_connector(from_number=None, messaging_service_sid="MG" + "1" * 32).settings
    assert settings.from_number is None and settings.messaging_service_sid == "MG" + "1" * 32


def test_the_auth_token_never_shows_in_repr() -> None:
    connector = make_connector()
    assert DEFAULT_AUTH_TOKEN not in repr(connector.settings)
    assert "auth_token=Secret('**********')" in repr(connector.settings)
    assert connector.settings.auth_token.reveal() == DEFAULT_AUTH_TOKEN
    # Built directly from Python, a plain string is wrapped all the same.
    direct = TwilioSettings(account_sid="AC1", auth_token="hunter2", from_number=BUSINESS)  # type: ignore[arg-type]
    assert "hunter2" not in repr(direct)


def test_the_capabilities_describe_sms() -> None:
    caps = TwilioConnector.capabilities
    assert caps.max_text_length == 1600 and caps.max_attachments == 10
    assert caps.max_attachment_bytes == 5 * 1024 * 1024 and "image/" in caps.attachment_kinds
    assert [(r.method, r.path) for r in make_connector().routes()] == [("POST", "messages"), ("POST", "status")]


# --- signatures -----------------------------------------------------------------------------------


def test_a_correctly_signed_webhook_passes(connector: TwilioConnector) -> None:
    connector.verify(webhook("messages", sms()))
    connector.verify(webhook("status", status("delivered")))


def test_a_webhook_signed_with_another_token_is_forged(connector: TwilioConnector) -> None:
    with pytest.raises(SignatureError, match="does not match"):
        connector.verify(webhook("messages", sms(), token="f" * 32))


def test_a_webhook_without_signature_is_refused(connector: TwilioConnector) -> None:
    with pytest.raises(SignatureError, match="missing X-Twilio-Signature"):
        connector.verify(webhook("messages", sms(), signature=""))


def test_a_body_changed_after_signing_is_refused(connector: TwilioConnector) -> None:
    signed = webhook("messages", sms("Hola"))
    tampered = urlencode(sms("Transfer 1000 EUR")).encode()
    with pytest.raises(SignatureError):
        connector.verify(WebhookRequest(**{**_fields(signed), "body": tampered}))


def test_an_extra_parameter_added_after_signing_is_refused(connector: TwilioConnector) -> None:
    request = webhook("messages", sms())
    with pytest.raises(SignatureError):
        connector.verify(WebhookRequest(**{**_fields(request), "body": request.body + b"&NumMedia=1"}))


def test_a_signature_for_another_url_is_refused(connector: TwilioConnector) -> None:
    # A signature captured on another gateway (or another instance's path) cannot be replayed here.
    with pytest.raises(SignatureError):
        connector.verify(webhook("messages", sms(), signed_url="https://evil.example.com/webhooks/sms/messages"))
    with pytest.raises(SignatureError):
        connector.verify(webhook("messages", sms(), signed_url=f"{PUBLIC_URL}/webhooks/other/messages"))


def test_twilio_signing_with_or_without_the_default_port_both_pass(connector: TwilioConnector) -> None:
    url = f"{PUBLIC_URL}/webhooks/sms/messages"
    connector.verify(webhook("messages", sms(), url=url, signed_url=f"https://gw.example.com:443{url[22:]}"))


def test_the_json_body_variant_is_checked_by_its_sha256(connector: TwilioConnector) -> None:
    body = b'{"MessageSid": "SM1"}'
    url = f"{PUBLIC_URL}/webhooks/sms/messages?bodySHA256={hashlib.sha256(body).hexdigest()}"
    signature = sign_twilio_request(DEFAULT_AUTH_TOKEN, url, {})
    good = WebhookRequest(
        method="POST",
        url=url,
        path="messages",
        headers={"X-Twilio-Signature": signature},
        query={"bodySHA256": hashlib.sha256(body).hexdigest()},
        body=body,
    )
    connector.verify(good)
    with pytest.raises(SignatureError):
        connector.verify(WebhookRequest(**{**_fields(good), "body": b'{"MessageSid": "SM2"}'}))


def _fields(request: WebhookRequest) -> dict[str, Any]:
    return {f: getattr(request, f) for f in request.__struct_fields__}


# --- inbound messages -----------------------------------------------------------------------------


def test_an_sms_becomes_one_inbound_message(connector: TwilioConnector) -> None:
    result = connector.parse(webhook("messages", sms()))
    (message,) = result.messages
    assert message.instance == "sms" and message.channel == "sms"
    assert message.provider_message_id == "SM" + "a" * 32
    assert message.sender == Identity("phone", CUSTOMER)
    assert message.text == "Hola, ¿tenéis cita mañana?"
    assert message.attachments == ()
    assert message.received_at_ms == RECEIVED_AT
    assert message.opt_out is None
    assert message.extra == {"to": BUSINESS}
    # Twilio gets empty TwiML: no automatic reply, and no error 12300 in the customer's console.
    assert result.response.status == 200
    assert result.response.body == EMPTY_TWIML and result.response.content_type == "text/xml"


def test_an_mms_keeps_its_media_as_attachments(connector: TwilioConnector) -> None:
    media = [
        ("https://api.twilio.com/2010-04-01/Accounts/AC0/Messages/MM1/Media/ME1", "image/jpeg"),
        ("https://api.twilio.com/2010-04-01/Accounts/AC0/Messages/MM1/Media/ME2", "video/mp4"),
    ]
    params = inbound_message_params(CUSTOMER, BUSINESS, "", media=media, message_sid="MM" + "1" * 32)
    (message,) = connector.parse(webhook("messages", params)).messages
    assert message.text == ""
    assert message.attachments == (Attachment(media[0][0], "image/jpeg"), Attachment(media[1][0], "video/mp4"))


def test_whatsapp_through_twilio_is_the_same_phone_identity(connector: TwilioConnector) -> None:
    params = sms(ProfileName="Lucía")
    params.update(From=f"whatsapp:{CUSTOMER}", To=f"whatsapp:{BUSINESS}")
    (message,) = connector.parse(webhook("messages", params)).messages
    (plain,) = connector.parse(webhook("messages", sms())).messages
    assert message.channel == "whatsapp"
    assert message.sender == plain.sender == Identity("phone", CUSTOMER)
    assert message.sender_name == "Lucía"


def test_a_national_number_is_read_in_the_default_region() -> None:
    connector = make_connector(default_region="ES")
    (message,) = connector.parse(webhook("messages", sms(From="600 111 222"))).messages
    assert message.sender.address == CUSTOMER


def test_unknown_fields_are_ignored(connector: TwilioConnector) -> None:
    noisy = sms(FromCity="MADRID", ReferralNumMedia="0", MessagingServiceSid="MG1", SomeFutureField="x")
    assert connector.parse(webhook("messages", noisy)) == connector.parse(webhook("messages", sms()))


@pytest.mark.parametrize(("sender", "kept"), [
    ("+1234", "+1234"),  # too short for any plan: impossible, says the phone library
    ("+999 123 456", "+999123456"),  # no such country code
    ("12345", "12345"),  # a short code, as carriers deliver them
    ("garbage", "garbage"),
])
def test_a_sender_the_phone_library_calls_impossible_is_kept_as_given(
        connector: TwilioConnector, sender: str, kept: str) -> None:
    # Twilio delivered it, so a customer wrote from it: refusing the address would lose the message.
    params = sms()
    params["From"] = sender
    [message] = connector.parse(webhook("messages", params)).messages
    assert message.sender.kind == "phone" and message.sender.address == kept


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"From": ""}, "no From number"),
        ({"MessageSid": "", "SmsSid": ""}, "no MessageSid"),
        ({"From": "messenger:1234567"}, "on a channel this connector does not handle"),
        ({"NumMedia": "two"}, "NumMedia 'two' is not a number"),
        ({"NumMedia": "2", "MediaUrl0": "https://x/1"}, "MediaUrl1 is missing"),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(
    connector: TwilioConnector, change: dict[str, str], message: str
) -> None:
    params = sms()
    params.update(change)
    request = webhook("messages", params)
    connector.verify(request)  # authentic: the gateway dead-letters it rather than answering 403
    with pytest.raises(MalformedPayload, match=re.escape(message)):
        connector.parse(request)


def test_the_sms_sid_alone_is_enough(connector: TwilioConnector) -> None:
    params = sms()
    del params["MessageSid"]
    (message,) = connector.parse(webhook("messages", params)).messages
    assert message.provider_message_id == "SM" + "a" * 32


@pytest.mark.parametrize("body", [b"MessageSid=SM1&From=%2B34600111222&Body=caf\xe9", b"MessageSid=SM1&Body=%FF"])
def test_a_body_that_is_not_utf8_is_authentic_but_malformed(connector: TwilioConnector, body: bytes) -> None:
    # Twilio's signature covers the decoded parameters; with the bytes replaced, it still checks.
    replaced = dict(
        [("MessageSid", "SM1"), ("From", CUSTOMER), ("Body", "caf\ufffd")]
        if b"caf" in body
        else [("MessageSid", "SM1"), ("Body", "\ufffd")]
    )
    request = webhook("messages", replaced, body=body)
    connector.verify(request)
    with pytest.raises(MalformedPayload, match="not valid UTF-8"):
        connector.parse(request)


def test_an_unknown_webhook_path_is_malformed(connector: TwilioConnector) -> None:
    with pytest.raises(MalformedPayload, match="'voice'"):
        connector.parse(webhook("voice", sms()))


# --- opt-out --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        *[(w, "stop") for w in ("STOP", "stopall", "Unsubscribe", "cancel", "END", "quit", "OptOut", "revoke")],
        *[(w, "start") for w in ("START", "yes", "Unstop")],
        *[(w, "help") for w in ("HELP", "info")],
        ("  Stop \n", "stop"),
        ("Please stop", None),
        ("stop it", None),
        ("STOPP", None),
        ("", None),
    ],
)
def test_opt_out_keywords_are_the_whole_trimmed_body(
    connector: TwilioConnector, body: str, expected: str | None
) -> None:
    (message,) = connector.parse(webhook("messages", sms(body))).messages
    assert message.opt_out == expected
    assert message.text == body  # the words stay in the thread for the agent to see


@pytest.mark.parametrize(("opt_out_type", "expected"), [("STOP", "stop"), ("START", "start"), ("HELP", "help")])
def test_twilios_own_opt_out_verdict_wins(connector: TwilioConnector, opt_out_type: str, expected: str) -> None:
    # With Advanced Opt-Out, custom keywords ("BAJA") reach us already classified.
    (message,) = connector.parse(webhook("messages", sms("BAJA", OptOutType=opt_out_type))).messages
    assert message.opt_out == expected


# --- status callbacks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("accepted", DeliveryStatus.QUEUED),
        ("scheduled", DeliveryStatus.QUEUED),
        ("queued", DeliveryStatus.QUEUED),
        ("sending", DeliveryStatus.QUEUED),
        ("sent", DeliveryStatus.SENT),
        ("delivered", DeliveryStatus.DELIVERED),
        ("read", DeliveryStatus.READ),
        ("undelivered", DeliveryStatus.FAILED),
        ("failed", DeliveryStatus.FAILED),
        ("canceled", DeliveryStatus.FAILED),
    ],
)
def test_status_callbacks_map_to_delivery_status(
    connector: TwilioConnector, raw: str, expected: DeliveryStatus
) -> None:
    result = connector.parse(webhook("status", status(raw)))
    assert result.messages == ()
    (update,) = result.statuses
    assert update.instance == "sms" and update.provider_message_id == "SM" + "b" * 32
    assert update.status is expected and update.error is None and update.at_ms == RECEIVED_AT
    assert 200 <= result.response.status < 300


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"ErrorCode": "30003"}, "30003: Unreachable destination handset"),
        ({"ErrorCode": "30007", "ErrorMessage": "Carrier violation"}, "30007: Carrier violation"),
        ({"ErrorCode": "30999"}, "30999: see https://www.twilio.com/docs/errors/30999"),
    ],
)
def test_a_failure_keeps_twilios_error_code_as_reason(
    connector: TwilioConnector, extra: dict[str, str], reason: str
) -> None:
    (update,) = connector.parse(webhook("status", status("undelivered", **extra))).statuses
    assert update.status is DeliveryStatus.FAILED and update.error == reason


def test_unknown_statuses_and_fields(connector: TwilioConnector) -> None:
    with pytest.raises(MalformedPayload, match="unknown MessageStatus 'teleported'"):
        connector.parse(webhook("status", status("teleported")))
    with pytest.raises(MalformedPayload, match="no MessageStatus"):
        connector.parse(webhook("status", status("")))
    with pytest.raises(MalformedPayload, match="no MessageSid"):
        connector.parse(webhook("status", status("sent", MessageSid="", SmsSid="")))
    noisy = status("delivered", RawDlrDoneDate="2401011200", ChannelPrefix="sms", Brand="new")
    assert connector.parse(webhook("status", noisy)) == connector.parse(webhook("status", status("delivered")))


def test_parse_does_no_network_io(connector: TwilioConnector, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("parse() touched the network")

    requests = [
        webhook("messages", sms()),
        webhook("messages", inbound_message_params(CUSTOMER, BUSINESS, "", media=[("https://x/1", "image/png")])),
        webhook("status", status("delivered", ErrorCode="30003")),
    ]
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    results = [connector.parse(r) for r in requests]
    assert [len(r.messages) + len(r.statuses) for r in results] == [1, 1, 1]


# --- sending through the real SDK -----------------------------------------------------------------


async def test_a_reply_reaches_twilio_and_returns_its_sid(live: TwilioConnector, fake_twilio: FakeTwilio) -> None:
    sid = await live.send(outbound())
    (sent,) = fake_twilio.messages
    assert sid == sent["sid"] and sid.startswith("SM") and len(sid) == 34
    assert sent["To"] == CUSTOMER and sent["From"] == BUSINESS
    assert sent["Body"] == "Gracias, te escribimos enseguida."
    assert sent["StatusCallback"] == f"{PUBLIC_URL}/webhooks/sms/status"
    assert "MediaUrl" not in sent


async def test_a_whatsapp_reply_goes_out_on_twilios_whatsapp_channel(
    live: TwilioConnector, fake_twilio: FakeTwilio
) -> None:
    await live.send(outbound(channel="whatsapp"))
    (sent,) = fake_twilio.messages
    assert sent["To"] == f"whatsapp:{CUSTOMER}" and sent["From"] == f"whatsapp:{BUSINESS}"


async def test_media_go_as_repeated_media_urls(live: TwilioConnector, fake_twilio: FakeTwilio) -> None:
    attachments = (
        Attachment("https://cdn.example.com/a.jpg", "image/jpeg"),
        Attachment("https://cdn.example.com/b.pdf"),
    )
    await live.send(outbound(attachments=attachments))
    assert fake_twilio.messages[0]["MediaUrl"] == ["https://cdn.example.com/a.jpg", "https://cdn.example.com/b.pdf"]


async def test_a_messaging_service_sends_without_from(fake_twilio: FakeTwilio) -> None:
    connector = make_connector(
        api_base_url=fake_twilio.base_url, from_number=None, messaging_service_sid="MG" + "1" * 32
    )
    try:
        await connector.send(outbound())
    finally:
        await connector.aclose()
    (sent,) = fake_twilio.messages
    assert sent["MessagingServiceSid"] == "MG" + "1" * 32 and "From" not in sent


async def test_status_callback_can_be_off_or_given_per_message(fake_twilio: FakeTwilio) -> None:
    connector = make_connector(api_base_url=fake_twilio.base_url, status_callback=False)
    try:
        await connector.send(outbound())
        await connector.send(outbound(status_callback_url="https://hooks.example.com/cb"))
    finally:
        await connector.aclose()
    assert "StatusCallback" not in fake_twilio.messages[0]
    assert fake_twilio.messages[1]["StatusCallback"] == "https://hooks.example.com/cb"


async def test_rate_limited_is_transient_with_retry_after(live: TwilioConnector, fake_twilio: FakeTwilio) -> None:
    fake_twilio.fail_next(429, retry_after=7)
    with pytest.raises(TransientSendError) as info:
        await live.send(outbound())
    assert info.value.retry_after == 7.0
    assert info.value.code == "20429" and info.value.reason == "20429: Too Many Requests"
    assert fake_twilio.messages == []
    assert await live.send(outbound())  # the next attempt goes through


async def test_retry_after_as_an_http_date(live: TwilioConnector, fake_twilio: FakeTwilio) -> None:
    fake_twilio.fail_next(503, retry_after=format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True))
    with pytest.raises(TransientSendError) as info:
        await live.send(outbound())
    assert info.value.retry_after is not None and 25 <= info.value.retry_after <= 30


async def test_a_server_error_is_transient(live: TwilioConnector, fake_twilio: FakeTwilio) -> None:
    fake_twilio.fail_next(500)
    with pytest.raises(TransientSendError) as info:
        await live.send(outbound())
    assert info.value.retry_after is None and info.value.code == "20500"


async def test_an_invalid_number_is_permanent_with_twilios_reason(
    live: TwilioConnector, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.fail_next(400, 21211, "The 'To' number +34600111222 is not a valid phone number.")
    with pytest.raises(PermanentSendError) as info:
        await live.send(outbound())
    assert info.value.reason == "21211: The 'To' number +34600111222 is not a valid phone number."
    assert info.value.code == "21211" and info.value.opted_out is False


async def test_an_unsubscribed_recipient_is_permanent_and_opted_out(
    live: TwilioConnector, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.unsubscribed.add(CUSTOMER)
    with pytest.raises(PermanentSendError) as info:
        await live.send(outbound())
    assert info.value.opted_out is True
    assert info.value.reason == "21610: Attempt to send to unsubscribed recipient"


async def test_wrong_credentials_fail_permanently(fake_twilio: FakeTwilio) -> None:
    connector = make_connector(api_base_url=fake_twilio.base_url, auth_token="f" * 32)
    try:
        with pytest.raises(PermanentSendError, match="20003: Authenticate"):
            await connector.send(outbound())
    finally:
        await connector.aclose()


async def test_twilio_region_in_the_environment_does_not_redirect_sends(
    fake_twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK would rewrite the host to api.ie1.twilio.com... and bypass api_base_url.
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    monkeypatch.setenv("TWILIO_EDGE", "dublin")
    connector = make_connector(api_base_url=fake_twilio.base_url)
    try:
        sid = await connector.send(outbound())
    finally:
        await connector.aclose()
    assert [m["sid"] for m in fake_twilio.messages] == [sid]


async def test_an_unreachable_twilio_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        connector = make_connector(api_base_url=f"http://127.0.0.1:{port}")
        try:
            with pytest.raises(TransientSendError, match="Twilio unreachable"):
                await connector.send(outbound())
        finally:
            await connector.aclose()


async def test_a_slow_twilio_times_out_as_transient(fake_twilio: FakeTwilio) -> None:
    fake_twilio.delay(2)
    connector = make_connector(api_base_url=fake_twilio.base_url, timeout_seconds=0.2)
    try:
        with pytest.raises(TransientSendError, match="Twilio unreachable"):
            await connector.send(outbound())
    finally:
        await connector.aclose()
    await asyncio.sleep(2.2)
    # We hung up before Twilio answered, and the fake created nothing for a caller who left.
    assert fake_twilio.attempts == 1 and fake_twilio.messages == []


async def test_concurrent_sends_each_see_their_own_answer(live: TwilioConnector, fake_twilio: FakeTwilio) -> None:
    fake_twilio.fail_next(429, retry_after=5)
    results = await asyncio.gather(*(live.send(outbound(f"reply {i}")) for i in range(6)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], TransientSendError) and errors[0].retry_after == 5.0
    assert sorted(r for r in results if isinstance(r, str)) == sorted(m["sid"] for m in fake_twilio.messages)


async def test_only_phone_identities_can_be_texted(live: TwilioConnector, fake_twilio: FakeTwilio) -> None:
    with pytest.raises(PermanentSendError, match="not email identities"):
        await live.send(Outbound(message_id="m", channel="sms", to=Identity("email", "a@example.com"), text="hi"))
    assert fake_twilio.attempts == 0


async def test_aclose_twice_is_safe_and_leaves_no_open_session(fake_twilio: FakeTwilio) -> None:
    connector = make_connector(api_base_url=fake_twilio.base_url)
    await connector.aclose()  # never sent: nothing to close, nothing opened
    await connector.send(outbound())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await connector.aclose()
        await connector.aclose()
        del connector
        gc.collect()
    assert not [w for w in caught if "Unclosed" in str(w.message)]


# --- the fake Twilio itself -----------------------------------------------------------------------


async def test_the_fake_speaks_twilios_auth_and_error_format(fake_twilio: FakeTwilio) -> None:
    url = f"{fake_twilio.base_url}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json"
    form = {"To": CUSTOMER, "From": BUSINESS, "Body": "hi"}

    def basic(password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{DEFAULT_ACCOUNT_SID}:{password}".encode()).decode()}

    wrong, auth = basic("wrong"), basic(DEFAULT_AUTH_TOKEN)
    async with aiohttp.ClientSession() as s:
        async with s.post(url, data=form, headers=wrong) as resp:
            assert resp.status == 401
            assert (await resp.json())["code"] == 20003
        async with s.post(url, data={"From": BUSINESS, "Body": "hi"}, headers=auth) as resp:
            body = await resp.json()
            assert resp.status == 400 and body["code"] == 21604
            assert set(body) == {"code", "message", "more_info", "status"}
        async with s.post(url, data=form, headers=auth) as resp:
            created = await resp.json()
            assert resp.status == 201 and created["status"] == "queued" and created["num_segments"] == "1"
            assert created["sid"] == fake_twilio.messages[0]["sid"]


async def test_the_fakes_status_callbacks_pass_the_connectors_checks(
    aiohttp_server: Any, fake_twilio: FakeTwilio
) -> None:
    updates: list[Any] = []

    async def handler(request: web.Request) -> web.Response:
        public_url = str(request.url).rsplit("/webhooks/", 1)[0]
        connector = make_connector()
        connector.public_url = public_url
        hook = WebhookRequest(
            method="POST",
            url=str(request.url),
            path=request.match_info["path"],
            headers=request.headers,
            query=request.query,
            body=await request.read(),
            received_at_ms=RECEIVED_AT,
        )
        try:
            connector.verify(hook)
        except SignatureError:
            return web.Response(status=403)
        updates.extend(connector.parse(hook).statuses)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/webhooks/sms/{path}", handler)
    server: TestServer = await aiohttp_server(app)
    url = str(server.make_url("/webhooks/sms/status"))

    live = make_connector(api_base_url=fake_twilio.base_url)
    sid = await live.send(outbound())
    await live.aclose()
    assert await fake_twilio.post_status(url, sid, "delivered") == 200
    assert await fake_twilio.post_status(url, sid, "undelivered", error_code=30003) == 200
    assert [(u.provider_message_id, u.status, u.error) for u in updates] == [
        (sid, DeliveryStatus.DELIVERED, None),
        (sid, DeliveryStatus.FAILED, "30003: Unreachable destination handset"),
    ]
    forged = FakeTwilio(auth_token="f" * 32)
    try:
        assert await forged.post_status(url, sid, "delivered") == 403
    finally:
        await forged.close()
