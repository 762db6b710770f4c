"""The brand voice end to end: a reply from the API, rendered for its channel, reaches the
provider (a real aiosmtpd, the fake Twilio, the fake Slack, the fake Graph API) as the customer
reads it, and the thread shows that text beside what the agent typed."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from apphelpers import seed
from slackhelpers import dm, post_event
from smtpsink import SmtpSink
from socialkit import age_window, messages, reply, wait_customer
from test_pipeline import ACCOUNT_SID, AUTH_TOKEN, BUSINESS, new_number, text_in

from connectors.testing.fake_graph import FakeGraph, whatsapp_message, whatsapp_payload
from connectors.testing.fake_slack import DEFAULT_BOT_TOKEN, DEFAULT_TEAM, FakeSlack, event_payload
from connectors.testing.fake_twilio import FakeTwilio, inbound_message_params
from conversation.model import Identity
from conversation.segments import count_segments, encoding
from gateway.testing import GatewayUnderTest, eventually

SAMPLE = Path(__file__).parent.parent / "config" / "voice.toml"
WA_SECRET = "voice-wa-app-secret"
WA_NUMBER = "106540352242999"
SLACK_SECRET = "e3b0c44298fc1c149afbf4c8996fb924"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    async with FakeGraph() as fake:
        yield fake


@pytest.fixture
async def gateway(redis_url: str, key_prefix: str, sink: SmtpSink, twilio: FakeTwilio, slack: FakeSlack,
                  graph: FakeGraph, redis_client: Any) -> AsyncIterator[GatewayUnderTest]:
    gw = GatewayUnderTest(redis_url, prefix=key_prefix, partitions=2, voice_file=str(SAMPLE), connectors={
        "sms": {"kind": "twilio", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": BUSINESS,
                "api_base_url": twilio.base_url},
        "mail": {"kind": "email", "address": "ayuda@tiendasol.example", "smtp_host": "127.0.0.1",
                 "smtp_port": sink.port, "smtp_security": "none", "smtp_listen": "127.0.0.1:0"},
        "slack": {"kind": "slack", "signing_secret": SLACK_SECRET, "bot_token": DEFAULT_BOT_TOKEN,
                  "api_base_url": slack.base_url},
        "chat": {"kind": "webchat"},
        "wa": {"kind": "whatsapp", "app_secret": WA_SECRET, "verify_token": "v", "access_token": graph.access_token,
               "phone_number_id": WA_NUMBER, "api_base_url": graph.base_url,
               "templates": [{"name": "consulta_resuelta", "language": "es",
                              "body": "Hola {{1}}, damos por resuelta tu consulta {{2}}."}]},
    })
    async with gw:
        yield gw


async def customer_writes(gw: GatewayUnderTest, identity: Identity, instance: str, channel: str, text: str,
                          name: str | None = None) -> str:
    """A message in, recorded as the ingest worker records it; the conversation's id."""
    return await seed(gw.store, identity, text, name=name, instance=instance, channel=channel)


def parts(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    return str(plain.get_content()).replace("\r\n", "\n"), str(html.get_content())


async def test_an_email_reply_arrives_with_greeting_and_signature_in_both_parts(
    gateway: GatewayUnderTest, sink: SmtpSink
) -> None:
    token = await gateway.token("agent", name="Marta")
    cid = await customer_writes(gateway, Identity("email", f"lucia.{uuid.uuid4().hex[:6]}@example.net"), "mail",
                                "email", "¿Dónde está mi pedido?", name="Lucía Gómez")
    sent = await reply(gateway, token, cid, {"text": "Tu pedido **A-17** sale hoy.\n\n- Llega mañana\n- Sin coste"})
    (got,) = await sink.wait_for(1)
    plain, html = parts(got.message)
    assert plain.strip() == ("Estimado/a Lucía Gómez:\n\nTu pedido A-17 sale hoy.\n\n- Llega mañana\n- Sin coste"
                             "\n\nAtentamente,\nMarta\nTienda Sol")
    assert "<p>Estimado/a Lucía Gómez:</p>" in html
    assert "<strong>A-17</strong>" in html and "<li>Llega mañana</li>" in html
    assert "<p>Atentamente,<br>Marta<br>Tienda Sol</p>" in html
    # The thread shows what the customer received, beside what the agent typed.
    assert sent["text"] == plain.strip() and sent["composed"].startswith("Tu pedido **A-17**")
    assert sent["html"] and "<strong>A-17</strong>" in sent["html"] and sent["intent"] is None


async def test_an_sms_reply_has_no_greeting_ends_with_the_brand_tag_and_stays_gsm7(
    gateway: GatewayUnderTest, twilio: FakeTwilio
) -> None:
    token = await gateway.token("agent", name="Marta")
    number = new_number()
    assert (await text_in(gateway, twilio, number, "Hola, ¿mi pedido?"))[0] == 200
    cid = await wait_customer(gateway, token, f"phone:{number}")
    typed = "Tu pedido sale hoy — llega “mañana”… {{ 7*7 }}"
    sent = await reply(gateway, token, cid, {"text": typed})
    [out] = await twilio.wait_for_messages(1)
    body = out["Body"]
    assert body == "Tu pedido sale hoy - llega \"mañana\"... {{ 7*7 }} - Tienda Sol"
    assert "{{ 7*7 }}" in body and "49" not in body  # agent text is never a template
    assert encoding(body) == "GSM-7" and count_segments(body) == 1
    assert sent["text"] == body and sent["composed"] == typed and sent["warnings"] == []


async def test_a_slack_reply_is_in_mrkdwn(gateway: GatewayUnderTest, slack: FakeSlack) -> None:
    token = await gateway.token("agent", name="Marta")
    user = "U" + uuid.uuid4().hex[:10].upper()
    slack.add_user(user, name="Lucía Gómez", locale="es-ES")
    status, _ = await post_event(gateway, event_payload(dm(user, "hola")), secret=SLACK_SECRET)
    assert status == 200
    cid = await wait_customer(gateway, token, f"slack:{DEFAULT_TEAM}:{user}")
    await reply(gateway, token, cid, {"text": "Mira **esto**: [seguimiento](https://t.example/1)"})
    [posted] = await slack.wait_for_messages(1)
    assert posted["text"] == "¡Hola, Lucía!\n\nMira *esto*: <https://t.example/1|seguimiento>"


async def test_the_web_chat_greets_on_the_episode_s_first_reply_only(gateway: GatewayUnderTest) -> None:
    token = await gateway.token("agent", name="Marta")
    visitor = Identity("webchat", uuid.uuid4().hex)
    cid = await customer_writes(gateway, visitor, "chat", "webchat", "hola", name="Lucía Gómez")
    first = await reply(gateway, token, cid, {"text": "¿En qué te ayudo?"})
    second = await reply(gateway, token, cid, {"text": "Ya lo tengo 🙂"})
    assert first["text"] == "¡Hola, Lucía!\n\n¿En qué te ayudo?"
    assert second["text"] == "Ya lo tengo 🙂"
    # A new episode greets again.
    status, _ = await gateway.api("POST", f"/v1/conversations/{cid}/status", token, json={"status": "resolved"})
    assert status == 200
    await customer_writes(gateway, visitor, "chat", "webchat", "otra cosa")
    third = await reply(gateway, token, cid, {"text": "Dime"})
    assert third["text"] == "¡Hola, Lucía!\n\nDime"


async def test_two_replies_at_once_greet_once(gateway: GatewayUnderTest) -> None:
    import asyncio

    token = await gateway.token("agent", name="Marta")
    cid = await customer_writes(gateway, Identity("webchat", uuid.uuid4().hex), "chat", "webchat", "hola",
                                name="Lucía")
    answers = await asyncio.gather(*(reply(gateway, token, cid, {"text": f"respuesta {n}"}) for n in range(6)))
    assert sum(a["text"].startswith("¡Hola, Lucía!") for a in answers) == 1


async def test_an_intent_outside_the_whatsapp_window_goes_as_its_mapped_template(
    gateway: GatewayUnderTest, graph: FakeGraph, redis_client: Any
) -> None:
    token = await gateway.token("agent", name="Marta")
    sender = "346" + str(uuid.uuid4().int)[:8]
    payload = whatsapp_payload(WA_NUMBER, contacts=[(sender, "Lucía Gómez")], messages=[
        whatsapp_message(sender, "text", {"body": "hola"})])
    assert (await graph.post_webhook(gateway.url("/webhooks/wa/events"), WA_SECRET, payload))[0] == 200
    cid = await wait_customer(gateway, token, f"phone:+{sender}")
    await age_window(gateway, redis_client, cid, "wa", "whatsapp", 25)

    refused = await reply(gateway, token, cid, {"text": "¿Sigues ahí?"}, expect=409)
    assert refused["error"]["code"] == "window_closed"  # free text is refused, as before
    sent = await reply(gateway, token, cid, {"intent": "resolved"})
    [body] = await graph.wait_for_messages(1)
    assert body["type"] == "template"
    assert body["template"] == {"name": "consulta_resuelta", "language": {"code": "es"}, "components": [
        {"type": "body", "parameters": [{"type": "text", "text": "Lucía"}, {"type": "text", "text": cid}]}]}
    assert sent["text"] == f"Hola Lucía, damos por resuelta tu consulta {cid}."
    assert sent["intent"] == "resolved" and sent["template"]["name"] == "consulta_resuelta"


async def test_an_intent_with_variables_and_the_customer_s_locale(gateway: GatewayUnderTest,
                                                                  twilio: FakeTwilio) -> None:
    agent = await gateway.token("agent", name="Marta")
    number = new_number()  # a Spanish number: es, unless the customer says otherwise
    assert (await text_in(gateway, twilio, number, "hi"))[0] == 200
    cid = await wait_customer(gateway, agent, f"phone:{number}")
    status, customer = await gateway.api("PATCH", f"/v1/customers/{cid}", agent, json={"locale": "en"})
    assert status == 200 and customer["locale"] == "en"
    sent = await reply(gateway, agent, cid, {"intent": "order_shipped",
                                             "variables": {"order": "A-17", "tracking_url": "https://t.example/1"}})
    assert sent["text"] == "Your order A-17 is on its way. Track it here: https://t.example/1 - Tienda Sol"
    [out] = await twilio.wait_for_messages(1)
    assert out["Body"] == sent["text"] and sent["composed"] is None and sent["intent"] == "order_shipped"

    missing = await reply(gateway, agent, cid, {"intent": "order_shipped", "variables": {"order": "A-18"}},
                          expect=422)
    assert missing["error"]["code"] == "missing_variable" and "tracking_url" in missing["error"]["message"]
    unknown = await reply(gateway, agent, cid, {"intent": "refund_done"}, expect=422)
    assert unknown["error"]["code"] == "unknown_intent" and "resolved" in unknown["error"]["intents"]
    both = await reply(gateway, agent, cid, {"intent": "resolved", "text": "hola"}, expect=400)
    assert both["error"]["code"] == "invalid_body"

    async def only_one_sent() -> bool:
        return len(twilio.messages) == 1 and len(await messages(gateway, agent, cid)) == 2

    assert await eventually(only_one_sent, what="the refused intents to send nothing")


async def test_through_twilio_whatsapp_an_intent_goes_as_its_template_with_the_parameters_in_order(
    redis_url: str, key_prefix: str, twilio: FakeTwilio, redis_client: Any, tmp_path: Path
) -> None:
    voice = tmp_path / "voice.toml"
    voice.write_text(SAMPLE.read_text() + '\n[intents.waiting_on_customer.whatsapp_template]\n'
                     'name = "seguimiento"\nparameters = ["customer.first_name", "variables.order"]\n')
    content_sid = "HX" + "b" * 32
    async with GatewayUnderTest(redis_url, prefix=key_prefix, partitions=2, voice_file=str(voice), connectors={
        "wa": {"kind": "twilio", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": BUSINESS,
               "api_base_url": twilio.base_url,
               "templates": [{"name": "seguimiento", "language": "es", "content_sid": content_sid,
                              "body": "Hola {{1}}, ¿seguimos con el pedido {{2}}?"}]},
    }) as gw:
        token = await gw.token("agent", name="Marta")
        number = "+3460" + str(uuid.uuid4().int)[:7]
        params = inbound_message_params(f"whatsapp:{number}", f"whatsapp:{BUSINESS}", "hola",
                                        account_sid=ACCOUNT_SID, extra={"ProfileName": "Lucía Gómez"})
        assert (await twilio.post_webhook(gw.url("/webhooks/wa/messages"), params))[0] == 200
        cid = await wait_customer(gw, token, f"phone:{number}")
        await age_window(gw, redis_client, cid, "wa", "whatsapp", 30)
        sent = await reply(gw, token, cid, {"intent": "waiting_on_customer", "variables": {"order": "A-17"}})
        [out] = await twilio.wait_for_messages(1)
        assert out["ContentSid"] == content_sid and "Body" not in out
        assert json.loads(out["ContentVariables"]) == {"1": "Lucía", "2": "A-17"}
        assert sent["text"] == "Hola Lucía, ¿seguimos con el pedido A-17?" and sent["intent"] == "waiting_on_customer"
