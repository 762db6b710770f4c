"""Helpers shared by the Slack tests: a gateway with a Slack instance pointed at a FakeSlack, and
Events API requests signed as Slack signs them (connectors.testing.SlackSigner, the v0 scheme)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp

from connectors.base import WebhookRequest
from connectors.testing.fake_slack import DEFAULT_BOT_TOKEN, DEFAULT_TEAM, FakeSlack, event_payload
from connectors.testing.signers import SlackSigner
from conversation.model import Identity, Message
from gateway.testing import GatewayUnderTest, eventually

SIGNING_SECRET = "e3b0c44298fc1c149afbf4c8996fb924"
INSTANCE = "slack"
TEAM = DEFAULT_TEAM


def slack_config(fake: FakeSlack, **overrides: Any) -> dict[str, Any]:
    return {"kind": "slack", "signing_secret": SIGNING_SECRET, "bot_token": DEFAULT_BOT_TOKEN,
            "api_base_url": fake.base_url, **overrides}


def gateway_for(redis_url: str, prefix: str, fake: FakeSlack, **overrides: Any) -> GatewayUnderTest:
    return GatewayUnderTest(redis_url, prefix=prefix, connectors={INSTANCE: slack_config(fake, **overrides)},
                            partitions=2, lease_ttl=2.0, send_visibility_timeout=5.0, send_max_attempts=3,
                            shutdown_grace=2.0)


def new_user() -> str:
    return "U" + uuid.uuid4().hex[:10].upper()


def new_ts() -> str:
    return f"{time.time():.6f}"


def dm(user: str, text: str, *, ts: str | None = None, channel: str = "D0DMCHAN01", **fields: Any) -> dict[str, Any]:
    return {"type": "message", "channel": channel, "user": user, "text": text, "ts": ts or new_ts(), "team": TEAM,
            "channel_type": "im", **fields}


def sign(body: bytes, *, now: float | None = None, secret: str = SIGNING_SECRET) -> dict[str, str]:
    request = WebhookRequest(method="POST", url="", path="events", headers={}, query={}, body=body)
    return dict(SlackSigner(secret).headers(request, now=time.time() if now is None else now))


async def post_event(gw: GatewayUnderTest, payload: Mapping[str, Any], *, now: float | None = None,
                     secret: str = SIGNING_SECRET, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    body = json.dumps(payload).encode()
    hdrs = {"Content-Type": "application/json", **sign(body, now=now, secret=secret), **(headers or {})}
    async with aiohttp.ClientSession() as http, http.post(gw.url(f"/webhooks/{INSTANCE}/events"), data=body,
                                                          headers=hdrs) as resp:
        return resp.status, await resp.read()


async def post_message(gw: GatewayUnderTest, event: Mapping[str, Any], **kw: Any) -> tuple[int, bytes]:
    return await post_event(gw, event_payload(event), **kw)


def identity(user: str, team: str = TEAM) -> Identity:
    return Identity("slack", f"{team}:{user}")


async def thread(gw: GatewayUnderTest, who: Identity) -> list[Message]:
    customer = await gw.store.find_customer(who)
    if customer is None:
        return []
    messages, _ = await gw.store.timeline.list_messages(customer.id, limit=200)
    return messages


async def wait_for_text(gw: GatewayUnderTest, who: Identity, text: str) -> list[Message]:
    async def probe() -> list[Message] | None:
        messages = await thread(gw, who)
        return messages if any(m.text == text for m in messages) else None

    found: list[Message] = await eventually(probe, what=f"{text!r} in the thread of {who.key}")
    return found
