"""A reload under `omnigateway serve` with several processes: SIGHUP to the supervisor (or the
API's reload on any one process) gives every process the new voice, and a bad file keeps the
running one everywhere, with no process lost."""

from __future__ import annotations

import json
import shutil
import signal
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from served import Served
from test_supervisor import ACCOUNT_SID, AUTH_TOKEN, config_for

from connectors.testing.fake_twilio import FakeTwilio
from gateway.testing import eventually, free_port

SAMPLE = Path(__file__).parent.parent / "config" / "voice.toml"
PREVIEW = {"channels": ["sms"], "intent": "survey"}
ORIGINAL = "¿Qué tal te hemos atendido? Tu opinión nos ayuda a mejorar. - Tienda Sol"


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


def call(served: Served, token: str, method: str, path: str, body: object = None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(served.base + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                                              "Connection": "close"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def texts(served: Served, token: str, tries: int = 12) -> set[str]:
    """The survey's SMS text as each of `tries` fresh connections sees it (the kernel spreads
    connections over the web processes)."""
    out = set()
    for _ in range(tries):
        status, page = call(served, token, "POST", "/v1/voice/preview", PREVIEW)
        assert status == 200, page
        out.add(str(page["items"][0]["text"]))  # type: ignore[index]
    return out


async def test_sighup_and_the_api_reload_every_process_and_a_bad_file_keeps_the_voice(
    tmp_path: Path, redis_url: str, key_prefix: str, twilio: FakeTwilio
) -> None:
    port = free_port()
    served = Served(tmp_path, config_for(redis_url, key_prefix, port, twilio, tmp_path), port, "--processes", "2")
    voice = tmp_path / "voice.toml"  # beside gateway.toml: found without being named
    shutil.copy(SAMPLE, voice)
    served.start()
    try:
        children = await eventually(lambda: (c := served.children()) and len(c) == 4 and c, what="four children")
        token = served.token()
        assert texts(served, token) == {ORIGINAL}

        good = voice.read_text() + '\n[intents.survey]\nes = "¿Nos das tu opinión?"\n'
        voice.write_text(good)
        assert served.proc is not None
        served.proc.send_signal(signal.SIGHUP)
        await eventually(lambda: texts(served, token) == {"¿Nos das tu opinión? - Tienda Sol"},
                         within=15, what="every process on the new voice")

        voice.write_text(good + '\n[intents.broken]\nes = "{{ customer.nmae }}"\n')
        served.proc.send_signal(signal.SIGHUP)
        status, refused = call(served, token, "POST", "/v1/voice/reload")
        assert status == 422 and "customer.nmae" in str(refused["error"])
        assert texts(served, token) == {"¿Nos das tu opinión? - Tienda Sol"}

        # The API's reload, on whichever process takes it, reaches them all.
        voice.write_text(good.replace("¿Nos das tu opinión?", "¿Qué tal lo hicimos?"))
        status, answer = call(served, token, "POST", "/v1/voice/reload")
        assert status == 200 and answer["reloaded"] is True
        await eventually(lambda: texts(served, token) == {"¿Qué tal lo hicimos? - Tienda Sol"},
                         within=15, what="every process on the voice the API reloaded")
        # SIGHUP ended no process: the same four children serve.
        assert sorted(served.children()) == sorted(children)
        assert served.terminate(timeout=30) == 0
    finally:
        served.kill()
