"""Email benchmark: parse throughput on the tests' sample mails, and IDLE-to-thread latency.

    .venv/bin/python bench/mail.py [--messages 2000] [--appends 30]

1. Parse: the raw mails tests/test_email_parse.py and tests/test_email_imap.py build (Gmail,
   Outlook and Apple Mail replies, a Postfix bounce, a plain customer mail), repeated to
   `--messages`, through `parse_email`; baseline: the stdlib's
   `email.message_from_bytes(raw, policy=default)` plus `get_body()` text over the same corpus.
2. IDLE to thread (needs Dovecot; skipped with a message when it is not installed): a private
   Redis and Dovecot, the gateway (GatewayUnderTest) with one email instance reading the mailbox
   through IDLE; `--appends` mails APPENDed one at a time, each timed from the APPEND to the
   message in its customer's thread (Store polled). Baseline: a bare imapclient IDLE loop in this
   process, timed from the APPEND to its EXISTS response.

Prints figures and ratios; asserts nothing. bench/README.md says more.
"""

from __future__ import annotations

import os
import sys

# The corpus and the Dovecot helpers are the tests' own: import them from tests/.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.append(os.path.join(os.path.dirname(_HERE), "tests"))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import email  # noqa: E402
import email.policy  # noqa: E402
import imaplib  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable  # noqa: E402
from email.message import EmailMessage  # noqa: E402

import structlog  # noqa: E402
from _common import BenchRedis  # noqa: E402
from _load import percentile  # noqa: E402

from connectors.email.connector import EmailConnector  # noqa: E402
from connectors.email.parse import parse_email  # noqa: E402
from connectors.email.settings import EmailSettings  # noqa: E402
from conversation.model import Identity  # noqa: E402
from conversation.store import Store  # noqa: E402
from gateway.testing import GatewayUnderTest, free_port  # noqa: E402

SETTINGS = EmailSettings(address="support@example.com", domain="example.com", smtp_host="127.0.0.1",
                         smtp_listen="127.0.0.1:2525")


# --- 1. parse throughput -------------------------------------------------------------------------


def corpus(size: int) -> list[bytes]:
    """The tests' sample mails, round robin, `size` of them."""
    import test_email_imap  # type: ignore[import-not-found]
    import test_email_parse  # type: ignore[import-not-found]

    samples: list[bytes] = [test_email_parse.GMAIL_REPLY, test_email_parse.OUTLOOK_REPLY,
                            test_email_parse.APPLE_REPLY, test_email_parse.POSTFIX_BOUNCE,
                            test_email_imap.mail("Where is my parcel?")[1]]
    return [samples[i % len(samples)] for i in range(size)]


def ours(raw: bytes) -> None:
    parse_email(raw, instance="mail", settings=SETTINGS, received_at_ms=1_700_000_000_000)


def stdlib(raw: bytes) -> None:
    # mypy takes `email` for this file (bench/mail.py); at run time it is the stdlib package.
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    body = msg.get_body(preferencelist=("plain", "html"))
    if isinstance(body, EmailMessage):
        body.get_content()


def rate(fn: Callable[[bytes], None], raws: list[bytes], repeats: int = 3) -> float:
    """Messages/s, the best of `repeats` passes over the corpus (after one unmeasured pass)."""
    for raw in raws[:50]:
        fn(raw)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for raw in raws:
            fn(raw)
        best = min(best, time.perf_counter() - start)
    return len(raws) / best


def parse_bench(size: int) -> None:
    raws = corpus(size)
    base, got = rate(stdlib, raws), rate(ours, raws)
    print(f"PARSE ({len(raws):,} messages: the tests' Gmail/Outlook/Apple replies, bounce, plain mail)")
    print(f"  {'baseline, stdlib message_from_bytes + get_body():':<52}{base:>7,.0f} msg/s")
    print(f"  {'parse_email:':<52}{got:>7,.0f} msg/s")
    print(f"  {'ratio parse_email / baseline:':<52}{got / base:>7.2f}")


# --- 2. IDLE-to-thread latency ----------------------------------------------------------------------


def plain_mail(sender: str, text: str) -> bytes:
    return (f"From: <{sender}>\r\nTo: support@example.com\r\nSubject: bench\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@example.com>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n").encode()


def summary(ms: list[float]) -> str:
    if not ms:
        return "no samples"
    ints = sorted(round(v * 1000) for v in ms)  # percentile() takes integers: microseconds
    return (f"p50 {percentile(ints, 50) / 1000:7.1f}  p95 {percentile(ints, 95) / 1000:7.1f}  "
            f"max {ints[-1] / 1000:7.1f} ms  (n={len(ms)})")


def baseline_idle(mailbox: object, n: int, gap: float) -> tuple[list[float], list[float]]:
    """APPEND -> EXISTS seen by a bare imapclient IDLE loop (in a thread of this process), and
    APPEND -> its tagged OK, in ms."""
    from imapclient import IMAPClient

    host, port, user, password = (getattr(mailbox, a) for a in ("host", "port", "user", "password"))
    seen: list[float] = []
    ready, stop = threading.Event(), threading.Event()

    def watch() -> None:
        client = IMAPClient(host, port=port, ssl=False, timeout=10)
        try:
            client.login(user, password)
            client.select_folder("INBOX", readonly=True)
            client.idle()
            ready.set()
            while not stop.is_set():
                for resp in client.idle_check(timeout=0.2):
                    if len(resp) >= 2 and resp[1] == b"EXISTS":
                        seen.append(time.perf_counter())
            client.idle_done()
            client.logout()
        finally:
            ready.set()
            with contextlib.suppress(Exception):
                client.shutdown()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait(10)
    imap = imaplib.IMAP4(host, port, timeout=10)
    imap.login(user, password)
    out: list[float] = []
    acked: list[float] = []
    try:
        for i in range(n):
            before = len(seen)
            t0 = time.perf_counter()
            imap.append("INBOX", None, None, plain_mail("base@example.com", f"baseline {i}"))
            acked.append((time.perf_counter() - t0) * 1000)
            deadline = t0 + 10
            while len(seen) == before and time.perf_counter() < deadline:
                time.sleep(0.0005)
            if len(seen) > before:
                out.append((seen[before] - t0) * 1000)
            time.sleep(gap)
    finally:
        imap.logout()
        stop.set()
        thread.join(5)
    return out, acked


async def gateway_idle(mailbox: object, redis_url: str, n: int, gap: float) -> list[float]:
    """APPEND -> message in its customer's thread in the Store, through the gateway's IDLE, in ms."""
    host, port, user, password = (getattr(mailbox, a) for a in ("host", "port", "user", "password"))
    settings = EmailSettings(address="support@example.com", smtp_host="127.0.0.1", smtp_port=free_port(),
                             imap_host=host, imap_port=port, imap_security="none", imap_username=user,
                             imap_password=password, poll_interval=3600.0)
    gw_port = free_port()
    connector = EmailConnector("mail", settings, public_url=f"http://127.0.0.1:{gw_port}")
    out: list[float] = []
    async with GatewayUnderTest(redis_url, prefix=f"bench{uuid.uuid4().hex[:6]}", connectors={}, port=gw_port,
                                instances={"mail": connector}) as gw:
        store: Store = gw.store
        imap = imaplib.IMAP4(host, port, timeout=10)
        imap.login(user, password)
        try:
            await asyncio.sleep(3.0)  # the poller connects, reads the empty mailbox, settles into IDLE
            for i in range(n):
                sender = f"c{i}-{uuid.uuid4().hex[:6]}@example.com"
                raw = plain_mail(sender, f"message {i}")
                t0 = time.perf_counter()
                await asyncio.to_thread(imap.append, "INBOX", None, None, raw)
                deadline = t0 + 15
                while time.perf_counter() < deadline:
                    customer = await store.find_customer(Identity("email", sender))
                    if customer is not None and (await store.timeline.list_messages(customer.id))[0]:
                        out.append((time.perf_counter() - t0) * 1000)
                        break
                    await asyncio.sleep(0.001)
                else:
                    print(f"  message {i} did not reach its thread within 15 s", flush=True)
                await asyncio.sleep(gap)
        finally:
            with contextlib.suppress(Exception):
                imap.logout()
    return out


def latency_bench(n: int, gap: float) -> None:
    from dovecot import DovecotServer, dovecot_binary  # type: ignore[import-not-found]

    print(f"\nIDLE TO THREAD ({n} mails APPENDed one at a time, {gap:g} s apart)")
    if dovecot_binary() is None:
        print("  skipped: Dovecot is not installed (Debian: apt-get install dovecot-imapd)")
        return
    # The gateway's info logs (leases, IMAP connects) would drown the report.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    redis = BenchRedis()
    dovecot = DovecotServer()
    try:
        redis.start()
        dovecot.start()
        base, acked = baseline_idle(dovecot.add_user(), n, gap)
        got = asyncio.run(gateway_idle(dovecot.add_user(), redis.url, n, gap))
    finally:
        dovecot.remove()
        redis.stop()
    print(f"  APPEND -> its OK (stored by Dovecot):            {summary(acked)}")
    print(f"  baseline, APPEND -> EXISTS in a bare IDLE loop:  {summary(base)}")
    print(f"  gateway, APPEND -> message in customer's thread: {summary(got)}")
    if base and got:
        b50 = percentile(sorted(round(v * 1000) for v in base), 50)
        g50 = percentile(sorted(round(v * 1000) for v in got), 50)
        print(f"  ratio of p50s gateway / baseline: {g50 / max(b50, 1):.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=2000, help="parse corpus size (default 2000)")
    p.add_argument("--appends", type=int, default=30, help="mails APPENDed for the latency (default 30)")
    p.add_argument("--gap", type=float, default=0.5, help="seconds between APPENDs (default 0.5)")
    p.add_argument("--no-imap", action="store_true", help="parse throughput only")
    a = p.parse_args(argv)
    print(f"email benchmark: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    parse_bench(a.messages)
    if not a.no_imap:
        latency_bench(a.appends, a.gap)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
