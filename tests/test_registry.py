"""Connector discovery through entry points, as an integrator's package experiences it."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import NoReturn

import pytest

from connectors.base import SettingsError
from connectors.registry import GROUP, load_registry

PLUGIN = '''
from connectors.base import Capabilities, Connector, ConnectorSettings, ParseResult, Route


class AcmeSettings(ConnectorSettings, kw_only=True):
    kind: str = "acme"
    api_key: str


class AcmeConnector(Connector[AcmeSettings]):
    kind = "acme"
    channel = "webchat"
    Settings = AcmeSettings
    capabilities = Capabilities(max_text_length=1000)

    def routes(self):
        return [Route("POST", "events")]

    def verify(self, request):
        pass

    def parse(self, request):
        return ParseResult()

    async def send(self, outbound):
        return "acme-1"


class AcmeTwilio(AcmeConnector):
    kind = "twilio"


class Unfinished(Connector[AcmeSettings]):
    kind = "unfinished"
    channel = "webchat"
    Settings = AcmeSettings
    capabilities = Capabilities(max_text_length=1)


class NotAConnector:
    kind = "plain"
'''

ENTRY_POINTS = """
[omnigateway.connectors]
acme = {mod}:AcmeConnector
twilio = {mod}:AcmeTwilio
renamed = {mod}:AcmeConnector
plain = {mod}:NotAConnector
unfinished = {mod}:Unfinished
gone = acme_module_that_does_not_exist:Thing
"""


@pytest.fixture
def acme_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A real (if tiny) distribution `acme-connectors 1.0` on sys.path, as pip would leave it."""
    module = f"acme_plugin_{abs(hash(request.node.name))}"
    (tmp_path / f"{module}.py").write_text(PLUGIN)
    info = tmp_path / "acme_connectors-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-connectors\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(ENTRY_POINTS.format(mod=module)))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield module
    sys.modules.pop(module, None)


def test_the_builtin_twilio_connector_is_discovered() -> None:
    registry = load_registry()
    assert "twilio" in registry.kinds, registry.problems
    info = registry.installed["twilio"]
    assert info.distribution.startswith("omnichannel-gateway ")
    assert info.target == "connectors.sms.twilio:TwilioConnector"
    assert registry.problems == []


def test_a_plugin_package_adds_its_kind(acme_installed: str) -> None:
    registry = load_registry()
    assert registry.installed["acme"].distribution == "acme-connectors 1.0"
    connector = registry.build("chat", {"kind": "acme", "api_key": "k"}, "https://gw.example.com/")
    assert connector.instance == "chat"
    assert connector.webhook_url("events") == "https://gw.example.com/webhooks/chat/events"


def test_each_broken_entry_point_is_a_problem_naming_its_package_and_the_fix(acme_installed: str) -> None:
    registry = load_registry()
    problems = "\n".join(registry.problems)

    # Two packages claim "twilio": neither is used, and both are named.
    assert "connector kind 'twilio' is provided by acme-connectors 1.0 and by omnichannel-gateway" in problems
    assert "twilio" not in registry.kinds

    def problem_for(name: str) -> str:
        found = [p for p in registry.problems if f"entry point '{name} = " in p]
        assert len(found) == 1, registry.problems
        assert found[0].startswith("acme-connectors 1.0: "), found[0]
        return found[0]

    assert "failed to import (ModuleNotFoundError" in problem_for("gone")
    assert "does not name a subclass of connectors.base.Connector" in problem_for("plain")
    assert "whose kind is 'acme'; make the entry-point name and the class's `kind` attribute equal" \
        in problem_for("renamed")
    assert "does not implement parse, routes, send, verify" in problem_for("unfinished")
    assert set(registry.kinds) == {"acme", "email", "instagram", "messenger", "slack", "telegram", "webchat",
                                   "whatsapp"}


def test_a_config_using_a_broken_kind_is_told_why(acme_installed: str) -> None:
    registry = load_registry()
    with pytest.raises(SettingsError, match=r"connectors.sms: connector kind 'twilio' is installed but unusable: "
                                            r"connector kind 'twilio' is provided by"):
        registry.build("sms", {"kind": "twilio"}, "http://127.0.0.1:8080")


def test_entry_points_can_be_injected() -> None:
    ep = EntryPoint(name="ghost", value="no_such_package.sub:Ghost", group=GROUP)
    registry = load_registry([ep])
    assert registry.kinds == {}
    assert registry.problems[0].startswith("package no_such_package: entry point 'ghost = no_such_package.sub:Ghost'")


def test_unknown_and_missing_kinds() -> None:
    registry = load_registry()
    with pytest.raises(SettingsError, match=r"^connectors.sms: unknown connector kind 'twilo' "
                                            r"\(installed: email, instagram, messenger, slack, telegram, twilio, "
                                            r"webchat, whatsapp\)$"):
        registry.build("sms", {"kind": "twilo"}, "http://127.0.0.1:8080")
    with pytest.raises(SettingsError, match=r"^connectors.sms.kind: missing"):
        registry.build("sms", {}, "http://127.0.0.1:8080")


def test_a_plugin_that_crashes_while_building_is_reported_as_its_fault(acme_installed: str) -> None:
    registry = load_registry()
    acme = registry.installed["acme"]

    def explode(*args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError("plugin bug")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(acme.cls, "from_config", explode)
        with pytest.raises(SettingsError, match=rf"^connectors.x: acme-connectors 1.0 \({acme.target}\) failed "
                                                r"to build the connector: RuntimeError: plugin bug$"):
            registry.build("x", {"kind": "acme"}, "http://127.0.0.1:8080")
