"""The voice through the inbox API: customers' details, the preview with its warnings in the
caller's language, the intents listed, a reply's 202 with the lint, and reloads that keep the
running voice when the file is bad."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from apphelpers import bearer, make_app, seed

from connectors.email.connector import EmailConnector
from connectors.sms.twilio import TwilioConnector
from conversation.model import Identity
from conversation.service import Core
from conversation.store import Store
from conversation.voice import Voice, load_voice
from gateway.appkeys import STORE

Client = TestClient[Any, Any]
SAMPLE = Path(__file__).parent.parent / "config" / "voice.toml"


@pytest.fixture
def voice_file(tmp_path: Path) -> Path:
    path = tmp_path / "voice.toml"
    shutil.copy(SAMPLE, path)
    return path


@pytest.fixture
async def connectors() -> AsyncIterator[dict[str, Any]]:
    built = {
        "sms": TwilioConnector.from_config("sms", {"kind": "twilio", "account_sid": "AC" + "7" * 32,
                                                   "auth_token": "f" * 32, "from_number": "+15550001111",
                                                   "api_base_url": "http://127.0.0.1:9"}, public_url="http://gw"),
        "mail": EmailConnector.from_config("mail", {"kind": "email", "address": "ayuda@tiendasol.example",
                                                    "smtp_host": "127.0.0.1", "smtp_listen": "127.0.0.1:0"},
                                           public_url="http://gw"),
    }
    yield built
    for conn in built.values():
        await conn.aclose()


@pytest.fixture
async def client(aiohttp_client: Any, redis_client: aioredis.Redis, key_prefix: str, connectors: dict[str, Any],
                 voice_file: Path) -> Client:
    def core(store: Store) -> Core:
        return Core(store, channels=connectors, voice=Voice(load_voice(voice_file)), voice_path=str(voice_file))

    app = make_app(redis_client, key_prefix, connectors, core=core, voice_file=str(voice_file))
    return await aiohttp_client(app)  # type: ignore[no-any-return]


@pytest.fixture
def store(client: Client) -> Store:
    assert client.app is not None
    return client.app[STORE]  # type: ignore[no-any-return]


@pytest.fixture
async def agent(redis_client: aioredis.Redis, key_prefix: str) -> dict[str, str]:
    return await bearer(redis_client, key_prefix, "agent", "Marta")


@pytest.fixture
async def supervisor(redis_client: aioredis.Redis, key_prefix: str) -> dict[str, str]:
    return await bearer(redis_client, key_prefix, "supervisor", "Sue")


@pytest.fixture
async def admin(redis_client: aioredis.Redis, key_prefix: str) -> dict[str, str]:
    return await bearer(redis_client, key_prefix, "admin", "root")


async def call(client: Client, method: str, path: str, headers: dict[str, str], json: Any = None,
               expect: int = 200, **extra: str) -> Any:
    resp = await client.request(method, path, json=json, headers={**headers, **extra})
    body = await resp.json()
    assert resp.status == expect, body
    return body


def append(path: Path, text: str) -> str:
    """Add to the file; its new text."""
    rewrite(path, path.read_text() + text)
    return path.read_text()


def rewrite(path: Path, text: str) -> None:
    path.write_text(text)


# --- customers' details ------------------------------------------------------------------------


async def test_agents_set_name_and_locale_and_a_supervisor_the_tier(
    client: Client, store: Store, agent: dict[str, str], supervisor: dict[str, str]
) -> None:
    cid = await seed(store, "+34600111001", "hola")
    customer = await call(client, "PATCH", f"/v1/customers/{cid}", agent, {"name": "Lucía Gómez", "locale": "en-GB"})
    assert (customer["name"], customer["locale"], customer["tier"]) == ("Lucía Gómez", "en-gb", "standard")
    refused = await call(client, "PATCH", f"/v1/customers/{cid}", agent, {"tier": "vip"}, expect=403)
    assert refused["error"]["code"] == "forbidden"
    customer = await call(client, "PATCH", f"/v1/customers/{cid}", supervisor, {"tier": "key_account"})
    assert customer["tier"] == "key_account"
    # The listing's card and the conversation show the same customer.
    conv = await call(client, "GET", f"/v1/conversations/{cid}", agent)
    assert conv["customer"]["name"] == "Lucía Gómez" and conv["customer"]["tier"] == "key_account"
    listing = await call(client, "GET", "/v1/conversations", agent)
    [card] = [c for c in listing["items"] if c["id"] == cid]
    assert card["customer"]["name"] == "Lucía Gómez" and card["customer"]["locale"] == "en-gb"
    # Every change is on the activity log, with who made it and what it was before.
    activity = await call(client, "GET", f"/v1/conversations/{cid}/activity", agent)
    updates = [a for a in activity["items"] if a["type"] == "customer_updated"]
    assert [(a["actor"]["name"], a["details"]) for a in updates] == [
        ("Marta", {"name": {"from": "", "to": "Lucía Gómez"}, "locale": {"from": "", "to": "en-gb"}}),
        ("Sue", {"tier": {"from": "", "to": "key_account"}}),
    ]
    # The same values again change nothing and log nothing.
    await call(client, "PATCH", f"/v1/customers/{cid}", agent, {"name": "Lucía Gómez"})
    activity = await call(client, "GET", f"/v1/conversations/{cid}/activity", agent)
    assert len([a for a in activity["items"] if a["type"] == "customer_updated"]) == 2
    # null clears the locale: the channel's hint and the brand's default apply again.
    assert (await call(client, "PATCH", f"/v1/customers/{cid}", agent, {"locale": None}))["locale"] is None


async def test_bad_customer_patches_are_refused(client: Client, store: Store, agent: dict[str, str],
                                                supervisor: dict[str, str]) -> None:
    cid = await seed(store, "+34600111002", "hola")
    for body, code in (({}, "invalid_body"), ({"nmae": "x"}, "invalid_body"), ({"locale": "not a locale"},
                       "invalid_body"), ({"tier": "gold"}, "invalid_body")):
        answer = await call(client, "PATCH", f"/v1/customers/{cid}", supervisor, body, expect=400)
        assert answer["error"]["code"] == code, body
    assert (await call(client, "PATCH", "/v1/customers/nobody", agent, {"name": "x"}, expect=404)
            )["error"]["code"] == "not_found"


# --- preview and lint ----------------------------------------------------------------------------


async def test_a_preview_renders_each_channel_with_segments_html_and_warnings_in_the_callers_language(
    client: Client, store: Store, agent: dict[str, str]
) -> None:
    cid = await seed(store, Identity("email", "lucia@example.net"), "hola", name="Lucía Gómez", instance="mail",
                     channel="email")
    text = "NO PODEMOS cambiarlo hoy!!! Tu pedido sale “mañana”."
    page = await call(client, "POST", "/v1/voice/preview", agent,
                      {"conversation_id": cid, "channels": ["email", "sms"], "text": text},
                      **{"Accept-Language": "en-US,en;q=0.9,es;q=0.5"})
    email, sms = page["items"]
    assert (email["channel"], email["instance"], email["locale"]) == ("email", "mail", "es")
    assert email["text"] == ("Estimado/a Lucía Gómez:\n\nNO PODEMOS cambiarlo hoy!!! Tu pedido sale “mañana”.\n\n"
                             "Atentamente,\nMarta\nTienda Sol")
    assert email["html"].startswith("<p>Estimado/a Lucía Gómez:</p>") and "segments" not in email
    assert sms["text"] == 'NO PODEMOS cambiarlo hoy!!! Tu pedido sale "mañana". - Tienda Sol'
    assert sms["segments"] == 1 and "html" not in sms
    codes = [w["code"] for w in email["warnings"]]
    assert codes == ["banned_phrase", "shouting", "exclamations"]
    banned = email["warnings"][0]
    assert banned["message"] == "“no podemos” does not fit the brand's tone."
    assert banned["suggestion"] == "lo que sí podemos hacer es"
    # The same preview for a Spanish-speaking agent.
    page = await call(client, "POST", "/v1/voice/preview", agent,
                      {"conversation_id": cid, "channels": ["email"], "text": text}, **{"Accept-Language": "es"})
    assert page["items"][0]["warnings"][0]["message"] == "«no podemos» no va con el tono de la marca."


async def test_a_preview_without_a_conversation_uses_the_brand_default_or_the_locale_asked(
    client: Client, agent: dict[str, str]
) -> None:
    page = await call(client, "POST", "/v1/voice/preview", agent, {"channels": ["sms"], "intent": "resolved"})
    assert page["items"][0]["text"] == "Consulta  resuelta. ¿Necesitas algo? Responde a este SMS. - Tienda Sol"
    page = await call(client, "POST", "/v1/voice/preview", agent,
                      {"intent": "order_shipped", "locale": "en",
                       "variables": {"order": "A-17", "tracking_url": "https://t.example/1"}})
    by_channel = {item["channel"]: item for item in page["items"]}
    assert set(by_channel) == {"email", "sms", "whatsapp"}  # every configured medium
    assert by_channel["sms"]["text"] == "Your order A-17 is on its way. Track it here: https://t.example/1 - Tienda Sol"
    assert by_channel["whatsapp"]["text"] == ("Hi customer!\n\nYour order *A-17* is on its way. Track it here: "
                                              "https://t.example/1")
    assert [w["code"] for w in by_channel["whatsapp"]["warnings"]] == ["missing_personalization"]


async def test_preview_refusals(client: Client, agent: dict[str, str]) -> None:
    unknown = await call(client, "POST", "/v1/voice/preview", agent, {"channels": ["fax"], "text": "hola"},
                         expect=422)
    assert unknown["error"]["code"] == "unknown_channel" and "sms" in unknown["error"]["channels"]
    missing = await call(client, "POST", "/v1/voice/preview", agent, {"channels": ["sms"], "intent": "order_shipped"},
                         expect=422)
    assert missing["error"]["code"] == "missing_variable"
    both = await call(client, "POST", "/v1/voice/preview", agent, {"text": "a", "intent": "resolved"}, expect=400)
    assert both["error"]["code"] == "invalid_body"
    assert (await call(client, "POST", "/v1/voice/preview", agent, {"intent": "nope"}, expect=422)
            )["error"]["code"] == "unknown_intent"


async def test_a_reply_s_202_carries_the_lint_in_the_callers_language(client: Client, store: Store,
                                                                       agent: dict[str, str]) -> None:
    cid = await seed(store, "+34600111003", "hola")
    resp = await client.post(f"/v1/conversations/{cid}/messages", json={"text": "You must send it TODAY"},
                             headers={**agent, "Accept-Language": "es"})
    body = await resp.json()
    assert resp.status == 202, body
    assert body["text"] == "You must send it TODAY - Tienda Sol"  # a Spanish number, but the lint is per locale
    assert [w["code"] for w in body["warnings"]] == ["shouting"]
    assert body["warnings"][0]["message"] == "Palabras en mayúsculas se leen como gritos: TODAY."
    await call(client, "PATCH", f"/v1/customers/{cid}", agent, {"locale": "en"})
    body = await call(client, "POST", f"/v1/conversations/{cid}/messages", agent, {"text": "You must send it"},
                      expect=202, **{"Accept-Language": "en"})
    assert [(w["code"], w.get("suggestion")) for w in body["warnings"]] == [("banned_phrase", "please")]
    # Messages read back carry no warnings: they were for the agent, at the time.
    messages = await call(client, "GET", f"/v1/conversations/{cid}/messages", agent)
    assert all("warnings" not in m for m in messages["items"])
    assert messages["items"][-1]["composed"] == "You must send it"


# --- templates and reloads -------------------------------------------------------------------------


async def test_the_intents_are_listed_with_their_locales_channels_and_templates(client: Client,
                                                                              agent: dict[str, str]) -> None:
    listing = await call(client, "GET", "/v1/voice/templates", agent)
    assert listing["default_locale"] == "es" and listing["locales"] == ["es", "en"]
    by_name = {i["name"]: i for i in listing["items"]}
    assert {"acknowledge", "out_of_hours", "waiting_on_customer", "escalated", "resolved", "survey",
            "window_closed", "order_shipped"} == set(by_name)
    assert by_name["resolved"] == {"name": "resolved", "locales": ["en", "es"], "channels": ["sms"],
                                   "template": "consulta_resuelta"}


async def test_a_reload_swaps_the_voice_and_a_bad_file_keeps_the_old_one(
    client: Client, agent: dict[str, str], admin: dict[str, str], voice_file: Path
) -> None:
    preview = {"channels": ["sms"], "intent": "survey"}
    before = (await call(client, "POST", "/v1/voice/preview", agent, preview))["items"][0]["text"]
    assert before == "¿Qué tal te hemos atendido? Tu opinión nos ayuda a mejorar. - Tienda Sol"
    assert (await call(client, "POST", "/v1/voice/reload", agent, expect=403))["error"]["code"] == "forbidden"

    good = append(voice_file, '\n[intents.survey]\nes = "¿Nos das tu opinión?"\nen = "Tell us how we did?"\n')
    reloaded = await call(client, "POST", "/v1/voice/reload", admin)
    assert reloaded["reloaded"] is True and reloaded["file"] == str(voice_file)
    after = (await call(client, "POST", "/v1/voice/preview", agent, preview))["items"][0]["text"]
    assert after == "¿Nos das tu opinión? - Tienda Sol"

    append(voice_file, '\n[intents.broken]\nes = "Hola {{ customer.nmae }}"\n')
    refused = await call(client, "POST", "/v1/voice/reload", admin, expect=422)
    assert refused["error"]["code"] == "invalid_voice"
    message = refused["error"]["message"]
    assert str(voice_file) in message and "broken" in message and "customer.nmae" in message
    rewrite(voice_file, good.replace("[brand]", "[brand\n"))
    refused = await call(client, "POST", "/v1/voice/reload", admin, expect=422)
    assert "not valid TOML" in refused["error"]["message"]
    # Neither bad file replaced the running voice.
    assert (await call(client, "POST", "/v1/voice/preview", agent, preview))["items"][0]["text"] == after
