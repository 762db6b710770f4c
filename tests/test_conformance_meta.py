"""The conformance kit on the WhatsApp, Messenger and Instagram connectors, with webhooks shaped
as Meta documents them and signed with X-Hub-Signature-256."""

from __future__ import annotations

from typing import Any

from connectors.base import WebhookResponse
from connectors.social import InstagramConnector, MessengerConnector, WhatsAppConnector
from connectors.testing import (
    INSTANCE,
    RECEIVED_AT_MS,
    REMOVE,
    ConnectorConformance,
    HmacSha256Signer,
    InvalidSettings,
    PayloadCase,
)
from connectors.testing.fake_graph import DEFAULT_TOKEN, FakeGraph, page_payload, whatsapp_payload
from conversation.model import Attachment, DeliveryStatus, Identity, InboundMessage, StatusUpdate

APP_SECRET = "4f1c2d3e4b5a69788796a5b4c3d2e1f0"
VERIFY_TOKEN = "a-verify-token-we-chose"
NUMBER_ID = "106540352242922"
PAGE_ID = "104881234567890"
IG_ID = "17841400000000001"
WA_ID = "5215512345678"  # Mexico, in WhatsApp's old +52 1 form
PSID = "6543210987654321"
IGSID = "1789456123456789"
TS = 1_749_416_383
GRAPH = "http://127.0.0.1:9"  # nothing listens: only the send tests point it at the fake


def handshake(path: str = "events") -> list[PayloadCase]:
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    return [PayloadCase("hub.challenge", path, method="GET", query=query, signed=False, handshake=True,
                        response=WebhookResponse(200, b"1158201444", "text/plain"))]


def wa(text: str, wamid: str, *, attachments: tuple[Attachment, ...] = (), name: str | None = "Sheena Nelson",
       echo: bool = False, **extra: str) -> InboundMessage:
    return InboundMessage(
        instance=INSTANCE, channel="whatsapp", provider_message_id=wamid, sender=Identity("phone", "+525512345678"),
        text=text, attachments=attachments, sender_name=name, received_at_ms=RECEIVED_AT_MS, sent_at_ms=TS * 1000,
        reply_address=None if echo else "+5215512345678", echo=echo, extra={"wa_id": WA_ID, **extra},
    )


def msg(kind: str, content: Any, wamid: str, **more: Any) -> dict[str, Any]:
    return {"from": WA_ID, "id": wamid, "timestamp": str(TS), "type": kind, kind: content, **more}


WA_TEXT = msg("text", {"body": "Does it come in another color?"}, "wamid.T1")
WA_IMAGE = msg("image", {"caption": "This one", "mime_type": "image/jpeg", "sha256": "abc", "id": "1479537139650973"},
               "wamid.I1")
WA_STATUS = {"id": "wamid.OUT1", "status": "delivered", "timestamp": str(TS), "recipient_id": WA_ID}


class TestWhatsAppConformance(ConnectorConformance):
    connector_class = WhatsAppConnector
    settings = {"app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN, "access_token": DEFAULT_TOKEN,
                "phone_number_id": NUMBER_ID, "api_base_url": GRAPH,
                "templates": [{"name": "seguimiento", "language": "es", "body": "Hola {{1}}"}]}
    invalid_settings = [
        InvalidSettings({"app_secret": REMOVE}, "app_secret"),
        InvalidSettings({"phone_number_id": "+15550783881"}, "phone_number_id must be the number's Graph id"),
        InvalidSettings({"api_version": "21"}, "api_version must look like 'v21.0'"),
        InvalidSettings({"api_base_url": "graph.facebook.com"}, "api_base_url must be an http(s) URL"),
        InvalidSettings({"access_token": ""}, "access_token is empty"),
        InvalidSettings({"templates": [{"name": "x"}]}, "language"),
    ]
    signer = HmacSha256Signer(APP_SECRET)
    payload_cases = [
        *handshake(),
        PayloadCase.json("text with the sender's profile name", "events",
                         whatsapp_payload(NUMBER_ID, messages=[WA_TEXT], contacts=[(WA_ID, "Sheena Nelson")]),
                         messages=[wa("Does it come in another color?", "wamid.T1", type="text")]),
        PayloadCase.json("image with a caption", "events",
                         whatsapp_payload(NUMBER_ID, messages=[WA_IMAGE], contacts=[(WA_ID, "Sheena Nelson")]),
                         messages=[wa("This one", "wamid.I1", type="image", attachments=(
                             Attachment(f"{GRAPH}/v21.0/1479537139650973", "image/jpeg"),))]),
        PayloadCase.json("a delivery status", "events", whatsapp_payload(NUMBER_ID, statuses=[WA_STATUS]),
                         statuses=[StatusUpdate(instance=INSTANCE, provider_message_id="wamid.OUT1",
                                                status=DeliveryStatus.DELIVERED, at_ms=TS * 1000)]),
        PayloadCase.json("sent from the WhatsApp Business app", "events",
                         whatsapp_payload(NUMBER_ID, field="smb_message_echoes", messages=[
                             {"from": "15550783881", "to": WA_ID, "id": "wamid.E1", "timestamp": str(TS),
                              "type": "text", "text": {"body": "Yes, in blue"}}]),
                         messages=[wa("Yes, in blue", "wamid.E1", name=None, echo=True, type="text")]),
        PayloadCase.json("another number's change is skipped", "events",
                         whatsapp_payload("999999999999999", messages=[WA_TEXT])),
        PayloadCase.json("no entry list", "events", {"object": "whatsapp_business_account"},
                         malformed="no entry list"),
    ]
    recipient = Identity("phone", "+525512345678")

    def fake_provider(self) -> FakeGraph:
        return FakeGraph()


def page_event(sender: str, recipient: str, **event: Any) -> dict[str, Any]:
    return {"sender": {"id": sender}, "recipient": {"id": recipient}, "timestamp": TS * 1000, **event}


def page_in(kind: str, sender: str, text: str, mid: str, **fields: Any) -> InboundMessage:
    values: dict[str, Any] = {"instance": INSTANCE, "channel": kind, "provider_message_id": mid,
                              "sender": Identity(kind, sender), "text": text, "received_at_ms": RECEIVED_AT_MS,
                              "sent_at_ms": TS * 1000}
    values.update(fields)
    return InboundMessage(**values)


PAGE_SETTINGS = {"app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN, "page_access_token": DEFAULT_TOKEN,
                 "page_id": PAGE_ID, "api_base_url": GRAPH, "human_agent_tag": True}


class TestMessengerConformance(ConnectorConformance):
    connector_class = MessengerConnector
    settings = PAGE_SETTINGS
    invalid_settings = [
        InvalidSettings({"page_id": "my-page"}, "page_id must be the numeric id"),
        InvalidSettings({"page_access_token": REMOVE}, "page_access_token"),
        InvalidSettings({"verify_token": ""}, "verify_token is empty"),
    ]
    signer = HmacSha256Signer(APP_SECRET)
    payload_cases = [
        *handshake(),
        PayloadCase.json("a text with a quick reply", "events", page_payload("page", PAGE_ID, [
            page_event(PSID, PAGE_ID, message={"mid": "m_Q1", "text": "Red",
                                               "quick_reply": {"payload": "COLOR_RED"}})]),
            messages=[page_in("messenger", PSID, "Red", "m_Q1", extra={"quick_reply": "COLOR_RED"})]),
        PayloadCase.json("an image", "events", page_payload("page", PAGE_ID, [
            page_event(PSID, PAGE_ID, message={"mid": "m_A1", "attachments": [
                {"type": "image", "payload": {"url": "https://scontent.xx.fbcdn.net/v/t1/photo.png?x=1"}}]})]),
            messages=[page_in("messenger", PSID, "", "m_A1", attachments=(
                Attachment("https://scontent.xx.fbcdn.net/v/t1/photo.png?x=1", "image/png"),))]),
        PayloadCase.json("a postback", "events", page_payload("page", PAGE_ID, [
            page_event(PSID, PAGE_ID, postback={"mid": "m_P1", "title": "Talk to a person", "payload": "HUMAN"})]),
            messages=[page_in("messenger", PSID, "Talk to a person", "m_P1", extra={"postback": "HUMAN"})]),
        PayloadCase.json("a read watermark", "events", page_payload("page", PAGE_ID, [
            page_event(PSID, PAGE_ID, read={"watermark": TS * 1000})]),
            statuses=[StatusUpdate(instance=INSTANCE, status=DeliveryStatus.READ, at_ms=TS * 1000,
                                   recipient=Identity("messenger", PSID), up_to_ms=TS * 1000)]),
        PayloadCase.json("an echo from the Page inbox", "events", page_payload("page", PAGE_ID, [
            page_event(PAGE_ID, PSID, message={"mid": "m_E1", "is_echo": True, "app_id": 263902037430900,
                                               "text": "We're on it"})]),
            messages=[page_in("messenger", PSID, "We're on it", "m_E1", echo=True)]),
        PayloadCase.json("the echo of our own send is skipped", "events", page_payload("page", PAGE_ID, [
            page_event(PAGE_ID, PSID, message={"mid": "m_E2", "is_echo": True, "metadata": "omnigateway:x.1",
                                               "text": "Sent by the gateway"})])),
        PayloadCase.json("another page's entry is skipped", "events", page_payload("page", "1", [
            page_event(PSID, "1", message={"mid": "m_X1", "text": "hi"})])),
    ]
    recipient = Identity("messenger", PSID)

    def fake_provider(self) -> FakeGraph:
        return FakeGraph(text_limit=2000)


class TestInstagramConformance(ConnectorConformance):
    connector_class = InstagramConnector
    settings = {**PAGE_SETTINGS, "page_id": IG_ID, "human_agent_tag": False}
    invalid_settings = [InvalidSettings({"page_id": "@brand"}, "page_id must be the numeric id")]
    signer = HmacSha256Signer(APP_SECRET)
    payload_cases = [
        *handshake(),
        PayloadCase.json("a direct message", "events", page_payload("instagram", IG_ID, [
            page_event(IGSID, IG_ID, message={"mid": "aWdfZAG1faXRlbToxOklH", "text": "Is this in stock?"})]),
            messages=[page_in("instagram", IGSID, "Is this in stock?", "aWdfZAG1faXRlbToxOklH")]),
        PayloadCase.json("a story reply shared as a link", "events", page_payload("instagram", IG_ID, [
            page_event(IGSID, IG_ID, message={"mid": "aWdfS1", "attachments": [
                {"type": "story_mention", "payload": {"url": "https://lookaside.fbsbx.com/ig_messaging_cdn/?x"}}]})]),
            messages=[page_in("instagram", IGSID, "story_mention: https://lookaside.fbsbx.com/ig_messaging_cdn/?x",
                              "aWdfS1")]),
        PayloadCase.json("a read naming the message", "events", page_payload("instagram", IG_ID, [
            page_event(IGSID, IG_ID, read={"mid": "aWdfOUT1"})]),
            statuses=[StatusUpdate(instance=INSTANCE, provider_message_id="aWdfOUT1", status=DeliveryStatus.READ,
                                   at_ms=TS * 1000)]),
    ]
    recipient = Identity("instagram", IGSID)

    def fake_provider(self) -> FakeGraph:
        return FakeGraph(text_limit=1000)
