"""The conformance kit on the built-in email connector, with a real SMTP server (aiosmtpd) as the
provider. Mail arrives over IMAP or SMTP, not webhooks, so the kit's webhook tests skip with that
reason; the structure, settings, secrets, capability and send-error tests all run. IMAP and the
listener have their own suites (test_email_imap.py, test_email_listener.py) on a real Dovecot.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from connectors.email.connector import EmailConnector
from connectors.testing import ConnectorConformance, InvalidSettings
from connectors.testing.fake_smtp import FakeSmtp
from conversation.model import Identity


class TestEmailConformance(ConnectorConformance):
    connector_class = EmailConnector
    settings = {
        "address": "support@example.com",
        "imap_host": "imap.example.com",
        "imap_password": "imap-s3cret-password",
        "smtp_host": "smtp.example.com",
        "smtp_username": "support@example.com",
        "smtp_password": "smtp-s3cret-password",
    }
    invalid_settings = (
        InvalidSettings({"address": "support.example.com"}, "is not an email address"),
        InvalidSettings({"imap_host": None}, "set imap_host"),
        InvalidSettings({"smtp_port": 70000}, "smtp_port must be a TCP port"),
        InvalidSettings({"smtp_password": ""}, "smtp_username is set but smtp_password is empty"),
        InvalidSettings({"smtp_security": "sometimes"}, "smtp_security"),
        InvalidSettings({"poll_interval": 0}, "poll_interval must be positive"),
    )
    recipient = Identity("email", "ana@example.com")
    # SMTP's own codes: 4xx are "try again later", 5xx refusals for good (RFC 5321 4.2.1).
    transient_statuses = (421, 451, 452)
    permanent_statuses = (550, 553, 554)

    def fake_provider(self) -> FakeSmtp:
        return FakeSmtp()

    def provider_settings(self, base_url: str) -> dict[str, Any]:
        where = urlsplit(base_url)
        return {**self.settings, "smtp_host": where.hostname, "smtp_port": where.port, "smtp_security": "none",
                "smtp_username": None, "smtp_password": ""}
