"""Pieces the benchmarks share: processes (gateway, baseline, Redis) and CPU accounting. The load
side (signed requests, the load generator, the counting relay) is in _load.py.

Run as a script it is the baseline server: ``python bench/_common.py baseline PORT REDIS_URL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/inbound.py` from a checkout without an install
    sys.path.insert(0, str(ROOT))

from gateway.testing import RedisProcess, redis_server_binary  # noqa: E402

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
BUSINESS_NUMBER = "+15550001111"
WEBHOOK_PATH = "/webhooks/sms/messages"
EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# --- processes ------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the bench dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(argv: Sequence[str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """A child in its own session (the terminal's Ctrl-C reaches the bench only, which then
    stops its children in order) that also dies if the bench is killed outright."""
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def wait_http_ok(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s")


def omnigateway_exe() -> str:
    exe = Path(sys.executable).with_name("omnigateway")
    return str(exe) if exe.exists() else "omnigateway"


def gateway_config(*, port: int, redis_url: str, data_dir: Path, api_port: int, prefix: str = "og",
                   lease_ttl: float | None = None) -> str:
    """A config file as a user writes it: one Twilio SMS instance "sms" whose REST API points at an
    unused local port (the benchmark never replies), and a webhook rate limit out of the way."""
    extra = f"lease_ttl = {lease_ttl}\n" if lease_ttl is not None else ""
    return f"""\
[gateway]
host = "127.0.0.1"
port = {port}
public_url = "http://127.0.0.1:{port}"
redis_url = "{redis_url}"
data_dir = "{data_dir}"
key_prefix = "{prefix}"
log_format = "json"
webhook_rate_limit_per_minute = 1000000000
{extra}
[connectors.sms]
kind = "twilio"
account_sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"
from_number = "{BUSINESS_NUMBER}"
api_base_url = "http://127.0.0.1:{api_port}"
"""


@dataclass
class Server:
    """A server process under test: its HTTP port and its process (for CPU accounting)."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_gateway(workdir: Path, name: str, config_text: str, port: int, processes: int = 1) -> Server:
    """`omnigateway serve --processes N` from a config file, as a user starts it."""
    config = workdir / f"{name}.toml"
    config.write_text(config_text)
    log = workdir / f"{name}.log"
    proc = spawn([omnigateway_exe(), "serve", "--config", str(config), "--processes", str(processes)], log,
                 cwd=workdir)
    server = Server(name, port, proc, log)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/readyz", proc)
    except RuntimeError as exc:
        stop_process(proc)
        raise RuntimeError(f"{name}: {exc}\n--- {log} ---\n{server.tail()}") from None
    return server


def start_baseline(workdir: Path, port: int, redis_url: str) -> Server:
    log = workdir / "baseline.log"
    proc = spawn([sys.executable, str(Path(__file__).resolve()), "baseline", str(port), redis_url], log)
    server = Server("baseline", port, proc, log)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/readyz", proc)
    except RuntimeError as exc:
        stop_process(proc)
        raise RuntimeError(f"baseline: {exc}\n{server.tail()}") from None
    return server


class BenchRedis(RedisProcess):
    """gateway.testing's private Redis, started so that it also dies if the bench is killed."""

    def start(self, timeout: float = 10.0) -> None:
        self.proc = spawn(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--appendonly", "yes", "--save", "", "--daemonize", "no"],
            Path(self.dir) / "server.log",
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"redis on port {self.port} did not answer PING")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """cpu_seconds of a process and all its descendants alive now (a supervisor and its children)."""
    total = cpu_seconds(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(tree_cpu_seconds(int(child)) for child in children)


def machine_cpu_seconds() -> float:
    """Busy CPU time of the whole machine, all cores (Linux /proc/stat: all but idle and iowait)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


# --- the baseline: a bare aiohttp handler, one XADD per request ------------------------------------

BASELINE_STREAM = "bench:baseline"


def baseline_main(port: int, redis_url: str) -> None:
    """What the gateway's ack path is compared with: read the form body, XADD it, ack 200."""
    import redis.asyncio as aioredis
    from aiohttp import web

    client = aioredis.Redis.from_url(redis_url)

    async def webhook(request: web.Request) -> web.Response:
        body = await request.read()
        await client.xadd(BASELINE_STREAM, {"m": body})
        return web.Response(body=EMPTY_TWIML, content_type="text/xml")

    async def ready(request: web.Request) -> web.Response:
        await client.ping()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post(WEBHOOK_PATH, webhook)
    app.router.add_get("/readyz", ready)
    install_uvloop()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "baseline":
        baseline_main(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit("usage: python bench/_common.py baseline PORT REDIS_URL")
