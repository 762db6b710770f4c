"""Agent replies on their way out: choosing the channel, fitting the text, queueing the send;
and the operator's replay of dead letters.

A reply spans two slots: the message lives in the customer's, the send queue in {out}. The queue
entry is written first, as an outbox: it carries the whole reply (a `ReplyIntent`), so that if
the process dies before the message is stored, the dispatcher stores it from the entry and sends
it. The message's idempotency key (the request's Idempotency-Key, or a generated one) makes the
two writers meet on one message, whichever comes first.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from aiohttp import web

from connectors.base import MalformedPayload, WebhookRequest
from connectors.capabilities import (
    TextTooLong,
    WindowClosed,
    check_window,
    fit_attachments,
    fit_text,
)
from conversation.model import Attachment, Event, EventType, Identity, Message
from conversation.store import NotFound, OptedOut, Store
from gateway.appkeys import CONNECTORS, STORE

__all__ = [
    "NoChannel", "ReplyIntent", "StillMalformed", "TextTooLong", "WindowClosed", "enqueue_reply", "enqueue_send",
    "queue_reply", "replay_dead_letter", "store_intent",
]


class NoChannel(ValueError):
    """There is no channel this reply can go out on."""


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


async def enqueue_send(store: Store, mid: str, attempt: int = 0) -> None:
    """Queue a send of a stored message (a retry's next attempt, an operator's replay)."""
    await store.redis.xadd(store.keys.outbound_stream(), {"m": mid, "a": str(attempt)})


async def enqueue_reply(store: Store, intent: ReplyIntent) -> str:
    """Queue a reply before it is stored (the outbox entry); returns the entry id."""
    entry = await store.redis.xadd(store.keys.outbound_stream(), {
        "c": intent.conversation_id, "r": msgspec.json.encode(intent), "a": "0"})
    return entry.decode() if isinstance(entry, bytes) else str(entry)


async def store_intent(store: Store, intent: ReplyIntent) -> tuple[Message, bool]:
    """The reply's message: stored now, or the one stored earlier under the same key."""
    return await store.append_outbound(
        intent.conversation_id, text=intent.text, channel=intent.channel, instance=intent.instance,
        to=intent.to, author=intent.author, idempotency_key=intent.key, attachments=intent.attachments,
    )


async def queue_reply(
    app: web.Application,
    conversation_id: str,
    *,
    text: str,
    instance: str | None = None,
    private: bool = False,
    author: str | None = None,
    idempotency_key: str | None = None,
    attachments: Sequence[Attachment] = (),
) -> Message:
    """Store an agent's reply as queued and hand it to the dispatcher; or store a private note.

    The default channel is the one the customer last wrote on. The connector's declared
    capabilities are enforced here, once for every connector: a reply outside the channel's
    window is refused (WindowClosed); attachments it cannot carry become links; text longer than
    it allows is split (or refused), each part its own message, so the timeline shows what the
    customer receives.
    """
    store = app[STORE]
    if private:
        note, created = await store.append_outbound(
            conversation_id, text=text, channel="note", instance=None, to=None, author=author,
            note=True, idempotency_key=idempotency_key,
        )
        if created:
            await publish_created(store, note)
        return note

    last = await store.last_inbound(conversation_id)
    if last is None:
        await store.get_conversation(conversation_id)  # NotFound first, if that is the problem
    if instance is None:
        if last is None:
            raise NoChannel("the customer has not written on any channel yet; choose an 'instance'")
        instance = last[1]
    connector = app[CONNECTORS].get(instance)
    if connector is None:
        raise NoChannel(f"no connector instance {instance!r} is configured")
    to = await _recipient(store, conversation_id, connector.channel, instance, last)
    # One connector may speak several media (Twilio: SMS and WhatsApp); answer on the one the
    # customer used last on this instance.
    channel = last[0] if last is not None and last[1] == instance else connector.channel
    caps = connector.capabilities_for(channel)
    check_window(caps, await store.last_inbound_ms(conversation_id, channel), int(time.time() * 1000))
    text, attachments = fit_attachments(caps, text, attachments)
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
            attachments=tuple(attachments) if n == len(parts) - 1 else (),
        )
        # Queued first: a retried request whose first attempt died anywhere after this is sent
        # once, because the dispatcher checks the message's attempts before sending.
        entry = await enqueue_reply(store, intent)
        try:
            msg, created = await store_intent(store, intent)
        except (OptedOut, NotFound):
            # Nothing was stored, so nothing must be sent: withdraw the entry (a dispatcher that
            # got to it first finds the same refusal and drops it).
            await store.redis.xdel(store.keys.outbound_stream(), entry)
            raise
        if created:
            await publish_created(store, msg)
        first = first or msg
    assert first is not None
    return first


async def _recipient(
    store: Store, cid: str, channel: str, instance: str, last: tuple[str, str, Identity] | None
) -> Identity:
    if last is not None and last[1] == instance:
        return last[2]
    kind = {"sms": "phone", "whatsapp": "phone"}.get(channel, channel)
    customer = await store.get_customer(cid)
    for ident in customer.identities:
        if ident.kind == kind:
            return ident
    raise NoChannel(f"the customer has no {kind} identity to reach on {instance!r}")


async def publish_created(store: Store, msg: Message) -> None:
    await store.publish([Event(EventType.MESSAGE_CREATED, msg.conversation_id, f"{msg.id}:created",
                               message_id=msg.id, at_ms=int(time.time() * 1000))])


async def replay_dead_letter(app: web.Application, stream: str, entry_id: str) -> dict[str, Any]:
    """Run a dead letter through the pipeline again, and remove it once that worked."""
    store = app[STORE]
    fields = await store.take_dead_letter(stream, entry_id)
    if fields is None:
        raise NotFound(f"no dead letter {stream}:{entry_id}")
    if stream == "outbound":
        mid = fields["message_id"]
        if await store.requeue(mid):
            await enqueue_send(store, mid)
        await store.delete_dead_letter(stream, entry_id)
        return {"replayed": "outbound", "message_id": mid}

    connector = app[CONNECTORS].get(fields.get("instance", ""))
    if connector is None:
        raise NoChannel(f"connector instance {fields.get('instance')!r} is not configured")
    request = WebhookRequest(
        method=fields.get("method", "POST"),
        url=fields["url"],
        path=fields["path"],
        headers=json.loads(fields.get("headers", "{}")),
        query=json.loads(fields.get("query", "{}")),
        body=fields["body"].encode("latin-1"),
        received_at_ms=int(fields.get("received_at_ms", "0")),
    )
    # The signature was checked when the payload arrived; only parsing failed then.
    try:
        result = connector.parse(request)
    except MalformedPayload as exc:
        raise StillMalformed(str(exc)) from None
    ids = await store.record_inbound(result.messages, result.statuses)
    await store.delete_dead_letter(stream, entry_id)
    return {
        "replayed": "inbound",
        "messages": len(result.messages),
        "statuses": len(result.statuses),
        "duplicates": sum(1 for i in ids[: len(result.messages)] if i is None),
    }


class StillMalformed(ValueError):
    """Replaying did not help: the connector still cannot parse the payload."""


def dead_letter_fields(instance: str, request: WebhookRequest, reason: str) -> dict[str, str]:
    """What is kept of an authentic but unusable request: everything needed to replay it."""
    return {
        "instance": instance,
        "method": request.method,
        "url": request.url,
        "path": request.path,
        "headers": json.dumps(dict(request.headers)),
        "query": json.dumps(dict(request.query)),
        # latin-1 maps every byte to one code point, so any body round-trips exactly
        "body": request.body.decode("latin-1"),
        "reason": reason,
        "received_at_ms": str(request.received_at_ms),
    }

