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
from collections.abc import Sequence
from email.message import EmailMessage

import aiohttp
import aiosmtplib
import structlog

from connectors.base import (
    Capabilities,
    Connector,
    MalformedPayload,
    Outbound,
    OverflowRule,
    ParseResult,
    PermanentSendError,
    PollContext,
    Route,
    SendError,
    SignatureError,
    TextFormat,
    TextUnit,
    TransientSendError,
    WebhookRequest,
)
from connectors.email.compose import FileToAttach, compose
from connectors.email.settings import MB, EmailSettings

log = structlog.get_logger("connectors.email")

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
        # The core's voice renders the plain text and its HTML alternative (Outbound.html).
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
