"""Mail sent to a running service ends up archived once, with its envelope, on both databases."""

from __future__ import annotations

import json

from tests.support import (
    JOURNAL,
    JOURNAL_DOMAIN,
    ORIGINAL_DOMAIN,
    RunningService,
    simple_message,
)


def show(service: RunningService, message_id: str) -> dict:
    result = service.run_cli("show", message_id, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_bcc_copies_become_one_message_with_every_envelope_recipient(
    service: RunningService,
) -> None:
    """Postfix recipient_bcc_maps sends one copy per recipient, Bcc included."""
    message = simple_message("meeting@example.com", to="bob@example.com")
    with service.smtp() as client:
        for user in ("bob", "carol", "dave-the-bcc"):
            client.sendmail("alice@example.com", [f"{user}@{JOURNAL_DOMAIN}"], message)
        client.sendmail("alice@example.com", [JOURNAL], message)
    figures = service.wait_until_archived()
    assert figures["messages"] == 1
    assert figures["blobs"] == 1
    shown = show(service, "meeting@example.com")
    assert shown["envelope_recipients"] == [
        f"{user}@{ORIGINAL_DOMAIN}" for user in ("bob", "carol", "dave-the-bcc")
    ]
    assert shown["envelope_from"] == "alice@example.com"
    assert shown["to"] == [{"name": "", "address": "bob@example.com"}]


def test_copies_with_different_trace_headers_are_still_one_message(
    service: RunningService,
) -> None:
    first = b"Received: from a.example by b.example\r\n" + simple_message("trace@example.com")
    second = b"Received: from c.example by d.example\r\n" + simple_message("trace@example.com")
    with service.smtp() as client:
        client.sendmail("alice@example.com", [f"bob@{JOURNAL_DOMAIN}"], first)
        client.sendmail("alice@example.com", [f"carol@{JOURNAL_DOMAIN}"], second)
    assert service.wait_until_archived()["messages"] == 1
    assert len(show(service, "trace@example.com")["envelope_recipients"]) == 2


def test_exchange_journal_report_is_unwrapped_with_its_bcc_recipients(
    service: RunningService,
) -> None:
    original = simple_message("quarterly@example.com", subject="Quarterly numbers")
    report = (
        b"From: Microsoft Exchange <journal@example.com>\r\n"
        b"To: journal@archive.test\r\nSubject: Quarterly numbers\r\n"
        b"Message-ID: <report-1@example.com>\r\nX-MS-Journal-Report:\r\n"
        b"Date: Mon, 02 Feb 2026 10:00:05 +0000\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\n"
        b"Sender: alice@example.com\r\nSubject: Quarterly numbers\r\n"
        b"Message-Id: <quarterly@example.com>\r\nTo: bob@example.com\r\n"
        b"Bcc: secret-auditor@example.com\r\n\r\n"
        b"--b1\r\nContent-Type: message/rfc822\r\n\r\n" + original + b"\r\n--b1--\r\n"
    )
    with service.smtp() as client:
        client.sendmail("journal@example.com", [JOURNAL], report)
    assert service.wait_until_archived()["messages"] == 1
    shown = show(service, "quarterly@example.com")
    assert shown["subject"] == "Quarterly numbers"
    assert shown["envelope_from"] == "alice@example.com"
    assert shown["envelope_recipients"] == ["bob@example.com", "secret-auditor@example.com"]
    assert service.run_cli("show", "report-1@example.com").returncode == 1


def test_replies_join_the_thread_whatever_order_they_arrive_in(service: RunningService) -> None:
    root = simple_message("root@example.com", subject="Plans")
    reply = simple_message(
        "reply@example.com",
        subject="Re: Plans",
        extra_headers="In-Reply-To: <root@example.com>\r\nReferences: <root@example.com>\r\n",
    )
    reply_to_reply = simple_message(
        "reply2@example.com",
        subject="Re: Plans",
        extra_headers="References: <root@example.com> <reply@example.com>\r\n",
    )
    unrelated = simple_message("other@example.com", subject="Lunch")
    with service.smtp() as client:
        for message in (reply_to_reply, unrelated, reply, root):  # children first
            client.sendmail("alice@example.com", [JOURNAL], message)
    service.wait_until_archived()
    threads = {
        mid: show(service, mid)["thread_id"]
        for mid in (
            "root@example.com",
            "reply@example.com",
            "reply2@example.com",
            "other@example.com",
        )
    }
    assert (
        threads["root@example.com"] == threads["reply@example.com"] == threads["reply2@example.com"]
    )
    assert threads["other@example.com"] != threads["root@example.com"]


def test_mail_that_does_not_parse_is_archived_raw_and_flagged(service: RunningService) -> None:
    garbage = b"\x00\xff\xfe this is not a mail message at all\r\n\x80\x81 zzz\r\n"
    with service.smtp() as client:
        client.sendmail("alice@example.com", [JOURNAL], garbage)
        client.sendmail("alice@example.com", [JOURNAL], simple_message("fine@example.com"))
    figures = service.wait_until_archived()
    assert figures["messages"] == 2
    with service.core().sessions() as session:
        from sqlalchemy import select

        from archiver.models import Message

        flagged = session.scalars(
            select(Message).where(Message.message_id != "fine@example.com")
        ).one()
        assert "no_message_id" in flagged.flags
        assert service.core().store.get(flagged.sha256) == garbage
