"""The conformance kit fails broken connectors, and its messages say what to fix.

Three connectors, each the scaffold's working connector with one thing broken the way integrators
break it: a `kind` that differs from its entry-point name, a parse() that looks something up over
the network, and a verify() that accepts anything. They are "installed" as a distribution on
PYTHONPATH (a dist-info directory with entry points, as pip leaves it) and an integrator's test
module runs the kit on them in a pytest subprocess.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
import pytest
import test_conformance_twilio

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorSettings,
    MalformedPayload,
    Outbound,
    ParseResult,
    PermanentSendError,
    Route,
    Secret,
    SignatureError,
    TextFormat,
    TransientSendError,
    WebhookRequest,
    WebhookResponse,
)
from connectors.scaffold import write_skeleton
from connectors.sms.twilio import TwilioConnector
from connectors.testing import INSTANCE, RECEIVED_AT_MS, ConnectorConformance, InvalidSettings, PayloadCase, SlackSigner
from conversation.model import Identity, InboundMessage

BROKEN = '''
"""Connectors that each break one rule of the connector interface."""

import urllib.request

from omnigateway_brokenbase.connector import BrokenbaseConnector


class MisnamedConnector(BrokenbaseConnector):
    kind = "misnamed"  # but the entry point is `broken_name`


class LookupConnector(BrokenbaseConnector):
    kind = "broken_io"

    def parse(self, request):
        # "Enrich" the sender from the provider's API: network I/O on the ack path.
        urllib.request.urlopen("http://127.0.0.1:9/v1/profiles/me", timeout=1)
        return super().parse(request)


class LaxConnector(BrokenbaseConnector):
    kind = "broken_verify"

    def verify(self, request):
        pass  # "we'll add signatures later"
'''

ENTRY_POINTS = """\
[omnigateway.connectors]
broken_name = broken_connectors:MisnamedConnector
broken_io = broken_connectors:LookupConnector
broken_verify = broken_connectors:LaxConnector
"""

TESTS = '''
import test_conformance as scaffold

from broken_connectors import LaxConnector, LookupConnector, MisnamedConnector


class TestMisnamed(scaffold.TestBrokenbaseConformance):
    connector_class = MisnamedConnector


class TestLookup(scaffold.TestBrokenbaseConformance):
    connector_class = LookupConnector


class TestLax(scaffold.TestBrokenbaseConformance):
    connector_class = LaxConnector
'''


def run_kit_on_broken_connectors(tmp_path: Path) -> str:
    skeleton = tmp_path / "skeleton"
    write_skeleton("brokenbase", skeleton)
    site = tmp_path / "site"
    site.mkdir()
    (site / "broken_connectors.py").write_text(textwrap.dedent(BROKEN))
    info = site / "broken_connectors-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-connectors\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    (skeleton / "tests" / "test_broken.py").write_text(textwrap.dedent(TESTS))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(skeleton / "src")])}
    env.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rf", "tests/test_broken.py"],
        cwd=skeleton, env=env, capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 1, f"the kit should fail these connectors:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def failed(output: str) -> set[str]:
    return set(re.findall(r"^FAILED tests/test_broken\.py::(\w+::\w+)", output, re.MULTILINE))


def test_kit_fails_broken_connectors_saying_what_to_fix(tmp_path: Path) -> None:
    out = run_kit_on_broken_connectors(tmp_path)
    failures = failed(out)

    # A kind that differs from the entry-point name: only discovery fails, and it says how to fix it.
    assert {f for f in failures if f.startswith("TestMisnamed::")} == {"TestMisnamed::test_entry_point_resolves"}
    assert ("MisnamedConnector.kind is 'misnamed' but its entry point is named 'broken_name': make them equal"
            in out)

    # A parse() that does I/O is caught by the network guard, naming the connector and the call.
    assert "TestLookup::test_parse_does_no_network_io" in failures
    assert "TestLookup::test_payload_cases_parse_to_expected" in failures
    assert re.search(r"LookupConnector\.parse\(\) \(case '[^']+'\) tried network I/O: socket\.\w+\(", out)
    assert "parse() must be pure" in out
    assert "TestLookup::test_entry_point_resolves" not in failures  # the rest of it is fine

    # A verify() that accepts anything fails every forgery the kit tries.
    for test in ("test_unsigned_request_is_refused", "test_tampered_body_is_refused",
                 "test_missing_signature_headers_are_refused", "test_forged_signature_values_are_refused",
                 "test_http_path_acks_within_deadline"):
        assert f"TestLax::{test}" in failures, out
    assert "LaxConnector.verify() accepted a request that carries no signature at all" in out
    assert "LaxConnector.verify() accepted a request whose body was tampered with after signing" in out
    assert "LaxConnector.verify() accepted a request without the X-Signature-256 header" in out
    assert "raise SignatureError" in out
    assert "an unsigned 'events' request was answered 200, not 403" in out
    assert "TestLax::test_payload_cases_parse_to_expected" not in failures


# --- the kit's other paths, in process ------------------------------------------------------------
#
# No built-in connector has a handshake or a timestamped signature yet, so a small Slack-style
# connector (Events API: url_verification, v0 signatures with a five-minute window) proves those
# paths of the kit, and variants of it and of Twilio show the messages of the other checks.


class ToySlackSettings(ConnectorSettings, kw_only=True):
    kind: str = "toyslack"
    signing_secret: Secret
    bot_token: Secret


class ToySlack(Connector[ToySlackSettings]):
    kind = "toyslack"
    channel = "slack"
    Settings = ToySlackSettings
    capabilities = Capabilities(max_text_length=40_000, formats=(TextFormat.PLAIN, TextFormat.SLACK_MRKDWN),
                                threads=True, ack_deadline_seconds=3)
    max_age = 300.0

    def routes(self) -> Sequence[Route]:
        return (Route("POST", "events"),)

    def verify(self, request: WebhookRequest) -> None:
        timestamp = request.header("X-Slack-Request-Timestamp") or ""
        signature = request.header("X-Slack-Signature") or ""
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > self.max_age:
            raise SignatureError("stale or missing X-Slack-Request-Timestamp")
        base = f"v0:{timestamp}:".encode() + request.body
        expected = "v0=" + hmac.new(self.settings.signing_secret.reveal().encode(), base, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, expected):
            raise SignatureError("X-Slack-Signature does not match")

    def parse(self, request: WebhookRequest) -> ParseResult:
        payload = json.loads(request.body)
        if payload.get("type") == "url_verification":
            return ParseResult(response=WebhookResponse(200, payload["challenge"].encode(), "text/plain"))
        event = payload.get("event", {})
        if payload.get("type") != "event_callback" or event.get("type") != "message":
            raise MalformedPayload(f"unhandled Slack payload type {payload.get('type')!r}")
        return ParseResult(messages=(InboundMessage(
            instance=self.instance, channel="slack", provider_message_id=payload["event_id"],
            sender=Identity("slack", f"{payload['team_id']}:{event['user']}"), text=event["text"],
            received_at_ms=request.received_at_ms),))

    async def send(self, outbound: Outbound) -> str:
        raise PermanentSendError("toyslack sends nothing: this connector only exists to test the kit")


SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_MESSAGE = {
    "token": "XXYYZZ", "team_id": "T0001", "api_app_id": "A0001", "type": "event_callback",
    "event_id": "Ev0PV52K21", "event_time": 1_700_000_000,
    "event": {"type": "message", "channel": "D0001", "user": "U2147483697", "text": "Hello from Slack",
              "ts": "1700000000.000100", "channel_type": "im"},
}


class ToySlackKit(ConnectorConformance):
    connector_class = ToySlack
    settings = {"signing_secret": SLACK_SECRET, "bot_token": "xoxb-toy-token"}
    signer = SlackSigner(SLACK_SECRET)
    payload_cases = [
        PayloadCase.json("url_verification", "events",
                         {"token": "XXYYZZ", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                          "type": "url_verification"},
                         handshake=True,
                         response=WebhookResponse(200, b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                                                  "text/plain")),
        PayloadCase.json("a direct message", "events", SLACK_MESSAGE, messages=[InboundMessage(
            instance=INSTANCE, channel="slack", provider_message_id="Ev0PV52K21",
            sender=Identity("slack", "T0001:U2147483697"), text="Hello from Slack", received_at_ms=RECEIVED_AT_MS)]),
        PayloadCase.json("an app mention", "events", {**SLACK_MESSAGE, "event": {"type": "app_mention"}},
                         malformed="unhandled Slack payload"),
    ]


class TestToySlackConformance(ToySlackKit):
    def test_entry_point_resolves(self) -> None:
        pytest.skip("ToySlack lives in this test module and is not installed; the rest of the kit runs on it")


def expect_failure(test: Callable[[], object], *fragments: str) -> str:
    with pytest.raises(pytest.fail.Exception) as failure:
        test()
    message = str(failure.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_kit_refuses_a_verify_that_ignores_the_timestamp() -> None:
    class ReplayableSlack(ToySlack):
        max_age = float("inf")

    class Kit(ToySlackKit):
        connector_class = ReplayableSlack

    expect_failure(Kit().test_stale_timestamp_is_refused,
                   "ReplayableSlack.verify() accepted a correctly signed request whose timestamp is 360 s old")


def test_kit_checks_the_handshake_answer() -> None:
    class EchoJson(ToySlack):
        def parse(self, request: WebhookRequest) -> ParseResult:
            result = super().parse(request)
            return ParseResult(result.messages, result.statuses, WebhookResponse(200, b"{}", "application/json"))

    class Kit(ToySlackKit):
        connector_class = EchoJson

    expect_failure(Kit().test_handshakes_are_answered, "case 'url_verification': parse() answered",
                   "the provider only activates the endpoint on that answer")


def test_kit_names_the_field_that_parsed_wrong() -> None:
    class Shouty(ToySlack):
        def parse(self, request: WebhookRequest) -> ParseResult:
            result = super().parse(request)
            return ParseResult([msgspec.structs.replace(m, text=m.text.upper()) for m in result.messages])

    class Kit(ToySlackKit):
        connector_class = Shouty

    expect_failure(Kit().test_payload_cases_parse_to_expected,
                   "case 'a direct message': messages[0].text is 'HELLO FROM SLACK', expected 'Hello from Slack'")


def test_kit_flags_inconsistent_capabilities_and_unmasked_secrets() -> None:
    class LeakySettings(ConnectorSettings, kw_only=True):
        signing_secret: str
        bot_token: Secret

    class Sloppy(ToySlack):
        Settings = LeakySettings
        capabilities = Capabilities(max_text_length=0, attachment_kinds=("image",), ack_deadline_seconds=3)

    class Kit(ToySlackKit):
        connector_class = Sloppy

    expect_failure(Kit().test_capabilities_are_valid,
                   "Sloppy.capabilities.max_text_length is 0: declare the longest text the channel accepts",
                   "declares attachment_kinds ('image',) but max_attachments is 0",
                   "attachment_kinds contains 'image': use MIME types or prefixes")
    expect_failure(Kit().test_secrets_are_redacted,
                   "Sloppy.Settings.signing_secret looks like a credential but is typed str: declare it as "
                   "connectors.base.Secret")


def test_kit_requires_settings_errors_that_name_the_key() -> None:
    class Kit(ToySlackKit):
        invalid_settings = [InvalidSettings({"bot_token": 12}, "bot_token must start with xoxb-")]

    expect_failure(Kit().test_bad_settings_fail_at_construction,
                   "does not mention 'bot_token must start with xoxb-'; name the key and what is wrong with it")


async def test_kit_requires_5xx_to_be_transient() -> None:
    class GivesUpOn5xx(TwilioConnector):
        async def send(self, outbound: Outbound) -> str:
            try:
                return await super().send(outbound)
            except TransientSendError as exc:
                raise PermanentSendError(exc.reason) from exc

    class Kit(test_conformance_twilio.TestTwilioConformance):
        connector_class = GivesUpOn5xx

    with pytest.raises(pytest.fail.Exception) as failure:
        await Kit().test_provider_errors_map_to_send_errors()
    message = str(failure.value)
    assert "HTTP 503: send() raised PermanentSendError (20500: Internal Server Error); it must raise " \
           "TransientSendError so the dispatcher retries it with backoff" in message
    assert "HTTP 429" in message and "HTTP 400" not in message
