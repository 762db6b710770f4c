"""What `serve` prints when it starts: where it listens, where Redis is, the next command to run."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from gateway.config import Config


def print_banner(config: Config, config_path: str | os.PathLike[str] | None, *, embedded: bool, webchat: bool,
                 processes: str = "") -> None:
    settings = config.gateway
    url = f"http://{settings.host}:{settings.port}"
    print(f"omnigateway listening on {url} (public URL {settings.public_base_url}){processes}", flush=True)
    print(f"redis: {'embedded Valkey under ' + str(settings.data_path) if embedded else 'configured'}", flush=True)
    print(f"create an API token:  {_token_command(config_path)}", flush=True)
    if webchat:
        print(f"web chat demo: {url}/  (chat as a customer, watch the thread in the inbox API)", flush=True)


def _token_command(config_path: str | os.PathLike[str] | None) -> str:
    """The exact command to paste, even when the venv's bin is not on PATH (as with make run)."""
    exe = Path(sys.argv[0])
    if exe.name != "omnigateway":
        exe = Path(sys.executable).with_name("omnigateway")
    with contextlib.suppress(ValueError):
        exe = exe.resolve().relative_to(Path.cwd())
    shown = str(exe) if exe.is_absolute() or "/" in str(exe) else f"./{exe}" if exe.exists() else str(exe)
    config = f" --config {config_path}" if config_path else ""
    return f"{shown} token create --name me --role admin{config}"
