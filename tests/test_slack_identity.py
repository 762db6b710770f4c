"""Who a Slack sender is: users.info names them, a confirmed profile email joins them to the
customer who owns that email (one thread across email and Slack), and profiles are cached."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from slackhelpers import dm, gateway_for, identity, new_user, post_message, thread, wait_for_text

from connectors.testing.fake_slack import FakeSlack
from conversation.model import Identity, InboundMessage
from gateway.testing import GatewayUnderTest, eventually


async def _wrote_by_email(gw: GatewayUnderTest, address: str, text: str) -> str:
    """The customer writes in by email first (recorded through the ingest path, as the email connector does)."""
    sender = Identity("email", address)
    await gw.store.ingest.record([InboundMessage(
        instance="mail", channel="email", provider_message_id=f"<{uuid.uuid4().hex}@mail.example.com>",
        sender=sender, text=text, subject="Invoice")])
    await wait_for_text(gw, sender, text)
    customer = await gw.store.find_customer(sender)
    assert customer is not None
    return customer.id


@pytest.fixture
def gateway(slack_gateway: GatewayUnderTest) -> GatewayUnderTest:
    return slack_gateway


async def test_a_confirmed_profile_email_joins_the_customers_thread(gateway: GatewayUnderTest,
                                                                     slack: FakeSlack) -> None:
    address = f"ana.{uuid.uuid4().hex[:8]}@example.com"
    cid = await _wrote_by_email(gateway, address, "My invoice is wrong")
    user = new_user()
    slack.add_user(user, name="Ana Lima", email=address.upper())  # Slack keeps the case people typed
    assert (await post_message(gateway, dm(user, "Following up here on Slack")))[0] == 200

    messages = await wait_for_text(gateway, Identity("email", address), "Following up here on Slack")
    assert [(m.channel, m.text) for m in messages] == [("email", "My invoice is wrong"),
                                                       ("slack", "Following up here on Slack")]
    customer = await gateway.store.threads.get_customer(cid)
    assert {i.key for i in customer.identities} == {f"email:{address}", identity(user).key}
    assert customer.name == "Ana Lima"


async def test_a_slack_first_customer_gets_their_confirmed_email(gateway: GatewayUnderTest,
                                                                 slack: FakeSlack) -> None:
    """Slack first, email later: the confirmed address is listed on the Slack customer, and the
    later email joins the same thread instead of starting a second customer."""
    address = f"bo.{uuid.uuid4().hex[:8]}@example.com"
    user = new_user()
    slack.add_user(user, name="Bo Chen", email=address)
    assert (await post_message(gateway, dm(user, "Hi from Slack")))[0] == 200
    await wait_for_text(gateway, identity(user), "Hi from Slack")
    customer = await gateway.store.find_customer(identity(user))
    assert customer is not None
    assert {i.key for i in customer.identities} == {identity(user).key, f"email:{address}"}

    assert await _wrote_by_email(gateway, address, "And now by email") == customer.id
    messages = await wait_for_text(gateway, identity(user), "And now by email")
    assert [m.channel for m in messages] == ["slack", "email"]


async def test_an_unconfirmed_email_does_not_link(gateway: GatewayUnderTest, slack: FakeSlack) -> None:
    address = f"ana.{uuid.uuid4().hex[:8]}@example.com"
    cid = await _wrote_by_email(gateway, address, "Hello by email")
    user = new_user()
    slack.add_user(user, name="Not Ana", email=address, confirmed=False)
    assert (await post_message(gateway, dm(user, "I am Ana, trust me")))[0] == 200
    await wait_for_text(gateway, identity(user), "I am Ana, trust me")
    slack_customer = await gateway.store.find_customer(identity(user))
    assert slack_customer is not None and slack_customer.id != cid
    assert slack_customer.name == "Not Ana"


async def test_link_by_email_off_keeps_identities_apart(redis_url: str, key_prefix: str, slack: FakeSlack,
                                                        redis_client: Any) -> None:
    async with gateway_for(redis_url, key_prefix, slack, link_by_email=False) as gw:
        address = f"ana.{uuid.uuid4().hex[:8]}@example.com"
        cid = await _wrote_by_email(gw, address, "Hello by email")
        user = new_user()
        slack.add_user(user, name="Ana Lima", email=address)
        assert (await post_message(gw, dm(user, "Hello from Slack")))[0] == 200
        await wait_for_text(gw, identity(user), "Hello from Slack")
        assert (await gw.store.find_customer(identity(user))).id != cid  # type: ignore[union-attr]


async def test_profiles_are_cached_and_a_failing_users_info_loses_nothing(gateway: GatewayUnderTest,
                                                                         slack: FakeSlack) -> None:
    user = new_user()
    slack.add_user(user, name="Bo")
    for text in ("one", "two"):
        assert (await post_message(gateway, dm(user, text)))[0] == 200
        await wait_for_text(gateway, identity(user), text)
    assert [m for m, _ in slack.calls].count("users.info") == 1  # the second came from the cache
    ttl = await gateway.store.redis.ttl(gateway.store.keys.profile("slack", identity(user).address))
    assert 0 < ttl <= 86_400

    stranger = new_user()
    slack.fail_next(503, method="users.info")
    assert (await post_message(gateway, dm(stranger, "Is anyone there?")))[0] == 200
    messages = await wait_for_text(gateway, identity(stranger), "Is anyone there?")
    assert len(messages) == 1
    customer = await eventually(lambda: gateway.store.find_customer(identity(stranger)))
    assert customer.name is None
    assert await thread(gateway, identity(stranger))
