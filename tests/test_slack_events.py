"""Slack's Events API through the whole gateway: signed requests in, threads and edits out."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from slackhelpers import (
    INSTANCE,
    TEAM,
    dm,
    identity,
    new_ts,
    new_user,
    post_event,
    post_message,
    thread,
    wait_for_text,
)

from connectors.testing.fake_slack import DEFAULT_BOT_USER, FakeSlack, event_payload
from gateway.testing import GatewayUnderTest, eventually


@pytest.fixture
def gateway(slack_gateway: GatewayUnderTest) -> GatewayUnderTest:
    return slack_gateway


async def test_url_verification_is_answered_with_the_challenge(gateway: GatewayUnderTest) -> None:
    status, body = await post_event(gateway, {"token": "x", "challenge": "c-8Hq2Lx", "type": "url_verification"})
    assert (status, body) == (200, b"c-8Hq2Lx")


async def _recorded(gw: GatewayUnderTest, ts: str, user: str) -> bool:
    store = gw.store
    key = store.keys.dedupe(store.ingest.partition_for(identity(user)), INSTANCE, f"D0DMCHAN01:{ts}")
    return bool(await store.redis.exists(key))


async def test_forged_and_stale_signatures_get_403_and_store_nothing(gateway: GatewayUnderTest) -> None:
    user = new_user()
    event = dm(user, "Please refund me")
    status, _ = await post_message(gateway, event, secret="not-the-signing-secret")
    assert status == 403
    status, _ = await post_message(gateway, event, now=time.time() - 6 * 60)  # a replay after the window
    assert status == 403
    assert not await _recorded(gateway, event["ts"], user)
    assert await gateway.store.find_customer(identity(user)) is None
    # The same event, signed now with the right secret, is taken: the 403s were the signature's doing.
    status, _ = await post_message(gateway, event)
    assert status == 200
    assert await _recorded(gateway, event["ts"], user)


async def test_retries_and_double_deliveries_are_stored_once(gateway: GatewayUnderTest) -> None:
    user = new_user()
    event = dm(user, "Where is my parcel?", channel="C0SHARED01", channel_type="channel")
    payload = event_payload(event)
    assert (await post_event(gateway, payload))[0] == 200
    # Slack retries when the ack is late, with the same event and X-Slack-Retry-Num...
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    assert (await post_event(gateway, payload, headers=retry))[0] == 200
    # ...and one message that mentions the app also comes as app_mention, under another event_id.
    mention = {k: v for k, v in event.items() if k not in ("channel_type", "team")}
    assert (await post_event(gateway, event_payload({**mention, "type": "app_mention"})))[0] == 200
    later = dm(user, "Hello?", channel="C0SHARED01", channel_type="channel")
    assert (await post_message(gateway, later))[0] == 200

    messages = await wait_for_text(gateway, identity(user), "Hello?")
    assert [m.text for m in messages] == ["Where is my parcel?", "Hello?"]
    assert messages[0].provider_message_id == f"C0SHARED01:{event['ts']}"


async def test_bot_messages_and_our_own_bot_are_ignored(gateway: GatewayUnderTest) -> None:
    user = new_user()
    other_bot = {"type": "message", "subtype": "bot_message", "bot_id": "B0OTHER001", "channel": "D0DMCHAN01",
                 "text": "Build passed", "ts": new_ts()}
    app_bot = {"type": "message", "bot_id": "B0OTHER002", "user": "U0OTHERAPP", "channel": "D0DMCHAN01",
               "text": "Reminder", "ts": new_ts()}
    ours = dm(DEFAULT_BOT_USER, "Thanks, we are on it")
    for event in (other_bot, app_bot, ours):
        assert (await post_message(gateway, event))[0] == 200
    assert (await post_message(gateway, dm(user, "Hi, a question")))[0] == 200
    await wait_for_text(gateway, identity(user), "Hi, a question")
    assert await gateway.store.find_customer(identity(DEFAULT_BOT_USER)) is None
    assert await gateway.store.find_customer(identity("U0OTHERAPP")) is None
    assert not await _recorded(gateway, ours["ts"], DEFAULT_BOT_USER)


async def test_edits_and_deletions_are_recorded_on_the_stored_message(gateway: GatewayUnderTest) -> None:
    user = new_user()
    token = await gateway.token("agent")
    first, second = dm(user, "My order is #4471"), dm(user, "Also my card was charged twice")
    for event in (first, second):
        assert (await post_message(gateway, event))[0] == 200
    await wait_for_text(gateway, identity(user), second["text"])
    cid = (await gateway.store.find_customer(identity(user))).id  # type: ignore[union-attr]

    edited_ts = new_ts()
    changed = {"type": "message", "subtype": "message_changed", "channel": "D0DMCHAN01", "hidden": True,
               "ts": edited_ts, "event_ts": edited_ts, "channel_type": "im",
               "message": {**first, "text": "My order is #4417", "edited": {"user": user, "ts": edited_ts}},
               "previous_message": first}
    # Slack also sends message_changed for link unfurls; without `edited` it is no edit.
    unfurl = {**changed, "message": {**first, "text": "My order is #4471", "attachments": [{"id": 1}]}}
    deleted = {"type": "message", "subtype": "message_deleted", "channel": "D0DMCHAN01", "hidden": True,
               "ts": new_ts(), "deleted_ts": second["ts"], "event_ts": new_ts(), "channel_type": "im",
               "previous_message": second}
    unknown = {**changed, "message": {**first, "ts": "1600000000.000001", "edited": {"user": user, "ts": edited_ts}}}
    for event in (changed, unfurl, deleted, unknown):
        assert (await post_message(gateway, event))[0] == 200
    # A retry of the edit changes nothing more.
    assert (await post_message(gateway, changed, headers={"X-Slack-Retry-Num": "1"}))[0] == 200

    async def updated() -> list[dict[str, Any]] | None:
        status, page = await gateway.api("GET", f"/v1/conversations/{cid}/messages", token)
        assert status == 200 and isinstance(page, dict)
        items: list[dict[str, Any]] = page["items"]
        return items if items[0]["text"] == "My order is #4417" and items[1]["deleted"] else None

    items = await eventually(updated, what="the edit and the deletion")
    assert len(items) == 2
    assert items[0]["edited_at"] is not None and not items[0]["deleted"]
    assert items[1]["text"] == "" and items[1]["edited_at"] is not None
    events = [e for _, e in await gateway.store.events.read(count=1000) if e.type == "message.updated"]
    assert sorted((e.message_id, e.status) for e in events) == [(f"{cid}.0", "edited"), (f"{cid}.1", "deleted")]


async def test_unparseable_authentic_payload_is_acked_and_dead_lettered(gateway: GatewayUnderTest) -> None:
    status, _ = await post_event(gateway, {"type": "event_callback", "team_id": TEAM, "event_id": "Ev1"})
    assert status == 200
    letters, _ = await gateway.store.dead_letters.list()
    assert any("without an event object" in fields["reason"] for _, _, fields in letters)
    await asyncio.sleep(0)
    assert await thread(gateway, identity("nobody")) == []
    # The operator reads the JSON payload as JSON, not as an escaped string.
    status, page = await gateway.api("GET", "/v1/dead-letters", await gateway.token("admin"))
    assert status == 200 and isinstance(page, dict)
    [letter] = [i for i in page["items"] if "without an event object" in i["reason"]]
    assert letter["payload"] == {"type": "event_callback", "team_id": TEAM, "event_id": "Ev1"}
    assert letter["content_type"] == "application/json"


async def test_a_shared_file_is_kept_and_agents_open_it_through_the_gateway(gateway: GatewayUnderTest,
                                                                             slack: FakeSlack) -> None:
    """Slack serves a shared file only with the bot token: the message keeps it as an attachment,
    and an agent opens it through the gateway, which fetches it with the token."""
    import aiohttp

    user = new_user()
    shared = slack.add_file("receipt.pdf", b"%PDF-1.4 the receipt", "application/pdf")
    assert (await post_message(gateway, dm(user, "Here is my receipt", files=[shared])))[0] == 200
    messages = await wait_for_text(gateway, identity(user), "Here is my receipt")
    [attachment] = messages[-1].attachments
    assert (attachment.name, attachment.content_type, attachment.size) == ("receipt.pdf", "application/pdf", 20)

    token = await gateway.token("agent")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.get(gateway.url(f"/v1/messages/{messages[-1].id}/attachments/0")) as resp:
            assert resp.status == 200
            assert await resp.read() == b"%PDF-1.4 the receipt"
            assert resp.content_type == "application/pdf"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
        async with http.get(gateway.url(f"/v1/messages/{messages[-1].id}/attachments/1")) as resp:
            assert resp.status == 404
    assert slack.file_requests == [f"Bearer {slack.bot_token}"]
