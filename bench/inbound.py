"""Inbound benchmark: signed Twilio SMS webhooks against `omnigateway serve`, and a baseline.

    .venv/bin/python bench/inbound.py [--seconds 8] [--conversations 2000] [--json]

Everything runs on 127.0.0.1 in one go (about 1.5 minutes): a private Redis, the gateway started
from a config file the way a user starts it, and a baseline (a bare aiohttp handler that writes
the same body to the same Redis with one XADD), each server in its own process. It reports:

- the ack path alone (ingest workers paused): throughput and latency at saturation, latency at a
  fixed offered rate (1,000/s), gateway against baseline, and their ratio;
- the gateway as `serve` runs it (HTTP and ingest workers in one process): throughput from the
  first webhook sent to the last message stored in its thread and routed, and the same fixed rate;
- Redis round trips and commands per webhook on the ack path, and commands per message end to end;
- Redis bytes per conversation and per message (MEMORY USAGE).

bench/README.md says how each figure is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from _common import (
    Server,
    gateway_config,
    install_uvloop,
    start_baseline,
    start_gateway,
    stop_process,
)
from _inbound_bench import (
    ONE_AT_A_TIME,
    TARGETS,
    Bench,
    Json,
    Options,
    Window,
    per_message,
    run_stats,
)
from _inbound_report import print_report
from _load import (
    CountingRelay,
    RunResult,
    Signer,
    closed_loop,
    cycle,
    once,
    open_loop,
    phone,
)

from conversation.keys import Keys
from gateway.testing import free_port

# --- runs ----------------------------------------------------------------------------------------


async def round_trips(b: Bench) -> Json:
    """Round trips and commands per webhook between its arrival and its ack.

    A second gateway (its own key prefix, workers paused) talks to Redis through a counting relay;
    webhooks go one at a time, so each burst of bytes it sends Redis is one round trip. Background
    traffic (lease checks, dispatcher polls) is measured over an idle window and subtracted.
    """
    n = b.opts.rt_messages
    keys = Keys("rt")
    relay = CountingRelay(b.redis_proc.port)
    relay_port, port = free_port(), free_port()
    await relay.start(relay_port)
    await b.pause_ingest(keys)
    config = gateway_config(port=port, redis_url=f"redis://127.0.0.1:{relay_port}/0",
                            data_dir=b.workdir / "var-rt", api_port=free_port(), prefix="rt", lease_ttl=60)
    server = await asyncio.to_thread(start_gateway, b.workdir, "gateway-rt", config, port)
    b.servers.append(server)
    try:
        requests = Signer(f"http://127.0.0.1:{port}", b.run_tag ^ 0xFFFF).batch(20 + n, senders=n)
        await closed_loop(port, once(requests[:20]), concurrency=1, seconds=30)  # scripts cached, pool warm

        async def window(run: Callable[[], Awaitable[Any]]) -> Window:
            bursts, sent, executed = Counter(relay.bursts), Counter(relay.commands), await b.commands()
            t = time.perf_counter()
            await run()
            t = time.perf_counter() - t
            return Window(relay.bursts - bursts, relay.commands - sent, await b.commands() - executed, t)

        idle = await window(lambda: asyncio.sleep(2.0))
        done: list[RunResult] = []

        async def send() -> None:
            done.append(await closed_loop(port, once(requests[20:]), concurrency=1, seconds=60))

        active = await window(send)
        scale = active.seconds / idle.seconds

        def net(part: str) -> Counter[str]:
            """Counts during the sends, less the background expected over as long a time."""
            busy, quiet = getattr(active, part), getattr(idle, part)
            return Counter({k: round(busy[k] - quiet[k] * scale) for k in set(busy) | set(quiet)})

        sent = done[0].ok
        bursts = per_message(net("bursts"), sent)
        return {
            "messages": sent,
            "round_trips_per_message": round(sum(bursts.values()), 3),
            "round_trips_by_first_command": bursts,
            "commands_sent_per_message": per_message(net("sent"), sent),
            "commands_executed_per_message": per_message(net("executed"), sent),
            "sequential_ack_p50_ms": round(done[0].p(50), 3),
        }
    finally:
        await asyncio.to_thread(stop_process, server.proc)
        b.servers.remove(server)
        await relay.close()


async def ack_path(b: Bench, gateway: Server, baseline: Server, signer: Signer) -> Json:
    """Saturation and fixed-rate runs against the baseline and the gateway, workers paused."""
    o = b.opts
    baseline_pool = signer.batch(20_000, o.conversations)

    b.log(f"  baseline: saturation ({o.seconds:g} s)")
    await closed_loop(baseline.port, cycle(baseline_pool), concurrency=o.concurrency, seconds=o.warmup)
    base_sat = await b.measured([baseline], closed_loop(
        baseline.port, cycle(baseline_pool), concurrency=o.concurrency, seconds=o.seconds))

    b.log(f"  gateway: saturation ({o.seconds:g} s)")
    warm = await b.to_gateway(closed_loop(
        gateway.port, once(signer.batch(int(8000 * o.warmup) + 500, o.conversations)),
        concurrency=o.concurrency, seconds=o.warmup))
    pool = signer.batch(min(300_000, int(warm.rate * o.seconds * 1.5) + 2000), o.conversations)
    gw_sat = await b.to_gateway(b.measured([gateway], closed_loop(
        gateway.port, once(pool), concurrency=o.concurrency, seconds=o.seconds)))

    b.log("  both: one webhook at a time")
    base_one = await closed_loop(baseline.port, cycle(baseline_pool[:ONE_AT_A_TIME]), concurrency=1, seconds=30)
    gw_one = await b.to_gateway(closed_loop(gateway.port, once(signer.batch(ONE_AT_A_TIME, o.conversations)),
                                            concurrency=1, seconds=30))

    count = int(o.rate * o.seconds)
    b.log(f"  baseline: {o.rate:,}/s offered ({o.seconds:g} s)")
    base_fixed = await b.measured([baseline], open_loop(
        baseline.port, cycle(baseline_pool), rate=o.rate, count=count, concurrency=o.concurrency,
        give_up_after=o.seconds * 4 + 30))
    b.log(f"  gateway: {o.rate:,}/s offered ({o.seconds:g} s)")
    gw_fixed = await b.to_gateway(b.measured([gateway], open_loop(
        gateway.port, once(signer.batch(count, o.conversations)), rate=o.rate, count=count,
        concurrency=o.concurrency, give_up_after=o.seconds * 4 + 30)))
    return {
        "baseline": {"saturation": run_stats(base_sat), "one_at_a_time": run_stats(base_one),
                     "fixed_rate": run_stats(base_fixed, fixed=True)},
        "gateway": {"saturation": run_stats(gw_sat), "one_at_a_time": run_stats(gw_one),
                    "fixed_rate": run_stats(gw_fixed, fixed=True)},
        "ratio": round(gw_sat.rate / base_sat.rate, 3),
    }


async def serve(b: Bench, gateway: Server, signer: Signer, ack_rate: float, baseline_rate: float) -> Json:
    """Workers resumed. First they drain what the ack-path runs queued; then a saturation run
    timed from the first webhook sent to the last message stored in its thread and routed; then
    the fixed offered rate, with the workers running."""
    o, keys = b.opts, b.keys
    backlog = await b.backlog(keys)
    b.log(f"  workers resumed: draining {backlog:,} queued webhooks")
    await b.resume_ingest(keys)
    first, drained = await b.wait_drained(keys, within=max(60.0, backlog / 300))
    drain_rate = backlog / (drained - first) if first and drained and drained > first else None

    b.log(f"  gateway: saturation, workers running ({o.seconds:g} s)")
    before = await b.commands()
    pool = signer.batch(min(300_000, int(ack_rate * o.seconds * 1.5) + 2000), o.conversations)
    sat = await b.to_gateway(b.measured([gateway], closed_loop(
        gateway.port, once(pool), concurrency=o.concurrency, seconds=o.seconds)))
    _, stored_at = await b.wait_drained(keys, within=max(60.0, sat.ok / 200))
    commands = await b.commands() - before
    e2e_rate = sat.ok / (stored_at - sat.first_send) if stored_at else None

    b.log(f"  gateway: {o.rate:,}/s offered, workers running ({o.seconds:g} s)")
    count = int(o.rate * o.seconds)
    fixed = await b.to_gateway(b.measured([gateway], open_loop(
        gateway.port, once(signer.batch(count, o.conversations)), rate=o.rate, count=count,
        concurrency=o.concurrency, give_up_after=o.seconds * 4 + 30)))
    _, fixed_stored_at = await b.wait_drained(keys, within=max(60.0, fixed.ok / 200))
    return {
        "saturation": run_stats(sat),
        "stored_and_routed_rate": round(e2e_rate, 1) if e2e_rate else None,
        "ratio_to_baseline": round(e2e_rate / baseline_rate, 3) if e2e_rate else None,
        "last_stored_after_last_ack_s": round(stored_at - sat.last_done, 3) if stored_at else None,
        "redis_commands_per_message": per_message(commands, sat.ok),
        "fixed_rate": run_stats(fixed, fixed=True) | {
            "last_stored_after_last_ack_s": round(fixed_stored_at - fixed.last_done, 3) if fixed_stored_at else None,
        },
        "drain": {"backlog": backlog, "rate": round(drain_rate, 1) if drain_rate else None,
                  "complete": drained is not None},
    }


async def serve_on_every_core(b: Bench, baseline: Server, baseline_signer: Signer) -> Json:
    """`omnigateway serve --processes N` (web processes on one port, ingest and dispatch workers in
    processes of their own) end to end: saturation runs timed from the first webhook sent to the
    last message stored in its thread and routed, each right after a baseline saturation run, for
    `--rounds` rounds. On a shared 2-core VM the machine's speed drifts from minute to minute, so
    each round's ratio is taken against the baseline measured just before it; the median is the
    figure."""
    o, n = b.opts, b.opts.processes
    keys = Keys("mp")
    port = free_port()
    config = gateway_config(port=port, redis_url=b.redis_proc.url, data_dir=b.workdir / "var-mp",
                            api_port=free_port(), prefix="mp")
    server = await asyncio.to_thread(start_gateway, b.workdir, "gateway-mp", config, port, n)
    b.servers.append(server)
    baseline_pool = baseline_signer.batch(20_000, o.conversations)
    try:
        signer = Signer(f"http://127.0.0.1:{port}", b.run_tag ^ 0xABCD)
        await closed_loop(port, once(signer.batch(int(4000 * o.warmup) + 500, o.conversations)),
                          concurrency=o.concurrency, seconds=o.warmup)
        await b.wait_drained(keys, within=60)
        rounds: list[Json] = []
        for r in range(o.rounds):
            b.log(f"  round {r + 1}/{o.rounds}: baseline, then serve --processes {n} ({o.seconds:g} s each)")
            base = await b.measured([baseline], closed_loop(
                baseline.port, cycle(baseline_pool), concurrency=o.concurrency, seconds=o.seconds))
            pool = signer.batch(min(300_000, int(base.rate * o.seconds * 1.5) + 2000), o.conversations)
            sat = await b.measured([server], closed_loop(port, once(pool), concurrency=o.concurrency,
                                                         seconds=o.seconds))
            _, stored_at = await b.wait_drained(keys, within=max(60.0, sat.ok / 200))
            e2e_rate = sat.ok / (stored_at - sat.first_send) if stored_at else None
            rounds.append({
                "baseline": run_stats(base),
                "saturation": run_stats(sat),
                "stored_and_routed_rate": round(e2e_rate, 1) if e2e_rate else None,
                "ratio_to_baseline": round(e2e_rate / base.rate, 3) if e2e_rate else None,
                "last_stored_after_last_ack_s": round(stored_at - sat.last_done, 3) if stored_at else None,
            })
        ratios = sorted(r["ratio_to_baseline"] for r in rounds if r["ratio_to_baseline"] is not None)
        median = ratios[len(ratios) // 2] if ratios else None
        return {"processes": n, "rounds": rounds, "ratio_median": median,
                "ratio_min": ratios[0] if ratios else None, "ratio_max": ratios[-1] if ratios else None}
    finally:
        await asyncio.to_thread(stop_process, server.proc)
        b.servers.remove(server)


async def memory(b: Bench, gateway: Server, signer: Signer) -> Json:
    """MEMORY USAGE of conversations with 1 and with 21 messages of a fixed text length."""
    o = b.opts
    k, keys, r = o.memory_conversations, b.keys, b.r
    numbers = [phone(1, j) for j in range(2 * k)]
    requests = [signer.request(number, "m" * o.text_len)
                for j, number in enumerate(numbers) for _ in range(1 if j < k else 21)]
    random.Random(7).shuffle(requests)  # the gateway keeps each sender's order; arrivals interleave
    await b.to_gateway(closed_loop(gateway.port, once(requests), concurrency=8, seconds=120))
    await b.wait_drained(keys, within=60)

    async def usage(names: list[str]) -> list[int]:
        async with r.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.memory_usage(name, samples=0)
            return [int(v or 0) for v in await pipe.execute()]

    parts = ("thread", "timeline", "activity", "overlay", "episodes", "identity")
    ones: list[dict[str, int]] = []
    many: list[dict[str, int]] = []
    cids = [_text(c) if c else None for c in await r.mget([keys.identity("phone", n) for n in numbers])]
    for j, (number, cid) in enumerate(zip(numbers, cids, strict=True)):
        if cid is None or await r.llen(keys.timeline(cid)) != (1 if j < k else 21):
            b.log(f"  warning: sample conversation of {number} missing or of unexpected length, left out")
            continue
        names = [keys.thread(cid), keys.timeline(cid), keys.activity(cid), keys.overlay(cid), keys.episodes(cid),
                 keys.identity("phone", number)]
        (ones if j < k else many).append(dict(zip(parts, await usage(names), strict=True)))

    # Shared structures, apportioned: the conversation indexes (state hash, status and queue
    # sorted sets) per conversation; dedupe keys and events per message.
    conversations = int(await r.hlen(keys.ix_state()))
    ix_keys = [key.decode() async for key in r.scan_iter(match=f"{keys.prefix}:{{ix}}:*", count=1000)]
    index_share = sum(await usage(ix_keys)) / max(1, conversations)
    dedupe_keys: list[str] = []
    async for key in r.scan_iter(match=f"{keys.prefix}:{{p:*}}:dd:*", count=1000):
        dedupe_keys.append(key.decode())
        if len(dedupe_keys) >= 500:
            break
    dedupe = await usage(dedupe_keys)
    # One events entry carries a batch of events: the stream's bytes over every message recorded
    # so far (the stream is capped, so this is an upper bound until the cap is reached).
    [events_bytes] = await usage([keys.events()])

    def mean(rows: list[dict[str, int]], part: str | None = None) -> float:
        vals = [sum(row.values()) if part is None else row[part] for row in rows]
        return sum(vals) / max(1, len(vals))

    message = (mean(many) - mean(ones)) / 20
    return {
        "sample_conversations": len(ones) + len(many),
        "text_len": o.text_len,
        "one_message_conversation": {p: round(mean(ones, p)) for p in parts} | {"indexes": round(index_share)},
        "fixed_per_conversation": round(mean(ones) + index_share - message, 1),
        "per_message_in_thread": round(message, 1),
        "per_message_beyond_text": round(message - o.text_len, 1),
        "dedupe_key_per_message": round(sum(dedupe) / max(1, len(dedupe)), 1),
        "event_per_message": round(events_bytes / max(1, b.acked), 1),
        "ingest_streams_bytes": sum(await usage([keys.ingest_stream(p) for p in range(b.partitions)])),
        "conversations_total": conversations,
    }


async def consistency(b: Bench) -> dict[str, int]:
    """Every webhook the gateway acked (each with its own MessageSid) is one message in one thread."""
    keys, r = b.keys, b.r
    names = [key async for key in r.scan_iter(match=f"{keys.prefix}:{{c:*}}:m", count=2000, _type="list")]
    total = 0
    for i in range(0, len(names), 1000):
        async with r.pipeline(transaction=False) as pipe:
            for name in names[i:i + 1000]:
                pipe.llen(name)
            total += sum(await pipe.execute())
    dead = int(await r.xlen(keys.ingest_dead()))
    return {"acked": b.acked, "in_threads": total, "threads": len(names), "dead_letters": dead}


# --- the whole run -----------------------------------------------------------------------------


async def run(opts: Options) -> Json:
    # Ctrl-C (asyncio.run's own handler) and SIGTERM cancel this task: the finally below then
    # stops every process the bench started.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    workdir = Path(tempfile.mkdtemp(prefix="bench-inbound-"))
    b = Bench(opts, workdir)
    try:
        await asyncio.to_thread(b.redis_proc.start)
        b.redis = aioredis.Redis.from_url(b.redis_proc.url)
        version = _server_version(await b.r.info("server"))
        b.log(f"{version} on :{b.redis_proc.port}; work directory {workdir}")

        b.log(f"round trips: {opts.rt_messages} webhooks one at a time through a counting relay")
        rt = await round_trips(b)

        await b.pause_ingest(b.keys)
        port, bport = free_port(), free_port()
        config = gateway_config(port=port, redis_url=b.redis_proc.url, data_dir=workdir / "var", api_port=free_port())
        gateway = await asyncio.to_thread(start_gateway, workdir, "gateway", config, port)
        b.servers.append(gateway)
        baseline = await asyncio.to_thread(start_baseline, workdir, bport, b.redis_proc.url)
        b.servers.append(baseline)
        signer = Signer(f"http://127.0.0.1:{port}", b.run_tag)

        b.log("ack path alone (ingest workers paused):")
        ack = await ack_path(b, gateway, baseline, signer)
        b.log("omnigateway serve --processes 1 (HTTP and workers in one process):")
        served = await serve(b, gateway, signer, ack["gateway"]["saturation"]["rate"],
                             ack["baseline"]["saturation"]["rate"])
        b.log(f"omnigateway serve --processes {opts.processes} (web processes, ingest and dispatch beside them):")
        every_core = await serve_on_every_core(b, baseline, Signer(f"http://127.0.0.1:{port}", b.run_tag ^ 0x5555))
        b.log(f"memory: {opts.memory_conversations} conversations with 1 message, "
              f"{opts.memory_conversations} with 21")
        mem = await memory(b, gateway, signer)
        served["consistency"] = await consistency(b)
        return {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "redis": version,
                        "load_average_at_end": os.getloadavg()[0]},
            "settings": {"seconds": opts.seconds, "rate": opts.rate, "concurrency": opts.concurrency,
                         "conversations": opts.conversations},
            "ack_path": ack,
            "serve": served,
            "serve_every_core": every_core,
            "round_trips": rt,
            "memory": mem,
            "targets": TARGETS,
        }
    except Exception:
        for server in b.servers:
            b.log(f"--- last lines of {server.log} ---\n{server.tail()}")
        raise
    finally:
        for server in reversed(b.servers):
            await asyncio.to_thread(stop_process, server.proc)
        if b.redis is not None:
            await b.redis.aclose()
        await asyncio.to_thread(b.redis_proc.stop)
        if not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _server_version(info: dict[str, Any]) -> str:
    name = str(info.get("server_name") or "redis")
    return f"{name} {info.get(f'{name}_version') or info.get('redis_version')}"


# --- command line --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=8.0, help="length of each measured run (default 8)")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured run before each saturation run")
    p.add_argument("--rate", type=int, default=1000, help="offered rate of the fixed-rate runs, msg/s")
    p.add_argument("--concurrency", type=int, default=32, help="client connections (default 32)")
    p.add_argument("--conversations", type=int, default=2000, help="distinct senders in the load runs")
    p.add_argument("--rt-messages", type=int, default=300, help="webhooks in the round-trip count")
    p.add_argument("--memory-conversations", type=int, default=100,
                   help="conversations of each size (1 and 21 messages) in the memory sample")
    p.add_argument("--text-len", type=int, default=100, help="message text length in the memory sample")
    p.add_argument("--json", action="store_true", help="print the results as JSON (progress to stderr)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, server logs)")
    p.add_argument("--processes", type=int, default=2, help="web processes of the multi-process serve run")
    p.add_argument("--rounds", type=int, default=3, help="baseline / serve --processes rounds (default 3)")
    a = p.parse_args(argv)
    if min(a.seconds, a.rate, a.concurrency, a.conversations, a.rt_messages, a.memory_conversations) <= 0:
        p.error("sizes and durations must be positive")
    return Options(a.seconds, a.warmup, a.rate, a.concurrency, a.conversations, a.rt_messages,
                   a.memory_conversations, a.text_len, a.json, a.keep, a.processes, a.rounds)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    install_uvloop()
    try:
        data = asyncio.run(run(opts))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; every process the bench started is stopped", file=sys.stderr)
        return 130
    if opts.as_json:
        print(json.dumps(data, indent=2))
    else:
        print_report(data)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
