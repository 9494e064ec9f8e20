"""Productions and data-subject exports: what a review platform loads, numbered without
gaps or repeats across a series, never looking finished before it is."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import mailbox
import os
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from sqlalchemy import select

from archiver.archive import RawMessage
from archiver.audit import AuditEntry
from archiver.core import Core
from archiver.models import Message
from archiver.production.errors import ProductionError
from archiver.production.family import FIELDS
from archiver.production.journal import BOOT, Journal
from archiver.production.loadfile import dat_value
from archiver.production.plan import Collected, Dedupe
from archiver.production.run import Format, Request, produce
from archiver.store import durable
from tests.reading_mail import pdf
from tests.support import run_arsip, simple_message
from tests.tsa import running_tsa

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
OPERATOR = "cli:test"
ANN, BOB = "ann@example.com", "bob@example.com"
ERIN = "erin@example.com"
BOM = b"\xef\xbb\xbf"


def family_message() -> bytes:
    """A message with a PDF and a text file attached, to Bob, copied to Carol."""
    message = EmailMessage(policy=SMTP)
    message["From"], message["To"] = "Alice <alice@example.com>", f"Bob <{BOB}>"
    message["Cc"], message["Subject"] = "Carol <carol@example.com>", "Forecast, with files"
    message["Date"], message["Message-ID"] = "Tue, 03 Feb 2026 09:00:00 +0000", "<family@ex.com>"
    message.set_content("The forecast and the notes are attached.\nLine two.")
    message.add_attachment(pdf(), maintype="application", subtype="pdf", filename="report.pdf")
    message.add_attachment("Notes on the plan.", subtype="plain", filename="notes.txt")
    return message.as_bytes()


def archive(core: Core, data: bytes, envelope_to: tuple[str, ...] = ()) -> int:
    """Archive `data` as the operator's import (a trusted copy: its envelope is kept)."""
    with core.sessions.begin() as session:
        raw = RawMessage(data, "alice@example.com", list(envelope_to), NOW, "import")
        (result,) = core.archive.archive_batch(session, [raw])
        return result.message_pk


@pytest.fixture
def mail(core: Core) -> dict[str, int]:
    """The family message and a plain one, archived."""
    return {
        "family": archive(core, family_message()),
        "plain": archive(core, simple_message("plain@ex.com", subject="Plain", to=BOB)),
    }


def request(output: Path, series: str = "acme", **options) -> Request:
    return Request(series=series, output=output, actor=OPERATOR, **options)


def dat_rows(folder: Path) -> list[dict[str, str]]:
    """The .dat read as a review platform splits it with Concordance's default delimiters:
    BOM, þ DC4 þ between values (DC4, ASCII 20, is the "¶" of their import dialogs), CRLF."""
    data = (folder / "DATA" / "loadfile.dat").read_bytes()
    assert data.startswith(BOM)
    lines = data[len(BOM) :].decode("utf-8").split("\r\n")
    assert lines[-1] == ""
    table = [line.removeprefix("þ").removesuffix("þ").split("þ\x14þ") for line in lines[:-1]]
    header, rows = table[0], table[1:]
    assert tuple(header) == FIELDS
    assert all(len(row) == len(header) for row in rows)
    return [dict(zip(header, row, strict=True)) for row in rows]


def csv_rows(folder: Path) -> list[dict[str, str]]:
    data = (folder / "DATA" / "loadfile.csv").read_bytes()
    assert data.startswith(BOM)
    return list(csv.DictReader(io.StringIO(data[len(BOM) :].decode("utf-8"), newline="")))


def sha256sum_check(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sha256sum", "--strict", "-c", "manifest.sha256"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )


def audited(core: Core, action: str) -> list[AuditEntry]:
    with core.sessions() as session:
        return list(
            session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by("seq"))
        )


def test_a_production_holds_natives_text_load_files_and_a_manifest(
    core: Core, mail: dict[str, int], tmp_path: Path
) -> None:
    out = tmp_path / "prod"
    items = [Collected(mail["family"], (ANN,)), Collected(mail["plain"], (ANN,))]
    summary = produce(core, request(out, prefix="ABC"), items)

    assert (summary.first, summary.last, summary.messages, summary.attachments) == (
        "ABC0000001",
        "ABC0000004",
        2,
        2,
    )
    rows = dat_rows(out)
    assert rows == [{k: v.replace("\n", "®") for k, v in row.items()} for row in csv_rows(out)]
    email, report, notes, plain = rows
    assert [r["BegBates"] for r in rows] == ["ABC0000001", "ABC0000002", "ABC0000003", "ABC0000004"]
    assert all(r["BegBates"] == r["EndBates"] for r in rows)
    # the family spans the message and its attachments; a lone message is its own family
    for row in (email, report, notes):
        assert (row["BegAttach"], row["EndAttach"]) == ("ABC0000001", "ABC0000003")
    assert (report["ParentBates"], notes["ParentBates"], email["ParentBates"]) == (
        "ABC0000001",
        "ABC0000001",
        "",
    )
    assert (plain["BegAttach"], plain["EndAttach"]) == ("ABC0000004", "ABC0000004")
    assert email["From"] == "Alice <alice@example.com>"
    assert email["To"] == f"Bob <{BOB}>" and email["CC"] == "Carol <carol@example.com>"
    assert email["Subject"] == "Forecast, with files"
    assert email["DateSent"] == "2026-02-03T09:00:00Z"
    assert email["MessageID"] == "<family@ex.com>" and email["ThreadID"]
    assert email["Custodian"] == email["AllCustodians"] == ANN
    assert (report["FileName"], notes["FileName"]) == ("report.pdf", "notes.txt")

    # every native and text file is where its row says, with the row's hashes
    assert email["NativeLink"] == "NATIVES/ABC0000001.eml"
    assert report["NativeLink"] == "NATIVES/ABC0000002.pdf"
    for row in rows:
        native = (out / row["NativeLink"]).read_bytes()
        assert row["MD5Hash"] == hashlib.md5(native).hexdigest()
        assert row["SHA256"] == hashlib.sha256(native).hexdigest()
    with core.sessions() as session:
        stored = core.store.get(session.get_one(Message, mail["family"]).sha256)
    assert (out / "NATIVES" / "ABC0000001.eml").read_bytes() == stored
    assert (out / "NATIVES" / "ABC0000002.pdf").read_bytes() == pdf()
    text = (out / email["TextLink"]).read_bytes().decode("utf-8")
    assert "Subject: Forecast, with files\r\n" in text
    assert "The forecast and the notes are attached.\r\nLine two." in text
    assert "Forecast 2026" in (out / report["TextLink"]).read_bytes().decode("utf-8")
    assert (out / notes["TextLink"]).read_bytes() == b"Notes on the plan.\r\n"

    checked = sha256sum_check(out)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = {line.split("  ", 1)[1] for line in (out / "manifest.sha256").read_text().splitlines()}
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.parent != out}
    assert listed == on_disk  # every file of the production, and nothing else
    described = json.loads((out / "production.json").read_text())
    manifest_sha256 = hashlib.sha256((out / "manifest.sha256").read_bytes()).hexdigest()
    assert described["manifest_sha256"] == summary.manifest_sha256 == manifest_sha256
    assert described["counts"] == {"messages": 2, "attachments": 2, "documents": 4, "files": 10}
    assert (described["series"], described["first"], described["last"]) == (
        "acme",
        "ABC0000001",
        "ABC0000004",
    )
    (created,) = audited(core, "production.create")
    assert created.target == "acme"
    assert created.details["manifest_sha256"] == manifest_sha256
    assert (created.details["first"], created.details["last"]) == ("ABC0000001", "ABC0000004")


def test_control_numbers_run_on_across_the_productions_of_a_series(
    core: Core, mail: dict[str, int], tmp_path: Path
) -> None:
    items = [Collected(mail["family"]), Collected(mail["plain"])]
    first = produce(core, request(tmp_path / "one", prefix="ABC"), items)
    second = produce(core, request(tmp_path / "two"), [Collected(mail["plain"])])
    assert (first.first, first.last) == ("ABC0000001", "ABC0000004")
    assert (second.first, second.last) == ("ABC0000005", "ABC0000005")
    assert dat_rows(tmp_path / "two")[0]["NativeLink"] == "NATIVES/ABC0000005.eml"
    other = produce(core, request(tmp_path / "three", series="beta", prefix="BETA"), items)
    assert other.first == "BETA0000001"
    with pytest.raises(ProductionError, match="numbers with the prefix ABC"):
        produce(core, request(tmp_path / "four", prefix="XYZ"), items)
    with pytest.raises(ProductionError, match="prefix 'A B'"):
        produce(core, request(tmp_path / "five", series="gamma", prefix="A B"), items)


def test_dedupe_produces_a_message_once_per_custodian_or_once_in_all(
    core: Core, mail: dict[str, int], tmp_path: Path
) -> None:
    items = [
        Collected(mail["family"], (ANN,)),
        Collected(mail["family"], (BOB,)),
        Collected(mail["plain"], (ANN,)),
        Collected(mail["plain"], (ANN,)),  # collected twice for Ann
    ]

    def emails(folder: Path, dedupe: Dedupe) -> list[tuple[str, str, str]]:
        produce(core, request(folder, series=f"d-{dedupe}", dedupe=dedupe), items)
        rows = [row for row in dat_rows(folder) if not row["ParentBates"]]
        return [(row["MessageID"], row["Custodian"], row["AllCustodians"]) for row in rows]

    both = f"{ANN}; {BOB}"
    assert emails(tmp_path / "none", Dedupe.NONE) == [
        ("<family@ex.com>", ANN, both),
        ("<family@ex.com>", BOB, both),
        ("<plain@ex.com>", ANN, ANN),
        ("<plain@ex.com>", ANN, ANN),
    ]
    assert emails(tmp_path / "custodian", Dedupe.CUSTODIAN) == [
        ("<family@ex.com>", ANN, both),
        ("<family@ex.com>", BOB, both),
        ("<plain@ex.com>", ANN, ANN),
    ]
    assert emails(tmp_path / "global", Dedupe.GLOBAL) == [
        ("<family@ex.com>", both, both),
        ("<plain@ex.com>", ANN, ANN),
    ]
    # each produced copy is a family of its own, attachments numbered behind it
    rows = dat_rows(tmp_path / "custodian")
    assert [row["BegBates"] for row in rows if row["ParentBates"] == "ARSIP0000004"] == [
        "ARSIP0000005",
        "ARSIP0000006",
    ]


def test_an_interrupted_production_never_looks_finished_and_carries_on(
    core: Core, mail: dict[str, int], tmp_path: Path
) -> None:
    out = tmp_path / "prod"
    extra = archive(core, simple_message("third@ex.com", subject="Third"))
    items = [Collected(mail["family"]), Collected(mail["plain"]), Collected(extra)]

    def stop_after_one(done: int, total: int) -> None:
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        produce(core, request(out, prefix="ABC"), items, stop_after_one)
    # nothing a person or a platform would take for a production: one hidden folder
    assert [p.name for p in out.iterdir()] == [".partial-1"]
    seen: list[int] = []

    def stop_at_once(done: int, total: int) -> None:
        seen.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        produce(core, request(out, prefix="ABC"), items, stop_at_once)
    assert [p.name for p in out.iterdir()] == [".partial-1"]

    summary = produce(core, request(out), items, lambda done, total: seen.append(done))
    assert seen == [2, 3]  # each run carries on after the last message done
    assert summary.resumed and (summary.first, summary.last) == ("ABC0000001", "ABC0000005")
    assert sorted(p.name for p in out.iterdir()) == [
        "DATA",
        "NATIVES",
        "TEXT",
        "manifest.sha256",
        "production.json",
    ]
    assert [row["BegBates"] for row in dat_rows(out)] == [f"ABC000000{n}" for n in range(1, 6)]
    assert sha256sum_check(out).returncode == 0
    assert len(audited(core, "production.start")) == len(audited(core, "production.create")) == 1


def test_a_production_is_on_disk_before_it_says_it_is_finished(
    core: Core, mail: dict[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No file is fsync'd alone: the staging folder is synced once (syncfs, or an fsync of
    each of its files where there is none) before anything moves into place, and the
    moves are synced before `production.json` follows them, and after."""
    events: list[tuple[str, str]] = []

    def path_of(fd: int) -> str:
        return os.readlink(f"/proc/self/fd/{fd}")

    real_syncfs, real_fsync, real_rename = durable._SYNCFS, os.fsync, os.rename
    if real_syncfs is not None:
        monkeypatch.setattr(
            durable, "_SYNCFS", lambda fd: events.append(("sync", path_of(fd))) or real_syncfs(fd)
        )
    monkeypatch.setattr(
        os, "fsync", lambda fd: events.append(("fsync", path_of(fd))) or real_fsync(fd)
    )
    monkeypatch.setattr(
        os, "rename", lambda a, b: events.append(("move", str(b))) or real_rename(a, b)
    )
    out = tmp_path / "prod"
    summary = produce(core, request(out), [Collected(mail["family"]), Collected(mail["plain"])])

    moves = [i for i, (kind, _) in enumerate(events) if kind == "move"]
    assert [Path(events[i][1]).name for i in moves] == [
        "NATIVES", "TEXT", "DATA", "manifest.sha256", "production.json"
    ]  # fmt: skip
    stage = str(out / f".partial-{summary.id}")
    before = events[: moves[0]]
    if real_syncfs is not None:
        assert ("sync", stage) in before
    else:
        written = {str(p).replace(str(out), stage, 1) for p in out.rglob("*") if p.is_file()}
        assert written <= {path for _, path in before}
    assert ("fsync", str(out)) in events[moves[3] : moves[4]]
    assert ("fsync", str(out)) in events[moves[4] :]


def test_after_a_power_cut_an_interrupted_production_is_written_again_not_sealed_over_lost_files(
    core: Core, mail: dict[str, int], tmp_path: Path
) -> None:
    out = tmp_path / "prod"
    items = [Collected(mail["family"]), Collected(mail["plain"])]

    def stop_after_one(done: int, total: int) -> None:
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        produce(core, request(out, prefix="ABC"), items, stop_after_one)
    # The machine lost power: the first message's native never reached the disk, though
    # the journal line naming it did, and it starts again as another boot.
    (stage,) = out.iterdir()
    (stage / "NATIVES" / "ABC0000001.eml").write_bytes(b"")
    (stage / BOOT).write_text("another boot")
    seen: list[int] = []
    summary = produce(core, request(out), items, lambda done, total: seen.append(done))
    assert seen == [1, 2] and summary.resumed  # the same production, every file again
    assert (summary.first, summary.last) == ("ABC0000001", "ABC0000004")
    checked = sha256sum_check(out)
    assert checked.returncode == 0, checked.stdout


def test_another_production_in_an_interrupted_ones_folder_starts_afresh(
    core: Core, mail: dict[str, int], tmp_path: Path
) -> None:
    out = tmp_path / "prod"

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    items = [Collected(mail["family"]), Collected(mail["plain"])]
    with pytest.raises(KeyboardInterrupt):
        produce(core, request(out, prefix="ABC"), items, stop)
    summary = produce(core, request(out), [Collected(mail["plain"])])
    # the numbers the given-up run reserved are never handed out again
    assert (summary.first, summary.last, summary.resumed) == ("ABC0000005", "ABC0000005", False)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    (abandoned,) = audited(core, "production.abandon")
    assert (abandoned.details["first"], abandoned.details["last"]) == ("ABC0000001", "ABC0000004")
    with pytest.raises(KeyboardInterrupt):
        produce(core, request(tmp_path / "p2"), items, stop)
    with pytest.raises(ProductionError, match="unfinished production of series 'acme'"):
        produce(core, request(tmp_path / "p2", series="other"), items)


def test_a_folder_holding_something_else_is_refused(
    core: Core, mail: dict[str, int], tmp_path: Path
) -> None:
    items = [Collected(mail["plain"])]
    produce(core, request(tmp_path / "done"), items)
    with pytest.raises(ProductionError, match=r"already holds a finished production \(series"):
        produce(core, request(tmp_path / "done"), items)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ProductionError, match="is not empty"):
        produce(core, request(busy), items)
    with pytest.raises(ProductionError, match="nothing to produce"):
        produce(core, request(tmp_path / "none"), [Collected(999_999)])
    assert not (tmp_path / "none").exists()


def test_the_mbox_format_puts_the_messages_in_one_mbox(
    core: Core, mail: dict[str, int], tmp_path: Path
) -> None:
    out = tmp_path / "prod"
    items = [Collected(mail["family"]), Collected(mail["plain"])]
    produce(core, request(out, prefix="ABC", format=Format.MBOX), items)
    rows = dat_rows(out)
    box = "NATIVES/ABC0000001-ABC0000004.mbox"
    assert [row["NativeLink"] for row in rows] == [
        box,
        "NATIVES/ABC0000002.pdf",
        "NATIVES/ABC0000003.txt",
        box,
    ]
    assert not list((out / "NATIVES").glob("*.eml"))
    found = [bytes(m) for m in mailbox.mbox(out / box)]
    assert [m["Message-ID"] for m in mailbox.mbox(out / box)] == [
        "<family@ex.com>",
        "<plain@ex.com>",
    ]
    # a row's hashes are those of its message's own bytes, as split from the mbox
    assert len(found) == 2
    assert sha256sum_check(out).returncode == 0
    assert box in (out / "manifest.sha256").read_text()


def test_dat_values_keep_to_one_line_and_clear_of_the_delimiters() -> None:
    assert dat_value("first\r\nsecond\nthird\x14fourth") == "þfirst®second®third fourthþ"


def test_a_journal_line_cut_short_is_dropped_and_written_again(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append([{"BegBates": "A1"}], [("TEXT/A1.txt", "0" * 64)])
    with open(journal.path, "ab") as handle:
        handle.write(b'{"rows": [{"BegBates": "A2"}], "fi')  # the run stopped mid-line
    assert journal.resume().done == 1
    journal.append([{"BegBates": "A2"}], [])
    assert [row["BegBates"] for row in journal.rows()] == ["A1", "A2"]


def test_subject_export_finds_the_address_in_any_role(core: Core, tmp_path: Path) -> None:
    archive(core, simple_message("to@ex.com", subject="To Erin", to=ERIN))
    archive(core, simple_message("cc@ex.com", extra_headers=f"Cc: {ERIN}\r\n"))
    archive(core, simple_message("env@ex.com", subject="Bcc'd"), envelope_to=(ERIN,))
    archive(core, simple_message("other@ex.com", subject="Not about Erin"))
    out = tmp_path / "erin"

    result = run_arsip(core.settings, "subject", "export", "Erin@Example.com", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert f"of subject:{ERIN}: ARSIP0000001 to ARSIP0000003 (3 messages" in result.stdout
    rows = dat_rows(out)
    assert {row["MessageID"] for row in rows} == {"<to@ex.com>", "<cc@ex.com>", "<env@ex.com>"}
    assert {row["Custodian"] for row in rows} == {ERIN}
    assert sha256sum_check(out).returncode == 0
    (entry,) = audited(core, "subject.export")
    assert entry.target == ERIN and entry.details["messages"] == 3

    again = run_arsip(core.settings, "subject", "export", ERIN, "-o", str(tmp_path / "again"))
    assert "ARSIP0000004 to ARSIP0000006" in again.stdout


def test_subject_export_explains_what_it_cannot_do(core: Core, tmp_path: Path) -> None:
    archive(core, simple_message("to@ex.com", to=ERIN))
    out = str(tmp_path / "x")
    nobody = run_arsip(core.settings, "subject", "export", "nobody@ex.com", "-o", out)
    assert nobody.returncode == 1
    assert "no archived message names nobody@ex.com" in nobody.stderr
    assert not (tmp_path / "x").exists()
    bad = run_arsip(core.settings, "subject", "export", "not an address", "-o", out)
    assert bad.returncode == 2 and "is not an address" in bad.stderr
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "other.txt").write_text("someone else's")
    refused = run_arsip(core.settings, "subject", "export", ERIN, "-o", str(busy))
    assert refused.returncode == 1 and "is not empty" in refused.stderr
    for result in (nobody, bad, refused):
        assert "Traceback" not in result.stderr


def test_the_manifest_is_timestamped_by_the_tsa_and_openssl_checks_it(
    core: Core, mail: dict[str, int], tmp_path: Path
) -> None:
    out = tmp_path / "stamped"
    with running_tsa(tmp_path / "tsa") as tsa:
        stamped = replace(core, settings=replace(core.settings, tsa_url=tsa.url, tsa_ca=tsa.ca))
        summary = produce(stamped, request(out), [Collected(mail["plain"])])
    assert summary.stamped
    assert json.loads((out / "production.json").read_text())["manifest_timestamp"] == (
        "manifest.sha256.tsr"
    )
    # What the README tells an outsider to run, with nothing of Arsip.
    checked = subprocess.run(
        ["openssl", "ts", "-verify", "-data", "manifest.sha256", "-in", "manifest.sha256.tsr",
         "-CAfile", str(tsa.ca)],
        cwd=out, capture_output=True, text=True,
    )  # fmt: skip
    assert checked.returncode == 0 and "Verification: OK" in checked.stdout, checked.stderr
    (out / "manifest.sha256").write_text("0" * 64 + "  NATIVES/forged.eml\n")
    forged = subprocess.run(
        ["openssl", "ts", "-verify", "-data", "manifest.sha256", "-in", "manifest.sha256.tsr",
         "-CAfile", str(tsa.ca)],
        cwd=out, capture_output=True, text=True,
    )  # fmt: skip
    assert forged.returncode != 0


def test_without_a_tsa_the_production_says_its_manifest_is_not_timestamped(
    core: Core, mail: dict[str, int], tmp_path: Path
) -> None:
    summary = produce(core, request(tmp_path / "out"), [Collected(mail["plain"])])
    assert not summary.stamped and not (tmp_path / "out" / "manifest.sha256.tsr").exists()
    assert (
        json.loads((tmp_path / "out" / "production.json").read_text())["manifest_timestamp"] is None
    )
