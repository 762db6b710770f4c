"""WhatsApp Business Cloud API, kind `whatsapp`: one business phone number of a WhatsApp
Business Account.

Meta posts `messages` changes (customers' messages and our messages' statuses) and, for a number
also used in the WhatsApp Business app, `smb_message_echoes` (what was sent from the app) to
`/webhooks/{instance}/events`. A customer's `wa_id` is their phone number: the same phone
identity as an SMS sender. Replies go to `POST /{version}/{phone_number_id}/messages`; outside
the 24-hour customer-service window only an approved template may go (the core enforces it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from connectors.base import (
    Capabilities,
    FileUnavailable,
    MalformedPayload,
    Outbound,
    OverflowRule,
    PermanentSendError,
    ProviderFile,
    Secret,
    TextFormat,
    TextUnit,
    TransientSendError,
    non_empty_secret,
)
from connectors.social.graph import GraphError
from connectors.social.meta import Batch, MetaConnector, MetaSettings, require, seconds_ms
from connectors.social.whatsapp_content import content_of
from conversation.model import DeliveryStatus, Identity, InboundMessage, StatusUpdate, Template, TemplateSpec
from conversation.phones import phone_address, reply_form

STATUS: Mapping[str, DeliveryStatus] = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "played": DeliveryStatus.READ,  # a voice message listened to
    "failed": DeliveryStatus.FAILED,
}
RE_ENGAGEMENT = 131047  # free text outside the 24-hour window


class WhatsAppSettings(MetaSettings, kw_only=True):
    """`[connectors.<instance>]` with `kind = "whatsapp"`."""

    kind: str = "whatsapp"
    access_token: Secret
    phone_number_id: str
    templates: list[TemplateSpec] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.access_token = non_empty_secret(self.access_token, "access_token")
        if not self.phone_number_id.isdigit():
            raise ValueError(f"phone_number_id must be the number's Graph id (digits), not {self.phone_number_id!r}")


def phone_of(wa_id: str) -> tuple[str, str | None]:
    """(phone identity address, the form to reply to when it differs) of a WhatsApp id, which is
    the number's digits without the "+"."""
    written = wa_id if wa_id.startswith("+") else "+" + wa_id
    address = phone_address(written)
    return address, reply_form(written, address)


class WhatsAppConnector(MetaConnector[WhatsAppSettings]):
    kind = "whatsapp"
    channel = "whatsapp"
    identity_kind = "phone"  # one person's WhatsApp and SMS are one identity
    meta_object = "whatsapp_business_account"
    webhook_fields = ("messages", "smb_message_echoes")
    Settings = WhatsAppSettings
    capabilities = Capabilities(
        max_text_length=4096,
        text_unit=TextUnit.CHARACTERS,
        overflow=OverflowRule.SPLIT,
        formats=(TextFormat.WHATSAPP,),
        attachment_kinds=("image/jpeg", "image/png", "video/mp4", "video/3gpp", "audio/", "application/", "text/"),
        # Images may be 5 MB, audio and video 16 MB, documents 100 MB: one limit for all keeps a
        # larger file from failing the whole reply; it goes as a link instead.
        max_attachment_bytes=5 * 1024 * 1024,
        max_attachments=10,
        reply_window_seconds=24 * 3600,
        outside_window="template",
        ack_deadline_seconds=10,
    )

    def access_token(self) -> str:
        return self.settings.access_token.reveal()

    # --- inbound -------------------------------------------------------------------------------

    def parse_entry(self, entry: Mapping[str, Any], received_at_ms: int, batch: Batch) -> None:
        changes = entry.get("changes")
        if not isinstance(changes, list):
            raise MalformedPayload("a WhatsApp entry has no changes list")
        for change in changes:
            value = change.get("value") if isinstance(change, Mapping) else None
            if not isinstance(value, Mapping):
                raise MalformedPayload("a change has no value object")
            field = change.get("field")
            metadata = value.get("metadata")
            number_id = str(metadata.get("phone_number_id") or "") if isinstance(metadata, Mapping) else ""
            if number_id != self.settings.phone_number_id:
                # One WhatsApp Business Account, several numbers: another instance's, or none.
                batch.skipped.append("other_number")
                continue
            if field == "messages":
                self._messages(value, received_at_ms, batch)
            elif field == "smb_message_echoes":
                for echo in _list(value, "message_echoes"):
                    batch.messages.append(self._message(echo, received_at_ms, {}, echo=True))
            else:
                batch.skipped.append("unsupported_field")

    def _messages(self, value: Mapping[str, Any], received_at_ms: int, batch: Batch) -> None:
        names: dict[str, str] = {}
        for contact in _list(value, "contacts"):
            profile = contact.get("profile")
            if contact.get("wa_id") and isinstance(profile, Mapping) and profile.get("name"):
                names[str(contact["wa_id"])] = str(profile["name"])
        for message in _list(value, "messages"):
            batch.messages.append(self._message(message, received_at_ms, names, echo=False))
        for status in _list(value, "statuses"):
            update = self._status(status)
            if update is None:
                batch.skipped.append("unsupported_status")
            else:
                batch.statuses.append(update)
        if not value.get("messages") and not value.get("statuses") and value.get("errors"):
            batch.skipped.append("error_notice")  # an account-level error, not a message

    def _message(self, message: Mapping[str, Any], received_at_ms: int, names: Mapping[str, str], *,
                 echo: bool) -> InboundMessage:
        wamid = str(require(message, "id", "a WhatsApp message"))
        # An echo went from the business to the customer: the customer is its "to".
        wa_id = str(require(message, "to" if echo else "from", f"WhatsApp message {wamid}"))
        address, reply_to = phone_of(wa_id)
        content = content_of(message, self.graph.url)
        return InboundMessage(
            instance=self.instance,
            channel=self.channel,
            provider_message_id=wamid,
            sender=Identity("phone", address),
            text=content.text,
            attachments=content.attachments,
            sender_name=None if echo else names.get(wa_id),
            received_at_ms=received_at_ms,
            sent_at_ms=seconds_ms(message.get("timestamp")),
            reply_address=None if echo else reply_to,
            echo=echo,
            extra={"wa_id": wa_id, **content.extra},
        )

    def _status(self, status: Mapping[str, Any]) -> StatusUpdate | None:
        wamid = str(require(status, "id", "a WhatsApp status"))
        raw = str(status.get("status") or "")
        mapped = STATUS.get(raw)
        if mapped is None:
            return None  # "deleted" and statuses yet to come: nothing to show
        errors = [e for e in status.get("errors") or () if isinstance(e, Mapping)]
        error, closed = None, False
        if errors:
            first = errors[0]
            data = first.get("error_data")
            details = data.get("details") if isinstance(data, Mapping) else None
            title = first.get("title") or first.get("message") or "failed"
            error = f"{first.get('code')}: {title}" + (f" ({details})" if details and details != title else "")
            closed = first.get("code") == RE_ENGAGEMENT
        return StatusUpdate(instance=self.instance, provider_message_id=wamid, status=mapped, error=error,
                            at_ms=seconds_ms(status.get("timestamp")), window_closed=closed)

    # --- outbound ------------------------------------------------------------------------------

    async def send(self, outbound: Outbound) -> str:
        if outbound.to.kind != "phone":
            raise PermanentSendError(f"WhatsApp messages go to phone numbers, not {outbound.to.kind} identities")
        to = outbound.to.address.removeprefix("+")
        bodies: list[dict[str, Any]] = []
        if outbound.template is not None:
            bodies.append(self._template(outbound.template))
        elif outbound.text:
            text = outbound.text  # already in WhatsApp's markup: the core's voice rendered it
            bodies.append({"type": "text", "text": {"body": text, "preview_url": "https://" in text}})
        for attachment in outbound.attachments:
            kind = _media_kind(attachment.content_type)
            media: dict[str, Any] = {"link": attachment.url}
            if kind == "document" and attachment.name:
                media["filename"] = attachment.name
            bodies.append({"type": kind, kind: media})
        if not bodies:
            raise PermanentSendError("nothing to send: no text, template or attachment")
        first: str | None = None
        for body in bodies:
            payload = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, **body}
            try:
                answer = await self.graph.post(f"{self.settings.phone_number_id}/messages", payload)
            except GraphError as exc:
                if first is not None:
                    # The text went; an attachment after it did not. Retrying would send the text
                    # twice, so the reply stands as sent and the loss is said where agents read it.
                    raise PermanentSendError(f"sent as {first}, but an attachment failed: {exc.message}") from None
                raise exc.as_send_error() from None
            messages = answer.get("messages")
            wamid = messages[0].get("id") if isinstance(messages, list) and messages and \
                isinstance(messages[0], Mapping) else None
            if not wamid:
                raise PermanentSendError("WhatsApp accepted the message but returned no id")
            first = first or str(wamid)
        assert first is not None
        return first

    def _template(self, template: Template) -> dict[str, Any]:
        spec = next((t for t in self.settings.templates
                     if t.name == template.name and t.language == template.language), None)
        if spec is None:
            raise PermanentSendError(f"template {template.name!r} ({template.language}) is no longer configured "
                                     f"on {self.instance!r}")
        body: dict[str, Any] = {"name": spec.name, "language": {"code": spec.language}}
        if template.parameters:
            body["components"] = [{"type": "body", "parameters": [{"type": "text", "text": p}
                                                                  for p in template.parameters]}]
        return {"type": "template", "template": body}

    async def fetch_file(self, url: str) -> ProviderFile | None:
        """A customer's media: its Graph id resolves to a short-lived URL, and both need the token."""
        if not url.startswith(self.graph.url("")):
            return None
        media_id = url.removeprefix(self.graph.url(""))
        try:
            info = await self.graph.get(media_id)
        except GraphError as exc:
            raise FileUnavailable(f"WhatsApp media {media_id}: {exc.message}") from None
        except TransientSendError as exc:
            raise FileUnavailable(exc.reason) from None
        download = info.get("url")
        if not isinstance(download, str):
            raise FileUnavailable(f"WhatsApp media {media_id} has no download URL")
        fetched = await self.fetch_media(download)
        mime = info.get("mime_type")
        return ProviderFile(fetched.data, mime if isinstance(mime, str) else fetched.content_type)


def _media_kind(content_type: str) -> str:
    if content_type.startswith("image/"):
        return "image"
    if content_type.startswith("video/"):
        return "video"
    if content_type.startswith("audio/"):
        return "audio"
    return "document"


def _list(value: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = value.get(key) or []
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise MalformedPayload(f"{key} is not a list of objects")
    return items


__all__ = ["WhatsAppConnector", "WhatsAppSettings", "phone_of"]
