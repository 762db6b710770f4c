"""The one lease primitive (ingest partitions, send locks, pollers): exclusive across processes,
and a holder whose lease lapsed can neither renew nor release the next holder's."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import redis.asyncio as aioredis

from conversation.store import Store


async def test_two_processes_racing_for_one_lease_never_both_hold_it(redis_url: str, key_prefix: str,
                                                                    redis_client: aioredis.Redis) -> None:
    racer = str(Path(__file__).with_name("lease_racer.py"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent.parent), *sys.path])}
    procs = [await asyncio.create_subprocess_exec(sys.executable, racer, redis_url, key_prefix, "3.0", env=env,
                                                  stdout=asyncio.subprocess.PIPE)
             for _ in range(2)]
    results = []
    for proc in procs:
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0
        held, overlaps = (int(x) for x in out.split())
        results.append((held, overlaps))
    assert all(held >= 3 for held, _ in results), results  # both really competed, and both won
    assert [overlaps for _, overlaps in results] == [0, 0], results


async def test_a_stale_holder_can_neither_renew_nor_release_the_new_holders_lease(
        redis_client: aioredis.Redis, key_prefix: str) -> None:
    store = Store(redis_client, prefix=key_prefix)
    stale = store.leases.partition(3, "worker-a", 100)
    fresh = store.leases.partition(3, "worker-b", 5000)
    assert await stale.acquire()
    assert not await fresh.acquire()  # held: the other waits
    await asyncio.sleep(0.2)  # worker-a stalled past its TTL (a GC pause, a lost network)
    assert await fresh.acquire()
    assert not await stale.renew()
    assert not await stale.release()  # a GET then a DEL would have deleted worker-b's lease here
    assert await redis_client.get(fresh.key) == b"worker-b"
    assert await fresh.renew() and await fresh.release()
    assert await fresh.expires_in_ms() is None
