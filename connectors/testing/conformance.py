"""The connector conformance kit: one class an integrator subclasses to prove a connector.

    from connectors.testing import ConnectorConformance, HmacSha256Signer, PayloadCase

    class TestAcmeConformance(ConnectorConformance):
        connector_class = AcmeConnector
        settings = {"api_token": "t", "webhook_secret": "s"}
        signer = HmacSha256Signer("s", header="X-Signature-256")
        payload_cases = [PayloadCase.json("a message", "events", {...}, messages=[InboundMessage(...)])]

        def fake_provider(self) -> FakeAcme:
            return FakeAcme()

The inherited tests are plain pytest tests. Async ones carry `pytest.mark.asyncio`, so they run
under pytest-asyncio's strict mode as well as its auto mode. The gateway tests take a `redis_url`
fixture, which the kit's pytest plugin provides (127.0.0.1:6379 if it answers, else a private
Valkey) unless the project defines its own.

A test that needs something the subclass did not supply (payload cases, a fake provider) is
skipped with a reason that says what to add; ``pytest -rs`` lists them. A failure says what to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json as jsonlib
import re
import socket
import time
import types
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Union, get_args, get_origin
from urllib.parse import urlencode

import msgspec
import pytest
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorSettings,
    MalformedPayload,
    Outbound,
    OverflowRule,
    ParseResult,
    PermanentSendError,
    Route,
    Secret,
    SettingsError,
    SignatureError,
    TextFormat,
    TextUnit,
    TransientSendError,
    WebhookRequest,
    WebhookResponse,
)
from connectors.capabilities import TextTooLong, fit_text, measure
from connectors.registry import GROUP, load_registry
from connectors.testing.signers import Signer
from conversation.model import Attachment, Identity, InboundMessage, StatusUpdate

if TYPE_CHECKING:
    from gateway.testing import GatewayUnderTest

# The instance name and receive time the kit uses for every request it builds, so that a payload
# case can spell out the exact InboundMessage / StatusUpdate it must become.
INSTANCE = "conformance"
RECEIVED_AT_MS = 1_700_000_000_000
PUBLIC_URL = "https://gateway.example.test"

_FORM = "application/x-www-form-urlencoded"
_HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
# Settings names that almost always hold a credential; typed plain `str` they would leak in logs.
_SECRET_NAME = re.compile(r"(secret|token|password|passwd|api_key|apikey|private_key|credential)", re.IGNORECASE)
_KIND = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
# How long the kit waits for an ingested message to show up in a customer's thread.
_THREAD_WAIT_SECONDS = 15.0


class _Remove:
    def __repr__(self) -> str:
        return "REMOVE"


REMOVE: Any = _Remove()
"""In `InvalidSettings.changes`: drop this key from the valid settings."""


@dataclass(frozen=True)
class InvalidSettings:
    """Settings that must be refused at construction: the valid ones with `changes` applied.

    `expect` is a fragment the SettingsError message must contain, so that the message an operator
    reads names the key and the problem (e.g. "account_sid must start with 'AC'").
    """

    changes: Mapping[str, Any]
    expect: str


@dataclass(frozen=True)
class PayloadCase:
    """One real webhook the provider sends, and what `parse` must make of it.

    Exactly one expectation kind: `messages` and/or `statuses` (plus `response` if the provider
    reads the answer), `handshake=True` with the `response` to give, or `malformed` with a
    fragment of the MalformedPayload message (an authentic payload that must be dead-lettered).
    `signed=False` for requests the provider does not sign (Meta's GET hub.challenge, which
    carries its own verify token): the kit then sends them as they are.
    """

    name: str
    path: str
    body: bytes = b""
    method: str = "POST"
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    messages: Sequence[InboundMessage] = ()
    statuses: Sequence[StatusUpdate] = ()
    response: WebhookResponse | None = None
    handshake: bool = False
    malformed: str | None = None
    signed: bool = True

    @classmethod
    def form(
        cls, name: str, path: str, fields: Mapping[str, str] | Sequence[tuple[str, str]], **expect: Any
    ) -> PayloadCase:
        """A form-encoded POST (Twilio, Slack slash commands), fields in the order given."""
        items = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
        return cls(name, path, urlencode(items).encode(), content_type=_FORM, **expect)

    @classmethod
    def json(cls, name: str, path: str, payload: Any, **expect: Any) -> PayloadCase:
        """A JSON POST (Slack events, Meta, Telegram); `payload` is encoded compactly."""
        body = jsonlib.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(name, path, body, content_type="application/json", **expect)

    @property
    def expects_content(self) -> bool:
        return bool(self.messages or self.statuses)


class FakeProvider(Protocol):
    """A local stand-in for the provider's API, started with ``async with``.

    `base_url` goes into the connector's `api_base_url`; `messages` lists what the provider
    accepted; `fail_next(status, retry_after=...)` makes the next request fail with that HTTP
    status (and a Retry-After header when given), in the provider's own error format.
    connectors.testing.fake_twilio.FakeTwilio is one.
    """

    @property
    def base_url(self) -> str: ...

    @property
    def messages(self) -> Sequence[Any]: ...

    def fail_next(self, status: int, *, retry_after: float | None = None) -> None: ...

    async def __aenter__(self) -> object: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


# --- the network guard ----------------------------------------------------------------------------


class ForbiddenNetworkAccess(BaseException):
    """Raised inside code that must not touch the network.

    A BaseException so that a connector's ``except Exception`` cannot swallow it; the guard also
    records every attempt, so swallowing it would not hide the I/O anyway.
    """


@contextlib.contextmanager
def forbid_network(owner: str) -> Iterator[list[str]]:
    """Make socket connects and name lookups fail while the block runs; yields the attempts made.

    Patches the socket module, which http.client, urllib3/requests, aiohttp's resolver (through
    getaddrinfo) and asyncio's transports all go through.
    """
    attempts: list[str] = []

    def refuse(name: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            shown = ", ".join([*(repr(a) for a in args if not isinstance(a, socket.socket)),
                               *(f"{k}={v!r}" for k, v in kwargs.items())])
            attempt = f"{name}({shown})"
            attempts.append(attempt)
            raise ForbiddenNetworkAccess(f"{owner} tried network I/O: {attempt}")

        return refused

    targets: list[tuple[Any, str]] = [
        (socket.socket, "connect"),
        (socket.socket, "connect_ex"),
        (socket.socket, "sendto"),
        (socket, "create_connection"),
        (socket, "getaddrinfo"),
        (socket, "gethostbyname"),
        (socket, "gethostbyname_ex"),
    ]
    saved = [(obj, name, getattr(obj, name)) for obj, name in targets]
    for obj, name, _ in saved:
        setattr(obj, name, refuse(f"socket.socket.{name}" if obj is socket.socket else f"socket.{name}"))
    try:
        yield attempts
    finally:
        for obj, name, original in saved:
            setattr(obj, name, original)


# --- the kit ------------------------------------------------------------------------------------


class ConnectorConformance:
    """Subclass as ``TestXxxConformance`` in a test module; every inherited test then runs.

    Required: `connector_class`, `settings` (valid raw settings, as in gateway.toml; `kind` is
    added), and for webhook connectors a `signer`. Recommended: `payload_cases` (real payloads),
    `fake_provider()` (the send tests) and `invalid_settings`. The rest has defaults.
    """

    connector_class: ClassVar[type[Connector[Any]]]
    settings: ClassVar[Mapping[str, Any]]
    invalid_settings: ClassVar[Sequence[InvalidSettings]] = ()
    signer: ClassVar[Signer | None] = None
    payload_cases: ClassVar[Sequence[PayloadCase]] = ()
    # Whom the send tests write to; by default the sender of the first payload case's message.
    recipient: ClassVar[Identity | None] = None
    reply_channel: ClassVar[str | None] = None
    # Settings fields whose names look like credentials but are not (e.g. a public key id).
    not_secret_fields: ClassVar[Collection[str]] = ()
    transient_statuses: ClassVar[Sequence[int]] = (429, 500, 503)
    permanent_statuses: ClassVar[Sequence[int]] = (400, 403, 404)
    instance: ClassVar[str] = INSTANCE
    public_url: ClassVar[str] = PUBLIC_URL

    # --- hooks a subclass may override ---------------------------------------------------------

    def fake_provider(self) -> FakeProvider | None:
        """A new, not yet started fake of the provider's API; None skips the send tests."""
        return None

    def provider_settings(self, base_url: str) -> dict[str, Any]:
        """The valid settings pointed at a provider API at `base_url`."""
        return {**self.settings, "api_base_url": base_url}

    def tamper(self, body: bytes) -> bytes:
        """A forged variant of a signed body; the default appends one byte, which any MAC over the
        body (or over the parameters parsed from it) must notice."""
        return body + b"x"

    # --- building blocks -----------------------------------------------------------------------

    @property
    def connector_name(self) -> str:
        return self._cls().__name__

    def build(self, settings: Mapping[str, Any] | None = None, *, public_url: str | None = None) -> Connector[Any]:
        """An instance from raw settings, through `from_config` as the gateway builds it."""
        cls = self._cls()
        raw = dict(self._settings() if settings is None else settings)
        raw.setdefault("kind", cls.kind)
        return cls.from_config(self.instance, raw, public_url=public_url or self.public_url)

    def request(self, connector: Connector[Any], case: PayloadCase, *, now: float | None = None,
                sign: bool = True) -> WebhookRequest:
        """`case` as the gateway would hand it to the connector; signed by `signer` unless told not."""
        url = connector.webhook_url(case.path) + (f"?{urlencode(dict(case.query))}" if case.query else "")
        headers = dict(case.headers)
        if case.content_type and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = case.content_type
        request = _webhook_request(case, url, headers, case.body)
        if sign and case.signed and self.signer is not None:
            signed = self.signer.headers(request, now=time.time() if now is None else now)
            request = _webhook_request(case, url, {**headers, **signed}, case.body)
        return request

    def _cls(self) -> type[Connector[Any]]:
        cls = getattr(self, "connector_class", None)
        if cls is None:
            pytest.fail(f"{type(self).__name__} must set `connector_class = YourConnector`", pytrace=False)
        if not (inspect.isclass(cls) and issubclass(cls, Connector)):
            pytest.fail(f"{type(self).__name__}.connector_class is {cls!r}, not a subclass of "
                        "connectors.base.Connector", pytrace=False)
        return cls

    def _settings(self) -> Mapping[str, Any]:
        settings = getattr(self, "settings", None)
        if not isinstance(settings, Mapping):
            pytest.fail(f"{type(self).__name__} must set `settings = {{...}}`: valid settings for "
                        f"{self.connector_name}, as in a [connectors.<instance>] table", pytrace=False)
        return settings

    def _routes(self, connector: Connector[Any]) -> list[Route]:
        return list(connector.routes())

    def _probe(self, connector: Connector[Any]) -> PayloadCase:
        """A stand-in request for the signature tests when no payload case is given."""
        routes = self._routes(connector)
        post = next((r for r in routes if r.method.upper() == "POST"), routes[0])
        return PayloadCase.json("probe", post.path, {"conformance": "probe"}, method=post.method.upper())

    def _auth_case(self, connector: Connector[Any]) -> PayloadCase:
        for case in self.payload_cases:
            if case.signed and case.body and not case.handshake:
                return case
        return self._probe(connector)

    def _need_routes(self, connector: Connector[Any]) -> None:
        if not self._routes(connector):
            pytest.skip(f"{self.connector_name} serves no webhook routes (it polls): nothing to verify or post")

    def _need_signer(self) -> Signer:
        if self.signer is None:
            pytest.fail(f"{type(self).__name__} has no `signer`: set `signer = ...` to a "
                        "connectors.testing Signer that signs requests as the provider does "
                        "(TwilioSigner, SlackSigner, HmacSha256Signer, SecretTokenSigner, or your own "
                        "subclass); every webhook the gateway accepts must be authenticated", pytrace=False)
        return self.signer

    def _recipient(self) -> tuple[Identity, str]:
        channel = self.reply_channel
        if self.recipient is not None:
            return self.recipient, channel or self._cls().channel
        for case in self.payload_cases:
            for message in case.messages:
                return message.sender, channel or message.channel
        pytest.skip(f"no recipient for the send tests: set `recipient = Identity(...)` on "
                    f"{type(self).__name__}, or add a payload case whose message has a sender")

    def _outbound(self, text: str, attachments: Sequence[Attachment] = ()) -> Outbound:
        to, channel = self._recipient()
        return Outbound(message_id=f"conformance-{uuid.uuid4().hex}", channel=channel, to=to, text=text,
                        attachments=tuple(attachments))

    def _need_provider(self, why: str) -> FakeProvider:
        provider = self.fake_provider()
        if provider is None:
            pytest.skip(f"{why}: no fake provider; override `fake_provider()` in {type(self).__name__} to "
                        "return a local fake of the provider's API (see connectors.testing.FakeProvider)")
        return provider

    # --- structure ------------------------------------------------------------------------------

    def test_entry_point_resolves(self) -> None:
        cls = self._cls()
        kind = getattr(cls, "kind", None)
        registry = load_registry()
        info = registry.installed.get(kind) if isinstance(kind, str) else None
        if info is not None and info.cls is cls:
            return
        target = f"{cls.__module__}:{cls.__qualname__}"
        named: list[str] = []
        for ep in entry_points(group=GROUP):
            try:
                loaded = ep.load()
            except Exception:  # another package's broken plugin is reported below if it is ours
                continue
            if loaded is cls:
                named.append(ep.name)
        if named and kind not in named:
            pytest.fail(
                f"{cls.__name__}.kind is {kind!r} but its entry point is named {named[0]!r}: make them equal "
                f"(set `kind = {named[0]!r}` on the class, or rename the entry point in the "
                f"[project.entry-points.\"{GROUP}\"] table of pyproject.toml to {kind!r} and reinstall)",
                pytrace=False)
        if isinstance(kind, str) and kind in registry.broken:
            pytest.fail(f"the entry point for kind {kind!r} is installed but unusable: {registry.broken[kind]}",
                        pytrace=False)
        if info is not None:
            pytest.fail(f"entry point {kind!r} loads {info.cls.__module__}.{info.cls.__qualname__} from "
                        f"{info.distribution}, not {cls.__module__}.{cls.__qualname__}: point it at {target!r}",
                        pytrace=False)
        pytest.fail(
            f"no entry point in group {GROUP!r} loads {cls.__name__}: add\n\n"
            f"    [project.entry-points.\"{GROUP}\"]\n    {kind} = \"{target}\"\n\n"
            "to the package's pyproject.toml and reinstall it (pip install -e .)", pytrace=False)

    def test_class_declares_the_interface(self) -> None:
        cls = self._cls()
        name = cls.__name__
        problems: list[str] = []
        kind = getattr(cls, "kind", None)
        if not isinstance(kind, str) or not _KIND.match(kind):
            problems.append(f"{name}.kind is {kind!r}: declare `kind = \"...\"`, lowercase letters, digits, "
                            "'_', '-' or '.', equal to the entry-point name")
        channel = getattr(cls, "channel", None)
        if not isinstance(channel, str) or not channel:
            problems.append(f"{name}.channel is {channel!r}: declare the medium its messages are on, "
                            "e.g. `channel = \"sms\"`")
        settings = getattr(cls, "Settings", None)
        if not (inspect.isclass(settings) and issubclass(settings, ConnectorSettings)):
            problems.append(f"{name}.Settings is {settings!r}: declare a subclass of "
                            "connectors.base.ConnectorSettings")
        if not isinstance(getattr(cls, "capabilities", None), Capabilities):
            problems.append(f"{name}.capabilities must be a connectors.base.Capabilities")
        if not isinstance(getattr(cls, "malformed_response", None), WebhookResponse):
            problems.append(f"{name}.malformed_response must be a connectors.base.WebhookResponse")
        if inspect.isabstract(cls):
            missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
            problems.append(f"{name} does not implement {missing}")
        for method in ("send", "aclose"):
            if not inspect.iscoroutinefunction(getattr(cls, method, None)):
                problems.append(f"{name}.{method} must be `async def`")
        for method in ("verify", "parse", "routes"):
            if inspect.iscoroutinefunction(getattr(cls, method, None)):
                problems.append(f"{name}.{method} must be a plain `def`: the gateway calls it on the ack path "
                                "without awaiting")
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)

        connector = self.build()
        routes = connector.routes()
        polls = type(connector).poll is not Connector.poll
        if not routes and not polls:
            problems.append(f"{name}.routes() is empty and {name} does not override poll(): it can receive "
                            "nothing; return its webhook Route(method, path)s")
        seen: set[tuple[str, str]] = set()
        for route in routes:
            if not isinstance(route, Route):
                problems.append(f"{name}.routes() returned {route!r}: return connectors.base.Route objects")
                continue
            if route.method.upper() not in _HTTP_METHODS:
                problems.append(f"route {route!r}: method must be one of {sorted(_HTTP_METHODS)}")
            if route.path.startswith("/") or not route.path:
                problems.append(f"route {route!r}: the path is relative to /webhooks/{{instance}}/, "
                                f"write {route.path.strip('/')!r}")
            if (route.method.upper(), route.path) in seen:
                problems.append(f"route {route!r} is declared twice")
            seen.add((route.method.upper(), route.path))
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)

    def test_capabilities_are_valid(self) -> None:
        cls = self._cls()
        problems = _capability_problems(f"{cls.__name__}.capabilities", cls.capabilities)
        extra: Mapping[str, Capabilities] = getattr(cls, "channel_capabilities", {}) or {}
        for channel, caps in extra.items():
            label = f"{cls.__name__}.channel_capabilities[{channel!r}]"
            if not isinstance(caps, Capabilities):
                problems.append(f"{label} must be a connectors.base.Capabilities")
                continue
            problems += _capability_problems(label, caps)
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)

    # --- settings -------------------------------------------------------------------------------

    def test_valid_settings_build_without_io(self) -> None:
        owner = f"constructing {self.connector_name}"
        try:
            with forbid_network(owner):
                self.build()
        except SettingsError as exc:
            pytest.fail(f"the valid `settings` of {type(self).__name__} were refused: {exc}. Fix the test's "
                        f"settings or {self.connector_name}.Settings", pytrace=False)
        except ForbiddenNetworkAccess as exc:
            pytest.fail(f"{exc}. Construction must not do I/O (check-config builds every connector and "
                        "drops it): open clients lazily, on first send()", pytrace=False)

    def test_bad_settings_fail_at_construction(self) -> None:
        cls = self._cls()
        valid = dict(self._settings())
        checks: list[tuple[str, dict[str, Any], str]] = [
            ("an unknown key", {**valid, "no_such_setting": "x"}, "no_such_setting"),
        ]
        for f in msgspec.structs.fields(cls.Settings):
            if f.required and f.encode_name != "kind":
                without = {k: v for k, v in valid.items() if k != f.encode_name}
                checks.append((f"no {f.encode_name}", without, f.encode_name))
            if _is_secret_type(f.type):  # TOML makes `token = 12345` easy to write
                checks.append((f"a number as {f.encode_name}", {**valid, f.encode_name: 12345}, f.encode_name))
        for case in self.invalid_settings:
            raw = dict(valid)
            for key, value in case.changes.items():
                if value is REMOVE:
                    raw.pop(key, None)
                else:
                    raw[key] = value
            checks.append((f"changes {dict(case.changes)!r}", raw, case.expect))

        problems: list[str] = []
        for label, raw, fragment in checks:
            try:
                with forbid_network(f"constructing {cls.__name__}"):
                    self.build(raw)
            except SettingsError as exc:
                if fragment.lower() not in str(exc).lower():
                    problems.append(f"settings with {label}: the SettingsError says {str(exc)!r}, which does not "
                                    f"mention {fragment!r}; name the key and what is wrong with it")
            except ForbiddenNetworkAccess as exc:
                problems.append(f"settings with {label}: {exc}; construction must not do I/O")
            except Exception as exc:
                problems.append(f"settings with {label}: raised {type(exc).__name__}: {exc} instead of "
                                f"SettingsError; validate in {cls.__name__}.Settings.__post_init__ (raise "
                                "ValueError there: from_config turns it into a SettingsError naming the key)")
            else:
                problems.append(f"settings with {label} were accepted: {cls.__name__} must refuse them at "
                                "construction, so that check-config catches the mistake before any traffic")
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)

    def test_secrets_are_redacted(self) -> None:
        cls = self._cls()
        valid = self._settings()
        connector = self.build()
        secret_fields: list[str] = []
        problems: list[str] = []
        for f in msgspec.structs.fields(cls.Settings):
            if _is_secret_type(f.type):
                secret_fields.append(f.encode_name)
            elif _SECRET_NAME.search(f.encode_name) and f.encode_name not in self.not_secret_fields:
                problems.append(f"{cls.__name__}.Settings.{f.name} looks like a credential but is typed "
                                f"{_type_name(f.type)}: declare it as connectors.base.Secret so repr and logs "
                                f"mask it (or list it in `not_secret_fields` if it is not secret)")
        shown = {"repr(settings)": repr(connector.settings), "repr(connector)": repr(connector),
                 "str(connector)": str(connector)}
        for name in secret_fields:
            value = getattr(connector.settings, name, None)
            raw = valid.get(name)
            if value is None or raw is None:
                continue
            if not isinstance(value, Secret):
                problems.append(f"settings.{name} is a {type(value).__name__}, not a Secret, after construction; "
                                "keep the Secret type (Settings.__post_init__ may wrap it)")
            for where, text in shown.items():
                if str(raw) and str(raw) in text:
                    problems.append(f"{where} shows the value of the secret {name!r}: {text}")
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)
        if not secret_fields:
            pytest.skip(f"{cls.__name__}.Settings declares no Secret field: nothing to redact")

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

    # --- sending --------------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_long_text_follows_capabilities(self) -> None:
        cls = self._cls()
        caps = cls.capabilities
        text = _long_text(caps)
        try:
            parts = fit_text(caps, text)
        except TextTooLong:
            if caps.overflow is not OverflowRule.REFUSE:
                raise
            pytest.skip("overflow is REFUSE: the core refuses over-long text before send(); nothing to send")
        limit = caps.max_text_length
        for part in parts:
            size = measure(part, caps.text_unit)
            assert size <= limit, (f"a part measures {size} {caps.text_unit.value}, over max_text_length {limit}")
        if caps.overflow is OverflowRule.SPLIT:
            assert len(parts) > 1, "SPLIT must give several parts for a text over the limit"
        longest = max(parts, key=lambda p: measure(p, caps.text_unit))
        provider = self._need_provider("the parts fit; sending one")
        async with provider:
            connector = self.build(self.provider_settings(provider.base_url))
            try:
                before = len(provider.messages)
                try:
                    provider_id = await connector.send(self._outbound(longest))
                except (TransientSendError, PermanentSendError) as exc:
                    pytest.fail(
                        f"the provider refused a text of {measure(longest, caps.text_unit)} {caps.text_unit.value}, "
                        f"within the declared max_text_length {limit}: {exc.reason}. Declare the limit the "
                        "provider really has (the core splits text by it)", pytrace=False)
                _check_provider_id(self.connector_name, provider_id)
                assert len(provider.messages) > before, "send() returned an id but the provider received nothing"
            finally:
                await connector.aclose()

    @pytest.mark.asyncio
    async def test_attachments_follow_capabilities(self) -> None:
        caps = self._cls().capabilities
        if not caps.attachment_kinds:
            pytest.skip("no attachment_kinds declared: the core turns attachments into links, send() sees none")
        provider = self._need_provider("attachments within the declared limits")
        async with _serving(caps) as attachments, provider:
            connector = self.build(self.provider_settings(provider.base_url))
            try:
                try:
                    provider_id = await connector.send(self._outbound("Here are the files", attachments))
                except (TransientSendError, PermanentSendError) as exc:
                    pytest.fail(f"sending {len(attachments)} attachment(s) of the declared kinds and size was "
                                f"refused: {exc.reason}. Declare what the provider really accepts "
                                "(attachment_kinds, max_attachments, max_attachment_bytes)", pytrace=False)
                _check_provider_id(self.connector_name, provider_id)
            finally:
                await connector.aclose()

    @pytest.mark.asyncio
    async def test_provider_errors_map_to_send_errors(self) -> None:
        provider = self._need_provider("429/5xx/4xx mapping")
        retry_after = 7.0
        problems: list[str] = []
        async with provider:
            connector = self.build(self.provider_settings(provider.base_url))
            try:
                for status in [*self.transient_statuses, *self.permanent_statuses]:
                    transient = status in self.transient_statuses
                    provider.fail_next(status, retry_after=retry_after if status == 429 else None)
                    want = TransientSendError if transient else PermanentSendError
                    why = ("so the dispatcher retries it with backoff" if transient
                           else "so the reply fails at once with the provider's reason instead of retrying")
                    try:
                        provider_id = await connector.send(self._outbound("Error mapping check"))
                    except want as exc:
                        if not exc.reason:
                            problems.append(f"HTTP {status}: {want.__name__} without a reason; pass the "
                                            "provider's error message, agents read it")
                        if status == 429 and (exc.retry_after is None or abs(exc.retry_after - retry_after) > 1):
                            problems.append(f"HTTP 429 with Retry-After: {retry_after:g}: retry_after is "
                                            f"{exc.retry_after!r}; read the Retry-After header")
                    except (TransientSendError, PermanentSendError) as exc:
                        problems.append(f"HTTP {status}: send() raised {type(exc).__name__} ({exc.reason}); "
                                        f"it must raise {want.__name__} {why}")
                    except Exception as exc:
                        problems.append(f"HTTP {status}: send() let {type(exc).__name__}: {exc} escape; catch it "
                                        f"and raise {want.__name__} {why}")
                    else:
                        problems.append(f"HTTP {status}: send() returned {provider_id!r} although the provider "
                                        f"answered {status}; raise {want.__name__} {why}")
                # The connector must still work after errors (no poisoned client).
                try:
                    _check_provider_id(self.connector_name, await connector.send(self._outbound("After errors")))
                except (TransientSendError, PermanentSendError) as exc:
                    problems.append(f"after the scripted errors, a normal send failed: {exc.reason}")
            finally:
                await connector.aclose()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)

    @pytest.mark.asyncio
    async def test_unreachable_provider_is_transient(self) -> None:
        from gateway.testing import free_port

        # Gated on the fake provider like every send test: without one, send() is not built yet.
        self._need_provider("send() against an unreachable provider")
        outbound = self._outbound("Is anyone there?")
        connector = self.build(self.provider_settings(f"http://127.0.0.1:{free_port()}"))
        try:
            try:
                async with asyncio.timeout(30):
                    await connector.send(outbound)
            except TransientSendError:
                return
            except TimeoutError:
                pytest.fail("with nothing listening at api_base_url, send() was still trying after 30 s; give up "
                            "on connection errors at once with TransientSendError (the dispatcher retries)",
                            pytrace=False)
            except Exception as exc:
                pytest.fail(f"with nothing listening at api_base_url, send() raised {type(exc).__name__}: {exc}; "
                            "connection errors and timeouts must raise TransientSendError so the dispatcher "
                            "retries", pytrace=False)
            pytest.fail("with nothing listening at api_base_url, send() returned normally: does it use "
                        "api_base_url?", pytrace=False)
        finally:
            await connector.aclose()

    @pytest.mark.asyncio
    async def test_aclose_can_run_twice(self) -> None:
        provider = self.fake_provider()
        if provider is None:
            connector = self.build()
            await connector.aclose()
            await connector.aclose()
            return
        async with provider:
            connector = self.build(self.provider_settings(provider.base_url))
            # One send first, so that aclose has open clients to release.
            with contextlib.suppress(TransientSendError, PermanentSendError):
                await connector.send(self._outbound("Before closing"))
            await connector.aclose()
            await connector.aclose()

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
            wanted = {(m.sender, m.provider_message_id): case.name for case in cases for m in case.messages}
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


# --- helpers --------------------------------------------------------------------------------------


def _webhook_request(case: PayloadCase, url: str, headers: Mapping[str, str], body: bytes) -> WebhookRequest:
    # The gateway hands connectors aiohttp's case-insensitive multidicts; so does the kit, so that
    # a connector cannot come to rely on a header's spelling.
    return WebhookRequest(
        method=case.method.upper(),
        url=url,
        path=case.path,
        headers=CIMultiDictProxy(CIMultiDict(headers)),
        query=MultiDictProxy(MultiDict(case.query)),
        body=body,
        received_at_ms=RECEIVED_AT_MS,
    )


def _replace_headers(request: WebhookRequest, headers: Mapping[str, str]) -> WebhookRequest:
    return msgspec.structs.replace(request, headers=CIMultiDictProxy(CIMultiDict(headers)))


def _plain(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items()}


def _garble(value: str) -> str:
    """A same-length value that differs in every character, so length checks cannot save it."""
    return "".join("1" if c == "0" else "0" for c in value) if value else "0"


async def _post(http: Any, gw: GatewayUnderTest, request: WebhookRequest) -> tuple[int, bytes, str]:
    url = gw.url(f"/webhooks/{request.url.split('/webhooks/', 1)[1]}")
    async with http.request(request.method, url, data=request.body or None, headers=_plain(request.headers),
                            allow_redirects=False) as resp:
        return int(resp.status), bytes(await resp.read()), str(resp.headers.get("Content-Type", ""))


def _capability_problems(label: str, caps: Capabilities) -> list[str]:
    problems: list[str] = []
    if not isinstance(caps.max_text_length, int) or caps.max_text_length <= 0:
        problems.append(f"{label}.max_text_length is {caps.max_text_length!r}: declare the longest text the "
                        "channel accepts, in text_unit (a positive integer)")
    if not isinstance(caps.text_unit, TextUnit):
        problems.append(f"{label}.text_unit is {caps.text_unit!r}: use a connectors.base.TextUnit")
    if not isinstance(caps.overflow, OverflowRule):
        problems.append(f"{label}.overflow is {caps.overflow!r}: use a connectors.base.OverflowRule")
    if not caps.formats:
        problems.append(f"{label}.formats is empty: declare at least TextFormat.PLAIN")
    for fmt in caps.formats:
        if not isinstance(fmt, TextFormat):
            problems.append(f"{label}.formats contains {fmt!r}, not a TextFormat (known: "
                            f"{', '.join(f.name for f in TextFormat)})")
    if caps.attachment_kinds:
        if caps.max_attachments <= 0:
            problems.append(f"{label} declares attachment_kinds {caps.attachment_kinds} but max_attachments is "
                            f"{caps.max_attachments}: allow at least one, or declare no kinds")
        if caps.max_attachment_bytes <= 0:
            problems.append(f"{label} declares attachment_kinds but max_attachment_bytes is "
                            f"{caps.max_attachment_bytes}: declare the provider's size limit")
        for kind in caps.attachment_kinds:
            if "/" not in kind:
                problems.append(f"{label}.attachment_kinds contains {kind!r}: use MIME types or prefixes such "
                                "as 'image/' or 'application/pdf'")
    elif caps.max_attachments or caps.max_attachment_bytes:
        problems.append(f"{label} allows attachments (max_attachments {caps.max_attachments}, "
                        f"max_attachment_bytes {caps.max_attachment_bytes}) but declares no attachment_kinds: "
                        "list the MIME types it accepts, or set both limits to 0")
    if caps.reply_window_seconds is not None and caps.reply_window_seconds <= 0:
        problems.append(f"{label}.reply_window_seconds is {caps.reply_window_seconds}: positive, or None for no window")
    if caps.outside_window is not None and caps.reply_window_seconds is None:
        problems.append(f"{label}.outside_window is {caps.outside_window!r} without a reply_window_seconds")
    if caps.outside_window not in (None, "template", "tag", "none"):
        problems.append(f"{label}.outside_window is {caps.outside_window!r}: 'template', 'tag', 'none' or None")
    if not 0 < caps.ack_deadline_seconds <= 60:
        problems.append(f"{label}.ack_deadline_seconds is {caps.ack_deadline_seconds}: declare how long the "
                        "provider waits for an answer before retrying (Slack 3, Twilio 15)")
    if caps.rate_limit_per_second is not None and caps.rate_limit_per_second <= 0:
        problems.append(f"{label}.rate_limit_per_second is {caps.rate_limit_per_second}: positive, or None")
    return problems


def _is_secret_type(tp: Any) -> bool:
    if tp is Secret:
        return True
    if get_origin(tp) in (Union, types.UnionType):
        return any(_is_secret_type(arg) for arg in get_args(tp))
    return False


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


def _compare(case: str, what: str, got: list[Any], want: list[Any]) -> list[str]:
    if len(got) != len(want):
        return [f"case {case!r}: parse() gave {len(got)} {what}, expected {len(want)}: got {got!r}"]
    problems = []
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if type(g) is not type(w):
            problems.append(f"case {case!r}: {what}[{i}] is a {type(g).__name__}, expected {type(w).__name__}")
            continue
        for name in w.__struct_fields__:
            gv, wv = msgspec.to_builtins(getattr(g, name)), msgspec.to_builtins(getattr(w, name))
            if gv != wv:
                problems.append(f"case {case!r}: {what}[{i}].{name} is {gv!r}, expected {wv!r}")
    return problems


def _io_message(owner: str, attempts: Sequence[str]) -> str:
    return (f"{owner} tried network I/O: {attempts[0]}. parse() must be pure: the gateway calls it on the ack path "
            "before answering the provider. Use only the request; move lookups (profiles, media downloads) to "
            "send() or to a later step")


def _check_provider_id(name: str, provider_id: object) -> None:
    if not isinstance(provider_id, str) or not provider_id:
        pytest.fail(f"{name}.send() returned {provider_id!r}: return the provider's message id (a non-empty str), "
                    "status callbacks are matched by it", pytrace=False)


def _long_text(caps: Capabilities) -> str:
    """Prose over twice the limit, with a non-ASCII word so that bytes and characters differ."""
    sentence = "Your order has shipped and the café will hold it until Friday. "
    text = sentence
    while measure(text, caps.text_unit) <= 2 * caps.max_text_length:
        text += text
    return text.strip()


def _attachments(caps: Capabilities, base_url: str) -> list[Attachment]:
    size = min(caps.max_attachment_bytes, 10_000)
    out = []
    for i in range(caps.max_attachments):
        kind = caps.attachment_kinds[i % len(caps.attachment_kinds)]
        content_type = kind + _SUBTYPE.get(kind, "octet-stream") if kind.endswith("/") else kind
        out.append(Attachment(url=f"{base_url}/conformance/{i}", content_type=content_type,
                              name=f"file-{i}", size=size))
    return out


@contextlib.asynccontextmanager
async def _serving(caps: Capabilities) -> AsyncIterator[list[Attachment]]:
    """The attachments of the send test, served for real on 127.0.0.1: connectors whose channel
    cannot carry links (email) fetch the files; the others hand the URLs to the provider."""
    from aiohttp import web

    from gateway.testing import free_port

    port = free_port()
    files = {a.url.rpartition("/")[2]: a for a in _attachments(caps, f"http://127.0.0.1:{port}")}

    async def serve(request: web.Request) -> web.Response:
        found = files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        return web.Response(body=b"\0" * (found.size or 0), content_type=found.content_type)

    app = web.Application()
    app.router.add_get("/conformance/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield list(files.values())
    finally:
        await runner.cleanup()


_SUBTYPE = {"image/": "png", "video/": "mp4", "audio/": "mpeg", "text/": "plain", "application/": "pdf"}


__all__ = [
    "INSTANCE",
    "PUBLIC_URL",
    "RECEIVED_AT_MS",
    "REMOVE",
    "ConnectorConformance",
    "FakeProvider",
    "ForbiddenNetworkAccess",
    "InvalidSettings",
    "PayloadCase",
    "forbid_network",
]
