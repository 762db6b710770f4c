"""`omnigateway serve` on every core, and after a crash: the supervisor's children, their restarts
and their end, and how soon messages flow again after a gateway is SIGKILLed."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from served import Served

from connectors.testing.fake_twilio import FakeTwilio
from conversation.model import Identity
from conversation.store import Store, open_store
from gateway.testing import eventually, free_port

ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "a" * 32
BUSINESS = "+15550003333"


def config_for(redis_url: str, prefix: str, port: int, twilio: FakeTwilio, tmp_path: Path) -> str:
    return f"""
[gateway]
host = "127.0.0.1"
port = {port}
redis_url = "{redis_url}"
key_prefix = "{prefix}"
data_dir = "{tmp_path / 'var'}"
shutdown_grace = 3.0
log_level = "warning"

[connectors.sms]
kind = "twilio"
account_sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"
from_number = "{BUSINESS}"
api_base_url = "{twilio.base_url}"
"""


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
async def store(redis_url: str, key_prefix: str) -> AsyncIterator[Store]:
    s = open_store(redis_url, prefix=key_prefix)
    yield s
    await s.close()


async def in_thread(store: Store, number: str, text: str) -> bool:
    customer = await store.find_customer(Identity("phone", number))
    if customer is None:
        return False
    messages, _ = await store.timeline.list_messages(customer.id, limit=100)
    return any(m.text == text for m in messages)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    return False


def port_free(port: int) -> bool:
    """Nobody listens there any more (closed connections may linger in TIME_WAIT; that is fine)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


async def test_messages_flow_again_within_8_s_of_a_sigkill(
        tmp_path: Path, redis_url: str, key_prefix: str, twilio: FakeTwilio, store: Store) -> None:
    port = free_port()
    served = Served(tmp_path, config_for(redis_url, key_prefix, port, twilio, tmp_path), port, "--processes", "1")
    url = f"http://127.0.0.1:{port}/webhooks/sms/messages"
    number = "+346" + str(uuid.uuid4().int)[:8]
    served.start()
    try:
        assert (await twilio.post_inbound(url, number, "before", to=BUSINESS))[0] == 200
        await eventually(lambda: in_thread(store, number, "before"), within=15, what="the first message")
        # The worker holds every partition now. Kill it where it stands: no lease is handed back.
        assert served.proc is not None
        served.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        served.proc.wait(10)
        served.start(wait=False)

        async def acked() -> bool:
            with contextlib.suppress(OSError, aiohttp.ClientError):
                return (await twilio.post_inbound(url, number, "after", to=BUSINESS))[0] == 200
            return False

        await eventually(acked, within=30, interval=0.05, what="the restarted gateway acking")
        await eventually(lambda: in_thread(store, number, "after"), within=30, interval=0.05,
                         what="the message after the restart in its thread")
        took = time.monotonic() - killed
    finally:
        served.kill()
    print(f"messages flowed again {took:.2f} s after the SIGKILL")
    assert took < 8.0, f"messages flowed again {took:.1f} s after the SIGKILL"


async def test_serve_runs_web_processes_and_workers_and_restarts_a_crashed_child(
        tmp_path: Path, redis_url: str, key_prefix: str, twilio: FakeTwilio, store: Store) -> None:
    port = free_port()
    served = Served(tmp_path, config_for(redis_url, key_prefix, port, twilio, tmp_path), port, "--processes", "2")
    url = f"http://127.0.0.1:{port}/webhooks/sms/messages"
    served.start()
    try:
        children = await eventually(lambda: (c := served.children()) and len(c) == 4 and c, what="four children")
        # Two web processes share the port: both answer.
        number = "+346" + str(uuid.uuid4().int)[:8]
        for i in range(6):
            assert (await twilio.post_inbound(url, number, f"m{i}", to=BUSINESS))[0] == 200
        await eventually(lambda: in_thread(store, number, "m5"), within=15, what="the messages applied")
        # A child that dies is replaced, and the gateway keeps answering meanwhile.
        os.kill(children[0], signal.SIGKILL)
        replaced = await eventually(lambda: (c := served.children()) and len(c) == 4 and children[0] not in c and c,
                                    within=15, what="the killed child replaced")
        assert set(replaced) - set(children) and set(children[1:]) <= set(replaced)
        assert (await twilio.post_inbound(url, number, "after the crash", to=BUSINESS))[0] == 200
        await eventually(lambda: in_thread(store, number, "after the crash"), within=15, what="the last message")
        # SIGTERM drains every child, then the supervisor exits cleanly.
        assert served.terminate(timeout=30) == 0
        assert not any(alive(pid) for pid in replaced)
        assert port_free(port)
    finally:
        served.kill()


async def test_children_die_with_a_sigkilled_supervisor(
        tmp_path: Path, redis_url: str, key_prefix: str, twilio: FakeTwilio) -> None:
    port = free_port()
    served = Served(tmp_path, config_for(redis_url, key_prefix, port, twilio, tmp_path), port, "--processes", "2")
    served.start()
    try:
        children = await eventually(lambda: (c := served.children()) and len(c) == 4 and c, what="four children")
        assert served.proc is not None
        served.proc.send_signal(signal.SIGKILL)
        served.proc.wait(10)
        # No orphan keeps the port or a lease: every child goes, soon.
        await eventually(lambda: not any(alive(pid) for pid in children), within=15, what="the children gone")
        await eventually(lambda: port_free(port), within=5, what="the port free")
    finally:
        served.kill()
        for pid in locals().get("children") or []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_processes_1_is_one_process(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    port = free_port()
    fake = type("T", (), {"base_url": "http://127.0.0.1:9"})()
    served = Served(tmp_path, config_for(redis_url, key_prefix, port, fake, tmp_path),  # type: ignore[arg-type]
                    port, "--processes", "1")
    served.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            assert r.status == 200
        assert served.children() == []
    finally:
        served.kill()
