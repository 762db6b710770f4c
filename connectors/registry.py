"""Which connector kinds are installed, found through the ``omnigateway.connectors`` entry points.

A connector package declares, in its pyproject.toml::

    [project.entry-points."omnigateway.connectors"]
    acme = "acme_connector:AcmeConnector"

The entry-point name is the `kind` users write in ``[connectors.<instance>]``. A broken plugin
must not take the gateway down with it, nor be silently ignored: each one becomes a line in
`Registry.problems` that names the distribution at fault and what to fix, and `omnigateway
connectors` / `check-config` show those lines.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from connectors.base import Connector, ConnectorSettings, SettingsError

GROUP = "omnigateway.connectors"


@dataclass(frozen=True)
class ConnectorInfo:
    """An installed connector kind and where it came from."""

    kind: str
    cls: type[Connector[Any]]
    distribution: str  # "acme-connector 1.2.0"
    target: str  # the entry point's value, "acme_connector:AcmeConnector"


@dataclass
class Registry:
    installed: dict[str, ConnectorInfo] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # Kinds that were declared but could not be loaded, with the reason; a config that uses one
    # gets that reason instead of a misleading "unknown kind".
    broken: dict[str, str] = field(default_factory=dict)

    @property
    def kinds(self) -> dict[str, type[Connector[Any]]]:
        return {kind: info.cls for kind, info in self.installed.items()}

    def build(self, instance: str, raw_settings: Mapping[str, Any], public_url: str) -> Connector[Any]:
        """One configured connector instance. Raises SettingsError naming the key at fault."""
        kind = raw_settings.get("kind")
        available = ", ".join(sorted(self.installed)) or "none"
        if kind is None:
            raise SettingsError(f"connectors.{instance}.kind: missing; set the connector kind "
                                f"(installed: {available})")
        if not isinstance(kind, str):
            raise SettingsError(f"connectors.{instance}.kind: expected a string, got {type(kind).__name__}")
        if kind in self.broken:
            raise SettingsError(f"connectors.{instance}: connector kind '{kind}' is installed but "
                                f"unusable: {self.broken[kind]}")
        info = self.installed.get(kind)
        if info is None:
            raise SettingsError(f"connectors.{instance}: unknown connector kind '{kind}' (installed: {available})")
        try:
            return info.cls.from_config(instance, raw_settings, public_url=public_url)
        except SettingsError:
            raise
        except Exception as exc:  # a plugin's bug must read as the plugin's, not as a gateway crash
            raise SettingsError(f"connectors.{instance}: {info.distribution} ({info.target}) failed to "
                                f"build the connector: {type(exc).__name__}: {exc}") from exc


def load_registry(eps: Iterable[EntryPoint] | None = None) -> Registry:
    """Load every connector entry point (or the given ones, which tests use to inject plugins)."""
    registry = Registry()
    candidates: dict[str, list[ConnectorInfo]] = {}
    for ep in entry_points(group=GROUP) if eps is None else eps:
        info = _load(ep, registry)
        if info is not None:
            candidates.setdefault(ep.name, []).append(info)
    for kind, infos in sorted(candidates.items()):
        sources = sorted({i.distribution for i in infos})
        if len(sources) == 1:
            registry.installed[kind] = infos[0]
            continue
        # Which one wins would depend on sys.path order; refuse both rather than guess.
        reason = (f"connector kind '{kind}' is provided by {' and by '.join(sources)}; uninstall one of "
                  f"them or rename one entry point in the '{GROUP}' group")
        registry.problems.append(reason)
        registry.broken[kind] = reason
    return registry


def _load(ep: EntryPoint, registry: Registry) -> ConnectorInfo | None:
    source = _distribution(ep)
    where = f"{source}: entry point '{ep.name} = {ep.value}'"

    def problem(why: str) -> None:
        registry.problems.append(f"{where} {why}")
        registry.broken.setdefault(ep.name, f"{where} {why}")

    try:
        obj = ep.load()
    except Exception as exc:
        problem(f"failed to import ({type(exc).__name__}: {exc}); reinstall that package or "
                "install its missing dependencies")
        return None
    if not (inspect.isclass(obj) and issubclass(obj, Connector)):
        problem("does not name a subclass of connectors.base.Connector; point it at the connector class")
        return None
    declared = getattr(obj, "kind", None)
    if declared != ep.name:
        problem(f"names {obj.__qualname__}, whose kind is {declared!r}; make the entry-point name and "
                "the class's `kind` attribute equal")
        return None
    settings = getattr(obj, "Settings", None)
    if not (inspect.isclass(settings) and issubclass(settings, ConnectorSettings)):
        problem(f"names {obj.__qualname__}, which has no `Settings` subclass of "
                "connectors.base.ConnectorSettings; declare one")
        return None
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
        problem(f"names {obj.__qualname__}, which does not implement {missing}")
        return None
    return ConnectorInfo(kind=ep.name, cls=obj, distribution=source, target=ep.value)


def _distribution(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is not None:
        return f"{dist.metadata['Name']} {dist.version}"
    # An entry point built by hand (tests) has no distribution; its top-level package is the next
    # best thing to name.
    return f"package {ep.value.split(':')[0].split('.')[0]}"


__all__ = ["GROUP", "ConnectorInfo", "Registry", "load_registry"]
