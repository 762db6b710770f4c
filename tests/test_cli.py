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

from gateway.cli import main
from gateway.embedded import EmbeddedValkey

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
    path = write(tmp_path, '[gateway]\nport = "http"\n' + TWILIO + '\n[connectors.mail]\nkind = "emial"\n')
    assert main(["check-config", "--config", path]) == 2
    err = capsys.readouterr().err
    assert "gateway.port: Expected `int`, got `str`" in err

    path = write(tmp_path, TWILIO + 'from_numbr = "+1"\n\n[connectors.mail]\nkind = "emial"\n')
    assert main(["check-config", "--config", path]) == 2
    err = capsys.readouterr().err
    assert "connectors.sms.from_numbr: unknown key (did you mean 'from_number'?)" in err
    assert "connectors.mail: unknown connector kind 'emial' (installed: email, slack, twilio, webchat)" in err


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
    from gateway.auth import TokenStore

    path = write(tmp_path, f'[gateway]\nredis_url = "{redis_url}"\nkey_prefix = "{key_prefix}"\n')
    result = await asyncio.to_thread(omnigateway, "token", "create", "--name", "bot", "--role", "agent",
                                     "--config", path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    principal = await TokenStore(redis_client, key_prefix).lookup(result.stdout.strip().splitlines()[-1])
    assert principal is not None and (principal.name, principal.role) == ("bot", "agent")


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
        assert "-> 403" in result.stdout
    finally:
        await runner.cleanup()


def test_simulate_without_a_running_gateway_says_so(tmp_path: Path, unused_tcp_port: int) -> None:
    path = write(tmp_path, f'[gateway]\nport = {unused_tcp_port}\n' + TWILIO)
    result = omnigateway("simulate", "--config", path, cwd=tmp_path)
    assert result.returncode == 1
    assert "is `omnigateway serve` running there?" in result.stderr


def test_simulate_needs_a_twilio_instance(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--config", write(tmp_path, "")]) == 2
    assert "no twilio instance configured" in capsys.readouterr().err


def test_python_dash_m_gateway_is_the_same_command(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "gateway", "--version"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("omnigateway ")
