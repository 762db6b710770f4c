"""A customer's thread: profile, routing state, episodes, and every change to them.

One hash per customer (keys.thread) holds the profile and the thread state; every change is one
Lua call on the ``{c:<id>}`` slot that also appends its activity entries (conversation.activity),
and answers with what it left behind (`Change`): the state the indexes need and the entries the
live events derive from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis

from conversation.activity import Activity, Actor, decode_logged
from conversation.errors import NotFound, OptedOut
from conversation.ids import message_id
from conversation.keys import Keys
from conversation.model import (
    TIERS,
    Attachment,
    Conversation,
    Customer,
    Direction,
    Episode,
    Identity,
    InboundMessage,
    Message,
    Template,
    ThreadStatus,
    from_ms,
    utcnow_ms,
)
from conversation.routing import Route
from conversation.store.scripts import Call, Scripts
from conversation.store.timeline import StoredMessage, Timeline, encoder, queued_overlay, stored_decoder

IDEMPOTENCY_TTL = 86_400
THREAD_REFERENCES = 10  # provider ids kept per thread and instance for References headers
EDIT_SCAN = 500  # how far back in a thread an edited message is looked for
_args_encoder = msgspec.msgpack.Encoder()
_CONVERSATION_FIELDS = ["created", "ids", "name", "status", "queue", "assignee", "priority", "lm", "ep", "loc", "tier",
                        "tags", "am", "li"]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ThreadState(msgspec.Struct, frozen=True):
    """What a thread change left behind: enough to update the indexes and the conversation's
    card in them (what a listing shows)."""

    customer_id: str
    applied: bool
    seq: int
    status: str
    queue: str
    assignee: str
    priority: int
    last_message_ms: int
    version: int
    episode: int
    episode_opened_ms: int
    created_ms: int = 0
    name: str | None = None
    identities: str = "[]"  # as stored: a JSON list of [kind, address, opted_out]
    locale: str | None = None
    tier: str | None = None
    tags: str = "[]"  # as stored: a JSON list
    account_manager: str | None = None
    last_inbound: str = ""  # as stored: JSON [channel, instance, kind, address] of the latest message in

    @property
    def channel(self) -> str | None:
        """The medium the customer last wrote on: what an agent's capacity is counted in."""
        return str(json.loads(self.last_inbound)[0]) if self.last_inbound else None

    @property
    def message_id(self) -> str | None:
        return message_id(self.customer_id, self.seq) if self.seq >= 0 else None

    def conversation(self) -> Conversation:
        """The conversation as this state shows it (what the listings serve)."""
        return conversation_from(self.customer_id, {
            "created": str(self.created_ms), "ids": self.identities, "name": self.name or "",
            "status": self.status, "queue": self.queue, "assignee": self.assignee,
            "priority": str(self.priority), "lm": str(self.last_message_ms), "ep": str(self.episode),
            "loc": self.locale or "", "tier": self.tier or "", "tags": self.tags, "am": self.account_manager or "",
            "li": self.last_inbound,
        })


class ReplyContext(msgspec.Struct, frozen=True):
    """What the voice renders a reply with. `first_reply`: this reply is the episode's first
    (claimed when read, so of two replies at once only one is)."""

    name: str | None
    locale: str | None
    tier: str
    channel_locale: str | None
    queue: str | None
    episode: int
    first_reply: bool


class Change(msgspec.Struct, frozen=True):
    """One atomic change: the thread's state after it (None when only the activity moved) and
    the activity entries it appended."""

    state: ThreadState | None
    activities: tuple[Activity, ...] = ()


# Where lua/_activity.lua's thread_state() puts what it returns.
_LOGGED = 18


def _state(cid: str, r: Sequence[Any]) -> ThreadState:
    return ThreadState(
        customer_id=cid,
        applied=int(r[0]) == 1,
        seq=int(r[1]),
        status=_s(r[2] or ""),
        queue=_s(r[3] or ""),
        assignee=_s(r[4] or ""),
        priority=int(r[5] or 0),
        last_message_ms=int(r[6] or 0),
        version=int(r[7] or 0),
        episode=int(r[8] or 0),
        episode_opened_ms=int(r[9] or 0),
        created_ms=int(r[10] or 0) if len(r) > 10 else 0,
        name=(_s(r[11]) or None) if len(r) > 11 and r[11] else None,
        identities=_s(r[12]) if len(r) > 12 and r[12] else "[]",
        locale=(_s(r[13]) or None) if len(r) > 13 and r[13] else None,
        tier=(_s(r[14]) or None) if len(r) > 14 and r[14] else None,
        tags=_s(r[15]) if len(r) > 15 and r[15] else "[]",
        account_manager=(_s(r[16]) or None) if len(r) > 16 and r[16] else None,
        last_inbound=_s(r[17]) if len(r) > 17 and r[17] else "",
    )


def change_from(cid: str, r: Sequence[Any]) -> Change:
    """The Change a thread-changing script answered with (lua/_activity.lua's thread_state)."""
    return Change(_state(cid, r), tuple(decode_logged(cid, r[_LOGGED])))


def _customer(cid: str, h: dict[str, str]) -> Customer:
    ids = [Identity(k, a, bool(o)) for k, a, o in json.loads(h.get("ids") or "[]")]
    tier = h.get("tier") or "standard"
    return Customer(id=cid, name=h.get("name") or None, identities=ids, created_at=from_ms(int(h.get("created") or 0)),
                    locale=h.get("loc") or None, tier=tier if tier in TIERS else "standard",
                    account_manager=h.get("am") or None)


def conversation_from(cid: str, h: dict[str, str]) -> Conversation:
    lm = int(h.get("lm") or 0)
    return Conversation(
        id=cid,
        customer=_customer(cid, h),
        status=ThreadStatus(h.get("status") or "open"),
        queue=h.get("queue") or None,
        assignee=h.get("assignee") or None,
        priority=int(h.get("priority") or 0),
        last_message_at=from_ms(lm) if lm else None,
        episode=int(h.get("ep") or 1),
        tags=list(json.loads(h.get("tags") or "[]")),
        channel=json.loads(h["li"])[0] if h.get("li") else None,
    )


def _fields(values: Sequence[Any]) -> dict[str, str]:
    return {name: _s(v) for name, v in zip(_CONVERSATION_FIELDS, values, strict=True) if v is not None}


def append_call(keys: Keys, cid: str, msg: InboundMessage, partition: int, entry_id: str, route: Route,
                link: bool) -> Call:
    created_ms = int(entry_id.partition("-")[0]) or msg.received_at_ms or utcnow_ms()
    stored = StoredMessage(
        direction=(Direction.OUTBOUND if msg.echo else Direction.INBOUND).value,
        channel=msg.channel,
        instance=msg.instance,
        # The time Redis recorded it: monotonic along the partition, so along the thread too, unlike
        # the webhook's arrival stamp, which concurrent requests reach Redis out of order with.
        created_ms=created_ms,
        text=msg.text,
        provider_id=msg.provider_message_id,
        attachments=msg.attachments,
        subject=msg.subject,
        auto_reply=msg.auto_reply,
        to=msg.sender.key if msg.echo else None,
        author=msg.sender_name if msg.echo else None,
    )
    # A reply window counts from when the customer sent the message, never from later than it
    # arrived (a provider's clock ahead of ours must not stretch the window).
    wrote_ms = min(msg.sent_at_ms, created_ms) if msg.sent_at_ms else created_ms
    # Keyword commands (STOP, START, HELP) and automatic answers (out-of-office) are recorded
    # but do not reopen a resolved thread.
    reopens = msg.opt_out is None and not msg.auto_reply
    # Threaded channels keep the conversation's context per instance for replies (subject, the
    # provider ids to reference); SMS and chat spend no memory on it.
    threaded = msg.subject is not None or bool(msg.references) or msg.thread_ref is not None
    return [keys.thread(cid), keys.timeline(cid), keys.activity(cid), keys.overlay(cid)], [_args_encoder.encode((
        partition, entry_id, stored.created_ms,
        msg.sender.kind, msg.sender.address, "" if msg.echo else msg.sender_name or "", msg.channel, msg.instance,
        route.queue, route.priority, msg.opt_out if msg.opt_out in ("stop", "start") else "",
        "1" if reopens else "0", "1" if link else "0",
        msg.subject or "", (msg.thread_ref or msg.provider_message_id) if threaded else "",
        route.rule, "1" if msg.auto_reply else "0",
        wrote_ms, msg.reply_address if msg.reply_address and msg.reply_address != msg.sender.address else "",
        "1" if msg.echo else "0", msg.provider_message_id, msg.locale or "",
        json.dumps(list(route.tags)) if route.tags else "", route.agent or "",
    )), encoder.encode(stored)]


class Threads:
    def __init__(self, client: aioredis.Redis, scripts: Scripts, keys: Keys, timeline: Timeline) -> None:
        self.redis = client
        self.scripts = scripts
        self.keys = keys
        self.timeline = timeline

    # --- changes ----------------------------------------------------------------------------

    async def append_inbound_batch(
        self, items: Sequence[tuple[str, InboundMessage, int, str, Route, bool]]
    ) -> list[Change]:
        """Append inbound messages in order, opening or reopening threads, in one round trip.

        Items are (customer, message, partition, ingest entry id, route, link the sender).
        Replay-safe: an entry at or below its partition's watermark changes nothing.
        """
        results = await self.scripts.batch("append_inbound", [
            append_call(self.keys, cid, msg, partition, entry_id, route, link)
            for cid, msg, partition, entry_id, route, link in items
        ])
        return [change_from(item[0], r) for item, r in zip(items, results, strict=True)]

    async def append_inbound(self, cid: str, msg: InboundMessage, *, partition: int, entry_id: str, route: Route,
                             link: bool = True) -> Change:
        return (await self.append_inbound_batch([(cid, msg, partition, entry_id, route, link)]))[0]

    async def append_outbound(
        self,
        cid: str,
        *,
        text: str,
        channel: str,
        instance: str | None,
        to: Identity | None,
        author: str | None,
        note: bool = False,
        idempotency_key: str | None = None,
        attachments: tuple[Attachment, ...] = (),
        template: Template | None = None,
        tag: str | None = None,
        to_address: str | None = None,
        composed: str | None = None,
        intent: str | None = None,
        html: str | None = None,
    ) -> tuple[Message, bool, Change]:
        """Queue a reply (or store a note): the message, whether it is new, and the change.

        With an idempotency key, a repeated request returns the first request's message.
        Raises OptedOut when the recipient opted out, NotFound when there is no such thread.
        """
        now = utcnow_ms()
        stored = StoredMessage(
            direction=(Direction.NOTE if note else Direction.OUTBOUND).value,
            channel=channel, instance=instance, created_ms=now, text=text, author=author,
            attachments=attachments, to=to.key if to else None, template=template, tag=tag,
            to_address=to_address if to and to_address and to_address != to.address else None,
            composed=composed, intent=intent, html=html,
        )
        key = idempotency_key or ""
        result = await self.scripts.run(
            "append_outbound",
            [self.keys.thread(cid), self.keys.timeline(cid), self.keys.overlay(cid), self.keys.idempotency(cid, key),
             self.keys.activity(cid)],
            [encoder.encode(stored), now, IDEMPOTENCY_TTL if key else 0, "1" if note else "0",
             to.kind if to else "", to.address if to else "", queued_overlay(), author or "", channel,
             instance or ""],
        )
        code, seq = int(result[0]), int(result[1])
        if code == -2:
            raise NotFound(f"no conversation {cid!r}")
        if code == -1:
            raise OptedOut(f"{to.kind if to else 'recipient'} opted out of messages")
        message = await self.timeline.get_message(message_id(cid, seq))
        return message, code == 1, change_from(cid, result)

    async def update(self, cid: str, actor: Actor, **changes: str | int | None) -> Change:
        """Set status, assignee (None unassigns), queue or priority; keeps episodes. A change to
        the value already there is no change: nothing is logged and the version stays."""
        args: list[str | int] = [utcnow_ms(), actor.kind, actor.name or ""]
        for field, value in changes.items():
            if field not in ("status", "assignee", "queue", "priority"):
                raise ValueError(f"cannot change {field!r}")
            args += [field, "" if value is None else str(value)]
        result = await self.scripts.run("thread_update", [self.keys.thread(cid), self.keys.episodes(cid),
                                                          self.keys.activity(cid)], args)
        if result[0] == -2:
            raise NotFound(f"no conversation {cid!r}")
        return change_from(cid, result)

    async def update_customer(self, cid: str, actor: Actor, **details: str | None) -> Change:
        """Set the customer's name, locale or tier (None or "" clears); logged as one entry with
        what changed, or nothing at all when nothing differs."""
        names = {"name": "name", "locale": "loc", "tier": "tier", "account_manager": "am"}
        args: list[str | int] = [utcnow_ms(), actor.kind, actor.name or ""]
        for name, value in details.items():
            args += [names[name], value or ""]
        result = await self.scripts.run("customer_update", [self.keys.thread(cid), self.keys.activity(cid)], args)
        if result[0] == -2:
            raise NotFound(f"no customer {cid!r}")
        return change_from(cid, result)

    async def reply_context(self, cid: str, *, claim: bool = True) -> ReplyContext:
        """What a reply is rendered with; claims the episode's first reply (see ReplyContext),
        unless `claim` is false (a preview: it only tells)."""
        raw = await self.scripts.run("reply_context", [self.keys.thread(cid)], ["1" if claim else "0"])
        if not raw:
            raise NotFound(f"no conversation {cid!r}")
        name, locale, tier, hint, queue, episode, claimed = (_s(v) for v in raw)
        return ReplyContext(name=name or None, locale=locale or None, tier=tier or "standard",
                            channel_locale=hint or None, queue=queue or None, episode=int(episode or 0),
                            first_reply=claimed == "1")

    async def release_first_reply(self, cid: str, episode: int) -> None:
        """A reply that claimed the episode's first reply was refused: the next one greets."""
        await self.scripts.run("reply_context_release", [self.keys.thread(cid)], [episode])

    async def list_identity(self, cid: str, identity: Identity, via: str) -> Change:
        """Show an identity on its customer (its identity key is already theirs)."""
        return change_from(cid, await self.scripts.run("add_identity", [self.keys.thread(cid), self.keys.activity(cid)],
                                                   [identity.kind, identity.address, utcnow_ms(), via]))

    async def note_merge_suggestion(self, cid: str, identity: Identity, owner: str | None) -> Change:
        _, logged = await self.scripts.run("suggest_merge", [self.keys.thread(cid), self.keys.activity(cid)],
                                           [identity.key, utcnow_ms(), owner or ""])
        return Change(None, tuple(decode_logged(cid, logged)))

    async def set_opt_out(self, cid: str, identity: Identity, opted_out: bool, actor: Actor) -> Change:
        return change_from(cid, await self.scripts.run(
            "set_opt_out", [self.keys.thread(cid), self.keys.activity(cid)],
            [identity.kind, identity.address, int(opted_out), utcnow_ms(), actor.kind]))

    async def note_thread_reference(self, cid: str, instance: str, provider_id: str) -> None:
        """Remember one of our sent messages as part of the thread's context on this instance."""
        await self.scripts.run("thread_context", [self.keys.thread(cid)], [instance, "", provider_id,
                                                                             THREAD_REFERENCES])

    async def apply_edit(
        self, cid: str, instance: str, provider_id: str, *, text: str, deleted: bool, at_ms: int
    ) -> tuple[str | None, tuple[Activity, ...]]:
        """Record the provider's edit or deletion of an inbound message of this thread.

        The message is looked for among the thread's last EDIT_SCAN entries (edits come soon after
        the message, and customers rarely edit old ones). Returns its id (None when it is not
        there) and the activity logged. Applying the same edit twice changes nothing more.
        """
        for _ in range(5):  # an entry replaced between our read and our write is read again
            first, blobs = await self.timeline.recent(cid, EDIT_SCAN)
            for offset in range(len(blobs) - 1, -1, -1):
                blob = blobs[offset]
                stored = stored_decoder.decode(blob)
                if (stored.provider_id != provider_id or stored.instance != instance
                        or stored.direction != Direction.INBOUND.value):
                    continue
                if stored.deleted:
                    return message_id(cid, first + offset), ()  # nothing to change after a deletion
                # A deleted message keeps its place (the thread reads in order) but not its content:
                # the customer took it back.
                changed = msgspec.structs.replace(
                    stored, text="" if deleted else text, attachments=() if deleted else stored.attachments,
                    edited_ms=at_ms or utcnow_ms(), deleted=deleted,
                )
                replaced, logged = await self.scripts.run(
                    "replace_message", [self.keys.timeline(cid), self.keys.activity(cid)],
                    [first + offset, blob, encoder.encode(changed), utcnow_ms(), "1" if deleted else "0"],
                )
                if int(replaced) == 1:
                    return message_id(cid, first + offset), tuple(decode_logged(cid, logged))
                break
            else:
                return None, ()
        return None, ()

    # --- reads --------------------------------------------------------------------------------

    async def get_customer(self, cid: str) -> Customer:
        values = await self.redis.hmget(self.keys.thread(cid), _CONVERSATION_FIELDS)
        if values[0] is None:
            raise NotFound(f"no customer {cid!r}")
        return _customer(cid, _fields(values))

    async def get_conversation(self, cid: str) -> Conversation:
        values = await self.redis.hmget(self.keys.thread(cid), _CONVERSATION_FIELDS)
        fields = _fields(values)
        if "status" not in fields:
            raise NotFound(f"no conversation {cid!r}")
        return conversation_from(cid, fields)

    async def get_conversations(self, cids: Sequence[str]) -> list[Conversation | None]:
        """Many conversations in one round trip (None for one that is gone), in order."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in cids:
                pipe.hmget(self.keys.thread(cid), _CONVERSATION_FIELDS)
            rows = await pipe.execute()
        out: list[Conversation | None] = []
        for cid, values in zip(cids, rows, strict=True):
            fields = _fields(values)
            out.append(conversation_from(cid, fields) if "status" in fields else None)
        return out

    async def state(self, cid: str) -> ThreadState:
        h = await self.redis.hmget(
            self.keys.thread(cid),
            ["status", "queue", "assignee", "priority", "lm", "ver", "ep", "ep_open", "created", "name", "ids", "loc",
             "tier", "tags", "am", "li"])
        if h[0] is None:
            raise NotFound(f"no conversation {cid!r}")
        return _state(cid, [1, -1, *h])

    async def last_inbound(self, cid: str) -> tuple[str, str, Identity] | None:
        """(channel, instance, sender identity) of the customer's latest inbound message."""
        raw = await self.redis.hget(self.keys.thread(cid), "li")
        if not raw:
            return None
        channel, instance, kind, address = json.loads(raw)
        return channel, instance, Identity(kind, address)

    async def last_inbound_ms(self, cid: str, instance: str, channel: str) -> int | None:
        """When the customer last wrote on this instance and medium (reply windows count from
        it); None when they never did, or the provider closed the window since."""
        here, anywhere, shut = await self.redis.hmget(
            self.keys.thread(cid), [f"in:{instance}:{channel}", f"in:{channel}", f"shut:{instance}:{channel}"])
        raw = here or anywhere  # written per medium only, by an older version
        if not raw or (shut and int(shut) >= int(raw)):
            return None
        return int(raw)

    async def windows(self, cid: str) -> dict[tuple[str, str], int]:
        """(instance, medium) -> when the customer last wrote there, for every place they did
        whose window the provider has not closed since."""
        fields = await self.redis.hgetall(self.keys.thread(cid))
        out: dict[tuple[str, str], int] = {}
        for key, value in fields.items():
            name = _s(key)
            if name.startswith("in:") and name.count(":") == 2:
                _, instance, channel = name.split(":")
                shut = fields.get(f"shut:{instance}:{channel}".encode())
                if not shut or int(shut) < int(value):
                    out[(instance, channel)] = int(value)
        return out

    async def close_window(self, cid: str, instance: str, channel: str) -> None:
        """The provider says the reply window is closed: until the customer writes again there.

        Marked with the last inbound time it closes, not by erasing it, so a customer message
        that lands meanwhile (a later time) reopens the window whatever the order of the two.
        """
        key = self.keys.thread(cid)
        last = await self.redis.hget(key, f"in:{instance}:{channel}")
        if last:
            await self.redis.hset(key, f"shut:{instance}:{channel}", _s(last))

    async def reply_address(self, cid: str, instance: str, channel: str) -> str | None:
        """The address to answer at on `instance` and medium when its provider writes it otherwise."""
        raw = await self.redis.hget(self.keys.thread(cid), f"ra:{instance}:{channel}")
        return _s(raw) if raw else None

    async def context(self, cid: str, instance: str) -> tuple[str | None, list[str]]:
        """(subject, provider ids to reference) of the thread on a threaded channel's instance."""
        raw = await self.redis.hget(self.keys.thread(cid), f"ctx:{instance}")
        if not raw:
            return None, []
        ctx = json.loads(raw)
        return ctx.get("s") or None, list(ctx.get("r") or [])

    async def episodes(self, cid: str) -> list[Episode]:
        """Closed episodes, then the current one if the thread is not resolved."""
        out: list[Episode] = []
        for raw in await self.redis.lrange(self.keys.episodes(cid), 0, -1):
            number, opened, first, resolved = json.loads(raw)
            out.append(Episode(int(number), from_ms(int(opened or 0)),
                               from_ms(int(first)) if first else None, from_ms(int(resolved))))
        h = await self.redis.hmget(self.keys.thread(cid), ["status", "ep", "ep_open", "ep_first_reply"])
        if h[0] is not None and _s(h[0]) != ThreadStatus.RESOLVED.value and h[1]:
            out.append(Episode(int(h[1]), from_ms(int(h[2] or 0)),
                               from_ms(int(h[3])) if h[3] else None, None))
        return out


__all__ = ["IDEMPOTENCY_TTL", "Change", "ReplyContext", "Route", "ThreadState", "Threads", "append_call",
           "change_from", "conversation_from"]
