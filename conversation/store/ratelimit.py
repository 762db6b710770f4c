"""A rate limit shared by every process: GCRA in Redis, one round trip per hit.

GCRA (the generic cell rate algorithm, as in redis-cell): `limit` requests per `window_seconds`,
a burst of up to `limit` allowed, then one request every window/limit. A sliding limit stored as
one timestamp per key, so it has neither the double burst of a fixed window at its boundary nor
the memory of a sliding log, and it yields an exact retry time. The clock is Redis's, so
processes with skewed clocks still agree.
"""

from __future__ import annotations

import functools

import redis.asyncio as aioredis

from conversation.keys import Keys

# Times are integer milliseconds: Lua turns numbers into strings with 14 significant digits,
# enough for ms epochs.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if now < tat - tolerance then return {0, tat - tolerance - now} end
tat = tat + interval
redis.call('SET', KEYS[1], tat, 'PX', tat - now)
return {1, 0}
"""


@functools.lru_cache(maxsize=64)  # a handful of configured limits; hit on every request
def cell(limit: int, window_seconds: float) -> tuple[int, int]:
    """(emission interval, burst tolerance) in ms for `limit` per `window_seconds`."""
    if limit < 1 or window_seconds <= 0:
        raise ValueError("limit and window must be positive")
    window_ms = round(window_seconds * 1000)
    interval = max(1, window_ms // limit)
    return interval, max(0, window_ms - interval)


class RateLimiter:
    """GCRA in Redis: one EVALSHA per hit, one key per limited subject."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.keys = keys
        self._script = client.register_script(_GCRA)

    async def hit(self, subject: str, limit: int, window_seconds: float) -> tuple[bool, float]:
        """Count one request against `subject`: (allowed, seconds until the next would be)."""
        interval, tolerance = cell(limit, window_seconds)
        allowed, wait_ms = await self._script(keys=[self.keys.rate_limit(subject)], args=[interval, tolerance])
        return bool(allowed), int(wait_ms) / 1000


__all__ = ["RateLimiter", "cell"]
