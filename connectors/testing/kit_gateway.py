"""The kit's tests through a real gateway: webhooks acked within the deadline, messages in threads."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from connectors.base import (
    Connector,
)

if TYPE_CHECKING:
    from gateway.testing import GatewayUnderTest
from connectors.testing._kit_base import KitBase
from connectors.testing._kit_helpers import _post
from connectors.testing.cases import _THREAD_WAIT_SECONDS


class GatewayTests(KitBase):
    # --- the whole gateway ----------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_http_path_acks_within_deadline(self, redis_url: str) -> None:
        import aiohttp

        probe = self.build()
        self._need_routes(probe)
        cases = [c for c in self.payload_cases] or [self._probe(probe)]
        deadline = self._cls().capabilities.ack_deadline_seconds
        problems: list[str] = []
        async with self._gateway(redis_url) as (gw, connector), aiohttp.ClientSession() as http:
            unsigned = next((c for c in cases if c.signed and not c.handshake), None)
            if unsigned is not None:
                status, _, _ = await _post(http, gw, self.request(connector, unsigned, sign=False))
                if status != 403:
                    problems.append(f"an unsigned {unsigned.path!r} request was answered {status}, not 403")
            for case in cases:
                request = self.request(connector, case)
                started = time.perf_counter()
                status, body, content_type = await _post(http, gw, request)
                took = time.perf_counter() - started
                if took > deadline:
                    problems.append(f"case {case.name!r}: the gateway answered after {took:.1f} s, over "
                                    f"capabilities.ack_deadline_seconds = {deadline:g}; the provider would retry. "
                                    "Keep verify() and parse() fast and free of I/O")
                want = case.response or (self._cls().malformed_response if case.malformed is not None else None)
                if want is None:
                    if not 200 <= status < 300:
                        problems.append(f"case {case.name!r}: answered HTTP {status}: {body[:200]!r}")
                elif status != want.status or body != want.body:
                    problems.append(f"case {case.name!r}: answered HTTP {status} {body[:200]!r}, expected "
                                    f"{want.status} {want.body[:200]!r}")
                elif want.body and not content_type.startswith(want.content_type):
                    problems.append(f"case {case.name!r}: answered Content-Type {content_type!r}, expected "
                                    f"{want.content_type!r}")
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)

    @pytest.mark.asyncio
    async def test_http_messages_reach_customer_thread(self, redis_url: str) -> None:
        import aiohttp

        cases = [c for c in self.payload_cases if c.messages]
        if not cases:
            pytest.skip("no payload case yields a message: nothing to follow into a customer thread")
        problems: list[str] = []
        async with self._gateway(redis_url) as (gw, connector), aiohttp.ClientSession() as http:
            for case in cases:
                status, body, _ = await _post(http, gw, self.request(connector, case))
                if not 200 <= status < 300:
                    problems.append(f"case {case.name!r}: answered HTTP {status}: {body[:200]!r}")
            if problems:
                pytest.fail("\n".join(problems), pytrace=False)
            # An edit lands on the message it edits (if the thread has it), not as a message of its own.
            wanted = {(m.sender, m.provider_message_id): case.name for case in cases for m in case.messages
                      if m.edit is None}
            deadline = time.monotonic() + _THREAD_WAIT_SECONDS
            missing = dict(wanted)
            while missing and time.monotonic() < deadline:
                for sender, provider_id in list(missing):
                    messages = await gw.thread_of(sender)
                    if any(m.provider_message_id == provider_id for m in messages):
                        del missing[(sender, provider_id)]
                await asyncio.sleep(0.05)
        for (sender, provider_id), name in missing.items():
            problems.append(f"case {name!r}: acknowledged, but message {provider_id!r} from {sender.key} was not in "
                            f"a customer thread after {_THREAD_WAIT_SECONDS:g} s; check the InboundMessage's "
                            "sender identity and provider_message_id")
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)

    @contextlib.asynccontextmanager
    async def _gateway(self, redis_url: str) -> AsyncIterator[tuple[GatewayUnderTest, Connector[Any]]]:
        import redis.asyncio as aioredis

        from gateway.testing import GatewayUnderTest, free_port

        port = free_port()
        connector = self.build(public_url=f"http://127.0.0.1:{port}")
        prefix = f"kit{uuid.uuid4().hex[:12]}"
        # A short shutdown grace: the kit's gateway has nothing in flight worth 10 s of draining.
        gw = GatewayUnderTest(redis_url, prefix=prefix, connectors={}, port=port,
                              instances={self.instance: connector}, partitions=2, lease_ttl=2.0,
                              shutdown_grace=1.0)
        try:
            async with gw:
                yield gw, connector
        finally:
            client = aioredis.Redis.from_url(redis_url)
            try:
                keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
                if keys:
                    await client.delete(*keys)
            finally:
                await client.aclose()
