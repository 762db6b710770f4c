"""Inbound email over SMTP: an aiosmtpd listener for deployments whose mail server forwards to us.

It accepts mail for our address only, refuses mail over max_message_bytes with 552 (both when
the client announces SIZE and when the data runs over), and parses and records exactly as the
IMAP side does (`parse.ingest_email`). The 250 goes out only after the message is durably
recorded; if recording fails the answer is 451, so the sending server keeps the mail and retries
(a retry of something already recorded is deduplicated by its Message-ID).

The server runs in the gateway's own event loop (not aiosmtpd's threaded Controller): recording
then goes through the same Redis client as everything else, with no cross-thread hand-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from connectors.base import PollContext
from connectors.email.parse import ingest_email
from connectors.email.settings import EmailSettings

log = structlog.get_logger("connectors.email.listener")


class _Handler:
    def __init__(self, settings: EmailSettings, ctx: PollContext) -> None:
        self.settings = settings
        self.ctx = ctx

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address.strip().lower() != self.settings.address:
            # Not an open relay, and not a catch-all: only our own mailbox is delivered here.
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content
        if content is None:  # pragma: no cover  (aiosmtpd always sets it before this hook)
            return "451 4.3.0 no message data"
        # What a delivering MTA records: the envelope sender, "<>" for bounces. The parser's
        # loop safety reads it (a null sender is never answered).
        sender = envelope.mail_from or ""
        if sender != "<>":
            sender = f"<{sender}>"
        raw = b"Return-Path: " + sender.encode("utf-8", "surrogateescape") + b"\r\n" + content
        try:
            ids = await ingest_email(raw, self.ctx, self.settings, received_at_ms=int(time.time() * 1000))
        except Exception as exc:
            log.warning("email.listener.record_failed", instance=self.ctx.instance, error=repr(exc))
            return "451 4.3.0 temporary failure recording the message, try again later"
        log.info("email.listener.received", instance=self.ctx.instance, recorded=len(ids))
        return "250 2.0.0 OK: recorded"


class SmtpListener:
    """The listener of one instance. `serve_forever()` is what `EmailConnector.poll` runs."""

    def __init__(self, settings: EmailSettings, ctx: PollContext, *, hostname: str | None = None) -> None:
        address = settings.listen_address()
        if address is None:
            raise ValueError("smtp_listen is not set")
        self.host, self.port = address
        self.settings = settings
        self.ctx = ctx
        self.hostname = hostname or settings.domain
        self._server: asyncio.AbstractServer | None = None

    def _protocol(self) -> SMTP:
        return SMTP(
            _Handler(self.settings, self.ctx),
            data_size_limit=self.settings.max_message_bytes,
            enable_SMTPUTF8=True,
            hostname=self.hostname,
            # aiosmtpd's default would make its own loop; the protocol must live in ours.
            loop=asyncio.get_running_loop(),
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self.port)
        sockets = self._server.sockets
        if sockets and self.port == 0:
            self.port = int(sockets[0].getsockname()[1])
        log.info("email.listener.started", instance=self.ctx.instance, host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            # Newer Pythons wait here for open sessions to end, which an idle client can drag
            # out to aiosmtpd's 5-minute timeout; the port is released by close() already.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> SmtpListener:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


__all__ = ["SmtpListener"]
