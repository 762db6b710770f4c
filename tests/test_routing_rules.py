"""Routing rules: channel, instance, tier, language, whole-word keywords, a regular expression and
existing tags pick the queue, the priority (numbers or low/normal/high/urgent) and the tags; a key
account goes straight to its account manager; an agent can ask for a re-route. Every decision is
on the conversation's activity log with the rule that made it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from socialkit import wait_customer
from test_pipeline import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    BUSINESS,
    text_in,
)

from connectors.testing.fake_twilio import FakeTwilio
from conversation.routing import Route, RoutingFacts, RoutingRule, RoutingSettings
from gateway.config import ConfigError, load_config
from gateway.testing import GatewayUnderTest, eventually

ROUTING: dict[str, Any] = {
    "default_queue": "general",
    "default_priority": "normal",
    "queues": {"general": {"assignment": "push", "languages": ["es", "en"], "sticky": True},
               "l2": {"assignment": "pull", "skills": ["technical"]},
               "key_accounts": {"assignment": "push"}},
    "rules": [
        {"name": "key accounts", "queue": "key_accounts", "tier": "key_account", "priority": "high",
         "to_account_manager": True},
        {"name": "technical", "queue": "l2", "regex": r"(?i)error \d{3}|no funciona|crash", "tags": ["technical"]},
        {"name": "refunds", "queue": "billing", "keywords": ["refund", "reembolso"], "priority": "urgent"},
        {"name": "english", "queue": "english", "language": "en", "has_tags": ["vip"]},
    ],
}


def settings() -> RoutingSettings:
    return msgspec.convert(ROUTING, RoutingSettings)


def facts(text: str, **kw: Any) -> RoutingFacts:
    return RoutingFacts(channel="sms", instance="sms", text=text, **kw)


def test_the_first_matching_rule_sets_queue_priority_and_tags() -> None:
    routing = settings()
    assert routing.default_priority == 5
    assert routing.pick(facts("Me sale error 504 al pagar")) == Route("l2", 5, "technical", ("technical",))
    assert routing.pick(facts("la app NO FUNCIONA")).queue == "l2"
    assert routing.pick(facts("error 50")).queue == "general"  # three digits, as the expression says
    assert routing.pick(facts("I want a REFUND now")) == Route("billing", 9, "refunds")
    assert routing.pick(facts("refunded already?")).queue == "general"  # whole words only
    assert routing.pick(facts("hola")) == Route("general", 5, "default")


def test_tier_language_tags_and_the_account_manager() -> None:
    routing = settings()
    assert routing.pick(facts("hola", tier="key_account", account_manager="tam-lucia")) == Route(
        "key_accounts", 7, "key accounts", (), "tam-lucia")
    # A key account without a manager still reaches the queue, with nobody assigned.
    assert routing.pick(facts("hola", tier="key_account")).agent is None
    assert routing.pick(facts("hi", language="en-GB", tags=("vip",))).queue == "english"
    assert routing.pick(facts("hi", language="en-GB")).queue == "general"  # lacks the tag
    assert routing.pick(facts("hi", language="es", tags=("vip",))).queue == "general"


def test_priorities_by_name_or_number_and_bad_rules_are_named(tmp_path: Path) -> None:
    assert RoutingRule(queue="q", priority="low").priority == 2
    assert RoutingRule(queue="q", priority=8).priority == 8
    path = tmp_path / "gateway.toml"
    path.write_text('[routing]\ndefault_priority = "meh"\n\n[[routing.rules]]\nqueue = "l2"\nregex = "error (\\\\d"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    text = str(caught.value)
    assert "routing.default_priority" in text
    assert "not a valid regular expression" in text and "error (" in text


@pytest.fixture
async def gateway(redis_url: str, key_prefix: str, twilio: FakeTwilio, redis_client: Any
                  ) -> AsyncIterator[GatewayUnderTest]:
    async with GatewayUnderTest(redis_url, prefix=key_prefix, partitions=2, routing=ROUTING, connectors={
        "sms": {"kind": "twilio", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": BUSINESS,
                "api_base_url": twilio.base_url}}) as gw:
        yield gw


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


def number() -> str:
    return "+346" + str(uuid.uuid4().int)[:8]


async def activity(gw: GatewayUnderTest, token: str, cid: str) -> list[dict[str, Any]]:
    status, page = await gw.api("GET", f"/v1/conversations/{cid}/activity?limit=100", token)
    assert status == 200, page
    return list(page["items"])  # type: ignore[index]


async def test_error_504_goes_to_l2_tagged_and_the_rule_is_on_the_activity(gateway: GatewayUnderTest,
                                                                          twilio: FakeTwilio) -> None:
    token = await gateway.token("supervisor", name="sue")
    sender = number()
    assert (await text_in(gateway, twilio, sender, "Me sale error 504 al pagar"))[0] == 200
    cid = await wait_customer(gateway, token, f"phone:{sender}")
    status, conv = await gateway.api("GET", f"/v1/conversations/{cid}", token)
    assert status == 200 and (conv["queue"], conv["priority"], conv["tags"]) == ("l2", 5, ["technical"])  # type: ignore[index]
    [routed] = [a for a in await activity(gateway, token, cid) if a["type"] == "routed"]
    assert routed["actor"] == {"kind": "rule", "name": "technical"}
    assert routed["details"] == {"queue": "l2", "priority": 5, "rule": "technical", "tags": ["technical"]}
    status, listing = await gateway.api("GET", "/v1/conversations?queue=l2", token)
    assert [c["tags"] for c in listing["items"] if c["id"] == cid] == [["technical"]]  # type: ignore[index]


async def test_a_key_account_reaches_its_account_manager_and_a_reroute_is_logged(
    gateway: GatewayUnderTest, twilio: FakeTwilio
) -> None:
    supervisor = await gateway.token("supervisor", name="sue")
    agent = await gateway.token("agent", name="ana")
    sender = number()
    assert (await text_in(gateway, twilio, sender, "hola"))[0] == 200
    cid = await wait_customer(gateway, supervisor, f"phone:{sender}")
    # An agent may not make someone a key account, nor name their manager.
    for body in ({"tier": "key_account"}, {"account_manager": "tam-lucia"}):
        status, refused = await gateway.api("PATCH", f"/v1/customers/{cid}", agent, json=body)
        assert status == 403, refused
    status, customer = await gateway.api("PATCH", f"/v1/customers/{cid}", supervisor,
                                         json={"tier": "key_account", "account_manager": "tam-lucia"})
    assert status == 200 and customer["account_manager"] == "tam-lucia"  # type: ignore[index]

    # The open thread stays where it is until someone asks for a re-route...
    status, conv = await gateway.api("POST", f"/v1/conversations/{cid}/reroute", agent)
    assert status == 200 and (conv["queue"], conv["priority"]) == ("key_accounts", 7)  # type: ignore[index]
    [rerouted] = [a for a in await activity(gateway, supervisor, cid) if a["type"] == "rerouted"]
    assert rerouted["actor"] == {"kind": "agent", "name": "ana"}
    assert rerouted["details"] == {"from_queue": "general", "queue": "key_accounts", "from_priority": 5,
                                   "priority": 7, "rule": "key accounts"}

    # ...and the next episode goes straight to the account manager.
    status, _ = await gateway.api("POST", f"/v1/conversations/{cid}/status", supervisor, json={"status": "resolved"})
    assert status == 200
    assert (await text_in(gateway, twilio, sender, "otra consulta"))[0] == 200

    async def reassigned() -> dict[str, Any] | None:
        _, conv = await gateway.api("GET", f"/v1/conversations/{cid}", supervisor)
        return conv if conv["assignee"] == "tam-lucia" else None  # type: ignore[index]

    conv = await eventually(reassigned, what="the new episode assigned to the account manager")
    assert conv["queue"] == "key_accounts" and conv["status"] == "open"
    assigned = [a for a in await activity(gateway, supervisor, cid) if a["type"] == "assigned"]
    assert assigned[-1]["actor"] == {"kind": "rule", "name": "key accounts"}
    assert assigned[-1]["details"] == {"agent": "tam-lucia", "rule": "key accounts", "reason": "account_manager"}


async def test_a_reroute_of_nothing_is_404(gateway: GatewayUnderTest) -> None:
    token = await gateway.token("agent")
    status, body = await gateway.api("POST", "/v1/conversations/nobody/reroute", token)
    assert status == 404 and body["error"]["code"] == "not_found"  # type: ignore[index]
