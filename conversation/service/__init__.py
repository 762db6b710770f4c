"""The core's use cases: every thread change happens in one of these, and nowhere else.

    Core.inbound       a message arrives (ingest workers)                      inbound.py
    Core.identities    who it is from: linking and merge suggestions           identity.py
    Core.replies       a reply is composed (API, web chat)                     replies.py
    Core.deliveries    a send is made, fails, is retried; providers report     delivery.py
    Core.threads       a thread is assigned, transferred or changes status     threads.py
    Core.assignment    threads reach agents: pull, push, stickiness, capacity  assignment.py
    Core.dead_letters  an operator replays what the pipeline gave up on        deadletters.py
    Core.voice         a message is previewed; the brand voice is reloaded        voice.py
    Core.agents        agents are managed, come online, keep their presence       agents.py
    Core.access        who sees which conversations                            access.py

Each change is one atomic call in the customer's slot that also writes its activity entry;
`Publisher` then brings the indexes and live views up to date. Adapters (gateway/) decode a
request or a stream entry, call one of these, and encode the answer. Reads go straight to the
store's repositories (`Core.store`).
"""

from __future__ import annotations

from collections.abc import Mapping

from conversation.channels import Channel, ProfileLookup
from conversation.routing import RoutingSettings
from conversation.service.access import Access
from conversation.service.agents import AgentDirectory
from conversation.service.assignment import Assignment
from conversation.service.deadletters import DeadLetterReplays
from conversation.service.delivery import Deliveries, DeliveryPolicy, SendJob
from conversation.service.identity import IdentityPolicy
from conversation.service.inbound import Applied, Inbound
from conversation.service.publisher import Publisher
from conversation.service.replies import Replies, Reply, ReplyIntent
from conversation.service.threads import ThreadChanges
from conversation.service.voice import VoiceAdmin
from conversation.store import Store
from conversation.voice import Voice


class Core:
    def __init__(
        self,
        store: Store,
        *,
        routing: RoutingSettings | None = None,
        channels: Mapping[str, Channel] | None = None,
        profiles: Mapping[str, ProfileLookup] | None = None,
        delivery: DeliveryPolicy | None = None,
        voice: Voice | None = None,
        voice_path: str | None = None,
    ) -> None:
        self.store = store
        self.channels: Mapping[str, Channel] = dict(channels or {})
        self.publisher = Publisher(store)
        self.identities = IdentityPolicy(store, self.publisher)
        self.replies = Replies(store, self.channels, self.publisher, voice)
        self.deliveries = Deliveries(store, self.channels, self.replies, self.publisher, delivery)
        self.assignment = Assignment(store, self.publisher, routing or RoutingSettings())
        self.inbound = Inbound(store, routing or RoutingSettings(), self.identities, self.deliveries,
                               self.publisher, profiles=profiles, assignment=self.assignment)
        self.threads = ThreadChanges(store, self.publisher, routing, self.assignment)
        self.dead_letters = DeadLetterReplays(store, self.publisher)
        self.voice = VoiceAdmin(store, self.channels, self.replies, voice_path)
        self.agents = AgentDirectory(store, routing or RoutingSettings(), self.assignment)
        self.access = Access(store)


__all__ = ["Applied", "Core", "DeliveryPolicy", "Reply", "ReplyIntent", "SendJob"]
