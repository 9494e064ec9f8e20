"""`arsip verify --deep`: the rows that decide who reads a message follow from its bytes.

A real `arsip serve` takes in mail over SMTP on loopback (a plain journal copy, two journal
copies of one message that merge, an Exchange journal report with a Bcc recipient, a list
post) and `arsip import` adds an old message. An untouched archive verifies clean, merged
envelopes and all. Then someone with write access to the database edits a subject, a
sender, an address row and a list: the plain check cannot see it, the deep one names each
message and field and exits 1.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, insert, select, update

from archiver.mailfiles import mbox_entry
from archiver.models import Message, MessageAddress
from tests.support import JOURNAL, JOURNAL_DOMAIN, LIST_DOMAIN, RunningService, simple_message
from tests.test_visibility_matrix import journal_report

LIST = f"dev@{LIST_DOMAIN}"


def pk_of(service: RunningService, message_id: str) -> int:
    with service.core().sessions() as session:
        return session.scalar(select(Message.id).where(Message.message_id == message_id))


def test_deep_verify_finds_edited_rows_that_the_plain_check_cannot(
    service: RunningService, tmp_path: Path
) -> None:
    service.run_cli("lists", "create", LIST, "--owner", "owner@example.com", check=True)
    service.run_cli("lists", "add-member", LIST, "owner@example.com", "--no-confirm", check=True)
    merged = simple_message("merged@example.com", subject="Twice", extra_headers="Cc: c@x.org\r\n")
    with service.smtp() as client:
        client.sendmail("alice@example.com", [JOURNAL], simple_message("plain@example.com"))
        client.sendmail("alice@example.com", [f"bob@{JOURNAL_DOMAIN}"], merged)
        client.sendmail("alice@example.com", [f"carol@{JOURNAL_DOMAIN}"], merged)
        report = journal_report(simple_message("bcc@example.com"), "bea@example.com")
        client.sendmail("journal@example.com", [JOURNAL], report)
        post = simple_message("post@example.com", sender="owner@example.com", to=LIST)
        client.sendmail("owner@example.com", [LIST], post)
    old = tmp_path / "old.mbox"
    old.write_bytes(mbox_entry(simple_message("old@example.com"), "", datetime.now(UTC)))
    service.run_cli("import", str(old), check=True)
    assert service.wait_until_archived()["messages"] == 5

    clean = service.run_cli("verify", "--deep")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "parsed 5 messages again: 0 fields differ from their bytes" in clean.stdout

    with service.core().sessions.begin() as session:
        session.execute(
            update(Message)
            .where(Message.message_id == "plain@example.com")
            .values(subject="Nothing to see", from_address="ceo@example.com")
        )
        merged_pk = pk_of(service, "merged@example.com")
        session.execute(  # a reader planted in the headers' rows
            insert(MessageAddress).values(
                message_pk=merged_pk, role="to", address="mallory@example.com", name=""
            )
        )
        session.execute(  # a Cc recipient demoted to Reply-To, which grants nothing
            update(MessageAddress)
            .where(MessageAddress.message_pk == merged_pk, MessageAddress.role == "cc")
            .values(role="reply_to")
        )
        session.execute(
            delete(MessageAddress).where(
                MessageAddress.message_pk == pk_of(service, "post@example.com"),
                MessageAddress.role == "from",
            )
        )
        session.execute(
            update(Message)
            .where(Message.message_id == "old@example.com")
            .values(list_id=f"private.{LIST_DOMAIN}")
        )

    assert service.run_cli("verify").returncode == 0  # the bytes themselves are untouched
    deep = service.run_cli("verify", "--deep", "--json")
    assert deep.returncode == 1, deep.stderr
    found = {(m["message_id"], m["field"]) for m in json.loads(deep.stdout)["rows"]["mismatches"]}
    assert found == {
        ("plain@example.com", "subject"),
        ("plain@example.com", "from_address"),
        ("merged@example.com", "address to mallory@example.com"),
        ("merged@example.com", "address cc c@x.org"),
        ("merged@example.com", "address reply_to c@x.org"),
        ("post@example.com", "address from owner@example.com"),
        ("old@example.com", "list_id"),
    }
    text = service.run_cli("verify", "--deep").stdout
    assert (
        "mismatch <plain@example.com> from_address: the database says 'ceo@example.com', "
        "the bytes say 'alice@example.com'" in text
    )
