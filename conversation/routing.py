"""Routing: which queue a thread enters, and how urgent it is. Pure rules, first match wins.

These structs are also the `[routing]` section of gateway.toml, so the configuration is checked
by the same definition the router runs.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec
from msgspec import Meta

from conversation.model import InboundMessage

# Queue names end up inside Redis keys and URL paths: no braces (they would break hash tags),
# colons (the key separator), slashes or whitespace.
QueueName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Priority = Annotated[int, Meta(ge=0, le=9)]  # higher is more urgent


class Route(msgspec.Struct, frozen=True):
    """Where a new episode goes: the queue, its urgency, and the rule that decided it (recorded
    on the conversation's activity log)."""

    queue: str
    priority: int
    rule: str = "default"


class RoutingRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Sends matching threads to `queue`. Unset conditions match anything. `name` is how the
    activity log names the rule (default: "rule <n>", its place in the list)."""

    queue: QueueName
    name: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    priority: Priority | None = None
    channel: str | None = None
    instance: str | None = None
    keyword: Annotated[str, Meta(min_length=1)] | None = None

    def matches(self, *, channel: str, instance: str, text: str) -> bool:
        if self.channel is not None and self.channel != channel:
            return False
        if self.instance is not None and self.instance != instance:
            return False
        if self.keyword is None:
            return True
        # Whole words, case-insensitively: "help" must not route "helpful". `re` caches the pattern.
        return re.search(rf"(?<!\w){re.escape(self.keyword)}(?!\w)", text, re.IGNORECASE) is not None


class RoutingSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    default_queue: QueueName = "default"
    default_priority: Priority = 5
    rules: list[RoutingRule] = msgspec.field(default_factory=list)

    def pick(self, *, channel: str, instance: str, text: str) -> Route:
        """The queue and priority for a message: the first matching rule wins, else the defaults."""
        for n, rule in enumerate(self.rules, start=1):
            if rule.matches(channel=channel, instance=instance, text=text):
                return Route(rule.queue, self.default_priority if rule.priority is None else rule.priority,
                             rule.name or f"rule {n}")
        return Route(self.default_queue, self.default_priority, "default")

    def route(self, msg: InboundMessage) -> Route:
        return self.pick(channel=msg.channel, instance=msg.instance, text=msg.text)
