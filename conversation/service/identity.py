"""Who a message is from: the identity policy, in one place for every way in.

- A new identity gets a new customer, race-free (the identity key's SET NX decides).
- A reply to one of our messages (email In-Reply-To / References) lands in that message's thread.
  Its sender joins that customer only when it is unknown and the connector allows it; otherwise
  a merge is suggested and an agent decides.
- An email address the provider vouches for (a Slack profile, a web chat identity token) links
  the sender to the customer who owns that address, or gives it to the sender's customer.

Every link and suggestion is logged on the customer's activity (identity_linked, merge_suggested).
"""

from __future__ import annotations

import structlog

from conversation.model import Identity, InboundMessage
from conversation.service.publisher import Publisher
from conversation.store import Store

log = structlog.get_logger("conversation.identity")


def email_identity(address: str) -> Identity:
    return Identity("email", address.strip().lower())


class IdentityPolicy:
    def __init__(self, store: Store, publisher: Publisher) -> None:
        self.store = store
        self.publisher = publisher

    async def link(self, identity: Identity, cid: str, via: str) -> str:
        """Give an unknown identity to a customer; returns the owner (an earlier one wins).

        Two steps in two slots: the identity key decides (SET NX), then the customer lists the
        identity and logs it. A crash between them is repaired by the identity's first message,
        whose append lists its sender."""
        owner = await self.store.identities.claim(identity, cid)
        if owner == cid:
            change = await self.store.threads.list_identity(cid, identity, via)
            await self.publisher.changed([change])
        return owner

    async def suggest_merge(self, identity: Identity, cid: str) -> None:
        """Record that `identity` wrote into (or was verified for) `cid` without being linked."""
        owner = await self.store.identities.known(identity)
        change = await self.store.threads.note_merge_suggestion(cid, identity, owner)
        await self.store.identities.index_merge_suggestion(identity, cid)
        await self.publisher.changed([change])

    async def by_reference(self, msg: InboundMessage) -> tuple[str, bool]:
        """The thread a reply to one of our messages belongs in, and whether to link its sender."""
        store = self.store
        referenced = await store.identities.referenced_customers(msg.instance, msg.references)
        owner = await store.identities.known(msg.sender)
        if not referenced:
            return (owner or await store.identities.resolve(msg.sender)), True
        cid = referenced[0]
        if owner == cid:
            return cid, True
        if owner is None and msg.link_sender and await self.link(msg.sender, cid, "reference") == cid:
            return cid, True
        await self.suggest_merge(msg.sender, cid)
        return cid, False

    async def link_verified_email(self, sender: Identity, email: str, via: str) -> None:
        """A sender whose provider vouches for `email`: the two identities become one customer's,
        whichever was known first; two customers already are left to an agent."""
        address = email_identity(email)
        known, owner = await self.store.identities.known(sender), await self.store.identities.known(address)
        if owner is None:
            # The verified address is nobody's yet: it becomes the sender's customer's, so that a
            # later email from it joins the same thread.
            await self.link(address, known or await self.store.identities.resolve(sender), via)
        elif known is None:
            # SET NX: if the sender got a customer of its own meanwhile, that one stays.
            await self.link(sender, owner, via)
            log.info("identity.linked_by_email", kind=sender.kind)

    async def session_customer(self, visitor: Identity, verified_email: str | None) -> str:
        """The customer of a visitor starting a session (web chat). Only a verified email reaches
        here: it links the visitor to the customer who has that email, or gives a new customer
        both identities."""
        identities = self.store.identities
        known = await identities.known(visitor)
        if verified_email is None:
            return known or await identities.resolve(visitor)
        address = email_identity(verified_email)
        owner = await identities.known(address)
        if known is not None:
            if owner is None:
                await self.link(address, known, "verified_email")
            elif owner != known:
                await self.suggest_merge(visitor, owner)  # two customers already: an agent decides
            return known
        if owner is not None:
            return await self.link(visitor, owner, "verified_email")
        cid = await identities.resolve(visitor)
        await self.link(address, cid, "verified_email")
        return cid


__all__ = ["IdentityPolicy", "email_identity"]
