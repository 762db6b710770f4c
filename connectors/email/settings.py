"""The `email` connector's settings: `[connectors.<instance>]` with `kind = "email"`.

In a module of their own because every part of the connector (the IMAP poller, the SMTP
listener, the parser, the composer) reads them, and the connector imports those parts.
"""

from __future__ import annotations

import re
from typing import Literal

from connectors.base import ConnectorSettings, Secret

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
    reply_languages: tuple[str, ...] = ("es", "en")

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


__all__ = ["MB", "EmailSettings", "Security"]
