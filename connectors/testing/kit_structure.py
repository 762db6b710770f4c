"""The kit's tests of what a connector declares: entry point, interface, capabilities, settings, secrets."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorSettings,
    Route,
    Secret,
    SettingsError,
    WebhookResponse,
)
from connectors.registry import GROUP, load_registry

if TYPE_CHECKING:
    pass
from connectors.testing._kit_base import KitBase
from connectors.testing._kit_helpers import _capability_problems, _is_secret_type, _type_name
from connectors.testing.cases import _HTTP_METHODS, _KIND, _SECRET_NAME, REMOVE
from connectors.testing.netguard import ForbiddenNetworkAccess, forbid_network


class StructureTests(KitBase):
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
