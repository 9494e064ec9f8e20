"""Bounces name the subscribers a post did not reach, and nobody else.

The list engine disables members on what `parse_bounce` says, so these tests care as much
about addresses that must not come out (the mailer daemon, the post's author, addresses
quoted from the returned post) as about the ones that must.
"""

from __future__ import annotations

import mailbox
import random
import time
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from lists.bounces import (
    Bounce,
    decode_verp,
    delivery_report,
    parse_bounce,
    split_verp_signature,
    verp_address,
)
from lists.tokens import VERP_SIGNATURE_CHARS, verp_signature, verp_signature_matches
from tests.support import CORPUS

BOUNCES = CORPUS / "bounces"
SISIMAI = CORPUS / "sisimai-bounces"
SISIMAI_COUNTS = Path(__file__).parent / "fixtures" / "bounces" / "sisimai-recipients.tsv"

# Corpus files this parser does not read right, each with the reason.
UNREAD_FLUFL = {
    "yale_01.txt": "names a bare user; the two addresses need Yale's domains, not in the message",
}
UNREAD_SISIMAI = {
    "lhost-exim-52": "a malformed address in the post's own headers, not a failed delivery",
    "lhost-fml-02": "a mailing list's 'you are not a member' reply, not a delivery failure",
    "lhost-fml-03": "a mailing list's loop alert, not a delivery failure",
    "lhost-postfix-49": "a bounce pasted as plain text into another one (sisimai skips it)",
    "lhost-postfix-50": "a bounce pasted as plain text into another one (sisimai skips it)",
    "lhost-postfix-64": "'Delivery report unavailable': the recipient is only in the post",
    "lhost-v5sendmail-01": "names only the remote host; the recipient is only in the post",
    "lhost-verizon-01": "names the recipient only in the quoted original message",
}
# Corpus files whose expected failure kind contradicts our rule, each with the reason.
KIND_DIFFERS = {
    "dsn_02.txt": "Action failed with Status 4.4.7: a 4.x.x status counts as temporary",
}
# sisimai's "not a bounce" folder holds one real bounce, filed there for a parser bug.
REAL_BOUNCE_AMONG_NON_BOUNCES = {"rb-issue-368-bug.eml": {"xxxx@yyyyyy.net"}}


def mail(text: str) -> bytes:
    """Raw message bytes from readable text, with CRLF line ends as SMTP delivers them."""
    return "\r\n".join(text.lstrip("\n").split("\n")).encode("utf-8")


def addresses(raw: bytes) -> set[str]:
    return {bounce.address for bounce in parse_bounce(raw)}


def written_in(raw: bytes) -> str:
    """Everything a reader of the message could see: headers and decoded parts, lower-cased."""
    message = message_from_bytes(raw, policy=policy.compat32)
    texts = [raw.decode("utf-8", "replace")]
    for part in message.walk():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            texts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(texts).lower()


# -- VERP ---------------------------------------------------------------------------------


def test_verp_address_names_the_subscriber_in_the_envelope_sender() -> None:
    """The bounce comes back to an address that says whom the post was for."""
    assert (
        verp_address("dev", "lists.example.com", "ann@example.org")
        == "dev-bounces+ann=example.org@lists.example.com"
    )


@pytest.mark.parametrize(
    "recipient",
    [
        "ann@example.org",
        "ann+lists@example.org",
        "ann=b@example.org",
        "a=b=c@example.org",
        "ann-marie@example.org",
        "ann.marie.o@mail.example.co.uk",
        "x-bounces+y=z@example.org",
        "+=-.@example.org",
    ],
)
def test_verp_round_trips_awkward_local_parts(recipient: str) -> None:
    """Whatever a subscriber's local part holds, the bounce maps back to that subscriber."""
    envelope = verp_address("dev-team", "lists.example.com", recipient)
    assert decode_verp(envelope) == ("dev-team", recipient)


def test_decode_verp_ignores_case_and_angle_brackets() -> None:
    """Servers change the case of what they return; the member is the same."""
    assert decode_verp("<Dev-BOUNCES+Ann=Example.ORG@Lists.Example.com>") == (
        "dev",
        "ann@example.org",
    )


@pytest.mark.parametrize(
    "address",
    [
        "",
        "dev@lists.example.com",
        "dev-bounces@lists.example.com",
        "dev-bounces+ann@lists.example.com",
        "dev-bounces+ann=@lists.example.com",
        "dev-bounces+=example.org@lists.example.com",
        "-bounces+ann=example.org@lists.example.com",
        "dev-bounces+ann=example.org",
        "dev-owner+ann=example.org@lists.example.com",
        "not an address at all",
    ],
)
def test_decode_verp_refuses_addresses_it_did_not_make(address: str) -> None:
    """Mail to the plain bounce address, or anything else, is not pinned on a member."""
    assert decode_verp(address) is None


def test_verp_address_refuses_a_recipient_without_a_domain() -> None:
    with pytest.raises(ValueError):
        verp_address("dev", "lists.example.com", "ann")


@pytest.mark.parametrize("recipient", ["ann@example.org", "abcdefghijklm.x@example.org"])
def test_a_signed_verp_address_carries_a_signature_only_the_list_can_make(
    recipient: str,
) -> None:
    """The signature comes back (in any case) and names the member; another member's
    signature, or one made with another key, does not."""
    signature = verp_signature("key", "dev@lists.example.com", recipient)
    envelope = verp_address("dev", "lists.example.com", recipient, signature)
    detail = envelope.upper().partition("+")[2].rpartition("@")[0]
    found, rest = split_verp_signature(detail, VERP_SIGNATURE_CHARS)
    assert decode_verp(f"dev-bounces+{rest}@lists.example.com") == ("dev", recipient)
    assert verp_signature_matches("key", "dev@lists.example.com", recipient, found)
    assert not verp_signature_matches("key", "dev@lists.example.com", "bob@example.net", found)
    assert not verp_signature_matches("other", "dev@lists.example.com", recipient, found)


def test_an_unsigned_verp_address_splits_off_no_signature() -> None:
    assert split_verp_signature("ann=example.org", VERP_SIGNATURE_CHARS) == (
        "",
        "ann=example.org",
    )


def test_a_delivery_report_names_the_returned_message() -> None:
    """Only a structured report counts without a signed address, and only with the
    Message-ID of what it returns."""
    report = delivery_report(
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.net\r\n\r\n"
        b"Final-Recipient: rfc822; ann@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        b"--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        b"Message-ID: <post-1@example.org>\r\n"
        b"--b--\r\n"
    )
    assert report is not None
    assert [b.address for b in report.bounces] == ["ann@example.org"]
    assert report.message_id == "post-1@example.org"
    prose = b"From: MAILER-DAEMON@x.example\r\nSubject: failure\r\n\r\nann@example.org: 550\r\n"
    assert delivery_report(prose) is None


# -- standard delivery status notifications ----------------------------------------------

TWO_RECIPIENT_DSN = mail(
    """
From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: dev-bounces@lists.example.com
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

This is the mail system at host mx.example.net. Please contact <postmaster@example.net>.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
Arrival-Date: Mon, 4 Mar 2024 10:00:00 +0100

Final-Recipient: rfc822; Bob@Example.NET
Original-Recipient: rfc822;<bob@example.net>
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected:
    User unknown in local recipient table

Final-Recipient: rfc822; carol@example.org
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.example.org[192.0.2.7]:25: Connection timed out

--b1
Content-Type: message/rfc822

From: Dave <dave@example.com>
To: dev@lists.example.com
Subject: Meeting notes

See you at eight, Erin <erin@example.com>.
--b1--
"""
)


def test_dsn_reports_each_failed_recipient_and_marks_delays_temporary() -> None:
    """A failure counts against a member at once; a delay is only a warning."""
    assert parse_bounce(TWO_RECIPIENT_DSN) == [
        Bounce(
            address="bob@example.net",
            permanent=True,
            status="5.1.1",
            diagnostic="550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown "
            "in local recipient table",
        ),
        Bounce(
            address="carol@example.org",
            permanent=False,
            status="4.4.1",
            diagnostic="connect to mx.example.org[192.0.2.7]:25: Connection timed out",
        ),
    ]


def dsn(*blocks: str) -> bytes:
    """A minimal DSN whose per-recipient blocks are `blocks`."""
    report = "\n\n".join(block.strip("\n") for block in blocks)
    return mail(
        f"""
From: MAILER-DAEMON@mx.example.net
Subject: Delivery Status Notification
Content-Type: multipart/report; report-type=delivery-status; boundary="b2"

--b2
Content-Type: text/plain

Sorry, frank@example.com could not be delivered.

--b2
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

{report}
--b2--
"""
    )


def test_dsn_names_the_address_the_list_sent_to_not_where_it_was_forwarded() -> None:
    """Original-Recipient is the subscriber's address; Final-Recipient may be an alias."""
    raw = dsn(
        """
Original-Recipient: rfc822;ann@example.org
Final-Recipient: rfc822;ann.smith@mailhost.example.org
Action: failed
Status: 5.2.2
"""
    )
    assert addresses(raw) == {"ann@example.org"}


def test_dsn_of_delivered_or_relayed_recipients_names_no_one() -> None:
    """A success report is not a bounce, whatever its prose says."""
    raw = dsn(
        """
Final-Recipient: rfc822;ann@example.org
Action: delivered
Status: 2.0.0
""",
        """
Final-Recipient: rfc822;bob@example.org
Action: relayed
Status: 2.0.0
""",
    )
    assert parse_bounce(raw) == []


def test_failed_action_with_a_temporary_status_is_not_permanent() -> None:
    """Status 4.x.x means the cause may pass, even when the server gave up this time."""
    raw = dsn(
        """
Final-Recipient: rfc822;ann@example.org
Action: failed
Status: 4.4.7
"""
    )
    assert [(b.address, b.permanent, b.status) for b in parse_bounce(raw)] == [
        ("ann@example.org", False, "4.4.7")
    ]


def test_dsn_recipients_are_read_without_blank_lines_between_them() -> None:
    """Some servers run the per-recipient blocks together."""
    raw = dsn(
        """
Final-Recipient: rfc822;ann@example.org
Action: failed
Status: 5.1.1
Final-Recipient: rfc822;bob@example.org
Action: failed
Status: 5.1.1
"""
    )
    assert addresses(raw) == {"ann@example.org", "bob@example.org"}


# -- bounces written as text --------------------------------------------------------------

QMAIL = mail(
    """
From: MAILER-DAEMON@mx.example.net
To: dev-bounces+ann=example.org@lists.example.com
Subject: failure notice

Hi. This is the qmail-send program at mx.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<ann@example.org>:
192.0.2.1 does not like recipient.
Remote host said: 550 5.1.1 <ann@example.org>... User unknown
Giving up on 192.0.2.1.

--- Below this line is a copy of the message.

Return-Path: <dev-bounces+ann=example.org@lists.example.com>
From: Dave <dave@example.com>
To: dev@lists.example.com
Cc: <erin@example.com>
Subject: Meeting notes

<frank@example.com>: please bring the slides.
"""
)


def test_qmail_bounce_names_the_recipient_but_nobody_from_the_returned_post() -> None:
    """Author, list and people the post mentions are all below the copy marker."""
    assert parse_bounce(QMAIL) == [
        Bounce(
            address="ann@example.org",
            permanent=True,
            status="5.1.1",
            diagnostic="192.0.2.1 does not like recipient. Remote host said: 550 5.1.1 "
            "<ann@example.org>... User unknown Giving up on 192.0.2.1.",
        )
    ]


def test_exim_bounce_names_each_failed_address() -> None:
    raw = mail(
        """
From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: dev-bounces@lists.example.com
Subject: Mail delivery failed: returning message to sender
Auto-Submitted: auto-replied

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  ann@example.org
    SMTP error from remote mail server after RCPT TO:<ann@example.org>:
    host mx.example.org [192.0.2.9]: 550 5.1.1 User unknown
  bob@example.org
    (generated from robert@example.com)
    mailbox is full: retry timeout exceeded

------ This is a copy of the message, including all the headers. ------

From: Dave <dave@example.com>
To: dev@lists.example.com
"""
    )
    assert addresses(raw) == {"ann@example.org", "bob@example.org", "robert@example.com"}


def test_delay_warning_is_temporary() -> None:
    """A server still trying is no reason to count a bounce as final."""
    raw = mail(
        """
From: Mail Delivery System <Mailer-Daemon@mx.example.net>
Subject: Warning: message 1pXyZ-000abc-7Q delayed 24 hours

This message was created automatically by mail delivery software.
A message that you sent has not yet been delivered to one or more of its
recipients after more than 24 hours on the queue on mx.example.net.

The message has not yet been delivered to the following addresses:

  ann@example.org
    host mx.example.org [192.0.2.9]: 451 4.3.0 Temporary lookup failure

No action is required on your part.
"""
    )
    assert [(b.address, b.permanent, b.status) for b in parse_bounce(raw)] == [
        ("ann@example.org", False, "4.3.0")
    ]


def test_postfix_bounce_does_not_name_its_postmaster() -> None:
    raw = mail(
        """
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to <postmaster@mx.example.net>.

<ann@example.org>: host mx.example.org[192.0.2.9] said: 552 5.2.2 Mailbox full
    (in reply to RCPT TO command)
"""
    )
    assert addresses(raw) == {"ann@example.org"}


def test_a_subject_in_raw_utf8_is_read_as_the_archive_reads_it() -> None:
    """A Japanese server's subject says "delivery error" in 8-bit UTF-8 (RFC 6532); read
    as the archive reads headers, it is one of the two signs that make this a bounce."""
    raw = mail(
        """
From: MAILER-DAEMON@mail.example.jp
To: dev-bounces@lists.example.com
Subject: 配送エラー
Content-Type: text/plain; charset=iso-2022-jp

<ann@example.jp>
"""
    )
    assert addresses(raw) == {"ann@example.jp"}


def test_plain_text_labelled_html_is_read_line_by_line() -> None:
    raw = mail(
        """
From: MAILER-DAEMON@example.com
To: dev-bounces@lists.example.com
Content-Type: text/html; charset="utf-8"

I wasn't able to deliver the following message.
This is a permanent error; I've given up. Sorry it didn't work out.

Subject: [dev] Minutes
To: ann@example.com

---Below this line is a copy of the message.

From: bob@example.org
"""
    )
    assert addresses(raw) == {"ann@example.com"}


def test_an_ordinary_message_is_not_a_bounce() -> None:
    """Replies and posts that reach the bounce address name no failed subscriber."""
    raw = mail(
        """
From: Ann <ann@example.org>
To: dev-bounces@lists.example.com
Subject: Re: Meeting notes

Bob <bob@example.org> said the slides could not be delivered to the printer,
so please send them to carol@example.org instead.
"""
    )
    assert parse_bounce(raw) == []


def test_an_out_of_office_reply_is_not_a_bounce() -> None:
    raw = mail(
        """
From: Ann <ann@example.org>
To: dev-bounces@lists.example.com
Subject: Automatic reply: Meeting notes
Auto-Submitted: auto-replied

I am out of the office until Monday. Urgent matters: bob@example.org.
"""
    )
    assert parse_bounce(raw) == []


def test_a_spam_complaint_is_not_a_bounce() -> None:
    """The complainer received the post; a feedback report must not unsubscribe them."""
    raw = mail(
        """
From: abuse@isp.example
Subject: Abuse report
Content-Type: multipart/report; report-type=feedback-report; boundary="b3"

--b3
Content-Type: text/plain

This is an email abuse report for ann@example.org.

--b3
Content-Type: message/feedback-report

Feedback-Type: abuse
Original-Rcpt-To: <ann@example.org>

--b3--
"""
    )
    assert parse_bounce(raw) == []


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00" * 1000,
        bytes(range(256)) * 64,
        b"Content-Type: multipart/report; boundary=\r\n\r\n--\r\n--",
        b"Content-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822;\r\n",
        b"From: MAILER-DAEMON@x\r\nSubject: failure notice\r\n\r\n<@>:\r\n<a@>:\r\n<@b.cd>:",
        "Subject: =?utf-8?q?=E2=9C=89?=\r\n\r\n\udcff".encode("utf-8", "surrogateescape"),
    ],
)
def test_garbage_names_no_one_and_raises_nothing(raw: bytes) -> None:
    assert parse_bounce(raw) == []


def test_truncated_and_scrambled_bounces_never_raise() -> None:
    """Whatever a broken server or the network does to a bounce, the list keeps running."""
    rng = random.Random(5)
    for original in (TWO_RECIPIENT_DSN, QMAIL):
        for _ in range(200):
            raw = bytearray(original[: rng.randrange(len(original) + 1)])
            for _ in range(rng.randrange(8)):
                if raw:
                    raw[rng.randrange(len(raw))] = rng.randrange(256)
            result = parse_bounce(bytes(raw))
            assert all(isinstance(bounce, Bounce) for bounce in result)


@pytest.mark.parametrize(
    "body",
    [
        b"-" * 300_000,
        (b"-" * 200 + b"\r\n") * 1500,
        (b"The following addresses failed:\r\n" + b"-" * 990 + b"\r\n") * 250,
        b"<" * 300_000,
        b"<script>x</script><br>" * 15_000,
        b"could not be delivered to x@" + b"a." * 150_000 + b"1-",
        (b"a" * 60 + b".") * 5000,
    ],
    ids=[
        "dash-line",
        "dash-lines",
        "intro-lines",
        "angles",
        "script-blocks",
        "long-domain",
        "long-local",
    ],
)
def test_hostile_text_is_read_in_reasonable_time(body: bytes) -> None:
    """Bounce text is untrusted: no pattern may take quadratic time on it."""
    for content_type in (b"text/plain", b"text/html"):
        raw = (
            b"From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail\r\n"
            b"Content-Type: " + content_type + b"\r\n\r\n" + body
        )
        started = time.perf_counter()
        parse_bounce(raw)
        assert time.perf_counter() - started < 5


def test_huge_returned_post_does_not_hide_the_failure() -> None:
    """Only the front of a big message is read, and that is where the report is."""
    attachment = b"x" * 10_000_000
    raw = QMAIL + b"\r\n" + attachment
    started = time.perf_counter()
    assert addresses(raw) == {"ann@example.org"}
    assert time.perf_counter() - started < 5


# -- real bounces: flufl.bounce's collection ----------------------------------------------


def flufl_expectations() -> dict[str, tuple[set[str] | None, str]]:
    """File name -> (expected addresses or None when unlabelled, failure kind)."""
    table = BOUNCES / "EXPECTED.tsv"
    expected: dict[str, tuple[set[str] | None, str]] = {}
    for line in table.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or line.startswith("file\t") or not line.strip():
            continue
        name, _, kind, listed = line.split("\t")
        # A file can have several rows, one per detector; together they say what it names.
        known, _ = expected.get(name, (set(), kind))
        if listed == "?":
            expected[name] = (None, kind)
        elif known is not None:
            extra = set() if listed == "-" else {address.lower() for address in listed.split()}
            expected[name] = (known | extra, kind)
    return expected


FLUFL = flufl_expectations()


def flufl_params(unread: dict[str, str]) -> list[object]:
    """One parameter per corpus file; those in `unread` are expected to fail."""
    return [
        pytest.param(name, marks=pytest.mark.xfail(reason=unread[name], strict=True))
        if name in unread
        else name
        for name in sorted(FLUFL)
    ]


@pytest.mark.parametrize("name", flufl_params(UNREAD_FLUFL))
def test_real_bounce_names_exactly_the_failed_recipients(name: str) -> None:
    """Every labelled bounce yields its failed recipients and no other address."""
    raw = (BOUNCES / name).read_bytes()
    expected, _ = FLUFL[name]
    found = addresses(raw)
    if expected is None:
        # Unlabelled: whatever comes out must at least be written in the message.
        assert all(address in written_in(raw) for address in found)
    else:
        assert found == expected


@pytest.mark.parametrize("name", flufl_params(KIND_DIFFERS))
def test_real_bounce_says_whether_the_failure_is_final(name: str) -> None:
    """Permanent failures count at once against a member; delay warnings do not."""
    _, kind = FLUFL[name]
    bounces = parse_bounce((BOUNCES / name).read_bytes())
    if kind in ("permanent", "temporary"):
        assert all(bounce.permanent == (kind == "permanent") for bounce in bounces)


# -- real bounces: sisimai's collection of 54 kinds of server -----------------------------


def sisimai_counts() -> dict[str, int]:
    if not SISIMAI_COUNTS.exists():
        return {}
    counts = {}
    for line in SISIMAI_COUNTS.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or line.startswith("file\t") or not line.strip():
            continue
        name, count, *_ = line.split("\t")
        counts[name] = int(count)
    return counts


def sisimai_files() -> list[Path]:
    folder = SISIMAI / "maildir-bsd"
    return sorted(folder.glob("*.eml"))


def sisimai_params(unread: dict[str, str]) -> list[object]:
    """One parameter per corpus file; those in `unread` are expected to fail."""
    files = sisimai_files()
    return [
        pytest.param(
            path,
            id=path.stem,
            marks=pytest.mark.xfail(reason=unread[path.stem], strict=True)
            if path.stem in unread
            else (),
        )
        for path in files
    ]


COUNTS = sisimai_counts()


@pytest.mark.parametrize("path", sisimai_params(UNREAD_SISIMAI))
def test_bounce_from_any_server_names_as_many_recipients_as_failed(path: Path) -> None:
    """Distinct failed recipients, counted independently by sisimai's own test tables."""
    default = 0 if path.stem.startswith(("arf-", "rfc3834-")) else 1
    assert len(addresses(path.read_bytes())) == COUNTS.get(path.stem, default)


@pytest.mark.parametrize("path", sisimai_params({}))
def test_bounce_from_any_server_names_no_sender_side_address(path: Path) -> None:
    """Never the daemon, never invented, and within the server's own list when it sends one."""
    raw = path.read_bytes()
    message = message_from_bytes(raw, policy=policy.compat32)
    sender = str(message.get("From", "")).lower()
    failed_header = str(message.get("X-Failed-Recipients", "")).lower()
    for bounce in parse_bounce(raw):
        local, _, domain = bounce.address.rpartition("@")
        assert local and "." in domain
        assert not local.startswith("mailer-daemon")
        assert bounce.address not in sender or bounce.address in failed_header
        assert bounce.address in written_in(raw)
        if failed_header and "(generated from" not in raw.decode("utf-8", "replace"):
            assert bounce.address in failed_header
        assert "\n" not in bounce.diagnostic and len(bounce.diagnostic) <= 300
        assert bounce.status is None or bounce.status[0] in "45"


def not_bounce_params() -> list[object]:
    return [
        pytest.param(path, id=path.name) for path in sorted((SISIMAI / "maildir-not").iterdir())
    ]


@pytest.mark.parametrize("path", not_bounce_params())
def test_messages_that_are_not_bounces_name_no_one(path: Path) -> None:
    expected = REAL_BOUNCE_AMONG_NON_BOUNCES.get(path.name, set())
    assert addresses(path.read_bytes()) == expected


def test_every_bounce_in_an_mbox_names_its_recipient() -> None:
    """sisimai's mbox files: 38 bounces from Japanese carriers and webmail providers."""
    folder = SISIMAI / "mailbox"
    seen = 0
    for path in sorted(folder.iterdir()):
        for message in mailbox.mbox(str(path)):
            raw = message.as_bytes()
            found = addresses(raw)
            assert len(found) == 1, (path.name, message.get("Subject"))
            assert all(address in written_in(raw) for address in found)
            seen += 1
    assert seen == 38


def list_mail() -> list[bytes]:
    """Real list traffic, none of it bounces."""
    messages = []
    for folder in ("notmuch", "list-mbox", "hyperkitty"):
        for path in sorted((CORPUS / folder).rglob("*")):
            if not path.is_file():
                continue
            raw = path.read_bytes()
            if raw.startswith(b"From ") and b"\nFrom " in raw:
                messages.extend(message.as_bytes() for message in mailbox.mbox(str(path)))
            else:
                messages.append(raw)
    return messages


def test_real_list_mail_is_never_taken_for_a_bounce() -> None:
    """Hundreds of real posts, replies and digests mention addresses; none is a bounce."""
    messages = list_mail()
    assert len(messages) > 600
    named = [found for raw in messages if (found := addresses(raw))]
    assert named == []
