"""The report of bench/inbound.py: the figures as a table, each beside its target."""

from __future__ import annotations

from collections import Counter
from typing import Any

Json = dict[str, Any]



def print_report(d: Json) -> None:
    m, a, s, rt, mem, t = d["machine"], d["ack_path"], d["serve"], d["round_trips"], d["memory"], d["targets"]
    bs, gs = a["baseline"]["saturation"], a["gateway"]["saturation"]
    bf, gf = a["baseline"]["fixed_rate"], a["gateway"]["fixed_rate"]
    rate = d["settings"]["rate"]
    w = 44

    def row(label: str, base: str, gw: str, target: str = "") -> None:
        print(f"  {label:<{w - 2}}{base:>14}{gw:>16}   {target}")

    print()
    print(f"inbound benchmark: {m['cpus']} CPUs, Python {m['python']}, {m['redis']}, "
          f"{d['settings']['seconds']:g} s per run, {d['settings']['concurrency']} connections")
    print()
    print(f"{'ACK PATH ALONE (ingest workers paused)':<{w}}{'baseline':>14}{'gateway':>16}   target")
    row("saturation: acked/s", f"{bs['rate']:,.0f}", f"{gs['rate']:,.0f}")
    row("saturation: ack p50 / p99 ms", _pp(bs), _pp(gs))
    row("ratio gateway / baseline", "", f"{a['ratio']:.2f}",
        f">= {t['ratio']} (stretch {t['ratio_stretch']}): {_mark(a['ratio'] >= t['ratio'])}")
    bo, go = a["baseline"]["one_at_a_time"], a["gateway"]["one_at_a_time"]
    row("one at a time: ack p50 / p99 ms", _pp(bo), _pp(go))
    row(f"{rate:,}/s offered: achieved/s", f"{bf['rate']:,.0f}", f"{gf['rate']:,.0f}")
    row(f"{rate:,}/s offered: ack p50 / p99 ms", _pp(bf), _pp(gf),
        f"p99 <= {t['p99_ms_at_rate']:g} ms: {_mark(gf['p99_ms'] <= t['p99_ms_at_rate'])}")
    row("CPU % server/redis/client/others, sat.", _cpu(bs, "baseline"), _cpu(gs, "gateway"))
    row(f"CPU % server/redis/client/others, {rate:,}/s", _cpu(bf, "baseline"), _cpu(gf, "gateway"))

    ss, sf = s["saturation"], s["fixed_rate"]
    print()
    print("OMNIGATEWAY SERVE --PROCESSES 1 (HTTP and workers in one process)")
    print(f"  saturation: acked/s {ss['rate']:,.0f}, ack p50 / p99 ms {_pp(ss)}, CPU % {_cpu(ss, 'gateway')}")
    e2e, ratio = s["stored_and_routed_rate"], s["ratio_to_baseline"]
    print(f"  stored and routed, first sent -> last in its thread: "
          f"{_num(e2e)} msg/s ({ss['acked']:,} messages; {_num(ratio, '.2f')} x baseline)")
    print(f"  {rate:,}/s offered: achieved/s {sf['rate']:,.0f}, ack p50 / p99 ms {_pp(sf)}, last stored "
          f"{_num(sf['last_stored_after_last_ack_s'], '.2f')} s after last ack, CPU % {_cpu(sf, 'gateway')}")
    dr = s["drain"]
    print(f"  workers alone, draining {dr['backlog']:,} queued webhooks: {_num(dr['rate'])} msg/s")
    print(f"  Redis commands per message, end to end: {sum(s['redis_commands_per_message'].values()):.1f} "
          f"({_fmt(s['redis_commands_per_message'], 8)})")
    c = s["consistency"]
    whole = c["in_threads"] == c["acked"] and not c["dead_letters"]
    print(f"  messages in threads / webhooks acked: {c['in_threads']:,} / {c['acked']:,} in {c['threads']:,} "
          f"threads, {c['dead_letters']} dead letters: {_mark(whole)}")

    ec = d["serve_every_core"]
    print()
    print(f"OMNIGATEWAY SERVE --PROCESSES {ec['processes']} (web processes on one port; ingest and dispatch workers "
          "in their own processes), each round after a baseline run")
    for n, rnd in enumerate(ec["rounds"], start=1):
        rs, rb = rnd["saturation"], rnd["baseline"]
        print(f"  round {n}: baseline {rb['rate']:,.0f}/s; acked/s {rs['rate']:,.0f}, ack p50 / p99 ms {_pp(rs)}, "
              f"stored and routed {_num(rnd['stored_and_routed_rate'])} msg/s = "
              f"{_num(rnd['ratio_to_baseline'], '.2f')} x baseline; CPU % {_cpu(rs, 'gateway-mp')}")
    med = ec["ratio_median"]
    ok = med is not None and med >= t["serve_ratio"]
    print(f"  stored and routed / baseline, median of {len(ec['rounds'])}: {_num(med, '.2f')} "
          f"(min {_num(ec['ratio_min'], '.2f')}, max {_num(ec['ratio_max'], '.2f')})   "
          f"target >= {t['serve_ratio']}: {_mark(ok)}")

    print()
    print(f"REDIS ON THE ACK PATH ({rt['messages']} webhooks, one at a time, through a counting relay)")
    rtpm = rt["round_trips_per_message"]
    print(f"  round trips per webhook: {rtpm:.2f} ({_fmt(rt['round_trips_by_first_command'])})   "
          f"target {t['round_trips']:g}: {_mark(rtpm <= t['round_trips'] + 0.05)}")
    print(f"  commands sent per webhook: {sum(rt['commands_sent_per_message'].values()):.2f} "
          f"({_fmt(rt['commands_sent_per_message'])})")
    print(f"  commands executed per webhook, Lua's included: {sum(rt['commands_executed_per_message'].values()):.2f} "
          f"({_fmt(rt['commands_executed_per_message'])})")

    print()
    print(f"MEMORY (MEMORY USAGE; {mem['sample_conversations']} sample conversations, "
          f"{mem['text_len']}-byte texts)")
    fixed, extra = mem["fixed_per_conversation"], mem["per_message_beyond_text"]
    print(f"  fixed per conversation: {fixed:,.0f} B   target <= {t['conversation_bytes']:,} B: "
          f"{_mark(fixed <= t['conversation_bytes'])}")
    print("    a one-message conversation: " + ", ".join(
        f"{k} {v:,}" for k, v in mem["one_message_conversation"].items() if v))
    print(f"  per message beyond its text: {extra:,.0f} B   target <= {t['message_bytes']} B: "
          f"{_mark(extra <= t['message_bytes'])}   (in the thread: {mem['per_message_in_thread']:,.0f} B)")
    print(f"  plus, per message, while it lasts: dedupe key {mem['dedupe_key_per_message']:,.0f} B "
          f"(expires after the dedupe TTL), live events {mem['event_per_message']:,.0f} B (capped stream)")

    runs = [bs, gs, bf, gf, ss, sf, *(r["saturation"] for r in ec["rounds"])]
    busy = max(r["cpu_percent"].get("others", 0) for r in runs)
    if busy > 20:
        print(f"\nnote: the rest of the machine was busy up to {busy}% CPU during a run (bench/README.md, "
              "'Reading the CPU columns'); figures are lower than on a quiet machine")
    errors = Counter[str]()
    for r in runs:
        errors.update(r["errors"])
    if errors:
        print(f"\nnon-2xx answers: {dict(errors)}")
    print()


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISS"


def _pp(r: Json) -> str:
    return f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}"


def _cpu(r: Json, server: str) -> str:
    c = r["cpu_percent"]
    return "/".join(str(c.get(k, 0)) for k in (server, "redis", "client", "others"))


def _num(v: float | None, spec: str = ",.0f") -> str:
    return "n/a" if v is None else format(v, spec)


def _fmt(d: dict[str, float], limit: int = 6) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in list(d.items())[:limit]) or "-"
