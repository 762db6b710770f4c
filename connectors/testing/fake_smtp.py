"""A local SMTP server playing the mail provider: aiosmtpd on a free port, capturing what it
receives, with scriptable refusals (4xx/5xx at RCPT or DATA), optional AUTH, STARTTLS or implicit TLS.

It is the email connector's fake provider for the conformance kit (`fail_next`, `messages`,
`base_url` as `smtp://host:port`) and the SMTP server of the email tests:

    async with FakeSmtp() as smtp:
        settings = {..., "smtp_host": smtp.host, "smtp_port": smtp.port, "smtp_security": "none"}
        smtp.fail_next(451)          # the next message is answered "451 ..." at DATA
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

# What real servers say with the codes tests script most (RFC 5321 and 3463 wording).
REPLIES: dict[int, str] = {
    421: "4.3.2 Service not available, closing transmission channel",
    450: "4.2.1 Mailbox temporarily unavailable",
    451: "4.3.0 Requested action aborted: local error in processing",
    452: "4.3.1 Insufficient system storage",
    550: "5.1.1 Mailbox unavailable",
    552: "5.3.4 Message size exceeds fixed limit",
    553: "5.1.3 Mailbox name not allowed",
    554: "5.7.1 Transaction failed",
}


@dataclass
class Captured:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    login: str | None
    tls: bool

    @property
    def message(self) -> EmailMessage:
        msg = BytesParser(policy=policy.default).parsebytes(self.data)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class _Handler:
    received: list[Captured] = field(default_factory=list)
    rcpt_answer: str | None = None
    data_answer: str | None = None
    # One-shot answers, consumed by the next transaction's DATA.
    queued: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if self.rcpt_answer:
            return self.rcpt_answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.queued:
            return self.queued.pop(0)
        if self.data_answer:
            return self.data_answer
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.received.append(Captured(
            mail_from=envelope.mail_from or "", rcpt_tos=list(envelope.rcpt_tos),
            data=envelope.original_content or b"", login=login,
            # STARTTLS records itself in the session; implicit TLS only shows on the transport.
            tls=session.ssl is not None or (server.transport is not None
                                            and server.transport.get_extra_info("ssl_object") is not None),
        ))
        return "250 2.0.0 Ok: queued"


class FakeSmtp:
    """Start with `with` or `async with`; the server runs on its own thread (aiosmtpd's Controller)."""

    def __init__(self, *, credentials: tuple[str, str] | None = None, starttls: ssl.SSLContext | None = None,
                 implicit_tls: ssl.SSLContext | None = None, host: str = "127.0.0.1",
                 port: int | None = None) -> None:
        from gateway.testing import free_port

        self.handler = _Handler()
        self.host = host
        self.port = port or free_port()
        self.credentials = credentials
        params: dict[str, Any] = {}
        if credentials is not None:
            params.update(authenticator=self._authenticate, auth_require_tls=starttls is not None)
        if starttls is not None:
            params.update(tls_context=starttls, require_starttls=True)
        self.controller = Controller(self.handler, hostname=host, port=self.port,
                                     ssl_context=implicit_tls, server_hostname="localhost", **params)

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and self.credentials is not None
              and (auth_data.login.decode(), auth_data.password.decode()) == self.credentials)
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    # --- the FakeProvider protocol of the conformance kit ------------------------------------------

    @property
    def base_url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def messages(self) -> list[Captured]:
        return self.handler.received

    def fail_next(self, status: int, *, retry_after: float | None = None) -> None:
        """Answer the next message's DATA with `status` (SMTP has no Retry-After; it is ignored)."""
        self.handler.queued.append(f"{status} {REPLIES.get(status, 'Scripted refusal')}")

    # --- scripting -----------------------------------------------------------------------------------

    @property
    def received(self) -> list[Captured]:
        return self.handler.received

    def refuse_rcpt(self, answer: str | None) -> None:
        """Answer every RCPT with `answer` (e.g. "550 5.1.1 No such user") until set to None."""
        self.handler.rcpt_answer = answer

    def refuse_data(self, answer: str | None) -> None:
        """Answer every DATA with `answer` until set to None."""
        self.handler.data_answer = answer

    async def wait_for(self, count: int, within: float = 10.0) -> list[Captured]:
        await _until(lambda: len(self.received) >= count, within,
                     lambda: f"expected {count} messages at the SMTP server, got {len(self.received)}")
        return list(self.received)

    # --- lifecycle -----------------------------------------------------------------------------------

    def __enter__(self) -> FakeSmtp:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    async def __aenter__(self) -> FakeSmtp:
        # Controller.start blocks until the server answers; keep the event loop free meanwhile.
        await asyncio.to_thread(self.controller.start)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await asyncio.to_thread(self.controller.stop)


async def _until(done: Callable[[], bool], within: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + within
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(why())
        await asyncio.sleep(0.02)


__all__ = ["REPLIES", "Captured", "FakeSmtp"]
