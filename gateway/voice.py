"""The brand voice of this deployment: loaded with the configuration, reloaded on SIGHUP.

A bad voice file stops the start like any configuration error (the file, its line, the reason).
A reload (SIGHUP, or POST /v1/voice/reload) swaps the whole voice or nothing: with a bad file
the running voice stays and the problem is logged, and answered by the API.

`omnigateway serve` runs several processes: the supervisor passes SIGHUP on to every child, and
the API's reload signals the supervisor, so that every process speaks with the same voice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from aiohttp import web

from conversation.service import Core
from conversation.voice import Voice, VoiceError, load_voice
from gateway.appkeys import CORE
from gateway.config import Config, ConfigError

log = structlog.get_logger("gateway.voice")
SUPERVISOR_PID_ENV = "OG_SUPERVISOR_PID"


def voice_of(config: Config) -> Voice:
    """The configured voice; the neutral one without a file. ConfigError for a bad file."""
    path = config.gateway.voice_file
    if path is None:
        return Voice()
    try:
        return Voice(load_voice(Path(path)))
    except VoiceError as exc:
        raise ConfigError(str(exc)) from None


def voice_problems(config: Config) -> list[str]:
    """What check-config says of the voice file: nothing when it loads."""
    try:
        voice_of(config)
    except ConfigError as exc:
        return exc.errors
    return []


def reload(core: Core) -> str | None:
    """Reload this process's voice: None when it took, else why the running voice stays."""
    try:
        voice = core.voice.reload()
    except VoiceError as exc:
        log.error("voice.reload_refused", reason=str(exc))
        return str(exc)
    log.info("voice.reloaded", intents=len(voice.intents()))
    return None


def reload_siblings() -> None:
    """Under `serve`'s supervisor: have it pass SIGHUP to every process, this one included."""
    pid = os.environ.get(SUPERVISOR_PID_ENV)
    if pid and pid.isdigit() and int(pid) != os.getpid():
        try:
            os.kill(int(pid), signal.SIGHUP)
        except OSError as exc:  # the supervisor is gone: this process is the one that matters now
            log.warning("voice.supervisor_unreachable", error=str(exc))


def install_sighup(core: Core) -> bool:
    """Reload on SIGHUP in this loop; False where signals cannot be handled (not the main
    thread, another platform)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload, core)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError):
        return False
    return True


def setup(app: web.Application) -> None:
    """Reload the voice on SIGHUP while the app runs (the process's entry point asks for it)."""
    async def sighup(app: web.Application) -> AsyncIterator[None]:
        installed = install_sighup(app[CORE])
        yield
        if installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    app.cleanup_ctx.append(sighup)


__all__ = ["install_sighup", "reload", "reload_siblings", "setup", "voice_of", "voice_problems"]
