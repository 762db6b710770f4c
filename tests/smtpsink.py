"""A real SMTP server for tests: aiosmtpd's Controller on a free port, capturing what it receives,
with scriptable refusals (4xx/5xx at RCPT or DATA), optional AUTH and STARTTLS or implicit TLS."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from gateway.testing import free_port


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

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if self.rcpt_answer:
            return self.rcpt_answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_answer:
            return self.data_answer
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.received.append(Captured(
            mail_from=envelope.mail_from or "", rcpt_tos=list(envelope.rcpt_tos),
            data=envelope.original_content or b"", login=login,
            # STARTTLS records itself in the session; implicit TLS only shows on the transport.
            tls=session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
        ))
        return "250 2.0.0 Ok: queued"


class SmtpSink:
    def __init__(self, *, credentials: tuple[str, str] | None = None, starttls: ssl.SSLContext | None = None,
                 implicit_tls: ssl.SSLContext | None = None) -> None:
        self.handler = _Handler()
        self.port = free_port()
        self.credentials = credentials
        params: dict[str, Any] = {}
        if credentials is not None:
            params.update(authenticator=self._authenticate, auth_require_tls=starttls is not None)
        if starttls is not None:
            params.update(tls_context=starttls, require_starttls=True)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     ssl_context=implicit_tls, server_hostname="localhost", **params)

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and self.credentials is not None
              and (auth_data.login.decode(), auth_data.password.decode()) == self.credentials)
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    @property
    def received(self) -> list[Captured]:
        return self.handler.received

    def refuse_rcpt(self, answer: str | None) -> None:
        self.handler.rcpt_answer = answer

    def refuse_data(self, answer: str | None) -> None:
        self.handler.data_answer = answer

    async def wait_for(self, count: int, within: float = 10.0) -> list[Captured]:
        deadline = time.monotonic() + within
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} messages at the SMTP sink, got {len(self.received)}")
            await asyncio.sleep(0.02)
        return list(self.received)

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def self_signed_cert(directory: Path) -> tuple[Path, Path] | None:
    """A throwaway certificate for localhost made with the openssl CLI, or None without it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
