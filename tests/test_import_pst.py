"""`arsip import FILE.pst`: Outlook's files read through readpst, folders kept for `folder:`.

The PST files are the PST File Format SDK's own samples (tests/fixtures/pst/SOURCES.md).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from archiver.audit import AuditEntry
from archiver.search.indexer import Indexer
from tests.support import ROOT, RunningService, missing, simple_message

PSTS = ROOT / "tests" / "fixtures" / "pst"
SAMPLE = PSTS / "sample1.pst"  # folder Sample1: "Here is a sample message", a JPEG attached
EMBEDDING = PSTS / "submessage.pst"  # folder submessage: a message with a message inside
SAMPLE_SUBJECT = "Here is a sample message"
EMBEDDING_SUBJECT = "This is a message which has an embedded message attached"


@pytest.fixture
def idle(make_service, database_url: str) -> RunningService:
    """A configured archive whose service is not running: the CLI works on its data."""
    if shutil.which("readpst") is None:
        missing("readpst is not installed (make test installs Debian's pst-utils)")
    return make_service(database_url, start=False)


def subjects(idle: RunningService, query: str) -> set[str]:
    """The subjects a search finds once everything archived is indexed."""
    core = idle.core()
    Indexer(core.sessions, core.search_backend(), core.store).run_once()
    answer = idle.run_cli("search", "--json", query)
    assert answer.returncode == 0, answer.stderr
    return {hit["subject"] for hit in json.loads(answer.stdout)["results"]}


def test_a_pst_is_archived_with_its_folders_once_however_often_it_is_imported(
    idle: RunningService, tmp_path: Path
) -> None:
    first = idle.run_cli("import", str(SAMPLE), str(EMBEDDING))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "read 2 messages: 2 new, 0 already archived"
    # readpst writes each file anew, with new MIME boundaries: still the same messages.
    again = idle.run_cli("import", str(SAMPLE), str(EMBEDDING))
    assert again.stdout.strip() == "read 2 messages: 0 new, 2 already archived"
    # An OST is read the same way, whatever it is called, and so is one in a folder.
    export = tmp_path / "export"
    export.mkdir()
    shutil.copyfile(SAMPLE, export / "Outlook Mail.ost")
    (export / "note.eml").write_bytes(simple_message("note@example.com", subject="A note"))
    assert idle.run_cli("import", str(export)).stdout.strip() == (
        "read 2 messages: 1 new, 1 already archived"
    )
    assert json.loads(idle.run_cli("stats", "--json").stdout)["messages"] == 3

    assert subjects(idle, "folder:sample1") == {SAMPLE_SUBJECT}
    assert subjects(idle, "folder:Submessage") == {EMBEDDING_SUBJECT}
    assert subjects(idle, "puppy folder:sample1 has:attachment") == {SAMPLE_SUBJECT}
    assert subjects(idle, "folder:inbox") == set()
    assert subjects(idle, "-folder:sample1") == {EMBEDDING_SUBJECT, "A note"}
    message_id = (
        "B2FDDB8BE384C94794441DB4A7F3D8B804AE624B@TK5EX14MBXC114.redmond.corp.microsoft.com"
    )
    shown = json.loads(idle.run_cli("show", "--json", message_id).stdout)
    assert shown["folders"] == ["Sample1"]
    assert [part["filename"] for part in shown["attachments"]] == ["leah_thumper.jpg"]
    # Nothing of readpst's scratch files is left beside the archive.
    assert not list(idle.settings.data_dir.glob("pst-*"))

    with idle.core().sessions() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "mail.import").order_by(AuditEntry.seq)
        ).all()
    assert [entry.details["new"] for entry in entries] == [2, 0, 1]
    assert entries[0].details["paths"] == [str(SAMPLE), str(EMBEDDING)]


def test_a_file_readpst_cannot_read_is_refused_in_one_line(
    idle: RunningService, tmp_path: Path
) -> None:
    not_pst = tmp_path / "mail.pst"
    not_pst.write_text("These are my notes, not an Outlook file.\n")
    cut = tmp_path / "cut.pst"
    cut.write_bytes(SAMPLE.read_bytes()[:5000])  # a download that stopped early
    for path, reason in (
        (not_pst, "not a PST or OST file (it does not start as one)"),
        (cut, "not a PST or OST file readpst can read (Could not get root record)"),
    ):
        result = idle.run_cli("import", str(path))
        assert result.returncode == 1
        assert result.stderr.strip() == f"Error: {path}: {reason}"
    assert json.loads(idle.run_cli("stats", "--json").stdout)["messages"] == 0
