"""Agents' replies to Slack: placement in the customer's Slack thread, mrkdwn, rate limits and
errors, through the dispatcher and the real AsyncWebClient against a local FakeSlack."""

from __future__ import annotations

import json
from typing import Any

import pytest
from slackhelpers import dm, identity, new_ts, new_user, post_message, wait_for_text

from connectors.base import Capabilities, FileUnavailable
from connectors.capabilities import fit_text
from connectors.chat.slack import SlackConnector
from connectors.chat.slack.mrkdwn import markdown_to_mrkdwn, mrkdwn_to_text
from connectors.testing.fake_slack import FakeSlack
from conversation.ids import split_message_id
from gateway.testing import GatewayUnderTest, eventually


async def _reply(gw: GatewayUnderTest, cid: str, text: str) -> dict[str, Any]:
    status, reply = await gw.api("POST", f"/v1/conversations/{cid}/messages", await gw.token("agent"),
                                 json={"text": text})
    assert status == 202 and isinstance(reply, dict), reply
    return reply


async def _customer(gw: GatewayUnderTest, user: str) -> str:
    customer = await gw.store.find_customer(identity(user))
    assert customer is not None
    return customer.id


async def _delivery(gw: GatewayUnderTest, mid: str) -> list[Any]:
    cid, seq = split_message_id(mid)
    raw = await gw.store.redis.hget(gw.store.keys.overlay(cid), str(seq))
    return list(json.loads(raw))[:4] if raw else []  # status, error, provider id, attempts


@pytest.fixture
def gateway(slack_gateway: GatewayUnderTest) -> GatewayUnderTest:
    return slack_gateway


async def test_replies_land_in_the_customers_slack_thread(gateway: GatewayUnderTest, slack: FakeSlack) -> None:
    user = new_user()
    root = new_ts()
    # The customer answers inside a thread of a Slack Connect channel...
    event = dm(user, "Still broken after the update", channel="C0SHARED01", channel_type="channel",
               thread_ts=root)
    assert (await post_message(gateway, event))[0] == 200
    await wait_for_text(gateway, identity(user), event["text"])
    cid = await _customer(gateway, user)

    await _reply(gateway, cid, "**Sorry!** We are on it, see [the status page](https://status.example.com) & wait")
    await _reply(gateway, cid, "Fixed now.")
    first, second = await slack.wait_for_messages(2)
    # ...so both replies go to that channel and thread, the second one too (the thread's context
    # is then our own first reply).
    assert (first["channel"], first["thread_ts"]) == ("C0SHARED01", root)
    assert (second["channel"], second["thread_ts"]) == ("C0SHARED01", root)
    assert first["text"] == "*Sorry!* We are on it, see <https://status.example.com|the status page> &amp; wait"

    # A top-level direct message is answered top-level, in the DM.
    direct = dm(user, "One more thing")
    assert (await post_message(gateway, direct))[0] == 200
    await wait_for_text(gateway, identity(user), "One more thing")
    await _reply(gateway, cid, "Sure, go ahead.")
    third = (await slack.wait_for_messages(3))[2]
    assert third["channel"] == "D0DMCHAN01" and "thread_ts" not in third


async def test_a_429_is_retried_by_the_dispatcher_after_retry_after(gateway: GatewayUnderTest,
                                                                  slack: FakeSlack) -> None:
    user = new_user()
    assert (await post_message(gateway, dm(user, "Hello")))[0] == 200
    await wait_for_text(gateway, identity(user), "Hello")
    slack.fail_next(429, retry_after=2, method="chat.postMessage")
    reply = await _reply(gateway, await _customer(gateway, user), "Hi there")

    async def sent() -> list[Any] | None:
        delivery = await _delivery(gateway, reply["id"])
        return delivery if delivery and delivery[0] == "sent" else None

    _, _, provider_id, attempts = await eventually(sent, within=10, what="the reply sent after the 429")
    assert len(slack.messages) == 1 and provider_id.startswith("D0DMCHAN01:")
    # Two attempts of our dispatcher (the SDK client retried nothing itself), Retry-After apart.
    assert attempts == 2
    times = [t for method, t in slack.call_times if method == "chat.postMessage"]
    assert len(times) == 2 and times[1] - times[0] >= 1.9


async def test_ok_false_errors_fail_the_reply_with_slacks_reason(gateway: GatewayUnderTest, slack: FakeSlack) -> None:
    user = new_user()
    assert (await post_message(gateway, dm(user, "Hello")))[0] == 200
    await wait_for_text(gateway, identity(user), "Hello")
    slack.fail_next_error("channel_not_found")
    reply = await _reply(gateway, await _customer(gateway, user), "Hi there")

    async def failed() -> list[Any] | None:
        delivery = await _delivery(gateway, reply["id"])
        return delivery if delivery and delivery[0] == "failed" else None

    _, error, _, attempts = await eventually(failed, what="the reply failed")
    assert error == "channel_not_found" and attempts == 1
    assert [m for m, _ in slack.calls].count("chat.postMessage") == 1 and slack.messages == []


def test_markdown_becomes_mrkdwn() -> None:
    assert markdown_to_mrkdwn("# Update\n\n- **bold** and *it* and ~~old~~\n- `a < b` stays code") == (
        "*Update*\n\n• *bold* and _it_ and ~old~\n• `a &lt; b` stays code")
    assert markdown_to_mrkdwn("```\nx = 1 * 2 * 3\n```") == "```\nx = 1 * 2 * 3\n```"
    assert mrkdwn_to_text("<@U1> see <https://x.test|docs>, <!here> &lt;3 &amp; <#C1|general>") == (
        "@U1 see docs (https://x.test), @here <3 & #general")


def test_long_replies_split_at_paragraph_boundaries() -> None:
    caps: Capabilities = SlackConnector.capabilities
    paragraphs = [f"Paragraph {i}. " + "word " * 300 for i in range(6)]
    parts = fit_text(caps, "\n\n".join(p.strip() for p in paragraphs))
    assert len(parts) > 1 and all(len(p) <= caps.max_text_length for p in parts)
    assert all(p.startswith("Paragraph ") and p.endswith("word") for p in parts)


async def test_the_sdk_client_has_no_retry_handlers_of_its_own(slack: FakeSlack) -> None:
    connector = SlackConnector.from_config("s", {"kind": "slack", "signing_secret": "x", "bot_token": "xoxb-1",
                                                 "api_base_url": slack.base_url}, public_url="http://gw")
    try:
        assert connector.web_client().retry_handlers == []
    finally:
        await connector.aclose()


async def test_file_downloads_send_the_bot_token_only_to_slack(slack: FakeSlack) -> None:
    shared = slack.add_file("photo.png", b"\x89PNG...", "image/png")
    right = SlackConnector.from_config("s", {"kind": "slack", "signing_secret": "x", "bot_token": slack.bot_token,
                                             "api_base_url": slack.base_url}, public_url="http://gw")
    wrong = SlackConnector.from_config("s", {"kind": "slack", "signing_secret": "x", "bot_token": "xoxb-revoked",
                                             "api_base_url": slack.base_url}, public_url="http://gw")
    try:
        fetched = await right.fetch_file(shared["url_private"])
        assert fetched is not None and fetched.data == b"\x89PNG..."
        with pytest.raises(FileUnavailable, match="sign-in page"):
            await wrong.fetch_file(shared["url_private"])
        with pytest.raises(FileUnavailable, match="not a Slack file URL"):
            await right.fetch_file("https://files.example.net/steal-the-token")
        assert slack.file_requests == [f"Bearer {slack.bot_token}", "Bearer xoxb-revoked"]
    finally:
        await right.aclose()
        await wrong.aclose()
