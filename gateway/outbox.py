"""Agent replies on their way out: choosing the channel, fitting the text, queueing the send;
and the operator's replay of dead letters."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

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
from conversation.store import NotFound, Store
from gateway.appkeys import CONNECTORS, STORE

__all__ = [
    "NoChannel", "StillMalformed", "TextTooLong", "WindowClosed", "enqueue_send", "queue_reply", "replay_dead_letter",
]


class NoChannel(ValueError):
    """There is no channel this reply can go out on."""


async def enqueue_send(store: Store, mid: str, attempt: int = 0) -> None:
    await store.redis.xadd(store.keys.outbound_stream(), {"m": mid, "a": str(attempt)})


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
            await _publish_created(store, note)
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

    first: Message | None = None
    for n, part in enumerate(parts):
        key = None if idempotency_key is None else (idempotency_key if n == 0 else f"{idempotency_key}#{n}")
        msg, created = await store.append_outbound(
            conversation_id, text=part, channel=channel, instance=instance, to=to,
            author=author, idempotency_key=key,
            # attachments ride with the last part, after the text that introduces them
            attachments=tuple(attachments) if n == len(parts) - 1 else (),
        )
        # A retried request whose first attempt stored the message but died before queueing the
        # send queues it again; the dispatcher's attempt check makes the duplicate harmless.
        if created or (msg.status == "queued" and msg.provider_message_id is None):
            await enqueue_send(store, msg.id)
        if created:
            await _publish_created(store, msg)
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


async def _publish_created(store: Store, msg: Message) -> None:
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

