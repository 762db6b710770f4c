"""pytest plugin (entry point ``omnigateway_connectors``): fixtures for connector tests.

Loaded by every pytest run in an environment where omnichannel-gateway is installed, so it stays
small and imports nothing heavy at load time. A project's own conftest.py fixtures of the same
names take precedence over these.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from connectors.testing.fake_twilio import FakeTwilio


@pytest_asyncio.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    """A started FakeTwilio with the default account SID and auth token; `.base_url` is its API."""
    async with FakeTwilio() as twilio:
        yield twilio


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis for the conformance kit's gateway tests: 127.0.0.1:6379 when it answers, else a
    private Valkey (the embedded one the gateway ships) for the session. Tests that use it keep
    their keys under a unique prefix and delete them afterwards."""
    if _local_redis_answers():
        yield "redis://127.0.0.1:6379/0"
        return
    from gateway.testing import RedisProcess

    proc = RedisProcess()
    proc.start()
    try:
        yield proc.url
    finally:
        proc.stop()


def _local_redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.3) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False
