"""Routing: which queue a thread enters, how urgent it is, which tags it carries, and whether it
goes straight to the customer's account manager. Pure rules over what is known when an episode
opens (`RoutingFacts`), first match wins.

These structs are also the `[routing]` section of gateway.toml, so the configuration is checked
by the same definition the router runs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from conversation.model import InboundMessage, Tier

# Queue names end up inside Redis keys and URL paths: no braces (they would break hash tags),
# colons (the key separator), slashes or whitespace.
QueueName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Priority = Annotated[int, Meta(ge=0, le=9)]  # higher is more urgent
# Wherever a priority is written, these names stand for their numbers.
PRIORITY_NAMES: dict[str, int] = {"low": 2, "normal": 5, "high": 7, "urgent": 9}
PriorityName = Literal["low", "normal", "high", "urgent"]
Tag = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
Assignment = Literal["push", "pull", "manual"]


def priority_value(value: int | str) -> int:
    """0..9 from a number or one of the names (low 2, normal 5, high 7, urgent 9)."""
    if isinstance(value, str):
        try:
            return PRIORITY_NAMES[value]
        except KeyError:
            raise ValueError(f"priority {value!r} is not one of {', '.join(PRIORITY_NAMES)} or 0..9") from None
    return value


class Route(msgspec.Struct, frozen=True):
    """Where a new episode goes: the queue, its urgency, the rule that decided it (recorded on
    the conversation's activity log), the tags it adds, and the agent it goes to directly (a key
    account's manager), if any."""

    queue: str
    priority: int
    rule: str = "default"
    tags: tuple[str, ...] = ()
    agent: str | None = None


class RoutingFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What the rules look at: the message, and what is known of its customer."""

    channel: str
    instance: str
    text: str
    tier: str = "standard"
    language: str | None = None
    tags: tuple[str, ...] = ()
    account_manager: str | None = None


class QueueSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A queue: how its threads reach agents, what an agent needs to take them, and whether a
    returning customer goes back to their last agent."""

    assignment: Assignment = "pull"
    skills: list[Annotated[str, Meta(min_length=1, max_length=64)]] = msgspec.field(default_factory=list)
    languages: list[Annotated[str, Meta(min_length=2, max_length=16)]] = msgspec.field(default_factory=list)
    sticky: bool = False


class RoutingRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Sends matching threads to `queue`. Unset conditions match anything; set ones must all
    match. `name` is how the activity log names the rule (default: "rule <n>", its place in the
    list).

    Conditions: `channel`, `instance`, the customer's `tier` and `language`, `keyword` or any of
    `keywords` (whole words, any case), `regex` (Python syntax, searched in the text), and
    `has_tags` (every one already on the conversation). Effects: `queue`, `priority` (0..9 or
    low/normal/high/urgent), `tags` added, and with `to_account_manager` the thread goes straight
    to the customer's account manager when they have one.
    """

    queue: QueueName
    name: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    priority: Priority | PriorityName | None = None
    channel: str | None = None
    instance: str | None = None
    keyword: Annotated[str, Meta(min_length=1)] | None = None
    keywords: list[Annotated[str, Meta(min_length=1)]] = msgspec.field(default_factory=list)
    regex: Annotated[str, Meta(min_length=1, max_length=1000)] | None = None
    tier: Tier | None = None
    language: Annotated[str, Meta(min_length=2, max_length=16)] | None = None
    has_tags: list[Tag] = msgspec.field(default_factory=list)
    tags: list[Tag] = msgspec.field(default_factory=list)
    to_account_manager: bool = False

    def __post_init__(self) -> None:
        self.priority = None if self.priority is None else priority_value(self.priority)
        if self.regex is not None:
            try:
                _pattern(self.regex, 0)
            except re.error as exc:
                raise ValueError(f"regex {self.regex!r} is not a valid regular expression: {exc}") from None

    @property
    def _words(self) -> re.Pattern[str] | None:
        words = ([self.keyword] if self.keyword else []) + list(self.keywords)
        if not words:
            return None
        # Whole words, case-insensitively: "help" must not route "helpful".
        return _pattern("|".join(rf"(?<!\w){re.escape(w)}(?!\w)" for w in words), re.IGNORECASE)

    def matches(self, facts: RoutingFacts) -> bool:
        if self.channel is not None and self.channel != facts.channel:
            return False
        if self.instance is not None and self.instance != facts.instance:
            return False
        if self.tier is not None and self.tier != facts.tier:
            return False
        if self.language is not None and not _same_language(self.language, facts.language):
            return False
        if self.has_tags and not set(self.has_tags) <= set(facts.tags):
            return False
        if self._words is not None and self._words.search(facts.text) is None:
            return False
        return self.regex is None or _pattern(self.regex, 0).search(facts.text) is not None


@functools.lru_cache(maxsize=1024)
def _pattern(source: str, flags: int) -> re.Pattern[str]:
    """Compiled once per rule (re's own cache holds only 512, shared with everything else)."""
    return re.compile(source, flags)


def _same_language(wanted: str, given: str | None) -> bool:
    """"es" matches "es-MX"; "es-MX" matches only itself."""
    if not given:
        return False
    wanted, given = wanted.replace("_", "-").lower(), given.replace("_", "-").lower()
    return given == wanted or ("-" not in wanted and given.split("-")[0] == wanted)


class RoutingSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    default_queue: QueueName = "default"
    default_priority: Priority | PriorityName = 5
    # Seconds without a heartbeat before an online agent counts as away.
    presence_timeout: Annotated[int, Meta(ge=5, le=86_400)] = 90
    queues: dict[QueueName, QueueSettings] = msgspec.field(default_factory=dict)
    rules: list[RoutingRule] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        self.default_priority = priority_value(self.default_priority)

    @property
    def needs_customer(self) -> bool:
        """Whether a rule looks at the customer (tier, language, tags, account manager): only then
        does the ingest worker read their details before routing."""
        return any(r.tier or r.language or r.has_tags or r.to_account_manager for r in self.rules)

    def queue(self, name: str) -> QueueSettings:
        """A queue's settings; one the configuration does not name is pulled, with no conditions."""
        return self.queues.get(name) or QueueSettings()

    def pick(self, facts: RoutingFacts | None = None, *, channel: str | None = None, instance: str | None = None,
             text: str | None = None) -> Route:
        """The route for a message: the first matching rule wins, else the defaults."""
        if facts is None:
            facts = RoutingFacts(channel=channel or "", instance=instance or "", text=text or "")
        default = int(self.default_priority)
        for n, rule in enumerate(self.rules, start=1):
            if rule.matches(facts):
                agent = facts.account_manager if rule.to_account_manager else None
                return Route(rule.queue, default if rule.priority is None else int(rule.priority),
                             rule.name or f"rule {n}", tuple(rule.tags), agent)
        return Route(self.default_queue, default, "default")

    def route(self, msg: InboundMessage, *, tier: str = "standard", language: str | None = None,
              tags: Sequence[str] = (), account_manager: str | None = None) -> Route:
        return self.pick(RoutingFacts(channel=msg.channel, instance=msg.instance, text=msg.text, tier=tier,
                                      language=language or msg.locale, tags=tuple(tags),
                                      account_manager=account_manager))


__all__ = ["PRIORITY_NAMES", "QueueSettings", "Route", "RoutingFacts", "RoutingRule", "RoutingSettings",
           "priority_value"]
