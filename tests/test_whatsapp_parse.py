"""Every WhatsApp message type, status and batch shape, as the Cloud API webhook sends them."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import MalformedPayload, WebhookRequest
from connectors.social.whatsapp import WhatsAppConnector
from connectors.testing.fake_graph import sign, whatsapp_message, whatsapp_payload, whatsapp_status
from conversation.model import Attachment, DeliveryStatus, Identity

SECRET = "app-secret-for-parse-tests"
NUMBER = "106540352242922"
WA = "34600111222"
TS = 1_749_416_383


def connector() -> WhatsAppConnector:
    built = WhatsAppConnector.from_config("wa", {
        "kind": "whatsapp", "app_secret": SECRET, "verify_token": "v", "access_token": "EAAG-token",
        "phone_number_id": NUMBER, "api_base_url": "https://graph.example.test"}, public_url="https://gw.test")
    assert isinstance(built, WhatsAppConnector)
    return built


def parse(payload: dict[str, Any]) -> Any:
    import json

    body = json.dumps(payload).encode()
    request = WebhookRequest(method="POST", url="https://gw.test/webhooks/wa/events", path="events",
                             headers={"X-Hub-Signature-256": sign(SECRET, body)}, query={}, body=body,
                             received_at_ms=TS * 1000 + 5000)
    c = connector()
    c.verify(request)
    return c.parse(request)


def one(kind: str, content: Any, **more: Any) -> Any:
    result = parse(whatsapp_payload(NUMBER, messages=[whatsapp_message(WA, kind, content, wamid="wamid.X",
                                                                       timestamp=TS, **more)]))
    [message] = result.messages
    assert message.sender == Identity("phone", "+34600111222")
    assert message.provider_message_id == "wamid.X"
    assert message.sent_at_ms == TS * 1000  # the window counts from when the customer wrote
    assert message.extra["type"] == kind
    return message


def media(kind: str, message: Any, mime: str, name: str | None = None) -> None:
    assert message.attachments == (Attachment(f"https://graph.example.test/v21.0/MEDIA-{kind}", mime, name=name),)


def test_text() -> None:
    assert one("text", {"body": "¿Hay talla M?"}).text == "¿Hay talla M?"


@pytest.mark.parametrize(("kind", "mime"), [("image", "image/jpeg"), ("video", "video/mp4"),
                                            ("sticker", "image/webp")])
def test_media_with_caption(kind: str, mime: str) -> None:
    content = {"mime_type": mime, "sha256": "x", "id": f"MEDIA-{kind}", "caption": "mira"}
    if kind == "sticker":
        content = {"mime_type": mime, "sha256": "x", "id": f"MEDIA-{kind}", "animated": False}
    message = one(kind, content)
    media(kind, message, mime)
    assert message.text == ("mira" if kind != "sticker" else "")


def test_voice_note() -> None:
    message = one("audio", {"mime_type": "audio/ogg; codecs=opus", "sha256": "x", "id": "MEDIA-audio", "voice": True})
    media("audio", message, "audio/ogg; codecs=opus")
    assert message.extra["voice"] == "true"


def test_document_keeps_its_filename() -> None:
    message = one("document", {"caption": "la factura", "filename": "factura-17.pdf", "mime_type": "application/pdf",
                               "sha256": "x", "id": "MEDIA-document"})
    media("document", message, "application/pdf", name="factura-17.pdf")
    assert message.text == "la factura"


def test_location_is_text_with_a_map_link() -> None:
    message = one("location", {"latitude": 40.4168, "longitude": -3.7038, "name": "Tienda Sol",
                               "address": "Puerta del Sol 1, Madrid"})
    assert message.text == ("📍 Tienda Sol, Puerta del Sol 1, Madrid\n"
                            "https://www.google.com/maps/search/?api=1&query=40.4168%2C-3.7038")


def test_contacts() -> None:
    message = one("contacts", [{"name": {"formatted_name": "Pablo Ruiz", "first_name": "Pablo"},
                                "phones": [{"phone": "+34 600 222 333", "wa_id": "34600222333", "type": "CELL"}],
                                "emails": [{"email": "pablo@example.com", "type": "WORK"}]}])
    assert message.text == "👤 Pablo Ruiz\nCELL: +34 600 222 333\nWORK: pablo@example.com"


def test_interactive_replies_and_buttons() -> None:
    button = one("interactive", {"type": "button_reply", "button_reply": {"id": "yes-1", "title": "Sí"}},
                 context={"from": "15550783881", "id": "wamid.ASKED"})
    assert (button.text, button.extra["reply_id"], button.extra["reply_to"]) == ("Sí", "yes-1", "wamid.ASKED")
    listed = one("interactive", {"type": "list_reply", "list_reply": {"id": "slot-3", "title": "Martes 10:00",
                                                                      "description": "Madrid centro"}})
    assert (listed.text, listed.extra["reply_id"]) == ("Martes 10:00", "slot-3")
    quick = one("button", {"payload": "TRACK_ORDER", "text": "Seguir mi pedido"})
    assert (quick.text, quick.extra["payload"]) == ("Seguir mi pedido", "TRACK_ORDER")


def test_a_reaction_carries_its_emoji_and_target() -> None:
    reaction = one("reaction", {"message_id": "wamid.OURS", "emoji": "👍"})
    assert (reaction.text, reaction.extra["reaction_to"]) == ("👍", "wamid.OURS")
    removed = one("reaction", {"message_id": "wamid.OURS"})
    assert removed.extra["reaction_removed"] == "true"


@pytest.mark.parametrize("kind", ["unsupported", "order", "system"])
def test_unsupported_types_say_what_arrived(kind: str) -> None:
    more = {"errors": [{"code": 131051, "title": "Message type unknown",
                        "error_data": {"details": "Message type is currently not supported."}}]} \
        if kind == "unsupported" else {}
    message = one(kind, {"catalog_id": "1"} if kind == "order" else {}, **more)
    assert f"WhatsApp {kind} message" in message.text
    if kind == "unsupported":
        assert "not supported" in message.text


def test_a_batch_of_entries_and_changes_is_parsed_whole() -> None:
    first = whatsapp_payload(NUMBER, contacts=[(WA, "Ana"), ("34600999000", "Luis")], messages=[
        whatsapp_message(WA, "text", {"body": "uno"}, wamid="wamid.1"),
        whatsapp_message("34600999000", "text", {"body": "dos"}, wamid="wamid.2")])
    second = whatsapp_payload(NUMBER, statuses=[whatsapp_status("wamid.OUT", "read", WA)])
    elsewhere = whatsapp_payload("999", messages=[whatsapp_message(WA, "text", {"body": "no"})])
    payload = {"object": "whatsapp_business_account", "entry": [
        {"id": "WABA", "changes": first["entry"][0]["changes"] + second["entry"][0]["changes"]},
        elsewhere["entry"][0],
        {"id": "WABA", "changes": [{"field": "account_update", "value": {
            "metadata": {"phone_number_id": NUMBER}, "event": "VERIFIED_ACCOUNT"}}]},
    ]}
    result = parse(payload)
    assert [(m.text, m.sender_name) for m in result.messages] == [("uno", "Ana"), ("dos", "Luis")]
    assert [(s.provider_message_id, s.status) for s in result.statuses] == [("wamid.OUT", DeliveryStatus.READ)]
    assert sorted(result.skipped) == ["other_number", "unsupported_field"]


def test_a_failed_status_keeps_meta_s_reason_and_131047_closes_the_window() -> None:
    status = whatsapp_status("wamid.OUT", "failed", WA, errors=[{
        "code": 131047, "title": "Re-engagement message", "message": "Re-engagement message",
        "error_data": {"details": "Message failed to send because more than 24 hours have passed"}}])
    [update] = parse(whatsapp_payload(NUMBER, statuses=[status])).statuses
    assert update.status is DeliveryStatus.FAILED
    assert update.error == "131047: Re-engagement message (Message failed to send because more than 24 hours " \
                           "have passed)"
    assert update.window_closed


def test_old_mexican_ids_keep_their_reply_form() -> None:
    message = parse(whatsapp_payload(NUMBER, messages=[whatsapp_message("5215512345678", "text", {"body": "hola"})]))
    [m] = message.messages
    assert m.sender == Identity("phone", "+525512345678") and m.reply_address == "+5215512345678"


@pytest.mark.parametrize("payload", [
    {"object": "page", "entry": []},
    {"object": "whatsapp_business_account", "entry": [{"id": "1"}]},
    {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages"}]}]},
])
def test_authentic_but_malformed_is_refused_for_the_dead_letters(payload: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload):
        parse(payload)


def test_a_message_without_an_id_is_malformed() -> None:
    broken = whatsapp_message(WA, "text", {"body": "x"})
    del broken["id"]
    with pytest.raises(MalformedPayload, match="has no 'id'"):
        parse(whatsapp_payload(NUMBER, messages=[broken]))
