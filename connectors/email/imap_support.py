"""What the IMAP poller (connectors/email/imap.py) keeps and decides apart from talking IMAP:
its pacing, its durable cursor, and how it reads failures and batches."""

from __future__ import annotations

import asyncio
import imaplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

# Messages fetched per FETCH: few round trips, while a run of large mails (scans, videos) does
# not sit in memory at once. A single larger message is still fetched, alone.
FETCH_BATCH = 20
FETCH_BATCH_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class ImapTiming:
    """Pacing that is not configuration users should need to touch; tests shorten it."""

    # How long one IDLE wait may block the mailbox's thread: how late a cancellation is acted on.
    idle_tick: float = 1.0
    # A server can miss mail that lands while IDLE begins (Dovecot does, now and then: the message
    # is then announced only by a later change or a re-issued IDLE). So after connecting, and
    # after reading mail (when more tends to follow), the first IDLE ends after this long and the
    # mailbox is read once more before IDLE proper.
    idle_settle: float = 2.0
    # Reconnect backoff after a dropped connection: doubles from `backoff_initial` up to
    # `backoff_max`, each delay drawn from its upper half so that many gateways do not return
    # in lockstep after a server restart.
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    # How long a clean logout may take on shutdown before the thread is left to finish alone.
    shutdown_timeout: float = 5.0


class Cursor(msgspec.Struct, kw_only=True):
    """Where the poller stands in one mailbox, saved as JSON in the instance's poll state."""

    mailbox: str
    uidvalidity: int
    last_uid: int = 0
    # Newest INTERNALDATE recorded (ms): what bounds a rescan after a UIDVALIDITY change.
    seen_until_ms: int = 0
    # Set while a rescan runs, so a restart midway keeps its bound: mail that arrived before this
    # (ms) is not read again.
    rescan_since_ms: int | None = None


class ConnectionLost(Exception):
    """The server closed or broke the connection; the poller reconnects."""


@dataclass(frozen=True)
class _Selected:
    uidvalidity: int
    idle: bool
    move: bool
    uidplus: bool


def _honour_lost_cancellation() -> None:
    """Raise CancelledError if this task was cancelled but the cancellation got lost on the way.

    On Python 3.11, asyncio.wait_for returns normally when the awaited operation completes in the
    same loop turn as the cancellation, swallowing it (fixed in 3.12); redis-py awaits every
    socket write through wait_for, so a cancel that lands while the cursor is being saved can
    vanish. The task still counts the request (Task.cancelling()), so every IMAP step checks it:
    the supervisor's cancel then stops the poller within one step instead of never.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _batches(uids: Sequence[int], sizes: dict[int, int]) -> list[list[int]]:
    """`uids` in order, cut into FETCHes of at most FETCH_BATCH messages and FETCH_BATCH_BYTES."""
    batches: list[list[int]] = []
    batch: list[int] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if batch and (len(batch) == FETCH_BATCH or total + size > FETCH_BATCH_BYTES):
            batches.append(batch)
            batch, total = [], 0
        batch.append(uid)
        total += size
    if batch:
        batches.append(batch)
    return batches


def _reconnectable(exc: BaseException) -> bool:
    """Errors of the connection, not of the configuration: worth reconnecting for."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False  # a wrong host name or an untrusted certificate is fixed in the config
    if isinstance(exc, ConnectionLost | OSError | imaplib.IMAP4.abort):  # OSError: resets, timeouts, TLS
        return True
    # A server that is starting or shutting down may refuse logins for a moment (RFC 5530).
    return isinstance(exc, imaplib.IMAP4.error) and "[UNAVAILABLE]" in str(exc)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}" if str(exc) else type(exc).__name__


def _text(parts: Sequence[object]) -> str:
    return " ".join(p.decode(errors="replace") if isinstance(p, bytes) else str(p) for p in parts)[:200]


__all__ = ["FETCH_BATCH", "FETCH_BATCH_BYTES", "ConnectionLost", "Cursor", "ImapTiming"]
