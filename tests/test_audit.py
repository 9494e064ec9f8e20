"""The audit trail as auditors rely on it: who logged in, what auditors searched, read and
exported, what changed, and a chain of hashes that gives away an edited or removed entry."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select, text
from sqlalchemy.orm import ORMExecuteState

import web.search
from archiver import audit
from archiver.accounts import add_user, find_user, new_api_token
from archiver.archive import RawMessage
from archiver.audit import AuditEntry, AuditHead, record, verify
from archiver.core import Core
from archiver.models import Message
from archiver.search.indexer import Indexer
from lists.models import MailingList, Member
from tests.test_accounts import PASSWORD, arsip, csrf_field, log_in
from tests.test_search import ALICE, MESSAGES
from tests.web_client import foreign_scripts
from web import create_app

AUDITOR = "audrey@example.com"
ADMIN = "root@example.com"
OWNER = "olga@example.org"
LIST = "board@lists.example.com"


def entries(core: Core, **where: str) -> list[AuditEntry]:
    """The audit log in order, optionally only the entries whose fields equal `where`."""
    with core.sessions() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
    return [e for e in rows if all(getattr(e, k) == v for k, v in where.items())]


def write(core: Core, *actions: str) -> None:
    """One entry per action, each in its own transaction, as the application writes them."""
    for number, action in enumerate(actions):
        with core.sessions.begin() as session:
            record(session, "cli:tester", action, f"target-{number}", {"n": number})


def problems(core: Core) -> list[audit.ChainProblem]:
    with core.sessions() as session:
        return verify(session)


def test_a_chain_of_entries_verifies(core: Core) -> None:
    assert problems(core) == []  # the empty log, too
    write(core, "login", "search", "message.view", "export", "user.add")
    log = entries(core)
    assert [e.seq for e in log] == [1, 2, 3, 4, 5]
    assert log[0].previous == audit.GENESIS
    assert all(later.previous == earlier.hash for earlier, later in pairwise(log))
    assert problems(core) == []
    with core.sessions() as session:
        head = session.get(AuditHead, 1)
        assert head is not None and (head.count, head.hash) == (5, log[-1].hash)


def test_editing_one_audit_row_makes_arsip_audit_verify_fail(core: Core) -> None:
    write(core, "login", "message.view", "export")
    intact = arsip(core, "audit", "verify")
    assert intact.returncode == 0, intact.stderr
    assert f"audit log intact: 3 entries, head {entries(core)[-1].hash}" in intact.stdout

    with core.engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET target = 'someone-else' WHERE seq = 2"))

    assert [(p.seq, p.problem) for p in problems(core)] == [(2, "was changed after it was written")]
    broken = arsip(core, "audit", "verify")
    assert broken.returncode == 1
    assert "entry 2: was changed after it was written" in broken.stdout
    assert "Traceback" not in broken.stderr


def test_editing_details_or_time_is_found_too(core: Core) -> None:
    write(core, "login", "message.view", "export")
    with core.engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET details = '{\"n\": 7}' WHERE seq = 1"))
        connection.execute(text("UPDATE audit_log SET at = '2020-01-01 00:00:00' WHERE seq = 3"))
    assert {p.seq for p in problems(core)} == {1, 3}


def test_removing_a_middle_entry_is_found(core: Core) -> None:
    write(core, "login", "message.view", "export", "logout")
    with core.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    found = [(p.seq, p.problem) for p in problems(core)]
    assert (2, "entries 2..2 are missing") in found
    assert (3, "does not chain to the entry before it") in found


def test_removing_the_last_entry_is_found_by_the_head(core: Core) -> None:
    write(core, "login", "message.view", "export")
    with core.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE seq = 3"))
    found = problems(core)
    assert len(found) == 1
    assert "the head says 3 entries" in found[0].problem
    assert "the log has 2" in found[0].problem
    assert arsip(core, "audit", "verify").returncode == 1


def test_two_writers_at_once_keep_the_chain_whole(core: Core) -> None:
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            start.wait()
            for number in range(25):
                with core.sessions.begin() as session:
                    record(session, name, "search", f"query {number}")
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(f"writer{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    log = entries(core)
    assert [e.seq for e in log] == list(range(1, 51))
    assert {e.actor for e in log} == {"writer1", "writer2"}
    assert problems(core) == []


def test_a_change_that_rolls_back_leaves_no_entry(core: Core) -> None:
    with pytest.raises(RuntimeError), core.sessions.begin() as session:
        record(session, "cli:tester", "user.add", "ghost@example.com")
        raise RuntimeError("the change failed")
    assert entries(core) == []
    write(core, "user.add")
    assert [e.seq for e in entries(core)] == [1]
    assert problems(core) == []


def test_listing_filters_by_action_family_actor_and_time(core: Core) -> None:
    write(core, "login", "login.failed", "message.view", "message.raw", "messages.other")
    with core.sessions() as session:
        newest_first = [e.seq for e in audit.entries(session)]
        assert newest_first == [5, 4, 3, 2, 1]
        assert [e.action for e in audit.entries(session, action="message")] == [
            "message.raw",
            "message.view",
        ]
        assert [e.seq for e in audit.entries(session, action="login")] == [2, 1]
        assert audit.entries(session, actor="nobody") == []
        assert [e.seq for e in audit.entries(session, before=3, limit=1)] == [2]
        future = datetime(2100, 1, 1, tzinfo=UTC)
        assert audit.entries(session, since=future) == []
        assert len(audit.entries(session, until=future)) == 5


# The web UI and the API


@pytest.fixture
def app(core: Core) -> Iterator[Flask]:
    """The sample archive, indexed; an auditor, an administrator, alice (a user), and a
    list board@ that olga owns."""
    now = datetime.now(UTC)
    with core.sessions.begin() as session:
        core.archive.archive_batch(
            session, [RawMessage(data, "", [], now, "import") for data in MESSAGES]
        )
        add_user(session, AUDITOR, "auditor", PASSWORD)
        add_user(session, ADMIN, "admin", PASSWORD)
        add_user(session, ALICE, "user", PASSWORD)
        add_user(session, OWNER, "user", PASSWORD)
        board = MailingList(name="board", domain="lists.example.com", dmarc="never")
        session.add(board)
        session.flush()
        session.add(Member(list_id=board.id, address=OWNER, role="owner"))
    backend = core.search_backend()
    Indexer(core.sessions, backend, core.store).run_once()
    backend.close()
    built = create_app(core)
    yield built
    built.extensions[web.search.BACKEND_KEY].close()


def browser(app: Flask, email: str) -> FlaskClient:
    client = app.test_client()
    assert log_in(client, email, PASSWORD).status_code == 302
    return client


def reads(core: Core) -> list[tuple[str, str, str]]:
    """(actor, action, target) of every entry but the logins."""
    return [(e.actor, e.action, e.target) for e in entries(core) if not e.action.startswith("log")]


def attachment_link(client: FlaskClient, message_id: str) -> str:
    page = client.get(f"/messages/{message_id}").get_data(as_text=True)
    found = re.search(rf'href="(/messages/{re.escape(message_id)}/attachments/\d+)"', page)
    assert found, "the message page links no attachment"
    return found.group(1)


def test_an_auditors_searches_views_and_exports_are_recorded(app: Flask, core: Core) -> None:
    auditor = browser(app, AUDITOR)
    assert auditor.get("/?q=forecast").status_code == 200
    assert auditor.get("/messages/q1@example.com").status_code == 200
    assert auditor.get("/messages/q1@example.com/raw").status_code == 200
    assert auditor.get("/messages/q1@example.com/eml").status_code == 200
    assert auditor.get(attachment_link(auditor, "sheet@example.org")).status_code == 200
    assert auditor.get("/export.mbox?q=forecast").status_code == 200
    with core.sessions() as session:
        thread_id = session.scalar(
            select(Message.thread_id).where(Message.message_id == "q1@example.com")
        )
        sha256 = session.scalar(
            select(Message.sha256).where(Message.message_id == "q1@example.com")
        )
    assert auditor.get(f"/threads/{thread_id}").status_code == 200
    assert reads(core) == [
        (AUDITOR, "search", "forecast"),
        (AUDITOR, "message.view", "q1@example.com"),
        (AUDITOR, "message.raw", "q1@example.com"),
        (AUDITOR, "message.download", "q1@example.com"),
        (AUDITOR, "message.view", "sheet@example.org"),  # opening the page to find the link
        (AUDITOR, "attachment.download", "sheet@example.org"),
        (AUDITOR, "export", "forecast"),
        (AUDITOR, "thread.view", thread_id),
    ]
    view = entries(core, action="message.view")[0]
    assert view.details["sha256"] == sha256 and view.details["ip"] and view.details["via"] == "web"
    assert entries(core, action="search")[0].details["results"] == 3
    shown = entries(core, action="thread.view")[0].details
    assert shown["messages"] == 2
    assert set(shown["message_ids"]) == {"q1@example.com", "q2@example.com"}
    assert problems(core) == []


def test_the_html_frame_is_not_a_second_view(app: Flask, core: Core) -> None:
    auditor = browser(app, AUDITOR)
    auditor.get("/messages/q1@example.com/html")
    assert reads(core) == []


def test_people_reading_their_own_mail_are_not_recorded(app: Flask, core: Core) -> None:
    alice = browser(app, ALICE)
    assert alice.get("/?q=forecast").status_code == 200
    assert alice.get("/messages/q1@example.com").status_code == 200
    assert alice.get("/messages/q1@example.com/raw").status_code == 200
    assert alice.get("/export.mbox?q=forecast").status_code == 200
    assert reads(core) == []
    assert [e.action for e in entries(core)] == ["login"]


def test_the_api_records_an_auditors_reads_under_the_tokens_account(app: Flask, core: Core) -> None:
    with core.sessions.begin() as session:
        user = find_user(session, AUDITOR)
        assert user is not None
        headers = {"Authorization": f"Bearer {new_api_token(session, user)}"}
    client = app.test_client()
    assert client.get("/api/v1/search?q=forecast", headers=headers).status_code == 200
    assert client.get("/api/v1/messages/q1@example.com", headers=headers).status_code == 200
    assert reads(core) == [
        (AUDITOR, "search", "forecast"),
        (AUDITOR, "message.view", "q1@example.com"),
    ]
    assert {e.details["via"] for e in entries(core)} == {"api"}


def test_logins_are_recorded_without_the_password(app: Flask, core: Core) -> None:
    client = app.test_client()
    assert log_in(client, AUDITOR, "not my password").status_code == 401
    assert log_in(client, AUDITOR, PASSWORD).status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert client.post("/logout", data={"csrf_token": csrf_field(page)}).status_code == 302

    failed, succeeded, out = entries(core)
    assert (failed.actor, failed.action, failed.target) == (
        audit.ANONYMOUS,
        "login.failed",
        AUDITOR,
    )
    assert failed.details["ip"] == "127.0.0.1" and failed.details["reason"] == "rejected"
    assert (succeeded.actor, succeeded.action, succeeded.details) == (
        AUDITOR,
        "login",
        {"ip": "127.0.0.1"},
    )
    assert (out.actor, out.action) == (AUDITOR, "logout")
    with core.engine.connect() as connection:
        everything = json.dumps(
            [list(row) for row in connection.execute(text("SELECT * FROM audit_log"))], default=str
        )
    assert "not my password" not in everything and PASSWORD not in everything


def test_a_list_settings_change_on_the_owners_page_is_recorded(app: Flask, core: Core) -> None:
    owner = browser(app, OWNER)
    page = f"/lists/{LIST}/settings"
    with core.sessions() as session:
        before = session.scalars(select(MailingList)).one()
    form = {
        "description": "The board",
        "subscription": before.subscription,
        "posting": "moderated",
        "archive": before.archive,
        "nonmember_action": before.nonmember_action,
        "reply_to": before.reply_to,
        "reply_to_address": "",
        "dmarc": before.dmarc,
        "subject_prefix": before.subject_prefix,
        "footer": before.footer,
        "max_message_kb": str(before.max_message_kb),
        "max_recipients": str(before.max_recipients),
        "delivery": "personalize" if before.personalize else "bulk",
    }
    token = csrf_field(owner.get(page).get_data(as_text=True))
    assert owner.post(page, data={"csrf_token": token, **form}).status_code == 302
    (change,) = entries(core, action="list.settings")
    assert (change.actor, change.target) == (OWNER, LIST)
    assert change.details["changed"] == {
        "posting": [str(before.posting), "moderated"],
        "description": [before.description, "The board"],
    }
    members = f"/lists/{LIST}/members"
    token = csrf_field(owner.get(members).get_data(as_text=True))
    owner.post(f"{members}/ban", data={"csrf_token": token, "pattern": "Troll@Example.org"})
    (ban,) = entries(core, action="list.ban")
    assert (ban.actor, ban.target, ban.details) == (OWNER, LIST, {"pattern": "troll@example.org"})


def test_the_audit_page_is_for_auditors_and_administrators_only(app: Flask, core: Core) -> None:
    assert browser(app, ALICE).get("/audit").status_code == 404
    assert app.test_client().get("/audit").status_code == 302  # to the login page
    auditor = browser(app, AUDITOR)
    auditor.get("/messages/q1@example.com")
    answer = auditor.get("/audit")
    assert answer.status_code == 200
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
    page = answer.get_data(as_text=True)
    assert "message.view" in page and "q1@example.com" in page and AUDITOR in page
    assert 'href="/audit"' in page  # the header links the page for auditors
    assert foreign_scripts(page) == []
    assert browser(app, ADMIN).get("/audit").status_code == 200

    filtered = auditor.get("/audit?action=login").get_data(as_text=True)
    assert "message.view" not in filtered and "login" in filtered
    assert auditor.get("/audit?since=yesterday").status_code == 400

    checked = auditor.get("/audit?verify=1").get_data(as_text=True)
    assert "The chain is intact" in checked
    with core.engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET actor = 'nobody' WHERE seq = 1"))
    broken = auditor.get("/audit?verify=1").get_data(as_text=True)
    assert "The chain is broken" in broken and "Entry 1: was changed" in broken


def test_the_audit_page_pages_by_sequence_number(app: Flask, core: Core) -> None:
    write(core, *["search"] * 150)
    auditor = browser(app, AUDITOR)
    first = auditor.get("/audit?action=search").get_data(as_text=True)
    assert "target-149" in first and "target-49<" not in first
    older = re.search(r'href="([^"]*before=[^"]*)"', first)
    assert older, "no link to older entries"
    second = auditor.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert "target-49<" in second and "target-149" not in second


# The command line


def test_arsip_audit_list_json_parses_and_the_cli_records_its_actor(core: Core) -> None:
    added = arsip(
        core,
        "users",
        "add",
        AUDITOR,
        "--role",
        "auditor",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    write(core, "message.view", "export")
    listed = arsip(core, "audit", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [row["seq"] for row in rows] == [3, 2, 1]
    assert rows[-1]["action"] == "user.add" and rows[-1]["target"] == AUDITOR
    assert rows[-1]["actor"].startswith("cli:")
    assert rows[-1]["details"] == {"role": "auditor", "password": True}
    assert PASSWORD not in listed.stdout
    assert set(rows[0]) == {"seq", "at", "actor", "action", "target", "details", "previous", "hash"}

    only = arsip(core, "audit", "list", "--json", "--action", "export", "--limit", "5")
    assert [json.loads(line)["action"] for line in only.stdout.splitlines()] == ["export"]
    table = arsip(core, "audit", "list")
    assert table.returncode == 0 and "user.add" in table.stdout and AUDITOR in table.stdout
    bad = arsip(core, "audit", "list", "--since", "last tuesday")
    assert bad.returncode == 2 and "not a date" in bad.stderr and "Traceback" not in bad.stderr


def test_list_commands_are_recorded(core: Core) -> None:
    assert arsip(core, "lists", "create", LIST, "--owner", OWNER).returncode == 0
    assert arsip(core, "lists", "set", LIST, "--posting", "moderated").returncode == 0
    assert arsip(core, "lists", "add-member", LIST, ALICE, "--no-confirm").returncode == 0
    actions = [(e.action, e.target) for e in entries(core)]
    assert actions == [
        ("list.create", LIST),
        ("list.settings", LIST),
        ("list.member.add", LIST),
    ]
    change = entries(core, action="list.settings")[0]
    assert change.details == {"changed": {"posting": ["members", "moderated"]}}
    assert entries(core, action="list.member.add")[0].details["addresses"] == [ALICE]


def test_checking_a_live_log_is_not_fooled_by_entries_written_meanwhile(core: Core) -> None:
    write(core, "login", "search")
    appended: list[int] = []

    def append_before_the_head_is_read(state: ORMExecuteState) -> None:
        # Another process appends after the check has read the entries, before the head.
        if not appended and AuditHead.__mapper__ in state.all_mappers:
            write(core, "message.view")
            appended.append(1)

    with core.sessions() as session:
        event.listen(session, "do_orm_execute", append_before_the_head_is_read)
        audit.read_snapshot(session)
        assert verify(session) == []
    assert appended and problems(core) == []
