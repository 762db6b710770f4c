"""The kit's tests of the webhook side: signatures (forged, tampered, stale), handshakes, parsing
without I/O."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from connectors.base import (
    Connector,
    MalformedPayload,
    ParseResult,
    SignatureError,
    WebhookRequest,
)

if TYPE_CHECKING:
    pass
from connectors.testing._kit_base import KitBase
from connectors.testing._kit_helpers import _compare, _garble, _io_message, _plain, _replace_headers
from connectors.testing.cases import PayloadCase
from connectors.testing.netguard import ForbiddenNetworkAccess, forbid_network


class WebhookTests(KitBase):
    # --- webhook authentication -----------------------------------------------------------------

    def test_valid_signatures_pass(self) -> None:
        connector = self.build()
        self._need_routes(connector)
        self._need_signer()
        cases = [c for c in self.payload_cases] or [self._probe(connector)]
        problems = []
        for case in cases:
            try:
                connector.verify(self.request(connector, case))
            except SignatureError as exc:
                problems.append(f"case {case.name!r}: verify() refused a correctly signed request: {exc}")
        if problems:
            pytest.fail("\n".join(problems) + f"\nEither {self.connector_name}.verify() or the test's signer "
                        "does not follow the provider's signing scheme", pytrace=False)

    def test_unsigned_request_is_refused(self) -> None:
        connector = self.build()
        self._need_routes(connector)
        case = self._auth_case(connector)
        if not case.signed:
            pytest.skip("the only payload cases are unsigned")
        request = self.request(connector, case, sign=False)
        self._expect_refused(connector, request, "a request that carries no signature at all")

    def test_tampered_body_is_refused(self) -> None:
        connector = self.build()
        self._need_routes(connector)
        signer = self._need_signer()
        if not signer.signs_body:
            pytest.skip(f"{type(signer).__name__}.signs_body is False: the provider's scheme does not cover the "
                        "body, so a tampered body cannot be told from the original")
        case = self._auth_case(connector)
        request = self.request(connector, case)
        forged = msgspec.structs.replace(request, body=self.tamper(request.body))
        assert forged.body != request.body, "tamper() must change the body"
        self._expect_refused(connector, forged, "a request whose body was tampered with after signing")

    def test_missing_signature_headers_are_refused(self) -> None:
        connector = self.build()
        self._need_routes(connector)
        signer = self._need_signer()
        case = self._auth_case(connector)
        request = self.request(connector, case, sign=False)
        added = signer.headers(request, now=time.time())
        if not added:
            pytest.skip(f"{type(signer).__name__} adds no headers")
        for name in added:
            headers = {**_plain(request.headers), **{k: v for k, v in added.items() if k != name}}
            self._expect_refused(connector, _replace_headers(request, headers), f"a request without the {name} header")

    def test_forged_signature_values_are_refused(self) -> None:
        connector = self.build()
        self._need_routes(connector)
        signer = self._need_signer()
        case = self._auth_case(connector)
        request = self.request(connector, case, sign=False)
        added = signer.headers(request, now=time.time())
        for name, value in added.items():
            headers = {**_plain(request.headers), **added, name: _garble(value)}
            self._expect_refused(connector, _replace_headers(request, headers),
                                 f"a request whose {name} header was replaced by {_garble(value)!r}")

    def test_stale_timestamp_is_refused(self) -> None:
        connector = self.build()
        self._need_routes(connector)
        signer = self._need_signer()
        if signer.max_age_seconds is None:
            pytest.skip(f"{type(signer).__name__}.max_age_seconds is None: the provider's scheme signs no "
                        "timestamp, so nothing can go stale (set it if the provider's does)")
        case = self._auth_case(connector)
        stale = time.time() - signer.max_age_seconds - 60
        request = self.request(connector, case, now=stale)
        self._expect_refused(connector, request, f"a correctly signed request whose timestamp is "
                                                 f"{signer.max_age_seconds + 60:g} s old (a replay)")

    def _expect_refused(self, connector: Connector[Any], request: WebhookRequest, what: str) -> None:
        try:
            connector.verify(request)
        except SignatureError:
            return
        except Exception as exc:
            pytest.fail(f"{self.connector_name}.verify() raised {type(exc).__name__}: {exc} for {what}; raise "
                        "connectors.base.SignatureError so the gateway answers 403", pytrace=False)
        pytest.fail(f"{self.connector_name}.verify() accepted {what}: anyone could post forged messages. Check "
                    "the provider's signature over the raw body and raise SignatureError when it is missing or "
                    "does not match", pytrace=False)

    # --- parsing --------------------------------------------------------------------------------

    def test_handshakes_are_answered(self) -> None:
        cases = [c for c in self.payload_cases if c.handshake]
        if not cases:
            pytest.skip("no PayloadCase with handshake=True: if the provider verifies the endpoint (Slack "
                        "url_verification, Meta hub.challenge), add that request with the expected `response`")
        connector = self.build()
        problems = []
        for case in cases:
            if case.response is None:
                problems.append(f"case {case.name!r} is a handshake without the expected `response`")
                continue
            result, problem = self._parse(connector, case)
            if problem:
                problems.append(problem)
                continue
            assert result is not None
            if result.response != case.response:
                problems.append(f"case {case.name!r}: parse() answered {result.response!r}, expected "
                                f"{case.response!r}; the provider only activates the endpoint on that answer")
            if result.messages or result.statuses:
                problems.append(f"case {case.name!r}: a handshake yielded messages or statuses; it must store nothing")
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)

    def test_payload_cases_parse_to_expected(self) -> None:
        if not self.payload_cases:
            pytest.skip("no payload_cases: add real payloads from the provider's documentation or sandbox, each "
                        "with the InboundMessage / StatusUpdate it must become (PayloadCase.form / .json)")
        connector = self.build()
        served = {r.path for r in self._routes(connector)}
        problems: list[str] = []
        for case in self.payload_cases:
            # No expectation at all is allowed: an event the connector acknowledges and ignores.
            if sum([case.expects_content, case.handshake, case.malformed is not None]) > 1:
                problems.append(f"case {case.name!r}: give one kind of expectation: messages/statuses, "
                                "handshake=True with a response, or malformed='...'")
                continue
            if case.path not in served:
                problems.append(f"case {case.name!r} goes to {case.path!r}, which routes() does not serve "
                                f"(it serves {sorted(served)})")
                continue
            if case.handshake:
                continue  # test_handshakes_are_answered
            result, problem = self._parse(connector, case)
            if problem:
                problems.append(problem)
                continue
            if case.malformed is not None:
                continue  # _parse checked the MalformedPayload message
            assert result is not None
            problems += _compare(case.name, "messages", list(result.messages), list(case.messages))
            problems += _compare(case.name, "statuses", list(result.statuses), list(case.statuses))
            if case.response is not None and result.response != case.response:
                problems.append(f"case {case.name!r}: the answer to the provider is {result.response!r}, "
                                f"expected {case.response!r}")
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)

    def test_parse_does_no_network_io(self) -> None:
        connector = self.build()
        self._need_routes(connector)
        cases = list(self.payload_cases) or [self._probe(connector)]
        for case in cases:
            request = self.request(connector, case)
            owner = f"{self.connector_name}.parse() (case {case.name!r})"
            with forbid_network(owner) as attempts:
                try:
                    connector.parse(request)
                except ForbiddenNetworkAccess:
                    pass
                except Exception:  # this test is about I/O only; test_payload_cases judges results
                    pass
            if attempts:
                pytest.fail(_io_message(owner, attempts), pytrace=False)

    def _parse(self, connector: Connector[Any], case: PayloadCase) -> tuple[ParseResult | None, str | None]:
        """Verify then parse one case, under the network guard; (result, problem)."""
        request = self.request(connector, case)
        try:
            connector.verify(request)
        except SignatureError as exc:
            return None, (f"case {case.name!r}: verify() refused it ({exc}); the signer and verify() disagree, "
                          "see test_valid_signatures_pass")
        owner = f"{self.connector_name}.parse() (case {case.name!r})"
        with forbid_network(owner) as attempts:
            try:
                result = connector.parse(request)
            except ForbiddenNetworkAccess:
                return None, _io_message(owner, attempts)
            except MalformedPayload as exc:
                if case.malformed is None:
                    return None, f"case {case.name!r}: parse() refused it as malformed: {exc}"
                if case.malformed.lower() not in str(exc).lower():
                    return None, (f"case {case.name!r}: the MalformedPayload message {str(exc)!r} does not "
                                  f"mention {case.malformed!r}; operators read it in the dead-letter list")
                return None, None
            except Exception as exc:
                return None, (f"case {case.name!r}: parse() raised {type(exc).__name__}: {exc}; an authentic "
                              "payload it cannot use must raise MalformedPayload (the gateway dead-letters it)")
        if attempts:
            return None, _io_message(owner, attempts)
        if case.malformed is not None:
            return None, (f"case {case.name!r}: parse() accepted it, but it must raise MalformedPayload "
                          f"mentioning {case.malformed!r}")
        if not isinstance(result, ParseResult):
            return None, f"case {case.name!r}: parse() returned {result!r}, not a ParseResult"
        return result, None
