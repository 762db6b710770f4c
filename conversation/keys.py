"""Every Redis key the gateway uses, in one place.

Rules (DESIGN.md, "Redis"):
- Every key of one customer carries the hash tag ``{c:<customer_id>}``, so one thread's keys sit
  in one Cluster slot and change together in one Lua call.
- Global indexes live in their own slots: the conversation indexes share ``{ix}`` so that one Lua
  call moves a conversation between them atomically; each ingest partition shares ``{p:<n>}``
  between its stream and its dedupe keys, so dedupe + durable record is one atomic round trip.
- No command ever spans two customers' tags.

`prefix` namespaces a deployment (and isolates tests on a shared server).
"""

from __future__ import annotations

import zlib


class Keys:
    def __init__(self, prefix: str = "og") -> None:
        self.prefix = prefix

    # --- one customer: thread, timeline, status overlay ----------------------------------------
    def thread(self, cid: str) -> str:
        """Hash: the customer's profile and thread state, plus per-partition replay watermarks."""
        return f"{self.prefix}:{{c:{cid}}}"

    def timeline(self, cid: str) -> str:
        """List: the thread's messages, append-only, msgpack; a message's id ends in its index."""
        return f"{self.prefix}:{{c:{cid}}}:m"

    def overlay(self, cid: str) -> str:
        """Hash: mutable delivery state of outbound messages (index -> status record)."""
        return f"{self.prefix}:{{c:{cid}}}:s"

    def episodes(self, cid: str) -> str:
        """List: closed episodes (open -> resolved spans)."""
        return f"{self.prefix}:{{c:{cid}}}:e"

    def activity(self, cid: str) -> str:
        """List: the conversation's activity log, append-only, msgpack (conversation.activity)."""
        return f"{self.prefix}:{{c:{cid}}}:a"

    def send_lock(self, cid: str, seq: int) -> str:
        """The lease of the dispatcher sending one message right now."""
        return f"{self.prefix}:{{c:{cid}}}:sending:{seq}"

    def idempotency(self, cid: str, key: str) -> str:
        return f"{self.prefix}:{{c:{cid}}}:idem:{key}"

    # --- global lookups ---------------------------------------------------------------------------
    def identity(self, kind: str, address: str) -> str:
        return f"{self.prefix}:ident:{kind}:{address}"

    def profile(self, kind: str, address: str) -> str:
        """A sender's cached provider profile (Slack users.info), with a TTL; beside its identity
        key, in its own slot."""
        return f"{self.prefix}:prof:{kind}:{address}"

    def provider_message(self, instance: str, provider_id: str) -> str:
        """Hash tagged by the provider id: where our outbound message lives, and any early status."""
        return f"{self.prefix}:{{pm:{instance}:{provider_id}}}"

    def merge_suggestions(self) -> str:
        """Hash: identity key -> the customer whose thread it wrote into without being linked."""
        return f"{self.prefix}:merge"

    def poll_state(self, instance: str, name: str) -> str:
        """A polling connector's own cursor (e.g. IMAP UIDVALIDITY and last UID)."""
        return f"{self.prefix}:poll:{instance}:{name}"

    def poll_lease(self, instance: str) -> str:
        return f"{self.prefix}:poll:{instance}:lease"

    def attachment(self, file_id: str) -> str:
        """Hash: one kept file (data, type, name, created), by content hash (gateway.attachments)."""
        return f"{self.prefix}:att:{file_id}"

    def token(self, digest: str) -> str:
        return f"{self.prefix}:token:{digest}"

    def token_names(self) -> str:
        """Hash: token name -> the digests issued under it (JSON list), for list and revoke."""
        return f"{self.prefix}:tokens"

    def rate_limit(self, subject: str) -> str:
        return f"{self.prefix}:rl:{subject}"

    def instance_secret(self, instance: str, name: str) -> str:
        """A key the gateway generated for an instance configured without one (web chat)."""
        return f"{self.prefix}:webchat:{instance}:{name}"

    def workers(self, group: str) -> str:
        """Sorted set: the live members of a worker group, scored by when they stop counting."""
        return f"{self.prefix}:workers:{group}"

    # --- conversation indexes: all in the {ix} slot ----------------------------------------------
    def ix_state(self) -> str:
        return f"{self.prefix}:{{ix}}:state"

    def ix_all(self) -> str:
        """Sorted set: every conversation by recency, the unfiltered inbox."""
        return f"{self.prefix}:{{ix}}:all"

    def ix_cards(self) -> str:
        """Hash: conversation id -> its card (what a listing shows), written with the index."""
        return f"{self.prefix}:{{ix}}:cards"

    def ix_status(self, status: str) -> str:
        return f"{self.prefix}:{{ix}}:status:{status}"

    def ix_queue(self, queue: str, resolved: bool = False) -> str:
        """Live work of a queue by urgency; with `resolved`, its resolved threads by recency."""
        return f"{self.prefix}:{{ix}}:queue:{queue}" + (":resolved" if resolved else "")

    def ix_assignee(self, assignee: str, resolved: bool = False) -> str:
        return f"{self.prefix}:{{ix}}:assignee:{assignee}" + (":resolved" if resolved else "")

    def ix_waiting(self, queue: str) -> str:
        """Open threads of a queue that nobody holds, by urgency: what a claim takes next."""
        return f"{self.prefix}:{{ix}}:waiting:{queue}"

    def ix_waiting_since(self, queue: str) -> str:
        """The same threads by when they started waiting: the queue's oldest wait."""
        return f"{self.prefix}:{{ix}}:waiting_since:{queue}"

    def ix_queues(self) -> str:
        return f"{self.prefix}:{{ix}}:queues"

    # --- agents: all in the {ag} slot, so a claim can check and take capacity atomically ----------
    def agent(self, name: str) -> str:
        return f"{self.prefix}:{{ag}}:agent:{name}"

    def agent_names(self) -> str:
        return f"{self.prefix}:{{ag}}:agents"

    def agent_presence(self) -> str:
        """Hash: agent -> presence as set (online, away, offline)."""
        return f"{self.prefix}:{{ag}}:presence"

    def agent_seen(self) -> str:
        """Sorted set: agent -> last heartbeat (ms)."""
        return f"{self.prefix}:{{ag}}:seen"

    def agent_claims(self) -> str:
        """Hash: conversation id -> "<agent>|<channel>|<ms>", the threads agents hold."""
        return f"{self.prefix}:{{ag}}:claims"

    def agent_idle(self) -> str:
        """Sorted set: agent -> when they were last given a thread (ms): who has been idle longest."""
        return f"{self.prefix}:{{ag}}:idle"

    def agent_loads(self) -> str:
        """Hash: "<agent>|<channel>" -> threads the agent holds now on that channel."""
        return f"{self.prefix}:{{ag}}:loads"

    def agent_slot(self) -> str:
        """The {ag} keys' common prefix. The push ranking's keys are derived from it inside Lua
        (which channels an agent is ranked on is known only there): <slot>:caps:<agent>, a hash
        of channel -> capacity, and <slot>:rank:<channel>, the agents with room on it, best
        first (lua/_ranking.lua)."""
        return f"{self.prefix}:{{ag}}"

    def agent_ranking(self, channel: str) -> str:
        return f"{self.agent_slot()}:rank:{channel}"

    def agent_ranked(self) -> str:
        """Set once every agent's ranking was built (a store written before the ranking existed
        gets it built on first use)."""
        return f"{self.agent_slot()}:ranked"

    # --- ingest: partitioned streams with their dedupe keys --------------------------------------
    def ingest_stream(self, partition: int) -> str:
        return f"{self.prefix}:{{p:{partition}}}:in"

    def dedupe(self, partition: int, instance: str, provider_id: str) -> str:
        return f"{self.prefix}:{{p:{partition}}}:dd:{instance}:{provider_id}"

    def lease(self, partition: int) -> str:
        return f"{self.prefix}:{{p:{partition}}}:lease"

    def ingest_dead(self) -> str:
        return f"{self.prefix}:dead:in"

    # --- outbound ----------------------------------------------------------------------------------
    def outbound_stream(self) -> str:
        return f"{self.prefix}:{{out}}:stream"

    def outbound_delayed(self) -> str:
        return f"{self.prefix}:{{out}}:delayed"

    def outbound_dead(self) -> str:
        return f"{self.prefix}:{{out}}:dead"

    # --- events --------------------------------------------------------------------------------
    def events(self) -> str:
        return f"{self.prefix}:events"


def partition_of(identity_key: str, partitions: int) -> int:
    """Stable partition of a sender: all of one identity's messages land in one ordered stream."""
    return zlib.crc32(identity_key.encode()) % partitions
