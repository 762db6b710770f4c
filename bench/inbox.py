"""Inbox benchmark: an agent's page of 50 conversations at 100,000 conversations.

    .venv/bin/python bench/inbox.py [--conversations 100000] [--requests 2000] [--json]

A private Redis is seeded, through the store as the ingest workers write it, with
`--conversations` customers of one message each (70% open, 20% pending, 10% resolved; three
queues; twenty agents). Then `omnigateway serve --processes 1` answers the inbox API, and in the
same run a **baseline**: a bare aiohttp handler that checks the same bearer token and answers
the same page the plainest way (the three status indexes read with ZREVRANGEBYSCORE, merged,
fifty thread hashes read with one pipelined HMGET each, encoded with msgspec). Requests go one at
a time over a keep-alive connection (the unloaded latency an agent sees), `--requests` of each:

- the first page, `GET /v1/conversations?limit=50`;
- deep cursors: pages 10, 100 and 1,000 pages down (cursors gathered by paging first);
- filters: `?status=open`, `?queue=billing`, `?assignee=agent-3&status=resolved`.

It prints p50 / p99 per request type for both, their ratio, and the target (p99 <= 5 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from _common import BenchRedis, Server, gateway_config, install_uvloop, spawn, start_gateway, stop_process, wait_http_ok
from _load import RunResult, closed_loop, cycle

from conversation.ids import new_customer_id
from conversation.keys import Keys
from conversation.model import Identity, InboundMessage
from conversation.routing import Route
from conversation.store import Store, ThreadState, open_store
from gateway.testing import free_port

TARGET_P99_MS = 5.0
QUEUES = ("default", "billing", "tech")
AGENTS = 20
STATUS_CHOICES = ["open"] * 7 + ["pending"] * 2 + ["resolved"]
Json = dict[str, Any]


# --- seeding -------------------------------------------------------------------------------------


async def seed(store: Store, count: int, log: Any) -> None:
    """`count` one-message conversations, written by the same Lua calls as the ingest workers'."""
    from conversation.activity import SYSTEM

    start_ms = int(time.time() * 1000) - count * 10
    batch = 500
    for first in range(0, count, batch):
        n = min(batch, count - first)
        idents = [Identity("phone", f"+3465{first + i:07d}") for i in range(n)]
        cids = [new_customer_id() for _ in range(n)]
        async with store.redis.pipeline(transaction=False) as pipe:
            for ident, cid in zip(idents, cids, strict=True):
                pipe.set(store.keys.identity(ident.kind, ident.address), cid)
            await pipe.execute()
        items = []
        for i, (ident, cid) in enumerate(zip(idents, cids, strict=True)):
            k = first + i
            msg = InboundMessage(instance="sms", channel="sms", provider_message_id=f"SMseed{k}", sender=ident,
                                 text="Hello, I have a question about my order.")
            route = Route(QUEUES[k % len(QUEUES)], 2 + k % 8)
            items.append((cid, msg, k % store.partitions, f"{start_ms + k * 10}-0", route, True))
        changes = await store.threads.append_inbound_batch(items)
        states: dict[str, ThreadState] = {c.state.customer_id: c.state for c in changes if c.state}
        for i, cid in enumerate(cids):
            k = first + i
            status = STATUS_CHOICES[(k * 7) % len(STATUS_CHOICES)]
            assignee = f"agent-{k % AGENTS}" if k % 3 else None
            if status != "open" or assignee:
                change = await store.threads.update(cid, SYSTEM, status=status, assignee=assignee)
                assert change.state is not None
                states[cid] = change.state
        await store.indexes.reindex(list(states.values()))
        if (first // batch) % 40 == 0:
            log(f"  seeded {first + n:,} of {count:,}")


# --- the baseline --------------------------------------------------------------------------------


def baseline_main(port: int, redis_url: str, prefix: str) -> None:
    """What the gateway's inbox page is held against: the same token check and the same page."""
    import msgspec
    import redis.asyncio as aioredis
    from aiohttp import web

    from conversation.store.tokens import digest

    client = aioredis.Redis.from_url(redis_url)
    keys = Keys(prefix)
    statuses = [keys.ix_status(s) for s in ("open", "pending", "resolved")]
    fields = ["created", "ids", "name", "status", "queue", "assignee", "priority", "lm", "ep"]
    encoder = msgspec.json.Encoder()

    async def page(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not await client.hgetall(keys.token(digest(token))):
            return web.Response(status=401)
        before = request.query.get("before")
        hi = f"({before}" if before else "+inf"
        async with client.pipeline(transaction=False) as pipe:
            for key in statuses:
                pipe.zrevrangebyscore(key, hi, "-inf", start=0, num=51, withscores=True)
            pages = await pipe.execute()
        merged = sorted((e for p in pages for e in p), key=lambda e: e[1], reverse=True)[:51]
        async with client.pipeline(transaction=False) as pipe:
            for member, _ in merged[:50]:
                pipe.hmget(keys.thread(member.decode()), fields)
            rows = await pipe.execute()
        items = [{"id": m.decode(), **{f: (v.decode() if v else None) for f, v in zip(fields, row, strict=True)}}
                 for (m, _), row in zip(merged, rows, strict=False)]
        cursor = str(merged[49][1]) if len(merged) > 50 else None
        return web.Response(body=encoder.encode({"items": items, "next_cursor": cursor}),
                            content_type="application/json")

    async def ready(request: web.Request) -> web.Response:
        await client.ping()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/v1/conversations", page)
    app.router.add_get("/readyz", ready)
    install_uvloop()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def start_baseline(workdir: Path, port: int, redis_url: str, prefix: str) -> Server:
    log = workdir / "inbox-baseline.log"
    proc = spawn([sys.executable, str(Path(__file__).resolve()), "baseline", str(port), redis_url, prefix], log)
    server = Server("baseline", port, proc, log)
    wait_http_ok(f"http://127.0.0.1:{port}/readyz", proc)
    return server


# --- the requests --------------------------------------------------------------------------------


def get(path: str, token: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Accept: application/json\r\n\r\n").encode()


async def cursors_at(port: int, token: str, depths: list[int]) -> dict[int, str]:
    """The next_cursor after `depth` pages of the unfiltered list, for each depth."""
    import aiohttp

    out: dict[int, str] = {}
    cursor: str | None = None
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        for page in range(1, max(depths) + 1):
            query = {"limit": "50", **({"cursor": cursor} if cursor else {})}
            async with http.get(f"http://127.0.0.1:{port}/v1/conversations?{urlencode(query)}") as resp:
                cursor = (await resp.json())["next_cursor"]
            if cursor is None:
                break
            if page in depths:
                out[page] = cursor
    return out


def score_of(cursor: str) -> str:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    return raw.split("|", 1)[0]


async def timed(port: int, request: bytes, count: int) -> RunResult:
    await closed_loop(port, cycle([request]), concurrency=1, seconds=0.5)  # warm
    result = await closed_loop(port, _take(request, count), concurrency=1, seconds=120)
    bad = {s: n for s, n in result.statuses.items() if s != 200}
    if bad:
        raise RuntimeError(f"non-200 answers: {bad}")
    return result


def _take(request: bytes, count: int) -> Any:
    left = [count]

    def next_request() -> bytes | None:
        if left[0] <= 0:
            return None
        left[0] -= 1
        return request

    return next_request


async def run(opts: argparse.Namespace) -> Json:
    workdir = Path(tempfile.mkdtemp(prefix="bench-inbox-"))
    redis = BenchRedis()
    servers: list[Server] = []

    def log(text: str) -> None:
        print(text, file=sys.stderr if opts.json else sys.stdout, flush=True)

    try:
        await asyncio.to_thread(redis.start)
        store = open_store(redis.url, prefix="og", partitions=16)
        log(f"seeding {opts.conversations:,} conversations")
        started = time.perf_counter()
        await seed(store, opts.conversations, log)
        seeded_in = time.perf_counter() - started
        token = await store.tokens.create("bench", "admin")
        used = int((await store.redis.info("memory"))["used_memory"])
        await store.close()

        port, bport = free_port(), free_port()
        config = gateway_config(port=port, redis_url=redis.url, data_dir=workdir / "var", api_port=free_port())
        config = config.replace("[gateway]\n", "[gateway]\napi_rate_limit_per_minute = 100000000\n", 1)
        servers.append(await asyncio.to_thread(start_gateway, workdir, "gateway", config, port, 1))
        servers.append(await asyncio.to_thread(start_baseline, workdir, bport, redis.url, "og"))
        cursors = await cursors_at(port, token, [10, 100, 1000])

        cases: list[tuple[str, str, str | None]] = [("first page", "/v1/conversations?limit=50", "")]
        for depth, cursor in sorted(cursors.items()):
            cases.append((f"{depth} pages deep", f"/v1/conversations?limit=50&cursor={cursor}",
                          f"?before={score_of(cursor)}"))
        cases += [("?status=open", "/v1/conversations?limit=50&status=open", None),
                  ("?queue=billing", "/v1/conversations?limit=50&queue=billing", None),
                  ("?assignee&status=resolved", "/v1/conversations?limit=50&assignee=agent-3&status=resolved", None)]
        results: list[Json] = []
        for name, path, baseline_query in cases:
            log(f"  {name}: {opts.requests} requests one at a time")
            gw = await timed(port, get(path, token), opts.requests)
            row: Json = {"case": name, "gateway_p50_ms": round(gw.p(50), 3), "gateway_p99_ms": round(gw.p(99), 3)}
            if baseline_query is not None:
                base = await timed(bport, get("/v1/conversations" + baseline_query, token), opts.requests)
                row |= {"baseline_p50_ms": round(base.p(50), 3), "baseline_p99_ms": round(base.p(99), 3),
                        "p99_ratio": round(gw.p(99) / base.p(99), 2)}
            results.append(row)
        return {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "conversations": opts.conversations, "seeded_seconds": round(seeded_in, 1),
            "redis_used_memory_bytes": used, "requests_per_case": opts.requests,
            "cases": results, "target_p99_ms": TARGET_P99_MS,
        }
    finally:
        for server in reversed(servers):
            await asyncio.to_thread(stop_process, server.proc)
        await asyncio.to_thread(redis.stop)
        shutil.rmtree(workdir, ignore_errors=True)


def print_report(d: Json) -> None:
    print()
    print(f"inbox benchmark: {d['machine']['cpus']} CPUs, Python {d['machine']['python']}, "
          f"{d['conversations']:,} conversations (seeded in {d['seeded_seconds']:g} s), "
          f"{d['requests_per_case']:,} requests per case, one at a time")
    print()
    print(f"  {'GET /v1/conversations, limit 50':<34}{'baseline p50/p99':>18}{'gateway p50/p99':>18}"
          f"{'p99 ratio':>11}   target p99 <= {d['target_p99_ms']:g} ms")
    for row in d["cases"]:
        base = (f"{row['baseline_p50_ms']:.2f} / {row['baseline_p99_ms']:.2f}" if "baseline_p50_ms" in row else "-")
        ratio = f"{row['p99_ratio']:.2f}" if "p99_ratio" in row else "-"
        ok = "ok" if row["gateway_p99_ms"] <= d["target_p99_ms"] else "MISS"
        print(f"  {row['case']:<34}{base:>18}{row['gateway_p50_ms']:>9.2f} / {row['gateway_p99_ms']:<6.2f}"
              f"{ratio:>11}   {ok}")
    print()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conversations", type=int, default=100_000)
    p.add_argument("--requests", type=int, default=2000, help="requests per case (default 2000)")
    p.add_argument("--json", action="store_true", help="print the results as JSON (progress to stderr)")
    opts = p.parse_args(argv)
    install_uvloop()
    try:
        data = asyncio.run(run(opts))
    except KeyboardInterrupt:
        return 130
    if opts.json:
        print(json.dumps(data, indent=2))
    else:
        print_report(data)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "baseline":
        baseline_main(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        sys.exit(0)
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
