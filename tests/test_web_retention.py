"""Retention policies and legal holds in the browser: administrators decide how long mail
is kept, auditors read along and place holds, a preview shows what a sweep would delete
without deleting it, and every change lands in the audit trail under the person's email."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from archiver.accounts import add_user
from archiver.archive import RawMessage
from archiver.audit import AuditEntry
from archiver.core import Core
from archiver.models import Message
from archiver.retention.models import LegalHold, RetentionPolicy
from archiver.retention.periods import Period
from archiver.retention.rules import sweep_state
from tests.test_accounts import PASSWORD, csrf_field, log_in
from tests.test_retention import archive, mail
from tests.web_client import foreign_scripts
from web import create_app
from web.retention import PREVIEW_LOCK, custodian_list
from web.search import BACKEND_KEY

ADMIN = "root@example.org"
AUDITOR = "lena@example.org"
USER = "ann@example.org"
CUSTODIAN = "carol@example.com"


def years_ago(years: float) -> datetime:
    """A date this long before today: the pages sweep as of now, not a fixed day."""
    return datetime.now(UTC) - timedelta(days=round(365.25 * years))


@pytest.fixture
def app(core: Core) -> Iterator[Flask]:
    """An archive of three old messages (one from a custodian) and a new one, indexed, and
    accounts for an administrator, an auditor and an ordinary user."""
    archive(
        core,
        mail("old-1@x", years_ago(3)),
        mail("old-2@x", years_ago(3), sender=CUSTODIAN),
        mail("old-3@x", years_ago(2)),
        mail("new-1@x", years_ago(0.1)),
    )
    with core.sessions.begin() as session:
        add_user(session, ADMIN, "admin", PASSWORD)
        add_user(session, AUDITOR, "auditor", PASSWORD)
        add_user(session, USER, "user", PASSWORD)
    built = create_app(core)
    yield built
    built.extensions[BACKEND_KEY].close()


def browser(app: Flask, email: str) -> FlaskClient:
    """A browser logged in as `email`."""
    client = app.test_client()
    assert log_in(client, email, PASSWORD).status_code == 302
    return client


def post_form(client: FlaskClient, page: str, target: str, **form: str):
    """Open `page` and send one of its forms to `target`, as a browser does."""
    token = csrf_field(client.get(page).get_data(as_text=True))
    return client.post(target, data={"csrf_token": token, **form})


def add_policy(client: FlaskClient, name: str, keep: str, scope: str = ""):
    return post_form(
        client,
        "/admin/retention",
        "/admin/retention/policies",
        name=name,
        keep=keep,
        scope=scope,
    )


def place_hold(client: FlaskClient, **form: str):
    return post_form(client, "/admin/holds", "/admin/holds", **form)


def audited(core: Core, action: str) -> list[tuple[str, str]]:
    """(actor, target) of every audit entry of `action`, oldest first."""
    with core.sessions() as session:
        return [
            (entry.actor, entry.target)
            for entry in session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            )
        ]


def policy_names(core: Core) -> list[str]:
    with core.sessions() as session:
        return list(session.scalars(select(RetentionPolicy.name).order_by(RetentionPolicy.name)))


def message_count(core: Core) -> int:
    with core.sessions() as session:
        return session.scalar(select(func.count()).select_from(Message)) or 0


def test_an_administrator_adds_a_policy_and_it_appears(app: Flask, core: Core) -> None:
    admin = browser(app, ADMIN)
    answer = add_policy(admin, "lists", "7y", scope="list:dev@example.org")
    assert answer.status_code == 302
    page = admin.get(answer.location).get_data(as_text=True)
    assert "Policy lists: keep list:dev@example.org for 7y." in page
    assert "<td>lists</td>" in page and "<code>list:dev@example.org</code>" in page
    assert f"by {ADMIN}" in page
    add_policy(admin, "everything", "10 years")
    assert "<td>10y</td>" in admin.get("/admin/retention").get_data(as_text=True)
    assert audited(core, "policy.add") == [(ADMIN, "lists"), (ADMIN, "everything")]


def test_a_bad_period_is_shown_above_the_form_with_what_was_typed(app: Flask, core: Core) -> None:
    admin = browser(app, ADMIN)
    answer = add_policy(admin, "mailing lists", "seven years", scope="list:dev@example.org")
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    assert "is not a period: write days or years, like 90d or 7y" in page
    assert 'value="mailing lists"' in page and 'value="seven years"' in page
    assert "Traceback" not in page
    broken_scope = add_policy(admin, "broken", "1y", scope='subject:"unclosed')
    assert broken_scope.status_code == 400 and "scope" in broken_scope.get_data(as_text=True)
    assert policy_names(core) == []
    assert audited(core, "policy.add") == []


def test_an_administrator_removes_a_policy(app: Flask, core: Core) -> None:
    admin = browser(app, ADMIN)
    add_policy(admin, "short", "30d")
    answer = post_form(admin, "/admin/retention", "/admin/retention/policies/remove", name="short")
    assert "Policy short removed." in admin.get(answer.location).get_data(as_text=True)
    assert policy_names(core) == []
    assert audited(core, "policy.remove") == [(ADMIN, "short")]
    again = post_form(admin, "/admin/retention", "/admin/retention/policies/remove", name="short")
    assert "No policy is named 'short'." in unescape(
        admin.get(again.location).get_data(as_text=True)
    )


def test_an_auditor_sees_the_policies_but_cannot_change_them(app: Flask, core: Core) -> None:
    add_policy(browser(app, ADMIN), "everything", "1y")
    auditor = browser(app, AUDITOR)
    page = auditor.get("/admin/retention").get_data(as_text=True)
    assert "<td>everything</td>" in page and "administrators change them" in page
    assert "Add policy" not in page and "Remove policy" not in page and "Pause sweeps" not in page
    assert add_policy(auditor, "mine", "1d").status_code == 403
    for target, form in (
        ("/admin/retention/policies/remove", {"name": "everything"}),
        ("/admin/retention/pause", {"paused": "1"}),
    ):
        assert post_form(auditor, "/admin/retention", target, **form).status_code == 403
    assert policy_names(core) == ["everything"]
    with core.sessions() as session:
        assert not sweep_state(session).paused


def test_ordinary_users_find_no_retention_pages(app: Flask, core: Core) -> None:
    user = browser(app, USER)
    for page in (
        "/admin/retention",
        "/admin/holds",
        "/admin/retention/explain?message_id=old-1@x",
        "/admin/holds/release?name=x",
    ):
        assert user.get(page).status_code == 404, page
    token = csrf_field(user.get("/account").get_data(as_text=True))
    hold = {"name": "mine", "reason": "curious", "custodians": CUSTODIAN}
    assert user.post("/admin/holds", data={"csrf_token": token, **hold}).status_code == 404
    assert user.post("/admin/retention/preview", data={"csrf_token": token}).status_code == 404
    assert "/admin/retention" not in user.get("/account").get_data(as_text=True)
    visitor = app.test_client().get("/admin/holds")
    assert visitor.status_code == 302 and visitor.location.startswith("/login")
    with core.sessions() as session:
        assert session.scalar(select(func.count()).select_from(LegalHold)) == 0


def test_the_header_leads_administrators_and_auditors_to_both_pages(app: Flask) -> None:
    for email in (ADMIN, AUDITOR):
        page = browser(app, email).get("/account").get_data(as_text=True)
        assert 'href="/admin/retention"' in page and 'href="/admin/holds"' in page


def test_the_preview_counts_per_policy_and_deletes_nothing(app: Flask, core: Core) -> None:
    admin = browser(app, ADMIN)
    add_policy(admin, "everything", "1y")
    add_policy(admin, "custodian", "30d", scope=f"from:{CUSTODIAN}")
    add_policy(admin, "forever-ish", "100y", scope="msgid:old-3@x")
    place_hold(admin, name="carol", reason="Case 12", custodians=CUSTODIAN)
    before = message_count(core)

    answer = post_form(admin, "/admin/retention", "/admin/retention/preview")

    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    # old-1 goes; old-2 is held; old-3 has a century left under its longer policy.
    assert "A sweep now would delete 1 message</strong>" in page
    assert "<tr><td>everything</td><td>1</td></tr>" in page
    assert "<tr><td>custodian</td><td>0</td></tr>" in page
    assert "<tr><td>forever-ish</td><td>0</td></tr>" in page
    assert "<tr><td>carol</td><td>1</td></tr>" in page
    assert "1 past its time is kept by holds" in page
    assert message_count(core) == before == 4
    assert audited(core, "message.delete") == []
    with core.sessions() as session:
        assert sweep_state(session).last_started_at is None


def test_the_preview_counts_mail_waiting_for_the_indexer(app: Flask, core: Core) -> None:
    admin = browser(app, ADMIN)
    add_policy(admin, "everything", "1y")
    with core.sessions.begin() as session:
        late = RawMessage(mail("late@x", years_ago(5)), "", [], datetime.now(UTC), "import")
        core.archive.archive_batch(session, [late])
    page = post_form(admin, "/admin/retention", "/admin/retention/preview").get_data(as_text=True)
    assert "1 waits for the indexer" in page
    assert "A sweep now would delete 3 messages</strong>" in page


def test_an_auditor_may_preview_but_only_one_preview_runs_at_a_time(app: Flask) -> None:
    auditor = browser(app, AUDITOR)
    assert post_form(auditor, "/admin/retention", "/admin/retention/preview").status_code == 200
    lock = app.extensions[PREVIEW_LOCK]
    with lock:  # another request's preview under way
        busy = post_form(auditor, "/admin/retention", "/admin/retention/preview")
    assert busy.status_code == 409
    assert "A preview is running already" in busy.get_data(as_text=True)


def test_an_administrator_pauses_and_resumes_sweeps(app: Flask, core: Core) -> None:
    admin = browser(app, ADMIN)
    answer = post_form(admin, "/admin/retention", "/admin/retention/pause", paused="1")
    page = admin.get(answer.location).get_data(as_text=True)
    assert "Sweeps are paused</strong> (by root@example.org)" in page
    assert "Resume sweeps" in page
    post_form(admin, "/admin/retention", "/admin/retention/pause", paused="0")
    with core.sessions() as session:
        assert not sweep_state(session).paused
    assert audited(core, "retention.pause") == [(ADMIN, "")]
    assert audited(core, "retention.resume") == [(ADMIN, "")]


def test_an_auditor_places_a_hold_and_releases_it(app: Flask, core: Core) -> None:
    auditor = browser(app, AUDITOR)
    answer = place_hold(
        auditor,
        name="merger",
        reason="Case 13",
        query="numbers",
        custodians=f"{CUSTODIAN},\r\nDave@Example.com",
        since="2020-01-01",
        until="2024-12-31",
    )
    assert answer.status_code == 302
    page = auditor.get(answer.location).get_data(as_text=True)
    assert "Hold merger placed." in page
    assert "custodians carol@example.com, dave@example.com" in page
    assert "dated 1 Jan 2020 to 31 Dec 2024" in page and f"by {AUDITOR}" in page
    with core.sessions() as session:
        hold = session.scalars(select(LegalHold)).one()
        assert hold.until == datetime(2024, 12, 31, tzinfo=UTC)
    assert audited(core, "hold.add") == [(AUDITOR, "merger")]

    confirm = auditor.get("/admin/holds/release?name=merger").get_data(as_text=True)
    assert "Release hold merger?" in confirm and "Release hold merger</button>" in confirm
    assert audited(core, "hold.release") == []  # asking is not releasing
    released = post_form(
        auditor, "/admin/holds/release?name=merger", "/admin/holds/release", name="merger"
    )
    page = auditor.get(released.location).get_data(as_text=True)
    assert "Hold merger released." in page and "No active holds." in page
    assert "1 released hold</summary>" in page
    assert audited(core, "hold.release") == [(AUDITOR, "merger")]


def test_a_hold_that_cannot_be_placed_is_explained_with_what_was_typed(
    app: Flask, core: Core
) -> None:
    admin = browser(app, ADMIN)
    vague = place_hold(admin, name="everything", reason="Just in case")
    assert vague.status_code == 400
    assert "a hold needs a query, a custodian or both" in vague.get_data(as_text=True)
    backwards = place_hold(
        admin, name="dates", reason="Case 9", custodians=CUSTODIAN, since="2025-01-01", until="x"
    )
    page = backwards.get_data(as_text=True)
    assert backwards.status_code == 400 and "is not a date like 2026-01-31" in page
    assert 'value="Case 9"' in page and f">{CUSTODIAN}</textarea>" in page
    with core.sessions() as session:
        assert session.scalar(select(func.count()).select_from(LegalHold)) == 0


def test_a_form_without_the_csrf_token_is_refused(app: Flask, core: Core) -> None:
    admin = browser(app, ADMIN)
    refused = admin.post("/admin/retention/policies", data={"name": "all", "keep": "1y"})
    assert refused.status_code == 400
    assert "This form has expired" in refused.get_data(as_text=True)
    hold = {"name": "x", "reason": "y", "custodians": CUSTODIAN}
    assert admin.post("/admin/holds", data=hold).status_code == 400
    assert admin.post("/admin/retention/pause", data={"paused": "1"}).status_code == 400
    assert policy_names(core) == []
    with core.sessions() as session:
        assert not sweep_state(session).paused
        assert session.scalar(select(func.count()).select_from(LegalHold)) == 0


def test_explain_names_the_policy_and_the_hold_that_keeps_a_message(app: Flask, core: Core) -> None:
    admin = browser(app, ADMIN)
    add_policy(admin, "everything", "1y")
    place_hold(admin, name="carol", reason="Case 12", custodians=CUSTODIAN)

    held = admin.get("/admin/retention/explain?message_id=<old-2@x>")
    page = held.get_data(as_text=True)
    assert held.status_code == 200
    assert "&lt;old-2@x&gt;" in page
    assert "Policy everything keeps it 1y" in page
    assert "Hold carol covers it" in page and "Deletable from" not in page

    free = admin.get("/admin/retention/explain?message_id=old-1@x").get_data(as_text=True)
    with core.sessions() as session:
        dated = session.scalar(select(Message.date).where(Message.message_id == "old-1@x"))
    assert "Hold" not in free.split("Why is a message kept?")[1]
    deletable = Period.parse("1y").end(dated)
    assert f"Deletable from {deletable.day} {deletable:%b %Y}." in free

    missing = admin.get("/admin/retention/explain?message_id=nobody@x")
    assert missing.status_code == 404
    assert "No archived message has the Message-ID nobody@x." in missing.get_data(as_text=True)


def test_every_page_carries_the_content_security_policy(app: Flask) -> None:
    admin = browser(app, ADMIN)
    for page in ("/admin/retention", "/admin/holds"):
        answer = admin.get(page)
        assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
        assert answer.headers["Cache-Control"] == "private, no-store"
        assert foreign_scripts(answer.get_data(as_text=True)) == []


def test_custodians_may_be_pasted_with_commas_semicolons_or_lines() -> None:
    assert custodian_list(" a@x.org, b@x.org;c@x.org\r\n\nd@x.org ") == [
        "a@x.org",
        "b@x.org",
        "c@x.org",
        "d@x.org",
    ]


def notices(client: FlaskClient, answer) -> str:
    """The page a form's redirect leads to, with what it flashed."""
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return unescape(client.get(answer.location).get_data(as_text=True))


def test_saving_a_policy_says_what_it_covers_and_warns_of_a_scope_that_matches_nothing(
    app: Flask, core: Core
) -> None:
    admin = browser(app, ADMIN)
    page = notices(admin, add_policy(admin, "carol", "10y", scope=f"from:{CUSTODIAN}"))
    assert "It covers 1 message now." in page and "Warning" not in page
    page = notices(admin, add_policy(admin, "typo", "1y", scope="from:carol@example.org"))
    assert "It covers 0 messages now." in page
    assert "Warning: Its scope matches no message now: check it for a typo" in page
    assert policy_names(core) == ["carol", "typo"]  # saved all the same
    page = notices(admin, add_policy(admin, "default", "2y"))
    assert "It covers 4 messages now." in page
    assert (
        "Warning: 1 of its 4 messages are kept longer by policy carol (10y): "
        "the longest retention wins." in page
    )


def test_the_preview_lists_the_messages_it_would_delete_with_links(app: Flask, core: Core) -> None:
    admin = browser(app, ADMIN)
    add_policy(admin, "everything", "1y")
    place_hold(admin, name="carol", reason="Case 12", custodians=CUSTODIAN)

    page = post_form(admin, "/admin/retention", "/admin/retention/preview").get_data(as_text=True)

    listing = page.split('id="would-delete"')[1].split("</table>")[0]
    assert "Messages 1 to 2 of 2, oldest first." in page
    assert listing.index("report old-1@x") < listing.index("report old-3@x")
    assert '<a href="/messages/old-1@x">report old-1@x</a>' in listing
    assert "<td>alice@example.com</td>" in listing
    assert "old-2@x" not in listing and "new-1@x" not in listing  # held, and too new
    assert "Next page" not in page and "Download them all as mbox" in page
    assert [target for _actor, target in audited(core, "retention.preview")] == ["dry run"]


def test_the_preview_pages_through_many_messages(app: Flask, core: Core) -> None:
    archive(core, *(mail(f"bulk-{n:02}@x", years_ago(5) + timedelta(hours=n)) for n in range(55)))
    admin = browser(app, ADMIN)
    add_policy(admin, "everything", "1y")
    first = post_form(admin, "/admin/retention", "/admin/retention/preview").get_data(as_text=True)
    assert "Messages 1 to 50 of 58, oldest first." in first
    assert "Next page" in first and "Previous page" not in first
    assert "bulk-00@x" in first and "bulk-49@x" in first and "bulk-50@x" not in first
    token = csrf_field(first)
    second = admin.post("/admin/retention/preview", data={"csrf_token": token, "page": "2"})
    page = second.get_data(as_text=True)
    assert "Messages 51 to 58 of 58, oldest first." in page
    assert "bulk-54@x" in page and "old-1@x" in page and "bulk-49@x" not in page
    assert "Previous page" in page and "Next page" not in page


def test_the_messages_a_sweep_would_delete_download_as_mbox(app: Flask, core: Core) -> None:
    auditor = browser(app, AUDITOR)
    add_policy(browser(app, ADMIN), "everything", "1y")
    place_hold(auditor, name="carol", reason="Case 12", custodians=CUSTODIAN)
    refused = auditor.post("/admin/retention/preview.mbox")
    assert refused.status_code == 400  # no CSRF token

    answer = post_form(auditor, "/admin/retention", "/admin/retention/preview.mbox")

    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/mbox"
    assert "attachment" in answer.headers["Content-Disposition"]
    data = answer.get_data()
    assert data.startswith(b"From ")
    assert data.count(b"\nMessage-ID: ") + data.startswith(b"Message-ID: ") == 2
    assert b"Message-ID: <old-1@x>" in data and b"Message-ID: <old-3@x>" in data
    assert b"old-2@x" not in data and b"new-1@x" not in data
    assert message_count(core) == 4
    assert audited(core, "export") == [(AUDITOR, "retention dry run")]
    user = browser(app, USER)
    token = csrf_field(user.get("/account").get_data(as_text=True))
    assert user.post("/admin/retention/preview.mbox", data={"csrf_token": token}).status_code == 404


def test_the_holds_page_counts_what_each_hold_covers(app: Flask, core: Core) -> None:
    auditor = browser(app, AUDITOR)
    page = notices(
        auditor, place_hold(auditor, name="carol", reason="Case 12", custodians=CUSTODIAN)
    )
    assert "Hold carol placed." in page and "It covers 1 message now." in page
    page = notices(auditor, place_hold(auditor, name="reports", reason="Case 13", query="numbers"))
    assert "It covers 4 messages now." in page
    page = notices(
        auditor, place_hold(auditor, name="later", reason="Case 14", custodians="eve@example.com")
    )
    assert "Warning: It covers no message now: check its query and custodians for a typo." in page
    assert "Hold later placed." in page

    page = auditor.get("/admin/holds").get_data(as_text=True)
    counts = {
        name: row.split('<td class="covered">')[1].split("</td>")[0]
        for name, row in (
            (row.split("<td>")[1].split("</td>")[0], row)
            for row in page.split("<tr>")
            if '<td class="covered">' in row
        )
    }
    assert counts == {"carol": "1", "later": "0", "reports": "4"}
