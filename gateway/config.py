"""Configuration: one TOML file, overridable key by key from the environment.

Precedence, lowest first: the struct defaults below, the TOML file, then ``OMNIGATEWAY_*``
variables (``OMNIGATEWAY_GATEWAY__PORT=9000``: a double underscore separates levels, names are
matched case-insensitively). Any string may refer to the environment as ``${NAME}`` or
``${NAME:-default}``, which is how secrets stay out of the file; ``$${`` keeps a literal ``${``.

Validation reports every bad key at once, each as ``<key path>: <why>``, because an operator
fixing a config file one error per restart is an operator losing a morning.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
import msgspec.inspect
from msgspec import Meta

from conversation.routing import RoutingRule, RoutingSettings

if TYPE_CHECKING:
    from connectors.base import Connector
    from connectors.registry import Registry

DEFAULT_CONFIG_PATH = Path("config/gateway.toml")
DEFAULT_VOICE_NAME = "voice.toml"  # beside the configuration file
ENV_PREFIX = "OMNIGATEWAY_"

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["auto", "json", "console"]

# Names that end up inside Redis keys and URL paths: no braces (they would break hash tags),
# colons (our key separator), slashes or whitespace.
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ConfigError(Exception):
    """The configuration cannot be used. `errors` holds one ``<key path>: <why>`` per problem."""

    def __init__(self, errors: str | Sequence[str]) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))


class GatewaySettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=1, le=65535)] = 8080
    # What providers call and sign; unset, it is derived from host and port (see public_base_url).
    public_url: Annotated[str, Meta(pattern=r"^https?://[^/\s]+(/\S*)?$")] | None = None
    # Unset: an embedded Valkey under data_dir (gateway.embedded).
    redis_url: Annotated[str, Meta(pattern=r"^(redis|rediss|unix)://")] | None = None
    data_dir: str = "var"
    # Redis connections per process; a request that finds them all busy waits up to
    # redis_pool_timeout seconds for one, then gets 503 "busy" (never "Redis is down").
    redis_max_connections: Annotated[int, Meta(ge=4, le=10_000)] = 200
    redis_pool_timeout: Annotated[float, Meta(gt=0)] = 5.0
    key_prefix: Annotated[str, Meta(pattern=_NAME)] = "og"
    partitions: Annotated[int, Meta(ge=1, le=1024)] = 16
    log_level: LogLevel = "info"
    log_format: LogFormat = "auto"
    max_body_bytes: Annotated[int, Meta(ge=1024)] = 1_048_576
    api_rate_limit_per_minute: Annotated[int, Meta(ge=1)] = 600
    webhook_rate_limit_per_minute: Annotated[int, Meta(ge=1)] = 60_000
    send_max_attempts: Annotated[int, Meta(ge=1)] = 8
    # Seconds a send may stay unacknowledged before another worker reclaims it as crashed.
    send_visibility_timeout: Annotated[float, Meta(gt=0)] = 30.0
    # Seconds a worker's lease (an ingest partition, a poller) outlives its last renewal: after
    # a crash, another worker takes over within about this long.
    lease_ttl: Annotated[float, Meta(gt=0)] = 5.0
    # Meta retries webhooks for up to 7 days; a shorter dedupe window would store those twice.
    dedupe_ttl_days: Annotated[int, Meta(ge=7)] = 8
    shutdown_grace: Annotated[float, Meta(ge=0)] = 10.0
    # The brand voice (conversation.voice), relative to the configuration file's folder. Unset:
    # voice.toml beside it when there is one, else the neutral voice (text as typed). After
    # loading, the resolved path of the file in use, or None for the neutral voice.
    voice_file: str | None = None

    def __post_init__(self) -> None:
        if self.public_url is not None:
            self.public_url = self.public_url.rstrip("/")

    @property
    def public_base_url(self) -> str:
        """The public URL, or the listen address when none is configured (no trailing slash)."""
        if self.public_url:
            return self.public_url
        host = self.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"  # a wildcard bind is reachable locally, never at its own address
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    gateway: GatewaySettings = msgspec.field(default_factory=GatewaySettings)
    # Raw per-instance settings; each connector class validates its own (see validate_connectors).
    connectors: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    routing: RoutingSettings = msgspec.field(default_factory=RoutingSettings)


# --- loading ------------------------------------------------------------------------------------


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read, override, substitute and validate. Raises ConfigError listing every problem.

    With no `path`, `OMNIGATEWAY_CONFIG` or config/gateway.toml is read when it exists; otherwise
    the defaults plus the environment apply, which suits containers configured by env alone.
    """
    config, errors, _ = _load(path, env)
    if errors or config is None:
        raise ConfigError(errors)
    return config


def _load(path: str | Path | None, env: Mapping[str, str] | None) -> tuple[Config | None, list[str], dict[str, Any]]:
    """(the configuration or None, every problem found, the raw tables after substitution)."""
    env = os.environ if env is None else env
    raw, source = _read_file(path, env)
    errors: list[str] = []
    _apply_env_overrides(raw, env, errors)
    raw = _substitute(raw, env, "", errors)
    config: Config | None = None
    try:
        config = _validate(raw)
    except ConfigError as exc:
        # A key whose variable is missing was validated as "": its type error would only repeat it.
        unset = {e.split(": ", 1)[0] for e in errors}
        errors += [e for e in exc.errors if e.split(": ", 1)[0] not in unset]
    if config is not None:
        voice, problem = _voice_path(config.gateway.voice_file, source)
        config.gateway.voice_file = voice
        if problem:
            errors.append(problem)
    return config, errors, raw


def _voice_path(given: str | None, source: Path | None) -> tuple[str | None, str | None]:
    """(the voice file to load or None for the neutral voice, the problem with it if any)."""
    folder = source.parent if source is not None else Path(".")
    if given:
        path = Path(given).expanduser()
        path = path if path.is_absolute() else folder / path
        if not path.is_file():
            return None, f"gateway.voice_file: {path}: no such file"
        return str(path), None
    if source is None:  # configured by the environment alone: no folder to look beside
        return None, None
    default = folder / DEFAULT_VOICE_NAME
    return (str(default), None) if default.is_file() else (None, None)


def check_config(path: str | Path | None, registry: Registry, env: Mapping[str, str] | None = None
                 ) -> tuple[Config | None, list[str]]:
    """Every problem of a configuration in one pass: its sections and every connector section,
    even when another section is already wrong (check-config). Raises ConfigError only when the
    file cannot be read at all."""
    config, errors, raw = _load(path, env)
    if config is not None:
        return config, errors + validate_connectors(config, registry)
    connectors = raw.get("connectors")
    if isinstance(connectors, dict):
        # Build each connector on its own, with the file's public URL if that one is valid.
        gateway = raw.get("gateway")
        if not isinstance(gateway, dict):
            gateway = {}
        try:
            settings = msgspec.convert({"public_url": gateway.get("public_url")}, GatewaySettings, strict=False)
        except msgspec.ValidationError:
            settings = GatewaySettings()
        tables = {name: table for name, table in connectors.items() if isinstance(table, dict)}
        errors += validate_connectors(Config(gateway=settings, connectors=tables), registry)
    return None, errors


def _read_file(path: str | Path | None, env: Mapping[str, str]) -> tuple[dict[str, Any], Path | None]:
    """The file's tables, and the file (None when there was none to read)."""
    explicit = path is not None or bool(env.get(f"{ENV_PREFIX}CONFIG"))
    file = Path(path if path is not None else env.get(f"{ENV_PREFIX}CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh), file
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{file}: no such file") from None
        return {}, None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None


def _apply_env_overrides(raw: dict[str, Any], env: Mapping[str, str], errors: list[str]) -> None:
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name == f"{ENV_PREFIX}CONFIG":
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if len(parts) < 2 or not all(parts):
            errors.append(f"{name}: does not name a key; write {ENV_PREFIX}<SECTION>__<KEY>, "
                          f"e.g. {ENV_PREFIX}GATEWAY__PORT")
            continue
        node: MutableMapping[str, Any] = raw
        for depth, part in enumerate(parts[:-1]):
            key = _match_key(node, part)
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                errors.append(f"{name}: {'.'.join(parts[:depth + 1])} is a value, not a section")
                break
            node = child
        else:
            key = _match_key(node, parts[-1])
            value = env[name]
            if value == "":
                node.pop(key, None)  # an empty variable unsets the key, so its default applies
            else:
                node[key] = _env_value(value)


def _match_key(node: Mapping[str, Any], lowered: str) -> str:
    """The file's own spelling of a key, so OMNIGATEWAY_CONNECTORS__SMS_EU__... finds [connectors.Sms_EU]."""
    return next((k for k in node if k.lower() == lowered), lowered)


def _env_value(value: str) -> Any:
    # Lists and tables (routing rules) can only be given as TOML literals; scalars stay strings and
    # are converted to the field's type during validation.
    if value[:1] in "[{":
        try:
            return tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            pass
    return value


_VAR = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _substitute(node: Any, env: Mapping[str, str], path: str, errors: list[str]) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, env, f"{path}.{k}" if path else k, errors) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, env, f"{path}[{i}]", errors) for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def replace(m: re.Match[str]) -> str:
        escaped, var, default = m.groups()
        if escaped:
            return m.group(0)[1:]
        if var in env:
            return env[var]
        if default is not None:
            return default
        errors.append(f"{path}: environment variable {var} is not set")
        return ""

    return _VAR.sub(replace, node)


# --- validation ---------------------------------------------------------------------------------

_SECTIONS: dict[str, type[msgspec.Struct] | None] = {
    "gateway": GatewaySettings,
    "connectors": None,
    "routing": RoutingSettings,
}
_INSTANCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_AT = re.compile(r"^(?P<msg>.*) - at `\$(?P<path>.*)`$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]*)`$")


def _validate(raw: dict[str, Any]) -> Config:
    errors: list[str] = []
    for section, value in raw.items():
        if section not in _SECTIONS:
            errors.append(f"{section}: unknown section{_suggest(section, _SECTIONS)} "
                          f"(allowed: {', '.join(_SECTIONS)})")
        elif not isinstance(value, dict):
            errors.append(f"{section}: expected a table like [{section}], got {_toml_type(value)}")
    for section, struct in _SECTIONS.items():
        value = raw.get(section)
        if struct is not None and isinstance(value, dict):
            errors += _check_struct(value, struct, section)
    connectors = raw.get("connectors")
    if isinstance(connectors, dict):
        for instance, settings in connectors.items():
            if not _INSTANCE.match(instance):
                errors.append(f"connectors.{instance}: an instance name is letters, digits, '-' and '_' "
                              "(it appears in webhook URLs)")
            if not isinstance(settings, dict):
                errors.append(f"connectors.{instance}: expected a table like [connectors.{instance}], "
                              f"got {_toml_type(settings)}")
    if errors:
        raise ConfigError(errors)
    try:
        return msgspec.convert(raw, Config, strict=False)
    except msgspec.ValidationError as exc:  # per-key checks passed; a cross-field rule did not
        raise ConfigError(_format_error(exc, "", Config)) from None


def _check_struct(raw: dict[str, Any], struct: type[msgspec.Struct], path: str) -> list[str]:
    """Every bad key of one section: msgspec stops at the first error, so convert key by key.

    Works because every field of a section has a default; items of a list of structs (routing
    rules) are converted one by one instead, each reporting its first problem.
    """
    errors = []
    for key, value in raw.items():
        item = _list_item_struct(struct, key)
        if item is not None and isinstance(value, list):
            for i, element in enumerate(value):
                try:
                    msgspec.convert(element, item, strict=False)
                except msgspec.ValidationError as exc:
                    errors.append(_format_error(exc, f"{path}.{key}[{i}]", item))
            continue
        try:
            msgspec.convert({key: value}, struct, strict=False)
        except msgspec.ValidationError as exc:
            errors.append(_format_error(exc, path, struct))
    return errors


def _list_item_struct(struct: type[msgspec.Struct], key: str) -> type[msgspec.Struct] | None:
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    for f in info.fields:
        t = f.type
        if f.encode_name == key and isinstance(t, msgspec.inspect.ListType) \
                and isinstance(t.item_type, msgspec.inspect.StructType):
            return t.item_type.cls
    return None


def _format_error(exc: msgspec.ValidationError, path: str, struct: type[msgspec.Struct]) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.port`" as "gateway.port: Expected `int`, got `str`"."""
    text = str(exc)
    m = _AT.match(text)
    where, why = (m["path"], m["msg"]) if m else ("", text)
    full = (f"{path}{where}" if where.startswith("[") else f"{path}.{where.lstrip('.')}").strip(".")
    unknown = _UNKNOWN.match(why)
    if unknown:
        field = unknown["field"]
        known = [f.encode_name for f in msgspec.structs.fields(struct)] if not where else []
        return f"{full}.{field}: unknown key{_suggest(field, known)}"
    if missing := _MISSING.match(why):
        return f"{full}.{missing['field']}: required"
    if why.startswith("Expected `str` matching regex"):
        why = _PATTERN_HELP.get(full.rsplit(".", 1)[-1], why)
    return f"{full}: {why}"


# msgspec names the regex that failed; people want to know what to write.
_PATTERN_HELP = {
    "public_url": "expected an http:// or https:// URL, like https://gateway.example.com",
    "redis_url": "expected a URL starting with redis://, rediss:// or unix://",
    "key_prefix": "expected letters, digits, '.', '-' or '_' (at most 64, no braces or colons)",
    "queue": "expected a queue name: letters, digits, '.', '-' or '_' (at most 64)",
    "default_queue": "expected a queue name: letters, digits, '.', '-' or '_' (at most 64)",
}


def _suggest(word: str, choices: Sequence[str] | Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _toml_type(value: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
            list: "an array"}.get(type(value), type(value).__name__)


# --- connectors ---------------------------------------------------------------------------------


def build_connectors(config: Config, registry: Registry) -> tuple[dict[str, Connector[Any]], list[str]]:
    """Every configured connector instance that builds, and one error per instance that does not."""
    from connectors.base import SettingsError

    built: dict[str, Connector[Any]] = {}
    errors: list[str] = []
    for instance, raw in config.connectors.items():
        try:
            built[instance] = registry.build(instance, raw, config.gateway.public_base_url)
        except SettingsError as exc:
            cls = registry.kinds.get(str(raw.get("kind")))
            errors.append(_readable_settings_error(str(exc), getattr(cls, "Settings", None)))
    return built, errors


def validate_connectors(config: Config, registry: Registry) -> list[str]:
    """One ``connectors.<instance>...: <why>`` line per connector section the registry rejects.

    Connectors are built and dropped: construction must not do I/O (clients open lazily).
    """
    return build_connectors(config, registry)[1]


_SETTINGS_ERROR = re.compile(r"^(?P<head>connectors\.[^:]+): (?P<msg>.*?)(?: - at `\$\.?(?P<path>.*)`)?$", re.DOTALL)


def _readable_settings_error(text: str, settings: type[msgspec.Struct] | None) -> str:
    """Connector.from_config's "connectors.sms: Expected `str`, got `int` - at `$.auth_token`" in
    the same ``<key path>: <why>`` form as every other config error."""
    m = _SETTINGS_ERROR.match(text)
    if not m:
        return text
    head = m["head"] + (f".{m['path']}" if m["path"] else "")
    msg = m["msg"]
    if unknown := _UNKNOWN.match(msg):
        known = [f.encode_name for f in msgspec.structs.fields(settings)] if settings and not m["path"] else []
        return f"{head}.{unknown['field']}: unknown key{_suggest(unknown['field'], known)}"
    if missing := _MISSING.match(msg):
        return f"{head}.{missing['field']}: required"
    return f"{head}: {msg}"


__all__ = [
    "DEFAULT_CONFIG_PATH",
    "Config",
    "ConfigError",
    "GatewaySettings",
    "RoutingRule",
    "RoutingSettings",
    "build_connectors",
    "check_config",
    "load_config",
    "validate_connectors",
]
