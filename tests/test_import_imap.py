"""`arsip import imap://...`: a real Dovecot on loopback, resumed by UID, encrypted off
this machine, the password only ever on stdin."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from archiver.audit import AuditEntry
from archiver.models import ImportCursor
from archiver.search.indexer import Indexer
from tests.imap_server import ImapServer, running_dovecot
from tests.support import (
    RunningService,
    make_certificate,
    run_arsip,
    service_env,
    settings_from,
    simple_message,
)

ALICE, PASSWORD = "alice", "correct horse battery"


@pytest.fixture
def idle(make_service, database_url: str) -> RunningService:
    """A configured archive whose service is not running: the CLI works on its data."""
    return make_service(database_url, start=False)


@pytest.fixture
def dovecot() -> Iterator[ImapServer]:
    with running_dovecot({ALICE: PASSWORD}) as server:
        yield server


def mail(number: int, subject: str = "") -> bytes:
    return simple_message(f"imap-{number}@example.com", subject=subject or f"Letter {number}")


def imported(idle: RunningService, *args: str, password: str = PASSWORD):
    """`arsip import ARGS --password-stdin`, the password on stdin as an operator types it."""
    return idle.run_cli("import", *args, "--password-stdin", stdin=password + "\n")


def subjects(idle: RunningService, query: str) -> set[str]:
    """The subjects a search finds once everything archived is indexed."""
    core = idle.core()
    Indexer(core.sessions, core.search_backend(), core.store).run_once()
    answer = idle.run_cli("search", "--json", "--limit", "100", query)
    assert answer.returncode == 0, answer.stderr
    return {hit["subject"] for hit in json.loads(answer.stdout)["results"]}


def test_a_mailbox_is_imported_then_only_its_new_mail_unread_and_unchanged(
    idle: RunningService, dovecot: ImapServer
) -> None:
    dovecot.append(ALICE, "INBOX", [mail(n) for n in range(3)])
    first = imported(idle, dovecot.url(ALICE))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "INBOX: read 3 messages: 3 new, 0 already archived"

    dovecot.append(ALICE, "INBOX", [mail(n) for n in range(3, 5)])
    second = imported(idle, dovecot.url(ALICE))
    assert second.stdout.strip() == "INBOX: read 2 messages: 2 new, 0 already archived"
    third = imported(idle, dovecot.url(ALICE))
    assert third.stdout.strip() == "INBOX: read 0 messages: 0 new, 0 already archived"

    assert json.loads(idle.run_cli("stats", "--json").stdout)["messages"] == 5
    assert subjects(idle, "folder:inbox") == {f"Letter {n}" for n in range(5)}
    flags = dovecot.flags(ALICE, "INBOX")
    assert len(flags) == 5 and not any(b"\\Seen" in item for item in flags)


def test_the_import_is_recorded_under_its_url_and_the_password_is_nowhere(
    idle: RunningService, dovecot: ImapServer
) -> None:
    dovecot.append(ALICE, "INBOX", [mail(1)])
    result = imported(idle, dovecot.url(ALICE))
    assert result.returncode == 0, result.stderr
    url = f"imap://alice@127.0.0.1:{dovecot.port}/INBOX"
    with idle.core().sessions() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "mail.import")).one()
        cursor = session.get(ImportCursor, url)
    assert entry.target == url
    assert entry.details == {"folder": "INBOX", "read": 1, "new": 1}
    assert cursor is not None and cursor.last_uid == 1
    everything = result.stdout + result.stderr + json.dumps(entry.details) + entry.target
    assert PASSWORD not in everything
    assert PASSWORD not in idle.run_cli("audit", "list").stdout


def test_every_mailbox_is_imported_each_as_a_folder_and_shared_mail_is_stored_once(
    idle: RunningService, dovecot: ImapServer
) -> None:
    shared = mail(10, "Budget for the whole team")
    dovecot.append(ALICE, "INBOX", [mail(11, "Lunch on Friday"), shared])
    dovecot.append(ALICE, "Projects/Budget.2026", [shared, mail(12, "Spreadsheet, second draft")])

    result = imported(idle, f"imap://{ALICE}@127.0.0.1:{dovecot.port}/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "INBOX: read 2 messages: 2 new, 0 already archived",
        "Projects/Budget.2026: read 2 messages: 1 new, 1 already archived",
    ]
    assert json.loads(idle.run_cli("stats", "--json").stdout)["messages"] == 3
    budget = {"Budget for the whole team", "Spreadsheet, second draft"}
    assert subjects(idle, "folder:budget") == budget
    assert subjects(idle, 'folder:"projects/budget"') == budget
    assert subjects(idle, "folder:2026") == budget
    assert subjects(idle, "folder:inbox") == {"Lunch on Friday", "Budget for the whole team"}
    assert subjects(idle, "folder:inbox folder:projects") == {"Budget for the whole team"}
    assert subjects(idle, "folder:archive") == set()
    shown = json.loads(idle.run_cli("show", "--json", "imap-10@example.com").stdout)
    assert shown["folders"] == ["INBOX", "Projects/Budget.2026"]


def test_a_renumbered_mailbox_is_read_again_without_archiving_anything_twice(
    idle: RunningService, dovecot: ImapServer
) -> None:
    dovecot.append(ALICE, "Old", [mail(20), mail(21)])
    assert imported(idle, dovecot.url(ALICE, "Old")).returncode == 0
    dovecot.recreate(ALICE, "Old")  # a restore: the same mail under new UIDs
    dovecot.append(ALICE, "Old", [mail(20), mail(21), mail(22)])

    again = imported(idle, dovecot.url(ALICE, "Old"))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == (
        "Old: read 3 messages: 1 new, 2 already archived;"
        " renumbered by the server (new UIDVALIDITY): read again"
    )
    assert json.loads(idle.run_cli("stats", "--json").stdout)["messages"] == 3


def test_a_message_without_a_date_is_dated_when_the_server_received_it(
    idle: RunningService, dovecot: ImapServer
) -> None:
    received = datetime(2019, 5, 6, 10, 30, tzinfo=UTC)
    undated = mail(25).replace(b"Date: Mon, 02 Feb 2026 10:00:00 +0000\r\n", b"")
    dovecot.append(ALICE, "INBOX", [undated], received=received)
    dovecot.append(ALICE, "INBOX", [mail(26)], received=datetime(2026, 2, 2, 10, 1, tzinfo=UTC))
    assert imported(idle, dovecot.url(ALICE)).returncode == 0

    shown = json.loads(idle.run_cli("show", "--json", "imap-25@example.com").stdout)
    assert shown["date"] == received.isoformat()  # not the day it was imported
    assert "no_date" in shown["flags"]  # still marked as having none of its own
    dated = json.loads(idle.run_cli("show", "--json", "imap-26@example.com").stdout)
    assert dated["date"] == "2026-02-02T10:00:00+00:00"  # its own Date: wins
    # what the archive derived from the bytes is what a deep check derives again
    deep = idle.run_cli("verify", "--deep")
    assert deep.returncode == 0, deep.stdout + deep.stderr


def test_a_wrong_password_or_mailbox_ends_in_one_line_and_archives_nothing(
    idle: RunningService, dovecot: ImapServer
) -> None:
    dovecot.append(ALICE, "INBOX", [mail(30)])
    wrong = imported(idle, dovecot.url(ALICE), password="guess")
    assert wrong.returncode == 1
    assert f"127.0.0.1:{dovecot.port} refused the login of alice" in wrong.stderr
    assert "Traceback" not in wrong.stderr and len(wrong.stderr.splitlines()) == 1

    nowhere = imported(idle, dovecot.url(ALICE, "Nowhere"))
    assert nowhere.returncode == 1
    assert "no mailbox 'Nowhere' on 127.0.0.1 (it has: INBOX)" in nowhere.stderr

    closed = imported(idle, f"imap://alice@127.0.0.1:{dovecot.tls_port}/INBOX")
    assert closed.returncode == 1 and "cannot reach the IMAP server" in closed.stderr
    assert json.loads(idle.run_cli("stats", "--json").stdout)["messages"] == 0


def test_the_password_comes_only_on_stdin_and_travels_only_encrypted(tmp_path: Path) -> None:
    # All refused before any connection is made (no archive is needed for that either).
    settings = settings_from(service_env(tmp_path / "var"))
    cases = {
        ("imap://alice@mail.example.com/INBOX", "--password-stdin"): (
            "imap://mail.example.com would send the password and the mail unencrypted: use"
            " imaps://mail.example.com/... (TLS, port 993), or add --starttls (port 143)"
        ),
        ("imap://alice:secret@127.0.0.1/INBOX", "--password-stdin"): ("put no password in the URL"),
        ("imaps://alice@mail.example.com/INBOX",): (
            "an IMAP import needs the account's password: give it with --password-stdin"
        ),
        ("imaps://mail.example.com/INBOX", "--password-stdin"): "give the account and the server",
        ("imaps://alice@mail.example.com/INBOX", "--starttls", "--password-stdin"): (
            "--starttls is for imap:// URLs"
        ),
    }
    for args, reason in cases.items():
        result = run_arsip(settings, "import", *args, stdin=f"{PASSWORD}\n")
        assert result.returncode != 0, args
        assert reason in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr and "secret" not in result.stderr


def test_tls_checks_the_certificate_the_operator_trusts(
    idle: RunningService, tmp_path: Path
) -> None:
    cert, key = make_certificate(tmp_path)
    with running_dovecot({ALICE: PASSWORD}, (cert, key)) as server:
        server.append(ALICE, "INBOX", [mail(40), mail(41)])
        imaps = f"imaps://alice@localhost:{server.tls_port}/INBOX"
        untrusted = imported(idle, imaps)
        assert untrusted.returncode == 1
        assert "its TLS certificate is not trusted (self-signed certificate)" in untrusted.stderr

        trusted = imported(idle, imaps, "--cafile", str(cert))
        assert trusted.returncode == 0, trusted.stderr
        assert trusted.stdout.strip() == "INBOX: read 2 messages: 2 new, 0 already archived"

        server.append(ALICE, "INBOX", [mail(42)])
        starttls = f"imap://alice@localhost:{server.port}/INBOX"
        upgraded = imported(idle, starttls, "--starttls", "--cafile", str(cert))
        assert upgraded.returncode == 0, upgraded.stderr
        # Another URL (port and scheme), so another cursor: the first two are there already.
        assert upgraded.stdout.strip() == "INBOX: read 3 messages: 1 new, 2 already archived"
