"""The Redis client: hiredis, and a pool sized from configuration that waits for a free
connection instead of failing at once.

redis-py's default pool holds at most 100 connections and raises as soon as they are all in use,
so a burst of 150 API calls got "the store is unreachable" while Redis was fine. Here a caller
that finds every connection busy waits up to `pool_timeout` seconds for one to come back, and
only then gets StoreBusy, which says what happened: this process is at its pool's limit.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError

from conversation.errors import StoreBusy

DEFAULT_MAX_CONNECTIONS = 200
DEFAULT_POOL_TIMEOUT = 5.0


class WaitingPool(BlockingConnectionPool):
    """A BlockingConnectionPool whose timeout raises StoreBusy, not a bare ConnectionError."""

    async def get_connection(self, *_args: Any, **_options: Any) -> Any:
        # redis-py passes a command name that its own pool deprecates and ignores.
        try:
            return await super().get_connection()  # type: ignore[no-untyped-call]
        except RedisConnectionError as exc:
            if isinstance(exc.__cause__, TimeoutError) and not isinstance(exc, StoreBusy):
                raise StoreBusy(
                    f"all {self.max_connections} Redis connections of this process stayed busy for "
                    f"{self.timeout:g} s (redis_max_connections, redis_pool_timeout)"
                ) from None
            raise


def connect(
    url: str,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    health_check_interval: int = 30,
) -> aioredis.Redis:
    """A client for `url` (redis://, rediss://, unix://) over a waiting pool. No I/O happens here:
    connections open on first use, in the caller's event loop."""
    pool = WaitingPool.from_url(url, max_connections=max_connections, timeout=pool_timeout,
                                health_check_interval=health_check_interval)
    return aioredis.Redis(connection_pool=pool)


__all__ = ["DEFAULT_MAX_CONNECTIONS", "DEFAULT_POOL_TIMEOUT", "WaitingPool", "connect"]
