"""The SMTP server of the email tests: the kit's FakeSmtp (real aiosmtpd), plus throwaway TLS
certificates for the STARTTLS and implicit-TLS tests."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

from connectors.testing.fake_smtp import Captured
from connectors.testing.fake_smtp import FakeSmtp as SmtpSink

__all__ = ["Captured", "SmtpSink", "self_signed_cert", "server_context"]


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
