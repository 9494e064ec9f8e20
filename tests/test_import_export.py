"""`arsip import` and `arsip export`: mbox, maildir, folders; idempotent; round trip."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from archiver.mailfiles import mbox_entry, read_mbox
from tests.support import CORPUS, RunningService, simple_message, write_mbox


def test_mbox_round_trip_keeps_bytes_exactly() -> None:
    import io

    tricky = [
        simple_message("a@example.com", body="From here on\r\n>From quoted\r\n\r\nFrom again\r\n"),
        b"Subject: lf only\nMessage-ID: <b@example.com>\n\nFrom the start\n>>From deep\n",
        simple_message("c@example.com", body="\r\n\r\n"),
    ]
    from datetime import UTC, datetime

    stream = b"".join(mbox_entry(m, "x@example.com", datetime.now(UTC)) for m in tricky)
    assert [found.data for found in read_mbox(io.BytesIO(stream), "test")] == tricky


@pytest.fixture
def idle(make_service, database_url: str) -> RunningService:
    """A configured service that is not running: the CLI works on its data alone."""
    return make_service(database_url, start=False)


def test_import_is_idempotent_and_export_gives_back_the_same_messages(
    idle: RunningService, tmp_path: Path
) -> None:
    messages = [simple_message(f"m{n}@example.com", subject=f"Number {n}") for n in range(30)]
    source = tmp_path / "old.mbox"
    write_mbox(source, messages)

    first = idle.run_cli("import", str(source), process=True)  # the console script, once
    assert first.returncode == 0, first.stderr
    assert "read 30 messages: 30 new, 0 already archived" in first.stdout
    again = idle.run_cli("import", str(source))
    assert "read 30 messages: 0 new, 30 already archived" in again.stdout
    assert json.loads(idle.run_cli("stats", "--json").stdout)["messages"] == 30

    exported = tmp_path / "export.mbox"
    result = idle.run_cli("export", "--output", str(exported), process=True)
    assert result.returncode == 0, result.stderr
    with open(exported, "rb") as handle:
        round_trip = {hashlib.sha256(found.data).hexdigest() for found in read_mbox(handle, "x")}
    assert round_trip == {hashlib.sha256(m).hexdigest() for m in messages}


def test_export_can_be_limited_by_date(idle: RunningService, tmp_path: Path) -> None:
    early = simple_message("early@example.com").replace(b"Mon, 02 Feb 2026", b"Thu, 01 Jan 2026")
    late = simple_message("late@example.com").replace(b"Mon, 02 Feb 2026", b"Sun, 01 Mar 2026")
    source = tmp_path / "two.mbox"
    write_mbox(source, [early, late])
    idle.run_cli("import", str(source), check=True)
    out = tmp_path / "feb.mbox"
    result = idle.run_cli(
        "export", "-o", str(out), "--since", "2026-02-01", "--until", "2026-03-01"
    )
    assert "wrote 0 messages" in result.stdout
    result = idle.run_cli(
        "export", "-o", str(out), "--since", "2026-01-01", "--until", "2026-02-01"
    )
    assert "wrote 1 message" in result.stdout
    assert b"early@example.com" in out.read_bytes() and b"late@example.com" not in out.read_bytes()
    bad = idle.run_cli("export", "-o", str(out), "--since", "last tuesday")
    assert bad.returncode == 2 and "is not a date" in bad.stderr and "Traceback" not in bad.stderr


def test_maildirs_and_folders_of_messages_are_imported(
    make_service, sqlite_url: str, tmp_path: Path
) -> None:
    idle = make_service(sqlite_url, start=False)
    folder = tmp_path / "maildir"
    shutil.copytree(CORPUS / "notmuch" / "default", folder)
    files = [
        p for p in folder.rglob("*") if p.is_file() and "tmp" not in p.relative_to(folder).parts
    ]
    result = idle.run_cli("import", str(folder))
    assert result.returncode == 0, result.stderr
    assert f"read {len(files)} messages" in result.stdout
    new = int(result.stdout.split(": ")[1].split(" new")[0])
    stats = json.loads(idle.run_cli("stats", "--json").stdout)
    assert stats["messages"] == stats["blobs"] == new > 40


def test_import_of_a_missing_path_is_one_clear_line(make_service, tmp_path: Path) -> None:
    idle = make_service(start=False)
    result = idle.run_cli("import", str(tmp_path / "nope.mbox"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: {tmp_path / 'nope.mbox'}: no such file or folder"


def test_show_prints_the_metadata_and_fails_cleanly_for_unknown_ids(
    idle: RunningService, tmp_path: Path
) -> None:
    source = tmp_path / "one.eml"
    source.write_bytes(
        simple_message(
            "shown@example.com",
            subject="=?utf-8?q?Gr=C3=BC=C3=9Fe?=",
            extra_headers="Cc: Carol <carol@example.com>\r\n",
        )
    )
    idle.run_cli("import", str(source), check=True)
    shown = json.loads(idle.run_cli("show", "<shown@example.com>", "--json").stdout)
    assert shown["subject"] == "Grüße"
    assert shown["from"] == [{"name": "Alice", "address": "alice@example.com"}]
    assert shown["cc"] == [{"name": "Carol", "address": "carol@example.com"}]
    assert shown["date"] == "2026-02-02T10:00:00+00:00"
    assert shown["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    for key in (
        "to",
        "envelope_from",
        "envelope_recipients",
        "thread_id",
        "size",
        "attachments",
        "flags",
    ):
        assert key in shown
    missing = idle.run_cli("show", "nobody@example.com", "--json")
    assert missing.returncode == 1
    assert "no archived message" in missing.stderr and "Traceback" not in missing.stderr


def test_an_export_of_internationalised_senders_reads_back_with_python_mailbox(
    make_service, tmp_path: Path
) -> None:
    """Mail from `jürgen@müller.de` (SMTPUTF8) and `info@müller.de` comes out in an mbox that
    Python's `mailbox` (and every tool built on it) reads back, every byte of every message
    intact: the `From ` lines are ASCII."""
    import mailbox

    from tests.support import JOURNAL

    service: RunningService = make_service()
    sent = {}
    for sender in ("jürgen@müller.de", "info@müller.de", "plain@example.com"):
        message_id = f"{len(sent)}@example.com"
        data = simple_message(message_id, subject="Grüße", sender=sender)
        sent[message_id] = data
        with service.smtp() as client:
            client.sendmail(sender, [JOURNAL], data, mail_options=["SMTPUTF8"])
    service.wait_until_archived()

    exported = tmp_path / "export.mbox"
    result = service.run_cli("export", "--output", str(exported))
    assert result.returncode == 0, result.stderr
    box = mailbox.mbox(exported, create=False)
    read = {box[key]["Message-ID"].strip("<>"): box.get_bytes(key) for key in box.iterkeys()}
    assert read == sent
    senders = sorted(message.get_from().split(" ")[0] for message in box)
    assert senders == ["MAILER-DAEMON", "info@xn--mller-kva.de", "plain@example.com"]
    box.close()


def test_an_operator_files_an_imported_list_archive_into_its_list(
    idle: RunningService, tmp_path: Path
) -> None:
    """A List-Id header in imported mail files nothing (anyone can write one); the operator
    moving a list's old archive over names the list with --list, which files the messages
    whose header names it (so each filed message's bytes still say which list it is in)."""
    header = "List-Id: Dev <dev.lists.example.com>\r\n"
    old_post = simple_message("old-post@example.com", extra_headers=header)
    loose = simple_message("loose@example.com", extra_headers=header)
    write_mbox(tmp_path / "dev.mbox", [old_post, simple_message("stray@example.com")])
    write_mbox(tmp_path / "loose.mbox", [loose])

    filed = idle.run_cli("import", "--list", "<Dev.Lists.Example.com>", str(tmp_path / "dev.mbox"))
    assert filed.returncode == 0, filed.stderr
    idle.run_cli("import", str(tmp_path / "loose.mbox"), check=True)

    def list_of(message_id: str) -> str | None:
        return json.loads(idle.run_cli("show", message_id, "--json").stdout)["list_id"]

    assert list_of("old-post@example.com") == "dev.lists.example.com"
    assert list_of("loose@example.com") is None
    assert list_of("stray@example.com") is None
    assert idle.run_cli("verify", "--deep").returncode == 0

    refused = idle.run_cli("import", "--list", "dev lists", str(tmp_path / "dev.mbox"))
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines()[-1].startswith("Error: --list 'dev lists'")
    assert "Traceback" not in refused.stderr


def test_an_import_waits_for_the_search_index_so_the_queue_stays_short(
    make_service, database_url: str, tmp_path: Path
) -> None:
    """With a service running, an import keeps at most --index-ahead messages ahead of the
    search index (and says how often it waited); with no service, it never waits."""
    source = tmp_path / "old.mbox"
    write_mbox(
        source, [simple_message(f"p{n}@example.com", subject=f"Pace {n}") for n in range(800)]
    )
    service = make_service(database_url)
    highest = 0
    importing = threading.Event()

    def watch_queue() -> None:
        nonlocal highest
        while importing.is_set():
            highest = max(highest, service.stats()["index_pending"])
            time.sleep(0.05)

    importing.set()
    watcher = threading.Thread(target=watch_queue)
    watcher.start()
    try:
        result = service.run_cli("import", "--index-ahead", "100", str(source))
    finally:
        importing.clear()
        watcher.join()
    assert result.returncode == 0, result.stderr
    assert "read 800 messages: 800 new" in result.stdout
    assert "times for the search index to catch up" in result.stdout
    # The queue was let past 100 by one batch of 200 at most before the import waited.
    assert highest <= 100 + 200, highest
    assert service.wait_until_found("Pace", 800, timeout=120)["total"] == 800


def test_an_import_with_no_service_running_never_waits_for_an_index(
    make_service, sqlite_url: str, tmp_path: Path
) -> None:
    source = tmp_path / "old.mbox"
    write_mbox(source, [simple_message(f"q{n}@example.com") for n in range(500)])
    idle = make_service(sqlite_url, start=False)  # SQLite: nothing indexes until served
    result = idle.run_cli("import", "--index-ahead", "100", str(source))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "read 500 messages: 500 new, 0 already archived"
    assert json.loads(idle.run_cli("stats", "--json").stdout)["index_pending"] == 500
