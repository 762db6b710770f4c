"""`omnigateway serve --processes N`: N web processes on one port, and the workers beside them.

The supervisor resolves Redis once (starting the embedded Valkey if none is configured), then
runs children, each a fresh interpreter (`python -m gateway.child ROLE`) with the same
configuration and the resolved Redis URL:

- `web` x N: HTTP only, every one listening on the same port with SO_REUSEPORT, so the kernel
  spreads connections over them;
- `ingest`: the ingest workers (partition leases; more processes would own more partitions);
- `dispatch`: the dispatcher and the pollers.

A child that exits unexpectedly is restarted, after a pause that grows while it keeps crashing.
SIGHUP is passed on to every child, which reloads the brand voice (gateway.voice).
SIGTERM or SIGINT drains every child (each finishes its batches and sends, hands back its leases)
and then the supervisor exits. Children die with the supervisor even when it is SIGKILLed: each
asks the kernel for SIGTERM on its parent's death (PR_SET_PDEATHSIG) and also watches a pipe
from the supervisor, whose end closes when the supervisor goes (gateway.child).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.config import Config
from gateway.embedded import EmbeddedValkeyError, resolve_redis_url

log = structlog.get_logger("gateway.supervisor")

RESTART_MIN, RESTART_MAX = 0.5, 30.0
# A child that ran this long before dying was healthy: its next restart starts the backoff over.
HEALTHY_AFTER = 30.0
PIPE_ENV = "OG_SUPERVISOR_FD"


@dataclass
class Child:
    role: str
    slot: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    restart_at: float = 0.0
    history: list[int] = field(default_factory=list)  # pids, oldest first (tests read them)

    @property
    def name(self) -> str:
        return f"{self.role}-{self.slot}"


class Supervisor:
    def __init__(self, config: Config, config_path: str | os.PathLike[str] | None, *, web_processes: int,
                 redis_url: str) -> None:
        self.config = config
        self.config_path = config_path
        self.redis_url = redis_url
        self.children = [Child("web", n) for n in range(web_processes)] + [Child("ingest", 0), Child("dispatch", 0)]
        self._stopping = False
        # The children's lifeline: they hold the read end; it reads EOF once we are gone.
        self._lifeline_r, self._lifeline_w = os.pipe()
        os.set_inheritable(self._lifeline_r, True)

    def _argv(self, child: Child) -> list[str]:
        argv = [sys.executable, "-m", "gateway.child", child.role]
        if self.config_path:
            argv += ["--config", str(self.config_path)]
        return argv

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # The URL the supervisor resolved (perhaps its embedded Valkey): every child uses that one.
        env["OMNIGATEWAY_GATEWAY__REDIS_URL"] = self.redis_url
        env[PIPE_ENV] = str(self._lifeline_r)
        env["OG_SUPERVISOR_PID"] = str(os.getpid())
        return env

    def start(self, child: Child) -> None:
        child.proc = subprocess.Popen(self._argv(child), env=self._env(), pass_fds=(self._lifeline_r,))
        child.started = time.monotonic()
        child.history.append(child.proc.pid)
        log.debug("supervisor.child_started", child=child.name, pid=child.proc.pid)

    def stop(self, *_: Any) -> None:
        self._stopping = True

    def reload(self, *_: Any) -> None:
        """SIGHUP: every child reloads what it can (the brand voice) without a restart."""
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGHUP)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGHUP, self.reload)
        for child in self.children:
            self.start(child)
        try:
            while not self._stopping:
                self._reap()
                time.sleep(0.2)
        finally:
            self._drain()
        return 0

    def _reap(self) -> None:
        now = time.monotonic()
        for child in self.children:
            proc = child.proc
            if proc is not None and proc.poll() is None:
                continue
            if proc is not None:
                ran = now - child.started
                child.failures = 0 if ran >= HEALTHY_AFTER else child.failures + 1
                delay = min(RESTART_MAX, RESTART_MIN * 2 ** max(0, child.failures - 1))
                log.error("supervisor.child_exited", child=child.name, pid=proc.pid, code=proc.returncode,
                          ran_seconds=round(ran, 1), restart_in=delay)
                child.proc = None
                child.restart_at = now + delay
            if now >= child.restart_at:
                self.start(child)

    def _drain(self) -> None:
        running = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.gateway.shutdown_grace + 5
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("supervisor.child_killed", pid=proc.pid)
                proc.kill()
                proc.wait()
        os.close(self._lifeline_w)
        os.close(self._lifeline_r)


def supervise(config: Config, config_path: str | os.PathLike[str] | None, *, web_processes: int) -> int:
    from gateway.banner import print_banner
    from gateway.logging import configure_logging

    configure_logging(config.gateway.log_level, config.gateway.log_format)
    try:
        redis_url, embedded = resolve_redis_url(config)
    except EmbeddedValkeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        supervisor = Supervisor(config, config_path, web_processes=web_processes, redis_url=redis_url)
        print_banner(config, config_path, embedded=embedded is not None,
                     webchat=any(raw.get("kind") == "webchat" for raw in config.connectors.values()),
                     processes=f", {web_processes} web processes, ingest and dispatch workers")
        return supervisor.run()
    finally:
        if embedded:
            embedded.stop()


__all__ = ["Child", "Supervisor", "supervise"]
