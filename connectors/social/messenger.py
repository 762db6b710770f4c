"""Facebook Messenger (kind `messenger`) and Instagram Direct (kind `instagram`): one Page, or
one Instagram professional account, through the Messenger Platform.

Both post `messaging[]` events to `/webhooks/{instance}/events`: messages (and echoes of what the
page sent, from our API or from the Page inbox), postbacks, and delivery and read watermarks.
Customers are page-scoped ids (PSID, IGSID), so identities of kinds `messenger` and `instagram`;
their names come from the Graph API and are cached by the core. Replies go to
`POST /{version}/me/messages`: a RESPONSE within 24 hours of the customer's last message, and,
where the instance allows it, up to seven days with the HUMAN_AGENT tag.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec

from connectors.base import (
    Capabilities,
    MalformedPayload,
    Outbound,
    OverflowRule,
    PermanentSendError,
    Profile,
    Secret,
    TextFormat,
    TextUnit,
    TransientSendError,
    non_empty_secret,
)
from connectors.social.graph import GraphError
from connectors.social.meta import Batch, MetaConnector, MetaSettings, require
from conversation.model import Attachment, DeliveryStatus, Identity, InboundMessage, MessageEdit, StatusUpdate

# Our sends carry this in `metadata`, which Messenger hands back in the echo: the echo of a
# message we stored already is then told from one sent in the Page inbox.
OUR_METADATA = "omnigateway:"
HUMAN_AGENT = "HUMAN_AGENT"
_TYPES = {"image": "image/jpeg", "video": "video/mp4", "audio": "audio/mpeg", "file": "application/octet-stream"}


class PageSettings(MetaSettings, kw_only=True):
    """`[connectors.<instance>]` with `kind = "messenger"` or `"instagram"`."""

    page_access_token: Secret
    page_id: str  # instagram: the Instagram professional account's id
    human_agent_tag: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.page_access_token = non_empty_secret(self.page_access_token, "page_access_token")
        if not self.page_id.isdigit():
            raise ValueError(f"page_id must be the numeric id, not {self.page_id!r}")


class MessengerSettings(PageSettings, kw_only=True):
    kind: str = "messenger"


class InstagramSettings(PageSettings, kw_only=True):
    kind: str = "instagram"


class PageConnector(MetaConnector[PageSettings]):
    """What Messenger and Instagram share; they differ in limits, names and profile fields."""

    profile_fields: ClassVar[str]
    # Messenger hands `metadata` back in echoes; Instagram's Send API takes none.
    sends_metadata: ClassVar[bool] = False

    def access_token(self) -> str:
        return self.settings.page_access_token.reveal()

    def capabilities_for(self, channel: str) -> Capabilities:
        caps = super().capabilities_for(channel)
        if self.settings.human_agent_tag:
            return msgspec.structs.replace(caps, outside_window="tag", window_tag=HUMAN_AGENT,
                                           tag_window_seconds=7 * 86400)
        return caps

    # --- inbound -------------------------------------------------------------------------------

    def parse_entry(self, entry: Mapping[str, Any], received_at_ms: int, batch: Batch) -> None:
        events = entry.get("messaging")
        if events is None and entry.get("changes") is not None:
            batch.skipped.append("unsupported_field")  # feed and comment changes, not messages
            return
        if not isinstance(events, list):
            raise MalformedPayload(f"a {self.kind} entry has no messaging list")
        ours = str(entry.get("id") or "") == self.settings.page_id
        for event in events:
            if not isinstance(event, Mapping):
                raise MalformedPayload("a messaging event is not an object")
            if not ours:
                batch.skipped.append("other_page")  # the app serves several pages
                continue
            self._event(event, received_at_ms, batch)

    def _event(self, event: Mapping[str, Any], received_at_ms: int, batch: Batch) -> None:
        sender = _id(event, "sender")
        recipient = _id(event, "recipient")
        at_ms = int(event.get("timestamp") or 0)
        customer = Identity(self.identity_kind_for(self.channel), sender)
        if isinstance(event.get("message"), Mapping):
            message = event["message"]
            if message.get("is_echo"):
                if str(message.get("metadata") or "").startswith(OUR_METADATA):
                    batch.skipped.append("own_echo")  # stored when we sent it
                    return
                customer = Identity(customer.kind, recipient)
            batch.messages.append(self._message(message, customer, at_ms, received_at_ms,
                                                echo=bool(message.get("is_echo"))))
        elif isinstance(event.get("postback"), Mapping):
            postback = event["postback"]
            mid = str(postback.get("mid") or f"postback:{sender}:{at_ms}")
            batch.messages.append(InboundMessage(
                instance=self.instance, channel=self.channel, provider_message_id=mid, sender=customer,
                text=str(postback.get("title") or postback.get("payload") or ""), received_at_ms=received_at_ms,
                sent_at_ms=at_ms, extra={"postback": str(postback.get("payload") or "")},
            ))
        elif isinstance(event.get("reaction"), Mapping):
            reaction = event["reaction"]
            target = str(reaction.get("mid") or "")
            batch.messages.append(InboundMessage(
                instance=self.instance, channel=self.channel,
                provider_message_id=f"{target}~reaction:{sender}:{at_ms}", sender=customer,
                text=str(reaction.get("emoji") or "") if reaction.get("action") != "unreact" else "",
                received_at_ms=received_at_ms, sent_at_ms=at_ms,
                extra={"reaction_to": target, **({"reaction_removed": "true"}
                                                 if reaction.get("action") == "unreact" else {})},
            ))
        elif isinstance(event.get("delivery"), Mapping) or isinstance(event.get("read"), Mapping):
            self._receipt(event, customer, batch)
        else:
            batch.skipped.append("unsupported_event")  # optins, referrals, handovers...

    def _message(self, message: Mapping[str, Any], customer: Identity, at_ms: int, received_at_ms: int, *,
                 echo: bool) -> InboundMessage:
        mid = str(require(message, "mid", f"a {self.kind} message"))
        extra: dict[str, str] = {}
        if message.get("is_deleted"):  # Instagram: the customer unsent it
            return InboundMessage(instance=self.instance, channel=self.channel, provider_message_id=f"{mid}~deleted",
                                  sender=customer, received_at_ms=received_at_ms,
                                  edit=MessageEdit(target=mid, deleted=True, at_ms=at_ms))
        quick = message.get("quick_reply")
        if isinstance(quick, Mapping) and quick.get("payload"):
            extra["quick_reply"] = str(quick["payload"])
        reply_to = message.get("reply_to")
        if isinstance(reply_to, Mapping) and reply_to.get("mid"):
            extra["reply_to"] = str(reply_to["mid"])
        attachments, notes = _attachments(message.get("attachments"))
        text = str(message.get("text") or "")
        text = "\n".join(p for p in (text, *notes) if p)
        if not text and not attachments:
            text = f"[The customer sent a {self.kind} message that cannot be shown here]"
        return InboundMessage(
            instance=self.instance, channel=self.channel, provider_message_id=mid, sender=customer, text=text,
            attachments=attachments, received_at_ms=received_at_ms, sent_at_ms=at_ms, echo=echo, extra=extra,
        )

    def _receipt(self, event: Mapping[str, Any], customer: Identity, batch: Batch) -> None:
        for key, status in (("delivery", DeliveryStatus.DELIVERED), ("read", DeliveryStatus.READ)):
            receipt = event.get(key)
            if not isinstance(receipt, Mapping):
                continue
            watermark = int(receipt.get("watermark") or 0)
            if watermark:
                # Every message we sent this customer up to then, whether or not we know its mid.
                batch.statuses.append(StatusUpdate(instance=self.instance, status=status, at_ms=watermark,
                                                   recipient=customer, up_to_ms=watermark))
            elif receipt.get("mid"):  # Instagram reads name the message
                batch.statuses.append(StatusUpdate(instance=self.instance, provider_message_id=str(receipt["mid"]),
                                                   status=status, at_ms=int(event.get("timestamp") or 0)))
            else:
                batch.skipped.append("unsupported_event")

    # --- outbound ------------------------------------------------------------------------------

    async def send(self, outbound: Outbound) -> str:
        kind = self.identity_kind_for(self.channel)
        if outbound.to.kind != kind:
            raise PermanentSendError(f"{self.kind} replies go to {kind} ids, not {outbound.to.kind} identities")
        envelope: dict[str, Any] = {"recipient": {"id": outbound.to.address}}
        if outbound.tag:
            envelope.update(messaging_type="MESSAGE_TAG", tag=outbound.tag)
        else:
            envelope["messaging_type"] = "RESPONSE"
        messages: list[dict[str, Any]] = []
        if outbound.text:
            messages.append({"text": outbound.text})  # plain already: the core's voice rendered it
        for attachment in outbound.attachments:
            messages.append({"attachment": {"type": _attachment_type(attachment.content_type),
                                            "payload": {"url": attachment.url, "is_reusable": False}}})
        if not messages:
            raise PermanentSendError("nothing to send: no text or attachment")
        first: str | None = None
        for message in messages:
            if self.sends_metadata:
                message["metadata"] = OUR_METADATA + outbound.message_id
            try:
                answer = await self.graph.post("me/messages", {**envelope, "message": message})
            except GraphError as exc:
                if first is not None:
                    raise PermanentSendError(f"sent as {first}, but an attachment failed: {exc.message}") from None
                raise exc.as_send_error() from None
            mid = answer.get("message_id")
            if not mid:
                raise PermanentSendError(f"{self.kind} accepted the message but returned no message_id")
            first = first or str(mid)
        assert first is not None
        return first

    async def profile(self, identity: Identity) -> Profile | None:
        if identity.kind != self.identity_kind_for(self.channel):
            return None
        try:
            user = await self.graph.get(identity.address, {"fields": self.profile_fields})
        except (GraphError, TransientSendError):
            return None  # no name yet; asked again later
        first, last = user.get("first_name"), user.get("last_name")
        name = " ".join(str(p) for p in (first, last) if p) or user.get("name") or user.get("username")
        return Profile(name=str(name)) if name else None


class MessengerConnector(PageConnector):
    kind = "messenger"
    channel = "messenger"
    Settings = MessengerSettings
    profile_fields = "first_name,last_name"
    sends_metadata = True
    meta_object = "page"
    webhook_fields = ("messages", "messaging_postbacks", "message_deliveries", "message_reads", "message_echoes",
                      "message_reactions")
    capabilities = Capabilities(
        max_text_length=2000, text_unit=TextUnit.CHARACTERS, overflow=OverflowRule.SPLIT,
        formats=(TextFormat.PLAIN,), attachment_kinds=("image/", "video/", "audio/", "application/", "text/"),
        max_attachment_bytes=25 * 1024 * 1024, max_attachments=10,
        reply_window_seconds=24 * 3600, outside_window="none", ack_deadline_seconds=10,
    )


class InstagramConnector(PageConnector):
    kind = "instagram"
    channel = "instagram"
    Settings = InstagramSettings
    profile_fields = "name,username"
    meta_object = "instagram"
    webhook_fields = ("messages", "messaging_postbacks", "message_reactions", "messaging_seen")
    capabilities = Capabilities(
        max_text_length=1000, text_unit=TextUnit.CHARACTERS, overflow=OverflowRule.SPLIT,
        formats=(TextFormat.PLAIN,), attachment_kinds=("image/jpeg", "image/png", "video/", "audio/"),
        max_attachment_bytes=8 * 1024 * 1024, max_attachments=10,
        reply_window_seconds=24 * 3600, outside_window="none", ack_deadline_seconds=10,
    )


def _id(event: Mapping[str, Any], key: str) -> str:
    party = event.get(key)
    if not isinstance(party, Mapping) or not party.get("id"):
        raise MalformedPayload(f"a messaging event has no {key}.id")
    return str(party["id"])


def _attachments(raw: Any) -> tuple[tuple[Attachment, ...], list[str]]:
    """Files by URL, and what has no file (a shared location or post) as lines of text."""
    if raw is None:
        return (), []
    if not isinstance(raw, list):
        raise MalformedPayload("attachments is not a list")
    files: list[Attachment] = []
    notes: list[str] = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise MalformedPayload("an attachment is not an object")
        kind = str(item.get("type") or "")
        payload = item.get("payload") if isinstance(item.get("payload"), Mapping) else {}
        url = payload.get("url") if isinstance(payload, Mapping) else None
        if kind == "location" and isinstance(payload, Mapping) and isinstance(payload.get("coordinates"), Mapping):
            c = payload["coordinates"]
            notes.append(f"📍 https://www.google.com/maps/search/?api=1&query={c.get('lat')},{c.get('long')}")
        elif url and kind in _TYPES:  # a Messenger sticker is an image with a sticker_id
            guessed = mimetypes.guess_type(str(url).split("?")[0])[0]
            files.append(Attachment(url=str(url), content_type=guessed or _TYPES.get(kind, "application/octet-stream"),
                                    name=str(item.get("title")) if item.get("title") else None))
        elif url:
            notes.append(f"{item.get('title') or kind}: {url}")
        else:
            notes.append(f"[{kind or 'an attachment'} that cannot be shown here]")
    return tuple(files), notes


def _attachment_type(content_type: str) -> str:
    for prefix in ("image", "video", "audio"):
        if content_type.startswith(prefix + "/"):
            return prefix
    return "file"


__all__ = ["InstagramConnector", "InstagramSettings", "MessengerConnector", "MessengerSettings", "PageConnector"]
