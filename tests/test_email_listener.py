"""The SMTP listener (aiosmtpd) for deployments whose mail server forwards to the gateway: mail
for our address only, 552 over the size limit, 250 only once the message is durably recorded,
451 when it cannot be, and the same parse as IMAP (files kept, bounces as delivery reports)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import aiosmtplib
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from smtpsink import SmtpSink

from connectors.base import ParseResult
from connectors.email.listener import SmtpListener
from connectors.email.settings import EmailSettings
from conversation.model import DeliveryStatus, Identity, InboundMessage, StatusUpdate
from conversation.store import Store
from conversation.store.files import AttachmentStore
from gateway.testing import GatewayUnderTest, eventually, free_port
from gateway.workers.pollers import StorePollContext

LIMIT = 64 * 1024


def settings(**kw: Any) -> EmailSettings:
    return EmailSettings(**{"address": "support@example.com", "smtp_host": "127.0.0.1",
                            "smtp_listen": "127.0.0.1:0", "max_message_bytes": LIMIT,
                            "max_attachment_bytes": 8 * 1024, **kw})


def mail(sender: str = "Ana <ana@example.net>", body: str = "Hello, my order is late.", **headers: str) -> bytes:
    head = {"From": sender, "To": "support@example.com", "Subject": "Order 42",
            "Message-ID": "<m1@example.net>", **headers}
    lines = [f"{k}: {v}" for k, v in head.items() if v]
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


@pytest.fixture
def store(redis_client: aioredis.Redis, key_prefix: str) -> Store:
    return Store(redis_client, prefix=key_prefix, partitions=2)


class FlakyContext(StorePollContext):
    """Fails to record while `down` is set, as when Redis is unreachable."""

    down = False

    async def record(self, result: ParseResult) -> list[str | None]:
        if self.down:
            raise RedisConnectionError("Connection refused")
        return await super().record(result)


@pytest.fixture
async def listener(store: Store) -> AsyncIterator[SmtpListener]:
    ctx = FlakyContext(store, "mail", AttachmentStore(store.redis, store.keys, public_url="http://gw"))
    async with SmtpListener(settings(), ctx) as running:
        yield running


async def recorded(store: Store) -> list[InboundMessage | StatusUpdate]:
    out = []
    for p in range(store.partitions):
        for _, fields in await store.redis.xrange(store.keys.ingest_stream(p)):
            out.append(store.ingest.decode(fields))
    return out


async def send(listener: SmtpListener, raw: bytes, *, sender: str = "ana@example.net",
               to: str = "support@example.com") -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=listener.port, start_tls=False, timeout=10) as client:
        await client.sendmail(sender, [to], raw)  # "" is the null sender, MAIL FROM:<>


async def test_mail_for_our_address_is_recorded_before_it_is_accepted(listener: SmtpListener, store: Store) -> None:
    pdf = base64.encodebytes(b"%PDF-1.4 receipt").decode()
    raw = mail(body="Receipt attached.", **{"Content-Type": 'multipart/mixed; boundary="b"'}).replace(
        b"Receipt attached.", (f'--b\r\nContent-Type: text/plain\r\n\r\nReceipt attached.\r\n--b\r\n'
                               f'Content-Type: application/pdf; name="receipt.pdf"\r\nContent-Transfer-Encoding: '
                               f'base64\r\n\r\n{pdf}--b--').encode())
    await send(listener, raw)
    # the 250 came after the durable record: it is in the ingest stream now
    (msg,) = await recorded(store)
    assert isinstance(msg, InboundMessage)
    assert msg.sender.address == "ana@example.net" and msg.text == "Receipt attached." and msg.subject == "Order 42"
    assert msg.provider_message_id == "<m1@example.net>" and msg.channel == "email" and not msg.auto_reply
    pdf_att, original = msg.attachments
    assert pdf_att.name == "receipt.pdf" and pdf_att.url.startswith("http://gw/v1/attachments/")
    kept = await AttachmentStore(store.redis, store.keys, public_url="").get(pdf_att.url.rpartition("/")[2])
    assert kept is not None and kept.data == b"%PDF-1.4 receipt" and kept.content_type == "application/pdf"
    orig = await AttachmentStore(store.redis, store.keys, public_url="").get(original.url.rpartition("/")[2])
    assert orig is not None and orig.data.startswith(b"Return-Path: <ana@example.net>\r\n")
    # the sending server retrying the same message stores nothing new
    await send(listener, raw)
    assert len(await recorded(store)) == 1


async def test_other_recipients_are_refused(listener: SmtpListener, store: Store) -> None:
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as caught:
        await send(listener, mail(), to="someone@elsewhere.example")
    assert caught.value.recipients[0].code == 550
    assert await recorded(store) == []


async def test_oversize_mail_gets_552_whether_announced_or_not(listener: SmtpListener, store: Store) -> None:
    big = mail(body=("x" * 70 + "\r\n") * (LIMIT // 70 + 10))
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=listener.port, start_tls=False, timeout=10) as client:
        await client.ehlo()
        assert client.supports_extension("size")
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as announced:
            await client.mail("ana@example.net", options=[f"SIZE={len(big)}"])
        assert announced.value.code == 552
        await client.rset()
        await client.mail("ana@example.net")
        await client.rcpt("support@example.com")
        with pytest.raises(aiosmtplib.SMTPDataError) as sent:
            await client.data(big)
        assert sent.value.code == 552
    assert await recorded(store) == []


async def test_a_recording_failure_answers_451_and_the_retry_is_kept(listener: SmtpListener, store: Store) -> None:
    ctx = listener.ctx
    assert isinstance(ctx, FlakyContext)
    ctx.down = True
    with pytest.raises(aiosmtplib.SMTPDataError) as caught:
        await send(listener, mail())
    assert caught.value.code == 451
    assert await recorded(store) == []
    ctx.down = False
    await send(listener, mail())
    assert len(await recorded(store)) == 1


async def test_unusable_mail_is_accepted_and_dead_lettered(listener: SmtpListener, store: Store) -> None:
    await send(listener, mail(sender=""))  # no From at all
    assert await recorded(store) == []
    rows, _ = await store.dead_letters.list()
    assert len(rows) == 1 and "no sender address" in rows[0][2]["reason"]


async def test_a_null_sender_bounce_becomes_a_delivery_report(listener: SmtpListener, store: Store) -> None:
    report = (
        b"From: MAILER-DAEMON@mx.example.net\r\nTo: support@example.com\r\nSubject: Undeliverable\r\n"
        b"Message-ID: <dsn1@mx.example.net>\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
        b"--r\r\nContent-Type: text/plain\r\n\r\nFailed.\r\n"
        b"--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        b"Final-Recipient: rfc822; gone@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n"
        b"--r\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <ours-1@example.com>\r\n\r\n--r--\r\n"
    )
    await send(listener, report, sender="")
    (status,) = await recorded(store)
    assert isinstance(status, StatusUpdate)
    assert status.provider_message_id == "<ours-1@example.com>" and status.status is DeliveryStatus.FAILED
    assert status.error == "5.1.1 550 5.1.1 no such user (gone@example.net)"


async def test_a_null_envelope_sender_makes_mail_automatic(listener: SmtpListener, store: Store) -> None:
    await send(listener, mail(), sender="")
    (msg,) = await recorded(store)
    assert isinstance(msg, InboundMessage) and msg.auto_reply and msg.extra.get("auto_reason") == "null sender"


# --- end to end: the whole gateway ---------------------------------------------------------------



async def smtp_in(port: int, raw: bytes, sender: str) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=10) as client:
        await client.sendmail(sender, ["support@example.com"], raw)


async def listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


@pytest.fixture
async def email_gateway(redis_url: str, key_prefix: str, redis_client: aioredis.Redis
                        ) -> AsyncIterator[tuple[GatewayUnderTest, SmtpSink, int]]:
    listen = free_port()
    with SmtpSink() as sink:
        gw = GatewayUnderTest(
            redis_url, prefix=key_prefix,
            connectors={"mail": {"kind": "email", "address": "support@example.com", "domain": "example.com",
                                 "from_name": "Acme Support", "smtp_host": "127.0.0.1", "smtp_port": sink.port,
                                 "smtp_security": "none", "smtp_listen": f"127.0.0.1:{listen}"}},
            partitions=2, lease_ttl=2.0, send_visibility_timeout=5.0,
        )
        async with gw:
            await eventually(lambda: listening(listen))  # the poller took its lease and listens
            yield gw, sink, listen


async def test_email_end_to_end_threads_replies_and_bounces(
    email_gateway: tuple[GatewayUnderTest, SmtpSink, int]
) -> None:
    gw, sink, listen = email_gateway
    token = await gw.token("agent")

    # 1. a customer writes to support@ and the mail lands in her thread
    first = mail(sender="Ana López <Ana@Example.net>", body="My router keeps rebooting.",
                 Subject="Router keeps rebooting", **{"Message-ID": "<q1@example.net>"})
    await smtp_in(listen, first, "ana@example.net")

    async def thread() -> dict[str, Any] | None:
        status, body = await gw.api("GET", "/v1/customers?identity=email:ana@example.net", token)
        items = body.get("items") if status == 200 and isinstance(body, dict) else None
        return items[0] if items else None

    customer = await eventually(thread)
    cid = customer["id"]
    assert customer["name"] == "Ana López"

    async def messages(count: int) -> list[dict[str, Any]] | None:
        status, page = await gw.api("GET", f"/v1/conversations/{cid}/messages", token)
        assert status == 200 and isinstance(page, dict)
        items: list[dict[str, Any]] = page["items"]
        return items if len(items) >= count else None

    (inbound,) = await eventually(lambda: messages(1))
    assert inbound["channel"] == "email" and inbound["text"] == "My router keeps rebooting."
    assert inbound["subject"] == "Router keeps rebooting" and inbound["provider_message_id"] == "<q1@example.net>"
    original = next(a for a in inbound["attachments"] if a["name"] == "original.eml")
    assert original["url"].startswith(gw.base_url + "/v1/attachments/")

    # 2. the agent's reply leaves over SMTP with headers that thread in Ana's client
    status, reply = await gw.api("POST", f"/v1/conversations/{cid}/messages", token,
                                 json={"text": "Hello Ana,\n\nPlease hold the reset button for 10 seconds."})
    assert status == 202 and isinstance(reply, dict) and reply["channel"] == "email"
    (sent,) = await sink.wait_for(1)
    out = sent.message
    assert sent.rcpt_tos == ["ana@example.net"]
    assert out["In-Reply-To"] == "<q1@example.net>" and out["References"] == "<q1@example.net>"
    assert out["Subject"] == f"Re: Router keeps rebooting [#{cid[:8]}]"
    assert out["From"] == "Acme Support <support@example.com>" and out.get_content_type() == "multipart/alternative"
    our_id = out["Message-ID"]

    async def outbound_is(status: str) -> dict[str, Any] | None:
        items = await messages(2) or []
        return next((m for m in items if m["id"] == reply["id"] and m["status"] == status), None)

    assert (await eventually(lambda: outbound_is("sent")))["provider_message_id"] == our_id

    # 3. a colleague answers our email from another address: same thread, not linked, merge suggested
    colleague = mail(sender="Bob <bob@example.org>", body="Ana is away; the router is in room 4.",
                     Subject=f"Re: Router keeps rebooting [#{cid[:8]}]",
                     **{"Message-ID": "<r1@example.org>", "In-Reply-To": our_id,
                        "References": f"<q1@example.net> {our_id}"})
    await smtp_in(listen, colleague, "bob@example.org")
    items = await eventually(lambda: messages(3))
    assert [m["text"] for m in items] == ["My router keeps rebooting.",
                                          "Hello Ana,\n\nPlease hold the reset button for 10 seconds.",
                                          "Ana is away; the router is in room 4."]
    status, found = await gw.api("GET", "/v1/customers?identity=email:bob@example.org", token)
    assert status == 200 and isinstance(found, dict) and found["items"] == []  # not linked by default
    assert await gw.store.identities.merge_suggestions() == {"email:bob@example.org": cid}

    # 4. a bounce for our email marks it failed with the server's reason; no customer message
    bounce = (
        "From: MAILER-DAEMON@mx.example.net\r\nTo: support@example.com\r\nSubject: Undelivered Mail\r\n"
        "Message-ID: <dsn-e2e@mx.example.net>\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
        "--r\r\nContent-Type: text/plain\r\n\r\nFailed.\r\n"
        "--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        "Final-Recipient: rfc822; ana@example.net\r\nAction: failed\r\nStatus: 5.2.2\r\n"
        "Diagnostic-Code: smtp; 552 5.2.2 mailbox full\r\n\r\n"
        f"--r\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {our_id}\r\n\r\n--r--\r\n"
    ).encode()
    await smtp_in(listen, bounce, "")
    failed = await eventually(lambda: outbound_is("failed"))
    assert failed["error"] == "5.2.2 552 5.2.2 mailbox full (ana@example.net)"
    assert len(await messages(3) or []) == 3

    # 5. an out-of-office reply is stored as such and does not reopen a resolved thread
    status, _ = await gw.api("POST", f"/v1/conversations/{cid}/status", token, json={"status": "resolved"})
    assert status == 200
    ooo = mail(sender="ana@example.net", body="I am out of the office until Monday.",
               Subject="Automatic reply: Re: Router keeps rebooting", **{"Message-ID": "<ooo@example.net>",
                                                                        "Auto-Submitted": "auto-replied"})
    await smtp_in(listen, ooo, "ana@example.net")
    items = await eventually(lambda: messages(4))
    assert items[-1]["auto_reply"] is True and items[-1]["text"] == "I am out of the office until Monday."
    status, conv = await gw.api("GET", f"/v1/conversations/{cid}", token)
    assert status == 200 and isinstance(conv, dict) and conv["status"] == "resolved"
    assert len(sink.received) == 1  # nothing ever answered the robots


async def test_sms_then_email_from_a_linked_address_is_one_thread(
    email_gateway: tuple[GatewayUnderTest, SmtpSink, int]
) -> None:
    gw, _, listen = email_gateway
    token = await gw.token("agent")
    phone = Identity("phone", "+34600111222")
    # The customer texts first (recorded as the SMS webhook would), and her email is linked to her.
    await gw.store.ingest.record([InboundMessage(instance="sms", channel="sms", provider_message_id="SM1",
                                                  sender=phone, text="Hi, it's Ana, by SMS",
                                                  received_at_ms=int(time.time() * 1000))])
    cid = await eventually(lambda: gw.store.identities.known(phone))
    assert await gw.core.identities.link(Identity("email", "ana@example.net"), cid, "agent") == cid

    await smtp_in(listen, mail(sender="ANA@example.net", body="And now by email."), "ana@example.net")

    async def both() -> list[dict[str, Any]] | None:
        status, page = await gw.api("GET", f"/v1/conversations/{cid}/messages", token)
        assert status == 200 and isinstance(page, dict)
        return page["items"] if len(page["items"]) == 2 else None

    items = await eventually(both)
    assert [(m["channel"], m["text"]) for m in items] == [("sms", "Hi, it's Ana, by SMS"),
                                                          ("email", "And now by email.")]
