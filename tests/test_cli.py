"""The `omnigateway` command as an operator uses it: exit codes, what it prints, where."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from aiohttp import web
from twilio.request_validator import RequestValidator

from conversation.errors import NotFound
from conversation.keys import Keys
from conversation.store.tokens import Tokens
from gateway.cli import main
from gateway.embedded import EmbeddedValkey
from gateway.testing import GatewayUnderTest, eventually

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
TWILIO = f"""
[connectors.sms]
kind = "twilio"
account_sid = "AC0123456789abcdef0123456789abcdef"
auth_token = "{AUTH_TOKEN}"
from_number = "+15550001111"
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return str(path)


def omnigateway(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("omnigateway", path=os.path.dirname(sys.executable)) or "omnigateway"
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_check_config_accepts_a_good_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[gateway]\npublic_url = "https://gw.example.com"\n' + TWILIO)
    assert main(["check-config", "--config", path]) == 0
    out = capsys.readouterr().out
    assert f"{path}: OK" in out
    assert "https://gw.example.com" in out
    assert "sms (twilio)" in out
    assert AUTH_TOKEN not in out


def test_check_config_lists_each_bad_key_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[gateway]\nport = "http"\n' + TWILIO + 'from_numbr = "+1"\n\n[connectors.mail]\n'
                 'kind = "emial"\n\n[routing]\ndefault_priority = 12\n')
    assert main(["check-config", "--config", path]) == 2
    err = capsys.readouterr().err
    # One pass names every bad key of every section: a bad [gateway] does not hide the connectors'.
    assert "gateway.port: Expected `int`, got `str`" in err
    assert "routing.default_priority: Expected `int` <= 9" in err
    assert "connectors.sms.from_numbr: unknown key (did you mean 'from_number'?)" in err
    assert "connectors.mail: unknown connector kind 'emial'" in err

    path = write(tmp_path, TWILIO + 'from_numbr = "+1"\n\n[connectors.mail]\nkind = "emial"\n')
    assert main(["check-config", "--config", path]) == 2
    err = capsys.readouterr().err
    assert "connectors.sms.from_numbr: unknown key (did you mean 'from_number'?)" in err
    assert ("connectors.mail: unknown connector kind 'emial' (installed: email, instagram, messenger, slack, "
            "telegram, twilio, webchat, whatsapp)") in err


def test_check_config_names_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: no such file" in capsys.readouterr().err


def test_connectors_lists_installed_kinds_and_configured_instances(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[gateway]\npublic_url = "https://gw.example.com"\n' + TWILIO)
    assert main(["connectors", "--config", path]) == 0
    out = capsys.readouterr().out
    installed, configured = out.split("Configured instances")
    assert "twilio" in installed and "omnichannel-gateway" in installed
    assert "sms" in configured and "kind twilio" in configured
    assert "https://gw.example.com/webhooks/sms/messages" in configured


def test_serve_refuses_a_bad_config_before_starting_anything(tmp_path: Path) -> None:
    path = write(tmp_path, '[gateway]\nport = 0\ndata_dir = "var"\n')
    result = omnigateway("serve", "--config", path, cwd=tmp_path)
    assert result.returncode == 2
    assert "gateway.port: Expected `int` >= 1" in result.stderr
    assert not (tmp_path / "var").exists()


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    result = omnigateway("token", "create", "--name", "x", "--role", "overlord", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid choice: 'overlord'" in result.stderr


def test_token_create_with_the_embedded_valkey_prints_the_token_last(tmp_path: Path) -> None:
    """No Redis configured: the command starts the embedded Valkey, stores the token, stops it."""
    path = write(tmp_path, '[gateway]\ndata_dir = "var"\nkey_prefix = "cli"\n')
    result = omnigateway("token", "create", "--name", "ana", "--role", "supervisor", "--config", path,
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-2] == "token for ana (supervisor):"
    token = lines[-1]
    assert token.startswith("ogt_") and token not in result.stderr

    # The token outlived that Valkey: it is in the data directory's append-only file.
    with EmbeddedValkey(tmp_path / "var") as server, redis.Redis.from_url(server.url) as client:
        records = [client.hgetall(k) for k in client.scan_iter("cli:token:*")]
    assert [(r[b"name"], r[b"role"]) for r in records] == [(b"ana", b"supervisor")]


async def test_token_create_against_a_configured_redis(
    tmp_path: Path, redis_url: str, key_prefix: str, redis_client: redis.asyncio.Redis
) -> None:
    path = write(tmp_path, f'[gateway]\nredis_url = "{redis_url}"\nkey_prefix = "{key_prefix}"\n')
    result = await asyncio.to_thread(omnigateway, "token", "create", "--name", "bot", "--role", "agent",
                                     "--config", path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    record = await Tokens(redis_client, Keys(key_prefix)).lookup(result.stdout.strip().splitlines()[-1])
    assert record is not None and (record.name, record.role) == ("bot", "agent")


async def test_tokens_are_listed_and_revoked_by_name(tmp_path: Path, redis_url: str, key_prefix: str,
                                                     redis_client: redis.asyncio.Redis) -> None:
    path = write(tmp_path, f'[gateway]\nredis_url = "{redis_url}"\nkey_prefix = "{key_prefix}"\n')

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return omnigateway(*args, "--config", path, cwd=tmp_path)

    ana = (await asyncio.to_thread(cli, "token", "create", "--name", "ana", "--role", "supervisor")).stdout
    ana_token = ana.strip().splitlines()[-1]
    assert (await asyncio.to_thread(cli, "token", "create", "--name", "bot", "--role", "agent")).returncode == 0
    # A second token of one name is refused, not issued silently beside the first.
    again = await asyncio.to_thread(cli, "token", "create", "--name", "ana", "--role", "admin")
    assert again.returncode == 2 and "already has a token" in again.stderr and "ogt_" not in again.stdout
    # The reserved name is refused before Redis is even asked.
    me = await asyncio.to_thread(cli, "token", "create", "--name", "me", "--role", "admin")
    assert me.returncode == 2 and "reserved" in me.stderr

    listed = await asyncio.to_thread(cli, "token", "list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.strip().splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows] == [("ana", "supervisor"), ("bot", "agent")]
    assert "ogt_" not in listed.stdout and ana_token not in listed.stdout  # names, never secrets
    assert all(r[2].startswith("20") for r in rows)  # the creation time

    revoked = await asyncio.to_thread(cli, "token", "revoke", "ana")
    assert revoked.returncode == 0 and "revoked 1 token" in revoked.stdout
    assert await Tokens(redis_client, Keys(key_prefix)).lookup(ana_token) is None
    assert (await asyncio.to_thread(cli, "token", "revoke", "ana")).returncode == 1
    assert [line.split()[0] for line in (await asyncio.to_thread(cli, "token", "list")).stdout.splitlines()[1:]] == [
        "bot"]


def test_token_create_reports_an_unreachable_redis(tmp_path: Path) -> None:
    path = write(tmp_path, '[gateway]\nredis_url = "redis://127.0.0.1:1/0"\n')
    result = omnigateway("token", "create", "--name", "x", "--role", "admin", "--config", path, cwd=tmp_path)
    assert result.returncode == 1
    assert "redis://127.0.0.1:1/0" in result.stderr
    assert "Traceback" not in result.stderr


async def test_simulate_sends_a_correctly_signed_twilio_webhook(tmp_path: Path, unused_tcp_port: int) -> None:
    public_url = f"http://127.0.0.1:{unused_tcp_port}"
    received: list[dict[str, str]] = []

    async def webhook(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        # The gateway validates against its public URL, exactly as here.
        url = public_url + request.path
        if not RequestValidator(AUTH_TOKEN).validate(url, form, request.headers.get("X-Twilio-Signature", "")):
            return web.Response(status=403)
        received.append(form)
        return web.Response(text="<Response/>", content_type="text/xml")

    app = web.Application()
    app.router.add_post("/webhooks/sms/messages", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        good = write(tmp_path, f'[gateway]\npublic_url = "{public_url}"\n' + TWILIO)
        result = await asyncio.to_thread(omnigateway, "simulate", "--config", good, "--from", "+34600999888",
                                         "--text", "Hola", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "-> 200" in result.stdout
        assert received and received[0]["From"] == "+34600999888" and received[0]["Body"] == "Hola"
        assert received[0]["MessageSid"].startswith("SM")

        forged = write(tmp_path, f'[gateway]\npublic_url = "{public_url}"\n' + TWILIO.replace(AUTH_TOKEN, "f" * 32))
        result = await asyncio.to_thread(omnigateway, "simulate", "--config", forged, cwd=tmp_path)
        assert result.returncode == 1
        assert "-> 403" in result.stderr and "refused the signature" in result.stderr
    finally:
        await runner.cleanup()


def test_simulate_without_a_running_gateway_says_so(tmp_path: Path, unused_tcp_port: int) -> None:
    path = write(tmp_path, f'[gateway]\nport = {unused_tcp_port}\n' + TWILIO)
    result = omnigateway("simulate", "--config", path, cwd=tmp_path)
    assert result.returncode == 1
    assert "is `omnigateway serve` running there?" in result.stderr


def test_simulate_with_nothing_to_simulate_says_what_to_add(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--config", write(tmp_path, "")]) == 2
    err = capsys.readouterr().err
    assert "invalid configuration" not in err  # the file is fine; it has nothing to simulate
    assert "[connectors.sms]" in err and 'kind = "twilio"' in err and 'kind = "webchat"' in err


async def test_simulate_the_default_config_chats_through_the_web_chat(
        tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    # What `make run` has: the web chat instance only. simulate does what the widget does.
    async with GatewayUnderTest(redis_url, prefix=key_prefix, connectors={"webchat": {"kind": "webchat"}}) as gw:
        path = write(tmp_path, f'[gateway]\npublic_url = "{gw.base_url}"\n\n[connectors.webchat]\nkind = "webchat"\n')
        result = await asyncio.to_thread(omnigateway, "simulate", "--config", path, "--text", "Hola", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "-> 202" in result.stdout and "invalid" not in result.stderr
        cid = result.stdout.split("customer ")[1].split(")")[0]

        async def landed() -> list[str]:
            try:
                messages, _ = await gw.store.timeline.list_messages(cid)
            except NotFound:
                return []
            return [m.text for m in messages]

        assert await eventually(landed, what="the simulated message in the thread") == ["Hola"]


async def test_simulate_against_a_gateway_without_the_instance_says_what_to_add(
        tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    async with GatewayUnderTest(redis_url, prefix=key_prefix, connectors={"webchat": {"kind": "webchat"}}) as gw:
        path = write(tmp_path, f'[gateway]\npublic_url = "{gw.base_url}"\n' + TWILIO)
        result = await asyncio.to_thread(omnigateway, "simulate", "--config", path, cwd=tmp_path)
        assert result.returncode == 1
        assert "does not serve instance 'sms'" in result.stderr and "[connectors.sms]" in result.stderr


def test_python_dash_m_gateway_is_the_same_command(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "gateway", "--version"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("omnigateway ")
