"""IMAP inbound against a real Dovecot: mail appended to the mailbox reaches the gateway once,
in order, through IDLE or polling, across restarts, UIDVALIDITY changes and dropped connections.

The poller runs with the email connector's real parse, keep-files and record path into a real
Redis (the gateway's own poll context), so "stored once" below is the core's dedupe at work.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog
from dovecot import CAPABILITIES_WITHOUT_IDLE, DovecotServer, Mailbox

from connectors.base import ParseResult
from connectors.email.imap import FETCH_BATCH, ImapTiming, _batches, run_imap
from connectors.email.settings import EmailSettings
from conversation.store import Store
from gateway.testing import eventually
from gateway.workers.pollers import StorePollContext

# Short waits so that failures and shutdowns show within the test's budget.
FAST = ImapTiming(idle_tick=0.2, backoff_initial=0.1, backoff_max=0.5, shutdown_timeout=3.0)


class RecordingContext(StorePollContext):
    """The gateway's poll context on a real store, remembering what the poller handed over."""

    def __init__(self, store: Store, instance: str) -> None:
        super().__init__(store, instance)
        self.recorded: list[tuple[str, str | None]] = []  # (Message-ID, stream entry id or None)
        self.dead: list[str] = []

    async def record(self, result: ParseResult) -> list[str | None]:
        ids = await super().record(result)
        self.recorded += [(m.provider_message_id, i) for m, i in zip(result.messages, ids, strict=False)]
        return ids

    async def dead_letter(self, raw: bytes, reason: str) -> None:
        await super().dead_letter(raw, reason)
        self.dead.append(reason)

    @property
    def stored(self) -> list[str]:
        """Message-IDs that made it into the ingest stream (first time seen), in order."""
        return [mid for mid, entry in self.recorded if entry is not None]


@pytest.fixture
def store(redis_client: aioredis.Redis, key_prefix: str) -> Store:
    return Store(redis_client, prefix=key_prefix, partitions=2)


def settings_for(mailbox: Mailbox, **overrides: Any) -> EmailSettings:
    values: dict[str, Any] = {
        "address": "support@example.com", "smtp_host": "127.0.0.1", "imap_host": mailbox.host,
        "imap_port": mailbox.port, "imap_security": "none", "imap_username": mailbox.user,
        "imap_password": mailbox.password, "poll_interval": 60.0, **overrides,
    }
    return EmailSettings(**values)


def mail(text: str, *, sender: str = "ana@example.com", subject: str = "Order 42") -> tuple[str, bytes]:
    """(Message-ID, raw message) of a simple customer mail."""
    mid = f"<{uuid.uuid4().hex}@example.com>"
    raw = (
        f"From: Ana <{sender}>\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
        f"Date: {formatdate()}\r\nMessage-ID: {mid}\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
    ).encode()
    return mid, raw



@contextlib.asynccontextmanager
async def polling(settings: EmailSettings, ctx: RecordingContext, timing: ImapTiming = FAST) -> AsyncIterator[
        asyncio.Task[None]]:
    """The poller running for the block; cancelled (as the gateway's supervisor does) after it."""
    task = asyncio.create_task(run_imap(settings, ctx, ctx.instance, timing=timing))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


async def appended(mailbox: Mailbox, *raws: bytes) -> list[int]:
    return [await asyncio.to_thread(mailbox.append, raw) for raw in raws]


# --- tests ------------------------------------------------------------------------------------------


async def test_appended_mail_reaches_the_customers_thread_through_idle(
        imap_mailbox: Mailbox, redis_url: str, key_prefix: str) -> None:
    from connectors.email.connector import EmailConnector
    from gateway.testing import GatewayUnderTest, free_port

    port = free_port()
    # poll_interval is an hour: only IDLE can bring the mail in within the few seconds allowed.
    connector = EmailConnector("mail", settings_for(imap_mailbox, poll_interval=3600.0),
                               public_url=f"http://127.0.0.1:{port}")
    async with GatewayUnderTest(redis_url, prefix=key_prefix, connectors={}, port=port,
                                instances={"mail": connector}) as gw:
        token = await gw.token()
        await eventually(lambda: imap_mailbox.logged_in_sessions() == 1, what="the poller to log in")
        # Past the first short IDLE (ImapTiming.idle_settle): now only the server's IDLE
        # announcement can bring the mail in quickly.
        await asyncio.sleep(ImapTiming().idle_settle + 0.5)
        _, raw = mail("Where is my parcel?", sender="Ana.Lopez@Example.com")
        started = time.monotonic()
        await appended(imap_mailbox, raw)

        async def thread_messages() -> list[dict[str, Any]]:
            status, found = await gw.api("GET", "/v1/customers?identity=email:ana.lopez@example.com", token)
            items = found.get("items") if status == 200 and isinstance(found, dict) else None
            if not items:
                return []
            status, page = await gw.api("GET", f"/v1/conversations/{items[0]['id']}/messages", token)
            return list(page["items"]) if status == 200 and isinstance(page, dict) else []

        async def arrived() -> bool:
            return bool(await thread_messages())
        await eventually(arrived, within=5, what="the mail in the customer's thread")
        assert time.monotonic() - started < 5
        [message] = await thread_messages()
        assert message["channel"] == "email" and message["text"] == "Where is my parcel?"
        assert message["subject"] == "Order 42"
    # Read with BODY.PEEK from a read-only EXAMINE: the customer's mail is still unread.
    assert "\\Seen" not in imap_mailbox.flags(1)


async def test_a_restarted_poller_reads_nothing_twice_and_misses_nothing(
        imap_mailbox: Mailbox, store: Store) -> None:
    ctx = RecordingContext(store, "mail")
    settings = settings_for(imap_mailbox)
    first = [mail(f"message {n}") for n in range(3)]
    second = [mail(f"message {n}") for n in range(3, 6)]
    await appended(imap_mailbox, *(raw for _, raw in first[:2]))

    async with polling(settings, ctx):
        await eventually(lambda: len(ctx.recorded) == 2, what="the first two")
        await appended(imap_mailbox, first[2][1])  # arrives while idling
        await eventually(lambda: len(ctx.recorded) == 3, what="the third")
    # The gateway is down while three more arrive.
    await appended(imap_mailbox, *(raw for _, raw in second))
    async with polling(settings, ctx):
        await eventually(lambda: len(ctx.recorded) == 6, what="the three that came during the restart")
        await asyncio.sleep(0.3)  # give a wrongly re-read message the time to show up

    expected = [mid for mid, _ in first + second]
    # Not merely deduplicated by the core: the cursor kept the poller from reading any mail again.
    assert [mid for mid, _ in ctx.recorded] == expected
    assert ctx.stored == expected
    assert all("\\Seen" not in imap_mailbox.flags(uid) for uid in imap_mailbox.uids())


async def test_a_uidvalidity_change_rescans_without_duplicates(imap_mailbox: Mailbox, store: Store) -> None:
    ctx = RecordingContext(store, "mail")
    old = [mail(f"before {n}") for n in range(3)]
    await appended(imap_mailbox, *(raw for _, raw in old))
    async with polling(settings_for(imap_mailbox), ctx):
        await eventually(lambda: len(ctx.stored) == 3, what="the first mails")
        before = imap_mailbox.uidvalidity()
        # The mailbox is restored or migrated under the running poller, and new mail arrives:
        # Dovecot drops the session, the poller reconnects and finds new UIDs for the old mail.
        await asyncio.to_thread(imap_mailbox.set_uidvalidity, before + 1000)
        new_mid, raw = mail("after the change")
        await appended(imap_mailbox, raw)
        await eventually(lambda: len(ctx.stored) == 4, what="mail after the change")
        await asyncio.sleep(0.3)  # give a second rescan (a bug) the time to show

    rescanned = [mid for mid, _ in ctx.recorded[3:]]
    assert rescanned == [mid for mid, _ in old] + [new_mid]  # nothing skipped: all read again...
    assert ctx.stored == [mid for mid, _ in old] + [new_mid]  # ...and nothing stored twice
    streams = [store.keys.ingest_stream(p) for p in range(store.partitions)]
    assert sum([await store.redis.xlen(s) for s in streams]) == 4
    cursor = await ctx.load_state("imap:INBOX")
    assert cursor is not None and f'"uidvalidity":{before + 1000}'.encode() in cursor


async def test_a_rescan_does_not_reach_back_to_old_mail(imap_mailbox: Mailbox, store: Store) -> None:
    # The core forgets Message-IDs after some days; rereading last month's mail after a
    # UIDVALIDITY change would put it in customers' threads again. The rescan starts a day before
    # the newest mail already read.
    ctx = RecordingContext(store, "mail")
    old, raw = mail("from last month")
    await asyncio.to_thread(imap_mailbox.append, raw, arrived=datetime.now(UTC) - timedelta(days=30))
    recent = [mail(f"recent {n}") for n in range(2)]
    await appended(imap_mailbox, *(raw for _, raw in recent))
    async with polling(settings_for(imap_mailbox), ctx):
        # A first run reads the whole mailbox, old mail included.
        await eventually(lambda: len(ctx.stored) == 3, what="the first run")
        await asyncio.to_thread(imap_mailbox.set_uidvalidity, imap_mailbox.uidvalidity() + 1000)
        new_mid, raw = mail("after the change")
        await appended(imap_mailbox, raw)
        await eventually(lambda: len(ctx.stored) == 4, what="mail after the change")
        await asyncio.sleep(0.3)
    assert ctx.stored == [old] + [mid for mid, _ in recent] + [new_mid]
    assert [mid for mid, _ in ctx.recorded[3:]] == [mid for mid, _ in recent] + [new_mid]  # not the old one


def test_large_mail_is_fetched_in_small_batches() -> None:
    mb = 1024 * 1024
    assert _batches([1, 2, 3, 4, 5], {u: 10 * mb for u in range(1, 6)}) == [[1, 2, 3], [4, 5]]
    assert _batches([1, 2, 3], {1: mb, 2: 100 * mb, 3: mb}) == [[1], [2], [3]]  # a huge one alone
    many = list(range(1, 2 * FETCH_BATCH + 2))
    assert [len(b) for b in _batches(many, {})] == [FETCH_BATCH, FETCH_BATCH, 1]


async def test_a_dropped_connection_is_reopened_with_backoff(
        dovecot_factory: type[DovecotServer], store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    server = dovecot_factory().start()
    mailbox = server.add_user()
    ctx = RecordingContext(store, "mail")
    with structlog.testing.capture_logs() as logs:
        async with polling(settings_for(mailbox), ctx) as task:
            await eventually(lambda: mailbox.logged_in_sessions() == 1, what="the poller to log in")
            await asyncio.to_thread(mailbox.kick)  # BYE, then the server closes the socket
            one, raw = mail("after a kick")
            await appended(mailbox, raw)
            await eventually(lambda: ctx.stored == [one], what="mail after the kick")

            # The whole server goes away for a while: the poller retries, backing off.
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(1.5)
            assert not task.done()  # still trying, not crashed
            await asyncio.to_thread(server.start)
            two, raw = mail("after a restart")
            await appended(mailbox, raw)
            await eventually(lambda: ctx.stored == [one, two], within=10, what="mail after the restart")

    drops = [e for e in logs if e["event"] == "imap.disconnected"]
    assert len(drops) >= 3  # the kick, then refused connections while the server was down
    delays = [e["retry_in"] for e in drops]
    assert max(delays) <= FAST.backoff_max and delays[-1] > delays[0]  # growing, capped
    assert all(mailbox.user not in str(e) and mailbox.password not in str(e) for e in logs)


async def test_processed_mail_is_moved_to_the_configured_folder(imap_mailbox: Mailbox, store: Store) -> None:
    ctx = RecordingContext(store, "mail")
    mids = []
    for n in range(3):
        mid, raw = mail(f"to move {n}")
        mids.append(mid)
        await appended(imap_mailbox, raw)
    async with polling(settings_for(imap_mailbox, imap_processed_folder="Processed"), ctx):
        await eventually(lambda: len(ctx.stored) == 3, what="the mails")
        await eventually(lambda: imap_mailbox.uids() == [], what="INBOX to be emptied")
        mid, raw = mail("to move later")
        mids.append(mid)
        await appended(imap_mailbox, raw)
        await eventually(lambda: len(imap_mailbox.uids("Processed")) == 4, what="the later mail moved")
    assert ctx.stored == mids and imap_mailbox.uids() == []


async def test_without_idle_the_mailbox_is_polled_and_moved_by_copy_and_expunge(
        dovecot_factory: type[DovecotServer], store: Store) -> None:
    # Neither IDLE nor MOVE: the poller polls, and moves the RFC 6851 way (COPY, \Deleted, EXPUNGE).
    capabilities = CAPABILITIES_WITHOUT_IDLE.replace(" MOVE", "")
    server = dovecot_factory(capabilities=capabilities).start()
    mailbox = server.add_user()
    mailbox.create_folder("Done")
    ctx = RecordingContext(store, "mail")
    settings = settings_for(mailbox, poll_interval=0.5, imap_processed_folder="Done")
    with structlog.testing.capture_logs() as logs:
        async with polling(settings, ctx):
            await eventually(lambda: mailbox.logged_in_sessions() == 1, what="the poller to log in")
            mid, raw = mail("polled")
            await appended(mailbox, raw)
            await eventually(lambda: ctx.stored == [mid], within=5, what="the polled mail")
            await eventually(lambda: mailbox.uids() == [] and len(mailbox.uids("Done")) == 1,
                             what="the copy and expunge")
    [connected] = [e for e in logs if e["event"] == "imap.connected"]
    assert connected["idle"] is False


async def test_unusable_mail_is_dead_lettered_and_the_mailbox_moves_on(imap_mailbox: Mailbox, store: Store) -> None:
    ctx = RecordingContext(store, "mail")
    good, raw = mail("after the junk")
    # From our own address: the parser refuses it as a mail loop.
    _, loop = mail("loop", sender="support@example.com")
    await appended(imap_mailbox, loop, raw)
    async with polling(settings_for(imap_mailbox), ctx):
        await eventually(lambda: ctx.stored == [good], what="the good mail")
    assert len(ctx.dead) == 1 and "imap uid 1" in ctx.dead[0]
    assert await store.redis.xlen(store.keys.ingest_dead()) == 1


async def test_cancelling_leaves_idle_and_logs_out_promptly(imap_mailbox: Mailbox, store: Store) -> None:
    ctx = RecordingContext(store, "mail")
    slow_tick = ImapTiming(idle_tick=1.0, backoff_initial=0.1, backoff_max=0.5)
    task = asyncio.create_task(run_imap(settings_for(imap_mailbox), ctx, "mail", timing=slow_tick))
    await eventually(lambda: imap_mailbox.logged_in_sessions() == 1, what="the poller to log in")
    await asyncio.sleep(0.5)  # in IDLE now
    started = time.monotonic()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 2.5  # within about one IDLE tick, plus DONE and LOGOUT
    await eventually(lambda: imap_mailbox.logged_in_sessions() == 0, within=3, what="the session to end")


class CancellationSwallowingContext(RecordingContext):
    """Saves the cursor the way redis-py on Python 3.11 sometimes does: a cancellation that lands
    during the write is swallowed (asyncio.wait_for's race, fixed in Python 3.12)."""

    def __init__(self, store: Store, instance: str) -> None:
        super().__init__(store, instance)
        self.saving = asyncio.Event()

    async def save_state(self, name: str, value: bytes) -> None:
        await super().save_state(name, value)
        self.saving.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.5)


async def test_a_cancellation_lost_in_a_library_still_stops_the_poller(imap_mailbox: Mailbox, store: Store) -> None:
    ctx = CancellationSwallowingContext(store, "mail")
    task = asyncio.create_task(run_imap(settings_for(imap_mailbox), ctx, "mail", timing=FAST))
    _, raw = mail("hello")
    await appended(imap_mailbox, raw)
    await asyncio.wait_for(ctx.saving.wait(), 8)
    task.cancel()  # lands in save_state, which swallows it
    done, _ = await asyncio.wait({task}, timeout=3)
    assert done, "the poller ignored its cancellation"
    assert task.cancelled()
    await eventually(lambda: imap_mailbox.logged_in_sessions() == 0, within=3, what="the logout")


async def test_two_mailboxes_are_two_independent_instances(dovecot: DovecotServer, store: Store) -> None:
    boxes = [dovecot.add_user(), dovecot.add_user()]
    ctxs = [RecordingContext(store, "sales"), RecordingContext(store, "support")]
    async with polling(settings_for(boxes[0]), ctxs[0]), polling(settings_for(boxes[1]), ctxs[1]):
        sales, raw = mail("for sales")
        await appended(boxes[0], raw)
        support, raw = mail("for support")
        await appended(boxes[1], raw)
        await eventually(lambda: ctxs[0].stored == [sales] and ctxs[1].stored == [support], what="both")
