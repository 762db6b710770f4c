"""Agents as routing sees them: who they are, what they can take, and whether they are there.

An agent is the principal of the API tokens created with its name. Its profile (role, skills,
languages, queues, the queues it supervises, capacity per channel kind, time zone) is managed
through the API and the CLI; presence (online, away, offline) is set by the agent and kept alive
by heartbeats: an agent online whose heartbeats stop for `presence_timeout` seconds is away.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Presence = Literal["online", "away", "offline"]
AgentRole = Literal["agent", "supervisor", "admin"]
AgentName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")]
Word = Annotated[str, Meta(min_length=1, max_length=64)]
# Channel kind (sms, whatsapp, email, slack, webchat...) -> threads at once.
Capacity = dict[Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")],
                Annotated[int, Meta(ge=0, le=1000)]]


class Agent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: AgentName
    role: AgentRole = "agent"
    skills: list[Word] = msgspec.field(default_factory=list)
    languages: list[Annotated[str, Meta(min_length=2, max_length=16)]] = msgspec.field(default_factory=list)
    queues: list[Word] = msgspec.field(default_factory=list)
    supervises: list[Word] = msgspec.field(default_factory=list)
    capacity: Capacity = msgspec.field(default_factory=dict)
    timezone: Annotated[str, Meta(min_length=1, max_length=64)] | None = None


class AgentView(msgspec.Struct, kw_only=True):
    """An agent as the API shows it: the profile, presence, and threads held per channel."""

    name: str
    role: str
    presence: Presence
    queues: list[str]
    supervises: list[str]
    skills: list[str]
    languages: list[str]
    capacity: dict[str, int]
    load: dict[str, int]
    timezone: str | None = None
    last_seen_at: str | None = None


def effective_presence(stored: str | None, last_seen_ms: int, now_ms: int, timeout_s: int) -> Presence:
    """What an agent's presence is now: online only while its heartbeats keep coming."""
    if stored == "online":
        return "online" if now_ms - last_seen_ms <= timeout_s * 1000 else "away"
    if stored == "away":
        return "away"
    return "offline"


__all__ = ["Agent", "AgentName", "AgentRole", "AgentView", "Capacity", "Presence", "effective_presence"]
