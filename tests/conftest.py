"""Shared fixtures: a real Redis for every test, isolated by a unique key prefix.

The machine's Redis at 127.0.0.1:6379 is used when it answers; otherwise an embedded Valkey is
started for the session. Each test gets its own key prefix and its keys are deleted afterwards.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import hypothesis
import pytest
import redis
import redis.asyncio as aioredis
import structlog

from connectors.testing.fake_slack import FakeSlack
from gateway.testing import GatewayUnderTest

# Property tests draw the same examples on every run and carry no per-example deadline: CI judges
# the change, not the draw nor a busy machine. OMNI_FUZZ_RANDOM=1 hunts with fresh draws.
hypothesis.settings.register_profile("repeatable", derandomize=True, deadline=None, database=None)
hypothesis.settings.register_profile("hunt", deadline=None, database=None)
hypothesis.settings.load_profile("hunt" if os.environ.get("OMNI_FUZZ_RANDOM", "") not in ("", "0") else "repeatable")

# `redis_url` (the machine's Redis at 127.0.0.1:6379, else a private Valkey for the session) comes
# from the kit's pytest plugin, connectors.testing.plugin, which integrators' suites load too.


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A prefix of the test's own; whatever the test left under it is deleted afterwards, so a
    shared Redis does not fill up run after run (keyspace scans would slow down with it)."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    yield prefix
    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i:i + 1000])


@pytest.fixture
async def redis_client(redis_url: str, key_prefix: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        keys = [k async for k in client.scan_iter(match=f"{key_prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put logging back as it was: a test that configures it (the CLI in-process) must not leave
    handlers writing to its captured, soon closed, stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


# A real Dovecot for the IMAP tests (tests/dovecot.py): skipped where it is not installed, except
# in CI, which installs it.
from dovecot import dovecot, dovecot_factory, imap_mailbox  # noqa: E402, F401


# The Slack tests' fake Slack and a gateway with a Slack instance on the Events API pointed at it.
@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def slack_gateway(redis_url: str, key_prefix: str, slack: FakeSlack, redis_client: aioredis.Redis
                        ) -> AsyncIterator[GatewayUnderTest]:
    from slackhelpers import gateway_for

    async with gateway_for(redis_url, key_prefix, slack) as gw:
        yield gw
