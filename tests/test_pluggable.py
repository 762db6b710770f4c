"""Channels are plugged in by what they declare: an identity kind the core answers at, transports
the gateway mounts by name, a send rate the core paces, templates and tags on an Outbound."""

from __future__ import annotations

import time
from collections.abc import Sequence

import msgspec
import pytest
import redis.asyncio as aioredis

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorSettings,
    Outbound,
    ParseResult,
    Route,
    Template,
    WebhookRequest,
)
from conversation.model import DeliveryStatus, Identity, InboundMessage
from conversation.routing import Route as Routing
from conversation.service import Core
from conversation.store import Store
from gateway.config import ConfigError
from gateway.testing import GatewayUnderTest


class _Settings(ConnectorSettings, kw_only=True):
    kind: str = "acme"


class AcmeChat(Connector[_Settings]):
    """A plugin whose customers are Acme user ids, reached on a medium of its own."""

    kind = "acme"
    channel = "acme"
    identity_kind = "acme_user"
    Settings = _Settings
    capabilities = Capabilities(max_text_length=1000, rate_limit_per_second=1.0)

    def routes(self) -> Sequence[Route]:
        return [Route("POST", "events")]

    def verify(self, request: WebhookRequest) -> None:
        pass

    def parse(self, request: WebhookRequest) -> ParseResult:
        return ParseResult()

    async def send(self, outbound: Outbound) -> str:
        return "acme-1"


class Teleporter(AcmeChat):
    kind = "teleporter"
    transports = ("teleport",)


@pytest.fixture
def store(redis_client: aioredis.Redis, key_prefix: str) -> Store:
    return Store(redis_client, prefix=key_prefix, partitions=2)


async def customer_with(store: Store, *identities: Identity) -> str:
    """A customer who wrote by SMS once, and also has the other identities."""
    phone = Identity("phone", "+34600777888")
    cid = await store.identities.resolve(phone)
    await store.threads.append_inbound(cid, InboundMessage(instance="sms", channel="sms", provider_message_id="SM1",
                                                           sender=phone, text="hi"),
                                       partition=0, entry_id="1-0", route=Routing("default", 5))
    core = Core(store)
    for identity in identities:
        await core.identities.link(identity, cid, "agent")
    return cid


async def test_a_reply_on_a_plugin_goes_to_the_identity_kind_it_declares(store: Store) -> None:
    acme = AcmeChat("acme", _Settings(), public_url="http://x")
    cid = await customer_with(store, Identity("email", "ana@example.com"), Identity("acme_user", "u-42"))
    core = Core(store, channels={"acme": acme})
    reply = (await core.replies.compose(cid, text="Hello on Acme", instance="acme", author="ana")).message
    # Not the SMS sender, not the email: the identity kind the connector says its customers have.
    assert (reply.channel, reply.instance, reply.to) == ("acme", "acme", "acme_user:u-42")


async def test_a_send_rate_the_connector_declares_is_paced_without_spending_attempts(store: Store) -> None:
    acme = AcmeChat("acme", _Settings(), public_url="http://x")
    cid = await customer_with(store, Identity("acme_user", "u-7"))
    core = Core(store, channels={"acme": acme})
    first = (await core.replies.compose(cid, text="one", instance="acme", author="ana")).message
    second = (await core.replies.compose(cid, text="two", instance="acme", author="ana")).message
    outcome, job = await core.deliveries.begin(first.id, 0)
    assert outcome == "send" and job is not None
    await job.lease.release()
    before = time.time()
    outcome, job = await core.deliveries.begin(second.id, 0)  # one a second: not yet
    assert (outcome, job) == ("paced", None)
    message = await store.timeline.get_message(second.id)
    assert message.status is DeliveryStatus.QUEUED and message.attempts == 0
    [(member, due_ms)] = await store.redis.zrange(store.keys.outbound_delayed(), 0, -1, withscores=True)
    assert member.decode() == f"{second.id}|0"  # the same attempt, later
    assert before * 1000 < due_ms <= (before + 1.1) * 1000


async def test_a_transport_the_gateway_does_not_serve_stops_the_start(redis_url: str, key_prefix: str) -> None:
    teleporter = Teleporter("tp", _Settings(), public_url="http://127.0.0.1:9")
    with pytest.raises(ConfigError) as caught:
        async with GatewayUnderTest(redis_url, prefix=key_prefix, connectors={}, instances={"tp": teleporter},
                                    run_workers=False):
            pass
    assert "connectors.tp: kind 'teleporter' needs transport 'teleport'" in str(caught.value)
    assert "webchat" in str(caught.value)  # and what it does serve


async def test_the_web_chat_is_mounted_because_it_declares_its_transport(redis_url: str, key_prefix: str) -> None:
    from connectors.chat.webchat.connector import WebchatConnector

    async with GatewayUnderTest(redis_url, prefix=key_prefix, connectors={"help": {"kind": "webchat"}},
                                run_workers=False) as gw:
        paths = {r.resource.canonical for r in gw.app.router.routes() if r.resource is not None}
    assert WebchatConnector.transports == ("webchat",)
    assert {"/webchat/help/session", "/webchat/help/ws", "/webchat/help/messages"} <= paths


def test_an_outbound_can_carry_a_template_and_a_tag() -> None:
    outbound = Outbound(message_id="c.1", channel="whatsapp", to=Identity("phone", "+34600111222"), text="",
                        template=Template("order_update", "es", ("Ana", "4417")), tag="HUMAN_AGENT")
    again = msgspec.json.decode(msgspec.json.encode(outbound), type=Outbound)
    assert again.template == Template("order_update", "es", ("Ana", "4417")) and again.tag == "HUMAN_AGENT"
