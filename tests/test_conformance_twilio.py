"""The conformance kit on the built-in Twilio connector, with payloads as Twilio sends them.

The form fields below are those of Twilio's documented webhooks (an SMS, an MMS with two photos,
a WhatsApp message, a STOP under Advanced Opt-Out, and delivery reports), in Twilio's field order.
"""

from __future__ import annotations

from connectors.base import WebhookResponse
from connectors.sms.twilio import EMPTY_TWIML, TwilioConnector
from connectors.testing import (
    INSTANCE,
    RECEIVED_AT_MS,
    REMOVE,
    ConnectorConformance,
    InvalidSettings,
    PayloadCase,
    TwilioSigner,
)
from connectors.testing.fake_twilio import FakeTwilio
from conversation.model import Attachment, DeliveryStatus, Identity, InboundMessage, StatusUpdate

ACCOUNT_SID = "AC" + "3" * 32
AUTH_TOKEN = "7c1d9e3b2a4f5e6d7c8b9a0f1e2d3c4b"
BUSINESS = "+15550001111"
CUSTOMER = "+34600111222"
TWIML = WebhookResponse(200, EMPTY_TWIML, "text/xml")


def _media_url(message_sid: str, media_sid: str) -> str:
    return f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message_sid}/Media/{media_sid}"


SMS_SID = "SM1f0e2d3c4b5a69788796a5b4c3d2e1f0"
MMS_SID = "MM2a3b4c5d6e7f8091a2b3c4d5e6f70812"
WHATSAPP_SID = "SM9c8b7a6f5e4d3c2b1a09f8e7d6c5b4a3"
STOP_SID = "SM0a1b2c3d4e5f60718293a4b5c6d7e8f9"
OUTBOUND_SID = "SM5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a"

SMS = {
    "ToCountry": "US", "ToState": "CA", "SmsMessageSid": SMS_SID, "NumMedia": "0", "ToCity": "",
    "FromZip": "", "SmsSid": SMS_SID, "FromState": "", "SmsStatus": "received", "FromCity": "",
    "Body": "Hi, my order #4417 has not arrived yet", "FromCountry": "ES", "To": BUSINESS, "ToZip": "",
    "NumSegments": "1", "MessageSid": SMS_SID, "AccountSid": ACCOUNT_SID, "From": CUSTOMER,
    "ApiVersion": "2010-04-01",
}
MMS = {
    "ToCountry": "US", "MediaContentType0": "image/jpeg", "ToState": "CA", "SmsMessageSid": MMS_SID,
    "NumMedia": "2", "ToCity": "", "FromZip": "", "SmsSid": MMS_SID, "FromState": "", "SmsStatus": "received",
    "FromCity": "", "Body": "The box arrived like this", "FromCountry": "ES", "To": BUSINESS,
    "MediaUrl0": _media_url(MMS_SID, "ME0aa1"), "MediaContentType1": "image/png",
    "MediaUrl1": _media_url(MMS_SID, "ME0bb2"), "ToZip": "", "NumSegments": "1", "MessageSid": MMS_SID,
    "AccountSid": ACCOUNT_SID, "From": CUSTOMER, "ApiVersion": "2010-04-01",
}
WHATSAPP = {
    "SmsMessageSid": WHATSAPP_SID, "NumMedia": "0", "ProfileName": "María", "MessageType": "text",
    "SmsSid": WHATSAPP_SID, "WaId": CUSTOMER.lstrip("+"), "SmsStatus": "received",
    "Body": "¿Podéis cambiar la dirección de entrega?", "To": f"whatsapp:{BUSINESS}", "NumSegments": "1",
    "ReferralNumMedia": "0", "MessageSid": WHATSAPP_SID, "AccountSid": ACCOUNT_SID,
    "From": f"whatsapp:{CUSTOMER}", "ApiVersion": "2010-04-01",
}
STOP = {**SMS, "SmsMessageSid": STOP_SID, "SmsSid": STOP_SID, "MessageSid": STOP_SID, "Body": "STOP",
        "OptOutType": "STOP"}
UNDELIVERED = {
    "ErrorCode": "30003", "SmsSid": OUTBOUND_SID, "SmsStatus": "undelivered", "MessageStatus": "undelivered",
    "To": CUSTOMER, "MessageSid": OUTBOUND_SID, "AccountSid": ACCOUNT_SID, "From": BUSINESS,
    "ApiVersion": "2010-04-01",
}
DELIVERED = {**UNDELIVERED, "SmsStatus": "delivered", "MessageStatus": "delivered"}
del DELIVERED["ErrorCode"]
MEDIA_MISSING = {**MMS, "NumMedia": "3"}


def inbound(sid: str, text: str, **fields: object) -> InboundMessage:
    values: dict[str, object] = {
        "instance": INSTANCE, "channel": "sms", "provider_message_id": sid,
        "sender": Identity("phone", CUSTOMER), "text": text, "received_at_ms": RECEIVED_AT_MS,
        "extra": {"to": BUSINESS},
    }
    values.update(fields)
    return InboundMessage(**values)  # type: ignore[arg-type]


class TestTwilioConformance(ConnectorConformance):
    connector_class = TwilioConnector
    settings = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from_number": BUSINESS,
        "api_base_url": "http://127.0.0.1:9",  # nothing listens: only the send tests point it at a fake
    }
    invalid_settings = [
        InvalidSettings({"account_sid": "XX123"}, "account_sid must start with 'AC'"),
        InvalidSettings({"auth_token": ""}, "auth_token is empty"),
        InvalidSettings({"messaging_service_sid": "MG" + "1" * 32},
                        "exactly one of from_number or messaging_service_sid"),
        InvalidSettings({"from_number": REMOVE}, "exactly one of from_number or messaging_service_sid"),
        InvalidSettings({"auth_token": 12345}, "expected a string, got int - at `$.auth_token`"),
        InvalidSettings({"from_number": "not a number"}, "from_number"),
        InvalidSettings({"default_region": "ZZ"}, "ISO 3166"),
        InvalidSettings({"api_base_url": "ftp://api.twilio.com"}, "api_base_url must be an http(s) URL"),
        InvalidSettings({"timeout_seconds": 0}, "timeout_seconds must be positive"),
    ]
    signer = TwilioSigner(AUTH_TOKEN)
    payload_cases = [
        PayloadCase.form("SMS", "messages", SMS, response=TWIML,
                         messages=[inbound(SMS_SID, SMS["Body"])]),
        PayloadCase.form("MMS with two photos", "messages", MMS, response=TWIML, messages=[inbound(
            MMS_SID, MMS["Body"], attachments=(
                Attachment(MMS["MediaUrl0"], "image/jpeg"), Attachment(MMS["MediaUrl1"], "image/png")))]),
        PayloadCase.form("WhatsApp through Twilio", "messages", WHATSAPP, response=TWIML, messages=[inbound(
            WHATSAPP_SID, WHATSAPP["Body"], channel="whatsapp", sender_name="María",
            extra={"to": f"whatsapp:{BUSINESS}"})]),
        PayloadCase.form("STOP under Advanced Opt-Out", "messages", STOP, response=TWIML,
                         messages=[inbound(STOP_SID, "STOP", opt_out="stop")]),
        PayloadCase.form("status callback with ErrorCode", "status", UNDELIVERED, statuses=[StatusUpdate(
            instance=INSTANCE, provider_message_id=OUTBOUND_SID, status=DeliveryStatus.FAILED,
            error="30003: Unreachable destination handset", at_ms=RECEIVED_AT_MS)]),
        PayloadCase.form("status callback: delivered", "status", DELIVERED, statuses=[StatusUpdate(
            instance=INSTANCE, provider_message_id=OUTBOUND_SID, status=DeliveryStatus.DELIVERED,
            at_ms=RECEIVED_AT_MS)]),
        PayloadCase.form("NumMedia without its MediaUrl", "messages", MEDIA_MISSING,
                         malformed="NumMedia is 3 but MediaUrl2 is missing"),
    ]

    def fake_provider(self) -> FakeTwilio:
        return FakeTwilio(ACCOUNT_SID, AUTH_TOKEN)
