"""Where the voice file is found ([gateway] voice_file, or voice.toml beside gateway.toml), and a
bad one stopping `check-config` and the start with the file, the template and the reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import ConfigError, load_config

SAMPLE = Path(__file__).parent.parent / "config" / "voice.toml"
MINIMAL = '[brand]\nname = "Tienda Sol"\ndefault_locale = "es"\nlocales = ["es", "en"]\n'


def gateway_toml(folder: Path, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gateway.toml"
    path.write_text('[gateway]\nredis_url = "redis://127.0.0.1:9/0"\n' + extra)
    return path


def test_voice_toml_beside_the_configuration_is_used(tmp_path: Path) -> None:
    path = gateway_toml(tmp_path / "conf")
    shutil.copy(SAMPLE, tmp_path / "conf" / "voice.toml")
    assert load_config(path, env={}).gateway.voice_file == str(tmp_path / "conf" / "voice.toml")


def test_without_a_voice_file_the_voice_is_neutral(tmp_path: Path) -> None:
    assert load_config(gateway_toml(tmp_path), env={}).gateway.voice_file is None


def test_voice_file_is_relative_to_the_configuration_s_folder(tmp_path: Path) -> None:
    (tmp_path / "conf" / "brand").mkdir(parents=True)
    (tmp_path / "conf" / "brand" / "sol.toml").write_text(MINIMAL)
    path = gateway_toml(tmp_path / "conf", 'voice_file = "brand/sol.toml"\n')
    assert load_config(path, env={}).gateway.voice_file == str(tmp_path / "conf" / "brand" / "sol.toml")
    # The environment may name it too, resolved the same way.
    env = {"OMNIGATEWAY_GATEWAY__VOICE_FILE": "brand/sol.toml"}
    assert load_config(gateway_toml(tmp_path / "conf"), env=env).gateway.voice_file == str(
        tmp_path / "conf" / "brand" / "sol.toml")


def test_a_voice_file_that_is_set_but_missing_is_a_configuration_error(tmp_path: Path) -> None:
    path = gateway_toml(tmp_path, 'voice_file = "nowhere.toml"\n')
    with pytest.raises(ConfigError, match=r"gateway\.voice_file: .*nowhere\.toml: no such file"):
        load_config(path, env={})


BAD_VOICES = {
    "unknown variable": (MINIMAL + '\n[intents.resolved]\nes = "Hola {{ customer.nmae }}"\n',
                         ["intent 'resolved' (es)", "customer.nmae", "voice.toml:7"]),
    "syntax error": (MINIMAL + '\n[greetings.formal]\nes = "Estimado {{ customer.name "\n',
                     ["greeting 'formal' (es)", "voice.toml:7"]),
    "sandbox escape": (MINIMAL + "\n[intents.survey]\nes = \"{{ ''.__class__.__mro__ }}\"\n",
                       ["intent 'survey' (es)", "sandbox", "__class__"]),
    "bad tone": (MINIMAL + '\n[tone.sms]\nregister = "shouty"\n', ["voice.toml:6", "tone.sms.register"]),
}


@pytest.mark.parametrize("case", sorted(BAD_VOICES))
def test_check_config_fails_on_a_bad_voice_naming_where_and_why(tmp_path: Path, case: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    text, wanted = BAD_VOICES[case]
    path = gateway_toml(tmp_path)
    (tmp_path / "voice.toml").write_text(text)
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    for part in wanted:
        assert part in err, (part, err)


def test_check_config_names_the_voice_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = gateway_toml(tmp_path)
    assert main(["check-config", "--config", str(path)]) == 0
    assert "voice       neutral" in capsys.readouterr().out
    shutil.copy(SAMPLE, tmp_path / "voice.toml")
    assert main(["check-config", "--config", str(path)]) == 0
    assert f"voice       {tmp_path / 'voice.toml'}" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["unknown variable", "syntax error"])
def test_a_bad_voice_stops_the_start(tmp_path: Path, redis_url: str, case: str) -> None:
    text, wanted = BAD_VOICES[case]
    path = gateway_toml(tmp_path, "port = 1\n")  # never bound: the start stops before
    path.write_text(path.read_text().replace("redis://127.0.0.1:9/0", redis_url))
    (tmp_path / "voice.toml").write_text(text)
    exe = shutil.which("omnigateway", path=os.path.dirname(sys.executable)) or "omnigateway"
    done = subprocess.run([exe, "serve", "--processes", "1", "--config", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "configuration error" in done.stderr
    for part in wanted:
        assert part in done.stderr, (part, done.stderr)
