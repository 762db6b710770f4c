"""Rate limits on the HTTP surface: the Redis-backed limiter shared by every web process
(conversation.store.ratelimit), and an in-process one, as aiohttp middlewares.

Both implement GCRA (the generic cell rate algorithm, as in redis-cell): `limit` requests per
`window_seconds`, a burst of up to `limit` allowed, then one request every window/limit. It is a
sliding limit stored as a single timestamp per key, so it has neither the double burst of a fixed
window at its boundary nor the memory of a sliding log, and it yields an exact Retry-After.

Which to use:
- `RateLimiter` (Redis, one round trip per hit) where the limit must hold across processes: the
  inbox API, keyed per principal.
- `LocalRateLimiter` (no I/O) for public endpoints on the ack path: webhooks must stay at one
  Redis round trip per message, so their per-client-IP limit is per process. With N web
  processes a client may get up to N times the limit, which is acceptable for flood protection.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from conversation.store.ratelimit import RateLimiter, cell
from gateway.errors import error_response


@functools.lru_cache(maxsize=64)
def _cell_seconds(limit: int, window_seconds: float) -> tuple[float, float]:
    interval, tolerance = cell(limit, window_seconds)
    return interval / 1000, tolerance / 1000


class LocalRateLimiter:
    """GCRA in process memory, for paths where a Redis round trip is not affordable."""

    def __init__(self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_keys = max_keys
        self._clock = clock
        self._tat: dict[str, float] = {}

    def hit(self, key: str, limit: int, window_seconds: float) -> tuple[bool, float]:
        interval, tolerance = _cell_seconds(limit, window_seconds)
        now = self._clock()
        tat = max(self._tat.get(key, now), now)
        if now < tat - tolerance:
            return False, tat - tolerance - now
        if key not in self._tat and len(self._tat) >= self.max_keys:
            self._evict(now)
        self._tat[key] = tat + interval
        return True, 0.0

    def _evict(self, now: float) -> None:
        # A key whose time has passed behaves exactly like an absent one, so dropping it is free.
        self._tat = {k: t for k, t in self._tat.items() if t > now}
        if len(self._tat) >= self.max_keys:
            # Still full means a flood from very many addresses; forgetting every limit beats
            # growing without bound, and the flood refills the table within a second.
            self._tat.clear()


def client_ip(request: web.Request) -> str:
    """The peer address. Behind a reverse proxy, make the proxy's forwarded address the peer
    (aiohttp-remotes, or the proxy's PROXY protocol) rather than trusting X-Forwarded-For here."""
    return request.remote or "unknown"


def too_many_requests(retry_after: float) -> web.Response:
    return error_response(
        429, "rate_limited", "too many requests; retry after the time in Retry-After",
        retry_after=math.ceil(retry_after),
    )


def local_rate_limit_middleware(
    limiter: LocalRateLimiter,
    *,
    limit: int,
    window_seconds: float = 60.0,
    path_prefix: str = "/webhooks/",
    key: Callable[[web.Request], str] = client_ip,
) -> Middleware:
    """Limit requests under `path_prefix` per client (IP by default) without touching Redis.

    For the application's middlewares, e.g. webhooks:
    ``local_rate_limit_middleware(LocalRateLimiter(), limit=cfg.webhook_rate_limit_per_minute)``.
    """
    cell(limit, window_seconds)  # reject a bad configuration at startup, not on first request

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(path_prefix):
            allowed, retry_after = limiter.hit(key(request), limit, window_seconds)
            if not allowed:
                return too_many_requests(retry_after)
        return await handler(request)

    return middleware


def redis_rate_limit_middleware(
    get_limiter: Callable[[web.Request], RateLimiter],
    *,
    key: Callable[[web.Request], str],
    limit: Callable[[web.Request], int],
    window_seconds: float = 60.0,
) -> Middleware:
    """Limit every request of the app it is installed on, shared across processes through Redis.

    `key` names the subject (on the API: the principal, so install this after authentication);
    `get_limiter` and `limit` are read per request because Redis and the configuration are only
    there once the application has started.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        allowed, retry_after = await get_limiter(request).hit(key(request), limit(request), window_seconds)
        if not allowed:
            return too_many_requests(retry_after)
        return await handler(request)

    return middleware
