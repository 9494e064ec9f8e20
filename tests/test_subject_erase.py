"""A data subject asks to be erased: their mail goes where the law lets it go, stays (and
says why) where a legal hold or a retention policy keeps it, and goes later, once the hold
is released or the period ends, with every step in the audit trail. Nothing of an erased
message is left where a reader could find it: search, the thread page, a list's digest.

Each test archives and indexes real messages on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from archiver import audit
from archiver.accounts import add_user
from archiver.archive import RawMessage
from archiver.cases.holds import place_case_hold
from archiver.cases.registry import create_case, criteria
from archiver.core import Core
from archiver.erasure.eraser import Eraser, ErasureError, ErasureReport
from archiver.erasure.models import ErasureRequest
from archiver.erasure.verdicts import Kind, Verdict
from archiver.models import Blob, Message
from archiver.retention.rules import add_hold, add_policy, release_hold
from archiver.upkeep import sweep_now
from lists.digesting import send_digest
from lists.models import Delivery as DeliveryMode
from lists.models import DigestEntry, MailingList, Member, OutboxMessage
from lists.pipeline import run
from lists.pipeline.base import Delivery
from tests.support import run_arsip
from tests.test_accounts import PASSWORD, log_in
from tests.test_retention import NOW, archive, archived, index, mail, searchable, years_ago
from web import create_app
from web.search import BACKEND_KEY

OPERATOR = "cli:dpo"
DANA = "dana@example.com"


def erase(core: Core, address: str = DANA, **options) -> tuple[ErasureReport, list[Verdict]]:
    """Ask for `address`'s erasure as the operator, as of NOW unless told."""
    said: list[Verdict] = []
    options.setdefault("now", NOW)
    backend = core.search_backend()
    try:
        report = Eraser(core.sessions, core.store, backend, actor=OPERATOR).request(
            address, on_verdict=said.append, **options
        )
    finally:
        backend.close()
    index(core)
    return report, said


def scheduled_pass(core: Core, **options) -> list[ErasureReport]:
    """The scheduler's pass over open requests."""
    backend = core.search_backend()
    try:
        reports = Eraser(core.sessions, core.store, backend).run_open(**options)
    finally:
        backend.close()
    index(core)
    return reports


def audited(core: Core, action: str) -> list[audit.AuditEntry]:
    with core.sessions() as session:
        return list(
            session.scalars(
                select(audit.AuditEntry)
                .where(audit.AuditEntry.action == action)
                .order_by(audit.AuditEntry.seq)
            )
        )


def erasure_requests(core: Core) -> list[ErasureRequest]:
    with core.sessions() as session:
        return list(session.scalars(select(ErasureRequest).order_by(ErasureRequest.id)))


def journal_copy(data: bytes, envelope_from: str = "", *envelope_to: str) -> RawMessage:
    """A copy the operator imported: envelope and Bcc recipients are recorded."""
    return RawMessage(data, envelope_from, list(envelope_to), NOW, "import")


def test_every_role_of_the_address_is_erased_and_other_peoples_mail_stays(core: Core) -> None:
    recent = years_ago(0.2)
    with core.sessions.begin() as session:
        core.archive.archive_batch(
            session,
            [
                journal_copy(mail("from@x", recent, sender="Dana <Dana@Example.COM>")),
                journal_copy(mail("to@x", recent, sender="bob@example.com", To=DANA)),
                journal_copy(mail("cc@x", recent, Cc="DANA@example.com")),
                journal_copy(mail("bcc@x", recent, Bcc=DANA)),
                journal_copy(mail("reply@x", recent, Reply_To=DANA)),
                journal_copy(mail("env-from@x", recent), "Dana@example.com", "bob@example.com"),
                journal_copy(mail("env-to@x", recent), "alice@example.com", "dana@EXAMPLE.com"),
                journal_copy(mail("other@x", recent)),
                # From a client no one vouched for: no roles recorded, but its From is Dana.
                RawMessage(
                    mail("smtp@x", recent, sender=DANA), DANA, ["bob@example.com"], NOW, "smtp"
                ),
                journal_copy(mail("danacopy@x", recent, sender="dana@example.org")),
            ],
        )
    index(core)
    with core.sessions() as session:
        blobs = set(session.scalars(select(Blob.sha256)))

    report, said = erase(core, "  Dana@Example.com ")

    assert archived(core) == {"other@x", "danacopy@x"}
    assert report.erased == 8 and report.done and report.kept == 0
    assert {verdict.kind for verdict in said} == {Kind.ERASE}
    assert archived(core) == {"other@x", "danacopy@x"}
    assert searchable(core, "numbers") == {"other@x", "danacopy@x"}
    with core.sessions() as session:
        assert len(set(session.scalars(select(Blob.sha256)))) == len(blobs) - 8
    (request,) = erasure_requests(core)
    assert (request.address, request.status, request.erased) == (DANA, "done", 8)
    # The trail: the request with what it found, each message by its Message-ID, the end.
    (asked,) = audited(core, "subject.erase.request")
    assert asked.target == DANA and asked.actor == OPERATOR
    assert asked.details["counts"] == {"erase": 8, "held": 0, "retained": 0, "waiting": 0}
    gone = audited(core, "subject.erase")
    assert {entry.target for entry in gone} == {
        "from@x",
        "to@x",
        "cc@x",
        "bcc@x",
        "reply@x",
        "env-from@x",
        "env-to@x",
        "smtp@x",
    }
    assert all(entry.details["sha256"] in blobs for entry in gone)
    assert {entry.details["request"] for entry in gone} == {request.id}
    assert [entry.details["erased"] for entry in audited(core, "subject.erase.done")] == [8]
    assert audited(core, "message.delete") == []


def note(message_id: str, when: datetime, words: str, sender: str = DANA) -> bytes:
    """A message from `sender` whose body says `words` (what holds and policies look for)."""
    return (
        f"From: {sender}\r\nTo: carol@example.com\r\nSubject: note {message_id}\r\n"
        f"Date: {format_datetime(when)}\r\nMessage-ID: <{message_id}>\r\n\r\n{words}\r\n"
    ).encode()


@pytest.fixture
def kept_mail(core: Core) -> Core:
    """Dana's mail: one message under a legal hold, one a retention policy keeps for half a
    year yet, one whose period has run out and one no policy matches; Bob's beside it."""
    archive(
        core,
        note("held@x", years_ago(3), "the merger talks"),
        note("young@x", years_ago(0.5), "the ledger for spring"),
        note("expired@x", years_ago(3), "the ledger for autumn"),
        note("old@x", years_ago(3), "lunch on friday"),
        note("bobs@x", years_ago(0.1), "lunch on monday", sender="bob@example.com"),
    )
    with core.sessions.begin() as session:
        add_policy(session, OPERATOR, "finance", "1y", scope="ledger")
        add_hold(session, OPERATOR, "merger", "Case 12", query="merger")
    return core


def test_held_and_retained_mail_is_kept_with_its_reason_and_erased_once_it_may_go(
    kept_mail: Core,
) -> None:
    core = kept_mail
    report, said = erase(core)

    verdicts = {verdict.message_id: verdict for verdict in said}
    assert verdicts["old@x"].kind is verdicts["expired@x"].kind is Kind.ERASE
    assert verdicts["held@x"].reason() == "held by hold merger"
    young_until = (years_ago(0.5) + timedelta(days=365)).date().isoformat()
    assert verdicts["young@x"].reason() == f"within retention policy finance until {young_until}"
    assert report.erased == 2 and not report.done
    assert archived(core) == {"held@x", "young@x", "bobs@x"}
    (request,) = erasure_requests(core)
    assert (request.status, request.held, request.retained) == ("open", 1, 1)

    # Asking again runs the same request: still one open request, and the same date.
    again, _ = erase(core, now=NOW + timedelta(days=1))
    assert again.request == request.id and again.requested_at == request.requested_at
    assert len(erasure_requests(core)) == 1
    assert len(audited(core, "subject.erase.request")) == 2

    # Once the hold is released, the scheduled pass erases what it kept.
    with core.sessions.begin() as session:
        release_hold(session, OPERATOR, "merger")
    (first,) = scheduled_pass(core, now=NOW + timedelta(days=2))
    assert (first.erased, first.done) == (1, False)
    assert archived(core) == {"young@x", "bobs@x"}

    # And once the retention period has ended, the rest goes, and the request is done.
    (last,) = scheduled_pass(core, now=NOW + timedelta(days=200))
    assert (last.erased, last.done) == (1, True)
    assert archived(core) == {"bobs@x"}
    (request,) = erasure_requests(core)
    assert (request.status, request.erased, request.held, request.retained) == ("done", 4, 0, 0)
    by_pass = [entry.actor for entry in audited(core, "subject.erase")]
    assert by_pass == [OPERATOR, OPERATOR, audit.SYSTEM, audit.SYSTEM]
    assert [entry.actor for entry in audited(core, "subject.erase.done")] == [audit.SYSTEM]
    assert scheduled_pass(core, now=NOW + timedelta(days=300)) == []


def test_the_service_pass_after_the_retention_sweep_erases_what_a_released_hold_kept(
    kept_mail: Core,
) -> None:
    core = kept_mail
    erase(core)
    with core.sessions.begin() as session:
        release_hold(session, OPERATOR, "merger")

    sweep_now(core)  # the nightly job: the sweep, then the open requests
    index(core)

    assert archived(core) == {"young@x", "bobs@x"}
    (request,) = erasure_requests(core)
    assert (request.status, request.erased, request.retained) == ("open", 3, 1)


def test_a_dry_run_says_the_same_and_changes_nothing(kept_mail: Core) -> None:
    core = kept_mail
    report, said = erase(core, dry_run=True)

    assert report.counts == {Kind.ERASE: 2, Kind.HELD: 1, Kind.RETAINED: 1}
    assert report.request is None and report.erased == 0
    assert {verdict.message_id: verdict.kind for verdict in said} == {
        "old@x": Kind.ERASE,
        "expired@x": Kind.ERASE,
        "held@x": Kind.HELD,
        "young@x": Kind.RETAINED,
    }
    assert archived(core) == {"held@x", "young@x", "expired@x", "old@x", "bobs@x"}
    assert erasure_requests(core) == []
    assert audited(core, "subject.erase") == audited(core, "subject.erase.request") == []
    # Reading someone's mail list is recorded, as any preview of a deletion is.
    (preview,) = audited(core, "subject.erase.preview")
    assert preview.target == DANA and preview.details["counts"]["held"] == 1


def test_mail_archived_after_the_request_is_not_covered(kept_mail: Core) -> None:
    core = kept_mail
    erase(core)
    later = RawMessage(note("later@x", NOW, "hello"), "", [], NOW + timedelta(days=1), "import")
    with core.sessions.begin() as session:
        core.archive.archive_batch(session, [later])
    index(core)

    (report,) = scheduled_pass(core, now=NOW + timedelta(days=2))

    assert report.later == 1
    assert "later@x" in archived(core)


def test_mail_waiting_for_the_indexer_is_kept_until_a_hold_query_can_judge_it(
    kept_mail: Core,
) -> None:
    core = kept_mail
    with core.sessions.begin() as session:
        core.archive.archive_batch(
            session, [RawMessage(note("fresh@x", years_ago(2), "news"), "", [], NOW, "import")]
        )
    backend = core.search_backend()
    try:  # not indexed yet
        report = Eraser(core.sessions, core.store, backend).request(DANA, now=NOW)
    finally:
        backend.close()
    assert report.counts[Kind.WAITING] == 1 and "fresh@x" in archived(core)

    index(core)
    scheduled_pass(core, now=NOW)
    assert "fresh@x" not in archived(core)


@pytest.mark.parametrize("filed", [True, False], ids=["filed-by-id", "kept-before-ids"])
def test_a_thread_search_and_the_next_digest_forget_an_erased_post(core: Core, filed: bool) -> None:
    with core.sessions.begin() as session:
        mlist = MailingList(name="dev", domain="lists.example.com", display_name="dev")
        session.add(mlist)
        session.flush()
        session.add(
            Member(list_id=mlist.id, address="erin@example.com", delivery=DeliveryMode.MIME_DIGEST)
        )
        for sender, words, reply_to in (
            (DANA, "Zanzibar hideaway plans", None),
            ("bob@example.com", "Agreed, see you there", "dana-1@x"),
        ):
            post(core, session, mlist, sender, words, reply_to)
        if not filed:  # posts kept before digest entries carried their Message-ID
            session.execute(update(DigestEntry).values(message_id=None))
    index(core)
    with core.sessions() as session:
        (thread,) = set(session.scalars(select(Message.thread_id)))
        assert session.query(DigestEntry).count() == 2

    erase(core)

    assert searchable(core, "zanzibar") == set()
    assert searchable(core, "agreed") == {"bob-1@x"}
    archive = "/lists/dev@lists.example.com/"
    pages = admin_pages(core, f"/threads/{thread}", archive + "2026-11", archive + "feed.atom")
    for page in pages:  # the thread, and the list's archive of the month and its feed
        assert "Agreed" in page and "Zanzibar" not in page and "dana-1@x" not in page
    with core.sessions.begin() as session:
        mlist = session.scalar(select(MailingList))
        assert send_digest(session, mlist) == 1
        digest = session.scalar(select(OutboxMessage).where(OutboxMessage.kind == "digest"))
        parts = message_from_bytes(digest.data, policy=policy.default).walk()
        posts = [part for part in parts if part.get_content_type() == "message/rfc822"]
        assert [p.get_content()["Message-ID"] for p in posts] == ["<bob-1@x>"]
        assert b"Zanzibar" not in digest.data


def post(
    core: Core, session, mlist: MailingList, sender: str, words: str, reply_to: str | None
) -> None:
    """A post to the list, through the list engine's own pipeline (archive, digest, outbox)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mlist.address
    message["Subject"] = words if reply_to is None else f"Re: {words}"
    message["Date"] = "Fri, 20 Nov 2026 10:00:00 +0000"
    message["Message-ID"] = f"<{sender.split('@')[0]}-1@x>"
    if reply_to:
        message["In-Reply-To"] = f"<{reply_to}>"
    message.set_content(f"{words}.\n")
    run(
        Delivery(
            mlist=mlist,
            message=message,
            sender=sender,
            session=session,
            archive=core.archive,
            public_url="https://lists.test",
            received_at=NOW,
        )
    )


def admin_pages(core: Core, *paths: str) -> list[str]:
    """`paths` as an administrator sees them in the web UI."""
    with core.sessions.begin() as session:
        add_user(session, "root@example.org", "admin", PASSWORD)
    app = create_app(core)
    try:
        client: FlaskClient = app.test_client()
        assert log_in(client, "root@example.org", PASSWORD).status_code == 302
        answers = [client.get(path) for path in paths]
        assert [answer.status_code for answer in answers] == [200] * len(paths)
        return [answer.get_data(as_text=True) for answer in answers]
    finally:
        app.extensions[BACKEND_KEY].close()


def test_the_command_line_says_why_per_message_and_lists_the_requests(kept_mail: Core) -> None:
    core = kept_mail
    dry = run_arsip(core.settings, "subject", "erase", "--dry-run", DANA)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert any(line.startswith("would erase\t") and "<old@x>" in line for line in lines)
    assert any(
        line.startswith("would keep\t") and "<held@x>" in line and "held by hold merger" in line
        for line in lines
    )
    assert any(
        "<young@x>" in line and "within retention policy finance until" in line for line in lines
    )
    assert "dry run: nothing was changed" in dry.stdout
    assert archived(core) == {"held@x", "young@x", "expired@x", "old@x", "bobs@x"}

    done = run_arsip(core.settings, "subject", "erase", "--json", DANA)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["erased"] == 2 and document["counts"]["held"] == 1
    assert {item["message_id"]: item["verdict"] for item in document["messages"]} == {
        "old@x": "erase",
        "expired@x": "erase",
        "held@x": "held",
        "young@x": "retained",
    }

    listed = run_arsip(core.settings, "subject", "requests", "--open")
    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.splitlines()
    assert f"\topen\t{DANA}\t" in line and "2 erased, 1 held, 1 retained" in line

    bad = run_arsip(core.settings, "subject", "erase", "not-an-address")
    assert bad.returncode == 1
    assert "'not-an-address' is not an email address" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_an_address_that_is_none_is_refused(core: Core) -> None:
    backend = core.search_backend()
    try:
        with pytest.raises(ErasureError):
            Eraser(core.sessions, core.store, backend).request("dana at example")
    finally:
        backend.close()
    assert erasure_requests(core) == []


def test_mail_a_case_holds_names_the_case(kept_mail: Core) -> None:
    with kept_mail.sessions.begin() as session:
        matter = create_case(
            session, OPERATOR, "acme", "ACME v. Us", criteria(custodians=[DANA], queries=["ledger"])
        )
        place_case_hold(session, OPERATOR, matter)
    _, said = erase(kept_mail, dry_run=True)

    verdicts = {verdict.message_id: verdict for verdict in said}
    assert verdicts["young@x"].reason().startswith("held by case acme (hold case acme); within")
    assert verdicts["young@x"].as_json()["cases"] == ["acme"]
    assert verdicts["held@x"].reason() == "held by hold merger"
