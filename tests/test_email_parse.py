"""Parsing inbound email: what agents read (new text only, sanitized HTML, decoded subjects and
charsets), what is kept (attachments, refused ones, the original), who wrote (identity, Reply-To),
how it threads (References / In-Reply-To), and what must never be answered (auto-replies,
bounces, which mark our message failed instead)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from connectors.base import MalformedPayload, ParseResult
from connectors.email.parse import (
    HTML_NAME,
    ORIGINAL_NAME,
    ParsedEmail,
    ingest_email,
    parse_email,
    strip_quoted,
)
from connectors.email.settings import EmailSettings
from conversation.model import DeliveryStatus, InboundMessage

SETTINGS = EmailSettings(address="support@example.com", domain="example.com", smtp_host="127.0.0.1",
                         smtp_listen="127.0.0.1:2525")
OUR_ID = "<171733.4242.999@example.com>"


def crlf(text: str) -> bytes:
    return text.lstrip("\n").replace("\n", "\r\n").encode()


def parse(raw: bytes, **settings: Any) -> ParsedEmail:
    conf = EmailSettings(**{**{f: getattr(SETTINGS, f) for f in SETTINGS.__struct_fields__}, **settings})
    return parse_email(raw, instance="mail", settings=conf, received_at_ms=1_700_000_000_000)


def message(raw: bytes, **settings: Any) -> InboundMessage:
    parsed = parse(raw, **settings)
    assert parsed.message is not None and not parsed.statuses
    return parsed.message


def names(parsed: ParsedEmail) -> list[str | None]:
    return [f.name for f in parsed.files]


# --- realistic replies from the three big clients --------------------------------------------

GMAIL_REPLY = crlf(f"""
MIME-Version: 1.0
Date: Mon, 3 Jun 2024 10:31:02 +0200
References: <CAF=q1@mail.gmail.com> {OUR_ID}
In-Reply-To: {OUR_ID}
Message-ID: <CAHx9Zk=r2@mail.gmail.com>
Subject: Re: Router keeps rebooting [#ab12cd34]
From: =?UTF-8?Q?Ana_L=C3=B3pez?= <Ana.Lopez@Gmail.com>
To: Acme Support <support@example.com>
Content-Type: multipart/alternative; boundary="000000000000a1b2c3"

--000000000000a1b2c3
Content-Type: text/plain; charset="UTF-8"
Content-Transfer-Encoding: quoted-printable

Thanks, that fixed it! One more thing: can I change the delivery address to=
 Calle Mayor 5?

On Mon, 3 Jun 2024 at 10:15, Acme Support <support@example.com> wrote:

> Hello Ana,
>
> Please restart the router while holding the reset button.
>
> Best regards,
> Acme Support
>

--000000000000a1b2c3
Content-Type: text/html; charset="UTF-8"
Content-Transfer-Encoding: quoted-printable

<div dir=3D"ltr">Thanks, that fixed it! One more thing: can I change the de=
livery address to Calle Mayor 5?</div><br><div class=3D"gmail_quote"><div d=
ir=3D"ltr" class=3D"gmail_attr">On Mon, 3 Jun 2024 at 10:15, Acme Support &=
lt;<a href=3D"mailto:support@example.com">support@example.com</a>&gt; wrote=
:<br></div><blockquote class=3D"gmail_quote" style=3D"margin:0px 0px 0px 0.=
8ex;border-left:1px solid rgb(204,204,204);padding-left:1ex">Hello Ana,<br>=
<br>Please restart the router while holding the reset button.<br><br>Best r=
egards,<br>Acme Support</blockquote></div>

--000000000000a1b2c3--
""")

OUTLOOK_REPLY = crlf(f"""
From: Bob Smith <bob.smith@contoso.com>
To: Acme Support <support@example.com>
Subject: RE: Order 1234 [#ab12cd34]
Thread-Topic: Order 1234
Thread-Index: AQHaz1234abcd
Date: Mon, 3 Jun 2024 09:02:11 +0000
Message-ID: <DB9PR08MB1234ABCD@DB9PR08MB1234.eurprd08.prod.outlook.com>
References: {OUR_ID}
In-Reply-To: {OUR_ID}
Content-Language: en-GB
Content-Type: multipart/alternative;
\tboundary="_000_DB9PR08MB1234ABCD_"
MIME-Version: 1.0

--_000_DB9PR08MB1234ABCD_
Content-Type: text/plain; charset="iso-8859-1"
Content-Transfer-Encoding: quoted-printable

Hi,

The parcel arrived damaged =96 see the photo. I paid =8050 for shipping.

Kind regards,
Bob Smith
Purchasing | Contoso Ltd.

________________________________
From: Acme Support <support@example.com>
Sent: Monday, June 3, 2024 10:15 AM
To: Bob Smith <bob.smith@contoso.com>
Subject: Order 1234 [#ab12cd34]

Hello Bob, your order has shipped.

--_000_DB9PR08MB1234ABCD_
Content-Type: text/html; charset="iso-8859-1"
Content-Transfer-Encoding: quoted-printable

<html><head><style>p{{margin:0}}</style></head><body><div>Hi,</div>
<div>The parcel arrived damaged =96 see the photo.</div>
<hr style=3D"display:inline-block;width:98%"><div id=3D"divRplyFwdMsg"><b>From:</b> Acme Support<br>
<b>Sent:</b> Monday</div>
</body></html>

--_000_DB9PR08MB1234ABCD_--
""")

APPLE_REPLY = crlf(f"""
Content-Type: text/plain;
\tcharset=utf-8
Content-Transfer-Encoding: quoted-printable
Mime-Version: 1.0 (1.0)
Subject: Re: Visit on Tuesday [#ab12cd34]
From: Carla Ruiz <carla@icloud.com>
In-Reply-To: {OUR_ID}
Date: Mon, 3 Jun 2024 11:02:44 +0200
Message-Id: <5E1C2D3F-AAAA-BBBB-CCCC-0123456789AB@icloud.com>
References: {OUR_ID}
To: support@example.com
X-Mailer: iPhone Mail (21F90)

Yes, Tuesday works for me. Ring twice, the bell is broken.

Sent from my iPhone

> On 3 Jun 2024, at 10:15, Acme Support <support@example.com> wrote:
>=20
> =EF=BB=BFHello Carla,
> Would Tuesday work for the visit?
""")


GMAIL_REPLY_ES = crlf(f"""
MIME-Version: 1.0
Date: Sun, 22 Nov 2026 09:20:11 +0100
References: {OUR_ID}
In-Reply-To: {OUR_ID}
Message-ID: <CAHx9Zk=es1@mail.gmail.com>
Subject: Re: Mi pedido [#ab12cd34]
From: Ana <ana@gmail.com>
To: Soporte <support@example.com>
Content-Type: text/plain; charset="UTF-8"
Content-Transfer-Encoding: quoted-printable

Gracias, ya funciona. =C2=BFPuedo cambiar la direcci=C3=B3n de entrega?

El dom, 22 nov 2026 a las 9:14, Soporte (<support@example.com>) escribi=C3=B3:

> Hola Ana,
>
> Pruebe a reiniciar el router.
>
> Un saludo,
> Soporte
""")

OUTLOOK_REPLY_ES = crlf(f"""
From: Luis Garcia <luis@contoso.es>
To: Soporte <support@example.com>
Subject: RE: Pedido 1234 [#ab12cd34]
Date: Sun, 22 Nov 2026 10:02:11 +0000
Message-ID: <DB9PR08MB9999ES@DB9PR08MB9999.eurprd08.prod.outlook.com>
References: {OUR_ID}
In-Reply-To: {OUR_ID}
Content-Language: es-ES
Content-Type: text/plain; charset="iso-8859-1"
Content-Transfer-Encoding: quoted-printable
MIME-Version: 1.0

Hola,

El paquete lleg=F3 da=F1ado.

________________________________
De: Soporte <support@example.com>
Enviado: domingo, 22 de noviembre de 2026 9:14
Para: Luis Garcia <luis@contoso.es>
Asunto: Pedido 1234 [#ab12cd34]

Hola Luis, su pedido ha salido.
""")


@pytest.mark.parametrize(("raw", "new_text", "quoted"), [
    (GMAIL_REPLY, "Thanks, that fixed it! One more thing: can I change the delivery address to Calle Mayor 5?",
     "Please restart the router"),
    (OUTLOOK_REPLY, "Hi,\n\nThe parcel arrived damaged \u2013 see the photo. I paid €50 for shipping.",
     "your order has shipped"),
    (GMAIL_REPLY_ES, "Gracias, ya funciona. ¿Puedo cambiar la dirección de entrega?", "reiniciar el router"),
    (OUTLOOK_REPLY_ES, "Hola,\n\nEl paquete llegó dañado.", "su pedido ha salido"),
], ids=["gmail-en", "outlook-en", "gmail-es", "outlook-es"])
def test_replies_in_the_brands_languages_lose_their_quoted_history_by_default(
        raw: bytes, new_text: str, quoted: str) -> None:
    # No reply_languages configured: the defaults are the brand's languages, Spanish and English.
    settings = EmailSettings(address="support@example.com", smtp_host="127.0.0.1", smtp_listen="127.0.0.1:2525")
    parsed = parse_email(raw, instance="mail", settings=settings, received_at_ms=1_700_000_000_000)
    assert parsed.message is not None
    assert parsed.message.text == new_text
    assert quoted not in parsed.message.text


@pytest.mark.parametrize(("raw", "new_text", "sender", "name"), [
    (GMAIL_REPLY, "Thanks, that fixed it! One more thing: can I change the delivery address to Calle Mayor 5?",
     "ana.lopez@gmail.com", "Ana López"),
    (OUTLOOK_REPLY, "Hi,\n\nThe parcel arrived damaged \u2013 see the photo. I paid €50 for shipping.",
     "bob.smith@contoso.com", "Bob Smith"),
    (APPLE_REPLY, "Yes, Tuesday works for me. Ring twice, the bell is broken.", "carla@icloud.com", "Carla Ruiz"),
], ids=["gmail", "outlook", "apple-mail"])
def test_a_reply_is_stripped_to_the_new_text(raw: bytes, new_text: str, sender: str, name: str) -> None:
    parsed = parse(raw)
    msg = parsed.message
    assert msg is not None
    assert msg.text == new_text
    assert "wrote:" not in msg.text and "From:" not in msg.text and "Sent from my" not in msg.text
    assert msg.sender.kind == "email" and msg.sender.address == sender  # lowercased
    assert msg.sender_name == name
    assert msg.channel == "email" and msg.instance == "mail"
    assert msg.references[-1] == OUR_ID and not msg.auto_reply
    # the full original stays retrievable, whole
    original = parsed.files[-1]
    assert (original.name, original.content_type, original.data) == (ORIGINAL_NAME, "message/rfc822", raw)


def test_the_html_of_a_reply_is_kept_sanitized_and_the_text_is_what_agents_read() -> None:
    parsed = parse(GMAIL_REPLY)
    assert names(parsed) == [HTML_NAME, ORIGINAL_NAME]
    html = parsed.files[0].data.decode()
    assert "Calle Mayor 5" in html and "<blockquote>" in html  # the whole mail, quote included
    assert parsed.message is not None and parsed.message.subject == "Re: Router keeps rebooting [#ab12cd34]"


def test_references_are_oldest_first_and_each_once() -> None:
    msg = message(GMAIL_REPLY)
    assert msg.references == ("<CAF=q1@mail.gmail.com>", OUR_ID)
    assert msg.provider_message_id == "<CAHx9Zk=r2@mail.gmail.com>"


def test_html_only_mail_with_a_script_is_sanitized_and_readable() -> None:
    raw = crlf("""
From: Dan <dan@example.org>
To: support@example.com
Subject: Broken link
Message-ID: <html-only-1@example.org>
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<html><head><title>x</title><script>alert("pwned")</script><style>body{color:red}</style></head>
<body onload="steal()"><p>Hello,</p><p>the <a href="https://shop.example.org/item/7" onclick="evil()">product page</a>
gives an <b>error&nbsp;500</b>.</p><img src="x" onerror="evil()"><ul><li>Chrome</li><li>Firefox</li></ul>
<iframe src="https://evil.example"></iframe><a href="javascript:evil()">click</a></body></html>
""")
    parsed = parse(raw)
    msg = parsed.message
    assert msg is not None
    assert msg.text == ("Hello,\n\nthe product page (https://shop.example.org/item/7) gives an error 500.\n\n"
                        "- Chrome\n- Firefox\n\nclick")
    assert "alert" not in msg.text and "color:red" not in msg.text
    html = parsed.files[0].data.decode()
    assert parsed.files[0].name == HTML_NAME and parsed.files[0].content_type == "text/html"
    for bad in ("<script", "alert(", "onload", "onclick", "onerror", "<iframe", "javascript:", "<style"):
        assert bad not in html, bad
    assert 'href="https://shop.example.org/item/7"' in html and "<b>error" in html


def test_an_html_only_gmail_reply_is_stripped_too() -> None:
    raw = crlf(f"""
From: ana@example.net
To: support@example.com
Subject: Re: hi
Message-ID: <html-reply@example.net>
In-Reply-To: {OUR_ID}
Content-Type: text/html; charset=utf-8

<div dir="ltr">Perfect, thank you!</div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, 3 Jun
2024 at 10:15, Acme Support &lt;support@example.com&gt; wrote:<br></div><blockquote class="gmail_quote">Hello
Ana,<br>your refund is on its way.</blockquote></div>
""")
    assert message(raw).text == "Perfect, thank you!"


def test_charsets_and_encoded_word_subjects() -> None:
    latin1 = crlf("""
From: =?ISO-8859-1?Q?Fran=E7ois_M=FCller?= <francois@example.fr>
To: support@example.com
Subject: =?ISO-8859-1?Q?Probl=E8me_de_facturation_=E0_r=E9gler?=
Message-ID: <latin1@example.fr>
Content-Type: text/plain; charset=ISO-8859-1
Content-Transfer-Encoding: 8bit

""") + "Bonjour, la facture n'est pas réglée. Déjà payé 30 €?\r\n".encode("cp1252")
    msg = message(latin1)
    assert msg.subject == "Problème de facturation à régler"
    assert msg.sender_name == "François Müller"
    # Latin-1 labels are read as Windows-1252, as mail clients mean them (the euro sign)
    assert msg.text == "Bonjour, la facture n'est pas réglée. Déjà payé 30 €?"

    b_encoded = crlf("""
From: =?UTF-8?B?5bGx55Sw5aSq6YOO?= <taro@example.jp>
To: support@example.com
Subject: =?UTF-8?B?5rOo5paH44GM5bGK44GN44G+44Gb44KT?= =?UTF-8?Q?_(order_42)?=
Message-ID: <b64@example.jp>
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

""") + base64.encodebytes("注文が届きません。\r\n".encode())
    msg = message(b_encoded)
    assert msg.subject == "注文が届きません (order 42)"
    assert msg.sender_name == "山田太郎" and msg.text == "注文が届きません。"

    cp1252 = crlf("""
From: Zoe <zoe@example.com>
To: support@example.com
Subject: Quotes
Message-ID: <cp1252@example.com>
Content-Type: text/plain; charset=windows-1252
Content-Transfer-Encoding: quoted-printable

=93It=92s broken=94 =85 again.
""")
    assert message(cp1252).text == "\u201cIt\u2019s broken\u201d \u2026 again."


def test_raw_8bit_headers_are_read_as_utf8_or_windows_1252() -> None:
    raw = (b"From: Jos\xc3\xa9 <jose@example.es>\r\nTo: support@example.com\r\nSubject: Caf\xe9 fr\xeda\r\n"
           b"Message-ID: <raw8@example.es>\r\n\r\nHola\r\n")
    msg = message(raw)
    assert msg.sender_name == "José" and msg.subject == "Café fría"


def test_attachments_are_kept_in_order_and_one_over_the_limit_is_refused_not_dropped() -> None:
    small = base64.encodebytes(b"%PDF-1.4 small").decode()
    big = base64.encodebytes(b"\x89PNG" + b"\0" * 3000).decode()
    raw = crlf(f"""
From: Eve <eve@example.com>
To: support@example.com
Subject: Photos
Message-ID: <att@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8

See attached.
--b1
Content-Type: image/png; name="damage.png"
Content-Disposition: attachment; filename="damage.png"
Content-Transfer-Encoding: base64

{big}
--b1
Content-Type: application/pdf; name="=?UTF-8?Q?re=C3=A7u.pdf?="
Content-Disposition: attachment; filename*=UTF-8''re%C3%A7u.pdf
Content-Transfer-Encoding: base64

{small}
--b1--
""")
    parsed = parse(raw, max_attachment_bytes=2048)
    msg = parsed.message
    assert msg is not None and msg.text == "See attached."
    refused, _pdf, _original = msg.attachments
    assert (refused.name, refused.content_type, refused.size) == ("damage.png", "image/png", 3004)
    assert refused.refused == "over the 2 KB limit" and refused.url == ""
    assert names(parsed) == ["reçu.pdf", ORIGINAL_NAME]
    result = parsed.result(["https://gw/v1/attachments/pdf", "https://gw/v1/attachments/orig"])
    final = result.messages[0].attachments
    assert [(a.name, a.url, a.refused) for a in final] == [
        ("damage.png", "", "over the 2 KB limit"),
        ("reçu.pdf", "https://gw/v1/attachments/pdf", None),
        (ORIGINAL_NAME, "https://gw/v1/attachments/orig", None),
    ]
    assert final[1].size == len(b"%PDF-1.4 small") and final[1].content_type == "application/pdf"


def test_the_default_limit_is_10_mb_and_says_so() -> None:
    payload = base64.encodebytes(b"x" * (10 * 1024 * 1024 + 1)).decode()
    raw = crlf(f"""
From: eve@example.com
Message-ID: <huge@example.com>
Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: text/plain

hi
--b
Content-Type: application/zip; name="logs.zip"
Content-Transfer-Encoding: base64

{payload}
--b--
""")
    msg = message(raw)
    assert msg.attachments[0].refused == "over the 10 MB limit" and msg.attachments[0].name == "logs.zip"


def test_nested_mime_inline_images_and_apple_style_split_text() -> None:
    img = base64.encodebytes(b"GIF89a-inline").decode()
    raw = crlf(f"""
From: finn@example.com
To: support@example.com
Subject: nested
Message-ID: <nested@example.com>
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8

Screenshot below:
--alt
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html; charset=utf-8

<p>Screenshot below:</p><img src="cid:shot1">
--rel
Content-Type: image/gif
Content-ID: <shot1>
Content-Transfer-Encoding: base64

{img}
--rel--
--alt--
--outer
Content-Type: image/gif; name="second.gif"
Content-Disposition: inline; filename="second.gif"
Content-Transfer-Encoding: base64

{img}
--outer
Content-Type: text/plain; charset=utf-8

And that is all.
--outer
Content-Type: message/rfc822

From: someone@example.com
Subject: the forwarded one

forwarded body
--outer--
""")
    parsed = parse(raw)
    assert parsed.message is not None
    assert parsed.message.text == "Screenshot below:\n\nAnd that is all."
    assert [(f.name, f.content_type) for f in parsed.files] == [
        (None, "image/gif"), ("second.gif", "image/gif"), ("forwarded.eml", "message/rfc822"),
        (HTML_NAME, "text/html"), (ORIGINAL_NAME, "message/rfc822"),
    ]
    assert b"forwarded body" in parsed.files[2].data


def test_attachment_names_cannot_climb_directories() -> None:
    raw = crlf("""
From: x@example.com
Message-ID: <path@example.com>
Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: text/plain

hi
--b
Content-Type: text/plain; name="../../etc/passwd"
Content-Disposition: attachment; filename="..\\\\..\\\\boot.ini"

secret
--b--
""")
    assert names(parse(raw))[0] == "boot.ini"


# --- identity -----------------------------------------------------------------------------------


def test_reply_to_is_honoured_when_it_is_a_person() -> None:
    raw = crlf("""
From: Acme Web Form <no-reply@forms.example.org>
Reply-To: "Gina Park" <Gina.Park@Example.net>
To: support@example.com
Subject: Contact form
Message-ID: <form-1@forms.example.org>

I would like a quote.
""")
    msg = message(raw)
    assert msg.sender.address == "gina.park@example.net" and msg.sender_name == "Gina Park"
    assert msg.extra["from"] == "no-reply@forms.example.org"


@pytest.mark.parametrize("reply_to", ["noreply@example.org", "support@example.com",
                                      "a@example.org, b@example.org", "notifications+x@github.com"])
def test_reply_to_that_is_not_one_person_is_ignored(reply_to: str) -> None:
    raw = crlf(f"""
From: Hal <hal@example.org>
Reply-To: {reply_to}
Message-ID: <rt@example.org>

hi
""")
    assert message(raw).sender.address == "hal@example.org"


def test_a_mailing_list_reply_to_is_not_a_person() -> None:
    raw = crlf("""
From: Ida <ida@example.org>
Reply-To: users@lists.example.org
List-Post: <mailto:users@lists.example.org>
Message-ID: <list@example.org>

hi
""")
    msg = message(raw)
    assert msg.sender.address == "ida@example.org" and msg.auto_reply


def test_link_sender_follows_the_configuration() -> None:
    assert message(GMAIL_REPLY).link_sender is False
    assert message(GMAIL_REPLY, link_reply_senders=True).link_sender is True


# --- loop and bounce safety ---------------------------------------------------------------------


@pytest.mark.parametrize("header", [
    "Auto-Submitted: auto-replied",
    "Auto-Submitted: auto-generated; owner-email=\"x@example.org\"",
    "Precedence: bulk",
    "Precedence: junk",
    "Precedence: list",
    "List-Id: Users <users.lists.example.org>",
    "List-Unsubscribe: <mailto:leave@lists.example.org>",
    "X-Autoreply: yes",
    "X-Autorespond: Out of office",
    "Return-Path: <>",
])
def test_automatic_mail_is_flagged_never_to_be_answered(header: str) -> None:
    raw = crlf(f"""
{header}
From: Jo <jo@example.org>
To: support@example.com
Subject: Re: your ticket
Message-ID: <auto@example.org>

I am away until Monday.
""")
    msg = message(raw)
    assert msg.auto_reply is True and msg.text == "I am away until Monday."


@pytest.mark.parametrize(("sender", "subject"), [
    ("MAILER-DAEMON@mx.example.org", "Undelivered Mail"),
    ("kim@example.org", "Automatic reply: Order 1234"),
    ("kim@example.org", "Out of Office: Order 1234"),
    ("kim@example.org", "AutoReply: Order 1234"),
])
def test_out_of_office_and_mailer_daemon_are_automatic(sender: str, subject: str) -> None:
    raw = crlf(f"""
From: {sender}
Subject: {subject}
Message-ID: <ooo@example.org>

Away.
""")
    assert message(raw).auto_reply is True


def test_auto_submitted_no_is_a_person() -> None:
    raw = crlf("""
Auto-Submitted: no
From: lee@example.org
Subject: Re: Order
Message-ID: <human@example.org>

Real answer.
""")
    assert message(raw).auto_reply is False


POSTFIX_BOUNCE = crlf(f"""
Return-Path: <>
From: MAILER-DAEMON@mx.example.com (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: support@example.com
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="8F1A2C0042.1717400000/mx.example.com"
Message-Id: <20240603074000.8F1A2C0042@mx.example.com>

--8F1A2C0042.1717400000/mx.example.com
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<nobody@customer.example>: host mx.customer.example[192.0.2.7] said: 550 5.1.1
    <nobody@customer.example>: Recipient address rejected: User unknown

--8F1A2C0042.1717400000/mx.example.com
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
X-Postfix-Queue-ID: 8F1A2C0042
Arrival-Date: Mon,  3 Jun 2024 07:39:58 +0000 (UTC)

Final-Recipient: rfc822; nobody@customer.example
Original-Recipient: rfc822;nobody@customer.example
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.customer.example
Diagnostic-Code: smtp; 550 5.1.1 <nobody@customer.example>: Recipient address
    rejected: User unknown

--8F1A2C0042.1717400000/mx.example.com
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: Acme Support <support@example.com>
To: nobody@customer.example
Subject: Re: Router keeps rebooting [#ab12cd34]
Message-ID: {OUR_ID}

--8F1A2C0042.1717400000/mx.example.com--
""")


def test_a_delivery_status_bounce_fails_our_original_message_instead_of_becoming_a_customer_message() -> None:
    parsed = parse(POSTFIX_BOUNCE)
    assert parsed.message is None and parsed.files == ()
    (status,) = parsed.statuses
    assert status.provider_message_id == OUR_ID
    assert status.status is DeliveryStatus.FAILED and status.instance == "mail"
    assert status.error == ("5.1.1 550 5.1.1 <nobody@customer.example>: Recipient address rejected: User unknown")
    assert parsed.result([]) == ParseResult(statuses=(status,))


def test_a_bounce_quoting_the_whole_original_and_a_delay_notice() -> None:
    bounce = POSTFIX_BOUNCE.replace(b"Content-Type: text/rfc822-headers", b"Content-Type: message/rfc822")
    bounce = bounce.replace(b"Message-ID: " + OUR_ID.encode() + b"\r\n", b"Message-ID: " + OUR_ID.encode()
                            + b"\r\n\r\nHello, original body\r\n")
    (status,) = parse(bounce).statuses
    assert status.provider_message_id == OUR_ID and status.status is DeliveryStatus.FAILED

    delayed = POSTFIX_BOUNCE.replace(b"Action: failed", b"Action: delayed").replace(b"Status: 5.1.1", b"Status: 4.4.1")
    parsed = parse(delayed)
    assert parsed.message is None and parsed.statuses == ()


def test_a_bounce_that_names_no_original_is_kept_as_an_automatic_message() -> None:
    bounce = POSTFIX_BOUNCE.replace(b"Message-ID: " + OUR_ID.encode(), b"X-Nothing: here")
    msg = message(bounce)
    assert msg.auto_reply is True and msg.sender.address == "mailer-daemon@mx.example.com"


def test_a_read_receipt_marks_our_message_read() -> None:
    raw = crlf(f"""
From: Mo <mo@example.org>
To: support@example.com
Subject: Read: Order 1234
Message-ID: <mdn@example.org>
Content-Type: multipart/report; report-type=disposition-notification; boundary="r"

--r
Content-Type: text/plain

Your message was read.
--r
Content-Type: message/disposition-notification

Reporting-UA: example.org; Thunderbird
Final-Recipient: rfc822;mo@example.org
Original-Message-ID: {OUR_ID}
Disposition: manual-action/MDN-sent-manually; displayed
--r--
""")
    (status,) = parse(raw).statuses
    assert (status.provider_message_id, status.status) == (OUR_ID, DeliveryStatus.READ)


# --- malformed ----------------------------------------------------------------------------------


def test_no_message_id_gets_a_stable_synthetic_one() -> None:
    raw = crlf("""
From: nia@example.org
Subject: no id

hello
""")
    first, second = message(raw), message(raw)
    assert first.provider_message_id == second.provider_message_id
    assert first.provider_message_id.startswith("<") and first.provider_message_id.endswith("@omnigateway.invalid>")
    assert message(raw + b"!").provider_message_id != first.provider_message_id


@pytest.mark.parametrize(("raw", "why"), [
    (b"", "empty"),
    (b"   \r\n", "empty"),
    (b"\r\njust a body, no header at all\r\n", "no header"),
    (crlf("Subject: who?\nMessage-ID: <x@y>\n\nno sender\n"), "no sender"),
    (crlf("From: undisclosed-recipients:;\nMessage-ID: <x@y>\n\nno sender\n"), "no sender"),
    (crlf("From: Support <SUPPORT@example.com>\nMessage-ID: <x@y>\n\nloop\n"), "own address"),
])
def test_unusable_mail_is_malformed(raw: bytes, why: str) -> None:
    with pytest.raises(MalformedPayload, match=why):
        parse(raw)


def test_strip_quoted_keeps_news_that_starts_like_a_signature() -> None:
    assert strip_quoted("Hi,\nThanks, but the second item is missing.\n- a\n- b\n") == (
        "Hi,\nThanks, but the second item is missing.\n- a\n- b")
    assert strip_quoted("Fixed now.\n\nBest regards,\nAna\n") == "Fixed now."
    assert strip_quoted("Hello\n\n    indented code\n") == "Hello\n\n    indented code"
    assert strip_quoted("") == ""


# --- ingest: keep, then record ------------------------------------------------------------------


class FakeContext:
    instance = "mail"

    def __init__(self) -> None:
        self.kept: list[tuple[str | None, str, bytes]] = []
        self.recorded: list[ParseResult] = []
        self.dead: list[tuple[bytes, str]] = []

    async def load_state(self, name: str) -> bytes | None:
        return None

    async def save_state(self, name: str, value: bytes) -> None:
        pass

    async def record(self, result: ParseResult) -> list[str | None]:
        self.recorded.append(result)
        return ["1-1"] * (len(result.messages) + len(result.statuses))

    async def dead_letter(self, raw: bytes, reason: str) -> None:
        self.dead.append((raw, reason))

    async def keep_attachment(self, name: str | None, content_type: str, data: bytes) -> str:
        self.kept.append((name, content_type, data))
        return f"https://gw.example/v1/attachments/{len(self.kept)}"


async def test_ingest_keeps_files_before_recording_and_dead_letters_the_unusable() -> None:
    ctx = FakeContext()
    assert await ingest_email(GMAIL_REPLY, ctx, SETTINGS, received_at_ms=1) == ["1-1"]
    assert [k[0] for k in ctx.kept] == [HTML_NAME, ORIGINAL_NAME]
    (result,) = ctx.recorded
    assert [a.url for a in result.messages[0].attachments] == [
        "https://gw.example/v1/attachments/1", "https://gw.example/v1/attachments/2"]

    assert await ingest_email(b"\r\nnot mail\r\n", ctx, SETTINGS, received_at_ms=1) == []
    assert ctx.dead == [(b"\r\nnot mail\r\n", "not an email: no header fields")]
    assert len(ctx.recorded) == 1

    await ingest_email(POSTFIX_BOUNCE, ctx, SETTINGS, received_at_ms=1)
    assert ctx.recorded[-1].statuses[0].provider_message_id == OUR_ID
