"""The `email` connector: IMAP (and optionally an SMTP listener) in, SMTP out.

Mail does not arrive by webhook: `poll()` runs the IMAP poller (`imap.run_imap`, when imap_host
is set) and the aiosmtpd listener (`listener.SmtpListener`, when smtp_listen is set) side by side,
under the gateway's poller supervision (one process per instance holds the lease). Both hand raw
messages to `parse.ingest_email`, so the two ways in parse, keep files and record identically.

Outbound, `send()` composes a multipart/alternative message that threads in the customer's mail
client (`compose.compose`) and hands it to the configured SMTP server with aiosmtplib. A 4xx
answer is transient and a 5xx permanent, with the server's own words kept as the reason.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Literal

import aiohttp
import aiosmtplib
import structlog

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorSettings,
    MalformedPayload,
    Outbound,
    OverflowRule,
    ParseResult,
    PermanentSendError,
    PollContext,
    Route,
    Secret,
    SendError,
    SignatureError,
    TextFormat,
    TextUnit,
    TransientSendError,
    WebhookRequest,
)
from connectors.email.compose import FileToAttach, compose

log = structlog.get_logger("connectors.email")

Security = Literal["ssl", "starttls", "none"]

MB = 1024 * 1024
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_DOMAIN = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62}\.)*[A-Za-z0-9-]{1,63}$")
_IMAP_PORTS = {"ssl": 993, "starttls": 143, "none": 143}
_SMTP_PORTS = {"ssl": 465, "starttls": 587, "none": 25}


class EmailSettings(ConnectorSettings, kw_only=True):
    """`[connectors.<instance>]` with `kind = "email"`. Ports left at 0 take the usual port of
    the chosen security (IMAP 993/143, SMTP 465/587/25)."""

    kind: str = "email"
    address: str  # our address: the From and Reply-To of replies, the RCPT the listener accepts
    domain: str = ""  # for Message-IDs; default: the address's domain
    from_name: str | None = None  # display name in From, e.g. "Acme Support"

    imap_host: str | None = None  # unset: no IMAP poller (e.g. listener-only deployments)
    imap_port: int = 0
    imap_security: Security = "ssl"
    imap_username: str | None = None  # default: address
    imap_password: Secret = Secret("")
    imap_mailbox: str = "INBOX"
    imap_processed_folder: str | None = None
    poll_interval: float = 60.0  # seconds between polls when the server has no IDLE
    # RFC 2177 lets servers drop an IDLE after 30 minutes, and NAT boxes forget quiet connections
    # sooner: IDLE is re-issued well before either.
    imap_idle_seconds: float = 540.0
    imap_timeout: float = 30.0
    imap_validate_certs: bool = True

    smtp_host: str
    smtp_port: int = 0
    smtp_security: Security = "starttls"
    smtp_username: str | None = None  # unset: no AUTH
    smtp_password: Secret = Secret("")
    smtp_timeout: float = 20.0
    smtp_validate_certs: bool = True

    smtp_listen: str | None = None  # "host:port": run the aiosmtpd listener there

    # The listener refuses larger mail with 552; a larger original is recorded as refused.
    max_message_bytes: int = 25 * MB
    max_attachment_bytes: int = 10 * MB
    # A sender found only through In-Reply-To/References (a colleague replying to our answer)
    # joins the referenced customer only when this is true; otherwise a merge is suggested.
    link_reply_senders: bool = False
    # Keep every inbound message whole as "original.eml" beside the stripped text.
    keep_original: bool = True
    # Subject of a first email to a customer who has not written by email (e.g. only by SMS).
    default_subject: str = "Your message to us"
    # Languages whose "On ... wrote:" / "Am ... schrieb:" lines mark quoted history (mail-parser-reply).
    reply_languages: tuple[str, ...] = ("en",)

    def __post_init__(self) -> None:
        # ValueErrors raised here reach check-config as "connectors.<instance>: <why>".
        for name in ("imap_password", "smtp_password"):
            value = getattr(self, name)
            if not isinstance(value, Secret):
                setattr(self, name, Secret(value))
        self.address = self.address.strip().lower()
        if not _ADDRESS.match(self.address):
            raise ValueError(f"address {self.address!r} is not an email address")
        self.domain = (self.domain or self.address.rpartition("@")[2]).strip().lower()
        if not _DOMAIN.match(self.domain):
            raise ValueError(f"domain {self.domain!r} is not a domain name")
        if self.imap_host is None and self.smtp_listen is None:
            raise ValueError("set imap_host (read a mailbox) or smtp_listen (receive forwarded mail): "
                             "otherwise this instance receives nothing")
        if self.imap_host is not None:
            if not self.imap_host.strip():
                raise ValueError("imap_host is empty")
            self.imap_username = self.imap_username or self.address
        self.imap_port = self.imap_port or _IMAP_PORTS[self.imap_security]
        self.smtp_port = self.smtp_port or _SMTP_PORTS[self.smtp_security]
        for name in ("imap_port", "smtp_port"):
            if not 0 < getattr(self, name) < 65536:
                raise ValueError(f"{name} must be a TCP port (1-65535)")
        if self.smtp_username is not None and not self.smtp_password:
            raise ValueError("smtp_username is set but smtp_password is empty")
        if self.smtp_listen is not None:
            self.listen_address()  # raises ValueError naming the problem
        for name in ("poll_interval", "imap_idle_seconds", "imap_timeout", "smtp_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_attachment_bytes < 0 or self.max_message_bytes < 1024:
            raise ValueError("max_attachment_bytes must be >= 0 and max_message_bytes >= 1024")

    def listen_address(self) -> tuple[str, int] | None:
        """(host, port) of smtp_listen; IPv6 hosts may be written in brackets ("[::1]:2525").
        Port 0 takes any free port (tests), which the listener logs."""
        if self.smtp_listen is None:
            return None
        host, colon, port = self.smtp_listen.rpartition(":")
        host = host.strip("[]")
        if not colon or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"smtp_listen must be host:port, not {self.smtp_listen!r}")
        return host, int(port)


class EmailConnector(Connector[EmailSettings]):
    """One mailbox (our address) and the SMTP server that sends as it."""

    kind = "email"
    channel = "email"
    Settings = EmailSettings
    capabilities = Capabilities(
        # An email can be long; the core only splits beyond this (a pasted log, say).
        max_text_length=100_000,
        text_unit=TextUnit.CHARACTERS,
        overflow=OverflowRule.SPLIT,
        # Agents write plain text; compose() adds the HTML alternative derived from it.
        formats=(TextFormat.PLAIN, TextFormat.HTML),
        attachment_kinds=("image/", "video/", "audio/", "application/", "text/", "message/"),
        # What mail servers commonly accept per message is ~25 MB, base64 adds a third.
        max_attachment_bytes=10 * MB,
        max_attachments=10,
        threads=True,
    )

    def __init__(self, instance: str, settings: EmailSettings, *, public_url: str) -> None:
        super().__init__(instance, settings, public_url=public_url)
        self._http: aiohttp.ClientSession | None = None

    # --- inbound: polled, not pushed --------------------------------------------------------------

    def routes(self) -> Sequence[Route]:
        return ()

    def verify(self, request: WebhookRequest) -> None:
        # No webhook routes are served, so the gateway never calls this; refuse just in case.
        raise SignatureError("the email connector serves no webhooks")

    def parse(self, request: WebhookRequest) -> ParseResult:
        raise MalformedPayload("the email connector serves no webhooks; mail arrives over IMAP or SMTP")

    async def poll(self, ctx: PollContext) -> None:
        """Run the IMAP poller and the SMTP listener (whichever are configured) until cancelled.

        If one of them fails, the other is stopped too and the error propagates, so the gateway
        restarts both with backoff rather than leaving half of the instance silently dead.
        """
        runners = []
        if self.settings.imap_host is not None:
            # Imported here: the IMAP side (imapclient, threads) is only loaded where it runs.
            from connectors.email.imap import run_imap

            runners.append(run_imap(self.settings, ctx, self.instance))
        if self.settings.smtp_listen is not None:
            from connectors.email.listener import SmtpListener

            runners.append(SmtpListener(self.settings, ctx).serve_forever())
        async with asyncio.TaskGroup() as group:
            for runner in runners:
                group.create_task(runner)

    # --- outbound ---------------------------------------------------------------------------------

    async def send(self, outbound: Outbound) -> str:
        if outbound.to.kind != "email":
            raise PermanentSendError(f"email goes to email addresses, not {outbound.to.kind} identities")
        files = [await self._fetch(att.url, att.name, att.content_type) for att in outbound.attachments
                 if not att.refused]
        message = compose(outbound, self.settings, files=files)
        await self.deliver(message, outbound.to.address)
        return str(message["Message-ID"])

    async def deliver(self, message: EmailMessage, recipient: str) -> None:
        """Hand one message to the SMTP server, mapping its answers to send errors."""
        s = self.settings
        try:
            await aiosmtplib.send(
                message,
                recipients=[recipient],
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password.reveal() if s.smtp_username else None,
                use_tls=s.smtp_security == "ssl",
                # False, not None: "none" must not upgrade opportunistically either.
                start_tls=s.smtp_security == "starttls",
                validate_certs=s.smtp_validate_certs,
                timeout=s.smtp_timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0] if exc.recipients else None
            if refused is None:
                raise TransientSendError(str(exc)) from None
            raise _smtp_error(refused.code, refused.message) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _smtp_error(exc.code, exc.message) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # Connection refused or dropped, TLS failure, timeout: the server may be back later.
            raise TransientSendError(f"SMTP {s.smtp_host}:{s.smtp_port}: {exc or type(exc).__name__}") from None

    async def _fetch(self, url: str, name: str | None, content_type: str) -> FileToAttach:
        """An agent's attachment, by URL, as bytes to attach (email cannot carry links to files)."""
        limit = self.capabilities.max_attachment_bytes
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.smtp_timeout))
        try:
            async with self._http.get(url) as resp:
                if resp.status >= 500 or resp.status == 429:
                    raise TransientSendError(f"attachment {url}: HTTP {resp.status}")
                if resp.status >= 400:
                    raise PermanentSendError(f"attachment {url} cannot be fetched: HTTP {resp.status}")
                data = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > limit:
                        raise PermanentSendError(f"attachment {url} is over the {limit // MB} MB limit")
                kind = content_type if content_type != "application/octet-stream" else resp.content_type
        except SendError:
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientSendError(f"attachment {url}: {exc or type(exc).__name__}") from None
        return FileToAttach(name or url.rstrip("/").rpartition("/")[2] or "attachment", kind, bytes(data))

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


def _smtp_error(code: int, message: str) -> SendError:
    """4xx: try again later; 5xx: the server refused for good. The reply text is the reason."""
    reason = f"{code} {message}".strip()
    if 400 <= code < 500:
        return TransientSendError(reason, code=str(code))
    if code >= 500:
        return PermanentSendError(reason, code=str(code))
    # Anything else (a 2xx/3xx where another was expected) means a confused server: retry.
    return TransientSendError(reason, code=str(code))


__all__ = ["EmailConnector", "EmailSettings"]
