"""The brand voice's cost per outbound message, on `omnigateway serve` as users run it.

    .venv/bin/python bench/voice.py [--replies 1500] [--rounds 3] [--conversations 200] [--json]

One private Redis and two gateways, each `omnigateway serve --processes 1` with one Twilio SMS
instance whose REST API is the kit's FakeTwilio (in this process, so its CPU is not counted):

- **branded**: the sample brand, config/voice.toml (greetings, sign-offs, brand tag, GSM-safe SMS,
  the lint on every reply);
- **neutral** (the baseline): no voice file, so replies go as typed, only formatted for the
  channel: the dispatcher's path without the voice layer's work.

Both get the same conversations (seeded through signed inbound webhooks) and, per round, the
same agent replies through the inbox API (Markdown, typographic quotes and dashes, some long
enough to split), `--replies` of them over 8 keep-alive connections. A round ends when the fake
Twilio holds every reply the round sent, so the figure covers the whole outbound path: the API
request, compose (voice included), the outbox, the dispatcher, the send and its bookkeeping.
CPU per outbound message = the serve process's user + system CPU over the round / replies.
Rounds alternate between the two gateways; the medians are compared.

It also times `Voice.render` in this process, for an agent's text and for an intent, against the
neutral voice's render: the voice layer alone, without the rest of the path around it.

Goal: the voice adds at most 5 % per outbound message (ratio <= 1.05). The whole-path figures
move by a few percent from round to round on a shared 2-core machine (CPU is counted in 10 ms
ticks, and the load generator shares the cores); the in-process render timing is the steadier
measure of the layer itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from _common import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    ROOT,
    BenchRedis,
    Server,
    cpu_seconds,
    gateway_config,
    install_uvloop,
    machine_cpu_seconds,
    omnigateway_exe,
    start_gateway,
    stop_process,
)
from _load import Signer, closed_loop, once, phone

from connectors.sms.twilio import TwilioConnector
from connectors.testing.fake_twilio import FakeTwilio
from conversation.voice import Context, Voice, load_voice
from gateway.testing import free_port

GOAL = 1.05
SAMPLE = ROOT / "config" / "voice.toml"
TEXTS = [
    "Tu pedido **{n}** sale hoy — llega “mañana” por la tarde.",
    "Hemos revisado tu caso {n}:\n\n- el cobro está duplicado\n- lo devolvemos en 3 días\n\n"
    "Más detalles en [tu cuenta](https://tiendasol.example/cuenta).",
    "Gracias por escribirnos. Te confirmo que la incidencia {n} queda registrada y que un compañero del "
    "almacén revisará el paquete antes del viernes; si necesitas cambiar la dirección de entrega, "
    "respóndenos a este mensaje con la nueva y la actualizamos sin coste.",
]
Json = dict[str, Any]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def config(port: int, redis_url: str, data_dir: Path, api_port: int, prefix: str, voice: Path | None) -> str:
    text = gateway_config(port=port, redis_url=redis_url, data_dir=data_dir, api_port=api_port, prefix=prefix)
    extra = "api_rate_limit_per_minute = 1000000000\n"
    if voice is not None:
        extra += f'voice_file = "{voice}"\n'
    return text.replace("[connectors.sms]", extra + "\n[connectors.sms]", 1)


def token(workdir: Path, name: str) -> str:
    import subprocess

    done = subprocess.run([omnigateway_exe(), "token", "create", "--name", "bench", "--role", "admin",
                           "--config", str(workdir / f"{name}.toml")], capture_output=True, text=True, timeout=60,
                          cwd=workdir)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return done.stdout.strip().splitlines()[-1]


async def seed(server: Server, conversations: int, tag: int) -> None:
    """One inbound SMS per conversation, signed as Twilio signs it; waits until all are threads."""
    signer = Signer(f"http://127.0.0.1:{server.port}", tag)
    requests = [signer.request(phone(0, n), "Hola, ¿dónde está mi pedido?") for n in range(conversations)]
    result = await closed_loop(server.port, once(requests), concurrency=8, seconds=120)
    if result.ok != conversations:
        raise RuntimeError(f"{server.name}: {result.ok} of {conversations} webhooks acked")


async def conversation_ids(http: aiohttp.ClientSession, server: Server, bearer: str, count: int) -> list[str]:
    """Every seeded conversation, once the ingest worker has applied them all."""
    deadline = time.monotonic() + 120
    while True:
        ids: list[str] = []
        cursor: str | None = None
        while True:
            params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
            async with http.get(f"http://127.0.0.1:{server.port}/v1/conversations", params=params,
                                headers={"Authorization": f"Bearer {bearer}"}) as resp:
                page = await resp.json()
            ids += [c["id"] for c in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        if len(ids) >= count:
            return ids[:count]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name}: only {len(ids)} of {count} conversations applied")
        await asyncio.sleep(0.2)


async def replies_round(http: aiohttp.ClientSession, server: Server, bearer: str, cids: list[str], count: int,
                        twilio: FakeTwilio, serial: int) -> float:
    """CPU seconds the serve process spent on `count` replies, from the first request to the last
    send the fake Twilio accepted."""
    before_sent = len(twilio.messages)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def worker() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            text = TEXTS[n % len(TEXTS)].format(n=f"A-{serial + n}")
            async with http.post(f"http://127.0.0.1:{server.port}/v1/conversations/{cids[n % len(cids)]}/messages",
                                 json={"text": text}, headers={"Authorization": f"Bearer {bearer}"}) as resp:
                if resp.status != 202:
                    raise RuntimeError(f"{server.name}: reply answered {resp.status}: {await resp.text()}")
                await resp.read()

    expected = before_sent + count  # every text fits one SMS send (the long one as one concatenated SMS)
    cpu0 = cpu_seconds(server.proc.pid)
    await asyncio.gather(*(worker() for _ in range(8)))
    deadline = time.monotonic() + 300
    while len(twilio.messages) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name}: {len(twilio.messages) - before_sent} of "
                               f"{expected - before_sent} sends reached Twilio")
        await asyncio.sleep(0.02)
    return cpu_seconds(server.proc.pid) - cpu0


def render_micro(iterations: int) -> Json:
    """µs per Voice.render in this process: the sample voice (text, intent) and the neutral one."""
    caps = TwilioConnector.capabilities
    voiced, neutral = Voice(load_voice(SAMPLE)), Voice()
    context = Context(customer_name="Lucía Gómez", agent_name="Marta", reference="ab12cd34", channel="sms",
                      variables={"order": "A-17", "tracking_url": "https://t.example/1"})
    cases = {
        "neutral text": lambda i: neutral.render(channel="sms", caps=caps, context=context, locale="es",
                                                 text=TEXTS[i % 3].format(n=i)),
        "voice text": lambda i: voiced.render(channel="sms", caps=caps, context=context, locale="es",
                                              text=TEXTS[i % 3].format(n=i)),
        "voice intent": lambda i: voiced.render(channel="sms", caps=caps, context=context, locale="es",
                                                intent="order_shipped"),
    }
    out: Json = {}
    for name, run in cases.items():
        for i in range(200):  # warm-up: compiled templates, regex caches
            run(i)
        start = time.perf_counter()
        for i in range(iterations):
            run(i)
        out[name] = (time.perf_counter() - start) / iterations * 1e6
    return out


async def main_async(args: argparse.Namespace) -> Json:
    workdir = Path(tempfile.mkdtemp(prefix="og-bench-voice-"))
    redis = BenchRedis(str(workdir / "redis"))
    (workdir / "redis").mkdir()
    servers: dict[str, Server] = {}
    try:
        redis.start()
        async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as twilio, aiohttp.ClientSession() as http:
            api_port = int(twilio.base_url.rsplit(":", 1)[1])
            # (not "voice": its config file, voice.toml, would be the neutral one's voice file beside it)
            for name, voice in (("branded", SAMPLE), ("neutral", None)):
                port = free_port()
                text = config(port, redis.url, workdir / f"var-{name}", api_port, f"bv{name[0]}", voice)
                servers[name] = start_gateway(workdir, name, text, port)
            tokens = {name: token(workdir, name) for name in servers}
            cids: dict[str, list[str]] = {}
            for n, (name, server) in enumerate(servers.items()):
                log(f"seeding {args.conversations} conversations on {name}")
                await seed(server, args.conversations, 0x5000 + n)
                cids[name] = await conversation_ids(http, server, tokens[name], args.conversations)
            log("warm-up round")
            for name, server in servers.items():
                await replies_round(http, server, tokens[name], cids[name], 200, twilio, 0)
            per_message: dict[str, list[float]] = {name: [] for name in servers}
            machine0 = machine_cpu_seconds()
            wall0 = time.monotonic()
            for r in range(args.rounds):
                order = list(servers.items()) if r % 2 == 0 else list(reversed(servers.items()))
                for name, server in order:
                    cpu = await replies_round(http, server, tokens[name], cids[name], args.replies, twilio,
                                              (r + 1) * 100_000)
                    per_message[name].append(cpu / args.replies * 1e6)
                    log(f"round {r + 1} {name}: {per_message[name][-1]:.0f} µs CPU per outbound message")
            busy = (machine_cpu_seconds() - machine0) / (time.monotonic() - wall0)
        micro = render_micro(args.micro)
    finally:
        for server in servers.values():
            stop_process(server.proc)
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    voice_us = statistics.median(per_message["branded"])
    neutral_us = statistics.median(per_message["neutral"])
    return {
        "replies_per_round": args.replies, "rounds": args.rounds, "conversations": args.conversations,
        "cpu_us_per_message": {"branded": round(voice_us, 1), "neutral": round(neutral_us, 1)},
        "rounds_us": {k: [round(v, 1) for v in vals] for k, vals in per_message.items()},
        "ratio": round(voice_us / neutral_us, 3), "goal": GOAL, "meets_goal": voice_us / neutral_us <= GOAL,
        "render_us": {k: round(v, 1) for k, v in micro.items()},
        # The whole render (neutral formatting and lint included) against a message's whole path.
        "render_share": round(micro["voice text"] / neutral_us, 4),
        "machine_busy_cores": round(busy, 2),
    }


def report(result: Json) -> str:
    cpu, micro = result["cpu_us_per_message"], result["render_us"]
    lines = [
        f"outbound messages through `omnigateway serve --processes 1`: {result['replies_per_round']} replies x "
        f"{result['rounds']} rounds each, {result['conversations']} conversations",
        "",
        f"{'':28}{'CPU µs / message':>18}",
        f"{'neutral voice (baseline)':28}{cpu['neutral']:>18.0f}",
        f"{'sample brand voice':28}{cpu['branded']:>18.0f}",
        f"{'ratio voice / baseline':28}{result['ratio']:>18.3f}   goal <= {GOAL} "
        f"({'met' if result['meets_goal'] else 'NOT met'})",
        "",
        "Voice.render alone, in process (µs per call):",
        *(f"  {name:26}{value:>8.1f}" for name, value in micro.items()),
        f"  the sample voice's whole render is {result['render_share']:.1%} of a message's CPU on the baseline",
        "",
        f"per-round figures: {result['rounds_us']}; the machine was busy on {result['machine_busy_cores']} cores "
        "on average during the rounds (the bench's own load generator and fake Twilio included)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=1500, help="replies per round and gateway")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--micro", type=int, default=20_000, help="iterations of the in-process render timing")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    install_uvloop()
    result = asyncio.run(main_async(args))
    print(json.dumps(result, indent=2) if args.json else report(result))


if __name__ == "__main__":
    main()
