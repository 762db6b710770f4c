"""A reply is composed: channel and recipient, the channel's limits, the outbox entry.

The default channel is the one the customer last wrote on; an agent may choose another instance
the customer is reachable on. The connector's declared capabilities are enforced here, once for
every connector: a reply outside the channel's window is refused (WindowClosed); attachments it
cannot carry become links; text longer than it allows is split (or refused), each part its own
message, so the timeline shows what the customer receives.

A reply spans two slots: the message lives in the customer's, the send queue in {out}. The queue
entry is written first, as an outbox: it carries the whole reply (a `ReplyIntent`), so that if
the process dies before the message is stored, the dispatcher stores it from the entry and sends
it. The message's idempotency key (the request's Idempotency-Key, or a generated one) makes the
two writers meet on one message, whichever comes first.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence

import msgspec

from conversation.capabilities import check_window, fit_attachments, fit_text, window_closes_at_ms
from conversation.channels import Channel
from conversation.errors import NoChannel, NotFound, OptedOut
from conversation.model import Attachment, Identity, Message, ReplyWindow, Template, from_ms
from conversation.service.publisher import Publisher
from conversation.store import Store


class ReplyIntent(msgspec.Struct, frozen=True, kw_only=True):
    """Everything needed to store one reply (one part of a split one) if its writer died."""

    conversation_id: str
    key: str  # the message's idempotency key
    text: str
    channel: str
    instance: str
    to: Identity
    author: str | None = None
    attachments: tuple[Attachment, ...] = ()
    template: Template | None = None
    tag: str | None = None
    to_address: str | None = None


class UnknownTemplate(ValueError):
    """The template is not configured on the instance; `templates` names those that are."""

    def __init__(self, message: str, templates: Sequence[str]) -> None:
        super().__init__(message)
        self.templates = list(templates)


class Replies:
    def __init__(self, store: Store, channels: Mapping[str, Channel], publisher: Publisher) -> None:
        self.store = store
        self.channels = channels
        self.publisher = publisher

    async def compose(
        self,
        conversation_id: str,
        *,
        text: str,
        instance: str | None = None,
        private: bool = False,
        author: str | None = None,
        idempotency_key: str | None = None,
        attachments: Sequence[Attachment] = (),
        template: Template | None = None,
    ) -> Message:
        """Store an agent's reply as queued and hand it to the dispatcher; or store a private
        note. Returns the (first part's) message.

        With `template` (one of the instance's approved templates) instead of text, it is sent
        as that template whatever the window, and the thread shows its rendered body."""
        threads = self.store.threads
        if private:
            note, _, change = await threads.append_outbound(
                conversation_id, text=text, channel="note", instance=None, to=None, author=author,
                note=True, idempotency_key=idempotency_key,
            )
            await self.publisher.changed([change])
            return note

        last = await threads.last_inbound(conversation_id)
        if last is None:
            await threads.get_conversation(conversation_id)  # NotFound first, if that is the problem
        if instance is None:
            if last is None:
                raise NoChannel("the customer has not written on any channel yet; choose an 'instance'")
            instance = last[1]
        channel_port = self.channels.get(instance)
        if channel_port is None:
            raise NoChannel(f"no connector instance {instance!r} is configured")
        # One connector may speak several media (Twilio: SMS and WhatsApp); answer on the one the
        # customer used last on this instance.
        channel = last[0] if last is not None and last[1] == instance else channel_port.channel
        to = await self._recipient(conversation_id, channel_port, channel, last)
        to_address = await threads.reply_address(conversation_id, instance, channel)
        caps = channel_port.capabilities_for(channel)
        configured = list(channel_port.templates())
        tag: str | None = None
        if template is not None:
            spec = next((t for t in configured if t.name == template.name and t.language == template.language), None)
            if spec is None:
                names = [f"{t.name} ({t.language})" for t in configured]
                raise UnknownTemplate(f"no template {template.name!r} in {template.language!r} is configured on "
                                      f"{instance!r}" + (f"; it has {', '.join(names)}" if names else ""),
                                      [t.name for t in configured])
            text, parts = spec.render(template.parameters), [spec.render(template.parameters)]
        else:
            tag = check_window(caps, await threads.last_inbound_ms(conversation_id, instance, channel),
                               int(time.time() * 1000), templates=[t.name for t in configured])
        text, kept = fit_attachments(caps, text, attachments)
        if template is None:
            parts = fit_text(caps, text)

        # Without an Idempotency-Key the request still gets one, so that the outbox entry and the
        # stored message can find each other.
        base_key = idempotency_key or f"auto-{uuid.uuid4().hex}"
        first: Message | None = None
        for n, part in enumerate(parts):
            intent = ReplyIntent(
                conversation_id=conversation_id, key=base_key if n == 0 else f"{base_key}#{n}", text=part,
                channel=channel, instance=instance, to=to, author=author,
                # attachments ride with the last part, after the text that introduces them
                attachments=tuple(kept) if n == len(parts) - 1 else (),
                template=template, tag=tag, to_address=to_address,
            )
            # Queued first: a retried request whose first attempt died anywhere after this is sent
            # once, because the dispatcher checks the message's attempts before sending.
            entry = await self.store.outbox.enqueue({"c": conversation_id, "r": msgspec.json.encode(intent),
                                                     "a": "0"})
            try:
                msg, _ = await self.store_intent(intent)
            except (OptedOut, NotFound):
                # Nothing was stored, so nothing must be sent: withdraw the entry (a dispatcher that
                # got to it first finds the same refusal and drops it).
                await self.store.outbox.withdraw(entry)
                raise
            first = first or msg
        assert first is not None
        return first

    async def windows(self, cid: str) -> list[ReplyWindow]:
        """For every instance and medium the customer is reachable on, whether free text may go
        now and until when (closes_at None: the medium has no window)."""
        customer = await self.store.threads.get_customer(cid)
        kinds = {i.kind for i in customer.identities}
        wrote = await self.store.threads.windows(cid)
        now_ms = int(time.time() * 1000)
        out: list[ReplyWindow] = []
        for instance, port in sorted(self.channels.items()):
            for medium in port.media():
                if port.identity_kind_for(medium) not in kinds:
                    continue
                caps = port.capabilities_for(medium)
                last = wrote.get((instance, medium))
                closes = window_closes_at_ms(caps, last)
                is_open = caps.reply_window_seconds is None or (closes is not None and now_ms <= closes)
                out.append(ReplyWindow(instance=instance, channel=medium, open=is_open,
                                       closes_at=from_ms(closes) if closes is not None else None))
        return out

    async def store_intent(self, intent: ReplyIntent) -> tuple[Message, bool]:
        """The reply's message: stored now (and logged), or the one stored earlier under its key."""
        message, created, change = await self.store.threads.append_outbound(
            intent.conversation_id, text=intent.text, channel=intent.channel, instance=intent.instance,
            to=intent.to, author=intent.author, idempotency_key=intent.key, attachments=intent.attachments,
            template=intent.template, tag=intent.tag, to_address=intent.to_address,
        )
        await self.publisher.changed([change])  # the reply is the thread's latest message now
        return message, created

    async def _recipient(self, cid: str, port: Channel, channel: str,
                         last: tuple[str, str, Identity] | None) -> Identity:
        if last is not None and last[1] == port.instance:
            return last[2]
        kind = port.identity_kind_for(channel)
        customer = await self.store.threads.get_customer(cid)
        for ident in customer.identities:
            if ident.kind == kind:
                return ident
        raise NoChannel(f"the customer has no {kind} identity to reach on {port.instance!r}")


__all__ = ["Replies", "ReplyIntent", "UnknownTemplate"]
