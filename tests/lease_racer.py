"""One racer for tests/test_leases.py, run as its own process: take the lease whenever it is free,
count holders while holding it, give it back, for a while; print how often it held it and how
often it saw another holder at the same time."""

from __future__ import annotations

import asyncio
import os
import sys
import time

from conversation.store import open_store


async def race(url: str, prefix: str, seconds: float) -> None:
    store = open_store(url, prefix=prefix)
    lease = store.leases.poller("contested", f"racer-{os.getpid()}", 1000)
    holders = f"{prefix}:holders"
    held = overlaps = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if not await lease.acquire():
                await asyncio.sleep(0.001)
                continue
            held += 1
            if await store.redis.incr(holders) != 1:
                overlaps += 1
            await asyncio.sleep(0.005)  # well within the TTL: the lease is still ours
            await store.redis.decr(holders)
            assert await lease.release()
            await asyncio.sleep(0.002)  # let the other racer have a turn too
    finally:
        await store.close()
    print(f"{held} {overlaps}", flush=True)


if __name__ == "__main__":
    asyncio.run(race(sys.argv[1], sys.argv[2], float(sys.argv[3])))
