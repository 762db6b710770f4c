"""Logs never carry a customer's number, address or words, nor a secret, in any format."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
import structlog

from connectors.base import Secret
from gateway.logging import configure_logging, mask_text

PHONE = "+34600111222"
EMAIL = "ana.lopez@example.com"
BODY = "my account number is 99887766 and I am furious"
TOKEN = "tok_live_5f2b8c1e"


def capture(fmt: str) -> io.StringIO:
    stream = io.StringIO()
    configure_logging("debug", fmt, stream=stream)
    return stream


def log_everything_sensitive() -> None:
    log = structlog.get_logger("test")
    log.info(
        f"inbound from {PHONE} <{EMAIL}>",
        text=BODY,
        form={"Body": BODY, "From": f"whatsapp:{PHONE}", "To": "+15550001111"},
        to="34600111222",  # a bare number under an address key
        auth_token=Secret(TOKEN),
        settings={"api_password": TOKEN},
        headers={"Authorization": f"Bearer {TOKEN}"},
        secret_anything=TOKEN,
    )


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_raw_values_never_reach_the_output(fmt: str, restore_logging: None) -> None:
    stream = capture(fmt)
    log_everything_sensitive()
    out = stream.getvalue()
    for raw in (PHONE, "34600111222", EMAIL, BODY, "99887766", TOKEN, "ana.lopez"):
        assert raw not in out, f"{raw!r} leaked into: {out}"
    # What remains is still useful to an operator: country code and last digits, the domain.
    assert "+34******222" in out
    assert "a***@example.com" in out
    assert f"<redacted {len(BODY)} chars>" in out


def test_json_lines_carry_level_logger_event_and_bound_request_id(restore_logging: None) -> None:
    stream = capture("json")
    structlog.contextvars.bind_contextvars(request_id="req-123")
    structlog.get_logger("gateway.webhooks").warning("signature rejected", instance="sms")
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["event"] == "signature rejected"
    assert line["level"] == "warning"
    assert line["logger"] == "gateway.webhooks"
    assert line["request_id"] == "req-123"
    assert line["instance"] == "sms"
    assert line["timestamp"].endswith("Z")


def test_stdlib_records_such_as_the_access_log_are_masked_too(restore_logging: None) -> None:
    stream = capture("json")
    logging.getLogger("aiohttp.access").info(
        '127.0.0.1 [23/Nov/2025:09:12:00 +0000] "GET /v1/customers?identity=phone:%2B34600111222'
        '&email=ana%40example.com HTTP/1.1" 200 312'
    )
    line = json.loads(stream.getvalue().strip())
    assert line["logger"] == "aiohttp.access"
    assert "34600111222" not in line["event"] and "ana%40" not in line["event"]
    assert "%2B34******222" in line["event"]
    assert "+0000" in line["event"]  # timestamps and status codes are left alone


def test_exception_messages_are_masked(restore_logging: None) -> None:
    stream = capture("json")
    try:
        raise ValueError(f"cannot reach {PHONE}")
    except ValueError:
        structlog.get_logger("test").exception("send failed")
    line = json.loads(stream.getvalue().strip())
    assert "ValueError: cannot reach +34******222" in line["exception"]
    assert PHONE not in stream.getvalue()


def test_level_filters_below_the_configured_level(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("warning", "json", stream=stream)
    structlog.get_logger("test").info("chatty")
    logging.getLogger("aiohttp.access").info("GET /healthz")
    structlog.get_logger("test").error("loud")
    lines = stream.getvalue().strip().splitlines()
    assert [json.loads(x)["event"] for x in lines] == ["loud"]


def test_auto_format_is_json_when_not_a_terminal(restore_logging: None) -> None:
    stream = capture("auto")  # a StringIO is not a tty
    structlog.get_logger("test").info("hello")
    assert json.loads(stream.getvalue())["event"] == "hello"


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("+34600111222", "+34******222"),
        ("+1 555 000 1111", "+15******111"),
        ("call +4930123456 now", "call +49*****456 now"),
        ("+353871234567", "+35*******567"),
        ("short +1234567.", "short +1****67."),
        ("at 2024-01-02T03:04:05+00:00, port 8080, id 1700000000000", None),
        ("j@example.com", "j***@example.com"),
    ],
)
def test_mask_text(raw: str, masked: str | None) -> None:
    assert mask_text(raw) == (raw if masked is None else masked)


async def test_info_logs_hold_what_an_operator_acts_on(restore_logging: None, redis_url: str, key_prefix: str
                                                       ) -> None:
    """A send through the twilio SDK and a worker taking its partitions each leave at most one
    info line, not one per HTTP exchange or per lease."""
    from connectors.sms.twilio import TwilioConnector
    from connectors.testing.fake_twilio import FakeTwilio
    from conversation.model import Identity, Outbound
    from conversation.service import Core
    from conversation.store import open_store
    from gateway.testing import eventually
    from gateway.workers.ingest import IngestWorker

    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    sid, token = "AC" + "7" * 32, "b" * 32
    async with FakeTwilio(sid, token) as twilio:
        connector = TwilioConnector.from_config(
            "sms", {"kind": "twilio", "account_sid": sid, "auth_token": token, "from_number": "+15550001111",
                    "api_base_url": twilio.base_url}, public_url="http://127.0.0.1:9")
        try:
            await connector.send(Outbound(message_id="c.1", channel="sms", to=Identity("phone", "+34600111222"),
                                          text="Your refund is on its way"))
        finally:
            await connector.aclose()
    assert [line for line in stream.getvalue().splitlines() if line.strip()] == []

    store = open_store(redis_url, prefix=key_prefix, partitions=16)
    worker = IngestWorker(Core(store), lease_ttl=2.0)
    task = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: len(worker.owned) == 16, what="the worker owning every partition")
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
        await store.close()
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    assert [line["event"] for line in lines] == ["ingest.partitions"]  # one line, not sixteen
