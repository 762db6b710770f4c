"""A message arrives: the use case the ingest workers run on each batch of a partition.

In order: decode the entries (an undecodable one is dead-lettered, never lost), fill in sender
names and verified-email links from provider profiles, resolve each sender to a customer (the
identity policy), pick the route, append every message to its customer's thread in one
pipeline (each append is one Lua call that also logs message_received, reopened, routed...),
then edits, then delivery reports; finally the indexes and live events follow, and the entries
are acknowledged. Every step is replay-safe, so a worker that dies mid-batch and the next owner
that replays the batch leave the same threads behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence

import msgspec
import structlog

from conversation.channels import ProfileLookup
from conversation.errors import StoreError
from conversation.model import Identity, InboundMessage, Profile, StatusUpdate
from conversation.routing import Route, RoutingSettings
from conversation.service.assignment import Assignment
from conversation.service.delivery import Deliveries
from conversation.service.identity import IdentityPolicy
from conversation.service.publisher import Publisher
from conversation.store import Change, Store

log = structlog.get_logger("conversation.inbound")

PROFILE_TTL = 86_400  # a sender's provider profile is looked up again after a day
PROFILE_MISS_TTL = 300  # an unknown or unreachable profile: ask again after a few minutes

Entry = tuple[bytes | str, dict[bytes, bytes]]


class Applied(msgspec.Struct, frozen=True):
    """What one batch did, for the adapter's metrics: the ingest entry id of every message that
    landed in a thread now (not a replay)."""

    messages: tuple[str, ...] = ()
    dead_lettered: int = 0


class Inbound:
    def __init__(
        self,
        store: Store,
        routing: RoutingSettings,
        identities: IdentityPolicy,
        deliveries: Deliveries,
        publisher: Publisher,
        *,
        profiles: Mapping[str, ProfileLookup] | None = None,
        profile_timeout: float = 3.0,
        assignment: Assignment | None = None,
    ) -> None:
        self.store = store
        self.routing = routing
        self.identities = identities
        self.deliveries = deliveries
        self.publisher = publisher
        self.profiles = dict(profiles or {})
        self.assignment = assignment
        self.profile_timeout = profile_timeout

    async def apply(self, partition: int, entries: Sequence[Entry]) -> Applied:
        """Apply one batch of a partition's entries, in order, and acknowledge them."""
        store = self.store
        messages: list[tuple[str, InboundMessage]] = []
        statuses: list[StatusUpdate] = []
        dead = 0
        for raw_id, fields in entries:
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
            try:
                item = store.ingest.decode(fields)
            except Exception as exc:  # a payload no version of us can read: keep it, move on
                await store.dead_letters.record({"reason": f"undecodable ingest entry: {exc}",
                                                 "partition": str(partition), "entry_id": entry_id})
                dead += 1
                continue
            if isinstance(item, InboundMessage):
                messages.append((entry_id, item))
            else:
                statuses.append(item)

        edits = [m for _, m in messages if m.edit is not None]
        messages = [(e, m) for e, m in messages if m.edit is None]
        messages = await self._without_own_echoes(messages)
        if messages and self.profiles:
            messages = await self._with_profiles(messages)

        changes: list[Change] = []
        applied: list[str] = []
        if messages:
            cids = await store.identities.resolve_many([m.sender for _, m in messages if not m.references])
            targets: list[tuple[str, bool]] = []
            for _, msg in messages:
                targets.append(await self.identities.by_reference(msg) if msg.references else (cids.pop(0), True))
            routes = await self._routes(targets, messages)
            changes = await store.threads.append_inbound_batch([
                (cid, msg, partition, entry_id, route, link)
                for (cid, link), (entry_id, msg), route in zip(targets, messages, routes, strict=True)
            ])
            applied = [entry_id for (entry_id, _), c in zip(messages, changes, strict=True)
                       if c.state is not None and c.state.applied]
            for (_, msg), change in zip(messages, changes, strict=True):
                if msg.echo and change.state is not None and change.state.applied and change.state.message_id:
                    # Our message, sent elsewhere: its read and delivery reports find it like ours.
                    await store.delivery.link_provider_id(change.state.message_id, msg.instance,
                                                          msg.provider_message_id)
        await self.publisher.changed(changes)
        if self.assignment is not None and changes:
            # After the indexes: new episodes are waiting in their queues when push looks.
            await self.assignment.opened(changes)
        for edit in edits:  # after the batch's appends: an edit follows its message in the stream
            await self._apply_edit(edit)
        for update in statuses:
            await self.deliveries.status_report(update)
        await store.ingest.done(partition, [e[0] for e in entries])
        return Applied(tuple(applied), dead)

    async def _routes(self, targets: Sequence[tuple[str, bool]],
                      messages: Sequence[tuple[str, InboundMessage]]) -> list[Route]:
        """Each message's route (used when it opens an episode). Rules that look at the customer
        (tier, language, tags, account manager) get their details, read in one round trip for the
        batch; a batch routed by channel and text alone reads nothing."""
        routing = self.routing
        if not routing.needs_customer:
            return [routing.route(msg) for _, msg in messages]
        facts = await self.store.handling.routing_facts([cid for cid, _ in targets])
        out = []
        for (cid, _), (_, msg) in zip(targets, messages, strict=True):
            known = facts[cid]
            out.append(routing.route(msg, tier=known.tier, language=known.language, tags=known.tags,
                                     account_manager=known.account_manager))
        return out

    async def _without_own_echoes(self, messages: list[tuple[str, InboundMessage]]) -> list[tuple[str, InboundMessage]]:
        """Echoes of what we sent ourselves are in the thread already: only those sent from the
        provider's own app are recorded. Connectors drop most of them (Messenger hands our
        metadata back); this catches the rest (Instagram's), once the send has recorded its id."""
        echoes = [(e, m) for e, m in messages if m.echo]
        if not echoes:
            return messages
        ours = set()
        for (entry_id, msg) in echoes:
            if (await self.store.delivery.ours(msg.instance, [msg.provider_message_id]))[0]:
                ours.add(entry_id)
        return [(e, m) for e, m in messages if e not in ours]

    async def _with_profiles(self, messages: list[tuple[str, InboundMessage]]) -> list[tuple[str, InboundMessage]]:
        """Fill in sender names from provider profiles, and link unknown senders whose verified
        profile email belongs to a customer, before identities are resolved."""
        identities = self.store.identities
        senders = list(dict.fromkeys(m.sender for _, m in messages if m.instance in self.profiles))
        if not senders:
            return messages
        profiles = await identities.cached_profiles(senders)
        instance_of = {m.sender: m.instance for _, m in reversed(messages) if m.instance in self.profiles}
        missing = [s for s in senders if s not in profiles]
        if missing:
            fetched = await asyncio.gather(*(self._fetch_profile(instance_of[s], s) for s in missing))
            profiles.update(zip(missing, fetched, strict=True))
        for sender, profile in profiles.items():
            if profile is not None and profile.email and profile.email_verified:
                await self.identities.link_verified_email(sender, profile.email, "verified_email")
        out = []
        for entry_id, msg in messages:
            profile = profiles.get(msg.sender)
            if profile is not None and profile.name and not msg.sender_name:
                msg = msgspec.structs.replace(msg, sender_name=profile.name)
            if profile is not None and profile.locale and not msg.locale:
                msg = msgspec.structs.replace(msg, locale=profile.locale)
            out.append((entry_id, msg))
        return out

    async def _fetch_profile(self, instance: str, sender: Identity) -> Profile | None:
        lookup = self.profiles[instance]
        profile: Profile | None = None
        try:
            profile = await asyncio.wait_for(lookup(sender), self.profile_timeout)
        except Exception as exc:  # the message goes on without a profile, whatever went wrong
            # No address in the log: it identifies a customer; the error type says enough.
            log.warning("inbound.profile_failed", instance=instance, error=type(exc).__name__)
            with contextlib.suppress(StoreError):
                await self.store.identities.cache_profile(sender, None, PROFILE_MISS_TTL)
            return None
        await self.store.identities.cache_profile(sender, profile,
                                                  PROFILE_TTL if profile is not None else PROFILE_MISS_TTL)
        return profile

    async def _apply_edit(self, msg: InboundMessage) -> None:
        assert msg.edit is not None
        cid = await self.store.identities.known(msg.sender)
        mid = None
        if cid is not None:
            mid, logged = await self.store.threads.apply_edit(cid, msg.instance, msg.edit.target, text=msg.text,
                                                              deleted=msg.edit.deleted, at_ms=msg.edit.at_ms)
            await self.publisher.logged(logged)
        if mid is None:
            # An edit of a message we never stored (sent before the app was installed, or by
            # someone we do not track): nothing to change.
            log.debug("inbound.edit_dropped", instance=msg.instance, deleted=msg.edit.deleted)


__all__ = ["Applied", "Inbound"]
