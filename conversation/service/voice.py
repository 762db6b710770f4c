"""The voice as agents and admins see it: a preview of a message on each channel, with the
tone lint's warnings, and the voice swapped whole on a reload.

A preview renders exactly as a reply would (conversation.service.replies), for a conversation's
customer or for nobody in particular, without storing or claiming anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from conversation.capabilities import TextUnit
from conversation.channels import Channel
from conversation.segments import count_segments
from conversation.service.replies import Replies, voice_context
from conversation.store import Store
from conversation.store.threads import ReplyContext
from conversation.voice import LintWarning, UnknownIntent, Voice, VoiceError, load_voice


class UnknownChannel(ValueError):
    def __init__(self, message: str, known: Sequence[str]) -> None:
        super().__init__(message)
        self.known = list(known)


class PreviewItem(msgspec.Struct, omit_defaults=True):
    channel: str
    instance: str
    locale: str
    text: str
    html: str | None = None
    segments: int | None = None  # SMS: how many segments it is billed as
    warnings: list[LintWarning] = msgspec.field(default_factory=list)


class IntentSummary(msgspec.Struct):
    name: str
    locales: list[str]
    channels: list[str]  # channels with a text of their own
    template: str | None = None  # the approved template it goes as outside a window


_NOBODY = ReplyContext(name=None, locale=None, tier="standard", channel_locale=None, queue=None, episode=0,
                       first_reply=True)


class VoiceAdmin:
    def __init__(self, store: Store, channels: Mapping[str, Channel], replies: Replies,
                 path: str | None = None) -> None:
        self.store = store
        self.channels = channels
        self.replies = replies
        self.path = path  # the voice file; None: the neutral voice, nothing to reload

    @property
    def voice(self) -> Voice:
        return self.replies.voice

    def reload(self) -> Voice:
        """Read the file again and swap it in whole; on any problem the running voice stays and
        VoiceError says why."""
        if self.path is None:
            raise VoiceError("no voice file is configured ([gateway] voice_file): the neutral voice has nothing to "
                             "reload")
        voice = Voice(load_voice(Path(self.path)))
        self.replies.voice = voice
        return voice

    def templates(self) -> list[IntentSummary]:
        config = self.voice.config
        if config is None:
            return []
        return [IntentSummary(name=name, locales=sorted(intent.texts), channels=sorted(intent.channels),
                              template=intent.template.name if intent.template is not None else None)
                for name, intent in sorted(config.intents.items())]

    async def preview(
        self,
        *,
        conversation_id: str | None = None,
        channels: Sequence[str] = (),
        text: str | None = None,
        intent: str | None = None,
        variables: Mapping[str, Any] | None = None,
        locale: str | None = None,
        author: str | None = None,
        lang: str | None = None,
    ) -> list[PreviewItem]:
        """How the message would read on each channel asked for (by medium, `sms`, or instance
        name); by default every channel the conversation's customer is reachable on, or with no
        conversation every configured one."""
        voice = self.voice
        if intent is not None and intent not in voice.intents():
            raise UnknownIntent(intent, voice.intents())
        facts, identities = _NOBODY, {}
        if conversation_id is not None:
            facts = await self.store.threads.reply_context(conversation_id, claim=False)
            customer = await self.store.threads.get_customer(conversation_id)
            identities = {i.kind: i for i in customer.identities}
        targets = self._targets(channels, identities if conversation_id is not None else None)
        items: list[PreviewItem] = []
        for instance, medium in targets:
            port = self.channels[instance]
            caps = port.capabilities_for(medium)
            to = identities.get(port.identity_kind_for(medium))
            chosen, context = voice_context(voice, conversation_id or "", facts, to, medium, author, variables,
                                            locale=locale)
            rendered = voice.render(channel=medium, caps=caps, context=context, locale=chosen, text=text,
                                    intent=intent, first_reply=facts.first_reply, lang=lang)
            sms = caps.text_unit is TextUnit.GSM_SEGMENTS or medium == "sms"
            items.append(PreviewItem(channel=medium, instance=instance, locale=chosen, text=rendered.text,
                                     html=rendered.html, segments=count_segments(rendered.text) if sms else None,
                                     warnings=list(rendered.warnings)))
        return items

    def _targets(self, asked: Sequence[str], reachable: Mapping[str, Any] | None) -> list[tuple[str, str]]:
        """(instance, medium) pairs: each asked name is a medium or an instance."""
        media: dict[str, tuple[str, str]] = {}
        for instance, port in sorted(self.channels.items()):
            for medium in port.media():
                if reachable is not None and not asked and port.identity_kind_for(medium) not in reachable:
                    continue
                media.setdefault(medium, (instance, medium))
        if not asked:
            return list(media.values())
        out: list[tuple[str, str]] = []
        for name in asked:
            if name in media:
                out.append(media[name])
            elif name in self.channels:
                out.append((name, self.channels[name].channel))
            else:
                known = sorted(set(media) | set(self.channels))
                raise UnknownChannel(f"no configured channel or instance {name!r}"
                                     + (f"; there are {', '.join(known)}" if known else ""), known)
        return out


__all__ = ["IntentSummary", "PreviewItem", "UnknownChannel", "VoiceAdmin"]
