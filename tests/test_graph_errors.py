"""Graph API errors read into send errors by code, whatever the HTTP status says."""

from __future__ import annotations

import pytest

from connectors.base import PermanentSendError, TransientSendError
from connectors.social.graph import read_error


def error(code: int, status: int = 400, subcode: int | None = None, **headers: str) -> object:
    body = {"error": {"message": f"(#{code}) something", "type": "OAuthException", "code": code,
                      "fbtrace_id": "AbCdEf"}}
    if subcode is not None:
        body["error"]["error_subcode"] = subcode  # type: ignore[index]
    return read_error(status, body, headers).as_send_error()


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80007, 130429, 131056, 2])
def test_throttling_and_temporary_codes_are_transient(code: int) -> None:
    assert isinstance(error(code), TransientSendError)


def test_retry_after_is_kept() -> None:
    sent = error(130429, 429, **{"Retry-After": "42"})
    assert isinstance(sent, TransientSendError) and sent.retry_after == 42


@pytest.mark.parametrize(("code", "status"), [(190, 401), (10, 403), (200, 403), (100, 400), (131026, 400),
                                              (551, 400)])
def test_auth_permission_and_recipient_errors_are_permanent_with_meta_s_message(code: int, status: int) -> None:
    sent = error(code, status)
    assert isinstance(sent, PermanentSendError) and not sent.window_closed
    assert sent.reason == f"{code}: (#{code}) something"


@pytest.mark.parametrize(("code", "subcode"), [(131047, None), (10, 2018278)])
def test_outside_the_window_is_permanent_and_closes_it(code: int, subcode: int | None) -> None:
    sent = error(code, 400, subcode)
    assert isinstance(sent, PermanentSendError) and sent.window_closed


def test_5xx_without_a_graph_body_is_transient() -> None:
    sent = read_error(502, None, {}).as_send_error()
    assert isinstance(sent, TransientSendError) and "502" in sent.reason
    details = read_error(400, {"error": {"message": "Re-engagement message", "code": 131047,
                                         "error_data": {"details": "more than 24 hours"}}}, {})
    assert details.message == "Re-engagement message (more than 24 hours)"
