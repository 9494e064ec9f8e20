"""Retention and legal holds: what goes, what stays, and that a hold always wins.

Each test archives and indexes real messages on SQLite and PostgreSQL, runs the sweep the
service runs, and looks where a user would: the database, the blob store, search, and
the audit log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from sqlalchemy import func, select, text

from archiver import audit
from archiver.archive import RawMessage
from archiver.core import Core
from archiver.models import Blob, IndexQueueEntry, Message, MessageAddress
from archiver.retention.models import BlobRemoval
from archiver.retention.periods import Period, PeriodError
from archiver.retention.rules import (
    RuleError,
    add_hold,
    add_policy,
    release_hold,
    set_paused,
)
from archiver.retention.sweep import Sweeper, explain
from archiver.search.indexer import Indexer
from archiver.search.service import search
from archiver.search.viewer import Viewer
from archiver.verify import verify_store
from tests.support import ROOT, run_arsip

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
OPERATOR = "cli:test"


def mail(message_id: str, when: datetime, sender: str = "alice@example.com", **headers) -> bytes:
    """A small message dated `when`."""
    extra = "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
    return (
        f"From: {sender}\r\nTo: bob@example.com\r\nSubject: report {message_id}\r\n"
        f"Date: {format_datetime(when)}\r\nMessage-ID: <{message_id}>\r\n{extra}"
        f"\r\nThe numbers for {message_id}.\r\n"
    ).encode()


def archive(core: Core, *messages: bytes, list_id: str | None = None) -> None:
    """Archive `messages` (imported, filed into the list `list_id` if given) and index them,
    as the worker would."""
    with core.sessions.begin() as session:
        core.archive.archive_batch(
            session,
            [RawMessage(data, "", [], NOW, "import", list_id=list_id) for data in messages],
        )
    index(core)


def index(core: Core) -> None:
    backend = core.search_backend()
    try:
        while Indexer(core.sessions, backend, core.store).run_once():
            pass
    finally:
        backend.close()


def sweep(core: Core, dry_run: bool = False, **options):
    backend = core.search_backend()
    try:
        return Sweeper(core.sessions, core.store, backend, actor=OPERATOR, **options).run(
            dry_run=dry_run, now=NOW
        )
    finally:
        backend.close()


def archived(core: Core) -> set[str]:
    with core.sessions() as session:
        return set(session.scalars(select(Message.message_id)))


def searchable(core: Core, query: str) -> set[str]:
    backend = core.search_backend()
    try:
        with core.sessions() as session:
            page = search(
                session, backend, query, Viewer.administrator(), limit=100, store=core.store
            )
        return {found.message_id for found in page.results}
    finally:
        backend.close()


def years_ago(years: float) -> datetime:
    return NOW - timedelta(days=round(365.25 * years))


def test_periods_read_as_people_write_them() -> None:
    assert Period.parse("90d").end(NOW) == NOW + timedelta(days=90)
    assert Period.parse("7 years").end(datetime(2020, 2, 29, tzinfo=UTC)) == datetime(
        2027, 3, 1, tzinfo=UTC
    )
    for bad in ("", "7", "7x", "0d", "300y", "-1d"):
        with pytest.raises(PeriodError):
            Period.parse(bad)


def test_a_held_message_survives_a_sweep_that_deletes_its_neighbours(core: Core) -> None:
    archive(
        core,
        mail("old-1@x", years_ago(3)),
        mail("old-2@x", years_ago(3), sender="carol@example.com"),
        mail("old-3@x", years_ago(2)),
        mail("merger@x", years_ago(2), X_Topic="merger"),
        mail("new-1@x", years_ago(0.1)),
    )
    with core.sessions.begin() as session:
        add_policy(session, OPERATOR, "everything", "1y")
        add_hold(session, OPERATOR, "carol", "Case 12", custodians=["Carol@Example.com"])
        add_hold(session, OPERATOR, "merger", "Case 13", query="numbers merger@x")
    with core.sessions() as session:
        doomed_hashes = set(
            session.scalars(select(Message.sha256).where(Message.message_id.in_(["old-1@x"])))
        )

    report = sweep(core)

    assert report.deleted == 2 and report.kept_by_holds == 2
    assert report.per_hold == {"carol": 1, "merger": 1}
    assert archived(core) == {"old-2@x", "merger@x", "new-1@x"}
    # Gone from the store and the database, rows that hang off the message included ...
    for sha256 in doomed_hashes:
        assert not core.store.exists(sha256)
    with core.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Blob)) == 3
        orphans = session.scalar(
            select(func.count())
            .select_from(MessageAddress)
            .where(~MessageAddress.message_pk.in_(select(Message.id)))
        )
        assert orphans == 0
        assert session.scalar(select(func.count()).select_from(BlobRemoval)) == 0
    # ... and from search once the indexer has taken the deletions.
    index(core)
    assert searchable(core, "numbers") == {"old-2@x", "merger@x", "new-1@x"}
    assert verify_store(core).ok
    # Every deletion is audited with its id and hash, and the chain holds.
    with core.sessions() as session:
        deletions = session.scalars(
            select(audit.AuditEntry).where(audit.AuditEntry.action == "message.delete")
        ).all()
        assert {entry.target for entry in deletions} == {"old-1@x", "old-3@x"}
        assert all(entry.actor == OPERATOR and entry.details["sha256"] for entry in deletions)
        assert audit.verify(session) == []


def test_the_longest_matching_policy_wins_and_unmatched_mail_is_kept(core: Core) -> None:
    archive(core, mail("chat@x", years_ago(3)))
    archive(
        core,
        mail("legal@x", years_ago(3), List_Id="<legal.example.org>"),
        mail("older-than-all@x", years_ago(9), List_Id="<legal.example.org>"),
        list_id="legal.example.org",
    )
    with core.sessions.begin() as session:
        add_policy(session, OPERATOR, "short", "2y", scope="numbers")
        add_policy(session, OPERATOR, "legal", "7y", scope="list:legal.example.org")
    assert sweep(core).deleted == 2
    assert archived(core) == {"legal@x"}

    with core.sessions.begin() as session:
        for name in ("short", "legal"):
            from archiver.retention.rules import remove_policy

            remove_policy(session, OPERATOR, name)
    archive(core, mail("ancient@x", years_ago(30)))
    assert sweep(core).deleted == 0  # no policy: kept forever
    assert "ancient@x" in archived(core)


def test_a_dry_run_counts_per_policy_and_deletes_nothing(core: Core) -> None:
    archive(core, *(mail(f"m{n}@x", years_ago(2)) for n in range(5)))
    with core.sessions.begin() as session:
        add_policy(session, OPERATOR, "everything", "1y")
        add_policy(session, OPERATOR, "numbers", "18 months".replace(" months", "0d"), "numbers")
    report = sweep(core, dry_run=True)
    assert report.deleted == 5 and report.per_policy == {"everything": 5, "numbers": 5}
    assert len(archived(core)) == 5


def test_mail_waiting_for_the_indexer_is_not_swept(core: Core) -> None:
    with core.sessions.begin() as session:
        core.archive.archive_batch(
            session, [RawMessage(mail("late@x", years_ago(5)), "", [], NOW, "import")]
        )
        add_policy(session, OPERATOR, "everything", "1y")
    report = sweep(core)
    assert report.deleted == 0 and report.waiting_for_index == 1
    index(core)
    assert sweep(core).deleted == 1


def test_a_hold_covers_mail_that_arrives_later_until_it_is_released(core: Core) -> None:
    with core.sessions.begin() as session:
        add_policy(session, OPERATOR, "everything", "1y")
        add_hold(
            session,
            OPERATOR,
            "q3",
            "Case 7",
            custodians=["alice@example.com"],
            since=datetime(2021, 1, 1, tzinfo=UTC),
            until=datetime(2021, 3, 31, tzinfo=UTC),
        )
    archive(
        core,
        mail("in-range@x", datetime(2021, 3, 31, 18, 0, tzinfo=UTC)),  # the end day counts
        mail("after@x", datetime(2021, 4, 1, 9, 0, tzinfo=UTC)),
        mail("other@x", datetime(2021, 2, 1, tzinfo=UTC), sender="dave@example.com"),
    )
    assert sweep(core).deleted == 2
    assert archived(core) == {"in-range@x"}
    with core.sessions.begin() as session:
        release_hold(session, OPERATOR, "q3")
        with pytest.raises(RuleError):
            release_hold(session, OPERATOR, "q3")
    assert sweep(core).deleted == 1


def test_a_blob_shared_with_a_kept_message_stays(core: Core) -> None:
    archive(core, mail("shared@x", years_ago(3)))
    with core.sessions.begin() as session:
        original = session.scalar(select(Message).where(Message.message_id == "shared@x"))
        twin = Message(
            **{
                column.key: getattr(original, column.key)
                for column in Message.__table__.columns
                if column.key != "id"
            }
        )
        twin.dedupe_key = "0" * 64
        twin.message_id = "twin@x"
        twin.date = twin.retention_date = NOW
        session.add(twin)
        sha256 = original.sha256
        add_policy(session, OPERATOR, "everything", "1y")
    index(core)
    assert sweep(core).deleted == 1
    assert archived(core) == {"twin@x"}
    assert core.store.exists(sha256)
    assert verify_store(core).ok


def test_pausing_stops_sweeps_until_resumed(core: Core) -> None:
    archive(core, mail("old@x", years_ago(3)))
    with core.sessions.begin() as session:
        add_policy(session, OPERATOR, "everything", "1y")
        set_paused(session, OPERATOR, True)
    report = sweep(core)
    assert report.paused and report.deleted == 0
    with core.sessions.begin() as session:
        set_paused(session, OPERATOR, False)
    assert sweep(core).deleted == 1


def test_a_crash_between_commit_and_unlink_is_finished_by_the_next_sweep(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive(core, mail("old@x", years_ago(3)), mail("new@x", NOW))
    with core.sessions.begin() as session:
        add_policy(session, OPERATOR, "everything", "1y")
        sha256 = session.scalar(select(Message.sha256).where(Message.message_id == "old@x"))

    def power_cut(_hashes) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(core.store, "delete_many", power_cut)
        with pytest.raises(KeyboardInterrupt):
            sweep(core)
    assert archived(core) == {"new@x"}
    assert core.store.exists(sha256)  # the file outlived its row, noted for removal
    with core.sessions() as session:
        assert session.scalars(select(BlobRemoval.sha256)).all() == [sha256]
    sweep(core)
    assert not core.store.exists(sha256)
    assert verify_store(core).ok


def test_a_sweep_killed_half_way_leaves_a_consistent_archive(core: Core) -> None:
    """A real SIGKILL to a process sweeping one message per transaction."""
    archive(core, *(mail(f"m{n}@x", years_ago(3)) for n in range(60)))
    with core.sessions.begin() as session:
        add_policy(session, OPERATOR, "everything", "1y")
    script = (
        "import sys\n"
        "from archiver.config import load_settings\n"
        "from archiver.core import build_core\n"
        "from archiver.retention.sweep import Sweeper\n"
        "core = build_core(load_settings())\n"
        "Sweeper(core.sessions, core.store, core.search_backend(), batch_size=1).run()\n"
    )
    env = {
        **os.environ,
        "ARSIP_DATA_DIR": str(core.settings.data_dir),
        "ARSIP_DATABASE_URL": core.settings.database_url,
    }
    process = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while len(archived(core)) > 40 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    left = archived(core)
    assert 0 < len(left) < 60, "the sweep should have been killed part-way"
    assert_consistent(core)
    assert sweep(core).deleted == len(left)
    assert archived(core) == set()
    assert_consistent(core)


def assert_consistent(core: Core) -> None:
    """Every message has its blob row and file; no row hangs off a deleted message; the
    audit chain holds."""
    with core.sessions() as session:
        for sha256 in session.scalars(select(Message.sha256)):
            assert session.get(Blob, sha256) is not None
            assert core.store.exists(sha256)
        dangling = session.execute(
            text(
                "SELECT count(*) FROM message_addresses a "
                "LEFT JOIN messages m ON m.id = a.message_pk WHERE m.id IS NULL"
            )
        ).scalar()
        assert dangling == 0
        assert audit.verify(session) == []
    report = verify_store(core)
    assert report.ok, report


def test_explain_names_policies_holds_and_the_date(core: Core) -> None:
    archive(core, mail("q@x", datetime(2020, 5, 1, tzinfo=UTC)))
    with core.sessions.begin() as session:
        add_policy(session, OPERATOR, "everything", "1y")
        add_policy(session, OPERATOR, "reports", "7y", scope="subject:report")
    backend = core.search_backend()
    try:
        with core.sessions() as session:
            [found] = explain(session, backend, "<q@x>", now=NOW)
            assert [name for name, _, _ in found.policies] == ["everything", "reports"]
            assert found.deletable_from == datetime(2027, 5, 1, tzinfo=UTC)
        with core.sessions.begin() as session:
            add_hold(session, OPERATOR, "all-q", "Case 9", query="msgid:q@x")
        with core.sessions() as session:
            [found] = explain(session, backend, "q@x", now=NOW)
            assert found.holds == ["all-q"] and found.deletable_from is None
            assert explain(session, backend, "missing@x", now=NOW) == []
    finally:
        backend.close()


def test_the_command_line_manages_policies_and_holds(core: Core) -> None:
    archive(core, mail("cli-old@x", years_ago(3)), mail("cli-held@x", years_ago(3)))
    settings = core.settings

    def arsip(*args: str) -> subprocess.CompletedProcess[str]:
        return run_arsip(settings, *args)

    added = run_arsip(settings, "retention", "add", "--name", "all", "--keep", "1y", process=True)
    assert added.returncode == 0  # the console script, once
    refused = arsip("retention", "add", "--name", "x", "--keep", "soon")
    assert refused.returncode == 1 and "90d or 7y" in refused.stderr
    assert "Traceback" not in refused.stderr
    placed = arsip(
        "hold", "add", "--name", "h", "--reason", "Case 1", "--query", "msgid:cli-held@x"
    )
    assert placed.returncode == 0, placed.stderr
    listed = json.loads(arsip("retention", "list", "--json").stdout)
    assert [policy["name"] for policy in listed["policies"]] == ["all"]
    assert json.loads(arsip("hold", "list", "--json").stdout)[0]["query"] == "msgid:cli-held@x"

    dry = arsip("retention", "apply", "--dry-run")
    assert "policy all: would delete 1 message" in dry.stdout
    assert archived(core) == {"cli-old@x", "cli-held@x"}
    explained = arsip("retention", "explain", "cli-held@x")
    assert "hold h covers it" in explained.stdout
    assert arsip("retention", "apply").returncode == 0
    assert archived(core) == {"cli-held@x"}
    assert arsip("hold", "release", "h").returncode == 0
    assert arsip("hold", "release", "h").returncode == 1
    assert arsip("retention", "apply").returncode == 0
    assert archived(core) == set()
    with core.sessions() as session:
        actions = [
            entry.action
            for entry in session.scalars(select(audit.AuditEntry).order_by(audit.AuditEntry.seq))
        ]
    assert actions == [
        "policy.add",
        "hold.add",
        "message.delete",
        "hold.release",
        "message.delete",
    ]
    with core.sessions() as session:
        assert session.scalar(select(func.count()).select_from(IndexQueueEntry)) == 2
