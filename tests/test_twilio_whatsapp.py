"""WhatsApp through Twilio: the 24-hour window, templates by ContentSid, error 63016, and one
phone identity shared with SMS whatever form the number came in."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from connectors.testing.fake_twilio import FakeTwilio, inbound_message_params
from gateway.testing import GatewayUnderTest, eventually

ACCOUNT_SID = "AC" + "2" * 32
AUTH_TOKEN = "e" * 32
BUSINESS = "+15550002222"
TEMPLATE = {"name": "seguimiento", "language": "es", "content_sid": "HX" + "a" * 32,
            "body": "Hola {{1}}, ¿podemos ayudarte con algo más?"}


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
async def gateway(redis_url: str, key_prefix: str, twilio: FakeTwilio) -> AsyncIterator[GatewayUnderTest]:
    gw = GatewayUnderTest(
        redis_url, prefix=key_prefix,
        connectors={"wa": {"kind": "twilio", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN,
                           "from_number": BUSINESS, "api_base_url": twilio.base_url, "templates": [TEMPLATE]}},
        partitions=2,
    )
    async with gw:
        yield gw


async def write_in(gw: GatewayUnderTest, twilio: FakeTwilio, sender: str, body: str) -> None:
    to = f"whatsapp:{BUSINESS}" if sender.startswith("whatsapp:") else BUSINESS
    params = inbound_message_params(sender, to, body, account_sid=ACCOUNT_SID)
    status, _ = await twilio.post_webhook(gw.url("/webhooks/wa/messages"), params)
    assert status == 200


async def customer_of(gw: GatewayUnderTest, token: str, number: str) -> list[dict[str, Any]]:
    status, body = await gw.api("GET", f"/v1/customers?identity=phone:{number.replace('+', '%2B')}", token)
    assert status == 200, body
    return list(body["items"])  # type: ignore[index]


async def conversation(gw: GatewayUnderTest, token: str, cid: str) -> dict[str, Any]:
    status, body = await gw.api("GET", f"/v1/conversations/{cid}", token)
    assert status == 200, body
    return body  # type: ignore[return-value]


async def texts(gw: GatewayUnderTest, token: str, cid: str) -> list[tuple[str, str, str]]:
    _, page = await gw.api("GET", f"/v1/conversations/{cid}/messages", token)
    return [(m["direction"], m["channel"], m["text"]) for m in page["items"]]  # type: ignore[index]


async def age_window(gw: GatewayUnderTest, redis_client: Any, cid: str, hours: float) -> None:
    """The customer last wrote on WhatsApp `hours` ago."""
    await redis_client.hset(gw.store.keys.thread(cid), "in:wa:whatsapp", int((time.time() - hours * 3600) * 1000))


def mobile(country: str) -> str:
    return country + str(uuid.uuid4().int)[:8]


async def whatsapp_customer(gw: GatewayUnderTest, twilio: FakeTwilio, token: str, country: str) -> tuple[str, str]:
    """(number, conversation id) of a new customer who wrote once on WhatsApp."""
    number = mobile(country)
    await write_in(gw, twilio, f"whatsapp:{number}", "hola")
    [customer] = await eventually(lambda: customer_of(gw, token, number))
    return number, str(customer["id"])


async def test_whatsapp_window_is_shown_and_enforced_with_the_template_list(
    gateway: GatewayUnderTest, twilio: FakeTwilio, redis_client: Any
) -> None:
    token = await gateway.token()
    _, cid = await whatsapp_customer(gateway, twilio, token, "+3460")
    conv = await conversation(gateway, token, cid)
    windows = {(w["instance"], w["channel"]): w for w in conv["reply_windows"]}
    assert windows[("wa", "sms")] == {"instance": "wa", "channel": "sms", "open": True, "closes_at": None}
    wa = windows[("wa", "whatsapp")]
    assert wa["open"] is True
    closes = datetime.fromisoformat(wa["closes_at"].replace("Z", "+00:00")).timestamp()
    assert abs(closes - (time.time() + 24 * 3600)) < 120

    await age_window(gateway, redis_client, cid, 25)
    conv = await conversation(gateway, token, cid)
    assert [w["open"] for w in conv["reply_windows"] if w["channel"] == "whatsapp"] == [False]
    status, body = await gateway.api("POST", f"/v1/conversations/{cid}/messages", token,
                                     json={"text": "¿sigues ahí?"})
    assert status == 409, body
    assert body["error"]["code"] == "window_closed"  # type: ignore[index]
    assert body["error"]["templates"] == ["seguimiento"]  # type: ignore[index]
    assert twilio.messages == []


async def test_a_template_goes_by_content_sid_and_shows_its_text(
    gateway: GatewayUnderTest, twilio: FakeTwilio, redis_client: Any
) -> None:
    token = await gateway.token()
    number, cid = await whatsapp_customer(gateway, twilio, token, "+3461")
    await age_window(gateway, redis_client, cid, 30)
    template = {"name": "seguimiento", "language": "es", "parameters": ["Ana"]}
    status, reply = await gateway.api("POST", f"/v1/conversations/{cid}/messages", token,
                                      json={"template": template})
    assert status == 202, reply
    assert reply["text"] == "Hola Ana, ¿podemos ayudarte con algo más?"  # type: ignore[index]
    assert reply["template"] == template  # type: ignore[index]
    [sent] = await twilio.wait_for_messages(1)
    assert sent["To"] == f"whatsapp:{number}" and sent["From"] == f"whatsapp:{BUSINESS}"
    assert sent["ContentSid"] == TEMPLATE["content_sid"]
    assert json.loads(sent["ContentVariables"]) == {"1": "Ana"}
    assert "Body" not in sent


async def test_an_unknown_template_is_422_naming_those_that_exist(
    gateway: GatewayUnderTest, twilio: FakeTwilio
) -> None:
    token = await gateway.token()
    _, cid = await whatsapp_customer(gateway, twilio, token, "+3462")
    for wrong in ({"name": "nope", "language": "es"}, {"name": "seguimiento", "language": "en"}):
        status, body = await gateway.api("POST", f"/v1/conversations/{cid}/messages", token,
                                         json={"template": wrong})
        assert status == 422, body
        assert body["error"]["code"] == "unknown_template"  # type: ignore[index]
        assert body["error"]["templates"] == ["seguimiento"]  # type: ignore[index]
    status, body = await gateway.api("POST", f"/v1/conversations/{cid}/messages", token,
                                     json={"text": "hi", "template": {"name": "seguimiento", "language": "es"}})
    assert status == 400 and body["error"]["code"] == "invalid_body"  # type: ignore[index]
    assert twilio.messages == []


async def test_error_63016_closes_the_window(gateway: GatewayUnderTest, twilio: FakeTwilio) -> None:
    token = await gateway.token()
    number, cid = await whatsapp_customer(gateway, twilio, token, "+3463")
    # Our clock says the window is open; Twilio knows better and reports 63016 on delivery.
    status, reply = await gateway.api("POST", f"/v1/conversations/{cid}/messages", token, json={"text": "hola"})
    assert status == 202, reply
    [sent] = await twilio.wait_for_messages(1)
    await eventually(lambda: _status_is(gateway, token, cid, reply["id"], "sent"))  # type: ignore[index]
    assert await twilio.post_status(gateway.url("/webhooks/wa/status"), sent["sid"], "undelivered",
                                    error_code=63016) == 200
    failed = await eventually(lambda: _status_is(gateway, token, cid, reply["id"], "failed"))  # type: ignore[index]
    assert failed["error"].startswith("63016")

    async def closed() -> bool:
        conv = await conversation(gateway, token, cid)
        return [w["open"] for w in conv["reply_windows"] if w["channel"] == "whatsapp"] == [False]

    await eventually(closed)
    status, body = await gateway.api("POST", f"/v1/conversations/{cid}/messages", token, json={"text": "¿hola?"})
    assert status == 409 and body["error"]["templates"] == ["seguimiento"]  # type: ignore[index]
    # the customer writes again: the window reopens
    await write_in(gateway, twilio, f"whatsapp:{number}", "aquí estoy")

    async def reopened() -> bool:
        conv = await conversation(gateway, token, cid)
        return [w["open"] for w in conv["reply_windows"] if w["channel"] == "whatsapp"] == [True]

    await eventually(reopened)


async def test_a_synchronous_63016_closes_the_window_too(gateway: GatewayUnderTest, twilio: FakeTwilio) -> None:
    token = await gateway.token()
    _, cid = await whatsapp_customer(gateway, twilio, token, "+3464")
    twilio.fail_next(400, code=63016)
    status, reply = await gateway.api("POST", f"/v1/conversations/{cid}/messages", token, json={"text": "hola"})
    assert status == 202, reply
    await eventually(lambda: _status_is(gateway, token, cid, reply["id"], "failed"))  # type: ignore[index]
    status, body = await gateway.api("POST", f"/v1/conversations/{cid}/messages", token, json={"text": "¿hola?"})
    assert status == 409 and body["error"]["code"] == "window_closed"  # type: ignore[index]


async def _status_is(gw: GatewayUnderTest, token: str, cid: str, mid: str, want: str) -> dict[str, Any] | None:
    _, page = await gw.api("GET", f"/v1/conversations/{cid}/messages", token)
    for m in page["items"]:  # type: ignore[index]
        if m["id"] == mid and m["status"] == want:
            return dict(m)
    return None


@pytest.mark.parametrize(("sms_form", "whatsapp_form", "identity"), [
    ("+52 55 {n}", "+52 1 55 {n}", "+5255{n}"),  # Mexico's old mobile "1"
    ("+55 11 9{n}", "+55 11 {n}", "+55119{n}"),  # Brazil's ninth digit, missing in older ids
])
async def test_an_sms_and_a_whatsapp_number_of_one_person_are_one_customer(
    gateway: GatewayUnderTest, twilio: FakeTwilio, sms_form: str, whatsapp_form: str, identity: str
) -> None:
    token = await gateway.token()
    n = "8" + str(uuid.uuid4().int)[:7]  # a mobile's eight digits (Brazil: starting 6-9)
    await write_in(gateway, twilio, sms_form.format(n=n).replace(" ", ""), "por SMS")
    [first] = await eventually(lambda: customer_of(gateway, token, identity.format(n=n)))
    await write_in(gateway, twilio, "whatsapp:" + whatsapp_form.format(n=n).replace(" ", ""), "por WhatsApp")

    async def both() -> list[tuple[str, str, str]] | None:
        seen = await texts(gateway, token, first["id"])
        return seen if len(seen) == 2 else None

    assert await eventually(both) == [("inbound", "sms", "por SMS"), ("inbound", "whatsapp", "por WhatsApp")]
    assert [c["id"] for c in await customer_of(gateway, token, identity.format(n=n))] == [first["id"]]
    # the API's ?identity=phone: lookup reads either form as the one number
    old_form = whatsapp_form.format(n=n).replace(" ", "")
    assert [c["id"] for c in await customer_of(gateway, token, old_form)] == [first["id"]]
    # the reply goes to the form WhatsApp gave
    status, _ = await gateway.api("POST", f"/v1/conversations/{first['id']}/messages", token, json={"text": "hola"})
    assert status == 202
    [sent] = await twilio.wait_for_messages(1)
    assert sent["To"] == "whatsapp:" + old_form
