"""The conformance kit on the built-in Slack connector, with Events API payloads as Slack sends them."""

from __future__ import annotations

from connectors.base import WebhookResponse
from connectors.chat.slack import SlackConnector
from connectors.testing import INSTANCE, RECEIVED_AT_MS, REMOVE, ConnectorConformance, InvalidSettings, PayloadCase
from connectors.testing.fake_slack import DEFAULT_BOT_TOKEN, DEFAULT_BOT_USER, FakeSlack, event_payload
from connectors.testing.signers import SlackSigner
from conversation.model import Attachment, Identity, InboundMessage

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM = "T0FAKE0001"
CUSTOMER_TEAM = "T0CUSTOMR1"
USER = "U0CUST0001"

DM = {
    "type": "message", "channel": "D0DMCHAN01", "user": USER, "text": "Hi, my invoice shows the wrong VAT &amp; total",
    "ts": "1700000000.000100", "team": TEAM, "channel_type": "im", "event_ts": "1700000000.000100",
}
IN_THREAD = {
    "type": "message", "channel": "C0SHARED01", "user": USER, "user_team": CUSTOMER_TEAM, "team": CUSTOMER_TEAM,
    "text": "Any news on <https://status.example.com/i/42|incident 42>?", "ts": "1700000100.000200",
    "thread_ts": "1700000050.000300", "channel_type": "channel", "event_ts": "1700000100.000200",
}
FILE_SHARE = {
    "type": "message", "subtype": "file_share", "channel": "D0DMCHAN01", "user": USER, "text": "Screenshot attached",
    "ts": "1700000200.000400", "team": TEAM, "channel_type": "im", "event_ts": "1700000200.000400",
    "files": [{"id": "F0FILE0001", "name": "error.png", "mimetype": "image/png", "size": 48213,
               "url_private": "https://files.slack.com/files-pri/T0FAKE0001-F0FILE0001/error.png",
               "url_private_download": "https://files.slack.com/files-pri/T0FAKE0001-F0FILE0001/download/error.png"}],
}
MENTION = {
    "type": "app_mention", "channel": "C0SHARED01", "user": USER, "user_team": CUSTOMER_TEAM,
    "text": f"<@{DEFAULT_BOT_USER}> can someone help?", "ts": "1700000300.000500", "event_ts": "1700000300.000500",
}
BOT = {"type": "message", "subtype": "bot_message", "channel": "C0SHARED01", "bot_id": "B0OTHER001",
       "text": "Deploy finished", "ts": "1700000400.000600"}
OUR_BOT = {"type": "message", "channel": "D0DMCHAN01", "user": DEFAULT_BOT_USER, "text": "Thanks for writing",
           "ts": "1700000500.000700", "channel_type": "im"}


def inbound(event: dict[str, object], event_id: str, text: str, **fields: object) -> InboundMessage:
    channel, ts = str(event["channel"]), str(event["ts"])
    team = str(event.get("user_team") or event.get("team") or TEAM)
    extra = {"event_id": event_id, "channel": channel, "ts": ts, "team": team}
    if event.get("thread_ts"):
        extra["thread_ts"] = str(event["thread_ts"])
    if event.get("channel_type"):
        extra["channel_type"] = str(event["channel_type"])
    values: dict[str, object] = {
        "instance": INSTANCE, "channel": "slack", "provider_message_id": f"{channel}:{ts}",
        "sender": Identity("slack", f"{team}:{USER}"), "text": text, "received_at_ms": RECEIVED_AT_MS,
        "extra": extra,
    }
    values.update(fields)
    return InboundMessage(**values)  # type: ignore[arg-type]


class TestSlackConformance(ConnectorConformance):
    connector_class = SlackConnector
    settings = {
        "signing_secret": SIGNING_SECRET,
        "bot_token": DEFAULT_BOT_TOKEN,
        "api_base_url": "http://127.0.0.1:9/api/",  # nothing listens: only the send tests point it at a fake
    }
    invalid_settings = [
        InvalidSettings({"bot_token": "xoxp-user-token"}, "bot_token must be the app's bot token"),
        InvalidSettings({"signing_secret": REMOVE}, "signing_secret is required"),
        InvalidSettings({"socket_mode": True}, "socket_mode = true needs app_token"),
        InvalidSettings({"socket_mode": True, "app_token": "xoxb-1"}, "app_token must be an app-level token"),
        InvalidSettings({"api_base_url": "slack.com/api"}, "api_base_url must be an http(s) URL"),
        InvalidSettings({"timeout_seconds": 0}, "timeout_seconds must be positive"),
    ]
    signer = SlackSigner(SIGNING_SECRET)
    payload_cases = [
        PayloadCase.json("url_verification", "events",
                         {"token": "unused", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                          "type": "url_verification"},
                         handshake=True, response=WebhookResponse(
                             200, b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "text/plain")),
        PayloadCase.json("direct message", "events", event_payload(DM, event_id="Ev0DM00001"), messages=[
            inbound(DM, "Ev0DM00001", "Hi, my invoice shows the wrong VAT & total", thread_ref="D0DMCHAN01")]),
        PayloadCase.json("reply in a Slack Connect thread", "events", event_payload(IN_THREAD, event_id="Ev0THR0001"),
                         messages=[inbound(IN_THREAD, "Ev0THR0001",
                                           "Any news on incident 42 (https://status.example.com/i/42)?",
                                           thread_ref="C0SHARED01:1700000050.000300")]),
        PayloadCase.json("file shared in a DM", "events", event_payload(FILE_SHARE, event_id="Ev0FILE001"), messages=[
            inbound(FILE_SHARE, "Ev0FILE001", "Screenshot attached", thread_ref="D0DMCHAN01", attachments=(
                Attachment(FILE_SHARE["files"][0]["url_private_download"], "image/png",  # type: ignore[index]
                           name="error.png", size=48213),))]),
        PayloadCase.json("app_mention in a shared channel", "events", event_payload(MENTION, event_id="Ev0MEN0001"),
                         messages=[inbound(MENTION, "Ev0MEN0001", f"@{DEFAULT_BOT_USER} can someone help?",
                                           thread_ref="C0SHARED01:1700000300.000500")]),
        PayloadCase.json("another app's bot message is ignored", "events", event_payload(BOT, event_id="Ev0BOT0001")),
        PayloadCase.json("our own bot's message is ignored", "events", event_payload(OUR_BOT, event_id="Ev0OWN0001")),
        PayloadCase.json("event_callback without an event", "events",
                         {"type": "event_callback", "team_id": TEAM, "event_id": "Ev0BAD0001"},
                         malformed="without an event object"),
    ]
    recipient = Identity("slack", f"{TEAM}:{USER}")

    def fake_provider(self) -> FakeSlack:
        return FakeSlack()
