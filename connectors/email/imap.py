"""IMAP inbound: one mailbox, one connection, one thread, a durable cursor.

imapclient is synchronous, so each mailbox (each email instance) gets a connection of its own,
driven from a dedicated single-thread executor: every IMAP call for that mailbox runs on that one
thread, one after another, so the client is never used concurrently, a slow mailbox never holds
up another, and the event loop is never blocked. The async side decides what to do; the thread
only talks IMAP.

What it guarantees:
- **Nothing read twice, nothing skipped.** A cursor (mailbox, UIDVALIDITY, last UID) is kept with
  the gateway's poll state and advanced only after the message was durably recorded. Mail is
  fetched in UID order with BODY.PEEK[] (never sets \\Seen). UIDs at or below the cursor are
  dropped: `UID n:*` always matches the last message, even when nothing is newer (RFC 3501).
  Without a cursor (the first run on a mailbox) everything in the mailbox is read.
- **UIDVALIDITY changes** (a mailbox restored or migrated) restart the cursor: the mailbox is
  read again, and the core's dedupe on (instance, Message-ID) drops what was already recorded.
  The rescan is bounded to mail that arrived from a day before the newest message already
  recorded, because the core's dedupe keys live for days, not forever: rereading years of mail
  would turn it into duplicates (and flood agents) once those keys have expired.
- **Push where offered.** With IDLE, new mail is read as soon as the server announces it; IDLE is
  re-issued every `imap_idle_seconds` (RFC 2177: servers may drop an IDLE after 30 minutes), and
  the mailbox is read once more shortly after each IDLE that follows a read, for mail a server
  failed to announce (see ImapTiming.idle_settle). A server without IDLE is polled every
  `poll_interval` seconds.
- **Dropped connections** (reset, BYE, server restart, timeouts) reconnect with capped exponential
  backoff and jitter. Configuration errors (bad login, missing mailbox) raise: the gateway's
  poller supervision restarts the instance with its own backoff and logs why.
- **Prompt shutdown.** IDLE waits in ticks of about a second, so a cancelled poller leaves IDLE
  and logs out within a tick or two instead of leaving a thread blocked on the socket, even when
  a library lost the cancellation on the way (see `_honour_lost_cancellation`).

Logs name the instance and mailbox, never the server's address, the login or the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import imaplib
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import msgspec
import structlog
from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import IMAPClientError

from connectors.base import MalformedPayload, PollContext
from connectors.email.imap_support import (
    FETCH_BATCH,
    ConnectionLost,
    Cursor,
    ImapTiming,
    _batches,
    _describe,
    _honour_lost_cancellation,
    _reconnectable,
    _Selected,
    _text,
)
from connectors.email.settings import EmailSettings

log = structlog.get_logger("connectors.email.imap")

DEFAULT_TIMING = ImapTiming()  # frozen: one shared default is safe

T = TypeVar("T")

# What a poller does with one raw message: parse it, keep its files and record it durably,
# returning only once it is recorded (the cursor moves after it). `received_at_ms` is the
# server's INTERNALDATE, when the message reached the mailbox.
Ingest = Callable[[bytes, int], Awaitable[object]]

# A rescan after a UIDVALIDITY change reads mail from this long before the newest one recorded.
RESCAN_MARGIN = timedelta(days=1)


async def run_imap(
    settings: EmailSettings,
    ctx: PollContext,
    instance: str,
    *,
    ingest: Ingest | None = None,
    timing: ImapTiming = DEFAULT_TIMING,
) -> None:
    """Read the instance's mailbox until cancelled: every message, once, in UID order.

    `ingest` defaults to the email connector's own parse-and-record path; tests and benchmarks may
    pass another. Raises on errors a reconnect cannot fix (authentication refused, no such
    mailbox), for the gateway's supervisor to restart with backoff.
    """
    if ingest is None:
        ingest = _default_ingest(settings, ctx, instance)
    poller = ImapPoller(settings, ctx, instance, ingest=ingest, timing=timing)
    await poller.run()


def _default_ingest(settings: EmailSettings, ctx: PollContext, instance: str) -> Ingest:
    """The email connector's parse-keep-record path (what `parse.ingest_email` does), in its two
    phases so that a message the parser cannot handle, for whatever reason, is dead-lettered
    instead of stopping the mailbox: the parse is pure, so any error it raises is about that
    message, and retrying it would fail forever. Errors while keeping files or recording (Redis
    down) propagate: nothing was recorded, the cursor stays, and the message is read again."""
    from connectors.email.parse import parse_email

    async def ingest(raw: bytes, received_at_ms: int) -> object:
        try:
            parsed = parse_email(raw, instance=instance, settings=settings, received_at_ms=received_at_ms)
        except MalformedPayload:
            raise
        except Exception as exc:
            raise MalformedPayload(f"the parser failed: {_describe(exc)}") from exc
        result = await parsed.keep(ctx)
        if not result.messages and not result.statuses:
            return []  # e.g. a "delivery delayed" notice: nothing changes anywhere
        return await ctx.record(result)

    return ingest


class ImapPoller:
    """One mailbox's reader. Build it per instance: nothing is shared between mailboxes."""

    def __init__(
        self, settings: EmailSettings, ctx: PollContext, instance: str, *, ingest: Ingest,
        timing: ImapTiming = DEFAULT_TIMING,
    ) -> None:
        if settings.imap_host is None:
            raise ValueError(f"connectors.{instance}: imap_host is not set")
        self.settings = settings
        self.ctx = ctx
        self.instance = instance
        self.ingest = ingest
        self.timing = timing
        self.mailbox = settings.imap_mailbox
        self.state_name = f"imap:{self.mailbox}"
        self.log = log.bind(instance=instance, mailbox=self.mailbox)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"imap-{instance}")
        # Touched only on the executor's thread.
        self._client: IMAPClient | None = None
        self._idling = False

    # --- the async side: what to do ---------------------------------------------------------------

    async def run(self) -> None:
        failures = 0
        try:
            while True:
                try:
                    async for _ in self._session():
                        failures = 0  # a session that got as far as reading the mailbox is healthy
                except Exception as exc:
                    if not _reconnectable(exc):
                        raise
                    failures += 1
                    delay = min(self.timing.backoff_max, self.timing.backoff_initial * 2 ** (failures - 1))
                    delay *= random.uniform(0.5, 1.0)
                    self.log.warning("imap.disconnected", error=_describe(exc), attempt=failures,
                                     retry_in=round(delay, 2))
                    await self._call(self._drop)
                    await asyncio.sleep(delay)
        finally:
            await self._shutdown()

    async def _session(self) -> AsyncIterator[None]:
        """Connect, then read and wait for mail forever; yields each time the mailbox is read."""
        selected = await self._call(self._connect)
        self.log.info("imap.connected", idle=selected.idle, uidvalidity=selected.uidvalidity)
        cursor = await self._cursor_for(selected.uidvalidity)
        if self.settings.imap_processed_folder:
            await self._sweep(cursor, selected)
        settle = True
        while True:
            cursor, read = await self._sync(cursor, selected)
            yield
            if not selected.idle:
                await asyncio.sleep(self.settings.poll_interval)
                continue
            # Mail the server announced while we were fetching (an EXISTS attached to another
            # command's answer) is not announced again in IDLE: read it first.
            if await self._call(self._pending_exists):
                continue
            settle = settle or read > 0
            await self._idle_until_mail(self.timing.idle_settle if settle else self.settings.imap_idle_seconds)
            settle = False

    async def _cursor_for(self, uidvalidity: int) -> Cursor:
        raw = await self.ctx.load_state(self.state_name)
        saved: Cursor | None = None
        if raw:
            try:
                saved = msgspec.json.decode(raw, type=Cursor)
            except msgspec.DecodeError:
                self.log.warning("imap.cursor_unreadable")  # read the mailbox again; dedupe holds
        if saved is not None and saved.mailbox == self.mailbox:
            if saved.uidvalidity == uidvalidity:
                return saved
            since = (datetime.fromtimestamp(saved.seen_until_ms / 1000, UTC) - RESCAN_MARGIN
                     if saved.seen_until_ms else None)
            self.log.warning("imap.uidvalidity_changed", old=saved.uidvalidity, new=uidvalidity,
                             rescan_since=since.isoformat() if since else "the beginning")
            cursor = Cursor(mailbox=self.mailbox, uidvalidity=uidvalidity, seen_until_ms=saved.seen_until_ms,
                            rescan_since_ms=int(since.timestamp() * 1000) if since else None)
            await self._save(cursor)
            return cursor
        # First run on this mailbox: everything in it is new to us.
        return Cursor(mailbox=self.mailbox, uidvalidity=uidvalidity)

    async def _sync(self, cursor: Cursor, selected: _Selected) -> tuple[Cursor, int]:
        """Read every message above the cursor, in UID order, recording each before moving on.
        Returns the cursor and how many messages were read."""
        read = 0
        while True:
            uids = await self._call(self._uids_after, cursor.last_uid)
            if not uids:
                return cursor, read
            wanted = uids
            if cursor.rescan_since_ms is not None:
                since = datetime.fromtimestamp(cursor.rescan_since_ms / 1000, UTC).date()
                recent = set(await self._call(self._uids_since, cursor.last_uid, uids[-1], since))
                wanted = [u for u in uids if u in recent]
            sizes = await self._call(self._sizes, wanted) if wanted else {}
            for batch in _batches(wanted, sizes):
                fetched = await self._call(self._fetch, batch)
                done: list[int] = []
                for uid in batch:
                    message = fetched.get(uid)
                    if message is not None:  # else expunged since the search: nothing to read
                        raw, arrived_ms = message
                        await self._ingest(uid, raw, arrived_ms)
                        done.append(uid)
                        read += 1
                        cursor.seen_until_ms = max(cursor.seen_until_ms, arrived_ms)
                    cursor.last_uid = uid
                    await self._save(cursor)
                if done and self.settings.imap_processed_folder:
                    await self._move(done, selected)
            if cursor.rescan_since_ms is not None:
                # Everything up to the newest UID seen has been read or deliberately skipped.
                self.log.info("imap.rescan_done", uidvalidity=cursor.uidvalidity)
                cursor.last_uid, cursor.rescan_since_ms = uids[-1], None
                await self._save(cursor)

    async def _ingest(self, uid: int, raw: bytes, arrived_ms: int) -> None:
        try:
            await self.ingest(raw, arrived_ms)
        except MalformedPayload as exc:
            # Kept whole where an operator can see and replay it; the mailbox moves on.
            self.log.warning("imap.dead_lettered", uid=uid, reason=str(exc))
            await self.ctx.dead_letter(raw, f"imap uid {uid}: {exc}")

    async def _save(self, cursor: Cursor) -> None:
        await self.ctx.save_state(self.state_name, msgspec.json.encode(cursor))

    async def _move(self, uids: list[int], selected: _Selected) -> None:
        folder = self.settings.imap_processed_folder
        assert folder is not None
        try:
            await self._call(self._move_to, uids, folder, selected)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            # The mail is recorded and the cursor is past it, so it will not be read again; a
            # failed move (no right on the folder, quota) must not stop the reading.
            self.log.warning("imap.move_failed", count=len(uids), error=_describe(exc))

    async def _sweep(self, cursor: Cursor, selected: _Selected) -> None:
        """Move mail recorded before a crash that came between recording it and moving it."""
        if cursor.last_uid == 0 or cursor.rescan_since_ms is not None:
            return
        leftovers = await self._call(self._uids_upto, cursor.last_uid)
        if leftovers:
            await self._move(leftovers, selected)

    async def _idle_until_mail(self, seconds: float) -> None:
        """IDLE until the server announces new mail, the connection drops, or `seconds` pass."""
        await self._call(self._idle_start)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if await self._call(self._idle_wait, self.timing.idle_tick):
                break
        await self._call(self._idle_stop)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run one blocking IMAP step on this mailbox's thread."""
        _honour_lost_cancellation()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def _shutdown(self) -> None:
        # Queued behind whatever step the thread is in (at most one IDLE tick when idle), so the
        # logout never races the client.
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._logout)
        try:
            await asyncio.wait_for(future, self.timing.shutdown_timeout)
        except TimeoutError:
            self.log.warning("imap.logout_slow")  # the thread ends on its own at its socket timeout
        except Exception as exc:
            self.log.debug("imap.logout_failed", error=_describe(exc))
        finally:
            self._executor.shutdown(wait=False)

    # --- the thread side: IMAP, blocking -----------------------------------------------------------

    def _connect(self) -> _Selected:
        s = self.settings
        assert s.imap_host is not None and s.imap_username is not None
        context: ssl.SSLContext | None = None
        if s.imap_security != "none":
            context = ssl.create_default_context()
            if not s.imap_validate_certs:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        client = IMAPClient(s.imap_host, port=s.imap_port, ssl=s.imap_security == "ssl", ssl_context=context,
                            timeout=SocketTimeout(connect=s.imap_timeout, read=s.imap_timeout))
        try:
            # Timezone-aware INTERNALDATEs: they bound rescans and become received_at_ms.
            client.normalise_times = False
            if s.imap_security == "starttls":
                client.starttls(context)
            client.login(s.imap_username, s.imap_password.reveal())
            capabilities = set(client.capabilities())
            folder = s.imap_processed_folder
            if folder and not client.folder_exists(folder):
                with contextlib.suppress(IMAPClient.Error):  # made meanwhile by someone else
                    client.create_folder(folder)
            # EXAMINE (read-only) unless mail is to be moved: reading can then change nothing.
            info = client.select_folder(self.mailbox, readonly=not folder)
            # SELECT's own EXISTS is not news: the first read covers what it counted.
            client._imap.untagged_responses.pop("EXISTS", None)
        except BaseException:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
        self._client = client
        self._idling = False
        return _Selected(uidvalidity=int(info[b"UIDVALIDITY"]), idle=b"IDLE" in capabilities,
                         move=b"MOVE" in capabilities, uidplus=b"UIDPLUS" in capabilities)

    def _require(self) -> IMAPClient:
        if self._client is None:
            raise ConnectionLost("not connected")
        return self._client

    def _uids_after(self, last_uid: int) -> list[int]:
        client = self._require()
        # NOOP first: some servers only notice new mail in the selected mailbox when asked to.
        client.noop()
        found = client.search(["UID", f"{last_uid + 1}:*"])
        # `n:*` matches the highest UID even when it is below n: drop what we already have.
        return sorted(u for u in found if u > last_uid)

    def _uids_since(self, last_uid: int, upto: int, since: date) -> list[int]:
        return list(self._require().search(["UID", f"{last_uid + 1}:{upto}", "SINCE", since]))

    def _uids_upto(self, last_uid: int) -> list[int]:
        return sorted(u for u in self._require().search(["UID", f"1:{last_uid}"]) if u <= last_uid)

    def _sizes(self, uids: Sequence[int]) -> dict[int, int]:
        response = self._require().fetch(list(uids), [b"RFC822.SIZE"])
        return {uid: int(data.get(b"RFC822.SIZE", 0)) for uid, data in response.items()}

    def _fetch(self, uids: Sequence[int]) -> dict[int, tuple[bytes, int]]:
        response = self._require().fetch(list(uids), [b"BODY.PEEK[]", b"INTERNALDATE"])
        out: dict[int, tuple[bytes, int]] = {}
        now_ms = int(time.time() * 1000)
        for uid, data in response.items():
            raw = data.get(b"BODY[]")
            if uid not in uids or not isinstance(raw, bytes):
                continue  # an unsolicited FETCH (flags changed by another client)
            arrived = data.get(b"INTERNALDATE")
            if isinstance(arrived, datetime):
                if arrived.tzinfo is None:
                    arrived = arrived.replace(tzinfo=UTC)
                out[uid] = (raw, int(arrived.timestamp() * 1000))
            else:
                out[uid] = (raw, now_ms)
        return out

    def _move_to(self, uids: list[int], folder: str, selected: _Selected) -> None:
        client = self._require()
        if selected.move:
            client.move(uids, folder)
            return
        # RFC 6851's fallback: copy, flag, expunge. Without UIDPLUS, EXPUNGE removes every
        # \Deleted message of the mailbox, which is what a client marking mail deleted expects.
        client.copy(uids, folder)
        client.add_flags(uids, [b"\\Deleted"], silent=True)
        if selected.uidplus:
            client.uid_expunge(uids)
        else:
            client.expunge()

    def _pending_exists(self) -> bool:
        """Whether the server announced mail since the last read (imaplib keeps untagged
        responses that came with other commands' answers in this dict)."""
        pending: dict[str, list[bytes]] = self._require()._imap.untagged_responses
        announced = pending.pop("EXISTS", None) is not None
        for name in ("RECENT", "EXPUNGE"):  # not used; dropped so that they do not pile up
            pending.pop(name, None)
        return announced

    def _idle_start(self) -> None:
        try:
            self._require().idle()
        except IMAPClientError as exc:
            # imapclient gives up when anything (an EXISTS for mail that arrived just then)
            # comes before the server's "+ idling". Reconnecting reads the mailbox again from
            # the cursor, so that mail is read, not lost, and the poller is not torn down.
            raise ConnectionLost(f"IDLE not entered: {exc}") from exc
        self._idling = True

    def _idle_wait(self, tick: float) -> bool:
        """One tick of IDLE; True when the mailbox should be read again."""
        client = self._require()
        started = time.monotonic()
        responses = client.idle_check(timeout=tick)
        for response in responses:
            if response and response[0] == b"BYE":
                raise ConnectionLost(f"server said BYE: {_text(response[1:])}")
            if len(response) >= 2 and response[1] == b"EXISTS":
                return True
        # idle_check swallows EOF: an early return with nothing parsed means the socket woke
        # without a whole response, usually because the server closed it. Leaving IDLE tests the
        # connection: DONE fails on a dead one, and a live one is just read again.
        return not responses and time.monotonic() - started < tick / 2

    def _idle_stop(self) -> None:
        client = self._require()
        if self._idling:
            self._idling = False
            client.idle_done()

    def _drop(self) -> None:
        client, self._client, self._idling = self._client, None, False
        if client is not None:
            with contextlib.suppress(Exception):
                client.shutdown()

    def _logout(self) -> None:
        client = self._client
        if client is None:
            return
        try:
            if self._idling:
                self._idling = False
                client.idle_done()
            client.logout()
        except Exception:
            self._drop()
        else:
            self._client = None


__all__ = ["FETCH_BATCH", "ConnectionLost", "Cursor", "ImapPoller", "ImapTiming", "Ingest", "run_imap"]
