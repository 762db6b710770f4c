"""Which language a reply is written in: the customer's own (set through the API), else what the
channel told (Telegram's language_code, the web chat's browser language, Slack's locale), else
the phone number's country, else the brand's default."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slackhelpers import post_event
from socialkit import reply, wait_customer, wait_messages
from test_pipeline import ACCOUNT_SID, AUTH_TOKEN, BUSINESS, text_in
from test_webchat import SECRET as WEBCHAT_SECRET
from test_webchat import SHOP, new_session

from connectors.testing.fake_slack import DEFAULT_BOT_TOKEN, DEFAULT_TEAM, FakeSlack, event_payload
from connectors.testing.fake_telegram import DEFAULT_BOT_TOKEN as TG_TOKEN
from connectors.testing.fake_telegram import FakeTelegram
from connectors.testing.fake_twilio import FakeTwilio
from conversation.voice.locales import phone_locale, preferred_language
from gateway.testing import GatewayUnderTest, eventually

SAMPLE = Path(__file__).parent.parent / "config" / "voice.toml"
TG_SECRET = "tg-voice-secret-0001"
SLACK_SECRET = "e3b0c44298fc1c149afbf4c8996fb924"
SURVEY = {"es": "¿Qué tal te hemos atendido? Tu opinión nos ayuda a mejorar.",
          "en": "How did we do? Your opinion helps us improve."}


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def gateway(redis_url: str, key_prefix: str, twilio: FakeTwilio, telegram: FakeTelegram, slack: FakeSlack,
                  redis_client: Any) -> AsyncIterator[GatewayUnderTest]:
    gw = GatewayUnderTest(redis_url, prefix=key_prefix, partitions=2, voice_file=str(SAMPLE), connectors={
        "sms": {"kind": "twilio", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": BUSINESS,
                "api_base_url": twilio.base_url},
        "tg": {"kind": "telegram", "bot_token": TG_TOKEN, "secret_token": TG_SECRET,
               "api_base_url": telegram.base_url},
        "chat": {"kind": "webchat", "identity_secret": WEBCHAT_SECRET, "allowed_origins": [SHOP]},
        "slack": {"kind": "slack", "signing_secret": SLACK_SECRET, "bot_token": DEFAULT_BOT_TOKEN,
                  "api_base_url": slack.base_url},
    })
    async with gw:
        yield gw


def test_the_browser_s_preference_and_the_phone_s_country() -> None:
    assert preferred_language("en-GB,en;q=0.9,es;q=0.8") == "en-GB"
    assert preferred_language("es;q=0.5, en;q=0.9, *;q=0.1") == "en"
    assert preferred_language("fr;q=0, de") == "de"
    assert preferred_language("") is None and preferred_language(None) is None and preferred_language("*") is None
    assert (phone_locale("+34600111222"), phone_locale("+5215512345678"), phone_locale("+14155550100")) == (
        "es", "es", "en")
    assert phone_locale("+81312345678") is None and phone_locale("not a number") is None


async def test_telegram_s_language_code_until_the_customer_sets_their_own(
    gateway: GatewayUnderTest, telegram: FakeTelegram
) -> None:
    agent = await gateway.token("agent", name="Marta")
    user = 10**9 + uuid.uuid4().int % 10**9
    status, _ = await telegram.post_update(gateway.url("/webhooks/tg/updates"),
                                           telegram.update(user, "hello", first_name="Ann", language_code="en-US"),
                                           TG_SECRET)
    assert status == 200
    cid = await wait_customer(gateway, agent, f"telegram:{user}")
    assert (await reply(gateway, agent, cid, {"intent": "survey"}))["text"] == f"Hi Ann!\n\n{SURVEY['en']}"
    status, _ = await gateway.api("PATCH", f"/v1/customers/{cid}", agent, json={"locale": "es"})
    assert status == 200
    assert (await reply(gateway, agent, cid, {"intent": "survey"}))["text"] == SURVEY["es"]
    sent = await telegram.wait_for_messages(2)
    assert [m["text"] for m in sent] == [f"Hi Ann!\n\n{SURVEY['en']}", SURVEY["es"]]


async def test_the_web_chat_s_browser_language(gateway: GatewayUnderTest) -> None:
    agent = await gateway.token("agent", name="Marta")
    status, session = await new_session(gateway)
    assert status in (200, 201), session
    async with aiohttp.ClientSession() as http, http.ws_connect(
            gateway.url("/webchat/chat/ws"), params={"visitor_token": session["visitor_token"]},
            headers={"Origin": SHOP, "Accept-Language": "en-GB,en;q=0.9,es;q=0.5"}) as ws:
        await ws.send_json({"type": "message", "text": "hello there", "client_id": "c1"})
        cid = session["customer_id"]

        async def received() -> bool:
            status, page = await gateway.api("GET", f"/v1/conversations/{cid}/messages", agent)
            return status == 200 and bool(page["items"])  # type: ignore[index]

        await eventually(received, what="the visitor's message in the thread")
        answer = await reply(gateway, agent, cid, {"intent": "survey"})
    assert answer["text"] == f"Hi customer!\n\n{SURVEY['en']}"  # no name given: the anonymous form


async def test_slack_s_locale_from_the_user_s_profile(gateway: GatewayUnderTest, slack: FakeSlack) -> None:
    agent = await gateway.token("agent", name="Marta")
    user = "U" + uuid.uuid4().hex[:10].upper()
    slack.add_user(user, name="Ann Lee", locale="en-GB")
    event = {"type": "message", "channel": "D0DMCHAN01", "user": user, "text": "hola", "ts": "1.000001",
             "team": DEFAULT_TEAM, "channel_type": "im"}
    assert (await post_event(gateway, event_payload(event), secret=SLACK_SECRET))[0] == 200
    cid = await wait_customer(gateway, agent, f"slack:{DEFAULT_TEAM}:{user}")
    await wait_messages(gateway, agent, cid, 1)
    assert (await reply(gateway, agent, cid, {"intent": "survey"}))["text"] == f"Hi Ann!\n\n{SURVEY['en']}"


@pytest.mark.parametrize(("number", "locale"), [("+346", "es"), ("+1415555", "en"), ("+8131234", "es")])
async def test_an_sms_customer_s_country_then_the_brand_default(gateway: GatewayUnderTest, twilio: FakeTwilio,
                                                                number: str, locale: str) -> None:
    agent = await gateway.token("agent", name="Marta")
    number += str(uuid.uuid4().int)[: 12 - len(number)]
    assert (await text_in(gateway, twilio, number, "hi"))[0] == 200
    cid = await wait_customer(gateway, agent, f"phone:{number}")
    answer = await reply(gateway, agent, cid, {"intent": "survey"})
    assert answer["text"] == f"{SURVEY[locale]} - Tienda Sol"
