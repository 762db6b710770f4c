"""The gateway's X-Twilio-Signature check agrees with twilio's RequestValidator, the reference.

connectors/sms/signature.py reimplements the SDK's validation because the SDK's costs more than
the rest of the ack path; these tests hold the two to the same verdicts on generated requests:
authentic ones (either port spelling, repeated fields, any text, both algorithms, JSON bodies),
and forged, tampered and re-addressed ones.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import MultiDict
from twilio.request_validator import HMAC_SHA1, HMAC_SHA256, RequestValidator

from connectors.base import SignatureError, WebhookRequest
from connectors.sms import signature
from connectors.sms.twilio import TwilioConnector
from connectors.testing.fake_twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

TOKEN = DEFAULT_AUTH_TOKEN
URLS = (
    "https://gw.example.com/webhooks/sms/messages",
    "https://gw.example.com:443/webhooks/sms/messages",
    "http://127.0.0.1:8080/webhooks/sms/status",
    "http://gw.example.com/webhooks/sms/messages?tenant=a%20b&x=1",
    "https://gw.example.com:8443/webhooks/other/messages",
)

names = st.sampled_from(["Body", "From", "To", "MessageSid", "NumMedia", "MediaUrl0", "a", "B", "b"])
values = st.text(max_size=20)  # any Unicode: Twilio signs the decoded values
pairs = st.lists(st.tuples(names, values), max_size=10)  # repeated names included
algorithms = st.sampled_from([HMAC_SHA1, HMAC_SHA256, "hmac_sha256"])

fast = settings(max_examples=300)  # deadline and database: the suite's profile (conftest.py)


def reference(url: str, params: list[tuple[str, str]], sig: str, algorithm: str = HMAC_SHA1) -> bool:
    return bool(RequestValidator(TOKEN).validate(url, MultiDict(params), sig, algorithm))


def ours(url: str, params: list[tuple[str, str]], sig: str, algorithm: str = HMAC_SHA1) -> bool:
    return signature.validate(TOKEN.encode(), url, params, b"", sig, algorithm)


@fast
@given(st.sampled_from(URLS), pairs, algorithms)
def test_the_signature_is_the_sdks(url: str, params: list[tuple[str, str]], algorithm: str) -> None:
    expected = RequestValidator(TOKEN).compute_signature(url, MultiDict(params), algorithm)
    assert signature.compute_signature(TOKEN.encode(), url, params, algorithm) == expected


@fast
@given(st.sampled_from(URLS), st.sampled_from(URLS), pairs, algorithms)
def test_authentic_requests_pass_as_the_sdk_passes_them(
    signed_url: str, served_url: str, params: list[tuple[str, str]], algorithm: str
) -> None:
    # Signed for one URL spelling, checked at another: the port variants pass, other URLs fail.
    sig = RequestValidator(TOKEN).compute_signature(signed_url, MultiDict(params), algorithm)
    assert ours(served_url, params, sig, algorithm) == reference(served_url, params, sig, algorithm)
    assert ours(signed_url, params, sig, algorithm)


@fast
@given(st.sampled_from(URLS), pairs, pairs, st.text(max_size=30))
def test_forged_and_tampered_requests_fail_as_the_sdk_fails_them(
    url: str, signed: list[tuple[str, str]], sent: list[tuple[str, str]], forged: str
) -> None:
    sig = RequestValidator(TOKEN).compute_signature(url, MultiDict(signed), HMAC_SHA1)
    assert ours(url, sent, sig) == reference(url, sent, sig)
    assert ours(url, signed, forged) == reference(url, signed, forged)
    other = RequestValidator("f" * 32).compute_signature(url, MultiDict(signed), HMAC_SHA1)
    assert not ours(url, signed, other)


@fast
@given(st.binary(max_size=64), st.binary(max_size=64), st.sampled_from(URLS[:2]))
def test_json_bodies_are_checked_by_their_sha256_as_the_sdk_checks_them(
    body: bytes, sent: bytes, base: str
) -> None:
    try:
        text = sent.decode()  # the SDK takes the body as text
    except UnicodeDecodeError:
        text = None
    url = f"{base}?bodySHA256={hashlib.sha256(body).hexdigest()}"
    sig = RequestValidator(TOKEN).compute_signature(url, {})
    verdict = signature.validate(TOKEN.encode(), url, [("ignored", "x")], sent, sig)
    assert verdict == (sent == body)
    if text is not None:
        assert verdict == RequestValidator(TOKEN).validate(url, text, sig)


def test_an_unknown_algorithm_is_refused_as_forged() -> None:
    connector = TwilioConnector.from_config(
        "sms",
        {"kind": "twilio", "account_sid": DEFAULT_ACCOUNT_SID, "auth_token": TOKEN, "from_number": "+15550001111"},
        public_url="https://gw.example.com",
    )
    url = URLS[0]
    params = {"MessageSid": "SM1", "From": "+34600111222", "Body": "hola"}
    request = WebhookRequest(
        method="POST", url=url, path="messages", query={}, body=urlencode(params).encode(),
        headers={
            "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, params),
            "X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_1,algorithm=HMAC_MD5",
        },
    )
    assert not RequestValidator(TOKEN).validate(url, params, request.header("X-Twilio-Signature"), "HMAC_MD5")
    with pytest.raises(SignatureError, match="unsupported webhook signature algorithm 'HMAC_MD5'"):
        connector.verify(request)
    # The same request without the settings header is an ordinary SHA-1 one, and authentic.
    connector.verify(WebhookRequest(**{**{f: getattr(request, f) for f in request.__struct_fields__},
                                       "headers": {"X-Twilio-Signature": request.header("X-Twilio-Signature")}}))


def test_the_form_is_parsed_once_for_verify_and_parse() -> None:
    # verify() and parse() share the request's parsed form instead of each parsing the body.
    connector = TwilioConnector.from_config(
        "sms",
        {"kind": "twilio", "account_sid": DEFAULT_ACCOUNT_SID, "auth_token": TOKEN, "from_number": "+15550001111"},
        public_url="https://gw.example.com",
    )
    params = {"MessageSid": "SM1", "From": "+34600111222", "To": "+15550001111", "Body": "hola"}
    request = WebhookRequest(
        method="POST", url=URLS[0], path="messages", query={}, body=urlencode(params).encode(),
        headers={"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(URLS[0], params)},
    )
    connector.verify(request)
    cached = request.form_pairs
    result = connector.parse(request)
    assert request.form_pairs is cached
    assert result.messages[0].text == "hola"
