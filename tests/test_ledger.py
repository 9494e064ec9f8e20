"""Tamper evidence: the intake ledger, its daily seals, `arsip verify` and its export."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, update

from archiver import ledger
from archiver.archive import RawMessage
from archiver.core import Core
from archiver.importer import import_paths
from archiver.ledger import (
    GENESIS,
    DaySeal,
    LedgerEntry,
    seal_finished_days,
    unrecorded_messages,
    verify_chain,
)
from archiver.mailfiles import mbox_entry
from archiver.models import Message
from archiver.spool import Incoming
from tests.support import JOURNAL, run_arsip, simple_message

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
MONDAY, WEDNESDAY = date(2026, 3, 2), date(2026, 3, 4)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def at(day: date, hour: int = 9, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def arsip(core: Core, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `arsip` command against the test's database and data directory."""
    return run_arsip(core.settings, *args)


@pytest.fixture
def sealed(core: Core) -> Core:
    """A ledger with mail on Monday (3) and Wednesday (2), none on Tuesday, one today;
    Monday and Wednesday sealed."""
    with core.sessions.begin() as session:
        ledger.record(session, [(at(MONDAY, 9 + n), sha(f"monday {n}")) for n in range(3)])
        ledger.record(session, [(at(WEDNESDAY, 23, 59), sha("wednesday late"))])
        ledger.record(session, [(at(WEDNESDAY, 0, 1), sha("wednesday early"))])
        ledger.record(session, [(datetime.now(UTC), sha("today"))])  # stays unsealed
        assert seal_finished_days(session, NOW) == 2
    return core


def seals(core: Core) -> dict[str, DaySeal]:
    with core.sessions() as session:
        return {seal.day: seal for seal in session.scalars(select(DaySeal))}


def problem_days(core: Core) -> list[str]:
    with core.sessions() as session:
        return [issue.day for issue in verify_chain(session).problems]


def test_finished_days_are_sealed_in_order_each_chained_to_the_one_before(sealed: Core) -> None:
    monday, wednesday = seals(sealed)["2026-03-02"], seals(sealed)["2026-03-04"]
    assert set(seals(sealed)) == {"2026-03-02", "2026-03-04"}  # no mail Tuesday, today open
    assert (monday.count, monday.previous) == (3, GENESIS)
    assert (wednesday.count, wednesday.previous) == (2, monday.digest)
    # The documented byte format, recomputed by hand; the hashes are in the order recorded.
    lines = ["arsip-ledger-seal-v1", monday.digest, "2026-03-04", "2", sha("wednesday late")]
    expected = hashlib.sha256(("\n".join([*lines, sha("wednesday early")]) + "\n").encode())
    assert wednesday.digest == expected.hexdigest()

    with sealed.sessions.begin() as session:
        assert seal_finished_days(session, NOW) == 0  # nothing new to seal
        report = verify_chain(session)
    assert report.ok and not report.warnings
    assert (report.seals, report.entries, report.unsealed) == (2, 5, 1)
    assert report.head == wednesday.digest


def test_a_day_is_sealed_only_once_it_has_been_over_for_a_while(core: Core) -> None:
    with core.sessions.begin() as session:
        ledger.record(session, [(at(MONDAY, 23, 59), sha("just before midnight"))])
        tuesday = at(MONDAY + timedelta(days=1), 0, 0)
        assert seal_finished_days(session, tuesday + timedelta(minutes=2)) == 0
        assert seal_finished_days(session, tuesday + ledger.SEAL_GRACE) == 1


def test_a_changed_ledger_entry_breaks_the_seal_of_its_day(sealed: Core) -> None:
    with sealed.sessions.begin() as session:
        session.execute(
            update(LedgerEntry)
            .where(LedgerEntry.sha256 == sha("monday 1"))
            .values(sha256=sha("something else"))
        )
    assert problem_days(sealed) == ["2026-03-02"]


def test_a_removed_ledger_entry_breaks_the_seal_of_its_day(sealed: Core) -> None:
    with sealed.sessions.begin() as session:
        session.execute(delete(LedgerEntry).where(LedgerEntry.sha256 == sha("wednesday early")))
    assert problem_days(sealed) == ["2026-03-04"]


def test_an_entry_slipped_into_the_middle_of_a_sealed_day_breaks_it(sealed: Core) -> None:
    with sealed.sessions.begin() as session:
        first = session.scalars(
            select(LedgerEntry).where(LedgerEntry.sha256 == sha("monday 0"))
        ).one()
        first.sha256 = sha("forged")  # the first row now says something else...
        ledger.record(session, [(at(MONDAY, 8), sha("monday 0"))])  # ...and this comes last
    assert problem_days(sealed) == ["2026-03-02"]


def test_a_changed_or_removed_seal_is_reported_with_its_day(sealed: Core) -> None:
    with sealed.sessions.begin() as session:
        session.execute(
            update(DaySeal).where(DaySeal.day == "2026-03-02").values(digest=sha("forged"))
        )
    # Monday no longer recomputes, and Wednesday no longer follows it.
    assert problem_days(sealed) == ["2026-03-02", "2026-03-04"]

    with sealed.sessions.begin() as session:
        session.execute(delete(DaySeal).where(DaySeal.day == "2026-03-02"))
        report = verify_chain(session)
    assert [issue.day for issue in report.problems] == ["2026-03-04"]
    assert "does not follow" in report.problems[0].text
    assert [issue.day for issue in report.warnings] == ["..2026-03-03"]  # Monday is unsealed


def test_an_entry_recorded_after_its_day_was_sealed_is_a_warning_not_a_break(
    sealed: Core,
) -> None:
    with sealed.sessions.begin() as session:
        ledger.record(session, [(at(MONDAY, 17), sha("late, from a slow clock"))])
        ledger.record(session, [(at(MONDAY + timedelta(days=1)), sha("on tuesday, late"))])
        seal_finished_days(session, NOW)
        report = verify_chain(session)
    assert report.ok
    assert [(issue.day, issue.text) for issue in report.warnings] == [
        ("2026-03-02", "1 entry recorded after the day was sealed"),
        ("2026-03-03", "1 entry on days that were not sealed while later days were"),
    ]


def test_mail_taken_in_over_smtp_is_in_the_ledger_and_verifies(service) -> None:
    with service.smtp() as client:
        for n in range(3):
            client.sendmail("alice@example.com", [JOURNAL], simple_message(f"led{n}@example.com"))
    service.wait_until_archived()
    core = service.core()
    with core.sessions() as session:
        entries = session.execute(select(LedgerEntry.sha256, LedgerEntry.received_at)).all()
        stored = set(session.scalars(select(Message.sha256)))
    assert {sha256 for sha256, _ in entries} == stored and len(entries) == 3
    assert all(abs(datetime.now(UTC) - when) < timedelta(hours=1) for _, when in entries)

    result = service.run_cli("verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checked 3 messages: 0 not in the ledger" in result.stdout


def test_arsip_verify_seals_finished_days_and_names_a_tampered_one(core: Core) -> None:
    with core.sessions.begin() as session:
        ledger.record(session, [(at(MONDAY), sha("one")), (at(MONDAY, 10), sha("two"))])
    first = arsip(core, "verify")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "checked 1 sealed day (2 entries, 1 sealed now): 0 broken" in first.stdout

    with core.sessions.begin() as session:
        session.execute(delete(LedgerEntry).where(LedgerEntry.sha256 == sha("two")))
    broken = arsip(core, "verify", "--json")
    assert broken.returncode == 1
    report = json.loads(broken.stdout)
    assert not report["ok"]
    assert [problem["day"] for problem in report["ledger"]["problems"]] == ["2026-03-02"]
    assert "Traceback" not in broken.stderr


def test_a_message_the_intake_never_recorded_fails_verification(core: Core) -> None:
    smuggled = simple_message("smuggled@example.com")
    list_copy = simple_message("post@example.com", subject="[team] post")
    with core.sessions.begin() as session:
        core.archive.archive_batch(
            session,
            [
                RawMessage(smuggled, "", [], NOW, "smtp"),
                RawMessage(list_copy, "", [], NOW, "list"),  # recorded as the list archives it
            ],
        )
        checked, unaccounted = unrecorded_messages(session)
    assert checked == 2
    assert unaccounted == [(hashlib.sha256(smuggled).hexdigest(), "smuggled@example.com")]
    result = arsip(core, "verify")
    assert result.returncode == 1
    assert f"unrecorded {hashlib.sha256(smuggled).hexdigest()} <smuggled@example.com>" in (
        result.stdout
    )


def test_an_unwrapped_exchange_journal_report_is_accounted_for(core: Core) -> None:
    original = simple_message("inner@example.com")
    report = (
        b"From: Microsoft Exchange <journal@example.com>\r\nTo: journal@archive.test\r\n"
        b"Subject: x\r\nMessage-ID: <report@example.com>\r\nX-MS-Journal-Report:\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nSender: alice@example.com\r\n"
        b"To: bob@example.com\r\n\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\n"
        + original
        + b"\r\n--b1--\r\n"
    )
    core.spool.commit_batch(
        [
            Incoming(
                "Q1",
                "journal@example.com",
                (JOURNAL,),
                report,
                "smtp",
                "127.0.0.1",
                NOW,
                trusted=True,  # a journal source: only its reports are unwrapped
            )
        ]
    )
    assert core.worker().run_once() == 1
    with core.sessions() as session:
        assert session.scalar(select(Message.sha256)) == hashlib.sha256(original).hexdigest()
        assert unrecorded_messages(session)[1] == []


def test_imported_mail_is_recorded_once(core: Core, tmp_path: Path) -> None:
    mbox = tmp_path / "old.mbox"
    messages = [simple_message(f"old{n}@example.com") for n in range(3)]
    mbox.write_bytes(b"".join(mbox_entry(m, "alice@example.com", NOW) for m in messages))
    import_paths(core, [mbox], progress=False)
    import_paths(core, [mbox], progress=False)  # again: nothing new, nothing recorded
    with core.sessions() as session:
        recorded = list(session.scalars(select(LedgerEntry.sha256).order_by(LedgerEntry.id)))
        assert unrecorded_messages(session)[1] == []
    assert recorded == [hashlib.sha256(m).hexdigest() for m in messages]


def recompute(path: Path) -> tuple[str, dict[str, list[str]]]:
    """A third party's check of an export, with nothing but json and hashlib: every seal
    follows from its hashes and the seal before it. Returns the head and each day's list."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    assert (header["format"], header["version"]) == ("arsip-ledger-chain", 1)
    assert header["seals"] == len(lines) - 1
    previous, days = header["genesis"], {}
    for line in lines[1:]:
        seal = json.loads(line)
        assert seal["previous"] == previous
        assert seal["count"] == len(seal["sha256s"])
        text = "".join(
            f"{part}\n"
            for part in [
                "arsip-ledger-seal-v1",
                seal["previous"],
                seal["day"],
                str(seal["count"]),
                *seal["sha256s"],
            ]
        )
        assert hashlib.sha256(text.encode("ascii")).hexdigest() == seal["digest"]
        previous, days[seal["day"]] = seal["digest"], seal["sha256s"]
    return previous, days


def test_an_exported_chain_can_be_checked_by_a_third_party_alone(
    sealed: Core, tmp_path: Path
) -> None:
    exported = tmp_path / "chain.jsonl"
    result = arsip(sealed, "verify", "--export", str(exported))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"wrote 2 sealed days to {exported}" in result.stdout

    head, days = recompute(exported)
    assert head == seals(sealed)["2026-03-04"].digest
    assert sha("monday 1") in days["2026-03-02"]  # "this message was taken in on Monday"
    assert sha("today") not in [h for hashes in days.values() for h in hashes]  # not sealed

    checked = arsip(sealed, "verify", "--check-export", str(exported))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "2 sealed days, 5 entries: 0 broken" in checked.stdout

    lines = exported.read_text().splitlines()
    monday = json.loads(lines[1])
    monday["sha256s"][0] = sha("forged")
    exported.write_text("\n".join([lines[0], json.dumps(monday), *lines[2:]]) + "\n")
    forged = arsip(sealed, "verify", "--check-export", str(exported))
    assert forged.returncode == 1
    assert "broken seal 2026-03-02" in forged.stdout


def test_verification_counts_the_whole_ledger(sealed: Core) -> None:
    with sealed.sessions() as session:
        total = session.scalar(select(func.count()).select_from(LedgerEntry))
        report = verify_chain(session)
    assert report.entries + report.unsealed == total
