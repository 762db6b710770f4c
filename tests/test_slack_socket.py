"""Socket Mode end to end: the gateway's poller opens a WebSocket to a local server playing Slack's
envelope protocol (hello, events_api envelopes, acks, disconnect), and what it brings lands in
threads once, however often Slack delivers it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from slackhelpers import dm, gateway_for, identity, new_user, thread, wait_for_text

from connectors.testing.fake_slack import DEFAULT_APP_TOKEN, FakeSlack, event_payload
from gateway.testing import GatewayUnderTest


@pytest.fixture
async def gateway(redis_url: str, key_prefix: str, slack: FakeSlack, redis_client: Any
                  ) -> AsyncIterator[GatewayUnderTest]:
    async with gateway_for(redis_url, key_prefix, slack, socket_mode=True, app_token=DEFAULT_APP_TOKEN,
                           signing_secret=None) as gw:
        yield gw


async def test_socket_mode_records_and_acks_every_envelope(gateway: GatewayUnderTest, slack: FakeSlack) -> None:
    await slack.wait_for_connections(1)
    user = new_user()
    first = await slack.push_event(event_payload(dm(user, "Hi from a firewalled office")))
    await slack.wait_for_ack(first)
    await wait_for_text(gateway, identity(user), "Hi from a firewalled office")

    # An envelope whose ack never reached Slack (a crash after recording) comes again on the next
    # connection, under a new envelope id; and Slack may deliver one message twice as it is.
    slack.lose_acks = True
    event = dm(user, "Second message")
    await slack.push_event(event_payload(event))
    await wait_for_text(gateway, identity(user), "Second message")
    slack.lose_acks = False
    acked = len(slack.acks)
    await slack.disconnect()  # Slack asks the app to reconnect; the lost envelope is redelivered
    await slack.wait_for_connections(2)
    again = await slack.push_event(event_payload(event))
    await slack.wait_for_ack(again)
    third = await slack.push_event(event_payload(dm(user, "Third")))
    await slack.wait_for_ack(third)
    await wait_for_text(gateway, identity(user), "Third")

    assert slack.pending == [] and len(slack.acks) == acked + 3  # the redelivery, the repeat, the third
    assert [m.text for m in await thread(gateway, identity(user))] == [
        "Hi from a firewalled office", "Second message", "Third"]
    # Socket Mode instances serve no webhook: there is no signing secret to check one with.
    assert gateway.app.router.resources() and not any(
        "/webhooks/slack/" in r.canonical for r in gateway.app.router.resources())


async def test_ignored_and_malformed_envelopes_are_acked_too(gateway: GatewayUnderTest,
                                                                 slack: FakeSlack) -> None:
    await slack.wait_for_connections(1)
    bot = {"type": "message", "subtype": "bot_message", "bot_id": "B1", "channel": "D0DMCHAN01", "text": "x",
           "ts": "1700000000.000001"}
    ignored = await slack.push_event(event_payload(bot))
    broken = await slack.push_event({"type": "event_callback", "team_id": "T1"})
    await slack.wait_for_ack(ignored)
    await slack.wait_for_ack(broken)
    letters, _ = await gateway.store.dead_letters.list()
    assert any("without an event object" in fields["reason"] for _, _, fields in letters)
