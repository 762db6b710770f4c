"""A reply is composed: channel and recipient, the voice, the channel's limits, the outbox entry.

Every reply, an agent's text or a named intent, is rendered by the brand's voice
(conversation.voice) for its channel and the customer's locale before it is queued, so the
thread shows what the customer received (`text`) beside what the agent typed (`composed`).

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
from dataclasses import dataclass
from typing import Any

import msgspec

from conversation.capabilities import WindowClosed, check_window, fit_attachments, fit_text, window_closes_at_ms
from conversation.channels import Channel
from conversation.errors import NoChannel, NotFound, OptedOut
from conversation.model import Attachment, Identity, Message, ReplyWindow, Template, TemplateSpec, from_ms
from conversation.service.publisher import Publisher
from conversation.store import Store
from conversation.store.threads import ReplyContext
from conversation.voice import Context, LintWarning, Rendered, UnknownIntent, Voice
from conversation.voice.locales import phone_locale


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
    composed: str | None = None
    intent: str | None = None
    html: str | None = None


class UnknownTemplate(ValueError):
    """The template is not configured on the instance; `templates` names those that are."""

    def __init__(self, message: str, templates: Sequence[str]) -> None:
        super().__init__(message)
        self.templates = list(templates)


@dataclass(frozen=True)
class Reply:
    """A composed reply: its (first part's) message, and what the tone lint says of it."""

    message: Message
    warnings: tuple[LintWarning, ...] = ()


class Replies:
    def __init__(self, store: Store, channels: Mapping[str, Channel], publisher: Publisher,
                 voice: Voice | None = None) -> None:
        self.store = store
        self.channels = channels
        self.publisher = publisher
        # Swapped whole on a reload (one assignment, so a reply renders with one voice or the other).
        self.voice = voice or Voice()

    async def compose(
        self,
        conversation_id: str,
        *,
        text: str | None = None,
        intent: str | None = None,
        variables: Mapping[str, Any] | None = None,
        instance: str | None = None,
        private: bool = False,
        author: str | None = None,
        idempotency_key: str | None = None,
        attachments: Sequence[Attachment] = (),
        template: Template | None = None,
        lang: str | None = None,
    ) -> Reply:
        """Store an agent's reply as queued and hand it to the dispatcher; or store a private
        note (as typed: nobody but agents reads it).

        The reply is the agent's `text` (never evaluated: its characters go as typed) or a
        named `intent` with its `variables`, rendered by the voice for the channel and the
        customer's locale. With `template` (one of the instance's approved templates) it is
        sent as that template whatever the window, and the thread shows its rendered body.
        Outside the window, an intent the voice maps to one of the instance's templates goes
        as that template. `lang` is the language the lint's warnings are written in."""
        threads = self.store.threads
        if private:
            note, _, change = await threads.append_outbound(
                conversation_id, text=text or "", channel="note", instance=None, to=None, author=author,
                note=True, idempotency_key=idempotency_key,
            )
            await self.publisher.changed([change])
            return Reply(note)

        voice = self.voice
        if intent is not None and intent not in voice.intents():
            raise UnknownIntent(intent, voice.intents())
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
        facts = await threads.reply_context(conversation_id)
        stored = False
        try:
            locale, context = voice_context(voice, conversation_id, facts, to, channel, author, variables)
            tag: str | None = None
            if template is None:
                try:
                    tag = check_window(caps, await threads.last_inbound_ms(conversation_id, instance, channel),
                                       int(time.time() * 1000), templates=[t.name for t in configured])
                except WindowClosed:
                    if intent is None:
                        raise
                    template = self._intent_template(voice, intent, locale, context, configured, instance)
            rendered: Rendered | None = None
            if template is not None:
                spec = _configured(configured, template.name, template.language)
                if spec is None:
                    names = [f"{t.name} ({t.language})" for t in configured]
                    raise UnknownTemplate(f"no template {template.name!r} in {template.language!r} is configured on "
                                          f"{instance!r}" + (f"; it has {', '.join(names)}" if names else ""),
                                          [t.name for t in configured])
                body = spec.render(template.parameters)
            else:
                rendered = voice.render(channel=channel, caps=caps, context=context, locale=locale, text=text,
                                        intent=intent, first_reply=facts.first_reply, lang=lang)
                body = rendered.text
            body, kept = fit_attachments(caps, body, attachments)
            parts = [body] if template is not None else fit_text(caps, body)

            # Without an Idempotency-Key the request still gets one, so that the outbox entry and the
            # stored message can find each other.
            base_key = idempotency_key or f"auto-{uuid.uuid4().hex}"
            first: Message | None = None
            for n, part in enumerate(parts):
                reply = ReplyIntent(
                    conversation_id=conversation_id, key=base_key if n == 0 else f"{base_key}#{n}", text=part,
                    channel=channel, instance=instance, to=to, author=author,
                    # attachments ride with the last part, after the text that introduces them
                    attachments=tuple(kept) if n == len(parts) - 1 else (),
                    template=template, tag=tag, to_address=to_address,
                    composed=text if n == 0 else None, intent=intent if n == 0 else None,
                    # an HTML part stands for the whole text: only when the text went in one piece
                    html=rendered.html if rendered is not None and len(parts) == 1 else None,
                )
                # Queued first: a retried request whose first attempt died anywhere after this is sent
                # once, because the dispatcher checks the message's attempts before sending.
                entry = await self.store.outbox.enqueue({"c": conversation_id, "r": msgspec.json.encode(reply),
                                                         "a": "0"})
                try:
                    msg, _ = await self.store_intent(reply)
                except (OptedOut, NotFound):
                    # Nothing was stored, so nothing must be sent: withdraw the entry (a dispatcher that
                    # got to it first finds the same refusal and drops it).
                    await self.store.outbox.withdraw(entry)
                    raise
                stored = True
                first = first or msg
        except BaseException:
            if facts.first_reply and not stored:
                await threads.release_first_reply(conversation_id, facts.episode)
            raise
        assert first is not None
        return Reply(first, rendered.warnings if rendered is not None else ())

    @staticmethod
    def _intent_template(voice: Voice, intent: str, locale: str, context: Context,
                         configured: Sequence[TemplateSpec], instance: str) -> Template:
        """The approved template an intent goes out as where the window is closed; WindowClosed
        again when the voice maps it to none, or to one the instance does not have."""
        mapped = voice.template_for(intent, locale, context)
        names = [t.name for t in configured]
        if mapped is None:
            raise WindowClosed(f"the reply window is closed and intent {intent!r} maps to no approved template "
                               "(voice.toml: [intents.<name>.whatsapp_template])", names)
        mapping, parameters = mapped
        spec = _configured(configured, mapping.name, mapping.language or locale)
        if spec is None:
            raise WindowClosed(f"the reply window is closed and intent {intent!r} maps to template "
                               f"{mapping.name!r} ({mapping.language or locale}), which {instance!r} does not have",
                               names)
        return Template(spec.name, spec.language, parameters)

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
            template=intent.template, tag=intent.tag, to_address=intent.to_address, composed=intent.composed,
            intent=intent.intent, html=intent.html,
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


def voice_context(voice: Voice, cid: str, facts: ReplyContext, to: Identity | None, channel: str,
                  author: str | None, variables: Mapping[str, Any] | None,
                  locale: str | None = None) -> tuple[str, Context]:
    """The locale a reply to `to` is written in, and what its templates may use.

    The locale is the customer's own, else what their channel told, else their phone number's
    country, else the brand's default (`locale`, when given, wins: a preview may ask)."""
    hint = facts.channel_locale or (phone_locale(to.address) if to is not None and to.kind == "phone" else None)
    chosen = voice.locale_for(locale or facts.locale, hint)
    return chosen, Context(customer_name=facts.name, customer_locale=facts.locale, tier=facts.tier,
                           agent_name=author, reference=cid, queue=facts.queue, channel=channel,
                           variables=dict(variables or {}))


def _configured(configured: Sequence[TemplateSpec], name: str, language: str) -> TemplateSpec | None:
    """The instance's template of that name in that language; a base language ("es") finds a
    regional one ("es_MX") when that is the only one."""
    exact = [t for t in configured if t.name == name and t.language == language]
    if exact:
        return exact[0]
    base = language.replace("-", "_").split("_")[0].lower()
    regional = [t for t in configured if t.name == name and t.language.replace("-", "_").split("_")[0].lower() == base]
    return regional[0] if len(regional) == 1 else None


__all__ = ["Replies", "Reply", "ReplyIntent", "UnknownTemplate", "voice_context"]
