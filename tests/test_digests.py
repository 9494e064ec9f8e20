"""Digests: a week of list mail read as one RFC 1153 text or one MIME bundle."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from lists.digests import DigestInfo, digest_subject, mime_digest, plain_digest

SEPARATOR_70 = "-" * 70
SEPARATOR_30 = "-" * 30

INFO = DigestInfo(
    list_name="dev",
    list_address="dev@lists.example.com",
    request_address="dev-request@lists.example.com",
    volume=3,
    issue=12,
    date=datetime(2024, 3, 5, 7, 30, tzinfo=UTC),
    description="Development of Arsip.",
    footer="To unsubscribe, write to dev-request@lists.example.com",
)


Build = Callable[[DigestInfo, list[bytes]], EmailMessage]


def _post(subject: str, sender: str, message_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "dev@lists.example.com"
    message["Subject"] = subject
    message["Date"] = "Mon, 04 Mar 2024 09:15:00 +0100"
    message["Message-ID"] = message_id
    return message


def _greetings() -> EmailMessage:
    message = _post("Grüße aus Köln", "Jörg Müller <joerg@example.org>", "<gruss@example.org>")
    message.set_content("Schöne Grüße aus Köln!\n", charset="latin-1", cte="quoted-printable")
    return message


def _release_notes() -> EmailMessage:
    message = _post("Release notes", "Ann Lee <ann@example.org>", "<release@example.org>")
    message.set_content(
        "<html><body><p>Version <b>2.0</b> is out &amp; ready.</p></body></html>",
        subtype="html",
    )
    return message


def _report() -> EmailMessage:
    message = _post("Q3 report", "Bob Stone <bob@example.org>", "<report@example.org>")
    message.set_content("The report is attached.\n")
    message.add_attachment(
        b"%PDF-1.4 secret figures",
        maintype="application",
        subtype="pdf",
        filename="q3-report.pdf",
    )
    return message


def _dashes() -> EmailMessage:
    message = _post("Ascii art", "Dee Kay <dee@example.org>", "<art@example.org>")
    message.set_content(f"Above the line\n{SEPARATOR_30}\nBelow the line\n")
    return message


def _both_forms() -> EmailMessage:
    message = _post("Two forms", "Eve Adams <eve@example.org>", "<forms@example.org>")
    message.set_content("The plain words.\n")
    message.add_alternative("<p>The <i>fancy</i> words.</p>", subtype="html")
    return message


def _week() -> list[EmailMessage]:
    return [_greetings(), _release_notes(), _report(), _dashes(), _both_forms()]


def _raw(messages: list[EmailMessage]) -> list[bytes]:
    return [bytes(message) for message in messages]


def _text(digest: EmailMessage) -> str:
    """The plain digest's body as a subscriber's mail reader shows it, after transport."""
    received = email.message_from_bytes(bytes(digest), policy=email.policy.default)
    return received.get_content()


def _burst(body: str) -> tuple[str, list[str], str]:
    """Split an RFC 1153 digest the way a bursting tool does: preamble, messages, trailer."""
    preamble, rest = body.split(f"\n{SEPARATOR_70}\n", 1)
    *messages, trailer = rest.split(f"\n{SEPARATOR_30}\n")
    return preamble, messages, trailer


def _parts_of_digest(digest: EmailMessage) -> list[EmailMessage]:
    received = email.message_from_bytes(bytes(digest), policy=email.policy.default)
    assert received.get_content_type() == "multipart/mixed"
    [bundle] = [part for part in received.iter_parts() if part.is_multipart()]
    assert bundle.get_content_type() == "multipart/digest"
    return list(bundle.iter_parts())


def test_plain_digest_lists_every_topic_and_splits_back_into_messages() -> None:
    week = _week()
    preamble, messages, trailer = _burst(_text(plain_digest(INFO, _raw(week))))

    assert "Today's Topics:" in preamble
    assert "   1. Grüße aus Köln (Jörg Müller)" in preamble
    assert "   2. Release notes (Ann Lee)" in preamble
    assert "   3. Q3 report (Bob Stone)" in preamble
    assert "   4. Ascii art (Dee Kay)" in preamble
    assert "   5. Two forms (Eve Adams)" in preamble
    assert len(messages) == len(week)
    for chunk, original in zip(messages, week, strict=True):
        burst = email.message_from_string(chunk.strip("\n"), policy=email.policy.default)
        assert burst["Subject"] == original["Subject"]
        assert burst["Message-ID"] == original["Message-ID"]
    assert "End of dev Digest, Vol 3, Issue 12" in trailer.splitlines()


def test_plain_digest_keeps_only_the_headers_a_reader_needs_in_rfc1153_order() -> None:
    message = _greetings()
    message["Cc"] = "Kim <kim@example.org>"
    message["Received"] = "from relay.example.org by mx.example.org"
    message["X-Mailer"] = "Mutt"
    _, [chunk], _ = _burst(_text(plain_digest(INFO, [bytes(message)])))

    header_block = chunk.strip("\n").split("\n\n", 1)[0]
    names = [line.split(":", 1)[0] for line in header_block.splitlines()]
    assert names == ["Date", "From", "To", "Cc", "Subject", "Message-ID"]
    assert "From: Jörg Müller <joerg@example.org>" in header_block


def test_plain_digest_shows_readable_text_for_every_kind_of_post() -> None:
    body = _text(plain_digest(INFO, _raw(_week())))

    assert "Schöne Grüße aus Köln!" in body
    assert "Version 2.0 is out & ready." in body
    assert "<b>" not in body
    assert "The report is attached." in body
    assert "[attachment: q3-report.pdf (application/pdf), not included]" in body
    assert "secret figures" not in body
    assert "The plain words." in body
    assert "fancy" not in body


def test_plain_digest_drops_the_pictures_of_an_html_twin_but_names_real_attachments() -> None:
    message = _post("Newsletter", "Fay Long <fay@example.org>", "<news@example.org>")
    message.set_content("Plain news.\n")
    message.add_alternative("<p>Rich news <img src='cid:logo'></p>", subtype="html")
    html = message.get_payload()[1]
    html.add_related(b"PNG", maintype="image", subtype="png", cid="<logo>")
    message.add_attachment(b"a,b\n1,2\n", maintype="text", subtype="csv", filename="data.csv")
    _, [chunk], _ = _burst(_text(plain_digest(INFO, [bytes(message)])))

    assert "Plain news." in chunk
    assert "Rich news" not in chunk
    assert "image/png" not in chunk
    assert "[attachment: data.csv (text/csv), not included]" in chunk


def test_plain_digest_escapes_a_body_line_that_looks_like_a_separator() -> None:
    _, [chunk], _ = _burst(_text(plain_digest(INFO, [bytes(_dashes())])))

    assert f"Above the line\n {SEPARATOR_30}\nBelow the line" in chunk


def test_plain_digest_ends_with_the_footer_and_the_rfc1153_sign_off() -> None:
    body = _text(plain_digest(INFO, _raw(_week())))
    _, _, trailer = _burst(body)

    lines = trailer.strip("\n").splitlines()
    assert lines[0] == INFO.footer
    assert lines[-2] == "End of dev Digest, Vol 3, Issue 12"
    assert lines[-1] == "*" * len(lines[-2])
    assert body.endswith(lines[-1] + "\n")


def test_plain_digest_is_utf8_text() -> None:
    digest = plain_digest(INFO, _raw(_week()))

    assert digest.get_content_type() == "text/plain"
    assert digest.get_content_charset() == "utf-8"
    assert digest["Content-Transfer-Encoding"] in ("7bit", "8bit", "quoted-printable")


@pytest.mark.parametrize("build", [plain_digest, mime_digest])
def test_digest_comes_from_the_list_and_leaves_list_headers_to_the_pipeline(build: Build) -> None:
    digest = build(INFO, _raw(_week()))
    received = email.message_from_bytes(bytes(digest), policy=email.policy.default)

    assert received["From"] == "dev-request@lists.example.com"
    assert received["To"] == "dev@lists.example.com"
    assert received["Subject"] == "dev Digest, Vol 3, Issue 12"
    assert received["Date"] == "Tue, 05 Mar 2024 07:30:00 +0000"
    assert received["Date"].datetime == INFO.date
    assert received["Message-ID"].endswith("@lists.example.com>")
    assert received["MIME-Version"] == "1.0"
    assert received["Precedence"] == "list"
    assert not [name for name in received if name.lower().startswith("list-")]


@pytest.mark.parametrize("build", [plain_digest, mime_digest])
def test_every_digest_gets_a_fresh_message_id(build: Build) -> None:
    first = build(INFO, _raw(_week()))
    second = build(INFO, _raw(_week()))

    assert first["Message-ID"] != second["Message-ID"]


def test_digest_subject_uses_mailmans_wording() -> None:
    assert digest_subject(INFO) == "dev Digest, Vol 3, Issue 12"


def test_mime_digest_carries_each_post_intact_in_a_multipart_digest() -> None:
    week = _week()
    parts = _parts_of_digest(mime_digest(INFO, _raw(week)))

    assert [part.get_content_type() for part in parts] == ["message/rfc822"] * len(week)
    inner = [part.get_content() for part in parts]
    assert [message["Message-ID"] for message in inner] == [m["Message-ID"] for m in week]
    assert inner[0]["Subject"] == "Grüße aus Köln"
    assert inner[0].get_content() == "Schöne Grüße aus Köln!\n"
    [pdf] = list(inner[2].iter_attachments())
    assert pdf.get_filename() == "q3-report.pdf"
    assert pdf.get_content() == b"%PDF-1.4 secret figures"


def test_mime_digest_opens_with_the_topics_and_closes_with_the_footer() -> None:
    received = email.message_from_bytes(
        bytes(mime_digest(INFO, _raw(_week()))), policy=email.policy.default
    )
    contents, bundle, footer = received.iter_parts()

    assert contents.get_content_type() == "text/plain"
    assert contents["Content-Description"] == "Today's Topics (5 messages)"
    assert "   1. Grüße aus Köln (Jörg Müller)" in contents.get_content()
    assert "   5. Two forms (Eve Adams)" in contents.get_content()
    assert bundle.get_content_type() == "multipart/digest"
    assert footer.get_content_type() == "text/plain"
    assert footer.get_content().strip() == INFO.footer


def test_mime_digest_of_a_list_without_footer_has_no_footer_part() -> None:
    quiet = DigestInfo(
        "dev", "dev@lists.example.com", "dev-request@lists.example.com", 1, 1, INFO.date
    )
    received = email.message_from_bytes(
        bytes(mime_digest(quiet, _raw(_week()))), policy=email.policy.default
    )

    assert [part.get_content_type() for part in received.iter_parts()] == [
        "text/plain",
        "multipart/digest",
    ]


HOSTILE = [
    b"garbage\r\n",
    b"",
    b"\xff\xfe\x00binary junk",
    b"Subject: caf\xc3\xa9 \xe9t\xe9\r\nFrom: J\xf6rg <j@example.org>\r\n\r\nraw 8-bit \xe9\r\n",
    b"Content-Type: text/plain; charset=x-unknown\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    b"\xe9t\xe9\r\n",
    b"Content-Type: text/plain; charset=unicode_escape\r\n\r\n\\ud800 lone surrogate\r\n",
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!\r\n",
    b"Content-Type: multipart/mixed\r\n\r\nmultipart without a boundary\r\n",
    b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nopen",
    b'From: "unterminated <a@b\r\nTo: ,,,@,@@<<>>\r\nDate: not a date\r\n\r\nbody',
    b"Subject: " + b"x" * 5000 + b"\r\n\r\nlong header",
    b"Subject: nul\x00byte\r\n\r\nbody\x00nul\r\n",
]


@pytest.mark.parametrize("raw", HOSTILE)
@pytest.mark.parametrize("build", [plain_digest, mime_digest])
def test_malformed_post_does_not_stop_the_digest(build: Build, raw: bytes) -> None:
    digest = build(INFO, [bytes(_greetings()), raw, bytes(_report())])

    received = email.message_from_bytes(bytes(digest), policy=email.policy.default)
    digest.as_string()
    if build is plain_digest:
        _, messages, _ = _burst(received.get_content())
        assert len(messages) == 3
    else:
        assert len(_parts_of_digest(digest)) == 3


def test_plain_digest_shows_an_unreadable_post_as_raw_text() -> None:
    _, [chunk], _ = _burst(_text(plain_digest(INFO, [b"garbage\r\n"])))

    assert chunk.strip() == "garbage"


def test_header_line_breaks_cannot_forge_a_separator() -> None:
    raw = (
        b"From: Mallory <m@example.org>\r\n"
        b"Subject: =?utf-8?q?hi=0A------------------------------=0ADate:_forged?=\r\n\r\nbody\r\n"
    )
    _, messages, _ = _burst(_text(plain_digest(INFO, [raw, bytes(_greetings())])))

    assert len(messages) == 2
