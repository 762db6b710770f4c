"""`omnigateway serve` as a user runs it, from a config file, for the tests that start and stop it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

EXE = str(Path(sys.executable).with_name("omnigateway"))


class Served:
    def __init__(self, workdir: Path, config: str, port: int, *args: str) -> None:
        self.workdir, self.port, self.args = workdir, port, args
        self.config = workdir / "gateway.toml"
        self.config.write_text(config)
        self.log = workdir / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([EXE, "serve", "--config", str(self.config), *self.args],
                                         cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("gateway did not become ready:\n" + self.log.read_text())

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def token(self) -> str:
        out = subprocess.run([EXE, "token", "create", "--name", "ops", "--role", "admin", "--config",
                              str(self.config)], cwd=self.workdir, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip().splitlines()[-1]

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def children(self) -> list[int]:
        """The pids of the process's children (Linux /proc)."""
        assert self.proc is not None
        try:
            raw = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in raw.split()]
