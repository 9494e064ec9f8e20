"""Cases in the browser: administrators open a case and name its reviewers, a reviewer
inside the case searches and reads its mail and nothing else (not even their own), every
read there lands in the audit trail against the case, and closing asks first, releases the
case's holds and ends the reviewers' access."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import EmailMessage
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from archiver.accounts import add_user
from archiver.audit import AuditEntry
from archiver.cases.models import Case
from archiver.core import Core
from archiver.retention.models import LegalHold
from tests.test_accounts import PASSWORD
from tests.test_cases import CUSTODIAN, archive, mail
from tests.test_web_retention import browser, post_form
from tests.web_client import foreign_scripts
from web import create_app
from web.search import BACKEND_KEY

ADMIN = "root@example.org"
AUDITOR = "lena@example.org"
REVIEWER = "rev@example.org"
OUTSIDER = "olga@example.org"


def with_attachment() -> bytes:
    message = EmailMessage()
    message["From"] = CUSTODIAN
    message["To"] = "bob@example.com"
    message["Subject"] = "merger draft"
    message["Date"] = "Tue, 03 Mar 2026 09:00:00 +0000"
    message["Message-ID"] = "<draft@x>"
    message.set_content("The merger draft is attached.")
    message.add_attachment(b"%%terms%%", maintype="application", subtype="octet-stream",
                           filename="terms.bin")  # fmt: skip
    return message.as_bytes()


@pytest.fixture
def app(core: Core) -> Iterator[Flask]:
    """Mail about a merger, some of it the custodian's; the reviewer's own mail; accounts."""
    archive(
        core,
        mail("in@x", CUSTODIAN, "bob@example.com", "merger terms"),
        mail("reply@x", "bob@example.com", CUSTODIAN, "Re: merger terms", in_reply_to="in@x"),
        mail("aside@x", "bob@example.com", "dave@example.com", "Re: merger", in_reply_to="in@x"),
        mail("other@x", "dave@example.com", "bob@example.com", "merger rumours"),
        mail("own@x", "dave@example.com", REVIEWER, "merger gossip for the reviewer"),
        with_attachment(),
    )
    with core.sessions.begin() as session:
        add_user(session, ADMIN, "admin", PASSWORD)
        add_user(session, AUDITOR, "auditor", PASSWORD)
        add_user(session, REVIEWER, "user", PASSWORD)
        add_user(session, OUTSIDER, "user", PASSWORD)
    built = create_app(core)
    yield built
    built.extensions[BACKEND_KEY].close()


def open_case(admin: FlaskClient, **form: str):
    fields = {
        "name": "acme",
        "description": "ACME v. Us",
        "custodians": CUSTODIAN,
        "queries": "merger",
        "since": "2026-01-01",
        "until": "",
    }
    return post_form(admin, "/cases/", "/cases/", **(fields | form))


@pytest.fixture
def case(app: Flask) -> FlaskClient:
    """The case, opened by the administrator, with its reviewer; the admin's browser."""
    admin = browser(app, ADMIN)
    assert open_case(admin).status_code == 302
    added = post_form(admin, "/cases/acme/", "/cases/acme/reviewers", email=REVIEWER)
    assert added.status_code == 302
    return admin


def page(client: FlaskClient, path: str) -> str:
    answer = client.get(path)
    assert answer.status_code == 200, (path, answer.status_code)
    return answer.get_data(as_text=True)


def audited(core: Core, prefix: str) -> list[tuple[str, str, str, dict]]:
    with core.sessions() as session:
        return [
            (entry.actor, entry.action, entry.target, entry.details)
            for entry in session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action.like(prefix + "%"))
                .order_by(AuditEntry.seq)
            )
        ]


def test_an_administrator_opens_a_case_and_names_a_reviewer(case: FlaskClient, core: Core) -> None:
    shown = page(case, "/cases/acme/")
    assert "ACME v. Us" in shown and CUSTODIAN in shown and "<code>merger</code>" in shown
    assert "3 messages" in shown and REVIEWER in shown
    assert foreign_scripts(shown) == []
    assert "acme" in page(case, "/cases/")
    changes = [
        (a, action, t) for a, action, t, _ in audited(core, "case.") if "search" not in action
    ]
    assert changes == [(ADMIN, "case.create", "acme"), (ADMIN, "case.reviewer.add", "acme")]


def test_bad_criteria_are_shown_above_the_form_with_what_was_typed(app: Flask, core: Core) -> None:
    admin = browser(app, ADMIN)
    answer = open_case(admin, custodians="", queries="")
    assert answer.status_code == 400
    said = answer.get_data(as_text=True)
    assert "A case needs custodians, queries or both" in said and 'value="acme"' in said
    broken = open_case(admin, queries='subject:"open')
    assert broken.status_code == 400 and "never closed" in broken.get_data(as_text=True)
    dated = open_case(admin, since="March")
    assert dated.status_code == 400 and "is not a date like" in dated.get_data(as_text=True)
    with core.sessions() as session:
        assert session.scalars(select(Case)).all() == []


def test_forms_without_the_csrf_token_are_refused(case: FlaskClient, core: Core) -> None:
    assert case.post("/cases/", data={"name": "x", "queries": "merger"}).status_code == 400
    assert case.post("/cases/acme/close").status_code == 400
    assert case.post("/cases/acme/hold").status_code == 400
    with core.sessions() as session:
        assert session.scalar(select(Case.status).where(Case.name == "acme")) == "open"


def test_a_reviewer_sees_the_cases_mail_and_nothing_else(app: Flask, case: FlaskClient) -> None:
    reviewer = browser(app, REVIEWER)
    assert "/cases/acme/" in page(reviewer, "/cases/")
    everything = page(reviewer, "/cases/acme/")
    assert "merger terms" in everything and "merger draft" in everything
    assert "rumours" not in everything and "gossip" not in everything
    found = page(reviewer, "/cases/acme/?q=merger")
    assert "3 messages" in found and "rumours" not in found and "gossip" not in found
    assert 'href="/cases/acme/messages/in@x?from=' in found
    assert page(reviewer, "/cases/acme/?q=gossip").count("No messages match") == 1

    assert "merger terms" in page(reviewer, "/cases/acme/messages/in@x")
    for outside in ("other@x", "own@x", "aside@x"):
        assert reviewer.get(f"/cases/acme/messages/{outside}").status_code == 404
    thread = page(reviewer, "/cases/acme/threads/" + _thread_of(app, "in@x"))
    assert "/cases/acme/messages/reply@x" in thread and "aside@x" not in thread

    eml = reviewer.get("/cases/acme/messages/draft@x/eml")
    assert eml.status_code == 200 and b"merger draft" in eml.data
    attachment = reviewer.get("/cases/acme/messages/draft@x/attachments/0")
    assert attachment.status_code == 200 and attachment.data == b"%%terms%%"
    assert reviewer.get("/cases/acme/messages/own@x/eml").status_code == 404
    export = reviewer.get("/cases/acme/export.mbox?q=merger")
    assert export.status_code == 200
    assert export.data.count(b"\nFrom ") + export.data.startswith(b"From ") == 3
    assert b"rumours" not in export.data and b"gossip" not in export.data

    # Outside the case, the reviewer's own rights are as before.
    assert "gossip" in page(reviewer, "/messages/own@x")
    assert reviewer.get("/messages/in@x").status_code == 404


def test_a_reviewers_case_page_costs_the_page_not_the_case(
    app: Flask, case: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The number of messages covered comes from the search backend's count, and the
    holds' coverage (every message judged) is for administrators and auditors: a
    reviewer's page never has the backend list the case's or a hold's message ids."""
    assert post_form(case, "/cases/acme/", "/cases/acme/hold").status_code == 302
    backend = app.extensions[BACKEND_KEY].get()
    listed: list[object] = []
    real = backend.matching
    monkeypatch.setattr(backend, "matching", lambda query: listed.append(query) or real(query))

    shown = page(browser(app, REVIEWER), "/cases/acme/?q=terms")
    assert "<strong>3 messages</strong> in the case now" in shown
    assert "case acme" in shown and "keeps" not in shown
    assert "2 messages" in shown  # the search's own total
    assert listed == []
    assert re.search(r"case acme · keeps \d+ messages", page(case, "/cases/acme/"))


def _thread_of(app: Flask, message_id: str) -> str:
    from archiver.models import Message
    from web.deps import get_core

    with get_core(app).sessions() as session:
        thread = session.scalar(select(Message.thread_id).where(Message.message_id == message_id))
    return quote(thread, safe="")


def test_every_read_inside_a_case_is_audited_against_it(
    app: Flask, case: FlaskClient, core: Core
) -> None:
    reviewer = browser(app, REVIEWER)
    page(reviewer, "/cases/acme/?q=merger")
    page(reviewer, "/cases/acme/messages/in@x")
    reviewer.get("/cases/acme/messages/draft@x/attachments/0")
    assert reviewer.get("/cases/acme/export.mbox?q=terms").status_code == 200
    page(reviewer, "/messages/own@x")  # their own mail, outside the case: not recorded
    reads = [(action, target, details) for actor, action, target, details in audited(core, "case.")
             if actor == REVIEWER]  # fmt: skip
    assert [(action, target) for action, target, _ in reads] == [
        ("case.search", "acme"),
        ("case.view", "acme"),
        ("case.download", "acme"),
        ("case.export", "acme"),
    ]
    details = [d for _, _, d in reads]
    assert details[0]["query"] == "merger" and details[0]["results"] == 3
    assert details[1]["message_id"] == "in@x" and details[2]["message_id"] == "draft@x"
    assert details[3]["query"] == "terms"
    assert all("merger terms" not in str(d) for d in details)


def test_others_cannot_open_the_case(app: Flask, case: FlaskClient) -> None:
    assert browser(app, OUTSIDER).get("/cases/acme/").status_code == 404
    assert browser(app, OUTSIDER).get("/cases/acme/messages/in@x").status_code == 404
    assert "acme" not in page(browser(app, OUTSIDER), "/cases/")
    anonymous = app.test_client().get("/cases/acme/messages/in@x")
    assert anonymous.status_code == 302 and anonymous.location.startswith("/login?")
    assert browser(app, REVIEWER).get("/cases/nothing/").status_code == 404


def test_an_auditor_reads_every_case_but_changes_none(app: Flask, case: FlaskClient) -> None:
    auditor = browser(app, AUDITOR)
    assert "merger terms" in page(auditor, "/cases/acme/")
    refused = post_form(auditor, "/cases/acme/", "/cases/acme/hold")
    assert refused.status_code == 403
    reviewer = browser(app, REVIEWER)
    assert post_form(reviewer, "/cases/acme/", "/cases/acme/close").status_code == 403


def test_closing_asks_first_releases_the_holds_and_ends_the_reviewers_access(
    app: Flask, case: FlaskClient, core: Core
) -> None:
    placed = post_form(case, "/cases/acme/", "/cases/acme/hold")
    assert "Hold case acme placed." in page(case, placed.location)
    again = post_form(case, "/cases/acme/", "/cases/acme/hold")
    assert "is in place already" in page(case, again.location)
    asking = page(case, "/cases/acme/close")
    assert "Close case acme?" in asking and "Holds released: case acme" in asking
    closed = post_form(case, "/cases/acme/close", "/cases/acme/close")
    assert "Case acme closed; released case acme." in page(case, closed.location)
    with core.sessions() as session:
        hold = session.scalar(select(LegalHold).where(LegalHold.name == "case acme"))
        assert hold is not None and hold.released_at is not None
    assert [action for _, action, _, _ in audited(core, "hold.")] == ["hold.add", "hold.release"]
    assert browser(app, REVIEWER).get("/cases/acme/").status_code == 404
    assert "acme" not in page(browser(app, REVIEWER), "/cases/")
    assert "closed" in page(case, "/cases/acme/")  # administrators keep the record


def test_an_administrator_changes_what_the_case_covers(
    app: Flask, case: FlaskClient, core: Core
) -> None:
    form = page(case, "/cases/acme/edit")
    assert "carol@example.com" in form and ">merger</textarea>" in form
    changed = post_form(
        case, "/cases/acme/edit", "/cases/acme/edit",
        description="ACME v. Us, amended", custodians="dave@example.com", queries="rumours",
        since="", until="",
    )  # fmt: skip
    assert "Case acme saved." in page(case, changed.location)
    reviewer = browser(app, REVIEWER)
    assert "merger rumours" in page(reviewer, "/cases/acme/")
    assert reviewer.get("/cases/acme/messages/in@x").status_code == 404
    refused = post_form(case, "/cases/acme/edit", "/cases/acme/edit", custodians="", queries="")
    assert refused.status_code == 400 and "custodians, queries or both" in refused.get_data(
        as_text=True
    )
    edits = [details for _, action, _, details in audited(core, "case.edit")]
    assert len(edits) == 1 and edits[0]["before"]["queries"] == ["merger"]
    assert edits[0]["queries"] == ["rumours"]
