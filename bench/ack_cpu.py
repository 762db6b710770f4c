"""CPU per webhook on the ack path: the figure to decide an optimisation by on a shared machine.

    .venv/bin/python bench/ack_cpu.py [--requests 20000] [--profile gateway.prof]

Wall-clock throughput on a 2-core machine shared with other work moves by tens of percent from
run to run; the CPU time a server process spends per acked webhook moves less (±15%). This starts
the same private Redis, `omnigateway serve` (ingest workers paused, as in bench/inbound.py) and
baseline as bench/inbound.py, sends each `--requests` signed webhooks over `--concurrency`
connections after a warm-up, and prints each server's CPU microseconds per acked webhook (user +
system, from /proc) and their ratio. With `--profile FILE` the gateway runs under cProfile and its
profile is written to FILE when it stops (cProfile slows it; read the profile for shares, not for
times).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
from pathlib import Path

import redis.asyncio as aioredis
from _common import (
    BenchRedis,
    Server,
    cpu_seconds,
    gateway_config,
    install_uvloop,
    omnigateway_exe,
    spawn,
    start_baseline,
    start_gateway,
    stop_process,
    wait_http_ok,
)
from _load import (
    Signer,
    closed_loop,
    once,
)

from conversation.keys import Keys
from gateway.config import GatewaySettings
from gateway.testing import free_port


def _wrapped_gateway(workdir: Path, config_text: str, port: int, prefix: list[str]) -> Server:
    """The gateway started as `python PREFIX... omnigateway serve`: under cProfile, or a wrapper."""
    config = workdir / "gateway.toml"
    config.write_text(config_text)
    log = workdir / "gateway.log"
    argv = [sys.executable, *prefix, omnigateway_exe(), "serve", "--config", str(config)]
    proc = spawn(argv, log, cwd=workdir)
    wait_http_ok(f"http://127.0.0.1:{port}/readyz", proc)
    return Server("gateway", port, proc, log)


async def measure(server: Server, requests: list[bytes], *, concurrency: int) -> tuple[float, int]:
    """(CPU µs per 2xx ack, 2xx acks) of `server` over one closed-loop run of `requests`."""
    source = once(requests)
    before = cpu_seconds(server.proc.pid)
    result = await closed_loop(server.port, source, concurrency=concurrency, seconds=600)
    used = cpu_seconds(server.proc.pid) - before
    return 1e6 * used / max(1, result.ok), result.ok


async def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-ackcpu-"))
    redis_proc = BenchRedis()
    servers: list[Server] = []
    try:
        await asyncio.to_thread(redis_proc.start)
        client = aioredis.Redis.from_url(redis_proc.url)
        settings = GatewaySettings()
        keys = Keys(settings.key_prefix)
        # Workers paused: every ingest lease held by a foreign owner, as bench/inbound.py does.
        await client.mset({keys.lease(p): "bench-paused" for p in range(settings.partitions)})
        await client.aclose()
        port, bport = free_port(), free_port()
        config = gateway_config(port=port, redis_url=redis_proc.url, data_dir=workdir / "var", api_port=free_port())
        if args.profile or args.wrapper:
            prefix = ["-m", "cProfile", "-o", args.profile] if args.profile else []
            prefix += [args.wrapper] if args.wrapper else []
            gateway = await asyncio.to_thread(_wrapped_gateway, workdir, config, port, prefix)
        else:
            gateway = await asyncio.to_thread(start_gateway, workdir, "gateway", config, port)
        servers.append(gateway)
        signer = Signer(f"http://127.0.0.1:{port}", random.getrandbits(32))
        warm = signer.batch(args.warmup, args.conversations)
        load = signer.batch(args.requests, args.conversations)
        if not args.gateway_only:
            baseline = await asyncio.to_thread(start_baseline, workdir, bport, redis_proc.url)
            servers.append(baseline)
            await measure(baseline, warm, concurrency=args.concurrency)
            base_us, base_n = await measure(baseline, load, concurrency=args.concurrency)
            print(f"baseline: {base_us:7.1f} µs CPU per webhook ({base_n} acked)")
        await measure(gateway, warm, concurrency=args.concurrency)
        gw_us, gw_n = await measure(gateway, load, concurrency=args.concurrency)
        print(f"gateway:  {gw_us:7.1f} µs CPU per webhook ({gw_n} acked)")
        if not args.gateway_only:
            print(f"CPU ratio baseline / gateway: {base_us / gw_us:.2f} (an upper bound for the throughput ratio)")
    finally:
        for server in reversed(servers):
            await asyncio.to_thread(stop_process, server.proc, 60.0)
        await asyncio.to_thread(redis_proc.stop)
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--warmup", type=int, default=3_000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--conversations", type=int, default=2_000)
    p.add_argument("--profile", metavar="FILE", help="run the gateway under cProfile, write its stats to FILE")
    p.add_argument("--wrapper", metavar="SCRIPT",
                   help="run the gateway as `python SCRIPT omnigateway serve ...` (SCRIPT instruments, then "
                        "runs its argv[1:] with runpy); its output goes to the gateway's log")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, gateway log)")
    p.add_argument("--gateway-only", action="store_true", help="skip the baseline")
    args = p.parse_args()
    # The gateway runs in its own work directory: make the paths independent of it.
    args.profile = str(Path(args.profile).resolve()) if args.profile else None
    args.wrapper = str(Path(args.wrapper).resolve()) if args.wrapper else None
    install_uvloop()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
