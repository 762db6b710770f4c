"""What the core needs to know of a channel instance, as a protocol any connector satisfies.

The core never imports a connector: the shell hands it the configured instances, and the core
reads their declarations (medium, identity kind, capabilities) through this protocol.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from conversation.capabilities import Capabilities
from conversation.model import Identity, Profile, TemplateSpec


class Channel(Protocol):
    """A configured connector instance, as the core sees it."""

    @property
    def instance(self) -> str: ...

    @property
    def channel(self) -> str:
        """The main medium shown on messages (sms, email, slack...)."""
        ...

    def capabilities_for(self, channel: str) -> Capabilities:
        """The limits of one of its media (Twilio: WhatsApp has a reply window, SMS does not)."""
        ...

    def identity_kind_for(self, channel: str) -> str:
        """The identity kind its recipients have on that medium (SMS and WhatsApp: phone)."""
        ...

    def media(self) -> Sequence[str]:
        """Every medium it speaks (Twilio: sms, whatsapp)."""
        ...

    def templates(self) -> Sequence[TemplateSpec]:
        """Approved templates configured on the instance, for sends outside a reply window."""
        ...


Channels = Mapping[str, Channel]

# Who is behind a sender identity, from the provider (Slack users.info); None: nothing known.
ProfileLookup = Callable[[Identity], Awaitable[Profile | None]]

__all__ = ["Channel", "Channels", "ProfileLookup"]
