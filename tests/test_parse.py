"""The parser turns any bytes into a searchable description, and never gives up on a message."""

import mailbox
import random
import time
from datetime import UTC, datetime, timedelta, timezone
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.htmltext import html_to_text
from archiver.parse import (
    ATTACHMENT_TEXT_LIMIT,
    BODY_TEXT_LIMIT,
    FLAGS,
    Address,
    ParsedMessage,
    headers,
    parse_message,
    synthesize_message_id,
    unwrap_journal_report,
)
from tests.support import CORPUS, NOT_MAIL

RECEIVED = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
FIXTURES = Path(__file__).parent / "fixtures" / "parse"


def mail(text: str, *, crlf: bool = True) -> bytes:
    """Build raw message bytes from readable text, with CRLF line ends as SMTP delivers."""
    lines = text.lstrip("\n").split("\n")
    return ("\r\n" if crlf else "\n").join(lines).encode("utf-8", "surrogateescape")


def parse(raw: bytes) -> ParsedMessage:
    return parse_message(raw, RECEIVED)


PLAIN = mail(
    """
From: Alice Example <Alice@Example.COM>
To: bob@example.org
Subject: Lunch
Date: Thu, 29 Feb 2024 10:15:00 +0100
Message-ID: <lunch-1@example.com>

Shall we meet at noon?
"""
)


def tiny_pdf(words: str) -> bytes:
    """A one-page PDF showing ``words`` in Helvetica, with a correct cross-reference table."""
    content = f"BT /F1 18 Tf 20 100 Td ({words}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 400 144] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def test_plain_message_is_described_completely() -> None:
    parsed = parse(PLAIN)

    assert parsed.message_id == "lunch-1@example.com"
    assert parsed.subject == "Lunch"
    assert parsed.from_ == [Address("Alice Example", "alice@example.com")]
    assert parsed.to == [Address("", "bob@example.org")]
    assert parsed.date == datetime(2024, 2, 29, 9, 15, tzinfo=UTC)
    assert parsed.body_text == "Shall we meet at noon?\n"
    assert parsed.attachments == []
    assert parsed.flags == []


def test_rfc2047_subject_is_decoded() -> None:
    # "Grüße aus Köln" in two UTF-8 words split inside the "ö", folded across two lines.
    raw = mail(
        """
From: a@example.com
Subject: Re: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3?=
 =?UTF-8?Q?=B6ln?= und =?ISO-8859-1?B?U2No9m5lIEdy/N9l?=
Message-ID: <x@example.com>
Date: Thu, 29 Feb 2024 10:15:00 +0100

hi
"""
    )

    parsed = parse(raw)

    assert parsed.subject == "Re: Grüße aus Köln und Schöne Grüße"
    assert "bad_charset" not in parsed.flags


def test_raw_utf8_and_latin1_headers_are_read() -> None:
    utf8 = PLAIN.replace(b"Subject: Lunch", "Subject: Café ☕".encode())
    latin1 = PLAIN.replace(b"Subject: Lunch", "Subject: Café".encode("latin-1"))

    assert parse(utf8).subject == "Café ☕"
    assert "bad_charset" not in parse(utf8).flags
    assert parse(latin1).subject == "Café"


def test_broken_charset_still_gives_text() -> None:
    raw = mail(
        """
From: a@example.com
Subject: =?x-no-such-charset?q?Caf=E9?=
Message-ID: <cs@example.com>
Date: Thu, 29 Feb 2024 10:15:00 +0100
Content-Type: text/plain; charset="iso-0646-6"
Content-Transfer-Encoding: quoted-printable

Das Caf=E9 hat ge=F6ffnet.
"""
    )

    parsed = parse(raw)

    assert parsed.subject == "Café"
    assert parsed.body_text.startswith("Das Café hat geöffnet.")
    assert "bad_charset" in parsed.flags


def test_undecodable_bytes_in_declared_charset_are_replaced_and_flagged() -> None:
    raw = PLAIN.replace(
        b"Message-ID:", b"Content-Type: text/plain; charset=shift_jis\r\nMessage-ID:"
    ).replace(b"Shall we meet at noon?", b"Shall \x81\xff we meet?")

    parsed = parse(raw)

    assert parsed.body_text.startswith("Shall ")
    assert parsed.body_text.rstrip().endswith("we meet?")
    assert "bad_charset" in parsed.flags


def test_real_spam_in_an_unknown_charset_is_readable() -> None:
    parsed = parse((FIXTURES / "unknown-charset-spam.txt").read_bytes())

    assert parsed.message_id == "msg@id"
    assert "We believe ordering medication should be as simple" in parsed.body_text
    assert "<" not in parsed.body_text
    assert {"bad_charset", "html_only"} <= set(parsed.flags)


def test_missing_message_id_is_synthesised_and_flagged() -> None:
    raw = PLAIN.replace(b"Message-ID: <lunch-1@example.com>\r\n", b"")

    first, again = parse(raw), parse(raw)

    assert first.message_id == synthesize_message_id(raw)
    assert first.message_id.endswith("@arsip.invalid")
    assert len(first.message_id.split("@")[0]) == 32
    assert again.message_id == first.message_id
    assert "no_message_id" in first.flags


def test_absurd_date_falls_back_to_received_time() -> None:
    future = PLAIN.replace(b"Thu, 29 Feb 2024", b"Fri, 01 Mar 2030")
    ancient = PLAIN.replace(b"Thu, 29 Feb 2024", b"Mon, 01 Jan 1962")
    nonsense = PLAIN.replace(b"Thu, 29 Feb 2024 10:15:00 +0100", b"yesterday-ish")

    for raw in (future, ancient, nonsense):
        parsed = parse(raw)
        assert parsed.date == RECEIVED
        assert "bad_date" in parsed.flags
        assert "no_date" not in parsed.flags


def test_missing_date_is_flagged_and_uses_received_time() -> None:
    parsed = parse(PLAIN.replace(b"Date: Thu, 29 Feb 2024 10:15:00 +0100\r\n", b""))

    assert parsed.date == RECEIVED
    assert {"bad_date", "no_date"} <= set(parsed.flags)


def test_date_is_stored_in_utc_and_a_zoneless_date_counts_as_utc() -> None:
    zoneless = PLAIN.replace(b"10:15:00 +0100", b"10:15:00")
    local_received = datetime(2024, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))

    assert parse(zoneless).date == datetime(2024, 2, 29, 10, 15, tzinfo=UTC)
    assert parse_message(PLAIN, local_received).date.utcoffset() == timedelta(0)
    slightly_ahead = PLAIN.replace(b"Thu, 29 Feb 2024", b"Sat, 02 Mar 2024")
    assert parse(slightly_ahead).date == datetime(2024, 3, 2, 9, 15, tzinfo=UTC)


def test_html_only_mail_becomes_readable_text() -> None:
    raw = mail(
        """
From: shop@example.com
Subject: Offer
Message-ID: <offer@example.com>
Date: Thu, 29 Feb 2024 10:15:00 +0100
Content-Type: text/html; charset=utf-8

<html><head><title>Ignore me</title><style>p { color: red }</style></head>
<body><h1>Spring&nbsp;sale</h1><p>Prices &amp; more:</p>
<ul><li>Tea</li><li>Caf&eacute;</li></ul>
<table><tr><td>Total</td><td>12&euro;</td></tr></table>
<script>alert("x")</script><p>Bye</p></body></html>
"""
    )

    parsed = parse(raw)

    assert parsed.body_text == "Spring sale\n\nPrices & more:\n\n- Tea\n- Café\nTotal 12€\n\nBye"
    assert "html_only" in parsed.flags
    assert parsed.attachments == []


def test_alternative_mail_prefers_plain_text_and_its_html_twin_is_no_attachment() -> None:
    raw = mail(
        """
From: a@example.com
Subject: Both
Message-ID: <both@example.com>
Date: Thu, 29 Feb 2024 10:15:00 +0100
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b1"

--b1
Content-Type: text/html; charset=utf-8

<p>Rich words</p>
--b1
Content-Type: text/plain; charset=utf-8

Plain words
--b1--
"""
    )

    parsed = parse(raw)

    assert parsed.body_text == "Plain words"
    assert "html_only" not in parsed.flags
    # The HTML twin is the same body: listing it would make has:attachment match most mail.
    assert parsed.attachments == []


def test_hostile_html_is_converted_in_linear_time() -> None:
    started = time.perf_counter()
    html_to_text("<a " * 200_000 + "<!--" * 100_000 + "</" * 100_000)
    assert time.perf_counter() - started < 2


def test_pdf_attachment_text_is_extracted() -> None:
    import base64

    encoded = base64.encodebytes(tiny_pdf("Quarterly invoice 4711")).decode()
    raw = mail(
        f"""
From: billing@example.com
To: accounts@example.org
Subject: Invoice
Message-ID: <invoice@example.com>
Date: Thu, 29 Feb 2024 10:15:00 +0100
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="m"

--m
Content-Type: text/plain

Invoice attached.
--m
Content-Type: application/pdf; name="invoice.pdf"
Content-Disposition: attachment; filename="invoice.pdf"
Content-Transfer-Encoding: base64

{encoded}
--m--
"""
    )

    parsed = parse(raw)

    assert parsed.body_text == "Invoice attached."
    [pdf] = parsed.attachments
    assert pdf.filename == "invoice.pdf"
    assert pdf.content_type == "application/pdf"
    assert pdf.size == len(tiny_pdf("Quarterly invoice 4711"))
    assert pdf.text is not None and "Quarterly invoice 4711" in pdf.text
    assert "pdf_unreadable" not in parsed.flags


def test_unreadable_pdf_is_kept_and_flagged() -> None:
    raw = mail(
        """
From: a@example.com
Subject: Broken
Message-ID: <broken-pdf@example.com>
Date: Thu, 29 Feb 2024 10:15:00 +0100
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="m"

--m
Content-Type: text/plain

See attachment.
--m
Content-Type: application/pdf; name="broken.pdf"

%PDF-1.4 this is not really a PDF
--m--
"""
    )

    parsed = parse(raw)

    [pdf] = parsed.attachments
    assert pdf.text is None
    assert pdf.size > 0
    assert "pdf_unreadable" in parsed.flags


def test_attachment_filename_rfc2231() -> None:
    raw = mail(
        """
From: a@example.com
Subject: Files
Message-ID: <files@example.com>
Date: Thu, 29 Feb 2024 10:15:00 +0100
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="m"

--m
Content-Type: text/plain

Two files.
--m
Content-Type: application/octet-stream
Content-Disposition: attachment;
 filename*0*=UTF-8''%C3%9Cbersicht%20;
 filename*1*=Q1%E2%80%932024.xlsx
Content-Transfer-Encoding: base64

AAEC
--m
Content-Type: application/octet-stream; name="=?utf-8?B?0J7RgtGH0ZHRgi5kb2N4?="
Content-Disposition: attachment; filename="=?utf-8?B?0J7RgtGH0ZHRgi5kb2N4?="

abc
--m--
"""
    )

    parsed = parse(raw)

    first, second = parsed.attachments
    assert first.filename == "Übersicht Q1\u20132024.xlsx"
    assert first.content_type == "application/octet-stream"
    assert first.size == 3
    assert first.sha256 == "ae4b3280e56e2faf83f414a6e3dabe9d5fbe18976544c05fed121accb85b53fc"
    assert second.filename == "Отчёт.docx"


def test_inline_image_is_an_attachment() -> None:
    raw = mail(
        """
From: a@example.com
Subject: Picture
Message-ID: <pic@example.com>
Date: Thu, 29 Feb 2024 10:15:00 +0100
MIME-Version: 1.0
Content-Type: multipart/related; boundary="r"

--r
Content-Type: text/html; charset=utf-8

<p>Look: <img src="cid:logo" alt="company logo"></p>
--r
Content-Type: image/png
Content-ID: <logo>
Content-Disposition: inline
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--r--
"""
    )

    parsed = parse(raw)

    assert parsed.body_text == "Look: [company logo]"
    [image] = parsed.attachments
    assert (image.filename, image.content_type, image.size) == (None, "image/png", 8)


def test_attached_message_is_one_attachment_named_after_its_subject() -> None:
    raw = mail(
        """
From: a@example.com
Subject: Fwd: plans
Message-ID: <fwd@example.com>
Date: Thu, 29 Feb 2024 10:15:00 +0100
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="m"

--m
Content-Type: text/plain

Forwarding this.
--m
Content-Type: message/rfc822

From: b@example.com
Subject: Plans for Q2
Message-ID: <inner@example.com>
Content-Type: text/plain

The inner words.
--m--
"""
    )

    parsed = parse(raw)

    assert parsed.body_text == "Forwarding this."
    [attached] = parsed.attachments
    assert attached.content_type == "message/rfc822"
    assert attached.filename == "Plans for Q2.eml"
    assert attached.size > 0
    assert parsed.message_id == "fwd@example.com"


def test_encrypted_mail_is_flagged() -> None:
    raw = mail(
        """
From: a@example.com
Subject: Secret
Message-ID: <secret@example.com>
Date: Thu, 29 Feb 2024 10:15:00 +0100
MIME-Version: 1.0
Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="e"

--e
Content-Type: application/pgp-encrypted

Version: 1
--e
Content-Type: application/octet-stream

-----BEGIN PGP MESSAGE-----
hQEMA...
-----END PGP MESSAGE-----
--e--
"""
    )

    parsed = parse(raw)

    assert "encrypted" in parsed.flags
    assert len(parsed.attachments) == 2
    assert parsed.body_text == ""


def test_addresses_are_lower_cased_decoded_and_salvaged() -> None:
    raw = mail(
        """
From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <Joerg@Example.DE>
To: "Doe, Jane" <JANE@example.org>, Doe, John <john@example.org>, bob@b\xfccher.example
Cc: undisclosed-recipients:;
Bcc: Team: carol@example.org, dave@example.org;
Reply-To: Ruixin Wang wangruixin@CAICT.AC.CN
Subject: Addresses
Message-ID: <addr@example.com>
Date: Thu, 29 Feb 2024 10:15:00 +0100

x
"""
    )

    parsed = parse(raw)

    assert parsed.from_ == [Address("Jörg Müller", "joerg@example.de")]
    assert parsed.to == [
        Address("Doe, Jane", "jane@example.org"),
        Address("Doe, John", "john@example.org"),
        Address("", "bob@bücher.example"),
    ]
    assert parsed.cc == []
    assert [a.email for a in parsed.bcc] == ["carol@example.org", "dave@example.org"]
    assert parsed.reply_to == [Address("Ruixin Wang", "wangruixin@caict.ac.cn")]
    assert "bad_address" in parsed.flags


# Pieces of address lists, the plain forms and every character that makes another form.
ADDRESS_PIECES = [
    *'()<>@,:;."[]\\ \t\xa0',
    "Doe",
    "J.",
    "José",
    "=?utf-8?q?J=C3=B6rg?=",
    '"Doe, Jane"',
    '""',
    "a@example.org",
    "first.last@sub.example.co.id",
    "<x@y.z>",
    "MAILER-DAEMON",
    ", ",
]
address_lists = st.one_of(
    st.lists(st.sampled_from(ADDRESS_PIECES), max_size=24).map("".join),
    st.lists(
        st.tuples(
            st.lists(st.sampled_from(["Doe", "J.", '"Doe, Jane"', '""', "José", " "]), max_size=4),
            st.sampled_from(["a@example.org", "First.Last@Sub.Example.co.id", "b@x"]),
            st.booleans(),
        ),
        min_size=1,
        max_size=6,
    ).map(
        lambda items: ", ".join(
            f"{''.join(name)} <{spec}>" if bracketed else spec for name, spec, bracketed in items
        )
    ),
)


@settings(max_examples=600, deadline=None)
@given(address_lists)
def test_plain_address_lists_are_read_as_the_standard_parser_reads_them(text: str) -> None:
    """The fast reading of plain mailboxes (`headers._plain_addresses`) gives exactly what
    `getaddresses` gives, whenever it takes a list on; anything else is left to it."""
    text = text.strip()
    plain = headers._plain_addresses(text)
    if plain is not None:
        assert plain == [(name, spec.strip().lower()) for name, spec in getaddresses([text])]


def test_real_address_headers_mostly_take_the_fast_reading() -> None:
    """On the corpus's real mail nearly every address header is plain, and reads the same
    both ways, display names included."""
    values = [
        value
        for path in sorted(CORPUS.rglob("*"))
        if path.is_file() and path.suffix != ".md"
        for field in ("from", "to", "cc")
        for value in BytesHeaderParser(policy=compat32)
        .parsebytes(path.read_bytes())
        .get_all(field, [])
    ]
    texts = [headers.HEADER_JUNK.sub("", headers.FOLD.sub("", v)).strip() for v in values]
    plain = [(text, headers._plain_addresses(text)) for text in texts if "@" in text]
    read = [(text, pairs) for text, pairs in plain if pairs is not None]
    assert len(read) > 0.9 * len(plain) > 500
    for text, pairs in read:
        assert pairs == [(name, spec.strip().lower()) for name, spec in getaddresses([text])]


def test_bounce_sender_without_domain_is_kept() -> None:
    raw = PLAIN.replace(
        b"From: Alice Example <Alice@Example.COM>",
        b"From: Mail Delivery Subsystem <MAILER-DAEMON>",
    )

    parsed = parse(raw)

    assert parsed.from_ == [Address("Mail Delivery Subsystem", "mailer-daemon")]
    assert "bad_address" not in parsed.flags


def test_pipermail_obfuscated_address_is_restored() -> None:
    raw = PLAIN.replace(
        b"From: Alice Example <Alice@Example.COM>",
        b"From: alice at example.com (=?iso-8859-1?q?Al=EEce?=)",
    )

    assert parse(raw).from_ == [Address("Alîce", "alice@example.com")]


def test_threading_headers_are_read_without_brackets_or_duplicates() -> None:
    raw = mail(
        """
From: a@example.com
Subject: Re: Re: plan
Message-ID: <  c@example.com >
In-Reply-To: <b@example.com> (Bob's message of Monday)
References: <a@example.com>
 <b@example.com> <a@example.com>
List-Id: Planning Team <Planning.Lists.Example.COM>
Date: Thu, 29 Feb 2024 10:15:00 +0100

x
"""
    )

    parsed = parse(raw)

    assert parsed.message_id == "c@example.com"
    assert parsed.in_reply_to == "b@example.com"
    assert parsed.references == ["a@example.com", "b@example.com"]
    assert parsed.list_id == "planning.lists.example.com"


def test_phrase_in_reply_to_is_not_taken_for_a_message_id() -> None:
    raw = PLAIN.replace(b"Subject:", b"In-Reply-To: your message of Monday\r\nSubject:")

    assert parse(raw).in_reply_to is None


def test_headerless_blob_is_flagged_unparseable_not_dropped() -> None:
    blob = b"\x00\xffthis is not an email at all\nbut it must stay searchable\n"

    parsed = parse(blob)

    assert "unparseable" in parsed.flags
    assert "no_message_id" in parsed.flags
    assert parsed.message_id == synthesize_message_id(blob)
    assert parsed.subject == ""
    assert parsed.date == RECEIVED
    assert "it must stay searchable" in parsed.body_text
    assert "\x00" not in parsed.body_text


def test_empty_input_is_still_described() -> None:
    parsed = parse(b"")

    assert "unparseable" in parsed.flags
    assert parsed.body_text == ""
    assert parsed.message_id == synthesize_message_id(b"")


def test_nul_bytes_never_reach_the_text() -> None:
    raw = PLAIN.replace(b"Lunch", b"Lu\x00nch").replace(b"noon?", b"no\x00on?")

    parsed = parse(raw)

    assert parsed.subject == "Lunch"
    assert parsed.body_text == "Shall we meet at noon?\n"


def test_body_digest_ignores_headers_and_line_endings() -> None:
    journal_copy = PLAIN.replace(b"From:", b"Delivered-To: carol@example.org\r\nFrom:")
    lf_copy = PLAIN.replace(b"\r\n", b"\n")
    edited = PLAIN.replace(b"noon", b"one")

    digest = parse(PLAIN).body_digest
    assert parse(journal_copy).body_digest == digest
    assert parse(lf_copy).body_digest == digest
    assert parse(edited).body_digest != digest


def test_oversized_body_is_truncated_and_flagged() -> None:
    raw = PLAIN.replace(b"Shall we meet at noon?", b"word " * (BODY_TEXT_LIMIT // 4))

    parsed = parse(raw)

    assert len(parsed.body_text) == BODY_TEXT_LIMIT
    assert "truncated_text" in parsed.flags


def test_text_attachment_is_extracted_and_capped() -> None:
    raw = mail(
        f"""
From: a@example.com
Subject: Log
Message-ID: <log@example.com>
Date: Thu, 29 Feb 2024 10:15:00 +0100
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="m"

--m
Content-Type: text/plain

See the log.
--m
Content-Type: text/plain; charset=utf-8; name="server.log"
Content-Disposition: attachment; filename="server.log"

{"line " * (ATTACHMENT_TEXT_LIMIT // 4)}
--m--
"""
    )

    parsed = parse(raw)

    assert parsed.body_text == "See the log."
    [log] = parsed.attachments
    assert log.filename == "server.log"
    assert log.text is not None and len(log.text) == ATTACHMENT_TEXT_LIMIT
    assert "truncated_text" in parsed.flags


def test_deep_nesting_is_survived() -> None:
    depth = 3000
    opening = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth)
    )
    raw = (
        "From: a@example.com\r\nMessage-ID: <deep@example.com>\r\n"
        + opening
        + "Content-Type: text/plain\r\n\r\ndeep down\r\n"
    ).encode()

    parsed = parse(raw)

    assert parsed.message_id == "deep@example.com"
    assert set(parsed.flags) <= FLAGS


def test_mangled_inputs_never_raise() -> None:
    rng = random.Random(20240301)
    seeds = [PLAIN, (FIXTURES / "unknown-charset-spam.txt").read_bytes()]
    samples: list[bytes] = [
        bytes(rng.randrange(256) for _ in range(rng.randrange(400))) for _ in range(200)
    ]
    for seed in seeds:
        for _ in range(300):
            data = bytearray(seed)
            for _ in range(rng.randrange(1, 12)):
                choice = rng.randrange(4)
                position = rng.randrange(len(data) + 1)
                if choice == 0:
                    data[position:position] = bytes(rng.randrange(256) for _ in range(5))
                elif choice == 1:
                    del data[position : position + rng.randrange(1, 40)]
                elif choice == 2:
                    data[position:position] = rng.choice(
                        [
                            b"=?",
                            b"?=",
                            b"\r\n",
                            b"\n\n",
                            b"--",
                            b"<",
                            b">",
                            b"\x00",
                            b";",
                            b'"',
                            b"=?utf-8?b?",
                            b"Content-Type: multipart/mixed; boundary=x\n",
                        ]
                    )
                else:
                    data = data[:position]
            samples.append(bytes(data))

    for sample in samples:
        parsed = parse(sample)
        assert parsed.message_id
        assert parsed.date.tzinfo is not None
        assert set(parsed.flags) <= FLAGS
        assert parsed.flags == sorted(set(parsed.flags))
        unwrap_journal_report(sample)


def journal_report(original: bytes, *, header: str = "X-MS-Journal-Report:\r\n") -> bytes:
    envelope = (
        "Sender: Alice@Example.com\r\n"
        "Subject: Board minutes\r\n"
        "Message-Id: <minutes@example.com>\r\n"
        "To: bob@example.com\r\n"
        "Cc: carol@example.com, Forwarded: carol.old@example.com\r\n"
        "Bcc: Auditor@Example.com\r\n"
        "Recipient: dave@example.com, Expanded: board@example.com\r\n"
    )
    return (
        (
            "From: Microsoft Exchange Server <postmaster@example.com>\r\n"
            "To: journal@archive.example.com\r\n"
            "Subject: Board minutes\r\n"
            "Message-ID: <journal-1@example.com>\r\n"
            f"{header}"
            "MIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="jr"\r\n'
            "\r\n"
            "--jr\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            "\r\n"
            f"{envelope}"
            "--jr\r\n"
            "Content-Type: message/rfc822\r\n"
            "\r\n"
        ).encode()
        + original
        + b"\r\n--jr--\r\n"
    )


ORIGINAL = mail(
    """
From: Alice <alice@example.com>
To: bob@example.com
Cc: carol@example.com
Subject: Board minutes
Message-ID: <minutes@example.com>
Date: Thu, 29 Feb 2024 10:15:00 +0100

The minutes are attached in spirit.
"""
)


def test_exchange_journal_report_is_unwrapped_with_bcc_recipients() -> None:
    report = unwrap_journal_report(journal_report(ORIGINAL))

    assert report is not None
    assert report.original == ORIGINAL
    assert report.sender == "alice@example.com"
    assert report.recipients == [
        "bob@example.com",
        "carol@example.com",
        "auditor@example.com",
        "dave@example.com",
    ]
    inner = parse(report.original)
    assert inner.message_id == "minutes@example.com"
    assert inner.bcc == []  # the Bcc recipient is known only from the envelope


def test_ordinary_mail_is_not_a_journal_report() -> None:
    assert unwrap_journal_report(PLAIN) is None
    assert unwrap_journal_report(journal_report(ORIGINAL, header="")) is None
    assert unwrap_journal_report(b"") is None
    no_envelope = journal_report(ORIGINAL).replace(b"Sender: Alice@Example.com\r\n", b"")
    assert unwrap_journal_report(no_envelope) is None


def corpus_messages() -> list[tuple[str, bytes]]:
    """Every message in tests/fixtures/corpus: mbox and MMDF files split, the rest one each."""
    found: list[tuple[str, bytes]] = []
    for path in sorted(p for p in CORPUS.rglob("*") if p.is_file()):
        if path.suffix in NOT_MAIL:
            continue
        data = path.read_bytes()
        box: mailbox.Mailbox | None = None
        if data.lstrip(b"\r\n").startswith(b"From "):
            box = mailbox.mbox(path, factory=None, create=False)
        elif data.startswith(b"\x01\x01\x01\x01"):
            box = mailbox.MMDF(path, factory=None, create=False)
        if box is None:
            found.append((str(path), data))
        else:
            found.extend((f"{path}#{n}", box.get_bytes(key)) for n, key in enumerate(box.keys()))
    return found


def test_every_corpus_message_parses() -> None:
    messages = corpus_messages()
    assert len(messages) > 1500

    for name, raw in messages:
        parsed = parse(raw)
        assert parsed.message_id, name
        assert parsed.date.utcoffset() == timedelta(0), name
        assert set(parsed.flags) <= FLAGS, name
        assert "\x00" not in parsed.body_text, name
        assert len(parsed.body_text) <= BODY_TEXT_LIMIT, name
        assert all(a.content_type == a.content_type.lower() for a in parsed.attachments), name
        assert all(a.email and a.email == a.email.lower() for a in parsed.from_ + parsed.to), name


def test_overlong_identifiers_are_not_trusted() -> None:
    raw = PLAIN.replace(b"<lunch-1@example.com>", b"<" + b"x" * 5000 + b"@example.com>")
    raw = raw.replace(b"Subject:", b"List-Id: <" + b"l" * 5000 + b">\r\nSubject:")

    parsed = parse(raw)

    assert parsed.message_id == synthesize_message_id(raw)
    assert "no_message_id" in parsed.flags
    assert parsed.list_id is None
