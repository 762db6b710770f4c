"""The Redis store: customers, their one thread, its timeline, the queues and the ingest log.

Layout (see keys.py): one hash per customer holds the profile and the thread state; one list holds
the timeline, append-only, each message a small msgpack array whose id is ``<customer>.<index>``;
outbound delivery state lives beside it in a hash keyed by index, so the timeline never changes.
A list was chosen over a stream because a stream's head node preallocates stream-node-max-bytes
(4 KB) per key, which alone would blow the per-conversation memory budget (bench/inbound.py).

Every change to one thread is one Lua call on the ``{c:<id>}`` slot. Changes that span slots
(thread, then indexes, then events) are ordered so that replaying them after a crash is harmless:
the thread step is guarded by a replay watermark, the index step by a version, events carry ids.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from conversation.keys import Keys, partition_of
from conversation.model import (
    STATUS_RANK,
    Attachment,
    Conversation,
    Customer,
    DeliveryStatus,
    Direction,
    Episode,
    Event,
    Identity,
    InboundMessage,
    Message,
    Profile,
    StatusUpdate,
    ThreadStatus,
    from_ms,
    utcnow_ms,
)

DAY = 86_400
EVENTS_MAXLEN = 100_000
PROVIDER_LINK_TTL = 30 * DAY
IDEMPOTENCY_TTL = DAY
THREAD_REFERENCES = 10  # provider ids kept per thread and instance for References headers
EDIT_SCAN = 500  # how far back in a thread an edited message is looked for


class StoredMessage(msgspec.Struct, array_like=True, omit_defaults=True):
    """A timeline entry as stored: positional msgpack, so field names cost no memory (and
    trailing fields at their defaults cost nothing either)."""

    direction: str
    channel: str
    instance: str | None
    created_ms: int
    text: str
    provider_id: str | None = None
    author: str | None = None
    attachments: tuple[Attachment, ...] = ()
    to: str | None = None  # recipient identity key of an outbound message
    subject: str | None = None
    auto_reply: bool = False
    edited_ms: int = 0
    deleted: bool = False


class ThreadState(msgspec.Struct, frozen=True):
    """What a thread change left behind: enough to update the indexes and publish events."""

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

    @property
    def message_id(self) -> str | None:
        return message_id(self.customer_id, self.seq) if self.seq >= 0 else None


class Delivery(msgspec.Struct, frozen=True):
    status: DeliveryStatus
    error: str | None
    provider_id: str | None
    attempts: int


class Route(msgspec.Struct, frozen=True):
    queue: str
    priority: int


class NotFound(Exception):
    pass


class OptedOut(Exception):
    """The recipient opted out of this channel (STOP): the reply must not be sent."""


# What XRANGE/XREADGROUP give back, as redis-py's loose annotations cannot say.
StreamEntry = tuple[bytes, dict[bytes, bytes]]

_encoder = msgspec.msgpack.Encoder()
_stored_decoder = msgspec.msgpack.Decoder(StoredMessage)
_inbound_decoder = msgspec.msgpack.Decoder(InboundMessage)
_status_decoder = msgspec.msgpack.Decoder(StatusUpdate)
_profile_decoder = msgspec.json.Decoder(Profile)


def message_id(customer_id: str, seq: int) -> str:
    return f"{customer_id}.{seq}"


def split_message_id(mid: str) -> tuple[str, int]:
    cid, _, seq = mid.rpartition(".")
    if not cid or not seq.isdigit():
        raise NotFound(f"no message {mid!r}")
    return cid, int(seq)


def new_customer_id() -> str:
    # 80 random bits, lowercase base32: short in keys, safe in URLs, no separator characters.
    return base64.b32encode(secrets.token_bytes(10)).decode().lower()


def urgency(priority: int, waiting_since_ms: int) -> float:
    """Queue order: higher priority first, then who has waited longest."""
    return (9 - max(0, min(9, priority))) * 1e13 + waiting_since_ms


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _load_scripts(client: aioredis.Redis) -> dict[str, AsyncScript]:
    folder = resources.files("conversation") / "lua"
    return {
        path.name.removesuffix(".lua"): client.register_script(path.read_text())
        for path in folder.iterdir()
        if path.name.endswith(".lua")
    }


class Store:
    """All reads and writes of the conversation domain. Knows Redis, and nothing of HTTP."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "og",
        partitions: int = 16,
        dedupe_ttl: int = 8 * DAY,
    ) -> None:
        self.redis = client
        self.keys = Keys(prefix)
        self.partitions = partitions
        self.dedupe_ttl = dedupe_ttl
        self._scripts = _load_scripts(client)

    async def _run_batch(self, name: str, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run one script for many key/arg sets in one round trip.

        redis-py's Script objects in a pipeline first send SCRIPT EXISTS, a second round trip on
        the ack path; plain EVALSHA is pipelined instead, and a server that lost its script cache
        (a restart) gets the script loaded and the failed calls repeated.
        """
        if len(calls) == 1:  # a Script call is EVALSHA, falling back to EVAL: one round trip
            return [await self._scripts[name](keys=calls[0][0], args=calls[0][1])]
        script = self._scripts[name]
        if script.sha is None:
            script.sha = _s(await self.redis.script_load(script.script))
        results = await self._pipeline_evalsha(script.sha, calls)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            script.sha = _s(await self.redis.script_load(script.script))
            redone = await self._pipeline_evalsha(script.sha, [calls[i] for i in missing])
            for i, r in zip(missing, redone, strict=True):
                results[i] = r
        for r in results:
            if isinstance(r, Exception):
                raise r
        return results

    async def _pipeline_evalsha(self, sha: str, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.evalsha(sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))

    # --- the ack path -------------------------------------------------------------------------

    def partition_for(self, sender: Identity) -> int:
        return partition_of(sender.key, self.partitions)

    async def record_inbound(
        self, messages: Sequence[InboundMessage], statuses: Sequence[StatusUpdate] = ()
    ) -> list[str | None]:
        """Dedupe and durably record a webhook's items in one round trip.

        Returns the stream entry id of each message, None for a duplicate (statuses follow the
        messages in the returned list). Raises redis errors when Redis is unreachable.
        """
        calls: list[tuple[list[str], list[Any]]] = []
        for msg in messages:
            p = self.partition_for(msg.sender)
            calls.append(([self.keys.dedupe(p, msg.instance, msg.provider_message_id), self.keys.ingest_stream(p)],
                          [self.dedupe_ttl, "m", _encoder.encode(msg)]))
        for st in statuses:
            p = partition_of(f"pm:{st.instance}:{st.provider_message_id}", self.partitions)
            stream = self.keys.ingest_stream(p)
            calls.append(([stream, stream], [0, "s", _encoder.encode(st)]))
        results = await self._run_batch("ingest", calls)
        return [_s(r) if r else None for r in results]

    async def record_dead_letter(self, fields: Mapping[str, str]) -> str:
        """Keep an authentic but unusable payload where an operator can list and replay it."""
        return _s(await self.redis.xadd(self.keys.ingest_dead(), dict(fields)))  # type: ignore[arg-type]

    # --- identities and customers --------------------------------------------------------------

    async def resolve_customer(self, identity: Identity) -> str:
        """The customer id of an identity, created race-free on first contact (SET NX decides)."""
        key = self.keys.identity(identity.kind, identity.address)
        existing = await self.redis.get(key)
        if existing:
            return _s(existing)
        candidate = new_customer_id()
        if await self.redis.set(key, candidate, nx=True):
            return candidate
        return _s(await self.redis.get(key))

    async def resolve_customers(self, identities: Sequence[Identity]) -> list[str]:
        """Batch form of resolve_customer: one round trip when every identity is known."""
        if not identities:
            return []
        keys = [self.keys.identity(i.kind, i.address) for i in identities]
        found = await self.redis.mget(keys)
        out: list[str] = []
        for ident, value in zip(identities, found, strict=True):
            out.append(_s(value) if value else await self.resolve_customer(ident))
        return out

    async def referenced_customers(self, instance: str, references: Sequence[str]) -> list[str]:
        """Customers whose threads hold our messages with these provider ids, most recent first."""
        if not references:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for ref in reversed(references):  # References lists oldest first; the newest decides
                pipe.hget(self.keys.provider_message(instance, ref), "loc")
            locs = await pipe.execute()
        return [_s(loc).split(" ")[0] for loc in locs if loc]

    async def known_customer(self, identity: Identity) -> str | None:
        value = await self.redis.get(self.keys.identity(identity.kind, identity.address))
        return _s(value) if value else None

    async def link_identity(self, identity: Identity, cid: str) -> str:
        """Give an unknown identity to a customer; returns the owner (an earlier one wins).

        Two steps in two slots: the identity key decides (SET NX), then the customer lists the
        identity. A crash between them is repaired by the identity's first message, whose append
        lists its sender."""
        key = self.keys.identity(identity.kind, identity.address)
        if not await self.redis.set(key, cid, nx=True):
            return _s(await self.redis.get(key))
        await self._scripts["add_identity"](keys=[self.keys.thread(cid)],
                                            args=[identity.kind, identity.address, utcnow_ms()])
        return cid

    async def suggest_merge(self, identity: Identity, cid: str) -> None:
        """Record that `identity` wrote into `cid`'s thread without being linked to it."""
        await self.redis.hset(self.keys.merge_suggestions(), identity.key,
                              json.dumps({"customer_id": cid, "at_ms": utcnow_ms()}))

    async def merge_suggestions(self) -> dict[str, str]:
        raw = await self.redis.hgetall(self.keys.merge_suggestions())
        return {_s(k): json.loads(v)["customer_id"] for k, v in raw.items()}

    async def thread_context(self, cid: str, instance: str) -> tuple[str | None, list[str]]:
        """(subject, provider ids to reference) of the thread on a threaded channel's instance."""
        raw = await self.redis.hget(self.keys.thread(cid), f"ctx:{instance}")
        if not raw:
            return None, []
        ctx = json.loads(raw)
        return ctx.get("s") or None, list(ctx.get("r") or [])

    async def note_thread_reference(self, cid: str, instance: str, provider_id: str) -> None:
        """Remember one of our sent messages as part of the thread's context on this instance."""
        await self._scripts["thread_context"](
            keys=[self.keys.thread(cid)], args=[instance, "", provider_id, THREAD_REFERENCES]
        )

    async def cached_profiles(self, identities: Sequence[Identity]) -> dict[Identity, Profile | None]:
        """Cached provider profiles of these identities; None for one looked up and found unknown
        (or unreachable), absent for one never looked up or whose cache expired."""
        if not identities:
            return {}
        # One GET per key in a pipeline, not MGET: the keys sit in different cluster slots.
        async with self.redis.pipeline(transaction=False) as pipe:
            for ident in identities:
                pipe.get(self.keys.profile(ident.kind, ident.address))
            found = await pipe.execute()
        out: dict[Identity, Profile | None] = {}
        for ident, raw in zip(identities, found, strict=True):
            if raw is None:
                continue
            try:
                out[ident] = _profile_decoder.decode(raw) if raw else None
            except msgspec.DecodeError:
                continue  # written by another version: look it up again
        return out

    async def cache_profile(self, identity: Identity, profile: Profile | None, ttl: int) -> None:
        await self.redis.set(self.keys.profile(identity.kind, identity.address),
                             msgspec.json.encode(profile) if profile is not None else b"", ex=max(1, ttl))

    async def apply_edit(
        self, cid: str, instance: str, provider_id: str, *, text: str, deleted: bool, at_ms: int
    ) -> str | None:
        """Record the provider's edit or deletion of an inbound message of this thread.

        The message is looked for among the thread's last EDIT_SCAN entries (edits come soon after
        the message, and customers rarely edit old ones). Returns its id, or None when it is not
        there. Applying the same edit twice leaves the same result (replays are harmless).
        """
        for _ in range(5):  # an entry replaced between our read and our write is read again
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.llen(self.keys.timeline(cid))
                pipe.lrange(self.keys.timeline(cid), -EDIT_SCAN, -1)
                length, blobs = await pipe.execute()
            first = int(length) - len(blobs)
            for offset in range(len(blobs) - 1, -1, -1):
                blob = blobs[offset]
                stored = _stored_decoder.decode(blob)
                if (stored.provider_id != provider_id or stored.instance != instance
                        or stored.direction != Direction.INBOUND.value):
                    continue
                if stored.deleted:
                    return message_id(cid, first + offset)  # nothing to change after a deletion
                # A deleted message keeps its place (the thread reads in order) but not its content:
                # the customer took it back.
                changed = msgspec.structs.replace(
                    stored, text="" if deleted else text, attachments=() if deleted else stored.attachments,
                    edited_ms=at_ms or utcnow_ms(), deleted=deleted,
                )
                replaced = await self._scripts["replace_message"](
                    keys=[self.keys.timeline(cid)], args=[first + offset, blob, _encoder.encode(changed)]
                )
                if int(replaced) == 1:
                    return message_id(cid, first + offset)
                break
            else:
                return None
        return None

    async def find_customer(self, identity: Identity) -> Customer | None:
        cid = await self.redis.get(self.keys.identity(identity.kind, identity.address))
        if not cid:
            return None
        try:
            return await self.get_customer(_s(cid))
        except NotFound:
            return None

    async def get_customer(self, cid: str) -> Customer:
        raw = await self.redis.hgetall(self.keys.thread(cid))
        if not raw:
            raise NotFound(f"no customer {cid!r}")
        return _customer(cid, {_s(k): _s(v) for k, v in raw.items()})

    # --- the thread -----------------------------------------------------------------------------

    async def append_inbound(
        self, cid: str, msg: InboundMessage, *, partition: int, entry_id: str, route: Route
    ) -> ThreadState:
        """Append an inbound message in order and open or reopen the thread. Replay-safe."""
        result = await self._scripts["append_inbound"](
            keys=[self.keys.thread(cid), self.keys.timeline(cid)],
            args=_append_args(msg, partition, entry_id, route),
        )
        return _state(cid, result)

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
    ) -> tuple[Message, bool]:
        """Queue a reply (or store a note). Returns the message and whether it is new.

        With an idempotency key, a repeated request returns the first request's message.
        Raises OptedOut when the recipient opted out, NotFound when there is no such thread.
        """
        now = utcnow_ms()
        stored = StoredMessage(
            direction=(Direction.NOTE if note else Direction.OUTBOUND).value,
            channel=channel,
            instance=instance,
            created_ms=now,
            text=text,
            author=author,
            attachments=attachments,
            to=to.key if to else None,
        )
        key = idempotency_key or ""
        code, seq = await self._scripts["append_outbound"](
            keys=[self.keys.thread(cid), self.keys.timeline(cid), self.keys.overlay(cid),
                  self.keys.idempotency(cid, key)],
            args=[
                _encoder.encode(stored), now, IDEMPOTENCY_TTL if key else 0, "1" if note else "0",
                to.kind if to else "", to.address if to else "",
                json.dumps([DeliveryStatus.QUEUED.value, None, None, 0]),
            ],
        )
        if code == -2:
            raise NotFound(f"no conversation {cid!r}")
        if code == -1:
            raise OptedOut(f"{to.kind if to else 'recipient'} opted out of messages")
        return await self.get_message(message_id(cid, int(seq))), code == 1

    async def append_inbound_batch(
        self, items: Sequence[tuple[str, InboundMessage, int, str, Route, bool]]
    ) -> list[ThreadState]:
        """append_inbound for a batch of (customer, message, partition, entry id, route, link
        sender identity), in order, in one round trip."""
        results = await self._run_batch("append_inbound", [
            ([self.keys.thread(cid), self.keys.timeline(cid)], _append_args(msg, partition, entry_id, route, link))
            for cid, msg, partition, entry_id, route, link in items
        ])
        return [_state(item[0], r) for item, r in zip(items, results, strict=True)]

    async def set_opt_out(self, cid: str, identity: Identity, opted_out: bool) -> bool:
        return bool(await self._scripts["set_opt_out"](
            keys=[self.keys.thread(cid)], args=[identity.kind, identity.address, int(opted_out)]
        ))

    async def requeue(self, mid: str) -> bool:
        """Put a failed send back to queued (an operator's replay). False if it got delivered."""
        cid, seq = split_message_id(mid)
        result = int(await self._scripts["requeue"](keys=[self.keys.overlay(cid)], args=[seq]))
        if result == -1:
            raise NotFound(f"no outbound message {mid!r}")
        return result == 1

    async def update_thread(self, cid: str, **changes: str | int | None) -> ThreadState:
        """Set status, assignee (None unassigns), queue or priority; keeps episodes."""
        args: list[str | int] = [utcnow_ms()]
        for field, value in changes.items():
            if field not in ("status", "assignee", "queue", "priority"):
                raise ValueError(f"cannot change {field!r}")
            args += [field, "" if value is None else value]
        result = await self._scripts["thread_update"](
            keys=[self.keys.thread(cid), self.keys.episodes(cid)], args=args
        )
        if result[0] == -2:
            raise NotFound(f"no conversation {cid!r}")
        return _state(cid, result)

    async def thread_state(self, cid: str) -> ThreadState:
        h = await self.redis.hmget(
            self.keys.thread(cid), ["status", "queue", "assignee", "priority", "lm", "ver", "ep", "ep_open"]
        )
        if h[0] is None:
            raise NotFound(f"no conversation {cid!r}")
        return _state(cid, [1, -1, *h])

    async def get_conversation(self, cid: str) -> Conversation:
        raw = await self.redis.hgetall(self.keys.thread(cid))
        if not raw or b"status" not in raw:
            raise NotFound(f"no conversation {cid!r}")
        return _conversation(cid, {_s(k): _s(v) for k, v in raw.items()})

    async def last_inbound(self, cid: str) -> tuple[str, str, Identity] | None:
        """(channel, instance, sender identity) of the customer's latest inbound message."""
        raw = await self.redis.hget(self.keys.thread(cid), "li")
        if not raw:
            return None
        channel, instance, kind, address = json.loads(raw)
        return channel, instance, Identity(kind, address)

    async def last_inbound_ms(self, cid: str, channel: str) -> int | None:
        """When the customer last wrote on this medium (reply windows count from it)."""
        raw = await self.redis.hget(self.keys.thread(cid), f"in:{channel}")
        return int(raw) if raw else None

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

    # --- the timeline ---------------------------------------------------------------------------

    async def list_messages(self, cid: str, *, after: int = -1, limit: int = 50) -> tuple[list[Message], int | None]:
        """Messages oldest first, after the given index. Returns the page and the next cursor."""
        start = after + 1
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(self.keys.thread(cid))
            pipe.lrange(self.keys.timeline(cid), start, start + limit)  # one extra: is there more?
            pipe.hgetall(self.keys.overlay(cid))
            exists, blobs, overlay = await pipe.execute()
        if not exists:
            raise NotFound(f"no conversation {cid!r}")
        more = len(blobs) > limit
        blobs = blobs[:limit]
        deliveries = {int(k): v for k, v in overlay.items()}
        messages = [
            _message(cid, start + i, _stored_decoder.decode(b), deliveries.get(start + i))
            for i, b in enumerate(blobs)
        ]
        return messages, (start + len(blobs) - 1 if more else None)

    async def get_message(self, mid: str) -> Message:
        cid, seq = split_message_id(mid)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lindex(self.keys.timeline(cid), seq)
            pipe.hget(self.keys.overlay(cid), str(seq))
            blob, overlay = await pipe.execute()
        if blob is None:
            raise NotFound(f"no message {mid!r}")
        return _message(cid, seq, _stored_decoder.decode(blob), overlay)

    # --- delivery -------------------------------------------------------------------------------

    async def update_delivery(
        self,
        mid: str,
        status: DeliveryStatus,
        *,
        error: str | None = None,
        provider_id: str | None = None,
        attempts: int | None = None,
    ) -> tuple[bool, Delivery]:
        """Move delivery status forward only; returns whether anything changed and the result."""
        cid, seq = split_message_id(mid)
        ranks: list[str | int] = []
        for name, rank in STATUS_RANK.items():
            ranks += [name.value, rank]
        changed, st, err, pid, tries = await self._scripts["delivery"](
            keys=[self.keys.overlay(cid)],
            args=[seq, status.value, STATUS_RANK[status], error or "", provider_id or "",
                  "" if attempts is None else attempts, *ranks],
        )
        if changed == -1:
            raise NotFound(f"no outbound message {mid!r}")
        return bool(changed), Delivery(DeliveryStatus(_s(st)), _s(err) or None, _s(pid) or None, int(tries))

    async def link_provider_id(self, mid: str, instance: str, provider_id: str) -> list[StatusUpdate]:
        """Remember which message a provider id belongs to; returns reports that arrived first."""
        cid, seq = split_message_id(mid)
        early = await self._scripts["provider_link"](
            keys=[self.keys.provider_message(instance, provider_id)],
            args=[f"{cid} {seq}", PROVIDER_LINK_TTL],
        )
        return [msgspec.json.decode(early[i + 1], type=StatusUpdate) for i in range(0, len(early), 2)]

    async def locate_provider_message(self, update: StatusUpdate) -> str | None:
        """Our message id for a status report, or None after parking the report for later."""
        loc = await self._scripts["provider_status"](
            keys=[self.keys.provider_message(update.instance, update.provider_message_id)],
            args=[update.status.value, msgspec.json.encode(update), PROVIDER_LINK_TTL],
        )
        if not loc:
            return None
        cid, seq = _s(loc).split(" ")
        return message_id(cid, int(seq))

    # --- indexes --------------------------------------------------------------------------------

    async def reindex(self, states: Sequence[ThreadState]) -> None:
        """Bring the listing indexes up to date with thread states (any order, any repetition)."""
        if not states:
            return
        ix = f"{self.keys.prefix}:{{ix}}"
        await self._run_batch("index", [
            ([self.keys.ix_state()],
             [ix, st.customer_id, st.version, st.status, st.queue, st.assignee, st.last_message_ms,
              urgency(st.priority, st.episode_opened_ms or st.last_message_ms)])
            for st in states
        ])

    async def list_conversations(
        self,
        *,
        status: str | None = None,
        queue: str | None = None,
        assignee: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[Conversation], str | None]:
        """Conversations matching every filter given.

        Queues list most urgent first; other lists most recent first. The cursor is opaque.
        Entries are checked against the thread itself, so an index lagging behind a crash never
        shows a conversation under the wrong filter.
        """
        if queue:
            sources, ascending = [self.keys.ix_queue(queue)], True
        elif assignee:
            sources, ascending = [self.keys.ix_assignee(assignee)], False
        elif status:
            sources, ascending = [self.keys.ix_status(status)], False
        else:
            sources, ascending = [self.keys.ix_status(s.value) for s in ThreadStatus], False
        after = _decode_cursor(cursor)
        entries = await self._index_entries(sources, ascending, after, limit + 1)
        page_entries = entries[:limit]
        more = len(entries) > limit
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid, _ in page_entries:
                pipe.hgetall(self.keys.thread(cid))
            threads = await pipe.execute()
        out: list[Conversation] = []
        for (cid, _), raw in zip(page_entries, threads, strict=True):
            if not raw:
                continue
            conv = _conversation(cid, {_s(k): _s(v) for k, v in raw.items()})
            if status and conv.status != status:
                continue
            if queue and (conv.queue != queue or conv.status == ThreadStatus.RESOLVED):
                continue
            if assignee and conv.assignee != assignee:
                continue
            out.append(conv)
        next_cursor = _encode_cursor(page_entries[-1][1], page_entries[-1][0]) if more and page_entries else None
        return out, next_cursor

    async def _index_entries(
        self, sources: Sequence[str], ascending: bool, after: tuple[float, str] | None, count: int
    ) -> list[tuple[str, float]]:
        """The next `count` (member, score) entries of the merged sources after the cursor.

        A cursor is (score, member). Members sharing the cursor's score are read whole and
        filtered by member, then scores strictly beyond it are read up to `count`: however many
        conversations share one millisecond, paging neither stalls nor skips.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            for src in sources:
                if after is None:
                    lo, hi = "-inf", "+inf"
                elif ascending:
                    pipe.zrangebyscore(src, after[0], after[0], withscores=True)
                    lo, hi = f"({after[0]!r}", "+inf"
                else:
                    pipe.zrangebyscore(src, after[0], after[0], withscores=True)
                    lo, hi = "-inf", f"({after[0]!r}"
                if ascending:
                    pipe.zrangebyscore(src, lo, hi, start=0, num=count, withscores=True)
                else:
                    pipe.zrevrangebyscore(src, hi, lo, start=0, num=count, withscores=True)
            pages = await pipe.execute()
        found = {(_s(m), float(sc)) for page in pages for m, sc in page}
        if after is not None:
            a_score, a_member = after
            found = {e for e in found if e[1] != a_score or (e[0] > a_member if ascending else e[0] < a_member)}
        # Ties in score are ordered by member, the same way in both directions, as Redis does.
        ordered = sorted(found, key=lambda e: (e[1], e[0]), reverse=not ascending)
        return ordered[:count]

    async def queue_depths(self) -> dict[str, int]:
        queues = sorted(_s(q) for q in await self.redis.smembers(self.keys.ix_queues()))
        async with self.redis.pipeline(transaction=False) as pipe:
            for q in queues:
                pipe.zcard(self.keys.ix_queue(q))
            counts = await pipe.execute()
        return dict(zip(queues, (int(c) for c in counts), strict=True))

    # --- events ---------------------------------------------------------------------------------

    async def publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for ev in events:
                pipe.xadd(self.keys.events(), {"e": msgspec.json.encode(ev)}, maxlen=EVENTS_MAXLEN,
                          approximate=True)
            await pipe.execute()

    async def read_events(self, after: str = "0-0", count: int = 100) -> list[tuple[str, Event]]:
        rows: list[StreamEntry] = await self.redis.xrange(  # type: ignore[assignment]
            self.keys.events(), min=f"({after}" if after != "0-0" else "-", count=count)
        return [(_s(i), msgspec.json.decode(f[b"e"], type=Event)) for i, f in rows]

    # --- dead letters ---------------------------------------------------------------------------

    async def list_dead_letters(self, *, cursor: str | None = None, limit: int = 50
                                ) -> tuple[list[tuple[str, str, dict[str, str]]], str | None]:
        """Both dead-letter streams, oldest first: (stream name, entry id, fields)."""
        rows: list[tuple[str, str, dict[str, str]]] = []
        for name, key in (("inbound", self.keys.ingest_dead()), ("outbound", self.keys.outbound_dead())):
            entries: list[StreamEntry] = await self.redis.xrange(key)  # type: ignore[assignment]
            for entry_id, fields in entries:
                rows.append((name, _s(entry_id), {_s(k): _s(v) for k, v in fields.items()}))
        rows.sort(key=lambda r: _stream_id_key(r[1]))
        start = 0
        if cursor:
            start = next((i + 1 for i, r in enumerate(rows) if f"{r[0]}:{r[1]}" == cursor), len(rows))
        page = rows[start:start + limit]
        more = start + limit < len(rows)
        return page, (f"{page[-1][0]}:{page[-1][1]}" if more and page else None)

    async def take_dead_letter(self, stream: str, entry_id: str) -> dict[str, str] | None:
        key = self.keys.ingest_dead() if stream == "inbound" else self.keys.outbound_dead()
        rows: list[StreamEntry] = await self.redis.xrange(key, min=entry_id, max=entry_id)  # type: ignore[assignment]
        if not rows:
            return None
        return {_s(k): _s(v) for k, v in rows[0][1].items()}

    async def delete_dead_letter(self, stream: str, entry_id: str) -> None:
        key = self.keys.ingest_dead() if stream == "inbound" else self.keys.outbound_dead()
        await self.redis.xdel(key, entry_id)

    # --- ingest decoding (the worker side) ------------------------------------------------------

    @staticmethod
    def decode_entry(fields: dict[bytes, bytes]) -> InboundMessage | StatusUpdate:
        if b"m" in fields:
            return _inbound_decoder.decode(fields[b"m"])
        return _status_decoder.decode(fields[b"s"])


def _append_args(
    msg: InboundMessage, partition: int, entry_id: str, route: Route, link: bool = True
) -> list[Any]:
    stored = StoredMessage(
        direction=Direction.INBOUND.value,
        channel=msg.channel,
        instance=msg.instance,
        # The time Redis recorded it: monotonic along the partition, so along the thread too, unlike
        # the webhook's arrival stamp, which concurrent requests reach Redis out of order with.
        created_ms=int(entry_id.partition("-")[0]) or msg.received_at_ms or utcnow_ms(),
        text=msg.text,
        provider_id=msg.provider_message_id,
        attachments=msg.attachments,
        subject=msg.subject,
        auto_reply=msg.auto_reply,
    )
    # Keyword commands (STOP, START, HELP) and automatic answers (out-of-office) are recorded
    # but do not reopen a resolved thread.
    reopens = msg.opt_out is None and not msg.auto_reply
    # Threaded channels keep the conversation's context per instance for replies (subject, the
    # provider ids to reference); SMS and chat spend no memory on it.
    threaded = msg.subject is not None or bool(msg.references) or msg.thread_ref is not None
    return [
        partition, entry_id, _encoder.encode(stored), stored.created_ms,
        msg.sender.kind, msg.sender.address, msg.sender_name or "", msg.channel, msg.instance,
        route.queue, route.priority, msg.opt_out if msg.opt_out in ("stop", "start") else "",
        "1" if reopens else "0", "1" if link else "0",
        msg.subject or "", (msg.thread_ref or msg.provider_message_id) if threaded else "",
    ]


# --- decoding helpers ---------------------------------------------------------------------------


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
    )


def _customer(cid: str, h: dict[str, str]) -> Customer:
    ids = [Identity(k, a, bool(o)) for k, a, o in json.loads(h.get("ids", "[]"))]
    return Customer(id=cid, name=h.get("name"), identities=ids, created_at=from_ms(int(h.get("created", 0))))


def _conversation(cid: str, h: dict[str, str]) -> Conversation:
    lm = int(h.get("lm", 0))
    return Conversation(
        id=cid,
        customer=_customer(cid, h),
        status=ThreadStatus(h.get("status", "open")),
        queue=h.get("queue") or None,
        assignee=h.get("assignee") or None,
        priority=int(h.get("priority", 0)),
        last_message_at=from_ms(lm) if lm else None,
        episode=int(h.get("ep", 1) or 1),
    )


def _message(cid: str, seq: int, m: StoredMessage, overlay: bytes | str | None) -> Message:
    if overlay is not None:
        st, err, pid, _ = json.loads(overlay)
        status, error, provider_id = DeliveryStatus(st), err, pid or m.provider_id
    elif m.direction == Direction.INBOUND.value:
        status, error, provider_id = DeliveryStatus.RECEIVED, None, m.provider_id
    else:  # notes are never delivered anywhere
        status, error, provider_id = DeliveryStatus.RECEIVED, None, None
    return Message(
        id=message_id(cid, seq),
        conversation_id=cid,
        direction=Direction(m.direction),
        channel=m.channel,
        instance=m.instance,
        text=m.text,
        attachments=list(m.attachments),
        status=status,
        error=error,
        created_at=from_ms(m.created_ms),
        author=m.author,
        provider_message_id=provider_id,
        to=m.to,
        subject=m.subject,
        auto_reply=m.auto_reply,
        edited_at=from_ms(m.edited_ms) if m.edited_ms else None,
        deleted=m.deleted,
    )


def _encode_cursor(score: float, member: str) -> str:
    return base64.urlsafe_b64encode(f"{score!r}|{member}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[float, str] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, member = raw.split("|", 1)
        return float(score), member
    except (ValueError, UnicodeDecodeError):
        raise ValueError("invalid cursor") from None


def _stream_id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
