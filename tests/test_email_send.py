"""Outbound email against a real SMTP server (aiosmtpd): replies that thread in the customer's
client, text + HTML, attachments, TLS and AUTH as configured, and the server's refusals mapped
to transient (4xx) and permanent (5xx) failures with its own words as the reason."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from smtpsink import SmtpSink, self_signed_cert, server_context

from connectors.base import Outbound, PermanentSendError, SettingsError, TransientSendError
from connectors.email.compose import case_reference, compose, reply_subject
from connectors.email.connector import EmailConnector
from connectors.email.settings import EmailSettings
from conversation.model import Attachment, Identity
from gateway.testing import free_port

CID = "ab12cd34ef56gh78"
ANA = Identity("email", "ana@example.net")


def outbound(**kw: Any) -> Outbound:
    base: dict[str, Any] = dict(
        message_id=f"{CID}.7", channel="email", to=ANA,
        text="Hello Ana,\n\nPlease restart the router <now> & see https://help.example.com/router.\nThanks",
        subject="Router keeps rebooting",
        references=("<q1@mail.gmail.com>", "<a1@example.com>", "<q2@mail.gmail.com>"),
        reply_to_provider_id="<q2@mail.gmail.com>",
    )
    return Outbound(**{**base, **kw})


def connector(port: int, **settings: Any) -> EmailConnector:
    raw = {"kind": "email", "address": "Support@Example.com", "domain": "mail.example.com",
           "from_name": "Acme Support", "smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none",
           "smtp_listen": "127.0.0.1:0", **settings}
    conn = EmailConnector.from_config("mail", raw, public_url="http://gw.example")
    assert isinstance(conn, EmailConnector)
    return conn


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


async def test_an_agent_reply_arrives_with_headers_that_thread(sink: SmtpSink) -> None:
    conn = connector(sink.port)
    provider_id = await conn.send(outbound())
    (got,) = await sink.wait_for(1)
    msg = got.message
    assert got.rcpt_tos == ["ana@example.net"] and got.mail_from == "support@example.com"
    assert msg["Message-ID"] == provider_id
    assert re.fullmatch(r"<[^<>@\s]+@mail\.example\.com>", provider_id)
    assert msg["In-Reply-To"] == "<q2@mail.gmail.com>"
    assert msg["References"] == "<q1@mail.gmail.com> <a1@example.com> <q2@mail.gmail.com>"
    assert msg["From"] == "Acme Support <support@example.com>"
    assert msg["Reply-To"] == "support@example.com" and msg["To"] == "ana@example.net"
    assert msg["Subject"] == "Re: Router keeps rebooting [#ab12cd34]"
    assert msg["Date"] and msg["Auto-Submitted"] is None  # an agent wrote it: not automatic
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().replace("\r\n", "\n").rstrip() == outbound().text
    body = html.get_content()
    assert "<p>Hello Ana,</p>" in body and "&lt;now&gt; &amp; see" in body
    assert '<a href="https://help.example.com/router" rel="noopener noreferrer nofollow">' in body
    await conn.aclose()


def test_subjects_keep_one_re_and_one_case_reference() -> None:
    ref = case_reference(f"{CID}.12")
    assert ref == "ab12cd34"
    for subject in ("Invoice 42", "Re: Invoice 42", "RE: Re: Invoice 42 [#ab12cd34]", "AW: Invoice 42 [#ab12cd34]",
                    "Automatic reply: Re: Invoice 42 [#ab12cd34]", "Re: [#ab12cd34] Invoice 42"):
        assert reply_subject(subject, ref, "x") == "Re: Invoice 42 [#ab12cd34]", subject
    assert reply_subject(None, ref, "Your message to us") == "Re: Your message to us [#ab12cd34]"
    assert reply_subject("   ", ref, "Your message to us") == "Re: Your message to us [#ab12cd34]"


def test_a_first_message_without_thread_has_no_reply_headers_and_automatic_ones_say_so() -> None:
    settings = connector(25).settings
    msg = compose(outbound(subject=None, references=(), reply_to_provider_id=None), settings, automatic=True)
    assert msg["In-Reply-To"] is None and msg["References"] is None
    assert msg["Subject"] == "Re: Your message to us [#ab12cd34]"
    assert msg["Auto-Submitted"] == "auto-replied"


@pytest.mark.parametrize(("where", "answer", "error", "reason"), [
    ("rcpt", "451 4.7.1 Greylisted, try again in 5 minutes", TransientSendError,
     "451 4.7.1 Greylisted, try again in 5 minutes"),
    ("rcpt", "550 5.1.1 <ana@example.net>: Recipient address rejected: User unknown", PermanentSendError,
     "550 5.1.1 <ana@example.net>: Recipient address rejected: User unknown"),
    ("data", "452 4.3.1 Insufficient system storage", TransientSendError, "452 4.3.1 Insufficient system storage"),
    ("data", "554 5.7.1 Message rejected as spam", PermanentSendError, "554 5.7.1 Message rejected as spam"),
])
async def test_smtp_refusals_are_transient_or_permanent_with_the_servers_reply(
    sink: SmtpSink, where: str, answer: str, error: type[Exception], reason: str
) -> None:
    (sink.refuse_rcpt if where == "rcpt" else sink.refuse_data)(answer)
    conn = connector(sink.port)
    with pytest.raises(error) as caught:
        await conn.send(outbound())
    assert caught.value.reason == reason  # type: ignore[attr-defined]
    assert caught.value.code == answer[:3]  # type: ignore[attr-defined]
    assert sink.received == []


async def test_an_unreachable_server_is_transient() -> None:
    conn = connector(free_port(), smtp_timeout=2)
    with pytest.raises(TransientSendError, match=r"SMTP 127\.0\.0\.1"):
        await conn.send(outbound())


async def test_only_email_identities_are_sent_to(sink: SmtpSink) -> None:
    with pytest.raises(PermanentSendError, match="not phone"):
        await connector(sink.port).send(outbound(to=Identity("phone", "+34600111222")))


async def test_auth_is_used_when_configured() -> None:
    with SmtpSink(credentials=("gateway", "s3cret")) as sink:
        conn = connector(sink.port, smtp_username="gateway", smtp_password="s3cret")
        await conn.send(outbound())
        (got,) = await sink.wait_for(1)
        assert got.login == "gateway"
        wrong = connector(sink.port, smtp_username="gateway", smtp_password="nope")
        with pytest.raises(PermanentSendError, match=r"^535"):
            await wrong.send(outbound())


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    files = self_signed_cert(tmp_path_factory.mktemp("tls"))
    if files is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    return files


async def test_starttls_with_auth(tls_files: tuple[Path, Path]) -> None:
    with SmtpSink(credentials=("gateway", "s3cret"), starttls=server_context(*tls_files)) as sink:
        conn = connector(sink.port, smtp_security="starttls", smtp_username="gateway", smtp_password="s3cret",
                         smtp_validate_certs=False)
        await conn.send(outbound())
        (got,) = await sink.wait_for(1)
        assert got.tls and got.login == "gateway"
        # plain SMTP to a server that requires STARTTLS is refused by the server, permanently
        plain = connector(sink.port, smtp_security="none")
        with pytest.raises(PermanentSendError, match="530"):
            await plain.send(outbound())


async def test_implicit_tls_and_certificate_checks(tls_files: tuple[Path, Path]) -> None:
    with SmtpSink(implicit_tls=server_context(*tls_files)) as sink:
        await connector(sink.port, smtp_security="ssl", smtp_validate_certs=False).send(outbound())
        (got,) = await sink.wait_for(1)
        assert got.tls
        # a certificate nobody signed is refused when validating (the default): retried, not failed
        with pytest.raises(TransientSendError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            await connector(sink.port, smtp_security="ssl").send(outbound())


def test_settings_are_validated_with_clear_reasons() -> None:
    def make(**kw: Any) -> None:
        EmailConnector.from_config("mail", {"kind": "email", "address": "support@example.com", "smtp_host": "h",
                                            "smtp_listen": "127.0.0.1:2525", **kw}, public_url="http://x")

    make()
    with pytest.raises(SettingsError, match="not an email address"):
        make(address="support")
    with pytest.raises(SettingsError, match=r"imap_host .* or smtp_listen"):
        make(smtp_listen=None)
    with pytest.raises(SettingsError, match="smtp_listen must be host:port"):
        make(smtp_listen="localhost")
    with pytest.raises(SettingsError, match="smtp_security"):
        make(smtp_security="tls")
    with pytest.raises(SettingsError, match="unknown field"):
        make(smtp_hots="typo")
    conn = EmailConnector.from_config("mail", {"kind": "email", "address": "Support@Example.com", "smtp_host": "h",
                                               "imap_host": "imap.example.com", "imap_password": "pw"},
                                      public_url="http://x")
    s = conn.settings
    assert isinstance(s, EmailSettings)
    assert (s.address, s.domain, s.imap_port, s.smtp_port, s.imap_username) == (
        "support@example.com", "example.com", 993, 587, "support@example.com")
    assert "pw" not in repr(s)


@pytest.fixture
async def file_server() -> AsyncIterator[str]:
    async def pdf(request: web.Request) -> web.Response:
        return web.Response(body=b"%PDF-1.4 invoice", content_type="application/pdf")

    app = web.Application()
    app.router.add_get("/files/invoice.pdf", pdf)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_attachments_are_fetched_and_attached(sink: SmtpSink, file_server: str) -> None:
    conn = connector(sink.port)
    att = Attachment(url=f"{file_server}/files/invoice.pdf", content_type="application/pdf", name="Invoice 42.pdf")
    await conn.send(outbound(attachments=(att,)))
    (got,) = await sink.wait_for(1)
    msg = got.message
    assert msg.get_content_type() == "multipart/mixed"
    (part,) = list(msg.iter_attachments())
    assert part.get_filename() == "Invoice 42.pdf" and part.get_content_type() == "application/pdf"
    assert part.get_content() == b"%PDF-1.4 invoice"
    assert msg.get_body(("plain",)) is not None and msg.get_body(("html",)) is not None

    missing = Attachment(url=f"{file_server}/files/gone.pdf", content_type="application/pdf")
    with pytest.raises(PermanentSendError, match="HTTP 404"):
        await conn.send(outbound(attachments=(missing,)))
    await conn.aclose()

