"""Cases from the command line and below the UI: a case is opened with custodians, dates
and queries, places its hold through the retention's own machinery, closes after asking
(releasing its holds), and its scope is exactly the mail a reviewer sees, in search and
in every fetch, on both search backends."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from archiver.access import find_message, thread_messages
from archiver.archive import RawMessage
from archiver.audit import AuditEntry
from archiver.cases.registry import CaseError, create_case, criteria
from archiver.cases.scope import case_messages, case_viewer
from archiver.core import Core
from archiver.retention.models import LegalHold
from archiver.search.service import search
from tests.support import run_arsip
from tests.test_retention import index

CUSTODIAN = "carol@example.com"
WHEN = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def mail(
    message_id: str,
    sender: str,
    to: str,
    subject: str,
    day: datetime = WHEN,
    reply_to: str = "",
    in_reply_to: str = "",
) -> bytes:
    """A small message; `in_reply_to` puts it in a thread."""
    extra = f"In-Reply-To: <{in_reply_to}>\r\n" if in_reply_to else ""
    extra += f"Reply-To: {reply_to}\r\n" if reply_to else ""
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: {day.strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\nMessage-ID: <{message_id}>\r\n"
        f"{extra}\r\nA few words about {subject}.\r\n"
    ).encode()


def archive(core: Core, *messages: bytes | tuple[bytes, list[str]]) -> None:
    """Archive `messages` as imported mail (a tuple adds envelope recipients) and index."""
    raws = []
    for item in messages:
        data, envelope = item if isinstance(item, tuple) else (item, [])
        raws.append(RawMessage(data, "", envelope, WHEN, "import"))
    with core.sessions.begin() as session:
        core.archive.archive_batch(session, raws)
    index(core)


@pytest.fixture
def case_mail(core: Core) -> Core:
    """Mail in and around a case about a merger, custodian carol, March 2026 onwards."""
    archive(
        core,
        mail("in@x", CUSTODIAN, "bob@example.com", "merger terms"),
        mail("reply@x", "bob@example.com", CUSTODIAN, "Re: merger terms", in_reply_to="in@x"),
        mail("aside@x", "bob@example.com", "dave@example.com", "Re: merger", in_reply_to="in@x"),
        mail("lunch@x", CUSTODIAN, "bob@example.com", "lunch on friday"),
        mail("other@x", "dave@example.com", "bob@example.com", "merger rumours"),
        mail(
            "early@x",
            CUSTODIAN,
            "bob@example.com",
            "merger idea",
            day=datetime(2025, 6, 1, tzinfo=UTC),
        ),
        mail("replyto@x", "eve@example.com", "bob@example.com", "merger", reply_to=CUSTODIAN),
        (mail("bcc@x", "frank@example.com", "bob@example.com", "merger deal"), [CUSTODIAN]),
    )
    return core


def open_case(core: Core, name: str = "acme", **covers) -> None:
    covers = {"custodians": [CUSTODIAN], "queries": ["merger"], "since": date(2026, 1, 1)} | covers
    with core.sessions.begin() as session:
        create_case(session, "cli:test", name, "ACME v. Us", criteria(**covers))


def in_case(core: Core, name: str = "acme") -> set[str]:
    """The Message-IDs a search inside the case finds, all of them."""
    from archiver.cases.registry import find_case

    backend = core.search_backend()
    try:
        with core.sessions() as session:
            viewer = case_viewer(backend, find_case(session, name))
            page = search(session, backend, "", viewer, limit=100, store=core.store)
        return {found.message_id for found in page.results}
    finally:
        backend.close()


def actions(core: Core, prefix: str) -> list[tuple[str, str, dict]]:
    with core.sessions() as session:
        return [
            (entry.action, entry.target, entry.details)
            for entry in session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action.like(prefix + "%"))
                .order_by(AuditEntry.seq)
            )
        ]


def test_a_case_covers_a_custodians_mail_in_its_dates_matching_its_queries(case_mail: Core) -> None:
    open_case(case_mail)
    # Carol sent or received it (envelope included), in 2026, about the merger. A Reply-To
    # naming her does not make mail hers, as for her own account.
    assert in_case(case_mail) == {"in@x", "reply@x", "bcc@x"}


def test_several_queries_are_or_ed(case_mail: Core) -> None:
    open_case(case_mail, queries=["merger", "lunch"])
    assert in_case(case_mail) == {"in@x", "reply@x", "bcc@x", "lunch@x"}


def test_a_case_viewer_sees_the_scope_in_every_fetch_and_nothing_else(case_mail: Core) -> None:
    open_case(case_mail)
    from archiver.cases.registry import find_case

    backend = case_mail.search_backend()
    try:
        with case_mail.sessions() as session:
            case = find_case(session, "acme")
            viewer = case_viewer(backend, case)
            assert find_message(session, viewer, "in@x") is not None
            assert find_message(session, viewer, "<bcc@x>") is not None
            for outside in ("lunch@x", "other@x", "early@x", "replyto@x", "aside@x"):
                assert find_message(session, viewer, outside) is None
            thread = [m.message_id for m in thread_messages(session, viewer, _thread(session))]
            assert thread == ["in@x", "reply@x"]
            page = search(session, backend, "merger", viewer, limit=100, store=case_mail.store)
            assert page.total == 3 and sum(page.facets["year"].values()) == 3
            ordered = list(case_messages(session, backend, case))
        assert len(ordered) == 3
    finally:
        backend.close()


def _thread(session) -> str:
    from archiver.models import Message

    return session.scalar(select(Message.thread_id).where(Message.message_id == "in@x"))


def test_a_case_needs_custodians_or_queries_and_readable_criteria() -> None:
    with pytest.raises(CaseError, match="custodians, queries or both"):
        criteria()
    with pytest.raises(CaseError, match="never closed"):
        criteria(queries=['subject:"open'])
    with pytest.raises(CaseError, match="not an email address"):
        criteria(custodians=["carol"])
    with pytest.raises(CaseError, match="end date is before"):
        criteria(custodians=[CUSTODIAN], since=date(2026, 5, 1), until=date(2026, 1, 1))


def test_the_command_line_opens_holds_shows_and_closes_a_case(case_mail: Core) -> None:
    settings = case_mail.settings
    made = run_arsip(
        settings, "case", "create", "acme", "--description", "ACME v. Us",
        "--custodian", "Carol@Example.com", "--query", "merger", "--since", "2026-01-01",
        process=True,  # the console script, once
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert run_arsip(settings, "case", "hold", "acme").stdout.strip() == (
        "hold case acme placed for case acme"
    )
    again = run_arsip(settings, "case", "hold", "acme")
    assert again.returncode == 0 and "in place for case acme already" in again.stdout
    shown = run_arsip(settings, "case", "show", "acme")
    assert "custodian carol@example.com" in shown.stdout
    assert "covers 3 messages now" in shown.stdout
    # A hold counts a custodian in any role, Reply-To too: it keeps more, never less.
    assert "hold case acme: active, keeps 4 messages" in shown.stdout
    listed = run_arsip(settings, "case", "list")
    assert listed.stdout.startswith("acme\topen\tACME v. Us")

    refused = run_arsip(settings, "case", "close", "acme", stdin="n\n")
    assert refused.returncode == 1 and "Close case acme and release case acme?" in refused.stdout
    closed = run_arsip(settings, "case", "close", "acme", "--yes")
    assert closed.returncode == 0, closed.stderr
    assert closed.stdout.splitlines() == ["hold case acme released", "case acme closed"]
    with case_mail.sessions() as session:
        hold = session.scalar(select(LegalHold).where(LegalHold.name == "case acme"))
        assert hold is not None and hold.released_at is not None
    assert [a for a, _, _ in actions(case_mail, "case.")] == [
        "case.create",
        "case.hold",
        "case.close",
    ]
    assert [(a, t) for a, t, _ in actions(case_mail, "hold.")] == [
        ("hold.add", "case acme"),
        ("hold.release", "case acme"),
    ]
    assert "closed already" in run_arsip(settings, "case", "close", "acme", "--yes").stderr


def test_bad_input_gets_one_line_and_a_status(case_mail: Core) -> None:
    settings = case_mail.settings
    for args, said in (
        (("case", "create", "empty"), "a case needs custodians, queries or both"),
        (("case", "create", "bad name", "--query", "x"), "a case's name is 1 to 64"),
        (("case", "create", "q", "--query", "(merger"), "query '(merger'"),
        (("case", "show", "missing"), "no case is named 'missing'"),
        (("case", "hold", "missing"), "no case is named 'missing'"),
        (("case", "reviewer", "add", "missing", "a@b.c"), "no case is named 'missing'"),
    ):
        answer = run_arsip(settings, *args)
        assert answer.returncode == 1, args
        assert said in answer.stderr and "Traceback" not in answer.stderr
    dated = run_arsip(settings, "case", "create", "d", "--query", "x", "--since", "soon")
    assert dated.returncode == 2 and "Traceback" not in dated.stderr


def test_reviewers_are_added_and_removed_audited(case_mail: Core) -> None:
    from archiver.accounts import add_user

    with case_mail.sessions.begin() as session:
        add_user(session, "rev@example.org", "user")
    open_case(case_mail)
    settings = case_mail.settings
    assert run_arsip(settings, "case", "reviewer", "add", "acme", "rev@example.org").returncode == 0
    again = run_arsip(settings, "case", "reviewer", "add", "acme", "rev@example.org")
    assert "already" in again.stdout
    assert "rev@example.org" in run_arsip(settings, "case", "show", "acme").stdout
    nobody = run_arsip(settings, "case", "reviewer", "add", "acme", "nobody@example.org")
    assert nobody.returncode == 1 and "no account has the email" in nobody.stderr
    assert (
        run_arsip(settings, "case", "reviewer", "remove", "acme", "rev@example.org").returncode == 0
    )
    assert [(a, d["reviewer"]) for a, _, d in actions(case_mail, "case.reviewer")] == [
        ("case.reviewer.add", "rev@example.org"),
        ("case.reviewer.remove", "rev@example.org"),
    ]


def _load_rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "DATA" / "loadfile.csv").open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_case_exports_its_mail_per_custodian_numbering_on(
    case_mail: Core, tmp_path: Path
) -> None:
    settings = case_mail.settings
    open_case(case_mail, custodians=[CUSTODIAN, "bob@example.com"])
    first = run_arsip(
        settings, "case", "export", "acme", "-o", str(tmp_path / "one"),
        "--prefix", "ACME", "--dedupe", "custodian",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    rows = _load_rows(tmp_path / "one")
    # A message is produced once for each custodian whose own mail it is; Reply-To grants
    # nothing, so carol is not a custodian of replyto@x.
    both, bob = ("bob@example.com", CUSTODIAN), ("bob@example.com",)
    collected = {"in@x": both, "reply@x": both, "aside@x": bob, "other@x": bob}
    collected |= {"replyto@x": bob, "bcc@x": both}
    assert sorted((row["MessageID"], row["Custodian"]) for row in rows) == sorted(
        (f"<{message_id}>", custodian)
        for message_id, custodians in collected.items()
        for custodian in custodians
    )
    assert rows[0]["BegBates"] == "ACME0000001"

    second = run_arsip(
        settings, "case", "export", "acme", "-o", str(tmp_path / "two"), "--dedupe", "global"
    )
    assert second.returncode == 0, second.stderr
    again = _load_rows(tmp_path / "two")
    assert {row["MessageID"]: row["Custodian"] for row in again} == {
        f"<{message_id}>": "; ".join(custodians) for message_id, custodians in collected.items()
    }
    assert again[0]["BegBates"] == "ACME0000010"  # the series runs on, its prefix kept
    exports = actions(case_mail, "case.export")
    assert [(target, details["first"]) for _, target, details in exports] == [
        ("acme", "ACME0000001"),
        ("acme", "ACME0000010"),
    ]


def test_a_case_with_no_mail_yet_exports_nothing(core: Core, tmp_path: Path) -> None:
    open_case(core)
    refused = run_arsip(core.settings, "case", "export", "acme", "-o", str(tmp_path / "out"))
    assert refused.returncode == 1
    assert "covers no archived message yet" in refused.stderr
    assert not (tmp_path / "out").exists()
    unknown = run_arsip(core.settings, "case", "export", "nope", "-o", str(tmp_path / "out"))
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
