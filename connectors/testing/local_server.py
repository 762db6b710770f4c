"""The lifecycle every fake provider shares: an aiohttp app on a free local port, started with
``async with``, and a record of what it accepted that tests can wait on."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Self

from aiohttp import web


class LocalServer:
    """Subclasses add their routes in `routes(app)` and append what they accept with `accept()`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.messages: list[dict[str, Any]] = []
        self._accepted = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._base: str | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> str:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, 0).start()
        self._base = f"http://{self.host}:{int(self._runner.addresses[0][1])}"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """What goes in the connector's api_base_url."""
        if self._base is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._base

    async def accept(self, record: dict[str, Any]) -> None:
        async with self._accepted:
            self.messages.append(record)
            self._accepted.notify_all()

    async def wait_for_messages(self, count: int, within: float = 5.0) -> list[dict[str, Any]]:
        """Every accepted record once there are at least `count` (TimeoutError after `within` s)."""
        async with self._accepted:
            await asyncio.wait_for(self._accepted.wait_for(lambda: len(self.messages) >= count), within)
        return list(self.messages)


__all__ = ["LocalServer"]
