"""Configuration: what an operator writes in TOML and the environment, and what they are told back."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.registry import load_registry
from conversation.store import Route
from gateway.config import Config, ConfigError, RoutingRule, RoutingSettings, load_config, validate_connectors

TWILIO = """
[connectors.sms]
kind = "twilio"
account_sid = "AC0123456789abcdef0123456789abcdef"
auth_token = "${TWILIO_AUTH_TOKEN}"
from_number = "+15550001111"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def errors_of(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env or {})
    return info.value.errors


def test_defaults_give_a_local_gateway_with_embedded_valkey(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), {})
    g = config.gateway
    assert (g.host, g.port, g.redis_url, g.data_dir) == ("127.0.0.1", 8080, None, "var")
    assert g.public_base_url == "http://127.0.0.1:8080"
    assert g.dedupe_ttl_days >= 7
    assert config.connectors == {}
    assert (config.routing.default_queue, config.routing.default_priority) == ("default", 5)


def test_the_shipped_default_config_is_valid() -> None:
    config = load_config(Path(__file__).parent.parent / "config" / "gateway.toml", {})
    assert config.gateway.port == 8080
    assert config.gateway.redis_url is None  # make run starts the embedded Valkey
    # Only the web chat, the one channel that needs no provider account (the demo at /).
    assert set(config.connectors) == {"webchat"}


def test_public_url_is_derived_from_a_wildcard_bind_as_a_reachable_address(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[gateway]\nhost = "0.0.0.0"\nport = 9000\n'), {})
    assert config.gateway.public_base_url == "http://127.0.0.1:9000"
    config = load_config(write(tmp_path, '[gateway]\npublic_url = "https://gw.example.com/"\n'), {})
    assert config.gateway.public_base_url == "https://gw.example.com"


def test_environment_overrides_nested_keys_and_converts_types(tmp_path: Path) -> None:
    path = write(tmp_path, "[gateway]\nport = 8080\n" + TWILIO)
    config = load_config(path, {
        "OMNIGATEWAY_GATEWAY__PORT": "9000",
        "OMNIGATEWAY_GATEWAY__SEND_VISIBILITY_TIMEOUT": "12.5",
        "OMNIGATEWAY_CONNECTORS__SMS__AUTH_TOKEN": "from-env",
        "UNRELATED": "ignored",
    })
    assert config.gateway.port == 9000
    assert config.gateway.send_visibility_timeout == 12.5
    # The override wins over the file's ${TWILIO_AUTH_TOKEN}, which is therefore not required.
    assert config.connectors["sms"]["auth_token"] == "from-env"


def test_environment_can_add_a_connector_the_file_does_not_have(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), {
        "OMNIGATEWAY_CONNECTORS__SMS__KIND": "twilio",
        "OMNIGATEWAY_CONNECTORS__SMS__ACCOUNT_SID": "AC1",
    })
    assert config.connectors == {"sms": {"kind": "twilio", "account_sid": "AC1"}}


def test_environment_matches_the_files_spelling_of_a_key(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[connectors.Sms_EU]\nkind = "twilio"\n'),
                         {"OMNIGATEWAY_CONNECTORS__SMS_EU__FROM_NUMBER": "+34911222333"})
    assert config.connectors == {"Sms_EU": {"kind": "twilio", "from_number": "+34911222333"}}


def test_environment_gives_lists_as_toml_literals(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), {
        "OMNIGATEWAY_ROUTING__RULES": '[{queue = "vip", keyword = "urgent", priority = 9}]',
    })
    assert config.routing.rules == [RoutingRule(queue="vip", keyword="urgent", priority=9)]


def test_an_empty_environment_variable_unsets_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[gateway]\nredis_url = "redis://db:6379/0"\n')
    assert load_config(path, {"OMNIGATEWAY_GATEWAY__REDIS_URL": ""}).gateway.redis_url is None


def test_an_environment_variable_that_names_no_key_is_an_error(tmp_path: Path) -> None:
    errors = errors_of(write(tmp_path, ""), {"OMNIGATEWAY_PORT": "9000"})
    assert len(errors) == 1 and errors[0].startswith("OMNIGATEWAY_PORT: does not name a key")


def test_env_vars_are_substituted_whole_or_embedded(tmp_path: Path) -> None:
    path = write(tmp_path, TWILIO + 'api_base_url = "http://${TWILIO_HOST}:${TWILIO_PORT:-8443}/x"\n')
    config = load_config(path, {"TWILIO_AUTH_TOKEN": "s3cret", "TWILIO_HOST": "fake"})
    assert config.connectors["sms"]["auth_token"] == "s3cret"
    assert config.connectors["sms"]["api_base_url"] == "http://fake:8443/x"


def test_a_doubled_dollar_keeps_a_literal_reference(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, TWILIO.replace("${TWILIO", "$${TWILIO")), {})
    assert config.connectors["sms"]["auth_token"] == "${TWILIO_AUTH_TOKEN}"


def test_a_missing_env_var_is_an_error_naming_the_key_and_the_variable(tmp_path: Path) -> None:
    assert errors_of(write(tmp_path, TWILIO)) == [
        "connectors.sms.auth_token: environment variable TWILIO_AUTH_TOKEN is not set"
    ]


def test_a_bad_type_names_the_key(tmp_path: Path) -> None:
    assert errors_of(write(tmp_path, '[gateway]\nport = "eighty"\n')) == [
        "gateway.port: Expected `int`, got `str`"
    ]
    assert errors_of(write(tmp_path, ""), {"OMNIGATEWAY_GATEWAY__PORT": "x"}) == [
        "gateway.port: Expected `int`, got `str`"
    ]


def test_every_bad_key_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, """
[gateway]
port = 70000
prot = 1
partitions = 0
dedupe_ttl_days = 1
public_url = "gw.example.com"
log_format = "xml"

[routing]
default_priority = 10
rules = [{ queue = "ok" }, { queue = "bad name" }, { keyword = "no queue" }]

[connectros.sms]
kind = "twilio"
""")
    errors = errors_of(path)
    assert "gateway.port: Expected `int` <= 65535" in errors
    assert "gateway.prot: unknown key (did you mean 'port'?)" in errors
    assert "gateway.partitions: Expected `int` >= 1" in errors
    assert "gateway.dedupe_ttl_days: Expected `int` >= 7" in errors
    assert any(e.startswith("gateway.public_url: expected an http:// or https:// URL") for e in errors)
    assert any(e.startswith("gateway.log_format: ") for e in errors)
    assert "routing.default_priority: Expected `int` <= 9" in errors
    assert any(e.startswith("routing.rules[1].queue: expected a queue name") for e in errors)
    assert "routing.rules[2].queue: required" in errors
    assert any(e.startswith("connectros: unknown section (did you mean 'connectors'?)") for e in errors)
    assert len(errors) == 10


def test_a_section_that_is_not_a_table_is_rejected(tmp_path: Path) -> None:
    assert errors_of(write(tmp_path, 'gateway = "x"\n')) == [
        "gateway: expected a table like [gateway], got a string"
    ]
    assert errors_of(write(tmp_path, '[connectors]\nsms = 1\n')) == [
        "connectors.sms: expected a table like [connectors.sms], got an integer"
    ]


def test_an_instance_name_must_fit_in_a_webhook_url(tmp_path: Path) -> None:
    errors = errors_of(write(tmp_path, '[connectors."my sms"]\nkind = "twilio"\n'))
    assert errors[0].startswith("connectors.my sms: an instance name is letters, digits")


def test_invalid_toml_and_missing_files_say_which_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[gateway\n")
    assert errors_of(path)[0].startswith(f"{path}: not valid TOML")
    assert errors_of(tmp_path / "nope.toml") == [f"{tmp_path / 'nope.toml'}: no such file"]


def test_without_a_file_the_defaults_and_environment_apply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no config/gateway.toml here
    assert load_config(None, {"OMNIGATEWAY_GATEWAY__PORT": "9100"}).gateway.port == 9100
    write(tmp_path, "[gateway]\nport = 9200\n")
    assert load_config(None, {"OMNIGATEWAY_CONFIG": str(tmp_path / "gateway.toml")}).gateway.port == 9200


def test_connector_sections_are_validated_by_their_connector(tmp_path: Path) -> None:
    path = write(tmp_path, """
[connectors.sms]
kind = "twilio"
account_sid = "AC0123456789abcdef0123456789abcdef"
auth_token = "t"
from_number = "+15550001111"

[connectors.typo]
kind = "twilo"

[connectors.nokind]
account_sid = "AC1"

[connectors.badkey]
kind = "twilio"
account_sid = "AC0123456789abcdef0123456789abcdef"
auth_tokn = "t"

[connectors.missing]
kind = "twilio"
auth_token = "t"
""")
    errors = validate_connectors(load_config(path, {}), load_registry())
    installed = "email, instagram, messenger, slack, telegram, twilio, webchat, whatsapp"
    assert errors == [
        f"connectors.typo: unknown connector kind 'twilo' (installed: {installed})",
        f"connectors.nokind.kind: missing; set the connector kind (installed: {installed})",
        "connectors.badkey.auth_tokn: unknown key (did you mean 'auth_token'?)",
        "connectors.missing.account_sid: required",
    ]


def test_routing_first_matching_rule_wins() -> None:
    routing = RoutingSettings(default_queue="general", default_priority=3, rules=[
        RoutingRule(queue="urgent", priority=9, keyword="urgent"),
        RoutingRule(queue="sms", channel="sms"),
    ])
    assert routing.pick(channel="sms", instance="sms", text="This is URGENT!") == Route("urgent", 9, "rule 1")
    assert routing.pick(channel="sms", instance="sms", text="insurgent poetry") == Route("sms", 3, "rule 2")
    assert routing.pick(channel="email", instance="mail", text="hello") == Route("general", 3, "default")


def test_config_can_be_built_in_code() -> None:
    config = Config()
    assert config.gateway.port == 8080 and config.routing.rules == []
