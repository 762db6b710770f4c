"""The state of one bench/inbound.py run (Redis, servers, CPU accounting) and its small helpers."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from _common import BenchRedis, Server, machine_cpu_seconds, own_cpu_seconds, tree_cpu_seconds
from _load import RunResult, commandstats

from conversation.keys import Keys
from gateway.config import GatewaySettings

PAUSED = "bench-paused"  # the owner of every ingest lease while the ack path is measured alone
ONE_AT_A_TIME = 500  # requests in the unloaded-latency run
BENCH_COMMANDS = ("info", "xlen")  # what the bench itself sends Redis, left out of the counts
TARGETS = {"ratio": 0.5, "ratio_stretch": 0.75, "round_trips": 1.0, "p99_ms_at_rate": 5.0,
           "conversation_bytes": 1536, "message_bytes": 300, "serve_ratio": 0.75}

Json = dict[str, Any]


@dataclass
class Options:
    seconds: float
    warmup: float
    rate: int
    concurrency: int
    conversations: int
    rt_messages: int
    memory_conversations: int
    text_len: int
    as_json: bool
    keep: bool
    processes: int
    rounds: int


class Bench:
    """The run's shared state: Redis, the servers, and CPU accounting per load run."""

    def __init__(self, opts: Options, workdir: Path) -> None:
        self.opts = opts
        self.workdir = workdir
        self.redis_proc = BenchRedis()
        self.redis: aioredis.Redis | None = None
        self.servers: list[Server] = []
        settings = GatewaySettings()
        self.keys = Keys(settings.key_prefix)
        self.partitions = settings.partitions
        self.run_tag = random.getrandbits(32)
        self.acked = 0  # webhooks the main gateway acked with 2xx, every run included

    @property
    def r(self) -> aioredis.Redis:
        assert self.redis is not None
        return self.redis

    def log(self, text: str) -> None:
        print(text, file=sys.stderr if self.opts.as_json else sys.stdout, flush=True)

    async def measured(self, servers: Iterable[Server], run: Awaitable[RunResult]) -> RunResult:
        """Run a load run and note the CPU each process used meanwhile, in % of one core."""
        procs = {s.name: s.proc.pid for s in servers}
        if self.redis_proc.proc:
            procs["redis"] = self.redis_proc.proc.pid
        before = {name: tree_cpu_seconds(pid) for name, pid in procs.items()}
        own, machine, wall = own_cpu_seconds(), machine_cpu_seconds(), time.perf_counter()
        result = await run
        wall = time.perf_counter() - wall
        result.cpu = {name: 100 * (tree_cpu_seconds(pid) - before[name]) / wall for name, pid in procs.items()}
        result.cpu["client"] = 100 * (own_cpu_seconds() - own) / wall
        # Whatever else ran on the machine meanwhile: the figures are only as good as this is small.
        result.cpu["others"] = max(0.0, 100 * (machine_cpu_seconds() - machine) / wall - sum(result.cpu.values()))
        return result

    async def to_gateway(self, run: Awaitable[RunResult]) -> RunResult:
        result = await run
        self.acked += result.ok
        return result

    # --- the ingest workers: paused by holding their leases ------------------------------------

    async def pause_ingest(self, keys: Keys) -> None:
        async with self.r.pipeline(transaction=False) as pipe:
            for p in range(self.partitions):
                pipe.set(keys.lease(p), PAUSED)
            await pipe.execute()

    async def resume_ingest(self, keys: Keys) -> None:
        await self.r.delete(*(keys.lease(p) for p in range(self.partitions)))

    async def backlog(self, keys: Keys) -> int:
        """Ingest entries not yet applied: workers XDEL an entry once it is in its thread and routed."""
        async with self.r.pipeline(transaction=False) as pipe:
            for p in range(self.partitions):
                pipe.xlen(keys.ingest_stream(p))
            return sum(await pipe.execute())

    async def wait_drained(self, keys: Keys, within: float) -> tuple[float | None, float | None]:
        """Poll until every ingest entry is applied: (time of first progress, time drained)."""
        start = await self.backlog(keys)
        first: float | None = None
        deadline = time.perf_counter() + within
        while time.perf_counter() < deadline:
            left = await self.backlog(keys)
            now = time.perf_counter()
            if first is None and left < start:
                first = now
            if left == 0:
                return first or now, now
            await asyncio.sleep(0.02)
        return first, None

    async def commands(self) -> Counter[str]:
        stats = await commandstats(self.r)
        for name in BENCH_COMMANDS:
            stats.pop(name, None)
        return stats


@dataclass
class Window:
    """What a gateway sent Redis over a stretch of time."""

    bursts: Counter[str]  # round trips, by first command (relay)
    sent: Counter[str]  # commands the gateway sent (relay)
    executed: Counter[str]  # commands Redis ran, inside Lua too (INFO commandstats)
    seconds: float


def run_stats(r: RunResult, *, fixed: bool = False) -> Json:
    out: Json = {
        "acked": r.ok,
        "errors": {str(s): n for s, n in r.statuses.items() if not 200 <= s < 300},
        "seconds": round(r.elapsed, 3),
        "rate": round(r.rate, 1),
        "p50_ms": round(r.p(50), 3),
        "p99_ms": round(r.p(99), 3),
        "cpu_percent": {k: round(v) for k, v in r.cpu.items()},
    }
    if fixed:  # latency above counts from each request's due time; this from its actual send
        out["p99_from_send_ms"] = round(r.p(99, service=True), 3)
    return out


def per_message(counts: Counter[str], messages: int, floor: float = 0.02) -> dict[str, float]:
    rows = {k: v / max(1, messages) for k, v in counts.items()}
    return {k: round(v, 3) for k, v in sorted(rows.items(), key=lambda kv: -kv[1]) if abs(v) >= floor}
