"""Every response names its request, and every log line written while serving it carries the id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import request_id
from gateway.logging import configure_logging


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


async def served(handler_log: str) -> TestClient[web.Request, web.Application]:
    async def handler(request: web.Request) -> web.Response:
        structlog.get_logger("test").info(handler_log)
        return web.Response(text="ok")

    app = web.Application(middlewares=[request_id])
    app.router.add_get("/", handler)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_a_callers_request_id_is_echoed_and_logged(log_lines: io.StringIO) -> None:
    client = await served("handled")
    try:
        response = await client.get("/", headers={"X-Request-Id": "req-abc"})
        assert response.headers["X-Request-Id"] == "req-abc"
    finally:
        await client.close()
    [line] = [json.loads(raw) for raw in log_lines.getvalue().splitlines() if '"handled"' in raw]
    assert line["request_id"] == "req-abc"


async def test_requests_without_one_get_distinct_ids_that_do_not_leak_into_later_logs(
    log_lines: io.StringIO,
) -> None:
    client = await served("handled")
    try:
        ids = [(await client.get("/")).headers["X-Request-Id"] for _ in range(3)]
    finally:
        await client.close()
    assert len(set(ids)) == 3 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    logged = [json.loads(raw)["request_id"] for raw in log_lines.getvalue().splitlines() if '"handled"' in raw]
    assert logged == ids
    structlog.get_logger("test").info("after")
    after = [json.loads(raw) for raw in log_lines.getvalue().splitlines() if '"after"' in raw]
    assert "request_id" not in after[0]
