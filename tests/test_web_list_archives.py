"""List archives on the web: who sees which list, the months, the feed, the forms."""

from __future__ import annotations

from datetime import UTC, datetime
from xml.etree import ElementTree

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from archiver.accounts import add_user
from archiver.archive import RawMessage
from archiver.core import Core
from lists.models import MailingList, Member, Pending
from tests.support import simple_message
from tests.test_accounts import PASSWORD, csrf_field, log_in
from web import create_app

DOMAIN = "lists.example.com"


def list_post(mid: str, list_name: str, subject: str, date: str) -> bytes:
    return simple_message(
        mid,
        subject=subject,
        sender="poster@example.org",
        to=f"{list_name}@{DOMAIN}",
        extra_headers=f"List-Id: {list_name} <{list_name}.{DOMAIN}>\r\n",
    ).replace(b"Mon, 02 Feb 2026 10:00:00 +0000", date.encode())


@pytest.fixture
def app(core: Core) -> Flask:
    """A public list dev@ and a private list board@ (member: ann), with posts in both."""
    now = datetime.now(UTC)
    with core.sessions.begin() as session:
        session.add(MailingList(name="dev", domain=DOMAIN, display_name="Developers"))
        board = MailingList(name="board", domain=DOMAIN, archive="private")
        session.add(board)
        session.flush()
        session.add(Member(list_id=board.id, address="ann@example.org"))
        add_user(session, "ann@example.org", "user", PASSWORD)
        add_user(session, "zed@example.org", "user", PASSWORD)
        posts = [
            ("dev", list_post("d1@x", "dev", "Kick-off", "Tue, 06 Jan 2026 09:00:00 +0000")),
            ("dev", list_post("d2@x", "dev", "Re: Kick-off", "Wed, 07 Jan 2026 09:00:00 +0000")),
            ("dev", list_post("d3@x", "dev", "Release", "Tue, 03 Feb 2026 09:00:00 +0000")),
            (
                "board",
                list_post("b1@x", "board", "Budget <secret>", "Tue, 03 Feb 2026 10:00:00 +0000"),
            ),
        ]
        copies = [
            RawMessage(data, "", [], now, "list", list_id=f"{name}.{DOMAIN}")
            for name, data in posts
        ]
        core.archive.archive_batch(session, copies)
    return create_app(core)


def test_the_directory_shows_public_lists_to_all_and_private_ones_to_members(
    app: Flask,
) -> None:
    anonymous = app.test_client().get("/lists/").get_data(as_text=True)
    assert "Developers" in anonymous and "board@" not in anonymous
    member = app.test_client()
    log_in(member, "ann@example.org", PASSWORD)
    assert "board@lists.example.com" in member.get("/lists/").get_data(as_text=True)


def test_a_private_archive_does_not_exist_for_outsiders(app: Flask) -> None:
    outsider = app.test_client()
    log_in(outsider, "zed@example.org", PASSWORD)
    assert outsider.get(f"/lists/board@{DOMAIN}/").status_code == 404
    assert app.test_client().get(f"/lists/board@{DOMAIN}/feed.atom").status_code == 404
    assert app.test_client().get(f"/lists/nothing@{DOMAIN}/").status_code == 404
    member = app.test_client()
    log_in(member, "ann@example.org", PASSWORD)
    page = member.get(f"/lists/board@{DOMAIN}/2026-02").get_data(as_text=True)
    assert "Budget &lt;secret&gt;" in page


def test_the_archive_counts_threads_and_messages_by_month(app: Flask) -> None:
    page = app.test_client().get(f"/lists/dev@{DOMAIN}/").get_data(as_text=True)
    assert "<svg" in page and "2026-01: 2 messages" in page
    january = page[page.index(">2026-01<") :]
    assert "<td>1</td><td>2</td>" in january.replace("\n", "").replace(" ", "")
    month = app.test_client().get(f"/lists/dev@{DOMAIN}/2026-01").get_data(as_text=True)
    assert "Kick-off" in month and "Release" not in month


def test_the_atom_feed_lists_the_latest_posts(app: Flask) -> None:
    answer = app.test_client().get(f"/lists/dev@{DOMAIN}/feed.atom")
    assert answer.mimetype == "application/atom+xml"
    feed = ElementTree.fromstring(answer.data)
    atom = "{http://www.w3.org/2005/Atom}"
    titles = [entry.findtext(f"{atom}title") for entry in feed.iter(f"{atom}entry")]
    assert titles == ["Release", "Re: Kick-off", "Kick-off"]


def test_subscribing_on_the_web_sends_a_confirmation_and_changes_nothing_yet(
    app: Flask, core: Core
) -> None:
    client = app.test_client()
    page = client.get(f"/lists/dev@{DOMAIN}/").get_data(as_text=True)
    answer = client.post(
        f"/lists/dev@{DOMAIN}/subscribe",
        data={"csrf_token": csrf_field(page), "email": "newbie@example.com"},
    )
    assert answer.status_code == 303
    notice = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "confirmation has been sent" in notice
    with core.sessions() as session:
        assert session.scalar(select(Pending.address)) == "newbie@example.com"
        members = session.scalars(select(Member.address)).all()
    assert "newbie@example.com" not in members
    refused = client.post(f"/lists/dev@{DOMAIN}/subscribe", data={"email": "x@example.com"})
    assert refused.status_code == 400  # no CSRF token


def test_the_forms_work_without_being_logged_in(app: Flask) -> None:
    client: FlaskClient = app.test_client()
    page = client.get(f"/lists/dev@{DOMAIN}/").get_data(as_text=True)
    assert 'name="email"' in page and "Unsubscribe" in page
