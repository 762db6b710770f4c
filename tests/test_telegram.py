"""Telegram through the whole gateway: the secret token, replayed updates, edits, 64-bit ids,
files through getFile, retry_after, blocked users, and the setWebhook call the CLI prints."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from socialkit import (
    conversation,
    messages,
    reply,
    skipped_count,
    wait_customer,
    wait_messages,
    wait_retry,
    wait_status,
)

from connectors.base import Outbound, TransientSendError
from connectors.social.telegram import TelegramConnector
from connectors.testing.fake_telegram import DEFAULT_BOT_TOKEN, FakeTelegram
from conversation.model import Identity
from gateway.cli import main
from gateway.testing import GatewayUnderTest, eventually

SECRET = "tg-secret_token-0001"


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def gateway(redis_url: str, key_prefix: str, telegram: FakeTelegram) -> AsyncIterator[GatewayUnderTest]:
    gw = GatewayUnderTest(redis_url, prefix=key_prefix, partitions=2, connectors={
        "tg": {"kind": "telegram", "bot_token": DEFAULT_BOT_TOKEN, "secret_token": SECRET,
               "api_base_url": telegram.base_url}})
    async with gw:
        yield gw


def user_id() -> int:
    return 10**9 + uuid.uuid4().int % 10**9


async def send_update(gw: GatewayUnderTest, telegram: FakeTelegram, update: dict[str, Any],
                      secret: str = SECRET) -> int:
    status, _ = await telegram.post_update(gw.url("/webhooks/tg/updates"), update, secret)
    return status


async def test_a_wrong_secret_token_is_403_and_stores_nothing(gateway: GatewayUnderTest,
                                                              telegram: FakeTelegram) -> None:
    token = await gateway.token()
    user = user_id()
    assert await send_update(gateway, telegram, telegram.update(user, "forged"), secret="guessed") == 403
    async with aiohttp.ClientSession() as http, http.post(gateway.url("/webhooks/tg/updates"),
                                                          json=telegram.update(user, "unsigned")) as resp:
        assert resp.status == 403
    assert await send_update(gateway, telegram, telegram.update(user, "real")) == 200
    cid = await wait_customer(gateway, token, f"telegram:{user}")
    assert [m["text"] for m in await messages(gateway, token, cid)] == ["real"]


async def test_a_replayed_update_is_stored_once_and_an_edit_lands_on_its_message(
    gateway: GatewayUnderTest, telegram: FakeTelegram
) -> None:
    token = await gateway.token()
    user = user_id()
    first = telegram.update(user, "Hola, ¿envío a Canarias?", last_name="Gómez", username="lugo", message_id=7)
    for _ in range(3):  # Telegram redelivers an update it did not see acknowledged
        assert await send_update(gateway, telegram, first) == 200
    assert await send_update(gateway, telegram, telegram.update(user, "¿Y a Ceuta?")) == 200
    cid = await wait_customer(gateway, token, f"telegram:{user}")
    found = await wait_messages(gateway, token, cid, 2)
    assert [m["text"] for m in found] == ["Hola, ¿envío a Canarias?", "¿Y a Ceuta?"]
    conv = await conversation(gateway, token, cid)
    assert conv["customer"]["name"] == "Ana Gómez (@lugo)"  # type: ignore[index]

    edit = telegram.update(user, "Hola, ¿envío a Baleares?", message_id=7, edited=True)
    for _ in range(2):
        assert await send_update(gateway, telegram, edit) == 200

    async def edited() -> bool:
        return [m["text"] for m in await messages(gateway, token, cid)] == ["Hola, ¿envío a Baleares?",
                                                                          "¿Y a Ceuta?"]

    await eventually(edited)


async def test_a_chat_id_above_2_53_round_trips_exactly(gateway: GatewayUnderTest, telegram: FakeTelegram) -> None:
    token = await gateway.token()
    big = 2**53 + 1  # a float would make it 2**53
    assert await send_update(gateway, telegram, telegram.update(big, "hola")) == 200
    cid = await wait_customer(gateway, token, f"telegram:{big}")
    [message] = await wait_messages(gateway, token, cid, 1)
    assert message["text"] == "hola"
    status, customer = await gateway.api("GET", f"/v1/customers/{cid}", token)
    assert status == 200
    assert {"kind": "telegram", "address": str(big)} in [
        {"kind": i["kind"], "address": i["address"]} for i in customer["identities"]]  # type: ignore[index]
    sent = await reply(gateway, token, cid, {"text": "¡Hola!"})
    [body] = await telegram.wait_for_messages(1)
    assert body["chat_id"] == big and type(body["chat_id"]) is int
    assert (await wait_status(gateway, token, cid, sent["id"], "sent"))["provider_message_id"].startswith(f"{big}:")


async def test_group_chats_are_skipped_and_counted(gateway: GatewayUnderTest, telegram: FakeTelegram) -> None:
    token = await gateway.token()
    user = user_id()
    before = await skipped_count(gateway, "tg", "group_chat")
    group = telegram.update(user, "hola a todos", chat_type="supergroup", chat_id=-1001234567890)
    assert await send_update(gateway, telegram, group) == 200
    assert await skipped_count(gateway, "tg", "group_chat") == before + 1
    assert await send_update(gateway, telegram, telegram.update(user, "en privado")) == 200
    cid = await wait_customer(gateway, token, f"telegram:{user}")
    assert [m["text"] for m in await wait_messages(gateway, token, cid, 1)] == ["en privado"]


async def test_files_are_fetched_through_getfile(gateway: GatewayUnderTest, telegram: FakeTelegram) -> None:
    token = await gateway.token()
    user = user_id()
    telegram.add_file("BQACAgIAAxkBAAIB", b"%PDF-1.7 invoice", "application/pdf", path="documents/file_3.pdf")
    update = telegram.update(user, None, caption="la factura", document={
        "file_name": "factura.pdf", "mime_type": "application/pdf", "file_id": "BQACAgIAAxkBAAIB",
        "file_unique_id": "AgADBQAC", "file_size": 16})
    assert await send_update(gateway, telegram, update) == 200
    cid = await wait_customer(gateway, token, f"telegram:{user}")
    [message] = await wait_messages(gateway, token, cid, 1)
    assert message["text"] == "la factura"
    assert message["attachments"] == [{"url": "telegram-file:BQACAgIAAxkBAAIB", "content_type": "application/pdf",
                                       "name": "factura.pdf", "size": 16}]
    async with aiohttp.ClientSession() as http, http.get(
            gateway.url(f"/v1/messages/{message['id']}/attachments/0"),
            headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200 and await resp.read() == b"%PDF-1.7 invoice"


async def test_429_retry_after_is_honoured(gateway: GatewayUnderTest, telegram: FakeTelegram) -> None:
    token = await gateway.token()
    user = user_id()
    assert await send_update(gateway, telegram, telegram.update(user, "hola")) == 200
    cid = await wait_customer(gateway, token, f"telegram:{user}")
    telegram.fail_next(429, retry_after=90)
    before = time.time()
    sent = await reply(gateway, token, cid, {"text": "hola"})

    queued, due = await wait_retry(gateway, token, cid, sent["id"])
    assert queued["status"] == "queued" and "Too Many Requests" in queued["last_error"]
    assert due >= before + 89


async def test_the_connector_reads_retry_after_from_parameters(telegram: FakeTelegram) -> None:
    connector = TelegramConnector.from_config("tg", {"kind": "telegram", "bot_token": DEFAULT_BOT_TOKEN,
                                                     "secret_token": SECRET, "api_base_url": telegram.base_url},
                                              public_url="https://gw.test")
    telegram.fail_next(429, retry_after=17)
    try:
        with pytest.raises(TransientSendError) as raised:
            await connector.send(Outbound(message_id="m.1", channel="telegram", to=Identity("telegram", "42"),
                                          text="hola"))
        assert raised.value.retry_after == 17
        assert DEFAULT_BOT_TOKEN not in raised.value.reason
    finally:
        await connector.aclose()


async def test_a_user_who_blocked_the_bot_fails_the_reply_with_telegram_s_words(
    gateway: GatewayUnderTest, telegram: FakeTelegram
) -> None:
    token = await gateway.token()
    user = user_id()
    assert await send_update(gateway, telegram, telegram.update(user, "hola")) == 200
    cid = await wait_customer(gateway, token, f"telegram:{user}")
    telegram.block(user)
    sent = await reply(gateway, token, cid, {"text": "hola"})
    failed = await wait_status(gateway, token, cid, sent["id"], "failed")
    assert failed["error"] == "403: Forbidden: bot was blocked by the user"
    assert telegram.attempts == 1  # permanent: not retried


def test_the_connectors_command_prints_set_webhook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\npublic_url = "https://gw.example.com"\n\n[connectors.tg]\nkind = "telegram"\n'
                      f'bot_token = "{DEFAULT_BOT_TOKEN}"\nsecret_token = "{SECRET}"\n')
    assert main(["connectors", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "https://api.telegram.org/bot<bot_token>/setWebhook" in out
    assert "url='https://gw.example.com/webhooks/tg/updates'" in out
    assert "secret_token='<secret_token>'" in out
    assert DEFAULT_BOT_TOKEN not in out and SECRET not in out
    assert main(["connectors", "--config", str(config), "--reveal"]) == 0
    out = capsys.readouterr().out
    assert f"/bot{DEFAULT_BOT_TOKEN}/setWebhook" in out and f"secret_token='{SECRET}'" in out
